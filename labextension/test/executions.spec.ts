import type { ExecutionEvent, StepEvent } from '../src/api/types';
import {
  executionsReducer,
  initialExecutions,
  statusCounts,
  statusText,
  summaryOf,
  type ExecutionsState
} from '../src/model/executions';
import { execution, summary } from './fixtures';

function exEvent(
  id: string,
  over: Partial<ExecutionEvent> = {}
): ExecutionEvent {
  return {
    kind: 'execution',
    id,
    state: 'running',
    previous: 'pending',
    done: 1,
    total: 2,
    warnings: [],
    time: '2026-11-22T12:00:00+00:00',
    ...over
  };
}

function stepEvent(id: string, over: Partial<StepEvent> = {}): StepEvent {
  return {
    kind: 'step',
    execution_id: id,
    step: 'a',
    state: 'running',
    previous: 'queued',
    execution_state: 'running',
    attempt: 1,
    native_id: '42',
    exit_code: null,
    reason: null,
    time: '2026-11-22T12:00:00+00:00',
    ...over
  };
}

const page = (ids: string[], next: string | null = null) => ({
  executions: ids.map((id, i) =>
    summary(id, { created_at: `2026-11-22T10:0${9 - i}:00+00:00` })
  ),
  next_cursor: next
});

describe('executionsReducer', () => {
  it('lists a first page newest first, then appends older pages', () => {
    let s = executionsReducer(initialExecutions, {
      type: 'page',
      page: page(['b', 'a'], 'c1'),
      append: false
    });
    expect(s.items.map(x => x.id)).toEqual(['b', 'a']);
    expect(s.nextCursor).toBe('c1');
    expect(s.loaded).toBe(true);
    s = executionsReducer(s, {
      type: 'page',
      page: {
        executions: [
          summary('old', { created_at: '2026-11-21T00:00:00+00:00' })
        ],
        next_cursor: null
      },
      append: true
    });
    expect(s.items.map(x => x.id)).toEqual(['b', 'a', 'old']);
    expect(s.nextCursor).toBeNull();
  });

  it('updates a listed execution from its event, and marks an unknown one missing', () => {
    let s = executionsReducer(initialExecutions, {
      type: 'page',
      page: page(['a']),
      append: false
    });
    s = executionsReducer(s, {
      type: 'event',
      event: exEvent('a', { state: 'completed', previous: 'running', done: 2 }),
      now: 5
    });
    expect(s.items[0]).toMatchObject({
      state: 'completed',
      done: 2,
      finished_at: '2026-11-22T12:00:00+00:00'
    });
    expect(s.lastEventAt).toBe(5);
    s = executionsReducer(s, {
      type: 'event',
      event: exEvent('new', { previous: null, state: 'pending' }),
      now: 6
    });
    expect(s.missing).toEqual(['new']);
    // the fetched execution joins the list (newest first) and is no longer missing
    s = executionsReducer(s, {
      type: 'execution',
      execution: execution('new')
    });
    expect(s.items.map(x => x.id)).toEqual(['new', 'a']);
    expect(s.missing).toEqual([]);
  });

  it('keeps "being checked" until the execution is final or listed again', () => {
    let s = executionsReducer(initialExecutions, {
      type: 'page',
      page: {
        executions: [summary('a', { unverified: true })],
        next_cursor: null
      },
      append: false
    });
    expect(s.items[0].unverified).toBe(true);
    // a running event is no proof that the engine's first pass is over
    s = executionsReducer(s, { type: 'event', event: exEvent('a'), now: 1 });
    expect(s.items[0].unverified).toBe(true);
    s = executionsReducer(s, {
      type: 'event',
      event: exEvent('a', { state: 'failed', previous: 'running', done: 2 }),
      now: 2
    });
    expect(s.items[0].unverified).toBe(false);
    s = executionsReducer(s, {
      type: 'execution',
      execution: execution('a', { unverified: true })
    });
    expect(s.items[0].unverified).toBe(true);
    s = executionsReducer(s, {
      type: 'page',
      page: { executions: [summary('a')], next_cursor: null },
      append: false
    });
    expect(s.items[0].unverified).toBe(false);
  });

  it('moves step counts on step events and ignores same-state facts', () => {
    let s: ExecutionsState = executionsReducer(initialExecutions, {
      type: 'page',
      page: {
        executions: [summary('a', { counts: { queued: 1, pending: 1 } })],
        next_cursor: null
      },
      append: false
    });
    s = executionsReducer(s, { type: 'event', event: stepEvent('a'), now: 1 });
    expect(s.items[0].counts).toEqual({ pending: 1, running: 1 });
    const same = executionsReducer(s, {
      type: 'event',
      event: stepEvent('a', { previous: 'running' }),
      now: 2
    });
    expect(same.items[0].counts).toEqual({ pending: 1, running: 1 });
  });

  it('keeps a filter: leaving executions drop out, others are not fetched', () => {
    let s = executionsReducer(initialExecutions, {
      type: 'filter',
      filter: 'running'
    });
    s = executionsReducer(s, {
      type: 'page',
      page: page(['a', 'b']),
      append: false
    });
    s = executionsReducer(s, {
      type: 'event',
      event: exEvent('a', { state: 'failed', previous: 'running' }),
      now: 1
    });
    expect(s.items.map(x => x.id)).toEqual(['b']);
    s = executionsReducer(s, {
      type: 'event',
      event: exEvent('z', { state: 'completed' }),
      now: 2
    });
    expect(s.missing).toEqual([]);
  });

  it('keeps executions added by events when the first page is read again', () => {
    let s = executionsReducer(initialExecutions, {
      type: 'page',
      page: page(['a']),
      append: false
    });
    s = executionsReducer(s, {
      type: 'execution',
      execution: execution('fresh')
    });
    s = executionsReducer(s, {
      type: 'page',
      page: page(['a']),
      append: false
    });
    expect(s.items.map(x => x.id)).toEqual(['fresh', 'a']);
  });

  it('forgets an execution that is gone', () => {
    let s = executionsReducer(initialExecutions, {
      type: 'page',
      page: page(['a']),
      append: false
    });
    s = executionsReducer(s, { type: 'gone', id: 'a' });
    expect(s.items).toEqual([]);
  });
});

describe('summaryOf', () => {
  it('counts steps per state and the final ones as done', () => {
    const s = summaryOf(execution('e'));
    expect(s).toMatchObject({
      id: 'e',
      name: 'wf-e',
      done: 1,
      total: 2,
      counts: { completed: 1, running: 1 }
    });
  });
});

describe('status bar', () => {
  it('counts pending and running, and failures of the last day', () => {
    const now = Date.parse('2026-11-22T12:00:00Z');
    const items = [
      summary('a', { state: 'running' }),
      summary('b', { state: 'pending' }),
      summary('c', { state: 'failed', finished_at: '2026-11-22T11:00:00Z' }),
      summary('d', { state: 'failed', finished_at: '2026-11-20T11:00:00Z' }),
      summary('e', { state: 'completed' })
    ];
    const c = statusCounts(items, now);
    expect(c).toEqual({ running: 2, failed: 1 });
    expect(statusText(c)).toBe('StaX: 2 running, 1 failed');
    expect(statusText({ running: 0, failed: 0 })).toBe('StaX: 0 running');
  });
});
