/**
 * Ours against the C client, side by side (issue 13's ratio table): for each
 * workload row, `sheepdog bench` (ours: `vdi.read` / `vdi.write`, and for
 * reads also `--into`, `vdi.readInto`) and bench/c/build/sd-bench
 * (libsheepdog 1.0: N threads calling sd_vdi_read / sd_vdi_write on reused
 * buffers) run one after the other on the same server and the same VDI,
 * alternating ours, ours --into, C, ours, ours --into, C ... (--runs rounds),
 * cold (no warm-up) and steady (`--warmup S` given to both), interleaved in
 * each round so that load that comes and goes hits every variant alike.
 *
 *   node dist/bench/peer.js [--server null|cluster|both] [-a HOST:PORT] [--runs N]
 *                           [--seconds S] [--warmup S] [--rows LIST] [--markdown]
 *                           [--c-build DIR] [--ours MAIN.JS] [--results DIR]
 *
 * Servers: `null` starts bench/c/build/null-sheep (port 0, every VDI name a
 * fully allocated VDI of the row's size, every request answered at once: the
 * clients' own cost) for each row and stops it (SIGTERM) after; `cluster` is
 * the real cluster at -a (default 127.0.0.1:7000): a VDI per row size,
 * named peer-<pid>-<row>, is created and filled with the SDK before the
 * row's runs (so that both clients read allocated data and writes are
 * overwrites, never first allocations for whoever runs first) and deleted
 * after. Default: both.
 *
 * Rows (--rows: ids or 1-based numbers, comma-separated; default all):
 *   seq-write-4m       4 MiB seq write QD8, 2 GiB
 *   seq-read-4m        4 MiB seq read QD8, 2 GiB
 *   rand-write-4k      4 KiB rand write QD32, 64 MiB
 *   rand-read-4k-qd32  4 KiB rand read QD32, 128 MiB
 *   rand-read-4k-qd1   4 KiB rand read QD1, 16 MiB
 * The size is the row's VDI (the range offsets fall in) and, by default,
 * each run's --total: the issue's table as it was measured. With --seconds S
 * every run lasts S seconds instead over the same range. On the null server
 * the 4 KiB rows move their totals in well under a second (QD1: 4096
 * requests, much of it JIT warm-up for ours): the cold numbers are then
 * mostly start-up; for the steady state use --warmup (default 2 s; 0 = cold
 * runs only) and, for final numbers, --seconds 5.
 *
 * Needs the C build (bench/c/build/sd-bench, null-sheep); if it is missing
 * and $SHEEPDOG_PREFIX is set, runs bench/c/build.sh first, otherwise exits
 * 2 saying what to set. Prints the machine, the commit, how busy the machine
 * was before, and a table per server and mode: C IOPS median (min-max), ours
 * median (min-max), the ratio ours/C of the medians (and ours --into / C),
 * p50/p99, peak RSS and CPU time per request, ours vs C (--markdown: the
 * tables for docs/benchmarks.md). Every run goes to
 * bench/results/<stamp>-peer.json (bench/charts.ts draws it).
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { type BenchResult, fillVdi } from '../cli/bench/engine.js';
import { SheepdogClient } from '../lib/client/client.js';
import {
  CLI,
  GiB,
  type Machine,
  MiB,
  RESULTS_DIR,
  ROOT,
  fmt,
  isMain,
  machine,
  markdownTable,
  median,
  parseFlags,
  saveResult,
  sourceVersion,
  table,
  warnIfBusy,
} from './common.js';

export type ServerKind = 'null' | 'cluster';
export type Mode = 'cold' | 'steady';
/** ours = `sheepdog bench` (vdi.read / vdi.write); into = ours with --into (vdi.readInto); c = sd-bench. */
export type Variant = 'ours' | 'into' | 'c';

export interface Row {
  id: string;
  name: string;
  op: 'read' | 'write';
  pattern: 'seq' | 'random';
  bs: number;
  qd: number;
  /** The VDI's size (the offsets' range) and the default --total of a run. */
  size: number;
}

