/** Sizes and transfer rates for people: 0 B, 999 B, 1.0 KiB, 12.3 MiB, 1.50 GiB. */
const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function bytes(n: number): string {
  if (!Number.isFinite(n) || n < 0) {
    return '?';
  }
  let i = 0;
  let v = n;
  while (v >= 1024 && i < UNITS.length - 1) {
    v /= 1024;
    i += 1;
  }
  if (i === 0) {
    return `${v} B`;
  }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${UNITS[i]}`;
}
