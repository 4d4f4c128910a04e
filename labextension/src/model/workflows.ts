/**
 * The form of a published workflow's declared inputs (pure, unit-tested): the initial text of
 * each field (its default), and the typed inputs of a trigger with every problem found first
 * (the server checks again and lists what it refuses: the same rules).
 */
import type { InputDecl } from '../api/types';

export type InputValue = string | number | boolean;

/** The text (or checked state) a field starts with: the input's default, else empty. */
export function initialValue(decl: InputDecl): string | boolean {
  if (decl.type === 'boolean') {
    return decl.default === true;
  }
  return decl.default === null || decl.default === undefined
    ? ''
    : String(decl.default);
}

/** The HTML input type of a declared type. */
export function fieldType(decl: InputDecl): 'text' | 'number' | 'checkbox' {
  return decl.type === 'boolean'
    ? 'checkbox'
    : decl.type === 'string'
      ? 'text'
      : 'number';
}

const INTEGER = /^[+-]?\d+$/;
const NUMBER = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

/**
 * The inputs of a trigger from the form's values: typed as declared; an empty optional field
 * is left out (its default applies). `problems` lists each field that is not valid.
 */
export function typedInputs(
  decls: readonly InputDecl[],
  values: Readonly<Record<string, string | boolean>>
): { inputs: Record<string, InputValue>; problems: string[] } {
  const inputs: Record<string, InputValue> = {};
  const problems: string[] = [];
  for (const d of decls) {
    const v = values[d.name];
    if (d.type === 'boolean') {
      inputs[d.name] = v === true;
      continue;
    }
    const text = typeof v === 'string' ? v : '';
    if (text.trim() === '' && d.type !== 'string') {
      if (d.required) {
        problems.push(`${d.name} is required (${d.type})`);
      }
      continue;
    }
    if (d.type === 'string') {
      if (text === '' && !d.required) {
        continue;
      }
      if (text === '' && d.required) {
        problems.push(`${d.name} is required (string)`);
        continue;
      }
      inputs[d.name] = text;
    } else if (d.type === 'integer') {
      if (INTEGER.test(text.trim())) {
        inputs[d.name] = parseInt(text.trim(), 10);
      } else {
        problems.push(`${d.name} must be an integer, not '${text}'`);
      }
    } else {
      const n = Number(text.trim());
      if (NUMBER.test(text.trim()) && Number.isFinite(n)) {
        inputs[d.name] = n;
      } else {
        problems.push(`${d.name} must be a number, not '${text}'`);
      }
    }
  }
  return { inputs, problems };
}
