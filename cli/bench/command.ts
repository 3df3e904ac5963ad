/**
 * `sheepdog bench`: throughput, IOPS and latency percentiles of the public
 * VDI API (`vdi.read` / `vdi.write`) at a fixed queue depth, against a real
 * cluster (`-a`) or an embedded one started away from this event loop.
 *
 *   sheepdog bench [-a HOST:PORT,...] --vdi NAME [--create SIZE]
 *                  --op read|write --pattern seq|random --bs BYTES --qd N
 *                  (--total BYTES | --seconds S) [--warmup S] [--connections N] [--json]
 *
 * `--json` prints exactly one line whose keys are a contract (outside tools
 * parse it): op, pattern, bs, qd, bytes, seconds, mibps, iops, p50_us,
 * p99_us, max_rss_mb, cpu_ms (new keys are only ever appended). Progress
 * goes to stderr, only when it is a terminal. `--warmup S` runs the same
 * workload S seconds first, unmeasured. The measuring is engine.ts's; docs/benchmarks.md describes the method.
 */
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { parseAddress } from '../../lib/util/address.js';
import { SheepdogClient } from '../../lib/client/client.js';
import { parseSize } from '../../lib/client/names.js';
import { SheepdogPool } from '../../lib/transport/pool.js';
import type { MemorySheepOptions } from '../../testing/types.js';
import type { Vdi } from '../../lib/vdi/vdi.js';
import { ExitCode, UsageError, errorText, exitCodeFor } from '../exit.js';
import { formatSize } from '../format.js';
import {
  BENCH_JSON_KEYS,
  type BenchResult,
  type EmbeddedCluster,
  type MeasureOptions,
  type RunStats,
  fillVdi,
  measure,
  startEmbeddedCluster,
} from './engine.js';

/** The workload fields (op, pattern, bs, qd, total, seconds) are MeasureOptions'. */
export interface BenchOptions extends Omit<MeasureOptions, 'into'> {
  /** Gateways; undefined = start an embedded cluster. */
  nodes: string[] | undefined;
  vdi: string;
  /** Create the VDI with this size first (always done for the embedded cluster). */
  create: number | undefined;
  /** Connections per gateway (pool `connectionsPerNode`). */
  connections: number | undefined;
  json: boolean;
  /** Fill the VDI before measuring (default: when reading a VDI this run created). */
  fill: boolean | undefined;
  /** Delete the VDI afterwards (only one this run created). */
  deleteAfter: boolean;
  /** Learn the other gateways from the cluster (GET_NODE_LIST). */
  discover: boolean;
  /** Embedded cluster: number of nodes. */
  embeddedNodes: number;
  /** Embedded cluster in null mode: answers at once, stores nothing. */
  nullMode: boolean;
  /** Request timeout, ms. */
  timeout: number;
  /** Reads through vdi.readInto into a reused buffer per slot. */
  into: boolean;
}

const MiB = 2 ** 20;
const GiB = 2 ** 30;
/** Largest default VDI of the embedded cluster. */
const DEFAULT_MAX_VDI = GiB;
const MIN_DEFAULT_VDI = 64 * MiB;