export const ROWS: readonly Row[] = [
  { id: 'seq-write-4m', name: '4 MiB seq write QD8', op: 'write', pattern: 'seq', bs: 4 * MiB, qd: 8, size: 2 * GiB },
  { id: 'seq-read-4m', name: '4 MiB seq read QD8', op: 'read', pattern: 'seq', bs: 4 * MiB, qd: 8, size: 2 * GiB },
  {
    id: 'rand-write-4k',
    name: '4 KiB rand write QD32',
    op: 'write',
    pattern: 'random',
    bs: 4096,
    qd: 32,
    size: 64 * MiB,
  },
  {
    id: 'rand-read-4k-qd32',
    name: '4 KiB rand read QD32',
    op: 'read',
    pattern: 'random',
    bs: 4096,
    qd: 32,
    size: 128 * MiB,
  },
  {
    id: 'rand-read-4k-qd1',
    name: '4 KiB rand read QD1',
    op: 'read',
    pattern: 'random',
    bs: 4096,
    qd: 1,
    size: 16 * MiB,
  },
];

/** The JSON line both programs print (`sheepdog bench --json`'s keys; sd-bench's are the same). */
export type BenchLine = BenchResult;

/** One measured run. */
export interface PeerRun extends BenchLine {
  server: ServerKind;
  row: string;
  mode: Mode;
  variant: Variant;
  round: number;
  /** CPU time (user + system) of the measuring process per request, µs. */
  cpu_us_per_req: number | null;
  /** 1-minute load average when the run started. */
  load1: number;
  /** The command line run. */
  argv: string[];
}

export interface Spread {
  min: number;
  median: number;
  max: number;
}

/** Medians are of the runs of one row, server and mode; RSS is the highest of them. */
export interface VariantSummary {
  runs: number;
  iops: Spread;
  p50_us: number;
  p99_us: number;
  max_rss_mb: number;
  cpu_us_per_req: number | null;
}

export interface RowSummary {
  server: ServerKind;
  row: string;
  name: string;
  mode: Mode;
  ours: VariantSummary;
  into: VariantSummary | null;
  c: VariantSummary;
  /** median ours IOPS / median C IOPS. */
  ratio: number;
  /** median ours --into IOPS / median C IOPS (reads). */
  into_ratio: number | null;
}

export interface PeerResult {
  kind: 'peer';
  date: string;
  machine: Machine;
  loadavgAfter: number[];
  options: {
    servers: ServerKind[];
    address: string;
    runs: number;
    seconds: number | undefined;
    warmup: number;
    rows: string[];
  };
  programs: { ours: string; c: string; nullSheep: string };
  summaries: RowSummary[];
  runs: PeerRun[];
}

// ------------------------------------------------------------ pure parts

export { median };

export function spread(xs: readonly number[]): Spread {
  return { min: Math.min(...xs), median: median(xs), max: Math.max(...xs) };
}

const round = (x: number, d: number): number => Number(x.toFixed(d));

/** The variants run for a row, in the order of each round. */
export function variantsFor(row: Row): Variant[] {
  return row.op === 'read' ? ['ours', 'into', 'c'] : ['ours', 'c'];
}

/** The order of the runs of one row: round by round, each mode, each variant (ours, [into,] C, ours, ...). */
export function schedule(
  row: Row,
  runs: number,
  modes: readonly Mode[],
): { round: number; mode: Mode; variant: Variant }[] {
  const out: { round: number; mode: Mode; variant: Variant }[] = [];
  for (let round = 1; round <= runs; round++) {
    for (const mode of modes) for (const variant of variantsFor(row)) out.push({ round, mode, variant });
  }
  return out;
}

