/** In an execution's tab: the button that opens a notebook step's executed copy. */
import React from 'react';

import type { StepRun } from '../api/types';

/** Shown for a step whose executed notebook is here (`files.notebook`). */
export function ExecutedNotebookButton(props: {
  step: StepRun | undefined;
  open?: (local: string) => void;
}): React.JSX.Element | null {
  const local = props.step?.files?.notebook;
  const open = props.open;
  if (!local || !open) {
    return null;
  }
  return (
    <button
      className="jp-StaxButton jp-StaxOpenExecutedNotebook"
      data-step={props.step?.name}
      title={local}
      onClick={() => open(local)}
    >
      Open executed notebook
    </button>
  );
}
