/**
 * `sheepdog bench`: throughput, IOPS and latency percentiles of the public
 * VDI API (`vdi.read` / `vdi.write`) at a fixed queue depth, against a real
 * cluster (`-a`) or an embedded one started away from this event loop.
 *
 *   sheepdog bench [-a HOST:PORT,...] --vdi NAME [--create SIZE]
 *                  --op read|write --pattern seq|random --bs BYTES --qd N
 *                  (--total BYTES | --seconds S) [--connections N] [--json]
 *
 * `--json` prints exactly one line whose keys are a contract (outside tools
 * parse it): op, pattern, bs, qd, bytes, seconds, mibps, iops, p50_us,
 * p99_us, max_rss_mb. Progress goes to stderr, only when it is a terminal.
 * docs/benchmarks.md describes the method.
 */
import { createHistogram } from 'node:perf_hooks';
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { parseAddress } from '../lib/util/address.js';
import { SheepdogClient } from '../lib/client/client.js';
import { InvalidArgumentError } from '../lib/errors.js';
import { parseSize } from '../lib/client/names.js';
import { SheepdogPool } from '../lib/transport/pool.js';
import type { MemorySheepOptions } from '../testing/types.js';
import type { Vdi } from '../lib/vdi/vdi.js';
import type { BenchSheepMessage } from './bench-sheep.js';
import { launchSheep } from './launcher.js';
import { ExitCode, UsageError, errorText, exitCodeFor } from './exit.js';
import { formatSize } from './format.js';

export type BenchOp = 'read' | 'write';
export type BenchPattern = 'seq' | 'random';

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

/** The `--json` line, in this key order. */
export interface BenchResult {
  op: BenchOp;
  pattern: BenchPattern;
  bs: number;
  qd: number;
  bytes: number;
  seconds: number;
  mibps: number;
  iops: number;
  p50_us: number;
  p99_us: number;
  max_rss_mb: number;
}

/** Key order of the `--json` line (the contract). */
export const BENCH_JSON_KEYS = [
  'op',
  'pattern',
  'bs',
  'qd',
  'bytes',
  'seconds',
  'mibps',
  'iops',
  'p50_us',
  'p99_us',
  'max_rss_mb',
] as const satisfies readonly (keyof BenchResult)[];

const MiB = 2 ** 20;
const GiB = 2 ** 30;
/** Largest default VDI of the embedded cluster. */
const DEFAULT_MAX_VDI = GiB;
const MIN_DEFAULT_VDI = 64 * MiB;
const FILL_DEPTH = 8;

