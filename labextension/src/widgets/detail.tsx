/**
 * One execution in a main-area tab: its steps (state, job id, elapsed, exit code), the DAG, a
 * live log viewer of a step's stdout/stderr, Cancel / Retry failed with confirmation, and
 * Export RO-Crate (a zip download of a finished execution).
 * It re-reads the execution when the event stream reports a change of it.
 */
import {
  Dialog,
  MainAreaWidget,
  showDialog,
  showErrorMessage
} from '@jupyterlab/apputils';
import { ReactWidget } from '@jupyterlab/ui-components';
import { Debouncer } from '@lumino/polling';
import React, { useEffect, useLayoutEffect, useRef, useState } from 'react';

import {
  FINAL_EXECUTION_STATES,
  FINAL_STEP_STATES,
  RETRYABLE_STEP_STATES,
  type Execution,
  type StaxEvent,
  type StepRun
} from '../api/types';
import { age, elapsed, shortId } from '../model/format';
import { LogTail } from '../model/logtail';
import {
  INSTANCE_STATES,
  InstancePager,
  paramsText,
  sweepLine,
  type InstanceState
} from '../model/sweep';
import { StepFiles } from './stepfiles';
import type { StaxModel } from '../model/model';
import { staxIcon } from '../icons';
import { DagView } from './dagview';
import { ExecutedNotebookButton } from '../notebookrun/executed';
import { ErrorLine, StateBadge, Unverified, useNow } from './common';

function LogViewer(props: {
  model: StaxModel;
  execution: Execution;
  step: string;
}): React.JSX.Element {
  const { model, execution, step } = props;
  const [stream, setStream] = useState<'stdout' | 'stderr'>('stdout');
  const [, setVersion] = useState(0);
  const [tail, setTail] = useState<LogTail | null>(null);
  const pre = useRef<HTMLPreElement>(null);
  const attempt = execution.steps.find(s => s.name === step)?.attempt ?? 0;

  useEffect(() => {
    const t = new LogTail(model.client, execution.id, step, stream, {
      onChange: () => setVersion(v => v + 1)
    });
    setTail(t);
    void t.start();
    return () => t.dispose();
    // a new attempt writes new files: follow them from the start
  }, [model, execution.id, step, stream, attempt]);

  useLayoutEffect(() => {
    const el = pre.current;
    if (el) {
      el.scrollTop = el.scrollHeight;
    }
  });

  return (
    <div className="jp-StaxLogViewer" data-step={step} data-stream={stream}>
      <div className="jp-StaxRow">
        <span className="jp-StaxLogViewer-title">
          {step} <span className="jp-StaxMuted">attempt {attempt || '-'}</span>
        </span>
        {(['stdout', 'stderr'] as const).map(s => (
          <label key={s} className="jp-StaxMuted">
            <input
              type="radio"
              name={`jp-StaxStream-${execution.id}`}
              value={s}
              checked={stream === s}
              onChange={() => setStream(s)}
            />
            {s}
          </label>
        ))}
        <span className="jp-StaxMuted jp-StaxLogViewer-status">
          {tail?.eof ? 'end of output' : 'following'}
        </span>
      </div>
      <ErrorLine error={tail?.error ?? null} />
      <pre className="jp-StaxLog" ref={pre}>
        {tail?.truncated ? '… (earlier output left out)\n' : ''}
        {tail?.text ?? ''}
      </pre>
    </div>
  );
}

