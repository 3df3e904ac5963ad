/**
 * Import and export of a whole image through the VDI streams
 * (`vdi.createWriteStream()` / `vdi.createReadStream()`, default options),
 * with the client's RSS sampled every 50 ms.
 *
 *   node dist/bench/streams.js [-a HOST:PORT,...] [--null] [--size 1G]
 *        [--ops import,export] [--prealloc] [--sink-mibps N] [--json]
 *
 * The source is generated in memory (a 1 MiB pattern, pushed in 1 MiB
 * chunks) and the export goes to a sink that discards, optionally
 * throttled (`--sink-mibps`, a slow disk): neither end touches the local
 * disk, so the numbers are the client's and the cluster's. `--prealloc`
 * creates the VDI preallocated instead of importing first (export only).
 * One JSON line per operation with --json.
 */
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseSize } from '../lib/client/names.js';
import { SheepdogClient } from '../lib/client/client.js';
import { type EmbeddedCluster, startEmbeddedCluster } from '../cli/bench/engine.js';
import { GiB, MiB, isMain, parseFlags } from './common.js';

export interface StreamResult {
  op: 'import' | 'export';
  bytes: number;
  seconds: number;
  mibps: number;
  /** RSS before the operation started. */
  baseline_rss_mb: number;
  /** Highest RSS sampled during the operation. */
  max_rss_mb: number;
}

function rssSampler(): { stop(): number } {
  let peak = process.memoryUsage.rss();
  const t = setInterval(() => {
    const r = process.memoryUsage.rss();
    if (r > peak) peak = r;
  }, 50);
  return {
    stop() {
      clearInterval(t);
      return Math.max(peak, process.memoryUsage.rss());
    },
  };
}

function source(size: number): Readable {
  const chunk = Buffer.allocUnsafe(MiB);
  for (let i = 0; i < chunk.length; i += 4) chunk.writeUInt32LE((i * 2654435761) >>> 0, i);
  let left = size;
  return new Readable({
    highWaterMark: 4 * MiB,
    read() {
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        left -= n;
        if (!this.push(n === chunk.length ? chunk : chunk.subarray(0, n))) return;
      }
      this.push(null);
    },
  });
}

function sink(mibps: number | undefined): Writable & { bytes: number } {
  const start = performance.now();
  const w = new Writable({
    highWaterMark: 4 * MiB,
    write(chunk: Buffer, _e, cb) {
      s.bytes += chunk.length;
      if (mibps === undefined) {
        cb();
        return;
      }
      const due = start + (s.bytes / (mibps * MiB)) * 1000;
      const wait = due - performance.now();
      if (wait > 1) setTimeout(cb, wait);
      else cb();
    },
  });
  const s = w as Writable & { bytes: number };
  s.bytes = 0;
  return s;
}

function result(op: StreamResult['op'], bytes: number, t0: number, base: number, peak: number): StreamResult {
  const seconds = (performance.now() - t0) / 1000;
  return {
    op,
    bytes,
    seconds: Number(seconds.toFixed(3)),
    mibps: Number((bytes / MiB / seconds).toFixed(1)),
    baseline_rss_mb: Number((base / MiB).toFixed(1)),
    max_rss_mb: Number((peak / MiB).toFixed(1)),
  };
}

export async function runStreams(o: {
  nodes: string[] | undefined;
  nullMode: boolean;
  size: number;
  ops: ('import' | 'export')[];
  prealloc: boolean;
  sinkMibps: number | undefined;
  onResult?: (r: StreamResult) => void;
}): Promise<StreamResult[]> {
  let cluster: EmbeddedCluster | undefined;
  const out: StreamResult[] = [];
  const name = `bench-streams-${process.pid}`;
  let client: SheepdogClient | undefined;
  try {
    let nodes = o.nodes;
    if (nodes === undefined) {
      cluster = await startEmbeddedCluster({ nodes: 3, port: 0, maxMemory: 64 * GiB, nullMode: o.nullMode });
      nodes = [...cluster.addresses];
    }
    client = new SheepdogClient({ nodes, requestTimeout: 120_000 });
    await client.createVdi(name, o.size, { preallocate: o.prealloc });
    const vdi = await client.openVdi(name);
    try {
      for (const op of o.ops) {
        // Let the previous operation's garbage go before taking the baseline.
        (globalThis as { gc?: () => void }).gc?.();
        const base = process.memoryUsage.rss();
        const rss = rssSampler();
        const t0 = performance.now();
        let bytes: number;
        if (op === 'import') {
          await pipeline(source(o.size), vdi.createWriteStream());
          bytes = o.size;
        } else {
          const s = sink(o.sinkMibps);
          await pipeline(vdi.createReadStream(), s);
          bytes = s.bytes;
        }
        const r = result(op, bytes, t0, base, rss.stop());
        out.push(r);
        o.onResult?.(r);
      }
    } finally {
      await vdi.close();
    }
    if (!cluster) await client.deleteVdi(name);
    return out;
  } finally {
    await client?.close().catch(() => {});
    await cluster?.close().catch(() => {});
  }
}

async function main(): Promise<void> {
  const { nodes, flags, values } = parseFlags(process.argv.slice(2), {
    flags: ['null', 'prealloc', 'json'],
    values: ['size', 'ops', 'sink-mibps'],
  });
  const ops = (values.get('ops') ?? 'import,export').split(',') as ('import' | 'export')[];
  if (!ops.every((x) => x === 'import' || x === 'export')) throw new Error('--ops: import and/or export');
  const sinkRaw = values.get('sink-mibps');
  const json = flags.has('json');
  await runStreams({
    nodes,
    nullMode: flags.has('null'),
    size: parseSize(values.get('size') ?? '1G'),
    ops,
    prealloc: flags.has('prealloc'),
    sinkMibps: sinkRaw === undefined ? undefined : Number(sinkRaw),
    onResult: (r) => {
      process.stdout.write(
        json
          ? `${JSON.stringify(r)}\n`
          : `${r.op}: ${(r.bytes / MiB).toFixed(0)} MiB in ${r.seconds} s, ${r.mibps} MiB/s, RSS ${r.baseline_rss_mb} -> peak ${r.max_rss_mb} MiB\n`,
      );
    },
  });
}

if (isMain(import.meta.url)) {
  main().catch((e: unknown) => {
    process.stderr.write(`streams: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exitCode = 1;
  });
}
