import { StaxClient } from '../src/api/client';
import type { BuildStatus, ImageList } from '../src/api/types';
import {
  Builds,
  buildLine,
  buildRequest,
  isOver,
  nextDelay,
  type FamilyBuild
} from '../src/model/builds';
import { groupImages } from '../src/model/images';
import { FakeServer } from './fixtures';

function status(id: string, over: Partial<BuildStatus> = {}): BuildStatus {
  return {
    id,
    status: 'PENDING',
    message: '',
    images: [],
    recipe: '/root/solver/stax.yaml',
    variants: ['solver-x86_64-none-none'],
    results: [],
    catalog: null,
    created: 1,
    updated: 1,
    ...over
  };
}

function build(over: Partial<FamilyBuild>): FamilyBuild {
  return {
    family: 'solver',
    recipe: '/r/stax.yaml',
    cluster: 'local',
    id: 'b1',
    status: 'BUILDING',
    message: '',
    log: '',
    images: [],
    error: null,
    ...over
  };
}

describe('build requests and lines', () => {
  it.each([
    [
      '/r/stax.yaml',
      'local',
      null,
      { recipe: '/r/stax.yaml', machine: 'local' }
    ],
    [
      '/r/stax.yaml',
      'slurm',
      '/cat/images.yaml',
      { recipe: '/r/stax.yaml', machine: 'slurm', catalog: '/cat/images.yaml' }
    ],
    ['r.yaml', 'local', '', { recipe: 'r.yaml', machine: 'local' }]
  ])('buildRequest(%s, %s, %s)', (recipe, cluster, catalog, want) => {
    expect(buildRequest(recipe, cluster, catalog)).toEqual(want);
  });

  it.each<[Partial<FamilyBuild>, boolean, string]>([
    [{ id: null, status: null }, false, 'starting a build for local...'],
    [
      { id: null, status: null, error: 'recipe outside the root' },
      true,
      'build for local refused: recipe outside the root'
    ],
    [{ status: 'PENDING' }, false, 'PENDING for local: waiting'],
    [
      { status: 'BUILDING', message: 'building solver-x86_64-none-none' },
      false,
      'BUILDING for local: building solver-x86_64-none-none'
    ],
    [
      { status: 'FINISHED', message: '1 variants built or current' },
      true,
      'FINISHED for local: 1 variants built or current'
    ],
    [
      { status: 'FAILED', message: 'x: boom' },
      true,
      'FAILED for local: x: boom'
    ],
    // a poll failed: shown, but the build goes on
    [{ status: 'BUILDING', error: 'no answer' }, false, 'BUILDING for local']
  ])('%o: over %s, "%s"', (over, done, line) => {
    const b = build(over);
    expect(isOver(b)).toBe(done);
    expect(buildLine(b)).toBe(line);
  });

  it.each([
    [1000, 0, 1000],
    [1000, 1, 2000],
    [1000, 3, 8000],
    [1000, 9, 15000],
    [0, 5, 0]
  ])('nextDelay(%d, %d) = %d', (base, failures, want) => {
    expect(nextDelay(base, failures)).toBe(want);
  });

  it('a family built from a recipe names it and its catalog', () => {
    const list: unknown = {
      images: [
        { name: 'demo-x86', family: 'demo', labels: {} },
        {
          name: 'solver-x86_64-mpich-none',
          family: 'solver',
          labels: {},
          recipe: '/root/solver/stax.yaml',
          source: '/cfg/stax/images.yaml'
        },
        { name: 'solver-x86_64-none-none', family: 'solver', labels: {} }
      ],
      sources: []
    };
    const [demo, solver] = groupImages(list as ImageList);
    expect([demo.recipe, demo.catalog]).toEqual([null, null]);
    expect([solver.recipe, solver.catalog]).toEqual([
      '/root/solver/stax.yaml',
      '/cfg/stax/images.yaml'
    ]);
  });
});

