import { attachmentName, StaxAPIError, StaxClient } from '../src/api/client';
import { bytes } from '../src/model/bytes';
import { FakeServer } from './fixtures';

describe("a step's files", () => {
  it.each([
    [0, '0 B'],
    [999, '999 B'],
    [1024, '1.00 KiB'],
    [1536, '1.50 KiB'],
    [12.3 * 1024 * 1024, '12.3 MiB'],
    [1.5 * 1024 ** 3, '1.50 GiB'],
    [-1, '?'],
    [Number.NaN, '?']
  ])('formats %p bytes as %p', (n, text) => {
    expect(bytes(n)).toBe(text);
  });

  it.each([
    ['attachment; filename="a.csv"', 'a.csv'],
    [
      'attachment; filename="it_s_a__file_.bin"; filename*=UTF-8\'\'it%27s%20a%20%22file%22.bin',
      'it\'s a "file".bin'
    ],
    ["attachment; filename*=UTF-8''%E0%A4", 'fallback.bin'],
    ['', 'fallback.bin']
  ])('reads the file name of %p', (header, name) => {
    expect(attachmentName(header, 'fallback.bin')).toBe(name);
  });

  it("lists a step's files and downloads one by its path, encoded", async () => {
    const srv = new FakeServer().on(
      'GET',
      'executions/e%2F1/steps/st%20ep/files',
      200,
      {
        execution_id: 'e/1',
        step: 'st ep',
        cluster: 'far',
        directory: '/r/st ep',
        files: [{ path: 'res/a b.csv', size: 3 }],
        truncated: false,
        links: 1
      }
    );
    const base = srv.transport;
    srv.transport = (path: string, init: RequestInit): Promise<Response> => {
      if (path.includes('/download?')) {
        srv.calls.push({ method: init.method ?? 'GET', path, body: undefined });
        if (path.endsWith('path=res%2Fa%20b.csv')) {
          return Promise.resolve(
            new Response('a,b', {
              status: 200,
              headers: {
                'Content-Disposition':
                  'attachment; filename="a_b.csv"; filename*=UTF-8\'\'a%20b.csv'
              }
            })
          );
        }
        return Promise.resolve(
          new Response(
            JSON.stringify({
              message:
                "'evil' of step 'st ep' is (or passes through) a symbolic link",
              details: [],
              error: 'Forbidden'
            }),
            { status: 403 }
          )
        );
      }
      return base(path, init);
    };
    const client = new StaxClient(srv.transport);
    const list = await client.stepFiles('e/1', 'st ep');
    expect(list.files).toEqual([{ path: 'res/a b.csv', size: 3 }]);
    expect(list.links).toBe(1);
    const got = await client.downloadStepFile('e/1', 'st ep', 'res/a b.csv');
    expect(got.filename).toBe('a b.csv');
    expect(await got.blob.text()).toBe('a,b');
    expect(srv.calls.map(c => c.path)).toContain(
      'executions/e%2F1/steps/st%20ep/download?path=res%2Fa%20b.csv'
    );
    const refused = await client
      .downloadStepFile('e/1', 'st ep', 'evil')
      .then(() => null)
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(StaxAPIError);
    expect((refused as StaxAPIError).status).toBe(403);
    expect((refused as StaxAPIError).message).toContain('symbolic link');
  });
});
