import { StaxClient } from '../src/api/client';
import { EXECUTION_SCHEMA, STEP_SCHEMA } from '../src/api/types';
import { LogTail } from '../src/model/logtail';
import { StaxModel, type FinishedExecution } from '../src/model/model';
import { execution, FakeServer, summary } from './fixtures';

function server(): FakeServer {
  return new FakeServer()
    .on('GET', 'clusters', 200, [
      { name: 'local', scheduler: 'local', work_dir: '/w' },
      { name: 'slurm', scheduler: 'slurm', work_dir: '/w', queue: 'debug' }
    ])
    .on('GET', 'executions?limit=50', 200, {
      executions: [summary('a')],
      next_cursor: null
    })
    .on('GET', 'images?cluster=local', 200, {
      images: [],
      sources: [],
      note: 'no catalogs'
    });
}

const tick = () => new Promise(resolve => setTimeout(resolve, 0));

describe('StaxModel', () => {
  it('loads clusters, images and executions, and follows events', async () => {
    const srv = server().on('GET', 'executions/new', 200, execution('new'));
    const model = new StaxModel(new StaxClient(srv.transport));
    const finished: FinishedExecution[] = [];
    model.finished.connect((_, f) => finished.push(f));
    await model.start();
    expect(model.clusters.map(c => c.info.name)).toEqual(['local', 'slurm']);
    expect(model.imagesCluster).toBe('local');
    expect(model.images?.note).toBe('no catalogs');
    expect(model.executions.map(x => x.id)).toEqual(['a']);

    // an execution submitted elsewhere: its first event makes the model fetch it
    model.handleEmission({
      schema_id: EXECUTION_SCHEMA,
      id: 'new',
      state: 'pending',
      previous: null,
      done: 0,
      total: 2,
      time: '2026-11-22T11:00:00Z'
    });
    await tick();
    await tick();
    expect(model.executions.map(x => x.id)).toEqual(['new', 'a']);

    model.handleEmission({
      schema_id: STEP_SCHEMA,
      execution_id: 'a',
      step: 'x',
      state: 'queued',
      previous: 'submitted',
      attempt: 1,
      time: '2026-11-22T11:00:01Z'
    });
    model.handleEmission({
      schema_id: EXECUTION_SCHEMA,
      id: 'a',
      state: 'failed',
      previous: 'running',
      done: 2,
      total: 2,
      time: '2026-11-22T11:00:02Z'
    });
    expect(model.executions.find(x => x.id === 'a')?.state).toBe('failed');
    expect(finished).toEqual([{ id: 'a', name: 'wf-a', state: 'failed' }]);
    // the same final state again (a warnings change) is not a second notification
    model.handleEmission({
      schema_id: EXECUTION_SCHEMA,
      id: 'a',
      state: 'failed',
      previous: 'failed',
      done: 2,
      total: 2,
      time: '2026-11-22T11:00:03Z'
    });
    expect(finished).toHaveLength(1);
    model.dispose();
  });

  it('filters by state with its own page, and keeps the unfiltered list for the status bar', async () => {
    const srv = server().on('GET', 'executions?limit=50&state=completed', 200, {
      executions: [summary('c', { state: 'completed' })],
      next_cursor: null
    });
    const model = new StaxModel(new StaxClient(srv.transport));
    await model.start();
    await model.setFilter('completed');
    expect(model.executions.map(x => x.id)).toEqual(['c']);
    expect(model.all.items.map(x => x.id)).toEqual(['a']);
    await model.setFilter(null);
    expect(model.executions.map(x => x.id)).toEqual(['a']);
    model.dispose();
  });

  it("keeps a failing cluster summary as that cluster's error", async () => {
    const srv = server()
      .on('GET', 'clusters/local', 200, {
        name: 'local',
        scheduler: 'local',
        work_dir: '/w',
        summary: null,
        note: null
      })
      .on('GET', 'clusters/slurm', 503, {
        message: 'sinfo did not answer',
        details: [],
        error: 'SchedulerUnavailable'
      });
    const model = new StaxModel(new StaxClient(srv.transport));
    await model.refreshClusters();
    await expect(model.refreshSummaries()).rejects.toThrow(
      'slurm: sinfo did not answer'
    );
    expect(model.clusters.map(c => c.error)).toEqual([
      null,
      'sinfo did not answer'
    ]);
    model.dispose();
  });
});

describe('LogTail', () => {
  it('starts at the tail and follows until eof', async () => {
    const file = 'x'.repeat(100) + 'TAIL\n';
    let grown = false;
    const srv = new FakeServer()
      .on(
        'GET',
        'executions/e/steps/s/log?stream=stdout&offset=0&limit=0',
        200,
        {
          data: '',
          offset: 0,
          next_offset: 0,
          size: file.length,
          eof: false
        }
      )
      .handler(
        'GET',
        `executions/e/steps/s/log?stream=stdout&offset=${file.length - 10}`,
        () => [
          200,
          {
            data: file.slice(-10),
            offset: file.length - 10,
            next_offset: file.length,
            size: file.length,
            eof: false
          }
        ]
      )
      .handler(
        'GET',
        `executions/e/steps/s/log?stream=stdout&offset=${file.length}`,
        () => {
          const more = grown ? '' : 'done\n';
          grown = true;
          return [
            200,
            {
              data: more,
              offset: file.length,
              next_offset: file.length + more.length,
              size: file.length + 5,
              eof: more === ''
            }
          ];
        }
      )
      .handler(
        'GET',
        `executions/e/steps/s/log?stream=stdout&offset=${file.length + 5}`,
        () => [
          200,
          {
            data: '',
            offset: file.length + 5,
            next_offset: file.length + 5,
            size: file.length + 5,
            eof: true
          }
        ]
      );
    let changes = 0;
    const tail = new LogTail(
      new StaxClient(srv.transport),
      'e',
      's',
      'stdout',
      {
        tailBytes: 10,
        intervalMs: 5,
        onChange: () => (changes += 1)
      }
    );
    await tail.start();
    for (let i = 0; i < 50 && !tail.eof; i++) {
      await new Promise(r => setTimeout(r, 5));
    }
    expect(tail.truncated).toBe(true);
    expect(tail.text).toBe('xxxxxTAIL\ndone\n');
    expect(tail.eof).toBe(true);
    expect(changes).toBeGreaterThan(0);
    tail.dispose();
  });
});
