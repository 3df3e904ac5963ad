// The write path under concurrency: the deadlocks, shared state of two
// handles, discard racing writes and snapshots, delete while open, and
// seeded torture rounds with a per-sector linearizability check.
import t, { type Test } from 'tap';
import { Op } from '../../protocol/constants.js';
import { isVdiObj, vidToVdiOid } from '../../protocol/oid.js';
import { dataVdiIdOffset } from '../../protocol/records/inode.js';
import { SheepdogPool } from '../../lib/transport/pool.js';
import type { Transport } from '../../lib/transport/types.js';
import type { Request } from '../../protocol/header.js';
import { startMemorySheep } from '../../testing/index.js';
import { SheepdogClient, type VdiInfo } from '../../lib/client/client.js';
import {
  AbortError,
  NoVdiError,
  OutcomeUnknownError,
  SheepdogError,
  VdiExistsError,
  VdiInUseError,
} from '../../lib/errors.js';
import { torture } from '../../bench/torture.js';
import { MiB, pattern, withCluster } from '../helpers/cluster.js';

t.setTimeout(120_000);

t.test('overlapping writes do not wait on each other forever (bss 20, object split between them)', async (t) => {
  for (const maxConcurrency of [1, 16]) {
    const { client } = await withCluster(t, {}, { maxConcurrency });
    await client.createVdi('dl', 96 * MiB, { blockSizeShift: 20 });
    const v = await client.openVdi('dl');
    const big = pattern(80 * MiB, 1);
    const small = pattern(8192, 2);
    // Both orders: the small write first, then the big one; and the reverse.
    const a = v.write(small, 64 * MiB - 4096);
    const b = v.write(big, 0);
    const c = v.write(small, 32 * MiB - 4096);
    await Promise.all([a, b, c]);
    const got = await v.read(0, 96 * MiB);
    // Concurrent overlapping writes: each sector holds one of them.
    for (const [off, len] of [
      [32 * MiB - 4096, 8192],
      [64 * MiB - 4096, 8192],
    ] as const) {
      for (let s = off; s < off + len; s += 512) {
        const sec = got.subarray(s, s + 512);
        const fromBig = sec.equals(big.subarray(s, s + 512));
        const fromSmall = sec.equals(small.subarray(s - off, s - off + 512));
        if (!fromBig && !fromSmall) t.fail(`sector at ${s} is from neither write (maxConcurrency ${maxConcurrency})`);
      }
    }
    t.ok(got.subarray(0, 32 * MiB - 4096).equals(big.subarray(0, 32 * MiB - 4096)), 'the rest is the big write');
    t.ok(got.subarray(80 * MiB).equals(Buffer.alloc(16 * MiB)), 'past the writes: zeros');
    await v.close();
  }
});

t.test('a write over 32 MiB inside one unallocated object (bss 26) settles', async (t) => {
  const { client } = await withCluster(t, { maxDataLength: 64 * MiB });
  await client.createVdi('big-obj', 128 * MiB, { blockSizeShift: 26 });
  const v = await client.openVdi('big-obj');
  const d = pattern(48 * MiB, 3);
  await v.write(d, 4096);
  t.ok((await v.read(4096, d.length)).equals(d), 'read back');
  await v.close();
});

t.test('two handles of one VDI share gates: concurrent first writes to one object keep both', async (t) => {
  const { client } = await withCluster(t);
  await client.createVdi('two', 8 * MiB, { blockSizeShift: 22 });
  const a = await client.openVdi('two');
  const b = await client.openVdi('two');
  const x = pattern(4096, 4);
  const y = pattern(4096, 5);
  await Promise.all([a.write(x, 0), b.write(y, 2 * MiB)]);
  const c = await client.openVdi('two');
  t.ok((await c.read(0, 4096)).equals(x), 'first handle’s bytes');
  t.ok((await c.read(2 * MiB, 4096)).equals(y), 'second handle’s bytes');
  await Promise.all([a.close(), b.close(), c.close()]);
});

