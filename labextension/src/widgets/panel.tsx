/**
 * The StaX sidebar: clusters with live summaries, the StaX image catalog with its fit on a
 * cluster, and executions (newest first, live from the event stream, filterable by state).
 */
import { ReactWidget, UseSignal } from '@jupyterlab/ui-components';
import type { CommandRegistry } from '@lumino/commands';
import type { Message } from '@lumino/messaging';
import React from 'react';

import {
  EXECUTION_STATES,
  isExecutionState,
  type ClusterDetail,
  type ExecutionSummary
} from '../api/types';
import { age, shortId } from '../model/format';
import { groupImages } from '../model/images';
import type { ClusterRow, StaxModel } from '../model/model';
import { staxIcon } from '../icons';
import { ErrorLine, StateBadge, Unverified, useNow } from './common';
import { FamilyBuildView } from './builds';

export const PANEL_ID = 'jupyter-stax-panel';

export const CommandIDs = {
  openPanel: 'stax:open-panel',
  refresh: 'stax:refresh',
  openExecution: 'stax:open-execution',
  cancelSelected: 'stax:cancel-selected',
  retrySelected: 'stax:retry-selected'
} as const;

export function summaryText(detail: ClusterDetail | null): string {
  const s = detail?.summary;
  if (!s) {
    return detail?.note ?? '';
  }
  if (s.scheduler === 'slurm') {
    const n = s.nodes;
    const j = s.jobs;
    const part = s.partition ? `${s.partition}: ` : '';
    return (
      `${part}${n.idle} idle, ${n.allocated} allocated` +
      (n.unavailable ? `, ${n.unavailable} unavailable` : '') +
      ` of ${n.total} nodes · my jobs: ${j.queued} queued, ${j.running} running`
    );
  }
  if (s.scheduler === 'sge') {
    const q = s.queue ? `${s.queue}: ` : '';
    return (
      `${q}${s.slots.available} of ${s.slots.total} slots free, ` +
      `${s.hosts.idle} of ${s.hosts.total} hosts idle` +
      ` · my jobs: ${s.jobs.queued} queued, ${s.jobs.running} running`
    );
  }
  const load = s.load_average ? s.load_average[0].toFixed(2) : '?';
  return `${s.cpus ?? '?'} CPUs, load ${load} · ${s.running_steps} steps running`;
}

/** A remote cluster's SSH connection in one line (null: a local cluster). */
export function connectionText(detail: ClusterDetail | null): string | null {
  const c = detail?.connection;
  if (!c) {
    return null;
  }
  const via = c.destination;
  const since = c.since ? new Date(c.since).toLocaleTimeString() : '';
  switch (c.state) {
    case 'connected':
      return `connected to ${via}`;
    case 'idle':
      return `not connected to ${via} yet`;
    case 'reconnecting':
      return `reconnecting to ${via} since ${since}: ${c.error ?? 'no answer'}`;
    default:
      return (
        `refused by ${via} since ${since}` +
        (c.problem ? ` (${c.problem.replace(/-/g, ' ')})` : '') +
        `: ${c.error ?? ''}`
      );
  }
}

function ClusterItem(props: { row: ClusterRow }): React.JSX.Element {
  const { info, detail, error } = props.row;
  const where = [
    info.queue && `queue ${info.queue}`,
    info.account && `account ${info.account}`
  ]
    .filter(Boolean)
    .join(', ');
  return (
    <li className="jp-StaxCluster" data-cluster={info.name}>
      <div className="jp-StaxRow">
        <span className="jp-StaxCluster-name">{info.name}</span>
        <span className="jp-StaxChip">{info.scheduler}</span>
        {where && <span className="jp-StaxMuted">{where}</span>}
      </div>
      <div className="jp-StaxCluster-summary jp-StaxMuted">
        {error ? (
          <span className="jp-StaxError-text">{error}</span>
        ) : (
          summaryText(detail)
        )}
      </div>
      {detail?.connection && (
        <div
          className={
            'jp-StaxCluster-connection' +
            (detail.connection.state === 'connected'
              ? ' jp-StaxMuted'
              : ' jp-StaxError-text')
          }
          data-connection={detail.connection.state}
          title={detail.connection.error ?? ''}
        >
          {connectionText(detail)}
        </div>
      )}
    </li>
  );
}

function ClustersSection(props: { model: StaxModel }): React.JSX.Element {
  const m = props.model;
  return (
    <details className="jp-StaxSection" open>
      <summary>Clusters</summary>
      <ErrorLine error={m.clustersError} />
      <ul className="jp-StaxList jp-StaxClusters">
        {m.clusters.map(row => (
          <ClusterItem key={row.info.name} row={row} />
        ))}
      </ul>
    </details>
  );
}

