/**
 * `npm start`: an embedded 3-node sheep cluster on free loopback ports, and
 * the volume driver facade walking a volume through its life. Each step
 * prints what it did and how long it took; the program exits 0 when every
 * check held.
 */
import { Readable, Writable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { SheepdogDriver } from '../lib/driver/driver.js';
import { startMemorySheep } from '../testing/index.js';
import type { MemorySheep } from '../testing/types.js';

const MiB = 2 ** 20;
const GiB = 2 ** 30;

export interface DemoOptions {
  /** Where the report goes (default stdout). */
  out?: Writable;
  nodes?: number;
  copies?: number;
}

/** MiB `i` of the demo image: 16 MiB where the second and fourth 4 MiB object are zeros (holes once imported). */
function imageChunk(i: number): Buffer {
  const b = Buffer.alloc(MiB);
  if (Math.floor(i / 4) % 2 === 1) return b;
  for (let off = 0; off < MiB; off += 4) b.writeUInt32LE((i * MiB + off) ^ 0x5eedf00d, off);
  return b;
}

const IMAGE_MIB = 16;
const ZERO = Buffer.alloc(4 * MiB);

function fmt(n: number): string {
  if (n >= GiB) return `${(n / GiB).toFixed(n % GiB === 0 ? 0 : 1)} GiB`;
  if (n >= MiB) return `${(n / MiB).toFixed(n % MiB === 0 ? 0 : 1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(n % 1024 === 0 ? 0 : 1)} KiB`;
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
    print(`${label.padEnd(29)} ${detail(r).padEnd(66)} ${ms.toFixed(1).padStart(6)} ms`);
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
    const stored = await step(
      'copyImageToVolume',
      async () => {
        await d.copyImageToVolume(vol, Readable.from(chunks), { imageSize: IMAGE_MIB * MiB });
        return (await d.client.getVdi(vol.name)).used;
      },
      (used) => `${fmt(IMAGE_MIB * MiB)} raw image in, ${fmt(used)} stored (all-zero objects skipped)`,
    );
    check(stored === (IMAGE_MIB * MiB) / 2, 'the zero objects of the image were not stored');
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
    const at = 9 * MiB + 4096; // inside the third object, which holds image data
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
      (v) => `${fmt(patch.length)} at 9 MiB + 4 KiB: clone owns ${fmt(v.used)}, shares ${fmt(v.shared)}`,
    );
    await step(
      'read back and verify',
      async () => {
        const a = await d.client.openVdi(clone.name);
        const b = await d.client.openVdi(vol.name);
        try {
          const src = chunks[9] ?? Buffer.alloc(MiB); // the image's MiB where `at` falls
          const got = await a.read(at - 4096, patch.length + 8192);
          check(got.subarray(4096, 4096 + patch.length).equals(patch), 'the clone reads what was written');
          check(
            got.subarray(0, 4096).equals(src.subarray(0, 4096)) &&
              got.subarray(4096 + patch.length).equals(src.subarray(4096 + patch.length, 8192 + patch.length)),
            'the rest of the copied object still holds the snapshot data',
          );
          const orig = await b.read(at, patch.length);
          check(orig.equals(src.subarray(4096, 4096 + patch.length)), 'the source volume is unchanged');
          const hole = await a.read(5 * MiB, MiB);
          check(hole.equals(Buffer.alloc(MiB)), 'a zero block of the image reads as zeros');
        } finally {
          await a.close();
          await b.close();
        }
        return 4;
      },
      (k) => `${k} checks: new bytes + old around them, source intact, holes = 0`,
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
        `${st.totalCapacityGb} GiB raw, ${st.freeCapacityGb} GiB free, ${st.provisionedCapacityGb} GiB provisioned (thin)`,
    );
    await step(
      'initializeConnection',
      () => d.initializeConnection(clone, { host: 'compute-1' }),
      (ci) =>
        ci.driverVolumeType === 'nbd'
          ? `nbd: ${ci.data.uri}`
          : `${ci.driverVolumeType}:${ci.data.name} via ${ci.data.hosts[0]}:${ci.data.ports[0]} (+${ci.data.hosts.length - 1} more)`,
    );
    await step(
      'copyVolumeToImage',
      async () => {
        const head: Buffer[] = [];
        let got = 0;
        let tailZero = true;
        const image = new Writable({
          write(chunk: Buffer, _e, cb) {
            const want = IMAGE_MIB * MiB - got;
            if (want > 0) head.push(chunk.subarray(0, want));
            for (let off = Math.max(want, 0); off < chunk.length && tailZero; off += ZERO.length) {
              const part = chunk.subarray(off, off + ZERO.length);
              tailZero = part.equals(ZERO.subarray(0, part.length));
            }
            got += chunk.length;
            cb();
          },
        });
        const r = await d.copyVolumeToImage(vol, image);
        check(Buffer.concat(head).equals(Buffer.concat(chunks)), 'the image comes back byte for byte');
        check(tailZero, 'the rest of the volume reads as zeros');
        return r;
      },
      (r) => `${fmt(r.bytes)} streamed out; the image comes back byte for byte`,
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
      (k) => `${k} deleted (clone, snapshot, volume); deleting again is a no-op`,
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