t.test('discard racing writes and snapshots: no error, snapshots keep their data', async (t) => {
  const { client } = await withCluster(t);
  await client.createVdi('dr', 16 * MiB, { blockSizeShift: 20 });
  const v = await client.openVdi('dr');
  const base = pattern(16 * MiB, 6);
  await v.write(base, 0);
  await client.snapshotVdi('dr', 'before');
  const work: Promise<unknown>[] = [];
  for (let i = 0; i < 16; i++) {
    work.push(v.discard(i * MiB, MiB));
    work.push(v.write(pattern(8192, 100 + i), i * MiB + 4096));
    if (i % 5 === 0) work.push(client.snapshotVdi('dr', `during-${i}`));
  }
  await Promise.all(work);
  const s = await client.openVdi('dr', { snapshot: 'before' });
  t.ok((await s.read(0, 16 * MiB)).equals(base), 'the snapshot taken before holds every byte');
  await s.close();
  await v.close();
});

t.test('delete while open: refused with VdiInUseError; with force, the writer gets NoVdiError', async (t) => {
  const { client } = await withCluster(t);
  await client.createVdi('busy', 16 * MiB, { blockSizeShift: 20 });
  const v = await client.openVdi('busy');
  await v.write(pattern(MiB, 7), 0);
  await t.rejects(client.deleteVdi('busy'), VdiInUseError, 'open in this client');
  await client.deleteVdi('busy', { force: true });
  await t.rejects(v.write(pattern(4096, 8), 8 * MiB), NoVdiError, 'an allocating write after the delete');
  await v.close();
  await client.createVdi('busy', 16 * MiB);
  const again = await client.openVdi('busy');
  t.ok((await again.read(0, MiB)).equals(Buffer.alloc(MiB)), 'the name is reusable, and empty');
  await again.close();
});

t.test('delete of a VDI whose lock is held is refused', async (t) => {
  const { client } = await withCluster(t, { lock: true });
  await client.createVdi('locked', 4 * MiB);
  const v = await client.openVdi('locked', { lock: true });
  const other = new (client.constructor as typeof import('../../lib/client/client.js').SheepdogClient)({
    nodes: [...(client as unknown as { transport: { nodes: readonly string[] } }).transport.nodes],
  });
  t.teardown(() => other.close());
  await t.rejects(other.deleteVdi('locked'), VdiInUseError);
  await v.close();
  await other.deleteVdi('locked');
});

t.test('readInto is waited for by close()', async (t) => {
  const { client, sheep } = await withCluster(t);
  await client.createVdi('ri', 4 * MiB);
  const v = await client.openVdi('ri');
  await v.write(pattern(4096, 9), 0);
  const h = sheep.inject(0, { kind: 'delay', ms: 50 });
  sheep.inject(1, { kind: 'delay', ms: 50 });
  sheep.inject(2, { kind: 'delay', ms: 50 });
  const buf = Buffer.alloc(4096);
  let readDone = false;
  const r = v.readInto(buf, 0).then(() => {
    readDone = true;
  });
  await v.close();
  t.ok(readDone, 'the read had settled when close() resolved');
  await r;
  h.remove();
  sheep.clearFaults();
});

for (const [bss, hyper] of [
  [20, false],
  [22, false],
  [22, true],
] as const) {
  // One seed per layout here (the suite's time budget); npm run torture runs many.
  for (const seed of [1]) {
    t.test(`torture: seed ${seed}, bss ${bss}${hyper ? ', hyper volume' : ''}, QD 32, faults`, async (t) => {
      const rep = await torture({
        seed: seed * 7919 + bss,
        bss,
        objects: hyper ? 8 : 16,
        hyper,
        qd: 32,
        ops: 300,
        maxWrite: (hyper ? 12 : 6) * MiB,
        faults: true,
      });
      t.same(
        rep.errors,
        [],
        `no call failed (${rep.ops} ops: ${rep.writes} writes, ${rep.discards} discards, ${rep.zeroes} write-zeroes, ${rep.reads} reads, ${rep.snapshots} snapshots)`,
      );
      t.same(rep.violations, [], 'every read, snapshot and the final content are linearizable per sector');
    });
  }
}

