import React, { useEffect, useState } from 'react';

import type { ExecutionState, StepState } from '../api/types';

/** The current time, re-read every `everyMs` while the component is mounted (for ages). */
export function useNow(everyMs = 15000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), everyMs);
    return () => clearInterval(t);
  }, [everyMs]);
  return now;
}

export function StateBadge(props: {
  state: ExecutionState | StepState;
}): React.JSX.Element {
  return (
    <span
      className={`jp-StaxState jp-StaxState-${props.state}`}
      data-state={props.state}
    >
      {props.state}
    </span>
  );
}

/**
 * Beside a state the server has not checked with the scheduler yet (`unverified` of the API:
 * a detached execution, or one whose engine was gone, before the adopting engine's first
 * reconcile pass): the state shown is the one at submission, not a current one.
 */
export function Unverified(): React.JSX.Element {
  return (
    <span
      className="jp-StaxUnverified"
      title="states as of the submission (or the last engine's last look); being checked with the scheduler"
    >
      being checked
    </span>
  );
}

export function ErrorLine(props: {
  error: string | null;
}): React.JSX.Element | null {
  return props.error ? (
    <div className="jp-StaxError" role="alert">
      {props.error}
    </div>
  ) : null;
}