export function cpuPerRequest(r: Pick<BenchLine, 'cpu_ms' | 'bytes' | 'bs'>): number | null {
  const requests = r.bs > 0 ? r.bytes / r.bs : 0;
  if (!(requests > 0) || typeof r.cpu_ms !== 'number' || !Number.isFinite(r.cpu_ms)) return null;
  return round((r.cpu_ms * 1000) / requests, 2);
}

function summarizeVariant(runs: readonly PeerRun[]): VariantSummary {
  const cpu = runs.map((r) => r.cpu_us_per_req).filter((x): x is number => x !== null);
  return {
    runs: runs.length,
    iops: spread(runs.map((r) => r.iops)),
    p50_us: median(runs.map((r) => r.p50_us)),
    p99_us: median(runs.map((r) => r.p99_us)),
    max_rss_mb: Math.max(...runs.map((r) => r.max_rss_mb)),
    cpu_us_per_req: cpu.length > 0 ? round(median(cpu), 2) : null,
  };
}

/** One summary per (server, row, mode) present in `runs`, in the order they first appear. */
export function summarize(runs: readonly PeerRun[], rows: readonly Row[] = ROWS): RowSummary[] {
  const groups = new Map<string, PeerRun[]>();
  for (const r of runs) {
    const k = `${r.server}\0${r.row}\0${r.mode}`;
    const g = groups.get(k);
    if (g) g.push(r);
    else groups.set(k, [r]);
  }
  const out: RowSummary[] = [];
  for (const g of groups.values()) {
    const first = g[0];
    if (first === undefined) continue;
    const of = (v: Variant): PeerRun[] => g.filter((r) => r.variant === v);
    if (of('ours').length === 0 || of('c').length === 0) continue;
    const ours = summarizeVariant(of('ours'));
    const c = summarizeVariant(of('c'));
    const into = of('into').length > 0 ? summarizeVariant(of('into')) : null;
    const ratio = (x: VariantSummary): number => (c.iops.median > 0 ? round(x.iops.median / c.iops.median, 2) : 0);
    out.push({
      server: first.server,
      row: first.row,
      name: rows.find((r) => r.id === first.row)?.name ?? first.row,
      mode: first.mode,
      ours,
      into,
      c,
      ratio: ratio(ours),
      into_ratio: into ? ratio(into) : null,
    });
  }
  return out;
}

const iopsCell = (s: Spread): string => `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})`;
const us = (x: number): string => (x >= 100 ? fmt(x) : fmt(x, 1));
const cpuCell = (x: number | null): string => (x === null ? '—' : x >= 100 ? fmt(x) : fmt(x, 1));

export const TABLE_HEADER = [
  'workload',
  'C IOPS median (min–max)',
  'ours IOPS median (min–max)',
  'ours/C',
  'ours --into/C',
  'p50/p99 µs ours vs C',
  'peak RSS MiB ours vs C',
  'CPU µs/req ours vs C',
];

/** The ratio table of some summaries (one server and mode, usually). */
export function ratioTable(summaries: readonly RowSummary[], markdown = false): string {
  const rows = summaries.map((s) => [
    s.name,
    iopsCell(s.c.iops),
    iopsCell(s.ours.iops),
    s.ratio.toFixed(2),
    s.into_ratio === null ? '—' : s.into_ratio.toFixed(2),
    `${us(s.ours.p50_us)}/${us(s.ours.p99_us)} vs ${us(s.c.p50_us)}/${us(s.c.p99_us)}`,
    `${fmt(s.ours.max_rss_mb)}${s.into ? ` (--into ${fmt(s.into.max_rss_mb)})` : ''} vs ${fmt(s.c.max_rss_mb)}`,
    `${cpuCell(s.ours.cpu_us_per_req)} vs ${cpuCell(s.c.cpu_us_per_req)}`,
  ]);
  return markdown ? markdownTable(TABLE_HEADER, rows) : table(TABLE_HEADER, rows);
}

function modeText(mode: Mode, warmup: number): string {
  return mode === 'steady' ? `steady (--warmup ${warmup} s)` : 'cold (no warm-up)';
}