t.test('an index write whose reply is lost is replayed after its deadline, not left behind', async (t) => {
  // One node: no liveness move to another node, so only the deadline acts.
  const { client, sheep } = await withCluster(t, { nodes: 1, copies: 1 }, { requestTimeout: 1000 });
  await client.createVdi('ix', 8 * MiB);
  const v = await client.openVdi('ix');
  t.teardown(() => v.close());
  const inode = vidToVdiOid(v.vid);
  const lost = sheep.inject(0, { kind: 'execute-drop-reply', opcode: Op.WRITE_OBJ, oid: inode, times: 1 });
  const data = pattern(4096, 11);
  await v.write(data, MiB); // allocates object 0: CREATE_AND_WRITE_OBJ, then the index WRITE_OBJ whose reply is lost
  t.equal(lost.hits, 1, 'the index write met the fault');
  t.same(await v.read(MiB, 4096), data);
  const other = new SheepdogClient({ nodes: [...sheep.addresses] });
  t.teardown(() => other.close());
  const w = await other.openVdi('ix');
  t.teardown(() => w.close());
  t.equal(w.objectOwner(0), v.vid, 'the index on the cluster names the object');
  t.same(await w.read(MiB, 4096), data);
});

/**
 * A client whose transport, before sending a request `match` picks, lets a
 * snapshot of `vdi` by the same client run first (each attempt of the
 * operation is overtaken, unless the snapshot has to wait for it; the
 * 1 s bound only keeps an exclusive attempt from waiting on its own
 * snapshot).
 */
async function overtakingClient(
  t: Test,
  vdi: string,
  match: (req: Request, body: Uint8Array | undefined) => boolean,
): Promise<{ client: SheepdogClient; arm(on: boolean): void; counts(): { snaps: number; overtaken: number } }> {
  const sheep = await startMemorySheep({ nodes: 3, copies: 2 });
  t.teardown(() => sheep.close());
  const pool = new SheepdogPool({ nodes: [...sheep.addresses] });
  let armed = false;
  let snaps = 0;
  let overtaken = 0;
  const box: { client?: SheepdogClient } = {};
  const transport: Transport = {
    get nodes() {
      return pool.nodes;
    },
    close: () => pool.close(),
    destroy: (e) => pool.destroy(e),
    async request(req, body, opts) {
      const c = box.client;
      if (armed && c !== undefined && match(req, body)) {
        const snap = c.snapshotVdi(vdi, `s${snaps++}`).then(() => true);
        if (await Promise.race([snap, new Promise<false>((r) => setTimeout(r, 1000, false))])) overtaken++;
      }
      return pool.request(req, body, opts);
    },
  };
  const client = new SheepdogClient({ transport });
  box.client = client;
  t.teardown(() => client.close());
  return {
    client,
    arm: (on) => {
      armed = on;
    },
    counts: () => ({ snaps, overtaken }),
  };
}

