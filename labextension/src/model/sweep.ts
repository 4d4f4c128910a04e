/**
 * A sweep step in the execution detail tab: ONE row with its counts (the same words as
 * `jupyter stax status`: `9,812/10,000 done, 3 failed, 185 running`), expandable to its
 * instances, read page by page from `GET executions/{id}/steps/{step}/instances` (the ones that
 * did not complete first). Pure functions and a small pager; the widget is in `detail.tsx`.
 */
import type { StaxClient } from '../api/client';
import type { InstanceInfo, InstancePage, SweepSummary } from '../api/types';

export type InstanceState = InstanceInfo['state'];

/** The instance states the server filters by (`state=`), in the order of its pages. */
export const INSTANCE_STATES: readonly InstanceState[] = [
  'failed',
  'lost',
  'canceled',
  'running',
  'waiting',
  'completed'
];

/** Instances per page the sidebar asks for. */
export const INSTANCE_PAGE = 50;

const num = (n: number): string => n.toLocaleString('en-US');

/** `9,812/10,000 done, 3 failed, 185 running` (mirrors `SweepSummary.line()` in Python). */
export function sweepLine(s: SweepSummary): string {
  const c = s.counts ?? {};
  const get = (k: string): number => c[k] ?? 0;
  const parts = [`${num(get('completed'))}/${num(s.total)} done`];
  const more: [number, string][] = [
    [get('failed') + get('lost'), 'failed'],
    [get('canceled'), 'canceled'],
    [get('running'), 'running'],
    [get('queued') + get('pending'), 'waiting']
  ];
  for (const [n, word] of more) {
    if (n) {
      parts.push(`${num(n)} ${word}`);
    }
  }
  return parts.join(', ');
}

/** `n=1 seed=4` */
export function paramsText(params: InstanceInfo['params']): string {
  return Object.entries(params ?? {})
    .map(([k, v]) => `${k}=${v === null ? 'null' : String(v)}`)
    .join(' ');
}

/** What the instance list shows: the pages read so far. */
export interface InstanceView {
  filter: InstanceState | null;
  items: InstanceInfo[];
  total: number;
  counts: Record<string, number>;
  nextCursor: string | null;
  loaded: boolean;
}

export const EMPTY_VIEW: InstanceView = {
  filter: null,
  items: [],
  total: 0,
  counts: {},
  nextCursor: null,
  loaded: false
};

/**
 * The view after a page arrived: a first page replaces the list, a next page (`append`) adds
 * the instances not listed yet (an instance listed twice, when its state changed between two
 * pages, is kept once, at its first place).
 */
export function withPage(
  view: InstanceView,
  page: InstancePage,
  append: boolean
): InstanceView {
  let items = page.items;
  if (append) {
    const seen = new Set(view.items.map(i => i.index));
    items = [...view.items, ...page.items.filter(i => !seen.has(i.index))];
  }
  return {
    filter: view.filter,
    items,
    total: page.total,
    counts: page.counts,
    nextCursor: page.next_cursor ?? null,
    loaded: true
  };
}

/** Reads a sweep's instances page by page; `onChange` after each change of `view`. */
export class InstancePager {
  view: InstanceView = EMPTY_VIEW;
  error: string | null = null;
  loading = false;
  private _generation = 0;

  constructor(
    private readonly client: StaxClient,
    readonly executionId: string,
    readonly step: string,
    private readonly onChange: () => void = () => undefined,
    readonly limit: number = INSTANCE_PAGE
  ) {}

  /** The first page (again), with `filter` (null: every state). */
  async load(filter: InstanceState | null = this.view.filter): Promise<void> {
    this.view = { ...EMPTY_VIEW, filter };
    await this.fetch(false);
  }

  /** The next page, if there is one. */
  async more(): Promise<void> {
    if (this.view.nextCursor !== null && !this.loading) {
      await this.fetch(true);
    }
  }

  private async fetch(append: boolean): Promise<void> {
    const generation = ++this._generation; // a newer load wins over an older answer
    this.loading = true;
    this.onChange();
    try {
      const page = await this.client.instances(this.executionId, this.step, {
        state: this.view.filter ?? undefined,
        cursor: append ? (this.view.nextCursor ?? undefined) : undefined,
        limit: this.limit
      });
      if (generation === this._generation) {
        this.view = withPage(this.view, page, append);
        this.error = null;
      }
    } catch (e) {
      if (generation === this._generation) {
        this.error = e instanceof Error ? e.message : String(e);
      }
    } finally {
      if (generation === this._generation) {
        this.loading = false;
        this.onChange();
      }
    }
  }
}
