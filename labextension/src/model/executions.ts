/**
 * The executions list of the sidebar as a pure reducer: pages from `GET executions`, events from
 * the server's event stream and single executions fetched after an event about an unknown one.
 * No I/O here; `StaxModel` feeds it and tells the widgets.
 */
import {
  FINAL_EXECUTION_STATES,
  FINAL_STEP_STATES,
  type Execution,
  type ExecutionEvent,
  type ExecutionPage,
  type ExecutionState,
  type ExecutionSummary,
  type StepEvent
} from '../api/types';

export interface ExecutionsState {
  /** Newest first (by created_at, then id). */
  readonly items: readonly ExecutionSummary[];
  /** Only executions in this state are listed (null: all). */
  readonly filter: ExecutionState | null;
  /** Cursor of the next (older) page; null on the last page. */
  readonly nextCursor: string | null;
  /** At least one page arrived. */
  readonly loaded: boolean;
  /** Ids named by events but not in `items` yet: the model fetches them. */
  readonly missing: readonly string[];
  /** Time (ms) of the last event received; 0 before the first. */
  readonly lastEventAt: number;
}

export type ExecutionsAction =
  | { type: 'page'; page: ExecutionPage; append: boolean }
  | { type: 'filter'; filter: ExecutionState | null }
  | { type: 'event'; event: ExecutionEvent | StepEvent; now: number }
  | { type: 'execution'; execution: Execution }
  | { type: 'gone'; id: string };

export const initialExecutions: ExecutionsState = {
  items: [],
  filter: null,
  nextCursor: null,
  loaded: false,
  missing: [],
  lastEventAt: 0
};

function newestFirst(a: ExecutionSummary, b: ExecutionSummary): number {
  const t = Date.parse(b.created_at) - Date.parse(a.created_at);
  return t !== 0 ? t : b.id < a.id ? -1 : b.id > a.id ? 1 : 0;
}

/** The list line of a full execution (what `GET executions` would answer for it). */
export function summaryOf(ex: Execution): ExecutionSummary {
  const counts: Record<string, number> = {};
  let done = 0;
  for (const s of ex.steps) {
    const state = s.state ?? 'pending';
    counts[state] = (counts[state] ?? 0) + 1;
    if (FINAL_STEP_STATES.has(state)) {
      done += 1;
    }
  }
  return {
    id: ex.id,
    name: ex.workflow.name ?? ex.id,
    cluster: ex.cluster,
    state: ex.state ?? 'pending',
    created_at: ex.created_at,
    finished_at: ex.finished_at ?? null,
    done,
    total: ex.steps.length,
    counts,
    warnings: ex.warnings ?? [],
    unverified: ex.unverified ?? false
  };
}

function upsert(
  items: readonly ExecutionSummary[],
  s: ExecutionSummary
): ExecutionSummary[] {
  const out = items.filter(x => x.id !== s.id);
  out.push(s);
  return out.sort(newestFirst);
}

function matches(filter: ExecutionState | null, s: ExecutionSummary): boolean {
  return filter === null || s.state === filter;
}

function addMissing(missing: readonly string[], id: string): readonly string[] {
  return missing.includes(id) ? missing : [...missing, id];
}

function applyExecutionEvent(
  state: ExecutionsState,
  ev: ExecutionEvent
): ExecutionsState {
  const item = state.items.find(x => x.id === ev.id);
  if (!item) {
    // a new execution (or one older than the loaded page): fetch it unless it is filtered out
    if (state.filter !== null && ev.state !== state.filter) {
      return state;
    }
    return { ...state, missing: addMissing(state.missing, ev.id) };
  }
  const finished = FINAL_EXECUTION_STATES.has(ev.state)
    ? (item.finished_at ?? ev.time)
    : null;
  const next: ExecutionSummary = {
    ...item,
    state: ev.state,
    done: ev.done,
    total: ev.total,
    warnings: ev.warnings,
    // the engine's events do not say when its first reconcile pass ends: a final state
    // does; otherwise the next `GET executions` does
    unverified: (item.unverified ?? false) && finished === null,
    finished_at: finished
  };
  const items = matches(state.filter, next)
    ? state.items.map(x => (x.id === ev.id ? next : x))
    : state.items.filter(x => x.id !== ev.id);
  return { ...state, items };
}