t.test('a discard that keeps meeting snapshots gets through: its later attempts run exclusive of them', async (t) => {
  // The discard's index writes: zeros into the slots of the working VDI's inode.
  const o = await overtakingClient(
    t,
    'busy',
    (req, body) =>
      req.kind === 'obj' &&
      req.opcode === Op.WRITE_OBJ &&
      isVdiObj(req.oid) &&
      req.offset >= dataVdiIdOffset(0) &&
      body !== undefined &&
      body.every((x) => x === 0),
  );
  await o.client.createVdi('busy', 4 * MiB, { blockSizeShift: 20 });
  const v = await o.client.openVdi('busy');
  t.teardown(() => v.close());
  for (let i = 0; i < 4; i++) await v.write(pattern(MiB, i), i * MiB);
  o.arm(true);
  await v.discard(0, 4 * MiB);
  o.arm(false);
  const { snaps, overtaken } = o.counts();
  t.ok(overtaken >= 1, `attempts were overtaken by snapshots first (${overtaken})`);
  t.ok(overtaken <= 2, `then an attempt ran exclusive of them (${overtaken} overtaken of ${snaps})`);
  t.same(await v.read(0, 4 * MiB), Buffer.alloc(4 * MiB), 'the range reads as zeros');
  t.equal(v.objectOwner(0), 0, 'the objects are unmapped');
});

t.test('a write that keeps meeting snapshots gets through the same way', async (t) => {
  // The write's data requests (a snapshot then makes them READONLY or stale).
  const o = await overtakingClient(
    t,
    'busyw',
    (req) =>
      req.kind === 'obj' &&
      (req.opcode === Op.WRITE_OBJ || req.opcode === Op.CREATE_AND_WRITE_OBJ) &&
      !isVdiObj(req.oid),
  );
  await o.client.createVdi('busyw', 4 * MiB, { blockSizeShift: 20 });
  const v = await o.client.openVdi('busyw');
  t.teardown(() => v.close());
  await v.write(pattern(4 * MiB, 1), 0);
  const data = pattern(2 * MiB, 2);
  o.arm(true);
  await v.write(data, MiB);
  o.arm(false);
  const { snaps, overtaken } = o.counts();
  t.ok(overtaken >= 2, `attempts were overtaken by snapshots first (${overtaken} of ${snaps})`);
  t.same(await v.read(MiB, 2 * MiB), data, 'the write landed');
  t.same(await v.read(0, MiB), pattern(4 * MiB, 1).subarray(0, MiB), 'the bytes around it are kept');
});

t.test('torture with failover: dropped connections, lost replies, a node stopped and started', async (t) => {
  const rep = await torture({
    seed: 4242,
    bss: 20,
    objects: 16,
    qd: 32,
    ops: 300,
    maxWrite: 6 * MiB,
    faults: true,
    failover: true,
  });
  t.ok(rep.faultsHit >= 20, `the faults acted (${rep.faultsHit} requests)`);
  t.same(rep.errors, [], `no call failed (${rep.ops} ops)`);
  t.same(rep.violations, [], 'no lost or stale sector');
});

t.test('a snapshot whose NEW_VDI outcome is unknown twice in a row is reconciled, and taken once', async (t) => {
  const { client, sheep } = await withCluster(t, { nodes: 1, copies: 1 });
  await client.createVdi('snapme', 4 * MiB);
  const v = await client.openVdi('snapme');
  t.teardown(() => v.close());
  await v.write(pattern(4096, 5), 0);
  const drops = sheep.inject(0, { kind: 'drop', opcode: Op.NEW_VDI, times: 2 });
  const r = await client.snapshotVdi('snapme', 'once');
  t.equal(drops.hits, 2, 'two sends closed their connection before a reply');
  t.equal(r.snapshotVdiId, v.vid);
  const all = (await client.listVdis()).filter((x) => x.name === 'snapme');
  t.same(
    all.map((x) => [x.snapshot, x.tag]).sort(),
    [
      [false, ''],
      [true, 'once'],
    ],
    'one snapshot and one working VDI',
  );
  await v.write(pattern(4096, 6), 0);
  const snap = await client.openVdi('snapme', { snapshot: 'once' });
  t.teardown(() => snap.close());
  t.same(await snap.read(0, 4096), pattern(4096, 5), 'the snapshot holds the data before it');
});

