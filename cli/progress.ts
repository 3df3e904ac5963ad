/**
 * Progress of `vdi import` / `vdi export` on stderr, only when stderr is a
 * terminal. A single self-rewriting line; the seam (`Progress`) lets a
 * library such as cli-progress replace it without touching the commands.
 */
import type { Writable } from 'node:stream';
import { formatSize } from './format.js';

export interface Progress {
  /** Bytes done so far (absolute). */
  update(done: number): void;
  /** Final line (or clear it) and stop. */
  stop(ok: boolean): void;
}

const NONE: Progress = { update() {}, stop() {} };

export interface ProgressStream extends Writable {
  isTTY?: boolean;
  columns?: number;
}

/** A progress line for `total` bytes on `stream`, or a no-op when it is not a TTY (or `enabled` is false). */
export function createProgress(
  label: string,
  total: number,
  stream: ProgressStream,
  enabled = stream.isTTY === true,
): Progress {
  if (!enabled) return NONE;
  const start = performance.now();
  let last = 0;
  let done = 0;
  const render = (): void => {
    const secs = (performance.now() - start) / 1000;
    const pct = total > 0 ? Math.min(100, (done / total) * 100) : 100;
    const width = 24;
    const filled = Math.round((pct / 100) * width);
    const rate = secs > 0 ? `${formatSize(done / secs)}/s` : '';
    const bar = `${'#'.repeat(filled)}${'-'.repeat(width - filled)}`;
    let line = `${label} [${bar}] ${pct.toFixed(0).padStart(3)}% ${formatSize(done)} / ${formatSize(total)} ${rate}`;
    const cols = stream.columns ?? 80;
    if (line.length > cols - 1) line = line.slice(0, cols - 1);
    stream.write(`\r${line}\x1b[K`);
  };
  return {
    update(n: number) {
      done = n;
      const now = performance.now();
      if (now - last < 100) return;
      last = now;
      render();
    },
    stop(ok: boolean) {
      if (ok) {
        render();
        stream.write('\n');
      } else stream.write('\r\x1b[K');
    },
  };
}
