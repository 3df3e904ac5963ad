// Replicas, node loss and recovery of the embedded sheep, seen through the
// wire (raw requests) and through each node's own store.
import t, { type Test } from 'tap';
import { type EmbeddedSheep, startEmbeddedSheep } from '../../testing/embedded.js';
import { Flag, objRequest, Op, plainRequest, Result, vidToDataOid, vidToVdiOid } from '../../protocol/index.js';
import { MiniDog } from './dog.js';
import { createObj, RawClient, readObj, writeObj } from './raw.js';

const KiB = 1024;

async function start(t: Test, o: Parameters<typeof startEmbeddedSheep>[0] = {}): Promise<EmbeddedSheep> {
  const sheep = await startEmbeddedSheep({ nodes: 3, copies: 2, blockSizeShift: 20, ...o });
  t.teardown(() => sheep.close());
  return sheep;
}
async function connect(t: Test, address: string): Promise<RawClient> {
  const c = await RawClient.connect(address);
  t.teardown(() => c.close());
  return c;
}
function fill(len: number, seed: number): Buffer {
  const b = Buffer.alloc(len);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}
/** Which nodes' own stores hold `oid`. */
function holders(sheep: EmbeddedSheep, oid: bigint): number[] {
  return [0, 1, 2].filter((i) => sheep.readNodeObject(i, oid) !== undefined);
}

/** A VDI with `n` data objects of 64 KiB written through node 0. */
async function populate(t: Test, sheep: EmbeddedSheep, n: number): Promise<{ oids: bigint[]; data: Buffer[] }> {
  const c = await connect(t, sheep.addresses[0] as string);
  const vid = await new MiniDog(c).create('vol', n << 20);
  const oids: bigint[] = [vidToVdiOid(vid)];
  const data: Buffer[] = [Buffer.alloc(0)];
  for (let i = 0; i < n; i++) {
    const oid = vidToDataOid(vid, i);
    const d = fill(64 * KiB, i + 1);
    t.equal((await createObj(c, oid, 0, d)).rsp.result, Result.SUCCESS);
    oids.push(oid);
    data.push(d);
  }
  return { oids, data };
}

t.test('each object is stored exactly on its replica nodes, as the ring places it', async (t) => {
  const sheep = await start(t);
  const { oids } = await populate(t, sheep, 24);
  const spread = new Set<string>();
  for (const oid of oids) {
    const at = sheep.placement(oid);
    t.equal(at.length, 2);
    t.same(holders(sheep, oid), [...at].sort(), `${oid.toString(16)} on ${at.join(',')}`);
    spread.add([...at].sort().join(','));
  }
  t.equal(spread.size, 3, 'every pair of nodes holds some objects');
  // EXIST asks a node's own store: `dog vdi object location` sees the placement
  for (let i = 0; i < 3; i++) {
    const c = await connect(t, sheep.addresses[i] as string);
    for (const oid of oids.slice(0, 6)) {
      const r = await c.call(objRequest(Op.EXIST, { oid }));
      t.equal(r.rsp.result, sheep.placement(oid).includes(i) ? Result.SUCCESS : Result.NO_OBJ);
    }
  }
  // any node is a gateway for any object
  for (let i = 0; i < 3; i++) {
    const c = await connect(t, sheep.addresses[i] as string);
    const r = await readObj(c, oids[1] as bigint, 0, 16);
    t.ok(r.body.equals(fill(64 * KiB, 1).subarray(0, 16)), `node ${i} reads through its gateway`);
  }
  t.same(sheep.internalErrors, []);
});

t.test('a node leaves: the others recover its copies; it rejoins and gets back what it holds', async (t) => {
  const sheep = await start(t);
  const { oids, data } = await populate(t, sheep, 24);
  const c = await connect(t, sheep.addresses[0] as string);
  await sheep.stopNode(2);
  // write while node 2 is away: it must not keep (or later serve) the old bytes
  const changed = oids.filter((o) => sheep.placement(o).length > 0).slice(1, 9);
  for (const [k, oid] of changed.entries()) {
    const d = fill(64 * KiB, 100 + k);
    t.equal((await writeObj(c, oid, 0, d)).rsp.result, Result.SUCCESS);
    data[oids.indexOf(oid)] = d;
  }
  await sheep.recovered();
  for (const oid of oids) {
    t.same(
      holders(sheep, oid).filter((i) => i !== 2),
      [0, 1],
      'two nodes, two copies: both hold everything',
    );
  }
  const st = await c.call(plainRequest(Op.STAT_RECOVERY, { dataLength: 24 }));
  t.equal(st.body[0], 0, 'recovery done');

  // recovery paused (`dog cluster recover disable`) so that its progress can be looked at
  t.equal((await c.call(plainRequest(Op.DISABLE_RECOVER))).rsp.result, Result.SUCCESS);
  await sheep.startNode(2);
  t.ok(sheep.recovering, 'rejoining starts a recovery');
  const c2 = await connect(t, sheep.addresses[2] as string);
  const during = await c2.call(plainRequest(Op.STAT_RECOVERY, { dataLength: 24 }));
  t.equal(during.body[0], 1, 'STAT_RECOVERY: in recovery');
  const total = during.body.readBigUInt64LE(16);
  t.ok(total > 0n && during.body.readBigUInt64LE(8) < total, 'with a total, not done');
  // a request on an object still being recovered is served (sheep recovers it first)
  const probe = oids[2] as bigint;
  const r = await readObj(c2, probe, 0, 64 * KiB);
  t.ok(r.body.equals(data[2] as Buffer), 'read during recovery returns the current bytes');
  t.equal((await c.call(plainRequest(Op.ENABLE_RECOVER))).rsp.result, Result.SUCCESS);
  await sheep.recovered();
  for (const [k, oid] of oids.entries()) {
    const at = [...sheep.placement(oid)].sort();
    t.same(holders(sheep, oid), at, `${oid.toString(16)} back on exactly ${at.join(',')}`);
    if (k === 0) continue;
    for (const i of at) {
      const got = Buffer.from(sheep.readNodeObject(i, oid) as Uint8Array).subarray(0, 64 * KiB);
      t.ok(got.equals(data[k] as Buffer), `node ${i} has the current bytes`);
    }
  }
  const ep = await c.call(plainRequest(Op.GET_NODE_LIST));
  t.equal(ep.rsp.epoch, 3, 'a leave and a join: epoch 3');
  t.same(sheep.internalErrors, []);
});