function serverText(server: ServerKind, address: string): string {
  return server === 'null' ? 'null server (bench/c/build/null-sheep)' : `real cluster at ${address}`;
}

export function describeMachine(m: Machine): string {
  return (
    `machine: ${m.nproc} × ${m.cpu}, ${m.memTotalGiB} GiB (${m.memFreeGiB} free), node ${m.node}, ${m.platform}; ` +
    `load ${m.loadavg.join(' ')}; ${Math.round(m.busyBefore * 100)}% of the CPUs busy before the run`
  );
}

/** The whole report: the header lines, then a table per server and mode. */
export function report(
  res: Pick<PeerResult, 'machine' | 'options' | 'summaries'> & {
    source?: { commit: string; dirty: boolean } | undefined;
  },
  markdown = false,
): string {
  const o = res.options;
  const out: string[] = [];
  const src = res.source ? `${res.source.commit}${res.source.dirty ? ' (uncommitted changes)' : ''}` : 'unknown';
  const each = o.seconds === undefined ? "--total (the row's size)" : `--seconds ${o.seconds}`;
  const head = [
    'ours (sheepdog bench: vdi.read / vdi.write; --into: vdi.readInto) vs libsheepdog (bench/c/build/sd-bench)',
    `${describeMachine(res.machine)}`,
    `commit ${src}; ${o.runs} run${o.runs === 1 ? '' : 's'} of each, alternating; each run ${each}; ratio = median ours IOPS / median C IOPS`,
  ];
  out.push(markdown ? `${head.map((l) => `${l}  `).join('\n')}\n` : `${head.join('\n')}\n`);
  const modes: Mode[] = o.warmup > 0 ? ['steady', 'cold'] : ['cold'];
  for (const server of o.servers) {
    for (const mode of modes) {
      const rows = res.summaries.filter((s) => s.server === server && s.mode === mode);
      if (rows.length === 0) continue;
      const title = `${serverText(server, o.address)}, ${modeText(mode, o.warmup)}`;
      out.push(markdown ? `\n#### ${title}\n\n${ratioTable(rows, true)}` : `\n${title}\n${ratioTable(rows)}`);
    }
  }
  return out.join('');
}

// ------------------------------------------------------------ running programs

export interface Programs {
  /** Command prefix of ours: node, dist/cli/sheepdog.cjs, bench. */
  ours: string[];
  /** Command prefix of sd-bench. */
  c: string[];
  /** Command prefix of null-sheep. */
  nullSheep: string[];
}

export function workloadArgs(row: Row, seconds: number | undefined, warmup: number | undefined): string[] {
  const a = ['--op', row.op, '--pattern', row.pattern, '--bs', String(row.bs), '--qd', String(row.qd)];
  a.push(...(seconds === undefined ? ['--total', String(row.size)] : ['--seconds', String(seconds)]));
  if (warmup !== undefined && warmup > 0) a.push('--warmup', String(warmup));
  return a;
}

/** The command line of one run. */
export function commandFor(
  p: Programs,
  variant: Variant,
  row: Row,
  address: string,
  vdi: string,
  seconds: number | undefined,
  warmup: number | undefined,
): string[] {
  const w = workloadArgs(row, seconds, warmup);
  if (variant === 'c') return [...p.c, '-a', address, '--vdi', vdi, ...w];
  return [
    ...p.ours,
    '-a',
    address,
    '--vdi',
    vdi,
    '--no-fill',
    ...w,
    '--json',
    ...(variant === 'into' ? ['--into'] : []),
  ];
}

