/** "Run on a cluster..." (issue 16): the pure logic of the form (no browser: see tests/ui). */
import type { NotebookParameter } from '../src/api/types';
import {
  changedValues,
  contentsPath,
  initialFields,
  looseValue,
  parseField,
  stepName,
  submitRequest
} from '../src/notebookrun/logic';

const PARAMS: NotebookParameter[] = [
  {
    name: 'year',
    value: 2023,
    type: 'int',
    text: '2023',
    help: 'the season',
    settable: true
  },
  { name: 'rate', value: 0.5, type: 'float', text: '0.5', settable: true },
  { name: 'flag', value: false, type: 'bool', text: 'False', settable: true },
  { name: 'label', value: 'a b', type: 'str', text: "'a b'", settable: true },
  { name: 'maybe', value: null, type: 'None', text: 'None', settable: true },
  { name: 'xs', value: null, type: 'other', text: '[1, 2]', settable: false }
];

describe('notebook run form', () => {
  it('prefills the fields with the defaults (source text when not settable)', () => {
    expect(
      initialFields(PARAMS).map(f => [f.name, f.text, f.settable])
    ).toEqual([
      ['year', '2023', true],
      ['rate', '0.5', true],
      ['flag', 'false', true],
      ['label', 'a b', true],
      ['maybe', '', true],
      ['xs', '[1, 2]', false]
    ]);
  });

  it.each([
    ['int', '2024', { value: 2024 }],
    ['int', ' -3 ', { value: -3 }],
    ['int', '2.5', { error: 'p: an integer, not "2.5"' }],
    ['int', '', { error: 'p: an integer, not ""' }],
    ['float', '1e-3', { value: 0.001 }],
    ['float', 'x', { error: 'p: a number, not "x"' }],
    ['float', '', { error: 'p: a number, not ""' }],
    ['bool', 'TRUE', { value: true }],
    ['bool', 'yes', { error: 'p: true or false, not "yes"' }],
    ['str', '$(id) \'"', { value: '$(id) \'"' }],
    ['str', '', { value: '' }],
    ['None', '', { value: null }],
    ['None', '7', { value: 7 }]
  ] as const)('reads a %s field %j', (type, text, expected) => {
    expect(parseField({ name: 'p', type, text })).toEqual(expected);
  });

  it.each([
    ['None', null],
    ['false', false],
    ['-12', -12],
    ['.5', 0.5],
    ['1e3', 1000],
    ['1.2.3', '1.2.3'],
    [' text ', ' text ']
  ] as const)('reads %j typed where the default was None', (text, value) => {
    expect(looseValue(text)).toEqual(value);
  });

  it('sends only the changed values, or every error', () => {
    const fields = initialFields(PARAMS);
    expect(changedValues(fields)).toEqual({ params: {}, errors: [] });
    const edited = fields.map(f =>
      f.name === 'year'
        ? { ...f, text: '2024' }
        : f.name === 'label'
          ? { ...f, text: 'x"; import os' }
          : f.name === 'xs'
            ? { ...f, text: '[3]' } // not settable: never sent
            : f
    );
    expect(changedValues(edited)).toEqual({
      params: { year: 2024, label: 'x"; import os' },
      errors: []
    });
    const bad = fields.map(f =>
      f.name === 'rate' ? { ...f, text: 'fast' } : f
    );
    expect(changedValues(bad).errors).toEqual(['rate: a number, not "fast"']);
  });

  it.each([
    ['analysis.ipynb', 'analysis'],
    ['work/My analysis (v2).ipynb', 'My-analysis-v2'],
    ['_.ipynb', 'notebook'],
    ['ünï.ipynb', 'n']
  ])('names the step of %s %s', (path, name) => {
    expect(stepName(path)).toBe(name);
  });

  it('builds a one-step workflow whose step runs the notebook', () => {
    const req = submitRequest({
      path: 'work/a b.ipynb',
      cluster: 'slurm',
      image: 'demo-x86',
      params: { year: 2024 },
      resources: { cpus_per_task: '2', memory: ' 4G ', time: '', gpus: '' }
    });
    expect(req).toEqual({
      cluster: 'slurm',
      workflow: {
        name: 'a-b',
        steps: [
          {
            name: 'a-b',
            notebook: 'work/a b.ipynb',
            params: { year: 2024 },
            image: 'demo-x86',
            resources: { cpus_per_task: 2, memory: '4G' }
          }
        ]
      }
    });
    const plain = submitRequest({
      path: 'n.ipynb',
      cluster: 'local',
      image: null,
      params: {},
      resources: {}
    }) as unknown as { workflow: { steps: Record<string, unknown>[] } };
    expect('image' in plain.workflow.steps[0]).toBe(false);
  });

  it.each([
    ['/home/u/work/a.ipynb', '/home/u', 'work/a.ipynb'],
    ['/home/u/work/a.ipynb', '/home/u/', 'work/a.ipynb'],
    ['/home/user2/a.ipynb', '/home/u', null],
    ['/etc/a.ipynb', '/home/u', null],
    ['/data/a.ipynb', '/', 'data/a.ipynb']
  ])('finds %s in the contents tree of %s', (abs, root, expected) => {
    expect(contentsPath(abs, root)).toBe(expected);
  });
});
