import type { InputDecl } from '../src/api/types';
import { fieldType, initialValue, typedInputs } from '../src/model/workflows';

const decl = (
  d: Partial<InputDecl> & Pick<InputDecl, 'name' | 'type'>
): InputDecl => ({
  required: false,
  default: null,
  description: null,
  ...d
});

const N = decl({ name: 'n', type: 'integer', default: 10 });
const X = decl({ name: 'x', type: 'number', required: true });
const WHO = decl({ name: 'who', type: 'string', default: 'world' });
const LOUD = decl({ name: 'loud', type: 'boolean', default: false });
const TAG = decl({ name: 'tag', type: 'string', required: true });

describe('workflow input form', () => {
  it('starts each field at its default and picks the field type', () => {
    expect([N, X, WHO, LOUD].map(initialValue)).toEqual([
      '10',
      '',
      'world',
      false
    ]);
    expect([N, X, WHO, LOUD].map(fieldType)).toEqual([
      'number',
      'number',
      'text',
      'checkbox'
    ]);
  });

  it.each([
    [
      'typed values',
      { n: '3', x: '2.5', who: '$(id); rm -rf /', loud: true, tag: 'a b' },
      { n: 3, x: 2.5, who: '$(id); rm -rf /', loud: true, tag: 'a b' },
      []
    ],
    [
      'empty optional fields are left to their defaults',
      { n: '', x: '1e3', who: '', loud: false, tag: 't' },
      { x: 1000, loud: false, tag: 't' },
      []
    ],
    [
      'every problem at once',
      { n: '1.5', x: '', who: 'w', loud: false, tag: '' },
      { who: 'w', loud: false },
      [
        "n must be an integer, not '1.5'",
        'x is required (number)',
        'tag is required (string)'
      ]
    ],
    [
      'not a number',
      { n: '7', x: 'abc', tag: 't' },
      { n: 7, loud: false, tag: 't' },
      ["x must be a number, not 'abc'"]
    ]
  ])('%s', (_what, values, inputs, problems) => {
    const got = typedInputs([N, X, WHO, LOUD, TAG], values);
    expect(got.inputs).toEqual(inputs);
    expect(got.problems).toEqual(problems);
  });
});
