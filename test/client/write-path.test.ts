// The write path under concurrency: the deadlocks, shared state of two
// handles, discard racing writes and snapshots, delete while open, and
// seeded torture rounds with a per-sector linearizability check.
import t from 'tap';
import { Op } from '../../protocol/constants.js';
import { SheepdogClient, type VdiInfo } from '../../lib/client/client.js';
import { NoVdiError, OutcomeUnknownError, SheepdogError, VdiExistsError, VdiInUseError } from '../../lib/errors.js';
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
