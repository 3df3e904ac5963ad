/**
 * Fill time of a sparse hyper volume (store_policy 1, B-tree index): N
 * objects allocated in an 8 TiB volume against the embedded sheep's null
 * mode (separate process; data objects are acknowledged and not stored, the
 * inode and B-tree objects are), QD writers in parallel. Each allocating
 * write costs a data-object create plus its share of a batched index write;
 * this measures how that cost grows with the number of allocated objects.
 *
 *   node dist/bench/hyper-fill.js [--objects N] [--bytes-per-object B] [--qd Q] [--order seq|random]
 *
 * Defaults: 262,144 objects (1 TiB of 4 MiB objects), 4096 bytes written
 * per object (the allocation path; `--bytes-per-object 4194304` writes
 * whole objects and adds the data transfer), QD 32, sequential order.
 * Prints the rate per slice of 1/8 of the objects, so growth is visible.
 */
import { SheepdogClient } from '../lib/client/client.js';
import { startEmbeddedCluster } from '../cli/bench/engine.js';
import { MiB, fmt, isMain, machine, markdownTable, parseFlags, saveResult, table, warnIfBusy } from './common.js';

const TiB = 2 ** 40;

export async function hyperFill(o: {
  objects: number;
  bytesPerObject: number;
  qd: number;
  order: 'seq' | 'random';
}): Promise<{ slices: { upTo: number; seconds: number; perAlloc_us: number }[]; total_s: number }> {
  const cluster = await startEmbeddedCluster({ nodes: 3, port: 0, nullMode: true });
  const client = new SheepdogClient({ nodes: [...cluster.addresses], requestTimeout: 300_000 });
  try {
    await client.createVdi('fill', 8 * TiB);
    const v = await client.openVdi('fill');
    const objSize = v.objectSize;
    const nObjs = v.size / objSize;
    if (o.objects > nObjs) throw new Error(`--objects ${o.objects} is past the volume's ${nObjs} objects`);
    // object order: sequential, or a fixed permutation-like stride over the volume
    const at = (i: number): number => (o.order === 'seq' ? i : (i * 2654435761) % nObjs);
    const buf = Buffer.alloc(Math.min(o.bytesPerObject, objSize), 0x5a);
    const slices: { upTo: number; seconds: number; perAlloc_us: number }[] = [];
    const slice = Math.ceil(o.objects / 8);
    const t0 = performance.now();
    let next = 0;
    for (let end = slice; next < o.objects; end = Math.min(end + slice, o.objects)) {
      const ts = performance.now();
      const start = next;
      const worker = async (): Promise<void> => {
        while (next < end) {
          const i = next++;
          await v.write(buf, at(i) * objSize);
        }
      };
      await Promise.all(Array.from({ length: o.qd }, worker));
      const s = (performance.now() - ts) / 1000;
      slices.push({ upTo: end, seconds: s, perAlloc_us: (s * 1e6) / (end - start) });
      console.error(
        `  ${end} objects: ${fmt(s, 2)} s for the last ${end - start} (${fmt((s * 1e6) / (end - start))} µs each)`,
      );
    }
    const total_s = (performance.now() - t0) / 1000;
    await v.close();
    return { slices, total_s };
  } finally {
    await client.close();
    await cluster.close();
  }
}

async function main(): Promise<void> {
  const f = parseFlags(process.argv.slice(2), { values: ['objects', 'bytes-per-object', 'qd', 'order'] });
  const objects = Number(f.values.get('objects') ?? 262_144);
  const bytesPerObject = Number(f.values.get('bytes-per-object') ?? 4096);
  const qd = Number(f.values.get('qd') ?? 32);
  const order = f.values.get('order') === 'random' ? 'random' : 'seq';
  const m = await machine();
  warnIfBusy(m);
  console.error(
    `hyper fill: ${objects} objects, ${bytesPerObject} B each, QD ${qd}, ${order}, 8 TiB volume, null mode`,
  );
  const r = await hyperFill({ objects, bytesPerObject, qd, order });
  const header = ['objects allocated', 'slice s', 'µs per allocation'];
  const rows = r.slices.map((s) => [String(s.upTo), fmt(s.seconds, 2), fmt(s.perAlloc_us)]);
  console.log(table(header, rows));
  console.log(
    `total ${fmt(r.total_s, 1)} s for ${objects} objects (${fmt((objects * 4 * MiB) / TiB, 3)} TiB of 4 MiB objects), ${fmt((r.total_s * 1e6) / objects)} µs each`,
  );
  console.log(markdownTable(header, rows));
  const file = saveResult('hyper-fill', { machine: m, objects, bytesPerObject, qd, order, ...r });
  console.error(`saved ${file}`);
}

if (isMain(import.meta.url)) {
  main().catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  });
}
