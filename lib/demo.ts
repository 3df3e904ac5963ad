/**
 * `npm start`: an embedded 3-node sheep cluster on free loopback ports, and
 * the volume driver facade walking a volume through its life. Each step
 * prints what it did and how long it took; the program exits 0 when every
 * check held.
 */
import { Readable, Writable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { SheepdogDriver } from './driver.js';
import { startMemorySheep } from './sheep/index.js';
import type { MemorySheep } from './sheep/types.js';

const MiB = 2 ** 20;
const GiB = 2 ** 30;

export interface DemoOptions {
  /** Where the report goes (default stdout). */
  out?: Writable;
  nodes?: number;
  copies?: number;
}

/** The bytes of the demo image: 16 MiB with some patterned and some zero MiB (holes once imported). */
function imageChunk(i: number): Buffer {
  const b = Buffer.alloc(MiB);
  if (i % 4 === 3) return b; // every fourth MiB is zeros
  for (let off = 0; off < MiB; off += 4) b.writeUInt32LE((i * MiB + off) ^ 0x5eedf00d, off);
  return b;
}

const IMAGE_MIB = 16;

function fmt(n: number): string {
  if (n >= GiB) return `${(n / GiB).toFixed(n % GiB === 0 ? 0 : 1)} GiB`;
  if (n >= MiB) return `${(n / MiB).toFixed(n % MiB === 0 ? 0 : 1)} MiB`;
  return `${n} B`;
}

class Check extends Error {}

function check(cond: boolean, what: string): void {
  if (!cond) throw new Check(`check failed: ${what}`);
}

/** Run the demo; resolves with the exit code (0 when every step and check passed). */
export async function runDemo(opts: DemoOptions = {}): Promise<number> {
  const out = opts.out ?? process.stdout;
  const print = (s: string): void => {
    out.write(`${s}\n`);
  };
  const nodes = opts.nodes ?? 3;
  const copies = opts.copies ?? 2;
  const t0 = performance.now();
  let n = 0;
  const step = async <T>(title: string, fn: () => Promise<T>, detail: (r: T) => string): Promise<T> => {
    n++;
    const t = performance.now();
    const r = await fn();
    const ms = performance.now() - t;
    const label = `${String(n).padStart(2)}. ${title}`;
    print(`${label.padEnd(34)} ${detail(r).padEnd(58)} ${ms.toFixed(1).padStart(7)} ms`);
    return r;
  };

  let sheep: MemorySheep | undefined;
  let driver: SheepdogDriver | undefined;
  try {
    sheep = await startMemorySheep({ nodes, copies });
    const s = sheep;
    print(
      `sheepdog-client demo: an embedded ${nodes}-node sheep cluster (${copies} ${copies === 1 ? 'copy' : 'copies'}) on ${s.addresses.join(', ')}`,
    );
    print('driving it through SheepdogDriver, the OpenStack-style volume facade (no dog, no qemu-img):\n');
    driver = new SheepdogDriver({ nodes: [...s.addresses] });
    const d = driver;
    const vol = { name: 'demo-volume', size: 1 };
    const clone = { name: 'demo-clone', size: 1 };
    const snap = { volumeName: vol.name, name: 'base' };

    await step(
      'checkForSetupError',
      () => d.checkForSetupError(),
      (ci) => `cluster ${ci.status}, ${ci.nodes.length} nodes, ${ci.redundancy} copies, epoch ${ci.epoch}`,
    );
    await step(
      'createVolume',
      () => d.createVolume(vol),
      (v) => `${v.name}: ${fmt(v.size)}, thin (${fmt(v.used)} used)`,
    );
    const chunks = Array.from({ length: IMAGE_MIB }, (_, i) => imageChunk(i));
    await step(
      'copyImageToVolume',
      () => d.copyImageToVolume(vol, Readable.from(chunks), { imageSize: IMAGE_MIB * MiB }),
      (r) => `${fmt(r.bytes)} raw image in; zero MiBs skipped (thin)`,
    );
    const used = (await d.client.getVdi(vol.name)).used;
    check(used < IMAGE_MIB * MiB, 'zero blocks of the image were not stored');
    await step(
      'createSnapshot',
      () => d.createSnapshot(snap),
      (r) => `${r.name}@${r.tag} (snapshot keeps vid ${r.snapshotVdiId.toString(16)})`,
    );
    const c = await step(
      'createVolumeFromSnapshot',
      () => d.createVolumeFromSnapshot(clone, snap),
      (v) => `${v.name}: copy-on-write, shares ${fmt(v.shared)}, owns ${fmt(v.used)}`,
    );
    check(c.used === 0, 'a fresh clone owns no objects');

    const patch = Buffer.alloc(64 * 1024, 0xab);
    const at = 5 * MiB + 4096;
    await step(
      'write to the clone (COW)',
      async () => {
        const v = await d.client.openVdi(clone.name);
        try {
          await v.write(patch, at);
        } finally {
          await v.close();
        }
        return d.client.getVdi(clone.name);
      },
      (v) => `${fmt(patch.length)} at ${at}: clone now owns ${fmt(v.used)}, shares ${fmt(v.shared)}`,
    );
    await step(
      'read back and verify',
      async () => {
        const a = await d.client.openVdi(clone.name);
        const b = await d.client.openVdi(vol.name);
        try {
          const src = chunks[5] ?? Buffer.alloc(MiB); // the image's 6th MiB, where `at` falls
          const got = await a.read(at - 4096, patch.length + 8192);
          check(got.subarray(4096, 4096 + patch.length).equals(patch), 'the clone reads what was written');
          check(
            got.subarray(0, 4096).equals(src.subarray(0, 4096)) &&
              got.subarray(4096 + patch.length).equals(src.subarray(4096 + patch.length, 8192 + patch.length)),
            'the rest of the copied object still holds the snapshot data',
          );
          const orig = await b.read(at, patch.length);
          check(orig.equals(src.subarray(4096, 4096 + patch.length)), 'the source volume is unchanged');
          const hole = await a.read(3 * MiB, MiB);
          check(hole.equals(Buffer.alloc(MiB)), 'a zero block of the image reads as zeros');
        } finally {
          await a.close();
          await b.close();
        }
        return 4;
      },
      (k) => `${k} checks: clone has the new bytes around the old, source unchanged, holes are zeros`,
    );
    await step(
      'extendVolume',
      () => d.extendVolume(clone, 2),
      (v) => `${v.name}: 1 GiB -> ${fmt(v.size)}`,
    );
    await step(
      'getVolumeStats',
      () => d.getVolumeStats(),
      (st) =>
        `${st.totalCapacityGb} GiB raw, ${st.freeCapacityGb} free, ${st.provisionedCapacityGb} GiB provisioned, ${st.volumes} volumes`,
    );
    await step(
      'initializeConnection',
      () => d.initializeConnection(clone, { host: 'compute-1' }),
      (ci) =>
        `${ci.driverVolumeType}: ${ci.data.name} via ${ci.data.hosts.map((h, i) => `${h}:${ci.data.ports[i]}`).join(', ')}`,
    );
    const copyOut: Buffer[] = [];
    await step(
      'copyVolumeToImage',
      () =>
        d.copyVolumeToImage(
          vol,
          new Writable({
            write(chunk: Buffer, _e, cb) {
              if (copyOut.length < IMAGE_MIB) copyOut.push(chunk);
              cb();
            },
          }),
        ),
      (r) => `${fmt(r.bytes)} streamed out (holes as zeros)`,
    );
    check(
      Buffer.concat(copyOut)
        .subarray(0, IMAGE_MIB * MiB)
        .equals(Buffer.concat(chunks)),
      'the image comes back byte for byte',
    );
    await step(
      'delete everything',
      async () => {
        await d.terminateConnection(clone);
        const r = [await d.deleteVolume(clone), await d.deleteSnapshot(snap), await d.deleteVolume(vol)];
        const again = await d.deleteVolume(vol);
        check(!again.deleted, 'deleting a missing volume is not an error');
        return r.filter((x) => x.deleted).length;
      },
      (k) => `${k} deleted (clone, snapshot, volume); a second delete is a no-op`,
    );
    const left = await d.client.listVdis();
    check(left.length === 0, 'nothing is left');
    print(`\nall steps passed in ${(performance.now() - t0).toFixed(0)} ms.`);
    print('next: `npx sheepdog serve` runs a cluster on 127.0.0.1:7000; `npx sheepdog --help` lists the commands;');
    print('      docs/driver.md and docs/cli.md describe the facade and the CLI.');
    return 0;
  } catch (e) {
    print(`\ndemo failed: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  } finally {
    await driver?.close().catch(() => {});
    await sheep?.close().catch(() => {});
  }
}

// Run when executed directly (npm start), not when imported.
const argv1 = process.argv[1];
if (argv1 !== undefined && import.meta.url === pathToFileURL(argv1).href) {
  runDemo().then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`demo: ${String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
