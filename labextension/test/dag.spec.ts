import { layoutDag } from '../src/model/dag';
import {
  age,
  duration,
  elapsed,
  lastLines,
  shortId
} from '../src/model/format';

describe('layoutDag', () => {
  it('puts a diamond in three columns', () => {
    const l = layoutDag([
      { name: 'a', after: [] },
      { name: 'b', after: ['a'] },
      { name: 'c', after: ['a'] },
      { name: 'd', after: ['b', 'c', 'not-run'] }
    ]);
    expect(l.nodes.map(n => [n.name, n.column, n.row])).toEqual([
      ['a', 0, 0],
      ['b', 1, 0],
      ['c', 1, 1],
      ['d', 2, 0]
    ]);
    expect(l.edges).toHaveLength(4);
    expect(l.width).toBeGreaterThan(0);
    expect(l.height).toBeGreaterThan(0);
  });

  it('never loops on a cycle', () => {
    const l = layoutDag([
      { name: 'a', after: ['b'] },
      { name: 'b', after: ['a'] }
    ]);
    expect(l.nodes).toHaveLength(2);
  });
});

describe('format', () => {
  it('says durations and ages', () => {
    expect(duration(4_000)).toBe('4 s');
    expect(duration(125_000)).toBe('2 min 5 s');
    expect(duration(3 * 3600_000 + 60_000)).toBe('3 h 1 min');
    expect(
      age('2026-11-22T10:00:00Z', Date.parse('2026-11-22T10:05:00Z'))
    ).toBe('5 min ago');
    expect(elapsed(null, null, 0)).toBe('');
    expect(elapsed('2026-11-22T10:00:00Z', '2026-11-22T10:00:30Z', 0)).toBe(
      '30 s'
    );
    expect(shortId('0123456789abcdef')).toBe('01234567');
    expect(lastLines('a\nb\nc\n', 2)).toBe('b\nc\n');
  });
});
