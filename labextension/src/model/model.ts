/**
 * The state behind the sidebar, the status bar and the notifications: clusters with their live
 * summaries, images, and executions kept current from the server's event stream.
 *
 * Refreshing:
 * - executions follow the event stream (`/api/events/subscribe`, through ServiceManager.events):
 *   no polling while events flow. A fallback poll (with backoff) runs only while executions are
 *   active and no event arrived for two refresh intervals, and once when the page becomes visible
 *   again (the socket may have dropped meanwhile);
 * - cluster summaries (they run sinfo/squeue on the server) are polled every refresh interval
 *   while the sidebar is visible and the page is not hidden, backing off when they fail.
 */
import { Poll, type IPoll } from '@lumino/polling';
import { Signal, type ISignal } from '@lumino/signaling';

import { StaxAPIError, type StaxClient } from '../api/client';
import {
  FINAL_EXECUTION_STATES,
  parseEmission,
  type ClusterDetail,
  type ClusterInfo,
  type Emission,
  type Execution,
  type ExecutionState,
  type ExecutionSummary,
  type ImageList,
  type StaxEvent
} from '../api/types';
import {
  executionsReducer,
  initialExecutions,
  activeCount,
  type ExecutionsAction,
  type ExecutionsState
} from './executions';

export interface ClusterRow {
  info: ClusterInfo;
  detail: ClusterDetail | null;
  error: string | null;
}