/** A sweep's instances, paged from the server (the ones that did not complete first). */
function InstancesList(props: {
  model: StaxModel;
  execution: Execution;
  step: StepRun;
}): React.JSX.Element {
  const { model, execution, step } = props;
  const [, setVersion] = useState(0);
  const [pager, setPager] = useState<InstancePager | null>(null);
  const counts = JSON.stringify(step.sweep?.counts ?? {});

  useEffect(() => {
    const p = new InstancePager(model.client, execution.id, step.name, () =>
      setVersion(v => v + 1)
    );
    setPager(p);
    void p.load(null);
  }, [model, execution.id, step.name]);

  useEffect(() => {
    // the counts changed (instances ended): read the first page again, same filter
    if (pager && pager.view.loaded) {
      void pager.load();
    }
  }, [counts, step.attempt]);

  const view = pager?.view;
  return (
    <div className="jp-StaxInstances" data-step={step.name}>
      <div className="jp-StaxRow">
        <label className="jp-StaxMuted">
          state{' '}
          <select
            className="jp-StaxSelect jp-StaxInstances-filter"
            value={view?.filter ?? ''}
            onChange={e => {
              const v = e.currentTarget.value;
              void pager?.load(v ? (v as InstanceState) : null);
            }}
          >
            <option value="">all</option>
            {INSTANCE_STATES.map(s => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </label>
        <span className="jp-StaxMuted jp-StaxInstances-count">
          {view?.loaded
            ? `${view.items.length} of ${
                view.filter
                  ? (view.counts[view.filter] ?? 0)
                  : view.total.toLocaleString('en-US')
              } shown`
            : 'loading…'}
        </span>
      </div>
      <ErrorLine error={pager?.error ?? null} />
      <table className="jp-StaxSteps jp-StaxInstances-table">
        <thead>
          <tr>
            <th>#</th>
            <th>state</th>
            <th>exit</th>
            <th>attempt</th>
            <th>values</th>
          </tr>
        </thead>
        <tbody>
          {(view?.items ?? []).map(i => (
            <tr key={i.index} data-instance={i.index} data-state={i.state}>
              <td className="jp-StaxMono">{i.index}</td>
              <td>{i.state}</td>
              <td className="jp-StaxMono">{i.exit_code ?? ''}</td>
              <td>{i.attempt}</td>
              <td className="jp-StaxMono jp-StaxMuted">
                {paramsText(i.params)}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {view?.nextCursor && (
        <button
          className="jp-StaxButton jp-StaxInstances-more"
          disabled={pager?.loading}
          onClick={() => void pager?.more()}
        >
          More instances
        </button>
      )}
    </div>
  );
}

function StepsTable(props: {
  model: StaxModel;
  execution: Execution;
  selected: string | null;
  onSelect: (step: string) => void;
  now: number;
}): React.JSX.Element {
  const { model, execution, selected, onSelect, now } = props;
  const [open, setOpen] = useState<Set<string>>(new Set());
  const toggle = (name: string) =>
    setOpen(o => {
      const next = new Set(o);
      if (next.has(name)) {
        next.delete(name);
      } else {
        next.add(name);
      }
      return next;
    });
  return (
    <table className="jp-StaxSteps">
      <thead>
        <tr>
          <th>step</th>
          <th>state</th>
          <th>job id</th>
          <th>elapsed</th>
          <th>exit</th>
          <th>reason</th>
        </tr>
      </thead>
      <tbody>
        {execution.steps.map((s: StepRun) => (
          <React.Fragment key={s.name}>
            <tr
              data-step={s.name}
              data-state={s.state}
              data-sweep={s.sweep ? 'true' : undefined}
              className={selected === s.name ? 'jp-mod-selected' : ''}
              onClick={() => onSelect(s.name)}
            >
              <td>
                {s.sweep && (
                  <button
                    className="jp-StaxButton jp-StaxSweep-toggle"
                    aria-expanded={open.has(s.name)}
                    title="Show or hide this sweep's instances"
                    onClick={e => {
                      e.stopPropagation();
                      toggle(s.name);
                    }}
                  >
                    {open.has(s.name) ? '▾' : '▸'}
                  </button>
                )}
                {s.name}
              </td>
              <td>
                <StateBadge state={s.state ?? 'pending'} />
              </td>
              <td className="jp-StaxMono">{s.native_id ?? ''}</td>
              <td>
                {elapsed(s.started_at ?? s.submitted_at, s.finished_at, now)}
              </td>
              <td className="jp-StaxMono">{s.exit_code ?? ''}</td>
              <td className="jp-StaxMuted">
                {s.sweep && (
                  <span className="jp-StaxSweep-counts">
                    {sweepLine(s.sweep)}
                    {s.reason ? '; ' : ''}
                  </span>
                )}
                {s.reason ?? ''}
              </td>
            </tr>
            {s.sweep && open.has(s.name) && (
              <tr className="jp-StaxSweep-instances" data-instances-of={s.name}>
                <td colSpan={6}>
                  <InstancesList model={model} execution={execution} step={s} />
                </td>
              </tr>
            )}
          </React.Fragment>
        ))}
      </tbody>
    </table>
  );
}

async function confirm(
  title: string,
  body: string,
  label: string,
  warn: boolean
): Promise<boolean> {
  const result = await showDialog({
    title,
    body,
    buttons: [
      Dialog.cancelButton({ label: 'Back' }),
      warn ? Dialog.warnButton({ label }) : Dialog.okButton({ label })
    ]
  });
  return result.button.accept;
}

/** Ask, then cancel; errors are shown in a dialog. */
export async function confirmCancel(
  model: StaxModel,
  id: string,
  name: string
): Promise<boolean> {
  const ok = await confirm(
    'Cancel execution?',
    `Cancel ${name} (${shortId(id)})? Its unfinished steps' jobs are canceled on the scheduler.`,
    'Cancel execution',
    true
  );
  if (!ok) {
    return false;
  }
  try {
    await model.cancel(id);
    return true;
  } catch (e) {
    await showErrorMessage(
      'Could not cancel the execution',
      e instanceof Error ? e.message : String(e)
    );
    return false;
  }
}

/** Ask, then retry the failed, canceled, skipped and lost steps. */
export async function confirmRetry(
  model: StaxModel,
  id: string,
  name: string
): Promise<boolean> {
  const ok = await confirm(
    'Retry failed steps?',
    `Run the failed, canceled, skipped and lost steps of ${name} (${shortId(id)}) again?`,
    'Retry',
    false
  );
  if (!ok) {
    return false;
  }
  try {
    await model.retry(id);
    return true;
  } catch (e) {
    await showErrorMessage(
      'Could not retry the execution',
      e instanceof Error ? e.message : String(e)
    );
    return false;
  }
}

/** Download the finished execution's Workflow Run RO-Crate (a zip); errors in a dialog. */
export async function exportCrate(
  model: StaxModel,
  id: string
): Promise<boolean> {
  try {
    const { blob, filename } = await model.exportCrate(id);
    const url = URL.createObjectURL(blob);
    const a = document.createElement('a');
    a.href = url;
    a.download = filename;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    return true;
  } catch (e) {
    await showErrorMessage(
      'Could not export the RO-Crate',
      e instanceof Error ? e.message : String(e)
    );
    return false;
  }
}

function DetailView(props: {
  model: StaxModel;
  id: string;
  openNotebook?: (local: string) => void;
}): React.JSX.Element {
  const { model, id } = props;
  const [execution, setExecution] = useState<Execution | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [step, setStep] = useState<string | null>(null);
  const now = useNow(1000);

  useEffect(() => {
    let alive = true;
    const load = async () => {
      try {
        const ex = await model.execution(id);
        if (alive) {
          setExecution(ex);
          setError(null);
        }
      } catch (e) {
        if (alive) {
          setError(e instanceof Error ? e.message : String(e));
        }
      }
    };
    const debouncer = new Debouncer(load, 200);
    const onEvent = (_: StaxModel, ev: StaxEvent) => {
      if ((ev.kind === 'execution' ? ev.id : ev.execution_id) === id) {
        void debouncer.invoke();
      }
    };
    model.event.connect(onEvent);
    void load();
    return () => {
      alive = false;
      model.event.disconnect(onEvent);
      debouncer.dispose();
    };
  }, [model, id]);

  // show the first step that failed, else the last one that started, else the first
  const chosen =
    step ??
    (execution
      ? ((
          execution.steps.find(s => s.state === 'failed') ??
          [...execution.steps].reverse().find(s => s.attempt) ??
          execution.steps[0]
        )?.name ?? null)
      : null);

  if (!execution) {
    return (
      <div className="jp-StaxDetail">
        <ErrorLine error={error} />
        {!error && <div className="jp-StaxMuted">Loading {id}…</div>}
      </div>
    );
  }
  const state = execution.state ?? 'pending';
  const final = FINAL_EXECUTION_STATES.has(state);
  const retryable =
    final &&
    execution.steps.some(s => RETRYABLE_STEP_STATES.has(s.state ?? 'pending'));
  const done = execution.steps.filter(s =>
    FINAL_STEP_STATES.has(s.state ?? 'pending')
  ).length;
  const name = execution.workflow.name ?? execution.id;
  return (
    <div
      className="jp-StaxDetail"
      data-execution-id={execution.id}
      data-state={state}
    >
      <div className="jp-StaxDetail-header">
        <h2>
          {name}{' '}
          <span className="jp-StaxMuted jp-StaxMono">{execution.id}</span>
        </h2>
        <div className="jp-StaxRow">
          <StateBadge state={state} />
          {execution.unverified && <Unverified />}
          <span>
            {done}/{execution.steps.length} steps
          </span>
          <span className="jp-StaxMuted">on {execution.cluster}</span>
          <span className="jp-StaxMuted">
            created {age(execution.created_at, now)}
          </span>
          <button
            className="jp-StaxButton jp-StaxCancel jp-mod-warn"
            disabled={final || execution.cancel_requested}
            onClick={() => void confirmCancel(model, execution.id, name)}
          >
            {execution.cancel_requested && !final ? 'Canceling…' : 'Cancel'}
          </button>
          <button
            className="jp-StaxButton jp-StaxRetry"
            disabled={!retryable}
            onClick={() => void confirmRetry(model, execution.id, name)}
          >
            Retry failed
          </button>
          <button
            className="jp-StaxButton jp-StaxExportCrate"
            disabled={!final}
            title={
              final
                ? 'Download this run as a Workflow Run RO-Crate (zip)'
                : 'A crate records a finished run: wait for it or cancel it'
            }
            onClick={() => void exportCrate(model, execution.id)}
          >
            Export RO-Crate
          </button>
        </div>
        {(execution.warnings ?? []).map(w => (
          <div key={w} className="jp-StaxWarning">
            {w}
          </div>
        ))}
        <ErrorLine error={error} />
        <div className="jp-StaxMuted jp-StaxMono">{execution.work_dir}</div>
      </div>
      <div className="jp-StaxDetail-body">
        <div className="jp-StaxDetail-top">
          <StepsTable
            model={model}
            execution={execution}
            selected={chosen}
            onSelect={setStep}
            now={now}
          />
          <div className="jp-StaxDag-box">
            <DagView
              execution={execution}
              selected={chosen}
              onSelect={setStep}
            />
          </div>
        </div>
        <ExecutedNotebookButton
          step={execution.steps.find(s => s.name === chosen)}
          open={props.openNotebook}
        />
        {chosen && (
          <LogViewer model={model} execution={execution} step={chosen} />
        )}
        {chosen && (
          <StepFiles model={model} execution={execution} step={chosen} />
        )}
      </div>
    </div>
  );
}

export class ExecutionDetail extends ReactWidget {
  constructor(
    private readonly model: StaxModel,
    readonly executionId: string,
    private readonly openNotebook?: (local: string) => void
  ) {
    super();
    this.addClass('jp-StaxDetail-widget');
  }

  render(): React.JSX.Element {
    return (
      <DetailView
        model={this.model}
        id={this.executionId}
        openNotebook={this.openNotebook}
      />
    );
  }
}

export function createDetailWidget(
  model: StaxModel,
  id: string,
  name?: string,
  openNotebook?: (local: string) => void
): MainAreaWidget<ExecutionDetail> {
  const content = new ExecutionDetail(model, id, openNotebook);
  const widget = new MainAreaWidget({ content });
  widget.id = `jupyter-stax-execution-${id}`;
  widget.title.label = `StaX ${name ?? ''} ${shortId(id)}`.replace(/\s+/g, ' ');
  widget.title.icon = staxIcon;
  widget.title.closable = true;
  widget.addClass('jp-StaxDetail-main');
  return widget;
}
