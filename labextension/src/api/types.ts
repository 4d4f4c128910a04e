/**
 * The wire types of the jupyter_stax REST API and event stream.
 *
 * REST types come from `openapi.ts`, generated at build time (`jlpm api:types`, run by the build,
 * the tests and `lint:check`) from the server's OpenAPI document `docs/openapi.json`, itself
 * generated from the pydantic models: a change of the API that this code does not follow fails
 * the TypeScript build.
 *
 * Event types mirror the jupyter_events schemas in `jupyter_stax/server/event_schemas/`; a unit
 * test compares their fields with those YAML files.
 */
import type { components, operations } from './openapi';

type Schemas = components['schemas'];

export type ClusterInfo = Schemas['ClusterInfo'];
export type ClusterDetail = Schemas['ClusterDetail'];
export type SlurmSummary = Schemas['SlurmSummary'];
export type LocalSummary = Schemas['LocalSummary'];
export type Execution = Schemas['Execution'];
export type ExecutionSummary = Schemas['ExecutionSummary'];
export type ExecutionPage = Schemas['ExecutionPage'];
export type ExecutionState = Schemas['ExecutionState'];
export type StepRun = Schemas['StepRun'];
export type SweepSummary = Schemas['SweepSummary'];
export type InstancePage = Schemas['InstancePage'];
export type InstanceInfo = Schemas['InstanceInfo'];
export type StepState = Schemas['StepState'];
export type LogChunk = Schemas['LogChunk'];
export type StepFileList = Schemas['StepFileList'];
export type StepFile = Schemas['StepFile'];
export type ImageList = Schemas['ImageList'];
export type ServerInfo = Schemas['ServerInfo'];
export type ErrorBody = Schemas['ErrorBody'];
export type SubmitRequest = Schemas['SubmitRequest'];
export type PublishedSummary = Schemas['PublishedSummary'];
export type PublishedWorkflow = Schemas['PublishedWorkflow'];
export type InputDecl = Schemas['InputDecl'];
export type TriggerRequest = Schemas['TriggerRequest'];
export type NotebookParameters = Schemas['NotebookParameters'];
export type NotebookParameter = Schemas['NotebookParameter'];
export type BuildRequest = Schemas['BuildRequest'];
export type BuildStatus = Schemas['BuildStatus'];
export type BuildLog = Schemas['BuildLog'];

export type OperationId = keyof operations;

type JsonOf<R> = R extends { content: { 'application/json': infer T } }
  ? T
  : never;

/** The JSON body of an operation's success answer (200, 201 or 202). */
export type Ok<Op extends OperationId> =
  operations[Op]['responses'] extends infer R
    ? 200 extends keyof R
      ? JsonOf<R[200]>
      : 201 extends keyof R
        ? JsonOf<R[201]>
        : 202 extends keyof R
          ? JsonOf<R[202]>
          : never
    : never;

/** The query parameters of an operation. */
export type Query<Op extends OperationId> =
  operations[Op]['parameters'] extends {
    query?: infer Q;
  }
    ? NonNullable<Q>
    : never;

/**
 * Every member of the string union `T`, each once: the compiler refuses a list that misses a
 * member or names one that is not in `T`. The unions come from the OpenAPI document, which is
 * generated from `jupyter_stax/core/states.py`, so a state vocabulary changed there fails this
 * build until the sets below follow (they are never a hand-kept copy that can drift).
 */
function allOf<T extends string>() {
  return <const A extends readonly T[]>(
    values: A &
      ([Exclude<T, A[number]>] extends [never]
        ? unknown
        : { missing: Exclude<T, A[number]> })
  ): readonly T[] => values;
}

/** `ExecutionState` of the API, in its order. */
export const EXECUTION_STATES = allOf<ExecutionState>()([
  'pending',
  'running',
  'completed',
  'failed',
  'canceled'
]);

/** `StepState` of the API, in its order. */
export const STEP_STATES = allOf<StepState>()([
  'pending',
  'submitted',
  'queued',
  'running',
  'completed',
  'failed',
  'canceled',
  'skipped',
  'lost'
]);

/** `FinalExecutionState` of the API: nothing changes after these but a retry. */
export const FINAL_EXECUTION_STATES: ReadonlySet<ExecutionState> = new Set(
  allOf<Schemas['FinalExecutionState']>()(['completed', 'failed', 'canceled'])
);