t.test('losing more zones than copies loses the objects whose copies were all there', async (t) => {
  const sheep = await start(t);
  const { oids } = await populate(t, sheep, 24);
  const c = await connect(t, sheep.addresses[0] as string);
  t.equal((await c.call(plainRequest(Op.DISABLE_RECOVER))).rsp.result, Result.SUCCESS);
  const lost = oids.filter((o) => !sheep.placement(o).includes(0));
  t.ok(lost.length > 0);
  await sheep.killNode(1);
  await sheep.killNode(2);
  for (const oid of oids) {
    const r = await readObj(c, oid, 0, 16);
    t.equal(r.rsp.result, lost.includes(oid) ? Result.NO_OBJ : Result.SUCCESS, oid.toString(16));
    const w = await writeObj(c, oid, 0, Buffer.from('x'));
    t.equal(w.rsp.result, lost.includes(oid) ? Result.NO_OBJ : Result.SUCCESS);
  }
  // one of the dead nodes comes back: what it had is found again
  await sheep.startNode(1);
  t.equal((await c.call(plainRequest(Op.ENABLE_RECOVER))).rsp.result, Result.SUCCESS);
  await sheep.recovered();
  const back = lost.filter((o) => holders(sheep, o).length > 0);
  t.ok(back.length > 0, `${back.length} of ${lost.length} lost objects came back with node 1`);
  t.same(sheep.internalErrors, []);
});

t.test('peer requests work on a node’s own store; the memory cap is the whole cluster’s', async (t) => {
  const sheep = await start(t, { maxMemory: 40 * 64 * KiB });
  const c = await connect(t, sheep.addresses[0] as string);
  const vid = await new MiniDog(c).create('small', 64 << 20);
  const oid = vidToDataOid(vid, 0);
  t.equal((await createObj(c, oid, 0, fill(64 * KiB, 1))).rsp.result, Result.SUCCESS);
  const [a] = sheep.placement(oid) as [number];
  const other = [0, 1, 2].find((i) => !sheep.placement(oid).includes(i)) as number;
  const ca = await connect(t, sheep.addresses[a] as string);
  const co = await connect(t, sheep.addresses[other] as string);
  const epoch = 1;
  t.equal((await ca.call(objRequest(Op.READ_PEER, { oid, epoch, dataLength: 4 }))).rsp.result, Result.SUCCESS);
  t.equal((await co.call(objRequest(Op.READ_PEER, { oid, epoch, dataLength: 4 }))).rsp.result, Result.NO_OBJ);
  const w = await co.call(
    objRequest(Op.CREATE_AND_WRITE_PEER, { oid, epoch, flags: Flag.CMD_WRITE, dataLength: 4 }),
    Buffer.from('peer'),
  );
  t.equal(w.rsp.result, Result.SUCCESS, 'a peer create lands on that node only');
  t.ok(sheep.readNodeObject(other, oid));
  t.equal((await co.call(objRequest(Op.REMOVE_PEER, { oid, epoch }))).rsp.result, Result.SUCCESS);
  t.notOk(sheep.readNodeObject(other, oid));
  t.ok(sheep.readNodeObject(a, oid), 'the replicas are untouched');
  let stored = 1;
  for (let i = 1; i < 40; i++) {
    const r = await createObj(c, vidToDataOid(vid, i), 0, fill(64 * KiB, i + 1));
    if (r.rsp.result !== Result.SUCCESS) {
      t.equal(r.rsp.result, Result.NO_SPACE);
      break;
    }
    stored++;
  }
  t.ok(stored < 40 && stored >= 15, `${stored} objects of 2 copies fit in 40 chunks`);
  t.ok(sheep.stats.bytes <= 40 * 64 * KiB);
});
