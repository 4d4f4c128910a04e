import { readFileSync } from 'fs';
import { load } from 'js-yaml';
import { join } from 'path';

import {
  EXECUTION_SCHEMA,
  parseEmission,
  STEP_SCHEMA,
  type ExecutionEvent,
  type StepEvent
} from '../src/api/types';

const SCHEMAS = join(
  __dirname,
  '..',
  '..',
  'jupyter_stax',
  'server',
  'event_schemas'
);

function schema(kind: string): {
  $id: string;
  required: string[];
  properties: Record<string, unknown>;
} {
  return load(readFileSync(join(SCHEMAS, kind, 'v1.yaml'), 'utf8')) as {
    $id: string;
    required: string[];
    properties: Record<string, unknown>;
  };
}

const execution = {
  schema_id: EXECUTION_SCHEMA,
  id: 'e1',
  state: 'completed',
  previous: 'running',
  done: 3,
  total: 3,
  warnings: ['slurm is not answering'],
  time: '2026-11-22T12:00:00+00:00'
};

const step = {
  schema_id: STEP_SCHEMA,
  execution_id: 'e1',
  step: 'make',
  state: 'running',
  previous: 'queued',
  execution_state: 'running',
  attempt: 1,
  native_id: '17',
  exit_code: null,
  reason: null,
  time: '2026-11-22T12:00:00+00:00'
};

describe('parseEmission', () => {
  it('reads execution and step events', () => {
    expect(parseEmission(execution)).toEqual({
      kind: 'execution',
      ...execution,
      schema_id: undefined
    });
    const s = parseEmission(step) as StepEvent;
    expect(s.kind).toBe('step');
    expect(s.native_id).toBe('17');
  });

  it('ignores other schemas and malformed events', () => {
    expect(
      parseEmission({
        schema_id:
          'https://events.jupyter.org/jupyter_server/contents_service/v1',
        action: 'get'
      })
    ).toBeNull();
    expect(parseEmission({ ...execution, state: 'exploded' })).toBeNull();
    expect(parseEmission({ ...execution, done: '3' })).toBeNull();
    expect(parseEmission({ ...step, attempt: undefined })).toBeNull();
  });

  it('accepts a new execution (previous null) and a step without optional fields', () => {
    const e = parseEmission({
      ...execution,
      previous: null,
      warnings: undefined
    }) as ExecutionEvent;
    expect(e.previous).toBeNull();
    expect(e.warnings).toEqual([]);
    const {
      native_id: _n,
      exit_code: _x,
      reason: _r,
      execution_state: _s,
      ...bare
    } = step;
    const s = parseEmission(bare) as StepEvent;
    expect(s.native_id).toBeNull();
    expect(s.execution_state).toBeNull();
  });

  it("has exactly the fields of the server's event schemas", () => {
    for (const [kind, sample, id] of [
      ['execution', execution, EXECUTION_SCHEMA],
      ['step', step, STEP_SCHEMA]
    ] as const) {
      const doc = schema(kind);
      expect(doc.$id).toBe(id);
      const parsed = parseEmission(sample);
      expect(parsed).not.toBeNull();
      const fields = Object.keys(parsed ?? {})
        .filter(k => k !== 'kind')
        .sort();
      expect(fields).toEqual(Object.keys(doc.properties).sort());
      for (const r of doc.required) {
        const without = Object.fromEntries(
          Object.entries(sample).filter(([k]) => k !== r)
        );
        expect(parseEmission(without as typeof sample)).toBeNull();
      }
    }
  });
});