const HELP = `Usage: sheepdog bench [-a HOST:PORT,...] --vdi NAME [--create SIZE]
                      --op read|write --pattern seq|random --bs BYTES --qd N
                      (--total BYTES | --seconds S) [--connections N] [--json]

Measure the VDI API at a fixed queue depth: N requests of BYTES each are in
flight at all times (vdi.read / vdi.write). Sizes accept K, M, G suffixes.

Without -a an embedded cluster is started in a separate process, the VDI is
created there and, for reads, filled first.

Options:
  -a, --address HOST:PORT[,...]  gateways of a real cluster (repeat or comma-separate)
      --vdi NAME                 VDI to use (default "bench" on the embedded cluster)
      --create SIZE              create the VDI with this size first
                                 (embedded default: the total, 64M..1G; 1G with --seconds)
      --op read|write
      --pattern seq|random       sequential (wraps at the end) or uniformly random, bs-aligned
      --bs BYTES                 bytes per request
      --qd N                     requests in flight
      --total BYTES              stop after this many bytes
      --seconds S                stop issuing after S seconds
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
                                 mibps, iops, p50_us, p99_us, max_rss_mb
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
export function parseBenchArgs(argv: readonly string[]): BenchOptions | 'help' {
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
  const nodes = v.address
    ?.flatMap((a) => a.split(','))
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

// ------------------------------------------------------------ the cluster

/** An embedded cluster running away from this event loop. */
export interface EmbeddedCluster {
  readonly addresses: readonly string[];
  /** 'process': its own process (launcher.ts); 'thread': a worker thread of this process (startEmbeddedThread). */
  readonly isolation: 'process' | 'thread';
  close(): Promise<void>;
}

/** The embedded cluster in a worker thread of this process (the fallback of startEmbeddedCluster). */
export function startEmbeddedThread(opts: MemorySheepOptions): Promise<EmbeddedCluster> {
  const worker = new Worker(new URL('./bench-sheep.js', import.meta.url), { workerData: opts });
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    const onExit = (code: number): void => reject(new Error(`the embedded cluster exited (code ${code})`));
    worker.once('exit', onExit);
    worker.once('error', reject);
    worker.on('message', (m: BenchSheepMessage) => {
      if (m.type === 'error') {
        worker.off('exit', onExit);
        void worker.terminate();
        reject(new Error(`the embedded cluster failed to start: ${m.message}`));
      } else if (m.type === 'ready') {
        worker.off('exit', onExit);
        let closing: Promise<void> | undefined;
        resolve({
          addresses: m.addresses,
          isolation: 'thread',
          close() {
            closing ??= (async () => {
              worker.postMessage({ type: 'stop' });
              const t = setTimeout(() => void worker.terminate(), 10_000);
              await exited;
              clearTimeout(t);
            })();
            return closing;
          },
        });
      }
    });
  });
}

/**
 * Start an embedded cluster in a separate process (launcher.ts), so that its
 * CPU work runs on its own event loop, off the benchmarked one.
 */
export function startEmbeddedCluster(opts: MemorySheepOptions): Promise<EmbeddedCluster> {
  return launchSheep(opts);
}

// ------------------------------------------------------------ measuring

export interface RunStats extends BenchResult {
  /** Mean requests in flight per gateway during the run (sampled). */
  spread: { node: string; inFlight: number }[];
}

interface Sampler {
  stop(): void;
  readonly peakRss: number;
  readonly spread: { node: string; inFlight: number }[];
}

/** Samples RSS (and the pool's per-gateway load) every 50 ms, and drives the progress bar. */
function startSampler(pool: SheepdogPool | undefined, tick: () => void): Sampler {
  let peak = process.memoryUsage.rss();
  const sums = new Map<string, number>();
  let samples = 0;
  const sample = (): void => {
    const rss = process.memoryUsage.rss();
    if (rss > peak) peak = rss;
    if (pool) {
      samples++;
      for (const n of pool.stats.nodes) sums.set(n.node, (sums.get(n.node) ?? 0) + n.inFlight);
    }
    tick();
  };
  const timer = setInterval(sample, 50);
  return {
    stop() {
      clearInterval(timer);
      sample();
    },
    get peakRss() {
      return peak;
    },
    get spread() {
      return [...sums].map(([node, s]) => ({ node, inFlight: samples > 0 ? s / samples : 0 }));
    },
  };
}

function fillPattern(buf: Buffer, seed: number): Buffer {
  let x = seed | 1;
  for (let i = 0; i + 4 <= buf.length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    buf.writeInt32LE(x | 0, i);
  }
  return buf;
}

/** Write the whole VDI (object-sized writes, FILL_DEPTH in flight), so reads hit stored objects. */
export async function fillVdi(vdi: Vdi, onBytes?: (done: number) => void): Promise<void> {
  const chunk = Math.min(vdi.objectSize, 4 * MiB);
  const bufs = Array.from({ length: FILL_DEPTH }, (_, i) => fillPattern(Buffer.allocUnsafe(chunk), 0x9e3779b9 + i));
  let next = 0;
  let done = 0;
  const worker = async (buf: Buffer): Promise<void> => {
    while (next < vdi.size) {
      const off = next;
      const n = Math.min(chunk, vdi.size - off);
      next += n;
      await vdi.write(n === chunk ? buf : buf.subarray(0, n), off);
      done += n;
      onBytes?.(done);
    }
  };
  await Promise.all(bufs.map(worker));
}

export interface MeasureOptions {
  op: BenchOp;
  pattern: BenchPattern;
  bs: number;
  qd: number;
  total: number | undefined;
  seconds: number | undefined;
  /** Reads with `vdi.readInto` into one reused buffer per loop (the shape of libsheepdog's sd_vdi_read) instead of `vdi.read`. */
  into?: boolean | undefined;
}

/**
 * The measured phase: `qd` loops, each issuing one `vdi.read` / `vdi.write`
 * (or `vdi.readInto`, with `into`) of `bs` bytes as soon as its previous one
 * completes. Offsets are bs-aligned, sequential (shared cursor, wrapping) or
 * uniformly random. Latency is per request, from the call to the settled
 * promise.
 */
export async function measure(
  vdi: Vdi,
  o: MeasureOptions,
  hooks: { pool?: SheepdogPool | undefined; progress?: ((fraction: number) => void) | undefined } = {},
): Promise<RunStats> {
  const { bs, qd } = o;
  const blocks = Math.floor(vdi.size / bs);
  if (blocks < 1) throw new InvalidArgumentError(`--bs ${bs} is larger than VDI ${vdi.name} (${vdi.size} bytes)`);
  const maxOps = o.total === undefined ? Number.POSITIVE_INFINITY : Math.ceil(o.total / bs);
  const hist = createHistogram();
  let issued = 0;
  let completed = 0;
  let cursor = 0;
  let seed = 0x2545f491;
  const nextOffset =
    o.pattern === 'seq'
      ? (): number => {
          const b = cursor;
          cursor = cursor + 1 === blocks ? 0 : cursor + 1;
          return b * bs;
        }
      : (): number => {
          seed ^= seed << 13;
          seed ^= seed >>> 17;
          seed ^= seed << 5;
          return ((seed >>> 0) % blocks) * bs;
        };
  const write = o.op === 'write';
  const start = performance.now();
  const deadline = o.seconds === undefined ? Number.POSITIVE_INFINITY : start + o.seconds * 1000;
  const sampler = startSampler(hooks.pool, () => {
    if (!hooks.progress) return;
    hooks.progress(
      o.seconds === undefined ? completed / maxOps : Math.min(1, (performance.now() - start) / (o.seconds * 1000)),
    );
  });
  const into = !write && o.into === true;
  const loop = async (buf: Buffer | undefined): Promise<void> => {
    let now = performance.now();
    while (issued < maxOps && now < deadline) {
      issued++;
      const off = nextOffset();
      const t0 = performance.now();
      if (buf === undefined) await vdi.read(off, bs);
      else if (into) await vdi.readInto(buf, off);
      else await vdi.write(buf, off);
      now = performance.now();
      hist.record(Math.max(1, Math.round((now - t0) * 1e6)));
      completed++;
    }
  };
  try {
    const loops: Promise<void>[] = [];
    for (let i = 0; i < qd; i++) {
      const buf = write ? fillPattern(Buffer.allocUnsafe(bs), 0x51ed27 + i) : into ? Buffer.alloc(bs) : undefined;
      loops.push(loop(buf));
    }
    await Promise.all(loops);
  } finally {
    sampler.stop();
  }
  const seconds = (performance.now() - start) / 1000;
  const bytes = completed * bs;
  const round = (x: number, d: number): number => Number(x.toFixed(d));
  return {
    op: o.op,
    pattern: o.pattern,
    bs,
    qd,
    bytes,
    seconds: round(seconds, 4),
    mibps: round(bytes / MiB / seconds, 2),
    iops: round(completed / seconds, 1),
    p50_us: round(hist.percentile(50) / 1000, 1),
    p99_us: round(hist.percentile(99) / 1000, 1),
    max_rss_mb: round(sampler.peakRss / MiB, 1),
    spread: sampler.spread,
  };
}

/** The `--json` line (exactly the contract keys, in order). */
export function jsonLine(r: BenchResult): string {
  const o: Record<string, unknown> = {};
  for (const k of BENCH_JSON_KEYS) o[k] = r[k];
  return `${JSON.stringify(o)}\n`;
}

// ------------------------------------------------------------ the command

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
    `  latency p50 ${r.p50_us} us, p99 ${r.p99_us} us; peak RSS ${r.max_rss_mb} MiB`,
  ];
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
}

/** Run `sheepdog bench` with `argv` (the words after `bench`); resolves with the exit code. */
export async function runBench(
  argv: string[],
  io: BenchIO = { stdout: process.stdout, stderr: process.stderr },
): Promise<number> {
  const label = 'sheepdog: bench';
  let o: BenchOptions | 'help';
  try {
    o = parseBenchArgs(argv);
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
