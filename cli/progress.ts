/**
 * Progress of long copies (`vdi write` from stdin, `vdi read` to stdout,
 * `vdi import`, `vdi export`) on stderr, only when stderr is a terminal:
 * a cli-progress bar with bytes done, the total (when known), the rate and
 * the ETA. Nothing is drawn on a pipe or a file, so stderr stays clean for
 * scripts; stdout is never touched.
 */
import type { Writable } from 'node:stream';
import cliProgress from 'cli-progress';
import { formatSize } from './format.js';

export interface Progress {
  /** Bytes done so far (absolute). */
  update(done: number): void;
  /** Final line (ok) or clear it (failure), and stop. */
  stop(ok: boolean): void;
}

const NONE: Progress = { update() {}, stop() {} };

export interface ProgressStream extends Writable {
  isTTY?: boolean;
  columns?: number;
}

function clock(secs: number): string {
  if (!Number.isFinite(secs) || secs < 0) return '--:--';
  const s = Math.round(secs);
  const h = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, '0');
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

/** The bar's text: `label [####----]  42% 1.0 GiB / 2.4 GiB 95.2 MiB/s ETA 00:15` (no bar when `total` is unknown). */
export function progressLine(label: string, done: number, total: number | undefined, secs: number, width = 80): string {
  const rate = secs > 0 ? `${formatSize(done / secs)}/s` : '-/s';
  let line: string;
  if (total === undefined) {
    line = `${label} ${formatSize(done)} ${rate} ${clock(secs)}`;
  } else {
    const frac = total > 0 ? Math.min(1, done / total) : 1;
    const bar = 24;
    const filled = Math.round(frac * bar);
    const eta = done >= total ? 0 : done > 0 && secs > 0 ? ((total - done) * secs) / done : Number.NaN;
    line =
      `${label} [${'#'.repeat(filled)}${'-'.repeat(bar - filled)}] ${(frac * 100).toFixed(0).padStart(3)}% ` +
      `${formatSize(done)} / ${formatSize(total)} ${rate} ETA ${clock(eta)}`;
  }
  return line.length > width - 1 ? line.slice(0, width - 1) : line;
}

/**
 * A progress bar for `total` bytes (undefined: unknown, e.g. stdin) on
 * `stream`, or a no-op unless `enabled` (default: the stream is a TTY).
 */
export function createProgress(
  label: string,
  total: number | undefined,
  stream: ProgressStream,
  enabled = stream.isTTY === true,
): Progress {
  if (!enabled || stream.isTTY !== true) return NONE;
  const bar = new cliProgress.SingleBar({
    stream,
    fps: 10,
    hideCursor: false,
    linewrap: true,
    format: (_o: unknown, p: cliProgress.Params) =>
      progressLine(label, p.value, total, (Date.now() - p.startTime) / 1000, stream.columns ?? 80),
  });
  bar.start(total ?? 0, 0);
  let stopped = false;
  return {
    update(n: number) {
      if (!stopped) bar.update(n);
    },
    stop(ok: boolean) {
      if (stopped) return;
      stopped = true;
      if (!ok) (bar as unknown as { options: { clearOnComplete: boolean } }).options.clearOnComplete = true;
      bar.stop();
    },
  };
}