describe('Builds', () => {
  it('starts a build, follows its status and log to the end, then calls onFinal once', async () => {
    const answers: BuildStatus[] = [
      status('b1', { status: 'BUILDING', message: 'building v' }),
      status('b1', { status: 'CONVERTING', message: 'converting v' }),
      status('b1', {
        status: 'FINISHED',
        message: '1 variants built or current',
        images: ['/out/v']
      })
    ];
    let polls = 0;
    const srv = new FakeServer()
      .on('POST', 'builds', 201, status('b1'))
      .handler('GET', 'builds/b1', () => [200, answers[Math.min(polls++, 2)]])
      .handler('GET', 'builds/b1/log', () => [
        200,
        { id: 'b1', status: 'BUILDING', text: `line ${polls}` }
      ]);
    const finals: FamilyBuild[] = [];
    const builds = new Builds(new StaxClient(srv.transport), {
      interval: 0,
      onFinal: b => {
        finals.push(b);
      }
    });
    const seen: string[] = [];
    builds.changed.connect(() => {
      const s = builds.of('solver')?.status;
      if (s && seen[seen.length - 1] !== s) {
        seen.push(s);
      }
    });
    const started = await builds.start(
      'solver',
      '/root/solver/stax.yaml',
      'local',
      '/cfg/images.yaml'
    );
    expect(started).toMatchObject({ id: 'b1', status: 'PENDING' });
    expect(srv.calls[0]).toEqual({
      method: 'POST',
      path: 'builds',
      body: {
        recipe: '/root/solver/stax.yaml',
        machine: 'local',
        catalog: '/cfg/images.yaml'
      }
    });
    // a second start while it runs is the same build, no second request
    await builds.start('solver', '/root/solver/stax.yaml', 'slurm', null);
    expect(srv.calls.filter(c => c.method === 'POST')).toHaveLength(1);

    const done = await builds.whenOver('solver');
    await new Promise(resolve => setTimeout(resolve, 0)); // onFinal runs after the signal
    expect(done).toMatchObject({
      status: 'FINISHED',
      images: ['/out/v'],
      log: 'line 3',
      error: null
    });
    expect(seen).toEqual(['PENDING', 'BUILDING', 'CONVERTING', 'FINISHED']);
    expect(finals.map(b => b.status)).toEqual(['FINISHED']);
    const gets = srv.calls.filter(c => c.path === 'builds/b1').length;
    await new Promise(resolve => setTimeout(resolve, 20));
    expect(srv.calls.filter(c => c.path === 'builds/b1')).toHaveLength(gets); // no more polls
    builds.dispose();
  });

  it('shows a refused request with the server message and polls nothing', async () => {
    const srv = new FakeServer().on('POST', 'builds', 403, {
      message:
        "recipe '../x.yaml' is outside the server's root directory /root",
      details: [],
      error: 'Forbidden'
    });
    const builds = new Builds(new StaxClient(srv.transport), { interval: 0 });
    const b = await builds.start('solver', '../x.yaml', 'local', null);
    expect(isOver(b)).toBe(true);
    expect(b.error).toContain('outside the server');
    expect(buildLine(b)).toMatch(/^build for local refused: recipe/);
    expect(srv.calls).toHaveLength(1);
    builds.dispose();
  });

  it('keeps polling through a failed poll, and ends on a build the server forgot', async () => {
    let gets = 0;
    const srv = new FakeServer()
      .on('POST', 'builds', 201, status('b2'))
      .handler('GET', 'builds/b2', () =>
        ++gets === 1
          ? [
              500,
              { message: 'database is locked', details: [], error: 'Internal' }
            ]
          : [404, { message: "no build 'b2'", details: [], error: 'NotFound' }]
      )
      .on('GET', 'builds/b2/log', 200, {
        id: 'b2',
        status: 'PENDING',
        text: ''
      });
    const finals: FamilyBuild[] = [];
    const builds = new Builds(new StaxClient(srv.transport), {
      interval: 0,
      onFinal: b => {
        finals.push(b);
      }
    });
    const errors: string[] = [];
    builds.changed.connect(() => {
      const e = builds.of('solver')?.error;
      if (e) {
        errors.push(e);
      }
    });
    await builds.start('solver', '/r.yaml', 'local', null);
    const done = await builds.whenOver('solver');
    expect(errors[0]).toBe('database is locked'); // shown, then polled again
    expect(done).toMatchObject({ status: 'FAILED', error: "no build 'b2'" });
    await new Promise(resolve => setTimeout(resolve, 0));
    expect(finals).toHaveLength(1);
    builds.dispose();
  });
});