t.test('a snapshot that gives up while queued behind another leaves the queue; the order holds', async (t) => {
  const { client, sheep } = await withCluster(t);
  await client.createVdi('q', 4 * MiB);
  // The first snapshot's NEW_VDI is answered 300 ms late.
  for (let i = 0; i < sheep.addresses.length; i++)
    sheep.inject(i, { kind: 'delay', ms: 300, opcode: Op.NEW_VDI, times: 1 });
  const order: string[] = [];
  const first = client.snapshotVdi('q', 'a').then(() => order.push('a'));
  const ac = new AbortController();
  const second = client.snapshotVdi('q', 'b', { signal: ac.signal }).then(
    () => undefined,
    (e: unknown) => e as Error,
  );
  const third = client.snapshotVdi('q', 'c').then(() => order.push('c'));
  ac.abort();
  const e = await second;
  t.ok(e instanceof AbortError, `the queued snapshot left on its signal (${String(e)})`);
  t.same(order, [], 'while the first one still runs');
  await Promise.all([first, third]);
  t.same(order, ['a', 'c'], 'the one queued after it still waited for the first');
  const tags = (await client.listVdis()).filter((x) => x.name === 'q' && x.snapshot).map((x) => x.tag);
  t.same(tags.sort(), ['a', 'c'], 'the abandoned snapshot was never taken');
});

t.test('a hyper-volume discard whose DISCARD_OBJ connection died is sent again, whether or not it ran', async (t) => {
  const { client, sheep } = await withCluster(t, { nodes: 1, copies: 1 }, { requestTimeout: 1000 });
  await client.createVdi('hv', 64 * MiB, { hyper: true });
  const v = await client.openVdi('hv');
  t.teardown(() => v.close());
  const os = v.objectSize;
  await v.write(pattern(4096, 1), 0);
  await v.write(pattern(4096, 2), os);
  // Not run: the connection closes before sheep acts on it.
  const dropped = sheep.inject(0, { kind: 'drop', opcode: Op.DISCARD_OBJ, times: 1 });
  await v.discard(0, os);
  t.equal(dropped.hits, 1);
  // Run, its reply lost: the deadline destroys the connection, the repeat answers NO_OBJ.
  const lost = sheep.inject(0, { kind: 'execute-drop-reply', opcode: Op.DISCARD_OBJ, times: 1 });
  await v.discard(os, os);
  t.equal(lost.hits, 1);
  t.equal(v.objectOwner(0), 0);
  t.equal(v.objectOwner(1), 0);
  t.same(await v.read(0, 2 * os), Buffer.alloc(2 * os), 'both objects read as zeros');
});

t.test('createVdi after an unknown outcome does not adopt a VDI that existed before', async (t) => {
  const { client, sheep } = await withCluster(t);
  await client.createVdi('taken', 4 * MiB);
  for (let i = 0; i < sheep.addresses.length; i++) sheep.inject(i, { kind: 'drop', opcode: Op.NEW_VDI });
  const err = await client.createVdi('taken', 4 * MiB).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof OutcomeUnknownError || err instanceof VdiExistsError, `rejected (${String(err)})`);
  sheep.clearFaults();
  // And a create whose reply was lost is recognised as ours.
  for (let i = 0; i < sheep.addresses.length; i++) {
    sheep.inject(i, { kind: 'execute-drop-reply', opcode: Op.NEW_VDI, times: 1 });
  }
  const quick = new SheepdogClient({ nodes: [...sheep.addresses], requestTimeout: 500 });
  t.teardown(() => quick.close());
  const info: VdiInfo | Error = await quick.createVdi('fresh', 4 * MiB).then(
    (i) => i,
    (e: unknown) => e as Error,
  );
  sheep.clearFaults();
  const now = await client.getVdi('fresh');
  if (info instanceof Error) t.ok(info instanceof OutcomeUnknownError || info instanceof SheepdogError, String(info));
  else t.equal(info.vdiId, now.vdiId, 'the created VDI is the one there now');
});
