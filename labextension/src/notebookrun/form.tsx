/**
 * The "Run on a cluster..." form of a notebook (issue 16): the cluster with its live numbers
 * (as the sidebar shows them), the StaX image with its fit on that cluster, resources, and the
 * parameters read from the notebook's `parameters` cell, prefilled with their defaults.
 * Submit sends a one-step workflow (`notebook:` + `params:`) through `POST executions`.
 */
import { ReactWidget } from '@jupyterlab/ui-components';
import React, { useEffect, useState } from 'react';

import { StaxAPIError } from '../api/client';
import type {
  ClusterDetail,
  ClusterInfo,
  ImageList,
  NotebookParameters
} from '../api/types';
import { groupImages } from '../model/images';
import type { StaxModel } from '../model/model';
import { connectionText, summaryText } from '../widgets/panel';
import { ErrorLine } from '../widgets/common';
import {
  changedValues,
  initialFields,
  submitRequest,
  type FieldState,
  type Resources
} from './logic';

function message(e: unknown): string {
  if (e instanceof StaxAPIError && e.details.length) {
    return `${e.message}: ${e.details.join('; ')}`;
  }
  return e instanceof Error ? e.message : String(e);
}

/** How often the chosen cluster's live numbers are read again while the form is open. */
const LIVE_MS = 15_000;

