/**
 * A step's files in the execution tab: the regular files of its directory with their sizes
 * (listed by the server through the step's cluster) and a Download action per file (the bytes
 * come through the cluster's transport; the server refuses anything outside the step directory).
 */
import { showErrorMessage } from '@jupyterlab/apputils';
import React, { useCallback, useEffect, useState } from 'react';

import type { Execution, StepFileList } from '../api/types';
import { bytes } from '../model/bytes';
import type { StaxModel } from '../model/model';

/** Save a blob under `filename` through the browser's download. */
export function saveBlob(blob: Blob, filename: string): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** Download one file of a step; errors in a dialog. */
export async function downloadStepFile(
  model: StaxModel,
  id: string,
  step: string,
  path: string
): Promise<boolean> {
  try {
    const { blob, filename } = await model.client.downloadStepFile(
      id,
      step,
      path
    );
    saveBlob(blob, filename);
    return true;
  } catch (e) {
    await showErrorMessage(
      `Could not download ${path}`,
      e instanceof Error ? e.message : String(e)
    );
    return false;
  }
}

export function StepFiles(props: {
  model: StaxModel;
  execution: Execution;
  step: string;
}): React.JSX.Element {
  const { model, execution, step } = props;
  const run = execution.steps.find(s => s.name === step);
  // listed again when the step moves on (a new attempt, or it ended and wrote more)
  const version = `${run?.state}:${run?.attempt}`;
  const [list, setList] = useState<StepFileList | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState<string | null>(null);

  const load = useCallback(async () => {
    try {
      setList(await model.client.stepFiles(execution.id, step));
      setError(null);
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    }
  }, [model, execution.id, step]);

  useEffect(() => {
    void load();
  }, [load, version]);

  const download = async (path: string) => {
    setBusy(path);
    try {
      await downloadStepFile(model, execution.id, step, path);
    } finally {
      setBusy(null);
    }
  };

  return (
    <div className="jp-StaxStepFiles" data-step={step}>
      <div className="jp-StaxStepFiles-head">
        <span className="jp-StaxStepFiles-title">Files of {step}</span>
        <button
          className="jp-StaxButton jp-StaxStepFiles-refresh"
          onClick={() => void load()}
        >
          Refresh
        </button>
      </div>
      {error && <div className="jp-StaxError">{error}</div>}
      {list && (list.files ?? []).length === 0 && (
        <div className="jp-StaxMuted">No files yet.</div>
      )}
      {list && (list.files ?? []).length > 0 && (
        <table className="jp-StaxStepFiles-table">
          <tbody>
            {(list.files ?? []).map(f => (
              <tr key={f.path} data-path={f.path}>
                <td className="jp-StaxMono jp-StaxStepFiles-path">{f.path}</td>
                <td className="jp-StaxStepFiles-size">{bytes(f.size)}</td>
                <td>
                  <button
                    className="jp-StaxButton jp-StaxStepFiles-download"
                    disabled={busy === f.path}
                    title={`Download ${f.path} (${bytes(f.size)})`}
                    onClick={() => void download(f.path)}
                  >
                    {busy === f.path ? 'Downloading…' : 'Download'}
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {list && (list.truncated || (list.links ?? 0) > 0) && (
        <div className="jp-StaxMuted">
          {list.truncated ? 'Only the first files are listed. ' : ''}
          {(list.links ?? 0) > 0
            ? `${list.links} symbolic link(s) left out (never followed).`
            : ''}
        </div>
      )}
    </div>
  );
}
