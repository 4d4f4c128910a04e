/**
 * The sidebar's *Workflows* section: the published workflows, a form generated from the chosen
 * one's declared inputs (types checked, defaults shown), a cluster and a Run button; below it,
 * the executions triggered from that workflow (`GET executions?workflow=NAME`).
 */
import type { CommandRegistry } from '@lumino/commands';
import React, { useCallback, useEffect, useState } from 'react';

import { StaxAPIError } from '../api/client';
import type {
  ExecutionSummary,
  PublishedSummary,
  PublishedWorkflow
} from '../api/types';
import { shortId } from '../model/format';
import type { StaxModel } from '../model/model';
import { fieldType, initialValue, typedInputs } from '../model/workflows';
import { ErrorLine, StateBadge } from './common';

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function details(e: unknown): string[] {
  return e instanceof StaxAPIError ? e.details : [];
}

function TriggerForm(props: {
  model: StaxModel;
  workflow: PublishedWorkflow;
  onStarted: (id: string) => void;
}): React.JSX.Element {
  const { model, workflow: w, onStarted } = props;
  const [values, setValues] = useState<Record<string, string | boolean>>({});
  const [cluster, setCluster] = useState('');
  const [problems, setProblems] = useState<string[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    const start: Record<string, string | boolean> = {};
    for (const d of w.inputs ?? []) {
      start[d.name] = initialValue(d);
    }
    setValues(start);
    setCluster(w.default_cluster ?? '');
    setProblems([]);
    setError(null);
  }, [w.name, w.version]);

  const run = async () => {
    const { inputs, problems: found } = typedInputs(w.inputs ?? [], values);
    setProblems(found);
    setError(null);
    if (found.length) {
      return;
    }
    setBusy(true);
    try {
      const ex = await model.client.trigger(w.name, {
        inputs,
        cluster: cluster || null,
        version: w.version
      });
      onStarted(ex.id);
    } catch (e) {
      setError(message(e));
      setProblems(details(e));
    } finally {
      setBusy(false);
    }
  };

  return (
    <form
      className="jp-StaxWorkflowForm"
      data-workflow={w.name}
      onSubmit={e => {
        e.preventDefault();
        void run();
      }}
    >
      {w.description && <div className="jp-StaxMuted">{w.description}</div>}
      {(w.inputs ?? []).map(d => {
        const type = fieldType(d);
        const v = values[d.name];
        return (
          <label
            key={d.name}
            className="jp-StaxInput"
            data-input={d.name}
            data-type={d.type}
            title={d.description ?? ''}
          >
            <span className="jp-StaxInput-name">
              {d.name}
              {d.required ? ' *' : ''}
            </span>
            <span className="jp-StaxMuted jp-StaxInput-type">{d.type}</span>
            {type === 'checkbox' ? (
              <input
                type="checkbox"
                checked={v === true}
                onChange={e =>
                  setValues({ ...values, [d.name]: e.currentTarget.checked })
                }
              />
            ) : (
              <input
                className="jp-StaxInput-field"
                type={type}
                step={d.type === 'integer' ? 1 : 'any'}
                value={typeof v === 'string' ? v : ''}
                placeholder={
                  d.required ? 'required' : `default ${String(d.default)}`
                }
                onChange={e =>
                  setValues({ ...values, [d.name]: e.currentTarget.value })
                }
              />
            )}
            {d.description && (
              <span className="jp-StaxMuted jp-StaxInput-description">
                {d.description}
              </span>
            )}
          </label>
        );
      })}
      <div className="jp-StaxRow">
        <label className="jp-StaxMuted">
          cluster{' '}
          <select
            className="jp-StaxSelect jp-StaxWorkflowCluster"
            value={cluster}
            onChange={e => setCluster(e.currentTarget.value)}
          >
            <option value="">{w.default_cluster ?? 'server default'}</option>
            {model.clusters.map(c => (
              <option key={c.info.name} value={c.info.name}>
                {c.info.name}
              </option>
            ))}
          </select>
        </label>
        <button
          type="submit"
          className="jp-StaxButton jp-StaxWorkflowRun"
          disabled={busy}
        >
          Run
        </button>
      </div>
      <ErrorLine error={error} />
      {problems.length > 0 && (
        <ul className="jp-StaxProblems" role="alert">
          {problems.map(p => (
            <li key={p}>{p}</li>
          ))}
        </ul>
      )}
    </form>
  );
}