/** Run a program; resolves with its last JSON line. */
export function runJson(
  argv: readonly string[],
  timeoutMs = 30 * 60_000,
  signal?: AbortSignal | undefined,
): Promise<BenchLine> {
  const [cmd, ...args] = argv;
  if (cmd === undefined) return Promise.reject(new Error('empty command'));
  return new Promise((resolve, reject) => {
    // An abort (SIGINT/SIGTERM of the runner) stops the program (SIGTERM) and fails the run.
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...(signal ? { signal } : {}) });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code, sig) => {
      clearTimeout(timer);
      const line = out
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l.startsWith('{'))
        .pop();
      if (code !== 0 || line === undefined) {
        reject(new Error(`${argv.join(' ')}: ${sig ?? `exit ${code}`}${err.trim() ? `: ${err.trim()}` : ''}`));
        return;
      }
      try {
        resolve(JSON.parse(line) as BenchLine);
      } catch (e) {
        reject(new Error(`${argv.join(' ')}: not JSON: ${line} (${(e as Error).message})`));
      }
    });
  });
}

export interface NullServer {
  address: string;
  close(): Promise<void>;
}

/** Start null-sheep on port 0; resolves once it printed `listening HOST:PORT`. */
export function startNullSheep(prefix: readonly string[], vdiSize: number, timeoutMs = 10_000): Promise<NullServer> {
  const [cmd, ...args] = prefix;
  if (cmd === undefined) return Promise.reject(new Error('empty command'));
  const child = spawn(cmd, [...args, '--host', '127.0.0.1', '--port', '0', '--vdi-size', String(vdiSize)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    let out = '';
    let ready = false;
    const fail = (e: Error): void => {
      if (ready) return;
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(e);
    };
    const timer = setTimeout(
      () => fail(new Error(`null-sheep did not print "listening" within ${timeoutMs} ms`)),
      timeoutMs,
    );
    child.once('error', fail);
    child.once('exit', (code, sig) => fail(new Error(`null-sheep exited before listening (${sig ?? `exit ${code}`})`)));
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      if (ready) return;
      out += d;
      const m = /^listening (\S+)$/m.exec(out);
      if (!m?.[1]) return;
      ready = true;
      clearTimeout(timer);
      resolve({
        address: m[1],
        async close() {
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
          await exited;
        },
      });
    });
  });
}

export interface RowRunOptions {
  server: ServerKind;
  address: string;
  vdi: string;
  runs: number;
  seconds: number | undefined;
  warmup: number;
  programs: Programs;
  onRun?: ((r: PeerRun) => void) | undefined;
  /** Stops the run in progress and the row. */
  signal?: AbortSignal | undefined;
}

/** All runs of one row on one (started) server, in schedule order. */
export async function runRow(row: Row, o: RowRunOptions): Promise<PeerRun[]> {
  const modes: Mode[] = o.warmup > 0 ? ['cold', 'steady'] : ['cold'];
  const out: PeerRun[] = [];
  for (const s of schedule(row, o.runs, modes)) {
    const argv = commandFor(
      o.programs,
      s.variant,
      row,
      o.address,
      o.vdi,
      o.seconds,
      s.mode === 'steady' ? o.warmup : undefined,
    );
    const load1 = round(os.loadavg()[0] ?? 0, 2);
    o.signal?.throwIfAborted();
    const line = await runJson(argv, undefined, o.signal);
    const run: PeerRun = {
      server: o.server,
      row: row.id,
      mode: s.mode,
      variant: s.variant,
      round: s.round,
      ...line,
      cpu_us_per_req: cpuPerRequest(line),
      load1,
      argv,
    };
    out.push(run);
    o.onRun?.(run);
  }
  return out;
}

// ------------------------------------------------------------ the command

export interface PeerOptions {
  servers: ServerKind[];
  address: string;
  runs: number;
  seconds: number | undefined;
  warmup: number;
  rows: Row[];
  markdown: boolean;
  cBuild: string;
  ours: string;
  resultsDir: string;
}

export class UsageError extends Error {}

