/** Small text helpers shared by the widgets (pure). */

/** "5 s", "3 min", "2 h", "4 d" between two times in ms. */
export function duration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) {
    return `${s} s`;
  }
  if (s < 3600) {
    const m = Math.floor(s / 60);
    const rest = s % 60;
    return rest && m < 10 ? `${m} min ${rest} s` : `${m} min`;
  }
  if (s < 86400) {
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    return m ? `${h} h ${m} min` : `${h} h`;
  }
  return `${Math.floor(s / 86400)} d`;
}

/** "3 min ago" for an ISO time. */
export function age(iso: string, now: number): string {
  const t = Date.parse(iso);
  return Number.isNaN(t) ? '' : `${duration(now - t)} ago`;
}

/** Elapsed time of a step: from start (or submission) to finish (or now while it runs). */
export function elapsed(
  started: string | null | undefined,
  finished: string | null | undefined,
  now: number
): string {
  if (!started) {
    return '';
  }
  const a = Date.parse(started);
  const b = finished ? Date.parse(finished) : now;
  return Number.isNaN(a) || Number.isNaN(b) ? '' : duration(b - a);
}

/** The short form of an execution id shown in lists (ids are unique by prefix, like the CLI). */
export function shortId(id: string): string {
  return id.length > 8 ? id.slice(0, 8) : id;
}

/** The last `maxLines` lines of a text. */
export function lastLines(text: string, maxLines: number): string {
  const lines = text.split('\n');
  const trailing = lines.length && lines[lines.length - 1] === '';
  const body = trailing ? lines.slice(0, -1) : lines;
  const kept = body.slice(Math.max(0, body.length - maxLines));
  return kept.join('\n') + (trailing ? '\n' : '');
}