export function WorkflowsSection(props: {
  model: StaxModel;
  commands: CommandRegistry;
  openCommand: string;
}): React.JSX.Element {
  const { model, commands, openCommand } = props;
  const [items, setItems] = useState<PublishedSummary[]>([]);
  const [chosen, setChosen] = useState<PublishedWorkflow | null>(null);
  const [runs, setRuns] = useState<ExecutionSummary[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [started, setStarted] = useState<string | null>(null);

  const load = useCallback(async () => {
    try {
      setItems(await model.client.workflows());
      setError(null);
    } catch (e) {
      setError(message(e));
    }
  }, [model]);

  const loadRuns = useCallback(
    async (name: string) => {
      try {
        const page = await model.client.executions({
          workflow: name,
          limit: 10
        });
        setRuns(page.executions);
      } catch (e) {
        setError(message(e));
      }
    },
    [model]
  );

  useEffect(() => {
    void load();
    // what the sidebar shows changes with every event: look again at most once a second
    let timer: ReturnType<typeof setTimeout> | null = null;
    const again = () => {
      if (timer !== null) {
        return;
      }
      timer = setTimeout(() => {
        timer = null;
        void load();
        if (chosen) {
          void loadRuns(chosen.name);
        }
      }, 1000);
    };
    model.changed.connect(again);
    return () => {
      model.changed.disconnect(again);
      if (timer !== null) {
        clearTimeout(timer);
      }
    };
  }, [model, chosen?.name]);

  const choose = async (name: string) => {
    setStarted(null);
    if (!name) {
      setChosen(null);
      setRuns([]);
      return;
    }
    try {
      setChosen(await model.client.workflow(name));
      void loadRuns(name);
    } catch (e) {
      setError(message(e));
    }
  };

  return (
    <details className="jp-StaxSection jp-StaxWorkflows" open>
      <summary>Workflows</summary>
      <ErrorLine error={error} />
      {items.length === 0 && !error ? (
        <div className="jp-StaxMuted jp-StaxEmpty">
          No published workflows: publish one with jupyter stax publish FILE or
          %stax publish.
        </div>
      ) : (
        <div className="jp-StaxRow">
          <select
            className="jp-StaxSelect jp-StaxWorkflowPick"
            value={chosen?.name ?? ''}
            onChange={e => void choose(e.currentTarget.value)}
          >
            <option value="">choose a workflow</option>
            {items.map(w => (
              <option key={w.name} value={w.name}>
                {w.name} (version {w.version})
              </option>
            ))}
          </select>
        </div>
      )}
      {chosen && (
        <TriggerForm
          model={model}
          workflow={chosen}
          onStarted={id => {
            setStarted(id);
            void loadRuns(chosen.name);
          }}
        />
      )}
      {started && (
        <div
          className="jp-StaxMuted jp-StaxWorkflowStarted"
          data-execution-id={started}
        >
          started {shortId(started)}
        </div>
      )}
      {chosen && (
        <ul className="jp-StaxList jp-StaxWorkflowRuns">
          {runs.map(ex => (
            <li
              key={ex.id}
              className="jp-StaxWorkflowRunItem"
              data-execution-id={ex.id}
              data-state={ex.state}
              onDoubleClick={() =>
                void commands.execute(openCommand, { id: ex.id })
              }
            >
              <div className="jp-StaxRow">
                <StateBadge state={ex.state} />
                <span className="jp-StaxMono">{shortId(ex.id)}</span>
                <span className="jp-StaxMuted">
                  version {ex.origin?.version ?? '?'} on {ex.cluster}
                </span>
              </div>
            </li>
          ))}
        </ul>
      )}
    </details>
  );
}