/** `RetryableExecutionState` of the API: what `POST executions/{id}/retry` accepts. */
export const RETRYABLE_EXECUTION_STATES: ReadonlySet<ExecutionState> = new Set(
  allOf<Schemas['RetryableExecutionState']>()(['failed', 'canceled'])
);

/** `FinalStepState` of the API: states that end an attempt. */
export const FINAL_STEP_STATES: ReadonlySet<StepState> = new Set(
  allOf<Schemas['FinalStepState']>()([
    'completed',
    'failed',
    'canceled',
    'skipped',
    'lost'
  ])
);

/** `RetryableStepState` of the API: the steps a retry runs again. */
export const RETRYABLE_STEP_STATES: ReadonlySet<StepState> = new Set(
  allOf<Schemas['RetryableStepState']>()([
    'failed',
    'canceled',
    'skipped',
    'lost'
  ])
);

export function isExecutionState(v: unknown): v is ExecutionState {
  return typeof v === 'string' && (EXECUTION_STATES as string[]).includes(v);
}

export function isStepState(v: unknown): v is StepState {
  return typeof v === 'string' && (STEP_STATES as string[]).includes(v);
}

// ---------------------------------------------------------------- events

export const EXECUTION_SCHEMA =
  'https://events.jupyter.org/jupyter_stax/execution/v1';
export const STEP_SCHEMA = 'https://events.jupyter.org/jupyter_stax/step/v1';

/** `execution/v1`: an execution was created, changed state or changed warnings. */
export interface ExecutionEvent {
  kind: 'execution';
  id: string;
  state: ExecutionState;
  previous: ExecutionState | null;
  done: number;
  total: number;
  warnings: string[];
  time: string;
}

/** `step/v1`: a step changed state, or got new facts (job id, reason) in the same state. */
export interface StepEvent {
  kind: 'step';
  execution_id: string;
  step: string;
  state: StepState;
  previous: StepState | null;
  execution_state: ExecutionState | null;
  attempt: number;
  native_id: string | null;
  exit_code: number | null;
  reason: string | null;
  time: string;
}

export type StaxEvent = ExecutionEvent | StepEvent;

/** What the server's event stream delivers: the schema id and the event's fields. */
export type Emission = Readonly<Record<string, unknown>> & {
  readonly schema_id: string;
};

function str(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}

function int(v: unknown): number | null {
  return typeof v === 'number' && Number.isInteger(v) ? v : null;
}

/**
 * A jupyter_stax event from one emission of the server's event stream; null for other schemas
 * and for emissions that do not have the schema's required fields.
 */
export function parseEmission(e: Emission): StaxEvent | null {
  if (e.schema_id === EXECUTION_SCHEMA) {
    const id = str(e.id);
    const done = int(e.done);
    const total = int(e.total);
    const time = str(e.time);
    if (id === null || !isExecutionState(e.state) || done === null) {
      return null;
    }
    if (!('previous' in e)) {
      return null;
    }
    if (total === null || time === null) {
      return null;
    }
    const previous = isExecutionState(e.previous) ? e.previous : null;
    const warnings = Array.isArray(e.warnings)
      ? e.warnings.filter((w): w is string => typeof w === 'string')
      : [];
    return {
      kind: 'execution',
      id,
      state: e.state,
      previous,
      done,
      total,
      warnings,
      time
    };
  }
  if (e.schema_id === STEP_SCHEMA) {
    const executionId = str(e.execution_id);
    const step = str(e.step);
    const attempt = int(e.attempt);
    const time = str(e.time);
    if (executionId === null || step === null || !isStepState(e.state)) {
      return null;
    }
    if (attempt === null || time === null || !('previous' in e)) {
      return null;
    }
    return {
      kind: 'step',
      execution_id: executionId,
      step,
      state: e.state,
      previous: isStepState(e.previous) ? e.previous : null,
      execution_state: isExecutionState(e.execution_state)
        ? e.execution_state
        : null,
      attempt,
      native_id: str(e.native_id),
      exit_code: int(e.exit_code),
      reason: str(e.reason),
      time
    };
  }
  return null;
}