const HELP = `Usage: sheepdog bench [-a HOST:PORT,...] --vdi NAME [--create SIZE]
                      --op read|write --pattern seq|random --bs BYTES --qd N
                      (--total BYTES | --seconds S) [--warmup S] [--connections N] [--json]

Measure the VDI API at a fixed queue depth: N requests of BYTES each are in
flight at all times (vdi.read / vdi.write). Sizes accept K, M, G, T, P suffixes.

Without -a (and without $SHEEPDOG_NODES) an embedded cluster is started in a
separate process, the VDI is created there and, for reads, filled first.

Options:
  -a, --address HOST:PORT[,...]  gateways of a real cluster (repeat or comma-separate;
                                 default: $SHEEPDOG_NODES, else the embedded cluster)
      --vdi NAME                 VDI to use (default "bench" on the embedded cluster)
      --create SIZE              create the VDI with this size first
                                 (embedded default: the total, 64M..1G; 1G with --seconds)
      --op read|write
      --pattern seq|random       sequential (wraps at the end) or uniformly random, bs-aligned
      --bs BYTES                 bytes per request
      --qd N                     requests in flight
      --total BYTES              stop after this many bytes
      --seconds S                stop issuing after S seconds
      --warmup S                 run the same workload for S seconds first, unmeasured
                                 (steady state apart from cold start; default 0: none)
      --connections N            connections per gateway (default 2)
      --fill / --no-fill         write the whole VDI before measuring
                                 (default: only when reading a VDI this run created)
      --delete                   delete the VDI afterwards (if this run created it)
      --discover                 also use the gateways the cluster lists (GET_NODE_LIST)
      --nodes N                  embedded cluster: nodes (default 3)
      --null                     embedded cluster in null mode: answers at once, stores nothing
                                 (the client's own ceiling)
      --into                     reads: vdi.readInto into one reused buffer per slot
                                 (libsheepdog's sd_vdi_read shape) instead of vdi.read
      --timeout MS               request timeout (default 60000; 0 = none)
      --json                     print one JSON line: op, pattern, bs, qd, bytes, seconds,
                                 mibps, iops, p50_us, p99_us, max_rss_mb, cpu_ms
                                 (cpu_ms: this process's user + system CPU in the measured phase)
  -h, --help                     show this help
`;

const OPTIONS = {
  address: { type: 'string', short: 'a', multiple: true },
  vdi: { type: 'string' },
  create: { type: 'string' },
  op: { type: 'string' },
  pattern: { type: 'string' },
  bs: { type: 'string' },
  qd: { type: 'string' },
  total: { type: 'string' },
  seconds: { type: 'string' },
  warmup: { type: 'string' },
  connections: { type: 'string' },
  json: { type: 'boolean' },
  fill: { type: 'boolean' },
  'no-fill': { type: 'boolean' },
  delete: { type: 'boolean' },
  discover: { type: 'boolean' },
  nodes: { type: 'string' },
  null: { type: 'boolean' },
  timeout: { type: 'string' },
  into: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];

function wholeNumber(
  v: string | undefined,
  name: string,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) {
    throw new UsageError(`--${name} must be a whole number in ${min}..${max}, got ${JSON.stringify(v)}`);
  }
  return Number(v);
}

function size(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  let n: number;
  try {
    n = parseSize(v, `--${name}`);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (n < 1) throw new UsageError(`--${name} must be at least 1 byte`);
  return n;
}

/** Parse the command line (without `bench`). Throws UsageError. */
export function parseBenchArgs(
  argv: readonly string[],
  env: Record<string, string | undefined> = process.env,
): BenchOptions | 'help' {
  let parsed: ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true; strict: true }>>;
  try {
    parsed = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message.split('\n')[0] ?? String(e));
  }
  const v = parsed.values;
  if (v.help) return 'help';
  if (parsed.positionals.length > 0)
    throw new UsageError(`unexpected argument ${JSON.stringify(parsed.positionals[0])}`);
  // -a, else $SHEEPDOG_NODES (as every other command), else the embedded cluster.
  const fromEnv = (env['SHEEPDOG_NODES'] ?? '').trim();
  const given = v.address ?? (fromEnv === '' ? undefined : [fromEnv]);
  const nodes = given
    ?.flatMap((a) => a.split(/[\s,]+/))
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map((s) => {
      try {
        return parseAddress(s).key;
      } catch (e) {
        throw new UsageError((e as Error).message);
      }
    });
  if (nodes !== undefined && nodes.length === 0) throw new UsageError('-a: no address given');
  const op = v.op;
  if (op !== 'read' && op !== 'write') throw new UsageError('--op must be read or write');
  const pattern = v.pattern;
  if (pattern !== 'seq' && pattern !== 'random') throw new UsageError('--pattern must be seq or random');
  const bs = size(v.bs, 'bs');
  if (bs === undefined) throw new UsageError('--bs is required');
  const qd = wholeNumber(v.qd, 'qd', 1, 1024);
  if (qd === undefined) throw new UsageError('--qd is required');
  const total = size(v.total, 'total');
  let seconds: number | undefined;
  if (v.seconds !== undefined) {
    if (!/^\d+(\.\d+)?$/.test(v.seconds) || !(Number(v.seconds) > 0)) {
      throw new UsageError(`--seconds must be a positive number, got ${JSON.stringify(v.seconds)}`);
    }
    seconds = Number(v.seconds);
  }
  if ((total === undefined) === (seconds === undefined))
    throw new UsageError('give exactly one of --total and --seconds');
  let warmup: number | undefined;
  if (v.warmup !== undefined) {
    if (!/^\d+(\.\d+)?$/.test(v.warmup)) {
      throw new UsageError(`--warmup must be a number of seconds (0 or more), got ${JSON.stringify(v.warmup)}`);
    }
    warmup = Number(v.warmup);
  }
  const vdi = v.vdi ?? (nodes === undefined ? 'bench' : undefined);
  if (vdi === undefined) throw new UsageError('--vdi is required with -a');
  if (v.fill && v['no-fill']) throw new UsageError('--fill and --no-fill contradict each other');
  if (v.into && op !== 'read') throw new UsageError('--into applies to --op read');
  if (nodes !== undefined && v.null) throw new UsageError('--null applies to the embedded cluster only (no -a)');
  if (nodes !== undefined && v.nodes !== undefined)
    throw new UsageError('--nodes applies to the embedded cluster only');
  return {
    nodes,
    vdi,
    create: size(v.create, 'create'),
    op,
    pattern,
    bs,
    qd,
    total,
    seconds,
    warmup,
    connections: wholeNumber(v.connections, 'connections', 1, 64),
    json: v.json === true,
    fill: v.fill ? true : v['no-fill'] ? false : undefined,
    deleteAfter: v.delete === true,
    discover: v.discover === true,
    embeddedNodes: wholeNumber(v.nodes, 'nodes', 1, 64) ?? 3,
    nullMode: v.null === true,
    timeout: wholeNumber(v.timeout, 'timeout', 0) ?? 60_000,
    into: v.into === true,
  };
}

