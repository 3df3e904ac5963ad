/**
 * The measurement engine of `sheepdog bench` (command.ts), shared with the
 * bench/ harness: measure() runs the measured phase at a fixed queue depth,
 * fillVdi() writes a whole VDI first, and startEmbeddedCluster() /
 * startEmbeddedThread() start an embedded cluster away from the benchmarked
 * event loop (a separate process, launcher.ts; or a worker thread). Both run
 * bench-sheep.ts. docs/benchmarks.md describes the method.
 */
import { createHistogram } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { InvalidArgumentError } from '../../lib/errors.js';
import type { SheepdogPool } from '../../lib/transport/pool.js';
import type { MemorySheepOptions } from '../../testing/types.js';
import type { Vdi } from '../../lib/vdi/vdi.js';
import type { BenchSheepMessage } from './bench-sheep.js';
import { launchSheep, serverEntry } from './launcher.js';

export type BenchOp = 'read' | 'write';
export type BenchPattern = 'seq' | 'random';

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
  /** CPU time (user + system) of this process during the measured phase, ms (process.cpuUsage). */
  cpu_ms: number;
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
  'cpu_ms',
] as const satisfies readonly (keyof BenchResult)[];

const MiB = 2 ** 20;
const FILL_DEPTH = 8;

// ------------------------------------------------------------ the cluster

/** An embedded cluster running away from this event loop. */
export interface EmbeddedCluster {
  readonly addresses: readonly string[];
  /** 'process': its own process (launcher.ts); 'thread': a worker thread of this process (startEmbeddedThread). */
  readonly isolation: 'process' | 'thread';
  close(): Promise<void>;
}

/** The embedded cluster in a worker thread of this process: its own event loop and heap, but not its own process. */
export function startEmbeddedThread(opts: MemorySheepOptions): Promise<EmbeddedCluster> {
  const worker = new Worker(serverEntry(), { workerData: opts });
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
  /** The unmeasured warm-up before the measured phase (`warmup` seconds): its length and requests completed. */
  warmup: { seconds: number; requests: number } | undefined;
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

/** Fill `buf` with xorshift32 words from `seed` (the bytes benchmark writes carry; bench/c/sd-bench writes the same). */
export function fillPattern(buf: Buffer, seed: number): Buffer {
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
  /**
   * Run the same workload for this many seconds first, unmeasured (not in
   * bytes, latency, RSS or CPU), so that the measured phase starts warm (JIT,
   * connections, buffers). 0 or undefined: none.
   */
  warmup?: number | undefined;
}

/**
 * The measured phase: `qd` loops, each issuing one `vdi.read` / `vdi.write`
 * (or `vdi.readInto`, with `into`) of `bs` bytes as soon as its previous one
 * completes. Offsets are bs-aligned, sequential (shared cursor, wrapping) or
 * uniformly random. Latency is per request, from the call to the settled
 * promise. With `warmup`, the same loops (same buffers, the offsets going on
 * where they stop) run that long first; nothing of it is counted.
 */
export async function measure(
  vdi: Vdi,
  o: MeasureOptions,
  hooks: { pool?: SheepdogPool | undefined; progress?: ((fraction: number) => void) | undefined } = {},
): Promise<RunStats> {
  const { bs, qd } = o;
  const blocks = Math.floor(vdi.size / bs);
  if (blocks < 1) throw new InvalidArgumentError(`--bs ${bs} is larger than VDI ${vdi.name} (${vdi.size} bytes)`);
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
  const into = !write && o.into === true;
  const bufs: (Buffer | undefined)[] = [];
  for (let i = 0; i < qd; i++) {
    bufs.push(write ? fillPattern(Buffer.allocUnsafe(bs), 0x51ed27 + i) : into ? Buffer.alloc(bs) : undefined);
  }
  /** One phase: the qd loops until maxOps requests were issued or the deadline passed; resolves with the requests completed. */
  const phase = async (
    maxOps: number,
    deadline: number,
    record: ((ns: number) => void) | undefined,
    onDone: () => void,
  ): Promise<number> => {
    let issued = 0;
    let completed = 0;
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
        record?.(Math.max(1, Math.round((now - t0) * 1e6)));
        completed++;
        onDone();
      }
    };
    await Promise.all(bufs.map(loop));
    return completed;
  };
  let warmup: RunStats['warmup'];
  if (o.warmup !== undefined && o.warmup > 0) {
    const w0 = performance.now();
    const requests = await phase(Number.POSITIVE_INFINITY, w0 + o.warmup * 1000, undefined, () => {});
    warmup = { seconds: Number(((performance.now() - w0) / 1000).toFixed(4)), requests };
  }
  const maxOps = o.total === undefined ? Number.POSITIVE_INFINITY : Math.ceil(o.total / bs);
  const hist = createHistogram();
  let completed = 0;
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  const deadline = o.seconds === undefined ? Number.POSITIVE_INFINITY : start + o.seconds * 1000;
  const sampler = startSampler(hooks.pool, () => {
    if (!hooks.progress) return;
    hooks.progress(
      o.seconds === undefined ? completed / maxOps : Math.min(1, (performance.now() - start) / (o.seconds * 1000)),
    );
  });
  try {
    await phase(
      maxOps,
      deadline,
      (ns) => hist.record(ns),
      () => completed++,
    );
  } finally {
    sampler.stop();
  }
  const seconds = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpu0);
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
    cpu_ms: round((cpu.user + cpu.system) / 1000, 1),
    spread: sampler.spread,
    warmup,
  };
}