function RunNotebookView(props: {
  model: StaxModel;
  path: string;
  onSubmitted: (id: string) => void;
}): React.JSX.Element {
  const { model, path, onSubmitted } = props;
  const [clusters, setClusters] = useState<ClusterInfo[]>([]);
  const [cluster, setCluster] = useState('');
  const [detail, setDetail] = useState<ClusterDetail | null>(null);
  const [detailError, setDetailError] = useState<string | null>(null);
  const [images, setImages] = useState<ImageList | null>(null);
  const [image, setImage] = useState('');
  const [resources, setResources] = useState<Resources>({});
  const [nbParams, setNbParams] = useState<NotebookParameters | null>(null);
  const [fields, setFields] = useState<FieldState[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    let alive = true;
    model.client
      .clusters()
      .then(list => {
        if (alive) {
          setClusters(list);
          setCluster(c => c || (list[0]?.name ?? ''));
        }
      })
      .catch((e: unknown) => alive && setError(message(e)));
    model.client
      .notebookParameters(path)
      .then(p => {
        if (alive) {
          setNbParams(p);
          setFields(initialFields(p.parameters ?? []));
        }
      })
      .catch((e: unknown) => alive && setError(message(e)));
    return () => {
      alive = false;
    };
  }, [model, path]);

  // the chosen cluster: its live numbers (again every LIVE_MS) and the images' fit on it
  useEffect(() => {
    if (!cluster) {
      return;
    }
    let alive = true;
    const live = () =>
      model.client
        .cluster(cluster)
        .then(d => {
          if (alive) {
            setDetail(d);
            setDetailError(null);
          }
        })
        .catch((e: unknown) => alive && setDetailError(message(e)));
    setDetail(null);
    void live();
    const timer = setInterval(() => void live(), LIVE_MS);
    model.client
      .images({ cluster })
      .then(list => alive && setImages(list))
      .catch(() => alive && setImages(null));
    return () => {
      alive = false;
      clearInterval(timer);
    };
  }, [model, cluster]);

  const setField = (name: string, text: string) =>
    setFields(fs => fs.map(f => (f.name === name ? { ...f, text } : f)));

  const submit = async () => {
    const { params, errors } = changedValues(fields);
    if (errors.length) {
      setError(errors.join('; '));
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const ex = await model.client.submit(
        submitRequest({
          path,
          cluster,
          image: image || null,
          params,
          resources
        })
      );
      onSubmitted(ex.id);
    } catch (e) {
      setError(message(e));
    } finally {
      setBusy(false);
    }
  };

  const families = groupImages(images);
  const conn = connectionText(detail);
  const res = (key: keyof Resources, label: string, placeholder: string) => (
    <label className="jp-StaxRunNotebook-resource">
      {label}
      <input
        className="jp-mod-styled"
        data-resource={key}
        value={resources[key] ?? ''}
        placeholder={placeholder}
        onChange={e => {
          const value = e.currentTarget.value;
          setResources(r => ({ ...r, [key]: value }));
        }}
      />
    </label>
  );
  return (
    <div className="jp-StaxRunNotebook" data-path={path}>
      <div className="jp-StaxMuted jp-StaxMono">{path}</div>
      <label className="jp-StaxRunNotebook-row">
        Cluster
        <select
          className="jp-mod-styled jp-StaxRunNotebook-cluster"
          value={cluster}
          onChange={e => setCluster(e.currentTarget.value)}
        >
          {clusters.map(c => (
            <option key={c.name} value={c.name}>
              {c.name} ({c.scheduler})
            </option>
          ))}
        </select>
      </label>
      <div
        className="jp-StaxMuted jp-StaxRunNotebook-live"
        data-cluster={cluster}
      >
        {detailError ? (
          <span className="jp-StaxError-text">{detailError}</span>
        ) : detail ? (
          summaryText(detail)
        ) : (
          'reading its live numbers…'
        )}
        {conn && <div>{conn}</div>}
      </div>
      <label className="jp-StaxRunNotebook-row">
        StaX image
        <select
          className="jp-mod-styled jp-StaxRunNotebook-image"
          value={image}
          onChange={e => setImage(e.currentTarget.value)}
        >
          <option value="">(none: the cluster's python3)</option>
          {families.flatMap(f =>
            f.variants.map(v => (
              <option
                key={v.name}
                value={v.name}
                data-fit={v.fit}
                title={v.reason ?? ''}
              >
                {v.name} —{' '}
                {v.fit === 'fits'
                  ? 'fits'
                  : v.fit === 'fails'
                    ? `does not fit${v.reason ? `: ${v.reason}` : ''}`
                    : 'not judged'}
              </option>
            ))
          )}
        </select>
      </label>
      <div className="jp-StaxRunNotebook-resources">
        {res('cpus_per_task', 'CPUs', 'default')}
        {res('gpus', 'GPUs', '0')}
        {res('memory', 'Memory', 'e.g. 4G')}
        {res('time', 'Time', 'HH:MM:SS')}
      </div>
      <div className="jp-StaxRunNotebook-params">
        <div className="jp-StaxRunNotebook-title">
          Parameters
          {nbParams?.tagged && nbParams.cell ? (
            <span className="jp-StaxMuted"> (cell {nbParams.cell})</span>
          ) : null}
        </div>
        {nbParams && !nbParams.tagged && (
          <div className="jp-StaxMuted">
            This notebook has no cell tagged “parameters”: it runs as it is.
          </div>
        )}
        {(nbParams?.problems ?? []).map(p => (
          <div key={p} className="jp-StaxWarning">
            {p}
          </div>
        ))}
        {fields.map(f => (
          <label
            key={f.name}
            className="jp-StaxRunNotebook-param"
            title={f.help ?? ''}
          >
            <span className="jp-StaxMono">{f.name}</span>
            {f.type === 'bool' && f.settable ? (
              <input
                type="checkbox"
                data-param={f.name}
                checked={f.text.toLowerCase() === 'true'}
                onChange={e =>
                  setField(f.name, e.currentTarget.checked ? 'true' : 'false')
                }
              />
            ) : (
              <input
                className="jp-mod-styled"
                data-param={f.name}
                value={f.text}
                disabled={!f.settable}
                onChange={e => setField(f.name, e.currentTarget.value)}
              />
            )}
            <span className="jp-StaxMuted">
              {f.type}
              {f.help ? ` · ${f.help}` : ''}
              {f.settable ? '' : ' · not settable here'}
            </span>
          </label>
        ))}
      </div>
      <ErrorLine error={error} />
      <div className="jp-StaxRow">
        <button
          className="jp-StaxButton jp-mod-accept jp-StaxRunNotebook-submit"
          disabled={busy || !cluster}
          onClick={() => void submit()}
        >
          {busy ? 'Submitting…' : 'Submit'}
        </button>
      </div>
    </div>
  );
}

/** The form as a widget (the body of the dialog of "Run on a cluster..."). */
export class RunNotebookForm extends ReactWidget {
  constructor(
    private readonly model: StaxModel,
    readonly path: string,
    private readonly onSubmitted: (id: string) => void
  ) {
    super();
    this.addClass('jp-StaxRunNotebook-widget');
  }

  render(): React.JSX.Element {
    return (
      <RunNotebookView
        model={this.model}
        path={this.path}
        onSubmitted={this.onSubmitted}
      />
    );
  }
}