/** The `--json` line (exactly the contract keys, in order). */
export function jsonLine(r: BenchResult): string {
  const o: Record<string, unknown> = {};
  for (const k of BENCH_JSON_KEYS) o[k] = r[k];
  return `${JSON.stringify(o)}\n`;
}

// ------------------------------------------------------------ running

interface Bar {
  update(fraction: number): void;
  stop(): void;
}

async function progressBar(label: string, stderr: BenchIO['stderr']): Promise<Bar | undefined> {
  if (stderr.isTTY !== true) return undefined;
  const { default: cliProgress } = await import('cli-progress');
  const bar = new cliProgress.SingleBar(
    {
      stream: stderr,
      format: `${label} [{bar}] {percentage}% {duration_formatted}`,
      hideCursor: null,
      clearOnComplete: true,
      fps: 10,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(1000, 0);
  return {
    update: (f) => bar.update(Math.round(Math.min(1, f) * 1000)),
    stop: () => bar.stop(),
  };
}

function defaultSize(o: BenchOptions): number {
  if (o.total === undefined) return DEFAULT_MAX_VDI;
  const os = 4 * MiB;
  const rounded = Math.ceil(o.total / os) * os;
  return Math.max(Math.min(rounded, DEFAULT_MAX_VDI), MIN_DEFAULT_VDI, Math.ceil(o.bs / os) * os);
}

function describe(r: RunStats, o: BenchOptions, where: string): string {
  const lines = [
    `${r.op} ${r.pattern} bs=${formatSize(r.bs)} qd=${r.qd}${o.into ? ' (vdi.readInto)' : ''} on ${where}`,
    `  ${formatSize(r.bytes)} in ${r.seconds.toFixed(2)} s: ${r.mibps.toFixed(1)} MiB/s, ${Math.round(r.iops)} IOPS`,
    `  latency p50 ${r.p50_us} us, p99 ${r.p99_us} us; peak RSS ${r.max_rss_mb} MiB; CPU ${r.cpu_ms} ms`,
  ];
  if (r.warmup !== undefined) {
    lines.push(`  after an unmeasured warm-up of ${r.warmup.seconds.toFixed(2)} s (${r.warmup.requests} requests)`);
  }
  if (r.spread.length > 1) {
    lines.push(
      `  requests in flight per gateway (mean): ${r.spread.map((s) => `${s.node} ${s.inFlight.toFixed(1)}`).join(', ')}`,
    );
  }
  if (o.nullMode) lines.push('  (null mode: the cluster stores nothing; this is the client-side ceiling)');
  return `${lines.join('\n')}\n`;
}

/** Where `sheepdog bench` writes (the process's streams by default). */
export interface BenchIO {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  /** $SHEEPDOG_NODES is read from here (default: process.env). */
  env?: Record<string, string | undefined>;
}

/** Run `sheepdog bench` with `argv` (the words after `bench`); resolves with the exit code. */
export async function runBench(
  argv: string[],
  io: BenchIO = { stdout: process.stdout, stderr: process.stderr },
): Promise<number> {
  const label = 'sheepdog: bench';
  let o: BenchOptions | 'help';
  try {
    o = parseBenchArgs(argv, io.env ?? process.env);
  } catch (e) {
    io.stderr.write(`${label}: ${(e as Error).message}\nRun 'sheepdog bench --help' for usage.\n`);
    return exitCodeFor(e);
  }
  if (o === 'help') {
    io.stdout.write(HELP);
    return ExitCode.OK;
  }
  let cluster: EmbeddedCluster | undefined;
  let client: SheepdogClient | undefined;
  let vdi: Vdi | undefined;
  let created = false;
  try {
    let nodes = o.nodes;
    if (nodes === undefined) {
      const opts: MemorySheepOptions = { nodes: o.embeddedNodes, port: 0, maxMemory: 64 * GiB };
      if (o.nullMode) opts.nullMode = true;
      cluster = await startEmbeddedCluster(opts);
      nodes = [...cluster.addresses];
    }
    client = new SheepdogClient({
      nodes,
      discover: o.discover,
      connectionsPerNode: o.connections ?? 2,
      requestTimeout: o.timeout,
      connectTimeout: 10_000,
      maxQueued: Math.max(1024, o.qd * 4),
      // As the other commands: fail fast when nothing answers (a node is
      // given up after its third failed connect in a row).
      reconnectStrategy: (retries: number) => (retries < 2 ? 50 * (retries + 1) : false),
    });
    const createSize = o.create ?? (cluster ? defaultSize(o) : undefined);
    if (createSize !== undefined) {
      await client.createVdi(o.vdi, createSize);
      created = true;
    }
    vdi = await client.openVdi(o.vdi);
    const fill = o.fill ?? (created && o.op === 'read');
    if (fill) {
      const bar = await progressBar('fill', io.stderr);
      const total = vdi.size;
      await fillVdi(vdi, bar ? (d) => bar.update(d / total) : undefined);
      bar?.stop();
    } else if (o.op === 'read' && vdi.allocatedRanges().reduce((s, r) => s + r.length, 0) < vdi.size) {
      io.stderr.write(
        `warning: VDI ${o.vdi} has unallocated objects; reads of those are answered locally (zeros) without a request\n`,
      );
    }
    const bar = await progressBar(`${o.op} ${o.pattern}`, io.stderr);
    const pool = client.transport instanceof SheepdogPool ? client.transport : undefined;
    let r: RunStats;
    try {
      r = await measure(vdi, o, { pool, progress: bar ? (f) => bar.update(f) : undefined });
    } finally {
      bar?.stop();
    }
    if (o.json) io.stdout.write(jsonLine(r));
    else {
      const where = cluster
        ? `${nodes.length} embedded gateways (cluster in a separate ${cluster.isolation}${o.nullMode ? ', null mode' : ''})`
        : `${nodes.length} gateway${nodes.length === 1 ? '' : 's'}`;
      io.stdout.write(describe(r, o, where));
    }
    return ExitCode.OK;
  } catch (e) {
    io.stderr.write(`${label}: ${errorText(e)}\n`);
    return exitCodeFor(e);
  } finally {
    try {
      await vdi?.close();
      if (created && o.deleteAfter && !cluster) await client?.deleteVdi(o.vdi);
    } catch (e) {
      io.stderr.write(`${label}: cleanup: ${errorText(e)}\n`);
    }
    await client?.close().catch(() => {});
    await cluster?.close().catch(() => {});
  }
}
