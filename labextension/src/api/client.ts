/**
 * A typed client of the jupyter_stax REST API (`<base_url>stax/api/`).
 *
 * Every method's answer type is derived from the OpenAPI operation it calls (see `types.ts`).
 * Errors throw a {@link StaxAPIError} carrying the server's message ("unknown cluster 'x'; the
 * clusters: local, slurm"), never a bare status code.
 *
 * The client talks through a {@link Transport} so it can be tested without a server; in
 * JupyterLab it is `serverTransport()` (ServerConnection: the token, XSRF and base URL).
 */
import type {
  BuildRequest,
  ErrorBody,
  ExecutionState,
  OperationId,
  Ok,
  Query,
  SubmitRequest,
  TriggerRequest
} from './types';

/** Sends one request to a path relative to `<base_url>stax/api/`. */
export type Transport = (path: string, init: RequestInit) => Promise<Response>;

export const API_PREFIX = 'stax/api';

/** An error answer of the API, or a failure to reach it. */
export class StaxAPIError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly body: ErrorBody | null = null
  ) {
    super(message);
    this.name = 'StaxAPIError';
  }

  /** One line per problem the server listed (e.g. every invalid field of a workflow). */
  get details(): string[] {
    return this.body?.details ?? [];
  }
}

function isErrorBody(v: unknown): v is ErrorBody {
  if (typeof v !== 'object' || v === null) {
    return false;
  }
  const o = v as Record<string, unknown>;
  return typeof o.message === 'string' && typeof o.error === 'string';
}

type QueryValue = string | number | boolean | undefined | null;

