import { StaxAPIError, StaxClient } from '../src/api/client';
import { execution, FakeServer } from './fixtures';

describe('StaxClient', () => {
  it('reads clusters, one cluster, info and images', async () => {
    const srv = new FakeServer()
      .on('GET', 'clusters', 200, [
        { name: 'local', scheduler: 'local', work_dir: '/w' }
      ])
      .on('GET', 'clusters/slurm', 200, {
        name: 'slurm',
        scheduler: 'slurm',
        work_dir: '/w'
      })
      .on('GET', 'info', 200, {
        version: '0.1.0',
        store: '/s',
        engine_id: 'e',
        default_cluster: 'local'
      })
      .on('GET', 'images?cluster=slurm', 200, {
        images: [],
        sources: [],
        note: 'none'
      });
    const client = new StaxClient(srv.transport);
    expect((await client.clusters()).map(c => c.name)).toEqual(['local']);
    expect((await client.cluster('slurm')).scheduler).toBe('slurm');
    expect((await client.info()).default_cluster).toBe('local');
    expect((await client.images({ cluster: 'slurm' })).note).toBe('none');
  });

  it('pages executions with a state filter and a cursor', async () => {
    const srv = new FakeServer().on(
      'GET',
      'executions?limit=50&state=failed&cursor=abc%3D',
      200,
      { executions: [], next_cursor: null }
    );
    const client = new StaxClient(srv.transport);
    const page = await client.executions({
      limit: 50,
      state: 'failed',
      cursor: 'abc='
    });
    expect(page.executions).toEqual([]);
  });

  it('submits, cancels (DELETE) and retries', async () => {
    const ex = execution('e1');
    const srv = new FakeServer()
      .on('POST', 'executions', 201, ex)
      .on('DELETE', 'executions/e1', 202, { ...ex, cancel_requested: true })
      .on('POST', 'executions/e1/retry', 202, ex);
    const client = new StaxClient(srv.transport);
    await client.submit({ workflow: 'name: x\nsteps: []', cluster: 'slurm' });
    expect(srv.calls[0].body).toEqual({
      workflow: 'name: x\nsteps: []',
      cluster: 'slurm'
    });
    expect((await client.cancel('e1')).cancel_requested).toBe(true);
    expect((await client.retry('e1')).id).toBe('e1');
    expect(srv.calls.map(c => `${c.method} ${c.path}`)).toEqual([
      'POST executions',
      'DELETE executions/e1',
      'POST executions/e1/retry'
    ]);
  });

  it('downloads a crate with its file name, and says why it cannot', async () => {
    const srv = new FakeServer();
    srv.transport = (path: string, init: RequestInit): Promise<Response> => {
      srv.calls.push({ method: init.method ?? 'GET', path, body: undefined });
      if (path === 'executions/e%2F1/crate') {
        return Promise.resolve(
          new Response('PK-bytes', {
            status: 200,
            headers: {
              'Content-Type': 'application/zip',
              'Content-Disposition': 'attachment; filename="wf-e1.crate.zip"'
            }
          })
        );
      }
      return Promise.resolve(
        new Response(
          JSON.stringify({
            message: 'execution e2 is still running',
            details: [],
            error: 'Conflict'
          }),
          { status: 409 }
        )
      );
    };
    const client = new StaxClient(srv.transport);
    const got = await client.crate('e/1');
    expect(got.filename).toBe('wf-e1.crate.zip');
    expect(await got.blob.text()).toBe('PK-bytes');
    await expect(client.crate('e2')).rejects.toMatchObject({
      status: 409,
      message: 'execution e2 is still running'
    });
  });

  it('encodes path segments and log queries', async () => {
    const srv = new FakeServer().on(
      'GET',
      'executions/a%2Fb/steps/st%20ep/log?stream=stderr&offset=10&limit=0',
      200,
      { data: '', offset: 10, next_offset: 10, size: 10, eof: false }
    );
    const client = new StaxClient(srv.transport);
    const chunk = await client.log('a/b', 'st ep', {
      stream: 'stderr',
      offset: 10,
      limit: 0
    });
    expect(chunk.next_offset).toBe(10);
  });

  it("throws the server's message and details", async () => {
    const srv = new FakeServer().on('POST', 'executions', 400, {
      message: 'the workflow is not valid',
      details: ["step 'b': unknown dependency 'c' (did you mean 'a'?)"],
      error: 'InvalidWorkflow'
    });
    const client = new StaxClient(srv.transport);
    const err = await client.submit({ workflow: 'x' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StaxAPIError);
    const e = err as StaxAPIError;
    expect(e.status).toBe(400);
    expect(e.message).toBe('the workflow is not valid');
    expect(e.details).toEqual([
      "step 'b': unknown dependency 'c' (did you mean 'a'?)"
    ]);
    expect(e.body?.error).toBe('InvalidWorkflow');
  });

  it('says what happened on a non-JSON error and on a network failure', async () => {
    const html = new StaxClient(() =>
      Promise.resolve(
        new Response('<html>bad gateway</html>', {
          status: 502,
          statusText: 'Bad Gateway'
        })
      )
    );
    await expect(html.info()).rejects.toThrow(
      'GET stax/api/info answered 502 Bad Gateway'
    );
    const down = new StaxClient(() =>
      Promise.reject(new TypeError('Failed to fetch'))
    );
    const err = (await down
      .clusters()
      .catch((e: unknown) => e)) as StaxAPIError;
    expect(err.status).toBe(0);
    expect(err.message).toContain(
      'did not answer GET stax/api/clusters: Failed to fetch'
    );
  });

  it('refuses a success answer without a JSON body', async () => {
    const empty = new StaxClient(() =>
      Promise.resolve(new Response('', { status: 200 }))
    );
    await expect(empty.info()).rejects.toThrow('without a JSON body');
  });
});