function ImagesSection(props: { model: StaxModel }): React.JSX.Element {
  const m = props.model;
  const families = groupImages(m.images);
  return (
    <details className="jp-StaxSection jp-StaxImages" open>
      <summary>Images</summary>
      <div className="jp-StaxRow">
        <label className="jp-StaxMuted">
          fit on{' '}
          <select
            className="jp-StaxSelect"
            value={m.imagesCluster ?? ''}
            onChange={e => void m.selectImagesCluster(e.currentTarget.value)}
          >
            {m.clusters.map(c => (
              <option key={c.info.name} value={c.info.name}>
                {c.info.name}
              </option>
            ))}
          </select>
        </label>
      </div>
      <ErrorLine error={m.imagesError} />
      {families.length === 0 && !m.imagesError && (
        <div className="jp-StaxMuted jp-StaxEmpty">
          {m.images?.note ?? 'No StaX images in the configured catalogs.'}
        </div>
      )}
      {families.map(f => (
        <div key={f.family} className="jp-StaxFamily" data-family={f.family}>
          <div className="jp-StaxFamily-name">{f.family}</div>
          <FamilyBuildView model={m} family={f} />
          <ul className="jp-StaxList">
            {f.variants.map(v => (
              <li
                key={v.name}
                className="jp-StaxImage"
                data-image={v.name}
                title={v.reference ?? ''}
              >
                <div className="jp-StaxRow">
                  <span>{v.name}</span>
                  <span
                    className={`jp-StaxFit jp-StaxFit-${v.fit}`}
                    title={v.reason ?? ''}
                  >
                    {v.fit === 'fits'
                      ? 'fits'
                      : v.fit === 'fails'
                        ? 'does not fit'
                        : 'not judged'}
                  </span>
                </div>
                <div className="jp-StaxChips">
                  {v.labels.map(l => (
                    <span key={l.key} className="jp-StaxChip">
                      {l.key}={l.value}
                    </span>
                  ))}
                </div>
                {v.fit === 'fails' && v.reason && (
                  <div className="jp-StaxFit-reason">{v.reason}</div>
                )}
              </li>
            ))}
          </ul>
        </div>
      ))}
    </details>
  );
}

function ExecutionItem(props: {
  ex: ExecutionSummary;
  now: number;
  selected: boolean;
  model: StaxModel;
  commands: CommandRegistry;
}): React.JSX.Element {
  const { ex, now, selected, model, commands } = props;
  const open = () =>
    void commands.execute(CommandIDs.openExecution, { id: ex.id });
  return (
    <li
      className={`jp-StaxExecution${selected ? ' jp-mod-selected' : ''}`}
      data-execution-id={ex.id}
      data-state={ex.state}
      data-unverified={ex.unverified ? 'true' : undefined}
      onClick={() => model.select(ex.id)}
      onDoubleClick={open}
      title={ex.warnings?.join('\n') || undefined}
    >
      <div className="jp-StaxRow">
        <StateBadge state={ex.state} />
        {ex.unverified && <Unverified />}
        <span className="jp-StaxExecution-name">{ex.name}</span>
        <span className="jp-StaxMuted jp-StaxMono">{shortId(ex.id)}</span>
        <button
          className="jp-StaxButton jp-StaxExecution-open"
          title="Open the execution"
          onClick={e => {
            e.stopPropagation();
            open();
          }}
        >
          Open
        </button>
      </div>
      <div className="jp-StaxRow jp-StaxMuted">
        <progress
          className="jp-StaxProgress"
          value={ex.done}
          max={Math.max(1, ex.total)}
        />
        <span className="jp-StaxExecution-progress">
          {ex.done}/{ex.total}
        </span>
        <span>{ex.cluster}</span>
        <span>{age(ex.created_at, now)}</span>
      </div>
      {ex.warnings && ex.warnings.length > 0 && (
        <div className="jp-StaxWarning">{ex.warnings[0]}</div>
      )}
    </li>
  );
}

function ExecutionsSection(props: {
  model: StaxModel;
  commands: CommandRegistry;
}): React.JSX.Element {
  const { model, commands } = props;
  const now = useNow();
  const items = model.executions;
  return (
    <details className="jp-StaxSection jp-StaxExecutions" open>
      <summary>Executions</summary>
      <div className="jp-StaxRow">
        <label className="jp-StaxMuted">
          state{' '}
          <select
            className="jp-StaxSelect jp-StaxFilter"
            value={model.filter ?? ''}
            onChange={e => {
              const v = e.currentTarget.value;
              void model.setFilter(isExecutionState(v) ? v : null);
            }}
          >
            <option value="">all</option>
            {EXECUTION_STATES.map(s => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </label>
      </div>
      <ErrorLine error={model.executionsError} />
      {model.view.loaded && items.length === 0 && (
        <div className="jp-StaxMuted jp-StaxEmpty">
          {model.filter
            ? `No ${model.filter} executions.`
            : 'No executions yet: submit one with %stax_submit, jupyter stax run or the REST API.'}
        </div>
      )}
      <ul className="jp-StaxList">
        {items.map(ex => (
          <ExecutionItem
            key={ex.id}
            ex={ex}
            now={now}
            selected={model.selected === ex.id}
            model={model}
            commands={commands}
          />
        ))}
      </ul>
      {model.view.nextCursor && (
        <button className="jp-StaxButton" onClick={() => void model.loadMore()}>
          Older executions
        </button>
      )}
    </details>
  );
}

export class StaxPanel extends ReactWidget {
  constructor(
    private readonly model: StaxModel,
    private readonly commands: CommandRegistry
  ) {
    super();
    this.id = PANEL_ID;
    this.title.icon = staxIcon;
    this.title.caption = 'StaX: clusters, images and executions';
    this.addClass('jp-StaxPanel');
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.model.panelVisible = true;
  }

  protected onAfterHide(msg: Message): void {
    super.onAfterHide(msg);
    this.model.panelVisible = false;
  }

  render(): React.JSX.Element {
    return (
      <UseSignal signal={this.model.changed}>
        {() => (
          <div className="jp-StaxPanel-body">
            <div className="jp-StaxPanel-header">
              <span className="jp-StaxPanel-title">StaX</span>
              <button
                className="jp-StaxButton"
                title="Refresh clusters, images and executions"
                onClick={() => void this.commands.execute(CommandIDs.refresh)}
              >
                Refresh
              </button>
            </div>
            <ClustersSection model={this.model} />
            <ImagesSection model={this.model} />
            <ExecutionsSection model={this.model} commands={this.commands} />
          </div>
        )}
      </UseSignal>
    );
  }
}