function queryString(q: Readonly<Record<string, QueryValue>>): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(q)) {
    if (v !== undefined && v !== null && v !== '') {
      parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`);
    }
  }
  return parts.length ? `?${parts.join('&')}` : '';
}

const seg = encodeURIComponent;

/**
 * The file name of a Content-Disposition header: the UTF-8 `filename*` when there is one (any
 * name, quotes and all), else the plain `filename`, else `fallback`.
 */
export function attachmentName(disposition: string, fallback: string): string {
  const star = /filename\*=UTF-8''([^;\s]+)/i.exec(disposition);
  if (star) {
    try {
      return decodeURIComponent(star[1]);
    } catch {
      // a malformed escape: the plain name below
    }
  }
  const plain = /filename="([^"]+)"/.exec(disposition);
  return plain ? plain[1] : fallback;
}

export type LogQuery = Query<'getStepLog'>;

export class StaxClient {
  constructor(private readonly transport: Transport) {}

  info(): Promise<Ok<'getInfo'>> {
    return this.call('getInfo', 'GET', 'info');
  }

  clusters(): Promise<Ok<'listClusters'>> {
    return this.call('listClusters', 'GET', 'clusters');
  }

  cluster(name: string): Promise<Ok<'getCluster'>> {
    return this.call('getCluster', 'GET', `clusters/${seg(name)}`);
  }

  images(query: Query<'listImages'> = {}): Promise<Ok<'listImages'>> {
    return this.call('listImages', 'GET', `images${queryString(query)}`);
  }

  executions(
    query: Query<'listExecutions'> & { state?: ExecutionState } = {}
  ): Promise<Ok<'listExecutions'>> {
    return this.call(
      'listExecutions',
      'GET',
      `executions${queryString(query)}`
    );
  }

  execution(id: string): Promise<Ok<'getExecution'>> {
    return this.call('getExecution', 'GET', `executions/${seg(id)}`);
  }

  submit(request: SubmitRequest): Promise<Ok<'submitExecution'>> {
    return this.call('submitExecution', 'POST', 'executions', request);
  }

  /** The published workflows (the latest version of each). */
  workflows(): Promise<Ok<'listWorkflows'>> {
    return this.call('listWorkflows', 'GET', 'workflows');
  }

  /** A published workflow: its declared inputs, default cluster and steps. */
  workflow(name: string): Promise<Ok<'getWorkflow'>> {
    return this.call('getWorkflow', 'GET', `workflows/${seg(name)}`);
  }

  /** Run a published workflow with inputs (201; 400 lists every problem of the inputs). */
  trigger(
    name: string,
    request: TriggerRequest
  ): Promise<Ok<'triggerWorkflow'>> {
    return this.call(
      'triggerWorkflow',
      'POST',
      `workflows/${seg(name)}`,
      request
    );
  }

  /** Cancel every unfinished step (202; 409 when the execution is already final). */
  cancel(id: string): Promise<Ok<'cancelExecution'>> {
    return this.call('cancelExecution', 'DELETE', `executions/${seg(id)}`);
  }

  /** Run the failed, lost, canceled and skipped steps again (202). */
  retry(id: string): Promise<Ok<'retryExecution'>> {
    return this.call('retryExecution', 'POST', `executions/${seg(id)}/retry`);
  }

  /**
   * The finished execution as a Workflow Run RO-Crate: the zip's bytes and the file name the
   * server suggests (`WORKFLOW-ID.crate.zip`). 409 while it runs.
   */
  async crate(id: string): Promise<{ blob: Blob; filename: string }> {
    return this.binary(`executions/${seg(id)}/crate`, `${id}.crate.zip`);
  }

  /** The regular files of a step's directory, with their sizes (links left out). */
  stepFiles(id: string, step: string): Promise<Ok<'listStepFiles'>> {
    const path = `executions/${seg(id)}/steps/${seg(step)}/files`;
    return this.call('listStepFiles', 'GET', path);
  }

  /**
   * One file of a step's directory (streamed by the server through the step's cluster): its
   * bytes and its base name. 403 for a link out of the step directory, 404 when missing.
   */
  downloadStepFile(
    id: string,
    step: string,
    file: string
  ): Promise<{ blob: Blob; filename: string }> {
    const path = `executions/${seg(id)}/steps/${seg(step)}/download${queryString({ path: file })}`;
    return this.binary(path, file.split('/').pop() || 'file');
  }

  /** A binary answer (an attachment): its bytes and the file name the server suggests. */
  private async binary(
    path: string,
    fallback: string
  ): Promise<{ blob: Blob; filename: string }> {
    let response: Response;
    try {
      response = await this.transport(path, { method: 'GET' });
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      throw new StaxAPIError(
        `the Jupyter server did not answer GET ${API_PREFIX}/${path}: ${why}`,
        0
      );
    }
    if (!response.ok) {
      let data: unknown = null;
      try {
        data = JSON.parse(await response.text());
      } catch {
        data = null;
      }
      if (isErrorBody(data)) {
        throw new StaxAPIError(data.message, response.status, data);
      }
      throw new StaxAPIError(
        `GET ${API_PREFIX}/${path} answered ${response.status} ${response.statusText}`.trim(),
        response.status
      );
    }
    return {
      blob: await response.blob(),
      filename: attachmentName(
        response.headers.get('Content-Disposition') ?? '',
        fallback
      )
    };
  }

  /** A notebook's `parameters` cell (path relative to the server's root). */
  notebookParameters(path: string): Promise<Ok<'getNotebookParameters'>> {
    return this.call(
      'getNotebookParameters',
      'GET',
      `notebook-parameters${queryString({ path })}`
    );
  }

  /** Plan (refused here: 400/403/404/503) and start a build of a recipe's variants (201). */
  startBuild(request: BuildRequest): Promise<Ok<'startBuild'>> {
    return this.call('startBuild', 'POST', 'builds', request);
  }

  build(id: string): Promise<Ok<'getBuild'>> {
    return this.call('getBuild', 'GET', `builds/${seg(id)}`);
  }

  /** The build's progress lines, then each variant's builder log so far. */
  buildLog(id: string): Promise<Ok<'getBuildLog'>> {
    return this.call('getBuildLog', 'GET', `builds/${seg(id)}/log`);
  }

  log(
    id: string,
    step: string,
    query: LogQuery = {}
  ): Promise<Ok<'getStepLog'>> {
    const path = `executions/${seg(id)}/steps/${seg(step)}/log`;
    return this.call(
      'getStepLog',
      'GET',
      `${path}${queryString({ ...query })}`
    );
  }

  /**
   * A page of a sweep step's instances: the ones that did not complete first, then by index
   * (`state`: only those; `cursor`: the previous page's `next_cursor`).
   */
  instances(
    id: string,
    step: string,
    query: Query<'listStepInstances'> = {}
  ): Promise<Ok<'listStepInstances'>> {
    const path = `executions/${seg(id)}/steps/${seg(step)}/instances`;
    return this.call(
      'listStepInstances',
      'GET',
      `${path}${queryString({ ...query })}`
    );
  }

  private async call<Op extends OperationId>(
    _op: Op,
    method: 'GET' | 'POST' | 'DELETE',
    path: string,
    body?: unknown
  ): Promise<Ok<Op>> {
    const init: RequestInit = { method };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers = { 'Content-Type': 'application/json' };
    }
    let response: Response;
    try {
      response = await this.transport(path, init);
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      throw new StaxAPIError(
        `the Jupyter server did not answer ${method} ${API_PREFIX}/${path}: ${why}`,
        0
      );
    }
    const text = await response.text();
    let data: unknown = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    if (!response.ok) {
      if (isErrorBody(data)) {
        throw new StaxAPIError(data.message, response.status, data);
      }
      throw new StaxAPIError(
        `${method} ${API_PREFIX}/${path} answered ${response.status} ${response.statusText}`.trim(),
        response.status
      );
    }
    if (data === null) {
      throw new StaxAPIError(
        `${method} ${API_PREFIX}/${path} answered ${response.status} without a JSON body`,
        response.status
      );
    }
    // The server validates every answer against the same models the types come from.
    return data as Ok<Op>;
  }
}
