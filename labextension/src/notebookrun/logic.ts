/**
 * The pure logic of "Run on a cluster..." (issue 16): the form's fields from a notebook's
 * `parameters` cell (`GET notebook-parameters`), typed values from what was typed, the
 * submission (a one-step workflow whose step runs the notebook: `notebook:` + `params:`), and
 * where the executed copy is in the Jupyter contents tree.
 */
import type { NotebookParameter, SubmitRequest } from '../api/types';

export type ParamValue = string | number | boolean | null;

/** What the form holds for one parameter: the text typed (a checkbox for a bool). */
export interface FieldState {
  name: string;
  type: NotebookParameter['type'];
  text: string;
  settable: boolean;
  help: string | null;
  /** The default as written in the notebook. */
  initial: string;
}

/** The form's fields, prefilled with the notebook's defaults. */
export function initialFields(
  params: readonly NotebookParameter[]
): FieldState[] {
  return params.map(p => {
    const text = p.settable ? defaultText(p) : p.text;
    return {
      name: p.name,
      type: p.type,
      text,
      settable: p.settable ?? true,
      help: p.help ?? null,
      initial: text
    };
  });
}

function defaultText(p: NotebookParameter): string {
  const v = p.value;
  if (v === null || v === undefined) {
    return '';
  }
  if (typeof v === 'boolean') {
    return v ? 'true' : 'false';
  }
  return String(v);
}

/** A typed value from a field's text, or an error saying what is expected. */
export function parseField(
  f: Pick<FieldState, 'name' | 'type' | 'text'>
): { value: ParamValue } | { error: string } {
  const t = f.text;
  switch (f.type) {
    case 'int':
      return /^\s*[-+]?\d+\s*$/.test(t)
        ? { value: parseInt(t, 10) }
        : { error: `${f.name}: an integer, not ${JSON.stringify(t)}` };
    case 'float': {
      const n = Number(t);
      return t.trim() !== '' && Number.isFinite(n)
        ? { value: n }
        : { error: `${f.name}: a number, not ${JSON.stringify(t)}` };
    }
    case 'bool':
      if (/^(true|false)$/i.test(t.trim())) {
        return { value: t.trim().toLowerCase() === 'true' };
      }
      return { error: `${f.name}: true or false, not ${JSON.stringify(t)}` };
    case 'None':
      return { value: looseValue(t) };
    default:
      return { value: t };
  }
}

/** A value typed where the default was None: empty is None, numbers and true/false typed. */
export function looseValue(t: string): ParamValue {
  const s = t.trim();
  if (s === '' || s === 'None') {
    return null;
  }
  if (/^(true|false)$/i.test(s)) {
    return s.toLowerCase() === 'true';
  }
  if (/^[-+]?\d+$/.test(s)) {
    return parseInt(s, 10);
  }
  if (/^[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?$/.test(s)) {
    return Number(s);
  }
  return t;
}

/**
 * The values to inject: the fields changed from the notebook's defaults (the others keep the
 * notebook's own), or the errors of the fields that do not read.
 */
export function changedValues(fields: readonly FieldState[]): {
  params: Record<string, ParamValue>;
  errors: string[];
} {
  const params: Record<string, ParamValue> = {};
  const errors: string[] = [];
  for (const f of fields) {
    if (!f.settable || f.text === f.initial) {
      continue;
    }
    const r = parseField(f);
    if ('error' in r) {
      errors.push(r.error);
    } else {
      params[f.name] = r.value;
    }
  }
  return { params, errors };
}

/** A step (and workflow) name from a notebook's file name, as the Python API makes it. */
export function stepName(path: string): string {
  const base = path.split('/').pop() ?? path;
  const stem = base.replace(/\.ipynb$/, '');
  const name = stem
    .replace(/[^A-Za-z0-9_.-]+/g, '-')
    .replace(/^[-._]+|[-._]+$/g, '')
    .slice(0, 64);
  return name || 'notebook';
}

export interface Resources {
  cpus_per_task?: string;
  gpus?: string;
  memory?: string;
  time?: string;
}

/**
 * `POST executions`: the notebook (a contents path, relative to the server's root: the server
 * reads it from there, the executed copy comes back beside it) as a one-step workflow.
 */
export function submitRequest(options: {
  path: string;
  cluster: string;
  image: string | null;
  params: Record<string, ParamValue>;
  resources: Resources;
}): SubmitRequest {
  const name = stepName(options.path);
  const resources: Record<string, string | number> = {};
  for (const key of ['cpus_per_task', 'gpus'] as const) {
    const v = (options.resources[key] ?? '').trim();
    if (v !== '') {
      resources[key] = /^\d+$/.test(v) ? parseInt(v, 10) : v;
    }
  }
  for (const key of ['memory', 'time'] as const) {
    const v = (options.resources[key] ?? '').trim();
    if (v !== '') {
      resources[key] = v;
    }
  }
  const step: Record<string, unknown> = {
    name,
    notebook: options.path.replace(/^\/+/, ''),
    params: options.params,
    resources
  };
  if (options.image) {
    step.image = options.image;
  }
  return {
    workflow: { name, steps: [step] },
    cluster: options.cluster
  } as unknown as SubmitRequest;
}

/**
 * The contents-API path of a file given by its absolute path on the server, or null when it
 * is outside the server's root (`PageConfig` `serverRoot`).
 */
export function contentsPath(
  absolute: string,
  serverRoot: string
): string | null {
  const root = serverRoot.replace(/\/+$/, '');
  if (root === '') {
    return absolute.replace(/^\/+/, '');
  }
  if (absolute === root) {
    return '';
  }
  return absolute.startsWith(root + '/')
    ? absolute.slice(root.length + 1)
    : null;
}
