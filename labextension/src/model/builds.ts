/**
 * Builds started from the sidebar ("Build for cluster..." on a StaX family whose catalog names
 * its recipe): `POST builds {recipe, cluster, catalog}`, then `GET builds/{id}` and
 * `GET builds/{id}/log` polled until the build is FINISHED or FAILED (the server keeps no event
 * stream for builds; they are few and short). One build per family is shown: the latest.
 *
 * The new variant goes to the catalog file that named the recipe (the family's own catalog, so
 * the sidebar lists it); when the build ends, `onFinal` runs (the sidebar refreshes its images).
 */
import { Signal, type ISignal } from '@lumino/signaling';

import { StaxAPIError, type StaxClient } from '../api/client';
import type { BuildRequest, BuildStatus } from '../api/types';

export type BuildState = BuildStatus['status'];

export const FINAL_BUILD_STATES: ReadonlySet<BuildState> = new Set<BuildState>([
  'FINISHED',
  'FAILED'
]);

/** One family's latest build, as the sidebar shows it. */
export interface FamilyBuild {
  family: string;
  recipe: string;
  cluster: string;
  /** null while the request is on its way (or when it was refused). */
  id: string | null;
  /** null before the server answered the request. */
  status: BuildState | null;
  message: string;
  /** Progress lines, then each variant's builder log (the last answer of `GET .../log`). */
  log: string;
  /** References of the built variants (once FINISHED or FAILED). */
  images: string[];
  /** The request was refused, or the server stopped answering about it. */
  error: string | null;
}

/** The body of `POST builds` for a family's recipe, built for one cluster. */
export function buildRequest(
  recipe: string,
  cluster: string,
  catalog: string | null
): BuildRequest {
  const request: BuildRequest = { recipe, machine: cluster };
  if (catalog) {
    request.catalog = catalog;
  }
  return request;
}

/** Whether a build shown needs no more polling. */
export function isOver(b: FamilyBuild): boolean {
  return (
    (b.status !== null && FINAL_BUILD_STATES.has(b.status)) ||
    (b.error !== null && b.id === null)
  );
}

/** The one line shown under the family: what the build does or how it ended. */
export function buildLine(b: FamilyBuild): string {
  if (b.id === null) {
    return b.error
      ? `build for ${b.cluster} refused: ${b.error}`
      : `starting a build for ${b.cluster}...`;
  }
  const what = b.message || (b.status === 'PENDING' ? 'waiting' : '');
  return `${b.status ?? 'PENDING'} for ${b.cluster}${what ? `: ${what}` : ''}`;
}

/** Milliseconds before the next poll: `base`, doubled per failed poll in a row, at most 15 s. */
export function nextDelay(base: number, failures: number): number {
  return Math.min(15000, base * 2 ** Math.min(failures, 4));
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export class Builds {
  private readonly _changed = new Signal<this, void>(this);
  private readonly _builds = new Map<string, FamilyBuild>();
  private readonly _timers = new Set<ReturnType<typeof setTimeout>>();
  private _disposed = false;

  /**
   * @param interval milliseconds between two polls of a running build
   * @param onFinal called once when a build ends (FINISHED or FAILED)
   */
  constructor(
    private readonly client: StaxClient,
    private readonly options: {
      interval?: number;
      onFinal?: (build: FamilyBuild) => void | Promise<void>;
    } = {}
  ) {}

  /** Emitted after any change of a build shown. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** The family's latest build, or null. */
  of(family: string): FamilyBuild | null {
    return this._builds.get(family) ?? null;
  }

  /**
   * Ask the server to build the family's recipe for `cluster`; then follow the build until it
   * ends. Resolves once the server answered the request (refusals end up in `error`).
   */
  async start(
    family: string,
    recipe: string,
    cluster: string,
    catalog: string | null
  ): Promise<FamilyBuild> {
    const current = this._builds.get(family);
    if (current && !isOver(current)) {
      return current; // one build per family at a time
    }
    let b: FamilyBuild = {
      family,
      recipe,
      cluster,
      id: null,
      status: null,
      message: '',
      log: '',
      images: [],
      error: null
    };
    this.set(b);
    try {
      const st = await this.client.startBuild(
        buildRequest(recipe, cluster, catalog)
      );
      b = { ...b, id: st.id, status: st.status, message: st.message ?? '' };
    } catch (e) {
      b = { ...b, error: message(e) };
      this.set(b);
      return b;
    }
    this.set(b);
    this.schedule(family, b.id as string, 0);
    return b;
  }

  /** Resolves when the family's build has ended (for tests and callers that wait). */
  whenOver(family: string): Promise<FamilyBuild | null> {
    return new Promise(resolve => {
      const check = () => {
        const b = this.of(family);
        if (b === null || isOver(b) || this._disposed) {
          this._changed.disconnect(check);
          resolve(b);
          return true;
        }
        return false;
      };
      if (!check()) {
        this._changed.connect(check);
      }
    });
  }

  dispose(): void {
    this._disposed = true;
    for (const t of this._timers) {
      clearTimeout(t);
    }
    this._timers.clear();
    Signal.clearData(this);
  }

  private set(b: FamilyBuild): void {
    this._builds.set(b.family, b);
    this._changed.emit();
  }

  private schedule(family: string, id: string, failures: number): void {
    if (this._disposed) {
      return;
    }
    const delay = nextDelay(this.options.interval ?? 1000, failures);
    const t = setTimeout(() => {
      this._timers.delete(t);
      void this.poll(family, id, failures);
    }, delay);
    this._timers.add(t);
  }

  private async poll(
    family: string,
    id: string,
    failures: number
  ): Promise<void> {
    const shown = this._builds.get(family);
    if (!shown || shown.id !== id || this._disposed) {
      return; // a newer build of the family replaced it
    }
    let b: FamilyBuild;
    try {
      const st = await this.client.build(id);
      const log = await this.client.buildLog(id);
      b = {
        ...shown,
        status: st.status,
        message: st.message ?? '',
        images: st.images ?? [],
        log: log.text,
        error: null
      };
    } catch (e) {
      if (e instanceof StaxAPIError && e.status === 404) {
        // the server restarted: builds are kept while it runs
        this.set({ ...shown, status: 'FAILED', error: message(e) });
        await this.options.onFinal?.(this._builds.get(family) as FamilyBuild);
        return;
      }
      this.set({ ...shown, error: message(e) });
      this.schedule(family, id, failures + 1);
      return;
    }
    this.set(b);
    if (isOver(b)) {
      await this.options.onFinal?.(b);
    } else {
      this.schedule(family, id, 0);
    }
  }
}
