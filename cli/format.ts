/** Text output of the CLI: sizes, dates, aligned tables, JSON. */

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'] as const;

/** 4294967296 → "4.0 GiB"; 512 → "512 B". */
export function formatSize(n: number): string {
  let v = n;
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${UNITS[u]}`;
}

let lastMinute = NaN;
let lastDate = '';
let lastTz: string | undefined;

/** Local time as dog prints it: "2024-05-01 13:45". */
export function formatDate(d: Date | null): string {
  if (d === null) return '-';
  // VDIs made together share their minute: a listing formats each minute once
  // (the local-time fields cost a time-zone lookup each). An invalid date's
  // minute is NaN and never matches.
  const minute = Math.floor(d.getTime() / 60_000);
  const tz = process.env['TZ'];
  if (minute === lastMinute && tz === lastTz) return lastDate;
  const p = (x: number): string => String(x).padStart(2, '0');
  const s = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
  // A UTC minute is one local minute only under a whole-minute zone offset (not the LMT of old dates).
  if (d.getSeconds() === d.getUTCSeconds()) {
    lastMinute = minute;
    lastDate = s;
    lastTz = tz;
  }
  return s;
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}

/**
 * A name for a table or a `key: value` line: control characters (a newline
 * or tab in an old VDI name) as `\n`, `\t`, `\r` or `\xHH`, so each row
 * stays one line. --json keeps the name as it is.
 */
export function escapeControls(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => {
    if (c === '\n') return '\\n';
    if (c === '\t') return '\\t';
    if (c === '\r') return '\\r';
    return `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`;
  });
}

export type Align = 'left' | 'right';

/** Control characters that escapeControls rewrites. */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/** Columns padded to their widest cell; header row first. */
export function table(header: string[], cells: string[][], align: Align[] = []): string {
  // One scan of every cell (joined) instead of a replace per cell: names with control characters are rare.
  const rows = cells.some((r) => CONTROL.test(r.join(''))) ? cells.map((r) => r.map(escapeControls)) : cells;
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => {
        const w = widths[i] ?? 0;
        return align[i] === 'right' ? c.padStart(w) : c.padEnd(w);
      })
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

/** JSON for `--json`: two-space indent, Dates as ISO strings, bigints as numbers. */
export function toJson(v: unknown): string {
  return `${JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? Number(x) : x), 2)}\n`;
}

/** `key: value` lines with the keys aligned. */
export function keyValues(pairs: [string, string][]): string {
  const w = Math.max(...pairs.map(([k]) => k.length));
  return pairs.map(([k, v]) => `${`${k}:`.padEnd(w + 1)} ${escapeControls(v)}`).join('\n') + '\n';
}