export function parsePeerArgs(argv: readonly string[]): PeerOptions {
  const { nodes, flags, values } = parseFlags(argv, {
    flags: ['markdown'],
    values: ['server', 'runs', 'seconds', 'warmup', 'rows', 'c-build', 'ours', 'results'],
  });
  const server = values.get('server') ?? 'both';
  if (server !== 'null' && server !== 'cluster' && server !== 'both')
    throw new UsageError(`--server must be null, cluster or both, got ${JSON.stringify(server)}`);
  const num = (name: string, dflt: number | undefined, min: number): number | undefined => {
    const v = values.get(name);
    if (v === undefined) return dflt;
    if (!/^\d+(\.\d+)?$/.test(v) || Number(v) < min)
      throw new UsageError(`--${name} must be a number >= ${min}, got ${JSON.stringify(v)}`);
    return Number(v);
  };
  const runs = num('runs', 5, 1) ?? 5;
  if (!Number.isInteger(runs)) throw new UsageError('--runs must be a whole number');
  const seconds = num('seconds', undefined, 0);
  if (seconds !== undefined && !(seconds > 0)) throw new UsageError('--seconds must be positive');
  const rowsArg = values.get('rows');
  const rows =
    rowsArg === undefined
      ? [...ROWS]
      : rowsArg
          .split(',')
          .map((s) => s.trim())
          .filter((s) => s !== '')
          .map((s) => {
            const r = /^\d+$/.test(s) ? ROWS[Number(s) - 1] : ROWS.find((x) => x.id === s);
            if (!r)
              throw new UsageError(
                `--rows: no row ${JSON.stringify(s)} (rows: ${ROWS.map((x) => x.id).join(', ')} or 1..${ROWS.length})`,
              );
            return r;
          });
  if (rows.length === 0) throw new UsageError('--rows: no row given');
  if (nodes !== undefined && nodes.length !== 1)
    throw new UsageError('-a takes one HOST:PORT (both clients use one gateway)');
  return {
    servers: server === 'both' ? ['null', 'cluster'] : [server],
    address: nodes?.[0] ?? '127.0.0.1:7000',
    runs,
    seconds,
    warmup: num('warmup', 2, 0) ?? 2,
    rows,
    markdown: flags.has('markdown'),
    cBuild: values.get('c-build') ?? join(ROOT, 'bench', 'c', 'build'),
    ours: values.get('ours') ?? CLI,
    resultsDir: values.get('results') ?? RESULTS_DIR,
  };
}

/** Make sure the C build is there (building it when $SHEEPDOG_PREFIX says where libsheepdog is); an error text if not. */
export function ensureCBuild(o: PeerOptions, env: NodeJS.ProcessEnv): string | undefined {
  const need = ['sd-bench', ...(o.servers.includes('null') ? ['null-sheep'] : [])].map((f) => join(o.cBuild, f));
  const missing = (): string[] => need.filter((f) => !existsSync(f));
  if (missing().length === 0) return undefined;
  const script = join(ROOT, 'bench', 'c', 'build.sh');
  const prefix = env['SHEEPDOG_PREFIX'];
  if (prefix === undefined || prefix === '') {
    return (
      `${missing().join(', ')} missing: set SHEEPDOG_PREFIX to an installed Sheepdog 1.0 ` +
      `(include/sheepdog/sheepdog.h, lib/libsheepdog.so) and this builds it (bash ${script}), ` +
      `e.g. SHEEPDOG_PREFIX=/opt/sheepdog node dist/bench/peer.js`
    );
  }
  process.stderr.write(`building the C peer: SHEEPDOG_PREFIX=${prefix} bash ${script}\n`);
  const r = spawnSync('bash', [script], { stdio: ['ignore', 'inherit', 'inherit'], env });
  if (r.status !== 0) return `bash ${script} failed (${r.signal ?? `exit ${r.status}`})`;
  return missing().length === 0 ? undefined : `${missing().join(', ')} still missing after bash ${script}`;
}

