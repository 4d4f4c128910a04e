import { StaxClient } from '../src/api/client';
import type {
  InstanceInfo,
  InstancePage,
  SweepSummary
} from '../src/api/types';
import {
  EMPTY_VIEW,
  InstancePager,
  paramsText,
  sweepLine,
  withPage
} from '../src/model/sweep';
import { FakeServer } from './fixtures';

function summary(counts: Record<string, number>, total: number): SweepSummary {
  return { total, counts, failed: [], jobs: [] };
}

function page(
  indices: [number, InstanceInfo['state']][],
  next: string | null,
  total = 100
): InstancePage {
  return {
    total,
    counts: { failed: 3, completed: 97 },
    next_cursor: next,
    items: indices.map(([index, state]) => ({
      index,
      state,
      exit_code: state === 'failed' ? 9 : 0,
      attempt: 1,
      params: { n: index, tag: 'a b' },
      directory: `/runs/x/sim/${index}`
    }))
  };
}

describe('sweepLine', () => {
  it.each([
    [
      { completed: 9812, failed: 3, running: 185 },
      10000,
      '9,812/10,000 done, 3 failed, 185 running'
    ],
    [{ completed: 2 }, 2, '2/2 done'],
    [{}, 5, '0/5 done'],
    [{ failed: 1, lost: 2, canceled: 4 }, 7, '0/7 done, 3 failed, 4 canceled'],
    [{ queued: 3, pending: 2, running: 1 }, 6, '0/6 done, 1 running, 5 waiting']
  ])('%j of %i', (counts, total, line) => {
    expect(sweepLine(summary(counts, total))).toBe(line);
  });
});

describe('instance pages', () => {
  it('a first page replaces, a next one appends each instance once', () => {
    let v = withPage(
      EMPTY_VIEW,
      page(
        [
          [4, 'failed'],
          [40, 'failed']
        ],
        '2'
      ),
      false
    );
    expect(v.items.map(i => i.index)).toEqual([4, 40]);
    expect(v.nextCursor).toBe('2');
    expect(v.loaded).toBe(true);
    // instance 40 shows again (its state changed between the pages): kept once
    v = withPage(
      v,
      page(
        [
          [40, 'completed'],
          [0, 'completed']
        ],
        null
      ),
      true
    );
    expect(v.items.map(i => [i.index, i.state])).toEqual([
      [4, 'failed'],
      [40, 'failed'],
      [0, 'completed']
    ]);
    expect(v.nextCursor).toBeNull();
    v = withPage(v, page([[1, 'completed']], null), false);
    expect(v.items.map(i => i.index)).toEqual([1]);
  });

  it('params read as name=value', () => {
    expect(paramsText({ n: 1, seed: 4, ok: true, none: null })).toBe(
      'n=1 seed=4 ok=true none=null'
    );
    expect(paramsText({})).toBe('');
  });

  it('the pager reads pages through the REST route, with the filter and the cursor', async () => {
    const base = 'executions/ab%2Fc/steps/sim/instances';
    const srv = new FakeServer()
      .on(
        'GET',
        `${base}?limit=2`,
        200,
        page(
          [
            [4, 'failed'],
            [40, 'failed']
          ],
          '2'
        )
      )
      .on(
        'GET',
        `${base}?cursor=2&limit=2`,
        200,
        page([[0, 'completed']], null)
      )
      .on(
        'GET',
        `${base}?state=failed&limit=2`,
        200,
        page([[4, 'failed']], null)
      );
    let changes = 0;
    const pager = new InstancePager(
      new StaxClient(srv.transport),
      'ab/c',
      'sim',
      () => (changes += 1),
      2
    );
    await pager.load(null);
    expect(pager.view.items.map(i => i.index)).toEqual([4, 40]);
    await pager.more();
    expect(pager.view.items.map(i => i.index)).toEqual([4, 40, 0]);
    await pager.more(); // no next page: nothing asked
    expect(srv.calls).toHaveLength(2);
    await pager.load('failed');
    expect(pager.view.filter).toBe('failed');
    expect(pager.view.items.map(i => i.index)).toEqual([4]);
    expect(pager.error).toBeNull();
    expect(pager.loading).toBe(false);
    expect(changes).toBeGreaterThanOrEqual(6);
  });

  it('an error answer is kept to show; the last load wins', async () => {
    const base = 'executions/x/steps/plain/instances';
    const srv = new FakeServer().on('GET', `${base}?limit=50`, 400, {
      message: "step 'plain' is not a sweep; it has no instances",
      details: [],
      error: 'BadRequest'
    });
    const pager = new InstancePager(
      new StaxClient(srv.transport),
      'x',
      'plain'
    );
    await pager.load();
    expect(pager.error).toBe(
      "step 'plain' is not a sweep; it has no instances"
    );
    expect(pager.view.loaded).toBe(false);
  });
});
