// Node loss under load through the SDK: a SheepdogClient over an embedded
// 3-node cluster (copies 2, 1 MiB objects), 16 writers, writes of 64 KiB to
// 4 MiB at seeded offsets (some unaligned). Each writer owns its own region of
// the volume, so the expected bytes are exact whatever the interleaving.
import t, { type Test } from 'tap';
import { SheepdogClient, SheepdogError, type Vdi } from '../../lib/index.js';
import { type EmbeddedSheep, startEmbeddedSheep } from '../../testing/embedded.js';
import { DATA_OFF } from '../../testing/inode.js';
import { vidToDataOid, vidToVdiOid } from '../../protocol/index.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const OBJ = MiB;

function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

interface Run {
  sheep: EmbeddedSheep;
  client: SheepdogClient;
  vdi: Vdi;
  vid: number;
  model: Buffer;
}

async function setup(t: Test, size: number): Promise<Run> {
  const sheep = await startEmbeddedSheep({ nodes: 3, copies: 2, blockSizeShift: 20 });
  const client = new SheepdogClient({ nodes: [...sheep.addresses], requestTimeout: 10_000 });
  t.teardown(async () => {
    await client.close();
    await sheep.close();
  });
  await client.createVdi('vol', size, { blockSizeShift: 20 });
  const vdi = await client.openVdi('vol');
  t.teardown(() => vdi.close());
  return { sheep, client, vdi, vid: vdi.vid, model: Buffer.alloc(size) };
}

interface Op {
  off: number;
  data: Buffer;
}
/** `count` writes per writer inside its region [w * region, (w + 1) * region). */
function plan(seed: number, writers: number, count: number, region: number, maxLen: number): Op[][] {
  const r = rng(seed);
  const out: Op[][] = [];
  for (let w = 0; w < writers; w++) {
    const ops: Op[] = [];
    for (let k = 0; k < count; k++) {
      const len = Math.floor(64 * KiB * (maxLen / (64 * KiB)) ** r()) - (r() < 0.3 ? Math.floor(r() * 4096) : 0);
      let off = Math.floor(r() * (region - len));
      if (r() >= 0.3) off -= off % 4096;
      const data = Buffer.alloc(len);
      for (let i = 0; i < len; i += 4096) data.writeUInt32LE((w << 24) ^ (k << 12) ^ i, i);
      data[len - 1] = 0x5a;
      ops.push({ off: w * region + off, data });
    }
    out.push(ops);
  }
  return out;
}

/** The bytes every replica of every allocated object of the VDI must hold. */
function checkReplicas(t: Test, run: Run, nodes: number[]): void {
  const { sheep, vid, model } = run;
  const inodeOid = vidToVdiOid(vid);
  let objects = 0;
  let bad = 0;
  for (let idx = 0; idx * OBJ < model.length; idx++) {
    const at = sheep.placement(vidToDataOid(vid, idx)).filter((i) => nodes.includes(i));
    const holder = sheep.placement(inodeOid)[0] as number;
    const inode = sheep.readNodeObject(holder, inodeOid) as Uint8Array;
    const slot = Buffer.from(inode.buffer, inode.byteOffset + DATA_OFF + 4 * idx, 4).readUInt32LE(0);
    if (slot === 0) continue;
    const want = model.subarray(idx * OBJ, (idx + 1) * OBJ);
    for (const i of at) {
      const got = sheep.readNodeObject(i, vidToDataOid(slot, idx));
      if (!got || !Buffer.from(got).equals(want)) bad++;
    }
    objects++;
  }
  t.equal(bad, 0, `every replica of ${objects} objects holds every acknowledged byte`);
}