/** A VDI per row size on the real cluster, filled; reused while the next row has the same size. */
class ClusterVdis {
  private current: { name: string; size: number } | undefined;
  private readonly client: SheepdogClient;
  constructor(address: string) {
    this.client = new SheepdogClient({ nodes: [address], connectTimeout: 10_000, requestTimeout: 120_000 });
  }
  async get(row: Row): Promise<string> {
    if (this.current?.size === row.size) return this.current.name;
    await this.release();
    const name = `peer-${process.pid}-${row.id}`;
    await this.client.createVdi(name, row.size);
    this.current = { name, size: row.size };
    const vdi = await this.client.openVdi(name);
    try {
      await fillVdi(vdi);
    } finally {
      await vdi.close();
    }
    return name;
  }
  async release(): Promise<void> {
    const c = this.current;
    this.current = undefined;
    if (c) await this.client.deleteVdi(c.name);
  }
  async close(): Promise<void> {
    try {
      await this.release();
    } finally {
      await this.client.close();
    }
  }
}

/** Run the whole comparison; resolves with the exit code. */
export async function main(
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
  io: { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream } = process,
): Promise<number> {
  let o: PeerOptions;
  try {
    o = parsePeerArgs(argv);
  } catch (e) {
    io.stderr.write(`peer: ${(e as Error).message}\n`);
    return 64;
  }
  const missing = ensureCBuild(o, env);
  if (missing !== undefined) {
    io.stderr.write(`peer: ${missing}\n`);
    return 2;
  }
  const programs: Programs = {
    ours: [process.execPath, o.ours, 'bench'],
    c: [join(o.cBuild, 'sd-bench')],
    nullSheep: [join(o.cBuild, 'null-sheep')],
  };
  const m = await machine();
  warnIfBusy(m);
  const runs: PeerRun[] = [];
  // Ctrl-C / SIGTERM: stop the program running, then clean up (null-sheep, the cluster's VDIs) and exit 1.
  const abort = new AbortController();
  const signal = abort.signal;
  const onSignal = (sig: NodeJS.Signals): void => {
    io.stderr.write(`peer: ${sig}: stopping, cleaning up\n`);
    abort.abort(new Error(`interrupted (${sig})`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const onRun = (r: PeerRun): void => {
    io.stderr.write(
      `${r.server} ${r.row} ${r.mode} round ${r.round} ${r.variant}: ${fmt(r.iops)} IOPS, p50 ${r.p50_us} us, p99 ${r.p99_us} us\n`,
    );
  };
  try {
    for (const server of o.servers) {
      const vdis = server === 'cluster' ? new ClusterVdis(o.address) : undefined;
      try {
        for (const row of o.rows) {
          const base = { server, runs: o.runs, seconds: o.seconds, warmup: o.warmup, programs, onRun, signal };
          if (vdis) {
            const vdi = await vdis.get(row);
            runs.push(...(await runRow(row, { ...base, address: o.address, vdi })));
          } else {
            const ns = await startNullSheep(programs.nullSheep, row.size);
            try {
              runs.push(...(await runRow(row, { ...base, address: ns.address, vdi: `peer-${row.id}` })));
            } finally {
              await ns.close();
            }
          }
        }
      } finally {
        await vdis?.close();
      }
    }
  } catch (e) {
    io.stderr.write(`peer: ${(e as Error).message}\n`);
    return 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  const result: PeerResult = {
    kind: 'peer',
    date: new Date().toISOString(),
    machine: m,
    loadavgAfter: os.loadavg().map((x) => round(x, 2)),
    options: {
      servers: o.servers,
      address: o.address,
      runs: o.runs,
      seconds: o.seconds,
      warmup: o.warmup,
      rows: o.rows.map((r) => r.id),
    },
    programs: { ours: programs.ours.join(' '), c: programs.c.join(' '), nullSheep: programs.nullSheep.join(' ') },
    summaries: summarize(runs),
    runs,
  };
  const file = saveResult('peer', result, o.resultsDir);
  io.stdout.write(report({ ...result, source: sourceVersion() }, o.markdown));
  io.stdout.write(`\nevery run: ${file}\n`);
  return 0;
}

if (isMain(import.meta.url)) {
  process.exitCode = await main(process.argv.slice(2));
}
