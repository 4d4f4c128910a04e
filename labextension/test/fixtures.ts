import type { Execution, ExecutionSummary } from '../src/api/types';

export function summary(
  id: string,
  over: Partial<ExecutionSummary> = {}
): ExecutionSummary {
  return {
    id,
    name: `wf-${id}`,
    cluster: 'slurm',
    state: 'running',
    created_at: '2026-11-22T10:00:00+00:00',
    finished_at: null,
    done: 0,
    total: 2,
    counts: { pending: 2 },
    warnings: [],
    unverified: false,
    ...over
  };
}

export function execution(
  id: string,
  over: Partial<Execution> = {}
): Execution {
  return {
    id,
    workflow: {
      name: `wf-${id}`,
      steps: [
        { name: 'a', run: 'echo a' },
        { name: 'b', run: 'echo b', after: ['a'] }
      ]
    },
    cluster: 'slurm',
    created_at: '2026-11-22T11:00:00+00:00',
    work_dir: `/runs/${id}`,
    state: 'running',
    unverified: false,
    steps: [
      {
        name: 'a',
        cluster: 'slurm',
        directory: `/runs/${id}/a`,
        script: 'echo a',
        stdout: 'stax.out',
        stderr: 'stax.err',
        state: 'completed',
        attempt: 1,
        native_id: '11',
        exit_code: 0
      },
      {
        name: 'b',
        cluster: 'slurm',
        directory: `/runs/${id}/b`,
        script: 'echo b',
        stdout: 'stax.out',
        stderr: 'stax.err',
        state: 'running',
        attempt: 1,
        native_id: '12'
      }
    ],
    ...over
  };
}

/** A fake transport: answers from a table of `METHOD path` -> [status, body]. */
export class FakeServer {
  calls: { method: string; path: string; body: unknown }[] = [];
  routes = new Map<string, () => [number, unknown]>();

  on(method: string, path: string, status: number, body: unknown): this {
    this.routes.set(`${method} ${path}`, () => [status, body]);
    return this;
  }

  handler(method: string, path: string, fn: () => [number, unknown]): this {
    this.routes.set(`${method} ${path}`, fn);
    return this;
  }

  transport = (path: string, init: RequestInit): Promise<Response> => {
    const method = init.method ?? 'GET';
    const body =
      typeof init.body === 'string'
        ? (JSON.parse(init.body) as unknown)
        : undefined;
    this.calls.push({ method, path, body });
    const route = this.routes.get(`${method} ${path}`);
    if (!route) {
      return Promise.resolve(
        new Response(
          JSON.stringify({
            message: `no route ${method} ${path}`,
            details: [],
            error: 'NotFound'
          }),
          { status: 404 }
        )
      );
    }
    const [status, data] = route();
    return Promise.resolve(
      new Response(data === undefined ? '' : JSON.stringify(data), { status })
    );
  };
}