async function underLoad(t: Test, pick: (run: Run) => number, seed: number): Promise<void> {
  const writers = 16;
  const region = 6 * MiB;
  const run = await setup(t, writers * region);
  const { sheep, vdi, model } = run;
  const ops = plan(seed, writers, 8, region, 4 * MiB);
  let done = 0;
  let victim = -1;
  const failures: unknown[] = [];
  const events: Promise<void>[] = [];
  await Promise.all(
    ops.map(async (mine) => {
      for (const op of mine) {
        try {
          await vdi.write(op.data, op.off);
          op.data.copy(model, op.off);
        } catch (e) {
          failures.push(e);
        }
        done++;
        if (done === 32) {
          victim = pick(run);
          events.push(sheep.killNode(victim));
        }
        if (done === 90) events.push(Promise.all(events).then(() => sheep.startNode(victim)));
      }
    }),
  );
  await Promise.all(events);
  t.same(failures, [], 'no call failed to the caller');
  await sheep.recovered();
  checkReplicas(t, run, [0, 1, 2]);
  const back = await vdi.read(0, model.length);
  t.ok(back.equals(model), 'the volume reads back through the SDK');
  t.same(sheep.internalErrors, []);
}

t.test('a node is killed mid-run and restarted later: every acknowledged write is on every replica', (t) =>
  underLoad(t, () => 2, 11),
);

t.test('the same with the gateway the pool uses most', (t) =>
  underLoad(
    t,
    ({ sheep }) => {
      const load = sheep.nodes.map((n) => n.counters.gwayTotal);
      return load.indexOf(Math.max(...load));
    },
    12,
  ),
);

t.test('two nodes of three killed with copies 2: typed errors, no hang, nothing acknowledged is lost', async (t) => {
  const writers = 16;
  const region = 2 * MiB;
  const run = await setup(t, writers * region);
  const { sheep, vdi } = run;
  const ops = plan(13, writers, 6, region, 1 * MiB);
  // bytes acknowledged after both nodes were gone (1), or of a failed write (2: unknown)
  const known = new Uint8Array(run.model.length);
  let done = 0;
  let killed: Promise<void> | undefined;
  let bothGone = false;
  const failures: unknown[] = [];
  const survivor = sheep.placement(vidToVdiOid(run.vid))[0] as number;
  await Promise.all(
    ops.map(async (mine) => {
      for (const op of mine) {
        const after = bothGone;
        try {
          // Bounded: once both nodes are gone a write can only end in an error (HALT is retried until then).
          await vdi.write(op.data, op.off, { timeout: 500 });
          op.data.copy(run.model, op.off);
          known.fill(after ? 1 : 0, op.off, op.off + op.data.length);
        } catch (e) {
          failures.push(e);
          known.fill(2, op.off, op.off + op.data.length);
        }
        done++;
        if (done === 20) {
          // the survivor holds the inode (otherwise every later write fails at once)
          const dead = [0, 1, 2].filter((i) => i !== survivor);
          killed = Promise.all(dead.map((i) => sheep.killNode(i))).then(() => {
            bothGone = true;
          });
        }
      }
    }),
  );
  await killed;
  t.ok(
    failures.every((e) => e instanceof SheepdogError),
    `${failures.length} failures, all typed: ${[...new Set(failures.map((e) => (e as Error).name))].join(', ')}`,
  );
  // the survivor is the only live replica: what was acknowledged once it was alone is in its store
  let checked = 0;
  let missing = 0;
  const inodeOid = vidToVdiOid(run.vid);
  const inode = sheep.readNodeObject(survivor, inodeOid);
  for (let idx = 0; idx * OBJ < run.model.length && inode; idx++) {
    const slot = Buffer.from(inode.buffer, inode.byteOffset + DATA_OFF + 4 * idx, 4).readUInt32LE(0);
    const obj = slot ? sheep.readNodeObject(survivor, vidToDataOid(slot, idx)) : undefined;
    for (let b = idx * OBJ; b < (idx + 1) * OBJ && b < run.model.length; b++) {
      if (known[b] !== 1) continue;
      checked++;
      if (!obj || obj[b - idx * OBJ] !== run.model[b]) missing++;
    }
  }
  t.equal(missing, 0, `${checked} bytes acknowledged with one node left are all in its store`);
  t.same(sheep.internalErrors, []);
});
