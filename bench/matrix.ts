/**
 * The standard benchmark matrix (`npm run bench`): each workload runs as its
 * own `sheepdog bench --json` process (a fresh client: its RSS and JIT state
 * are its own), then a whole image goes in and out through the VDI streams
 * (bench/streams.ts). Prints a table and writes bench/results/<stamp>-matrix.json.
 *
 *   node dist/bench/matrix.js [-a HOST:PORT,...] [--null] [--quick] [--no-streams] [--markdown]
 *
 * Without -a every workload starts its own embedded cluster (a separate
 * process); with -a, VDIs named bench-matrix-<pid>-<n> are created on that
 * cluster and deleted afterwards. --null runs the matrix against the
 * embedded sheep's null mode (the client-side ceiling). --quick shrinks
 * every workload (a smoke run, not a measurement).
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { BenchResult } from '../cli/bench/engine.js';
import {
  CLI,
  type Machine,
  MiB,
  fmt,
  isMain,
  machine,
  markdownTable,
  parseFlags,
  saveResult,
  table,
  warnIfBusy,
} from './common.js';
import type { StreamResult } from './streams.js';

const run = promisify(execFile);

export interface Workload {
  name: string;
  args: string[];
}

export function workloads(quick: boolean): Workload[] {
  const seqTotal = quick ? '64M' : '1G';
  const secs = quick ? '1' : '5';
  const w = (
    name: string,
    op: string,
    pattern: string,
    bs: string,
    qd: number,
    stop: string[],
    extra: string[] = [],
  ) => ({
    name,
    args: ['--op', op, '--pattern', pattern, '--bs', bs, '--qd', String(qd), ...stop, ...extra],
  });
  return [
    w('4 MiB seq write QD8', 'write', 'seq', '4M', 8, ['--total', seqTotal]),
    w('4 MiB seq read QD8', 'read', 'seq', '4M', 8, ['--total', seqTotal]),
    w('4 KiB random write QD32', 'write', 'random', '4K', 32, ['--seconds', secs], ['--fill']),
    w('4 KiB random read QD32', 'read', 'random', '4K', 32, ['--seconds', secs]),
    w('4 KiB random read QD1', 'read', 'random', '4K', 1, ['--seconds', secs]),
  ];
}

export interface MatrixRow {
  workload: string;
  mibps: number;
  iops: number;
  p50_us: number | null;
  p99_us: number | null;
  max_rss_mb: number;
  seconds: number;
  bytes: number;
}

export interface MatrixResult {
  kind: 'matrix';
  date: string;
  machine: Machine;
  target: string;
  nullMode: boolean;
  quick: boolean;
  rows: MatrixRow[];
  raw: (BenchResult | StreamResult)[];
}

function lastJsonLines(stdout: string): unknown[] {
  return stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as unknown);
}

export async function runMatrix(o: {
  nodes: string[] | undefined;
  nullMode: boolean;
  quick: boolean;
  streams: boolean;
  onRow?: (r: MatrixRow) => void;
}): Promise<MatrixResult> {
  const m = await machine();
  warnIfBusy(m);
  const rows: MatrixRow[] = [];
  const raw: (BenchResult | StreamResult)[] = [];
  const vdiSize = o.quick ? '256M' : '1G';
  let n = 0;
  for (const w of workloads(o.quick)) {
    const target =
      o.nodes === undefined
        ? ['--create', vdiSize, ...(o.nullMode ? ['--null'] : [])]
        : ['-a', o.nodes.join(','), '--vdi', `bench-matrix-${process.pid}-${n++}`, '--create', vdiSize, '--delete'];
    const { stdout } = await run(process.execPath, [CLI, 'bench', ...target, ...w.args, '--json'], {
      maxBuffer: 16 * MiB,
    });
    const r = lastJsonLines(stdout)[0] as BenchResult | undefined;
    if (!r) throw new Error(`${w.name}: no JSON line from sheepdog bench`);
    raw.push(r);
    const row: MatrixRow = {
      workload: w.name,
      mibps: r.mibps,
      iops: r.iops,
      p50_us: r.p50_us,
      p99_us: r.p99_us,
      max_rss_mb: r.max_rss_mb,
      seconds: r.seconds,
      bytes: r.bytes,
    };
    rows.push(row);
    o.onRow?.(row);
  }
  if (o.streams) {
    const script = fileURLToPath(new URL('./streams.js', import.meta.url));
    const size = o.quick ? '256M' : '1G';
    const args = [script, '--size', size, '--json', ...(o.nullMode ? ['--null'] : [])];
    if (o.nodes) args.push('-a', o.nodes.join(','));
    const { stdout } = await run(process.execPath, args, { maxBuffer: 16 * MiB });
    for (const r of lastJsonLines(stdout) as StreamResult[]) {
      raw.push(r);
      const row: MatrixRow = {
        workload: `${r.op} ${size === '1G' ? '1 GiB' : size} (stream)`,
        mibps: r.mibps,
        iops: 0,
        p50_us: null,
        p99_us: null,
        max_rss_mb: r.max_rss_mb,
        seconds: r.seconds,
        bytes: r.bytes,
      };
      rows.push(row);
      o.onRow?.(row);
    }
  }
  return {
    kind: 'matrix',
    date: new Date().toISOString(),
    machine: m,
    target: o.nodes ? o.nodes.join(',') : o.nullMode ? 'embedded (null mode)' : 'embedded',
    nullMode: o.nullMode,
    quick: o.quick,
    rows,
    raw,
  };
}

const HEADER = ['workload', 'MiB/s', 'IOPS', 'p50 us', 'p99 us', 'peak RSS MiB'];

export function rowCells(r: MatrixRow): string[] {
  return [
    r.workload,
    fmt(r.mibps, 1),
    r.p50_us === null ? '-' : fmt(r.iops),
    r.p50_us === null ? '-' : fmt(r.p50_us),
    r.p99_us === null ? '-' : fmt(r.p99_us),
    fmt(r.max_rss_mb),
  ];
}

async function main(): Promise<void> {
  const { nodes, flags } = parseFlags(process.argv.slice(2), {
    flags: ['null', 'quick', 'no-streams', 'markdown'],
  });
  if (nodes && flags.has('null')) throw new Error('--null applies to the embedded cluster only');
  const t0 = performance.now();
  const res = await runMatrix({
    nodes,
    nullMode: flags.has('null'),
    quick: flags.has('quick'),
    streams: !flags.has('no-streams'),
    onRow: (r) => {
      if (process.stderr.isTTY) process.stderr.write(`  done: ${r.workload}\n`);
    },
  });
  const m = res.machine;
  process.stdout.write(
    `sheepdog-client benchmark matrix against ${res.target}${res.quick ? ' (quick: not a measurement)' : ''}\n` +
      `${m.cpu}, ${m.nproc} CPUs, ${m.memTotalGiB} GiB, node ${m.node}, ${Math.round(m.busyBefore * 100)}% busy before the run\n\n`,
  );
  const cells = res.rows.map(rowCells);
  process.stdout.write(flags.has('markdown') ? markdownTable(HEADER, cells) : table(HEADER, cells));
  const file = saveResult(res.nullMode ? 'matrix-null' : 'matrix', res);
  process.stdout.write(`\n${((performance.now() - t0) / 1000).toFixed(1)} s; results in ${file}\n`);
}

if (isMain(import.meta.url)) {
  main().catch((e: unknown) => {
    process.stderr.write(`matrix: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exitCode = 1;
  });
}
