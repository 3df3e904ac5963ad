/** Shared pieces of the bench/ scripts: the machine, arguments, tables, result files. */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root (bench/ and dist/bench/ both resolve to it). */
export const ROOT = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    try {
      const p = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string };
      if (p.name === 'sheepdog-client') return dir;
    } catch {
      // keep looking
    }
    dir = dirname(dir);
  }
  return process.cwd();
})();

export const RESULTS_DIR = join(ROOT, 'bench', 'results');

/** The built CLI next to this script, as package.json's bin (dist/bench → dist/cli/sheepdog.cjs). */
export const CLI = fileURLToPath(new URL('../cli/sheepdog.cjs', import.meta.url));
/** The CLI's ESM entry, which that bundle is made from. */
export const MAIN = fileURLToPath(new URL('../cli/main.js', import.meta.url));

export interface Machine {
  nproc: number;
  cpu: string;
  memTotalGiB: number;
  memFreeGiB: number;
  node: string;
  platform: string;
  /** 1/5/15-minute load averages when the run started (they lag: a previous run shows up here). */
  loadavg: number[];
  /** Fraction of all CPUs busy during the half second before the run: other work skews every number. */
  busyBefore: number;
}

function cpuTimes(): { idle: number; total: number } {
  let idle = 0;
  let total = 0;
  for (const c of os.cpus()) {
    const t = c.times;
    idle += t.idle;
    total += t.user + t.nice + t.sys + t.irq + t.idle;
  }
  return { idle, total };
}

/** Fraction of the machine's CPU time that was not idle over `ms`. */
export async function busyFraction(ms = 500): Promise<number> {
  const a = cpuTimes();
  await new Promise((r) => setTimeout(r, ms));
  const b = cpuTimes();
  const total = b.total - a.total;
  return total > 0 ? Number((1 - (b.idle - a.idle) / total).toFixed(2)) : 0;
}

export async function machine(): Promise<Machine> {
  const cpus = os.cpus();
  return {
    nproc: os.availableParallelism?.() ?? cpus.length,
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    memTotalGiB: Number((os.totalmem() / 2 ** 30).toFixed(1)),
    memFreeGiB: Number((os.freemem() / 2 ** 30).toFixed(1)),
    node: process.version,
    platform: `${os.type()} ${os.release()} ${os.arch()}`,
    loadavg: os.loadavg().map((x) => Number(x.toFixed(2))),
    busyBefore: await busyFraction(),
  };
}

/** Warn on stderr when the machine is busy (the numbers would measure the other work too). */
export function warnIfBusy(m: Machine): void {
  if (m.busyBefore > 0.15) {
    process.stderr.write(
      `warning: ${Math.round(m.busyBefore * 100)}% of the CPUs were busy before the run: ` +
        'other work is running, the numbers will be low and noisy\n',
    );
  }
}

/** `-a HOST:PORT,...` (repeatable) and simple flags; anything else is an error. */
export function parseFlags(
  argv: readonly string[],
  known: { flags?: readonly string[]; values?: readonly string[] },
): { nodes: string[] | undefined; flags: Set<string>; values: Map<string, string> } {
  const flags = new Set<string>();
  const values = new Map<string, string>();
  let nodes: string[] | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    if (a === '-a' || a === '--address') {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs HOST:PORT[,...]`);
      nodes = [...(nodes ?? []), ...v.split(',').filter((s) => s !== '')];
    } else if (a.startsWith('--') && known.values?.includes(a.slice(2))) {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      values.set(a.slice(2), v);
    } else if (a.startsWith('--') && known.flags?.includes(a.slice(2))) {
      flags.add(a.slice(2));
    } else {
      throw new Error(`unknown argument ${JSON.stringify(a)}`);
    }
  }
  return { nodes, flags, values };
}

/** Columns padded to their widest cell; numbers right-aligned. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return `${[line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n')}\n`;
}

/** Markdown version of the same table (for docs/benchmarks.md). */
export function markdownTable(header: string[], rows: string[][]): string {
  const line = (cells: string[]): string => `| ${cells.join(' | ')} |`;
  return `${[line(header), line(header.map((_, i) => (i === 0 ? '---' : '---:'))), ...rows.map(line)].join('\n')}\n`;
}

/** The checked-out commit (and whether the tree has changes), when this is a git checkout. */
export function sourceVersion(): { commit: string; dirty: boolean } | undefined {
  try {
    const opts = { cwd: ROOT, encoding: 'utf8' as const, stdio: ['ignore', 'pipe', 'ignore'] as ('ignore' | 'pipe')[] };
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], opts).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], opts).trim() !== '';
    return { commit, dirty };
  } catch {
    return undefined;
  }
}

/** Write `data` (plus the source version) to bench/results/<stamp>-<kind>.json (or into `dir`); returns the path. */
export function saveResult(kind: string, data: object, dir = RESULTS_DIR): string {
  mkdirSync(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const file = join(dir, `${stamp}-${kind}.json`);
  writeFileSync(file, `${JSON.stringify({ ...data, source: sourceVersion() }, null, 2)}\n`);
  return file;
}

export const MiB = 2 ** 20;
export const GiB = 2 ** 30;

/** The median (NaN for no values). */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) return Number.NaN;
  return n % 2 === 1 ? (s[(n - 1) / 2] ?? 0) : ((s[n / 2 - 1] ?? 0) + (s[n / 2] ?? 0)) / 2;
}

export function fmt(x: number, digits = 0): string {
  return x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** True when the module at `url` is the script node was started with. */
export function isMain(url: string): boolean {
  const argv1 = process.argv[1];
  if (argv1 === undefined) return false;
  try {
    return realpathSync(fileURLToPath(url)) === realpathSync(argv1);
  } catch {
    return false;
  }
}