function applyStepEvent(
  state: ExecutionsState,
  ev: StepEvent
): ExecutionsState {
  const item = state.items.find(x => x.id === ev.execution_id);
  if (!item) {
    if (state.filter !== null && ev.execution_state !== state.filter) {
      return state;
    }
    return { ...state, missing: addMissing(state.missing, ev.execution_id) };
  }
  if (ev.previous === ev.state || ev.previous === null) {
    return state; // new facts in the same state (job id, reason), or the step's creation
  }
  const previous = ev.previous;
  const counts: Record<string, number> = Object.fromEntries(
    Object.entries(item.counts ?? {}).filter(([k]) => k !== previous)
  );
  const before = (item.counts?.[previous] ?? 0) - 1;
  if (before > 0) {
    counts[previous] = before;
  }
  counts[ev.state] = (counts[ev.state] ?? 0) + 1;
  const next: ExecutionSummary = {
    ...item,
    counts,
    state: ev.execution_state ?? item.state
  };
  return {
    ...state,
    items: state.items.map(x => (x.id === item.id ? next : x))
  };
}

export function executionsReducer(
  state: ExecutionsState,
  action: ExecutionsAction
): ExecutionsState {
  switch (action.type) {
    case 'page': {
      const incoming = action.page.executions.filter(s =>
        matches(state.filter, s)
      );
      let items: ExecutionSummary[];
      if (action.append) {
        items = [...state.items];
        for (const s of incoming) {
          items = upsert(items, s);
        }
      } else {
        // a fresh first page replaces the list, but keeps what events added since
        const oldest = incoming.length
          ? incoming[incoming.length - 1].created_at
          : null;
        const kept = state.items.filter(
          x =>
            !incoming.some(s => s.id === x.id) &&
            oldest !== null &&
            Date.parse(x.created_at) > Date.parse(oldest) &&
            matches(state.filter, x)
        );
        items = [...incoming, ...kept].sort(newestFirst);
      }
      const ids = new Set(items.map(x => x.id));
      return {
        ...state,
        items,
        nextCursor: action.page.next_cursor ?? null,
        loaded: true,
        missing: state.missing.filter(id => !ids.has(id))
      };
    }
    case 'filter':
      if (action.filter === state.filter) {
        return state;
      }
      return { ...initialExecutions, filter: action.filter };
    case 'event': {
      const next =
        action.event.kind === 'execution'
          ? applyExecutionEvent(state, action.event)
          : applyStepEvent(state, action.event);
      return { ...next, lastEventAt: action.now };
    }
    case 'execution': {
      const s = summaryOf(action.execution);
      const missing = state.missing.filter(id => id !== s.id);
      if (!matches(state.filter, s)) {
        return {
          ...state,
          items: state.items.filter(x => x.id !== s.id),
          missing
        };
      }
      return { ...state, items: upsert(state.items, s), missing };
    }
    case 'gone':
      return {
        ...state,
        items: state.items.filter(x => x.id !== action.id),
        missing: state.missing.filter(id => id !== action.id)
      };
  }
}

/** Executions not final yet. */
export function activeCount(items: readonly ExecutionSummary[]): number {
  return items.filter(x => !FINAL_EXECUTION_STATES.has(x.state)).length;
}

export interface StatusCounts {
  running: number;
  failed: number;
}

/**
 * What the status bar says: executions pending or running, and those that failed within
 * `recentMs` (default: the last 24 hours) among the listed ones.
 */
export function statusCounts(
  items: readonly ExecutionSummary[],
  now: number,
  recentMs = 24 * 3600 * 1000
): StatusCounts {
  let running = 0;
  let failed = 0;
  for (const x of items) {
    if (x.state === 'pending' || x.state === 'running') {
      running += 1;
    } else if (x.state === 'failed') {
      const t = Date.parse(x.finished_at ?? x.created_at);
      if (now - t <= recentMs) {
        failed += 1;
      }
    }
  }
  return { running, failed };
}

export function statusText(c: StatusCounts): string {
  const parts = [`${c.running} running`];
  if (c.failed) {
    parts.push(`${c.failed} failed`);
  }
  return `StaX: ${parts.join(', ')}`;
}