export interface FinishedExecution {
  id: string;
  name: string;
  state: ExecutionState;
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export class StaxModel {
  /** Unfiltered: the status bar and notifications use it. */
  all: ExecutionsState = initialExecutions;
  /** What the executions section lists (equals `all` without a filter). */
  view: ExecutionsState = initialExecutions;
  clusters: ClusterRow[] = [];
  clustersError: string | null = null;
  images: ImageList | null = null;
  imagesCluster: string | null = null;
  imagesError: string | null = null;
  executionsError: string | null = null;
  /** Execution selected in the sidebar (the commands "cancel selected" act on it). */
  selected: string | null = null;

  private readonly _changed = new Signal<this, void>(this);
  private readonly _event = new Signal<this, StaxEvent>(this);
  private readonly _finished = new Signal<this, FinishedExecution>(this);
  private _refreshMs: number;
  private _panelVisible = false;
  private _summaryPoll: Poll;
  private _fallbackPoll: Poll;
  private _fetching = new Set<string>();
  private _disposed = false;
  private readonly _onVisibility = () => {
    if (typeof document !== 'undefined' && !document.hidden) {
      void this.refreshExecutions();
    }
  };

  constructor(
    readonly client: StaxClient,
    options: { refreshInterval?: number } = {}
  ) {
    this._refreshMs = Math.max(5, options.refreshInterval ?? 30) * 1000;
    this._summaryPoll = new Poll({
      auto: false,
      factory: () => this.refreshSummaries(),
      frequency: this.frequency(10),
      name: 'jupyter-stax:summaries',
      standby: () => this.hidden() || !this._panelVisible
    });
    this._fallbackPoll = new Poll({
      auto: false,
      factory: () => this.refreshExecutions(true),
      frequency: this.frequency(10),
      name: 'jupyter-stax:executions-fallback',
      standby: () => this.hidden() || !this.needsFallback()
    });
    if (typeof document !== 'undefined') {
      document.addEventListener('visibilitychange', this._onVisibility);
    }
  }

  /** Emitted after any change of what the widgets show. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** Every jupyter_stax event of the server's stream (detail views follow theirs). */
  get event(): ISignal<this, StaxEvent> {
    return this._event;
  }

  /** An execution went from unfinished to completed, failed or canceled. */
  get finished(): ISignal<this, FinishedExecution> {
    return this._finished;
  }

  get refreshInterval(): number {
    return this._refreshMs / 1000;
  }

  set refreshInterval(seconds: number) {
    this._refreshMs = Math.max(5, seconds) * 1000;
    this._summaryPoll.frequency = this.frequency(10);
    this._fallbackPoll.frequency = this.frequency(10);
  }

  /** The sidebar is shown: poll the cluster summaries. */
  set panelVisible(visible: boolean) {
    this._panelVisible = visible;
    if (visible) {
      void this._summaryPoll.refresh();
    }
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  async start(): Promise<void> {
    await Promise.all([
      this.refreshClusters(),
      this.refreshExecutions(),
      this._summaryPoll.start(),
      this._fallbackPoll.start()
    ]);
  }

  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    for (const poll of [this._summaryPoll, this._fallbackPoll]) {
      void poll.stop(); // clears its pending timer (dispose() alone leaves it armed)
      poll.dispose();
    }
    if (typeof document !== 'undefined') {
      document.removeEventListener('visibilitychange', this._onVisibility);
    }
    Signal.clearData(this);
  }

  // ------------------------------------------------------------------ events

  /** One emission of the server's event stream (others' schemas are ignored). */
  handleEmission(emission: Emission): void {
    const ev = parseEmission(emission);
    if (ev === null) {
      return;
    }
    const id = ev.kind === 'execution' ? ev.id : ev.execution_id;
    const before = this.all.items.find(x => x.id === id);
    this.dispatch({ type: 'event', event: ev, now: Date.now() });
    if (
      ev.kind === 'execution' &&
      FINAL_EXECUTION_STATES.has(ev.state) &&
      ev.previous !== null &&
      !FINAL_EXECUTION_STATES.has(ev.previous)
    ) {
      this._finished.emit({ id, name: before?.name ?? id, state: ev.state });
    }
    this._event.emit(ev);
    void this.fetchMissing();
  }

  // ------------------------------------------------------------------ executions

  get executions(): readonly ExecutionSummary[] {
    return this.view.items;
  }

  get filter(): ExecutionState | null {
    return this.view.filter;
  }

  async setFilter(filter: ExecutionState | null): Promise<void> {
    this.view =
      filter === null
        ? this.all
        : executionsReducer(this.view, { type: 'filter', filter });
    this._changed.emit();
    if (filter !== null) {
      await this.loadPage(false);
    }
  }

  /** The newest page again (`GET executions`). Rejects on failure (for the polls' backoff). */
  async refreshExecutions(throwErrors = false): Promise<void> {
    try {
      const page = await this.client.executions({ limit: 50 });
      this.dispatch({ type: 'page', page, append: false }, 'all');
      if (this.view.filter !== null) {
        await this.loadPage(false);
      }
      this.executionsError = null;
    } catch (e) {
      this.executionsError = message(e);
      if (throwErrors) {
        throw e;
      }
    } finally {
      this._changed.emit();
    }
  }

  async loadMore(): Promise<void> {
    await this.loadPage(true);
  }

  private async loadPage(append: boolean): Promise<void> {
    const filter = this.view.filter;
    const cursor = append ? this.view.nextCursor : null;
    if (append && cursor === null) {
      return;
    }
    try {
      const page = await this.client.executions({
        limit: 50,
        ...(filter ? { state: filter } : {}),
        ...(cursor ? { cursor } : {})
      });
      if (filter === null) {
        this.dispatch({ type: 'page', page, append }, 'all');
      } else if (this.view.filter === filter) {
        this.view = executionsReducer(this.view, {
          type: 'page',
          page,
          append
        });
      }
      this.executionsError = null;
    } catch (e) {
      this.executionsError = message(e);
    }
    this._changed.emit();
  }

  /** Fetch executions named by events but not listed yet. */
  private async fetchMissing(): Promise<void> {
    const ids = new Set([...this.all.missing, ...this.view.missing]);
    for (const id of ids) {
      if (this._fetching.has(id)) {
        continue;
      }
      this._fetching.add(id);
      try {
        const execution = await this.client.execution(id);
        this.dispatch({ type: 'execution', execution });
      } catch (e) {
        if (e instanceof StaxAPIError && e.status === 404) {
          this.dispatch({ type: 'gone', id });
        }
      } finally {
        this._fetching.delete(id);
      }
    }
  }

  /** A fresh copy of one execution; also updates its line in the lists. */
  async execution(id: string): Promise<Execution> {
    const execution = await this.client.execution(id);
    this.dispatch({ type: 'execution', execution });
    return execution;
  }

  async cancel(id: string): Promise<Execution> {
    const execution = await this.client.cancel(id);
    this.dispatch({ type: 'execution', execution });
    return execution;
  }

  async retry(id: string): Promise<Execution> {
    const execution = await this.client.retry(id);
    this.dispatch({ type: 'execution', execution });
    return execution;
  }

  /** The finished execution as a Workflow Run RO-Crate zip (see `StaxClient.crate`). */
  exportCrate(id: string): Promise<{ blob: Blob; filename: string }> {
    return this.client.crate(id);
  }

  select(id: string | null): void {
    if (this.selected !== id) {
      this.selected = id;
      this._changed.emit();
    }
  }

  // ------------------------------------------------------------------ clusters and images

  async refreshClusters(): Promise<void> {
    try {
      const infos = await this.client.clusters();
      const old = new Map(this.clusters.map(c => [c.info.name, c]));
      this.clusters = infos.map(info => ({
        info,
        detail: old.get(info.name)?.detail ?? null,
        error: old.get(info.name)?.error ?? null
      }));
      this.clustersError = null;
      if (
        this.imagesCluster === null ||
        !infos.some(c => c.name === this.imagesCluster)
      ) {
        this.imagesCluster = infos.length ? infos[0].name : null;
      }
    } catch (e) {
      this.clustersError = message(e);
    }
    this._changed.emit();
    await Promise.all([
      this.refreshImages(),
      this._panelVisible ? this.refreshSummaries().catch(() => undefined) : null
    ]);
  }

  /** Live summaries of every cluster; rejects when one failed (the poll backs off). */
  async refreshSummaries(): Promise<void> {
    const failures: string[] = [];
    await Promise.all(
      this.clusters.map(async row => {
        try {
          row.detail = await this.client.cluster(row.info.name);
          row.error = null;
        } catch (e) {
          row.error = message(e);
          failures.push(`${row.info.name}: ${row.error}`);
        }
      })
    );
    this._changed.emit();
    if (failures.length) {
      throw new Error(failures.join('; '));
    }
  }

  async selectImagesCluster(name: string): Promise<void> {
    this.imagesCluster = name;
    this._changed.emit();
    await this.refreshImages();
  }

  async refreshImages(): Promise<void> {
    try {
      const cluster = this.imagesCluster;
      this.images = await this.client.images(cluster ? { cluster } : {});
      this.imagesError = null;
    } catch (e) {
      this.imagesError = message(e);
    }
    this._changed.emit();
  }

  /** Everything again (the refresh command and button). */
  async refresh(): Promise<void> {
    await Promise.all([this.refreshClusters(), this.refreshExecutions()]);
  }

  // ------------------------------------------------------------------ internals

  private dispatch(action: ExecutionsAction, only?: 'all'): void {
    const shared = this.view === this.all;
    this.all = executionsReducer(this.all, action);
    if (shared) {
      this.view = this.all;
    } else if (only !== 'all') {
      this.view = executionsReducer(this.view, action);
    }
    this._changed.emit();
  }

  private needsFallback(): boolean {
    if (!this.all.loaded || activeCount(this.all.items) === 0) {
      return false;
    }
    return Date.now() - this.all.lastEventAt > 2 * this._refreshMs;
  }

  private hidden(): boolean {
    return typeof document !== 'undefined' && document.hidden;
  }

  private frequency(maxFactor: number): IPoll.Frequency {
    return {
      interval: this._refreshMs,
      backoff: true,
      max: this._refreshMs * maxFactor
    };
  }
}
