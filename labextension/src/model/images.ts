/**
 * The images section's view of `GET images?cluster=`: the StaX catalog grouped by family, labels
 * as chips, and whether each variant fits the selected cluster (with the reason when not).
 *
 * The entries of `ImageList.images` are free-form objects in the API (the image catalog defines
 * them), so they are read defensively here: a variant (`{name, family, labels, ...}`), optionally
 * judged (`fits`, `rules: [{rule, outcome, message}]`, `reason`), or a judgement wrapping one
 * (`{image: {...}, cluster, fits, rules}`).
 */
import type { ImageList } from '../api/types';

export type Fit = 'fits' | 'fails' | 'unknown';

export interface ImageView {
  name: string;
  family: string;
  reference: string | null;
  description: string | null;
  /** Labels to show as chips, `key=value`, known StaX labels first. */
  labels: { key: string; value: string }[];
  fit: Fit;
  /** Why it does not fit (the failed rules), or notes about unchecked rules. */
  reason: string | null;
  /** The family's build recipe, where its catalog names one. */
  recipe: string | null;
  /** The catalog source it comes from (for a variant with a recipe: its catalog file). */
  source: string | null;
}

export interface ImageFamily {
  family: string;
  variants: ImageView[];
  /** The build recipe of the family (its first variant that names one), or null. */
  recipe: string | null;
  /** The catalog file that names that recipe (where a new variant goes), or null. */
  catalog: string | null;
}

const LABEL_PREFIX = 'org.hpe.staxs.';
const KNOWN = [
  'cpu',
  'gpu',
  'mpi',
  'kabi',
  'network',
  'os',
  'framework',
  'platform'
];

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(v: unknown): string | null {
  return typeof v === 'string' && v !== '' ? v : null;
}

function scalar(v: unknown): string | null {
  if (typeof v === 'string') {
    return v;
  }
  if (typeof v === 'number' || typeof v === 'boolean') {
    return String(v);
  }
  return null;
}

function labelsOf(v: unknown): { key: string; value: string }[] {
  if (!isObj(v)) {
    return [];
  }
  const flat: Record<string, string> = {};
  for (const [k, val] of Object.entries(v)) {
    if (k === 'other' && isObj(val)) {
      for (const [k2, v2] of Object.entries(val)) {
        const text = scalar(v2);
        if (text !== null) {
          flat[k2] = text;
        }
      }
    } else {
      const text = scalar(val);
      if (text !== null) {
        const key = k.startsWith(LABEL_PREFIX)
          ? k.slice(LABEL_PREFIX.length)
          : k;
        flat[key] = text;
      }
    }
  }
  const keys = Object.keys(flat).sort((a, b) => {
    const ia = KNOWN.indexOf(a);
    const ib = KNOWN.indexOf(b);
    if (ia >= 0 || ib >= 0) {
      return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib);
    }
    return a < b ? -1 : a > b ? 1 : 0;
  });
  return keys.map(key => ({ key, value: flat[key] }));
}

function fitOf(entry: Obj): { fit: Fit; reason: string | null } {
  const rules = Array.isArray(entry.rules) ? entry.rules.filter(isObj) : [];
  const failed = rules
    .filter(r => r.outcome === 'fail')
    .map(r => str(r.message))
    .filter((m): m is string => m !== null);
  const notes = rules
    .filter(r => r.outcome === 'unchecked' || r.outcome === 'note')
    .map(r => str(r.message))
    .filter((m): m is string => m !== null);
  let fits: boolean | null = null;
  if (typeof entry.fits === 'boolean') {
    fits = entry.fits;
  } else if (isObj(entry.fit) && typeof entry.fit.fits === 'boolean') {
    fits = entry.fit.fits;
  } else if (typeof entry.fit === 'boolean') {
    fits = entry.fit;
  } else if (rules.length) {
    fits = failed.length === 0;
  }
  const given =
    str(entry.reason) ?? (isObj(entry.fit) ? str(entry.fit.reason) : null);
  if (fits === null) {
    return { fit: 'unknown', reason: given };
  }
  if (!fits) {
    return { fit: 'fails', reason: failed.join('; ') || given };
  }
  return { fit: 'fits', reason: notes.length ? notes.join('; ') : null };
}

export function imageView(entry: unknown): ImageView | null {
  if (!isObj(entry)) {
    return null;
  }
  const image = isObj(entry.image) ? entry.image : entry;
  const name = str(image.name) ?? str(image.reference);
  if (name === null) {
    return null;
  }
  return {
    name,
    family: str(image.family) ?? name,
    reference: str(image.reference),
    description: str(image.description),
    labels: labelsOf(image.labels),
    recipe: str(image.recipe),
    source: str(image.source),
    ...fitOf(entry)
  };
}

/** Families in name order, variants that fit first, then by name. */
export function groupImages(list: ImageList | null): ImageFamily[] {
  const byFamily = new Map<string, ImageView[]>();
  for (const entry of list?.images ?? []) {
    const v = imageView(entry);
    if (v) {
      const group = byFamily.get(v.family) ?? [];
      group.push(v);
      byFamily.set(v.family, group);
    }
  }
  const rank: Record<Fit, number> = { fits: 0, unknown: 1, fails: 2 };
  return [...byFamily.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([family, variants]) => {
      const built = variants.find(v => v.recipe !== null);
      return {
        family,
        variants: variants.sort(
          (a, b) =>
            rank[a.fit] - rank[b.fit] ||
            (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
        ),
        recipe: built?.recipe ?? null,
        catalog: built?.source ?? null
      };
    });
}
