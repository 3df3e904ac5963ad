// Cluster-level behaviour of the embedded sheep: format state, version and
// opcode checks, cluster/node information, epochs and membership, shutdown.
import t, { type Test } from 'tap';
import { type EmbeddedSheep, startEmbeddedSheep, startMemorySheep } from '../../testing/embedded.js';
import {
  CLUSTER_INFO_SIZE,
  ClusterStatus,
  clusterRequest,
  decodeClusterInfo,
  decodeEpochLogs,
  decodeNodeList,
  Flag,
  objRequest,
  Op,
  plainRequest,
  Result,
  SD_NODE_SIZE,
  VDI_BITMAP_SIZE,
  vdiRequest,
  vidToDataOid,
} from '../../protocol/index.js';
import { MiniDog } from './dog.js';
import { createObj, newVdi, RawClient } from './raw.js';

async function start(t: Test, o: Parameters<typeof startEmbeddedSheep>[0] = {}): Promise<EmbeddedSheep> {
  const sheep = await startEmbeddedSheep({ nodes: 3, copies: 2, ...o });
  t.teardown(() => sheep.close());
  return sheep;
}
async function connect(t: Test, address: string): Promise<RawClient> {
  const c = await RawClient.connect(address);
  t.teardown(() => c.close());
  return c;
}
const nodeList = (c: RawClient) => c.call(plainRequest(Op.GET_NODE_LIST, { dataLength: 6144 * SD_NODE_SIZE }));
const statCluster = (c: RawClient, nodesNr: number, entries: number) =>
  c.call(clusterRequest(Op.STAT_CLUSTER, { nodesNr, dataLength: entries * (48 + nodesNr * SD_NODE_SIZE) }));
const makeFs = (c: RawClient, store: string, f: Partial<Parameters<typeof clusterRequest>[1]> = {}) => {
  const body = Buffer.from(`${store}\0`);
  return c.call(
    clusterRequest(Op.MAKE_FS, { flags: Flag.CMD_WRITE, dataLength: body.length, ctime: 7n << 32n, ...f }),
    body,
  );
};

t.test('unformatted: WAIT_FOR_FORMAT for non-force ops, then MAKE_FS', async (t) => {
  const sheep = await start(t, { unformatted: true });
  const c = await connect(t, sheep.addresses[1] as string);
  t.equal((await newVdi(c, 'alpha', 1n)).rsp.result, Result.WAIT_FOR_FORMAT);
  t.equal((await c.call(objRequest(Op.READ_OBJ, { oid: 1n, dataLength: 1 }))).rsp.result, Result.WAIT_FOR_FORMAT);
  t.equal((await c.call(plainRequest(Op.STAT_SHEEP))).rsp.result, Result.WAIT_FOR_FORMAT);
  // force ops answer
  const nl = await nodeList(c);
  t.equal(nl.rsp.result, Result.SUCCESS);
  t.equal(nl.rsp.kind === 'node' && nl.rsp.nrNodes, 3);
  const sc = await statCluster(c, 3, 4);
  t.equal(sc.rsp.result, Result.WAIT_FOR_FORMAT);
  t.equal(sc.rsp.dataLength, 0, 'no epoch yet');
  const ci = decodeClusterInfo((await c.call(plainRequest(Op.CLUSTER_INFO, { dataLength: CLUSTER_INFO_SIZE }))).body);
  t.equal(ci.ctime, 0n);
  t.equal(ci.status, ClusterStatus.WAIT);
  t.equal(ci.flags, 0x04, 'auto vnodes, as a sheep starts');
  t.equal((await c.call(plainRequest(Op.READ_VDIS, { dataLength: VDI_BITMAP_SIZE }))).rsp.result, Result.SUCCESS);
  const def = await c.call(plainRequest(Op.GET_CLUSTER_DEFAULT));
  t.ok(def.rsp.kind === 'cluster_default' && def.rsp.nrCopies === 0);
  t.equal((await makeFs(c, 'nosuchstore')).rsp.result, Result.NO_STORE);
  const mk = await makeFs(c, 'plain', { copies: 2, clusterFlags: 0x0c, blockSizeShift: 0 });
  t.equal(mk.rsp.result, Result.SUCCESS);
  const d = await c.call(plainRequest(Op.GET_CLUSTER_DEFAULT));
  t.same(d.rsp.kind === 'cluster_default' && [d.rsp.nrCopies, d.rsp.copyPolicy, d.rsp.blockSizeShift], [2, 0, 22]);
  t.equal((await newVdi(c, 'alpha', 1n)).rsp.result, Result.SUCCESS);
  const logs = await statCluster(c, 3, 2);
  t.equal(logs.rsp.result, Result.SUCCESS);
  const e = decodeEpochLogs(logs.body, 3);
  t.equal(e.length, 1);
  t.equal(e[0]?.epoch, 1);
  t.equal(e[0]?.ctime, 7n << 32n);
  t.equal(e[0]?.nrCopies, 2);
  t.equal(e[0]?.flags, 0x0c);
  t.equal(e[0]?.drvName, 'plain');
  // formatting again wipes the VDIs
  t.equal((await makeFs(c, 'tree', { copies: 3 })).rsp.result, Result.SUCCESS);
  const g = await c.call(vdiRequest(Op.GET_VDI_INFO, { flags: Flag.CMD_WRITE, dataLength: 256 }), Buffer.alloc(256));
  t.equal(g.rsp.result, Result.NO_VDI);
  t.equal(sheep.stats.objects, 0);
});

t.test('proto_ver, unknown and obsolete opcodes', async (t) => {
  const sheep = await start(t);
  const c = await connect(t, sheep.addresses[0] as string);
  t.equal((await c.call(plainRequest(Op.GET_NODE_LIST, { protoVer: 2 }))).rsp.result, Result.VER_MISMATCH);
  t.equal((await c.call(plainRequest(Op.GET_NODE_LIST, { protoVer: 0x0b }))).rsp.result, Result.VER_MISMATCH);
  t.equal((await c.call(plainRequest(Op.READ_VDIS, { protoVer: 3 }))).rsp.result, Result.VER_MISMATCH);
  const v0 = await c.call(plainRequest(Op.READ_VDIS, { protoVer: 0, dataLength: VDI_BITMAP_SIZE }));
  t.equal(v0.rsp.result, Result.SUCCESS, 'public ops accept proto_ver 0 (libsheepdog)');
  for (const op of [
    0x00,
    0x20,
    0x7f,
    Op.PREVENT_INODE_UPDATE,
    Op.ALLOW_INODE_UPDATE,
    Op.SNAPSHOT,
    Op.NFS_CREATE,
    0xff,
  ]) {
    const r = await c.call(plainRequest(op));
    t.equal(r.rsp.result, Result.INVALID_PARMS, `opcode 0x${op.toString(16)} is not in sheep's op table`);
    t.equal(r.rsp.opcode, op, 'opcode echoed');
  }
  t.equal((await c.call(objRequest(Op.FLUSH_VDI, { oid: 1n << 63n }))).rsp.result, Result.INVALID_PARMS, 'FLUSH_VDI');
  t.equal((await c.call(objRequest(Op.DELETE_CACHE, { oid: 1n }))).rsp.result, Result.SUCCESS, 'DELETE_CACHE no-op');
  t.equal((await c.call(objRequest(Op.FLUSH_DEL_CACHE, {}))).rsp.result, Result.SUCCESS);
  t.equal((await c.call(plainRequest(Op.FORCE_RECOVER))).rsp.result, Result.FORCE_RECOVER);
  t.equal((await c.call(plainRequest(Op.REWEIGHT))).rsp.result, Result.SUCCESS);
  t.equal((await c.call(plainRequest(Op.CLEANUP))).rsp.result, Result.SUCCESS);
});

t.test('node list, cluster info, stat sheep, epochs with nodes leaving and joining', async (t) => {
  const sheep = await start(t, { storeSize: 1 << 30, lock: true });
  const c = await connect(t, sheep.addresses[0] as string);
  const nl = await nodeList(c);
  const nodes = decodeNodeList(nl.body, 3);
  t.same(
    nodes.map((n) => `${n.nid.addr}:${n.nid.port}`).sort(),
    [...sheep.addresses].sort(),
    'the real listen addresses',
  );
  t.same(
    nodes.map((n) => [n.nrVnodes, n.space]),
    [
      [128, 1n << 30n],
      [128, 1n << 30n],
      [128, 1n << 30n],
    ],
  );
  t.same(nodes.map((n) => n.zone).sort(), [0, 1, 2]);
  const ci = decodeClusterInfo((await c.call(plainRequest(Op.CLUSTER_INFO, { dataLength: CLUSTER_INFO_SIZE }))).body);
  t.same(
    [ci.protoVer, ci.nrNodes, ci.epoch, ci.flags, ci.nrCopies, ci.status, ci.blockSizeShift, ci.defaultStore],
    [0x0a, 3, 1, 0x0c, 2, 1, 22, 'plain'],
  );
  t.not(ci.ctime, 0n);
  const st = await c.call(plainRequest(Op.STAT_SHEEP));
  t.ok(st.rsp.kind === 'node' && st.rsp.storeSize === 1n << 30n && st.rsp.storeFree === 1n << 30n);
  await createObj(c, vidToDataOid(1, 0), 0, Buffer.alloc(1 << 20, 1));
  // STAT_SHEEP reports the node's own store: ask one the ring placed the object on
  // (2 of 3 nodes, which ones depends on the nodes' ephemeral ports).
  const at = sheep.placement(vidToDataOid(1, 0))[0] as number;
  const hc = at === 0 ? c : await connect(t, sheep.addresses[at] as string);
  const st2 = await hc.call(plainRequest(Op.STAT_SHEEP));
  t.ok(st2.rsp.kind === 'node' && st2.rsp.storeFree < 1n << 30n, 'used space shows');
  if (hc !== c) hc.close();

  t.equal((await statCluster(c, 1, 1)).rsp.result, Result.BUFFER_SMALL, 'room for 1 node, 3 in the epoch');
  await sheep.stopNode(2);
  t.equal((await nodeList(c)).rsp.kind === 'node' && (await nodeList(c)).body.length, 2 * SD_NODE_SIZE);
  await t.rejects(RawClient.connect(sheep.addresses[2] as string), 'a stopped node does not listen');
  await sheep.startNode(2);
  const again = await connect(t, sheep.addresses[2] as string);
  t.equal((await nodeList(again)).rsp.result, Result.SUCCESS, 'back on the same port');
  const logs = await statCluster(c, 3, 10);
  t.equal(logs.rsp.result, Result.SUCCESS);
  const e = decodeEpochLogs(logs.body, 3);
  t.same(
    e.map((x) => [x.epoch, x.nrNodes]),
    [
      [3, 3],
      [2, 2],
      [1, 3],
    ],
    'newest first: join, leave, format',
  );
  t.equal(e[0]?.nrCopies, 2, 'the first entry carries the cluster fields');
  t.equal(e[1]?.nrCopies, 0, 'later entries do not');
  t.equal((await statCluster(c, 3, 2)).body.length, 2 * (48 + 3 * SD_NODE_SIZE), 'as many as fit');
  const r = await c.call(plainRequest(Op.GET_NODE_LIST));
  t.equal(r.rsp.epoch, 3, 'replies carry the cluster epoch');
  const ep = await c.call(objRequest(Op.GET_EPOCH, { tgtEpoch: 2, dataLength: 8 + 6144 * SD_NODE_SIZE }));
  t.equal(ep.rsp.result, Result.SUCCESS);
  t.equal(ep.body.length, 2 * SD_NODE_SIZE + 8);
  t.equal((await c.call(objRequest(Op.GET_EPOCH, { tgtEpoch: 99, dataLength: 1000 }))).rsp.result, Result.NO_TAG);
  t.equal((await c.call(objRequest(Op.GET_EPOCH, { tgtEpoch: 1, dataLength: 8 }))).rsp.result, Result.BUFFER_SMALL);
});

t.test('assorted local ops', async (t) => {
  // 3 copies on 3 nodes: node 0, which the local ops ask, holds every object
  const sheep = await start(t, { copies: 3 });
  const c = await connect(t, sheep.addresses[0] as string);
  const dog = new MiniDog(c);
  const v = await dog.create('alpha', 1 << 22);
  await dog.write('alpha', 0, Buffer.from('x'));
  const stores = await c.call(plainRequest(Op.GET_STORE_LIST, { dataLength: 512 }));
  t.equal(stores.body.toString(), 'tree plain ');
  t.equal((await c.call(objRequest(Op.EXIST, { oid: vidToDataOid(v, 0) }))).rsp.result, Result.SUCCESS);
  t.equal((await c.call(objRequest(Op.EXIST, { oid: vidToDataOid(v, 1) }))).rsp.result, Result.NO_OBJ);
  const ids = Buffer.alloc(16);
  ids.writeBigUInt64LE(vidToDataOid(v, 0), 0);
  ids.writeBigUInt64LE(vidToDataOid(v, 1), 8);
  const oe = await c.call(
    objRequest(Op.OIDS_EXIST, { flags: Flag.CMD_WRITE | Flag.CMD_PIGGYBACK, dataLength: 16 }),
    ids,
  );
  t.equal(oe.rsp.result, Result.NO_OBJ);
  t.equal(oe.body.readBigUInt64LE(0), vidToDataOid(v, 1), 'the missing ones come back');
  const list = await c.call(objRequest(Op.GET_OBJ_LIST, { dataLength: 1024 }));
  t.equal(list.body.length, 2 * 8, 'inode and data object');
  t.equal((await c.call(objRequest(Op.GET_OBJ_LIST, { dataLength: 8 }))).rsp.result, Result.BUFFER_SMALL);
  const h = await c.call(objRequest(Op.GET_HASH, { oid: vidToDataOid(v, 0) }));
  t.ok(h.rsp.kind === 'hash' && h.rsp.digest.some((x) => x !== 0));
  const ll = await c.call(plainRequest(Op.GET_LOGLEVEL, { dataLength: 4 }));
  t.equal(ll.body.readInt32LE(0), 6);
  const nine = Buffer.alloc(4);
  nine.writeInt32LE(9, 0);
  t.equal(
    (await c.call(plainRequest(Op.SET_LOGLEVEL, { flags: Flag.CMD_WRITE, dataLength: 4 }), nine)).rsp.result,
    Result.INVALID_PARMS,
  );
  t.equal((await c.call(plainRequest(Op.GET_VNODES, { dataLength: 4 }))).body.readInt32LE(0), 128);
  t.equal(
    (await c.call(plainRequest(Op.SET_VNODES, { flags: Flag.CMD_WRITE, dataLength: 4 }), nine)).rsp.result,
    Result.INVALID_VNODES_STRATEGY,
  );
  t.equal((await c.call(plainRequest(Op.STAT_RECOVERY, { dataLength: 24 }))).body.length, 24);
  const stat = await c.call(plainRequest(Op.STAT, { dataLength: 120 }));
  t.ok(stat.body.readBigUInt64LE(16) > 0n, 'gateway requests counted');
  t.equal((await c.call(plainRequest(Op.MD_INFO, { dataLength: 64 * 4120 + 8 }))).rsp.result, Result.SUCCESS);
  t.equal((await c.call(plainRequest(Op.TRACE_STATUS))).rsp.result, Result.SUCCESS);
  t.equal((await c.call(plainRequest(Op.GET_RECOVERY, { dataLength: 24 }))).body.length, 24);
  t.equal((await c.call(plainRequest(Op.DISABLE_RECOVER))).rsp.result, Result.SUCCESS);
  const ci = decodeClusterInfo((await c.call(plainRequest(Op.CLUSTER_INFO, { dataLength: CLUSTER_INFO_SIZE }))).body);
  t.equal(ci.disableRecovery, 1);
  t.equal(
    (await c.call(clusterRequest(Op.ALTER_CLUSTER_COPY, { copies: 3, copyPolicy: 0 }))).rsp.result,
    Result.SUCCESS,
  );
  const d = await c.call(plainRequest(Op.GET_CLUSTER_DEFAULT));
  t.ok(d.rsp.kind === 'cluster_default' && d.rsp.nrCopies === 3);
  t.equal(
    (await c.call(clusterRequest(Op.ALTER_CLUSTER_COPY, { copies: 3, copyPolicy: 0x11 }))).rsp.result,
    Result.INVALID_PARMS,
  );
  // peer ops check the epoch
  const old = await c.call(objRequest(Op.READ_PEER, { oid: vidToDataOid(v, 0), epoch: 0, dataLength: 1 }));
  t.equal(old.rsp.result, Result.OLD_NODE_VER);
  const cur = await c.call(objRequest(Op.READ_PEER, { oid: vidToDataOid(v, 0), epoch: 1, dataLength: 1 }));
  t.equal(cur.rsp.result, Result.SUCCESS);
  t.equal(cur.body.toString(), 'x');
  t.same(sheep.internalErrors, []);
});

t.test('SHUTDOWN answers, then every node goes away; startNode brings the cluster back', async (t) => {
  const sheep = await start(t);
  const c = await connect(t, sheep.addresses[0] as string);
  const other = await connect(t, sheep.addresses[1] as string);
  const r = await c.call(plainRequest(Op.SHUTDOWN));
  t.equal(r.rsp.result, Result.SUCCESS);
  await c.whenClosed;
  await other.whenClosed;
  t.ok(c.closed && other.closed, 'connections closed');
  await t.rejects(RawClient.connect(sheep.addresses[2] as string));
  await sheep.startNode(0);
  const again = await connect(t, sheep.addresses[0] as string);
  t.equal((await nodeList(again)).rsp.result, Result.SUCCESS);
  t.equal((await newVdi(again, 'after', 1n)).rsp.result, Result.SUCCESS, 'running again');
});

t.test('KILL_NODE stops that node only', async (t) => {
  const sheep = await start(t);
  const c = await connect(t, sheep.addresses[1] as string);
  t.equal((await c.call(plainRequest(Op.KILL_NODE))).rsp.result, Result.SUCCESS);
  await c.whenClosed;
  const n0 = await connect(t, sheep.addresses[0] as string);
  t.equal((await nodeList(n0)).body.length, 2 * SD_NODE_SIZE);
});

t.test('options are validated; close is idempotent', async (t) => {
  await t.rejects(startMemorySheep({ nodes: 0 }));
  await t.rejects(startMemorySheep({ copies: 40 }));
  await t.rejects(startMemorySheep({ copyPolicy: 0x10 }));
  await t.rejects(startMemorySheep({ blockSizeShift: 12 }));
  await t.rejects(startMemorySheep({ port: 65535, nodes: 2 }));
  const s = await startMemorySheep({ nodes: 1, copyPolicy: 0x21 });
  const c = await RawClient.connect(s.addresses[0] as string);
  const d = await c.call(plainRequest(Op.GET_CLUSTER_DEFAULT));
  t.ok(d.rsp.kind === 'cluster_default' && d.rsp.nrCopies === 5 && d.rsp.copyPolicy === 0x21);
  c.close();
  await s.close();
  await s.close();
  t.throws(() => s.inject(5, { kind: 'stall' }));
  t.equal(s.stats.connections, 0);
});

t.test('peer, refcount and admin ops', async (t) => {
  const sheep = await start(t, { lock: true });
  const c = await connect(t, sheep.addresses[0] as string);
  const oid = vidToDataOid(0x42, 1);
  // Peer ops act on the node's own store, and a reclaim removes the copies
  // where the ring places them (2 of 3 nodes, which ones depends on the
  // nodes' ephemeral ports): send them to a node that holds the object.
  const holder = sheep.placement(oid)[0] as number;
  const pc = holder === 0 ? c : await connect(t, sheep.addresses[holder] as string);
  const peer = (op: number, f: Partial<Parameters<typeof objRequest>[1]> = {}, body?: Buffer) =>
    pc.call(objRequest(op, { epoch: 1, oid, ...f }), body);
  t.equal(
    (await peer(Op.WRITE_PEER, { flags: Flag.CMD_WRITE, dataLength: 1 }, Buffer.from('a'))).rsp.result,
    Result.NO_OBJ,
  );
  t.equal(
    (await peer(Op.CREATE_AND_WRITE_PEER, { flags: Flag.CMD_WRITE, dataLength: 3, offset: 2 }, Buffer.from('abc'))).rsp
      .result,
    Result.SUCCESS,
  );
  t.equal(
    (await peer(Op.WRITE_PEER, { flags: Flag.CMD_WRITE, dataLength: 1 }, Buffer.from('Z'))).rsp.result,
    Result.SUCCESS,
  );
  t.equal((await peer(Op.READ_PEER, { dataLength: 5 })).body.toString(), 'Z\0abc');
  t.equal((await peer(Op.READ_PEER, { dataLength: 1, epoch: 5 })).rsp.result, Result.NEW_NODE_VER);
  t.equal((await peer(Op.REPAIR_REPLICA)).rsp.result, Result.SUCCESS);
  // DECREF_OBJ: generation 0 created with one reference; dropping it reclaims the object
  const decref = (op: number, gen: number, count: number) => {
    const raw = new Uint8Array(32);
    const dv = new DataView(raw.buffer);
    dv.setBigUint64(0, op === Op.DECREF_PEER ? oid | (1n << 59n) : oid, true);
    dv.setUint32(8, gen, true);
    dv.setUint32(12, count, true);
    return pc.call(plainRequest(op, { epoch: 1, raw }));
  };
  t.equal((await decref(Op.DECREF_OBJ, 0, 1)).rsp.result, Result.SUCCESS, 'gen 0 → gen 1 holds one');
  t.ok(sheep.cluster.store.has(oid | (1n << 59n)), 'a ledger object');
  t.equal((await decref(Op.DECREF_PEER, 1, 0)).rsp.result, Result.SUCCESS);
  t.notOk(sheep.cluster.store.has(oid), 'last reference dropped: reclaimed');
  t.notOk(sheep.cluster.store.has(oid | (1n << 59n)), 'and its ledger');
  t.equal((await peer(Op.REMOVE_PEER)).rsp.result, Result.NO_OBJ);
  t.equal((await peer(Op.REPAIR_REPLICA)).rsp.result, Result.NO_OBJ);
  t.equal((await c.call(objRequest(Op.GET_HASH, { oid }))).rsp.result, Result.NO_OBJ);

  // NOTIFY_VDI_ADD and ALTER_VDI_COPY edit vdi_state
  const vs = (old: number, nw: number, copies: number, setBitmap: number) => {
    const raw = new Uint8Array(32);
    const dv = new DataView(raw.buffer);
    dv.setUint32(0, old, true);
    dv.setUint32(4, nw, true);
    raw[8] = copies;
    raw[9] = setBitmap;
    raw[11] = 22;
    return raw;
  };
  t.equal((await c.call(plainRequest(Op.NOTIFY_VDI_ADD, { raw: vs(0, 0x77, 2, 1) }))).rsp.result, Result.SUCCESS);
  t.equal((await c.call(plainRequest(Op.ALTER_VDI_COPY, { raw: vs(0, 0x77, 3, 0) }))).rsp.result, Result.SUCCESS);
  t.equal(sheep.cluster.vdis.get(0x77)?.nrCopies, 3);
  t.ok(sheep.cluster.inuse[0x77 >> 3], 'set_bitmap set the in-use bit');
  const ckpt = new Uint8Array(32);
  ckpt[0] = 1;
  t.equal((await c.call(plainRequest(Op.VDI_STATE_CHECKPOINT_CTL, { raw: ckpt }))).rsp.result, Result.AGAIN);
  t.equal((await c.call(plainRequest(Op.VDI_STATE_CHECKPOINT_CTL))).rsp.result, Result.SUCCESS);
  for (const op of [
    Op.NOTIFY_VDI_DEL,
    Op.COMPLETE_RECOVERY,
    Op.ENABLE_RECOVER,
    Op.TRACE_ENABLE,
    Op.TRACE_DISABLE,
    Op.TRACE_READ_BUF,
  ]) {
    t.equal((await c.call(plainRequest(op))).rsp.result, Result.SUCCESS, `0x${op.toString(16)}`);
  }
  t.equal((await c.call(plainRequest(Op.MD_PLUG))).rsp.result, Result.UNKNOWN);
  t.equal((await c.call(plainRequest(Op.MD_UNPLUG))).rsp.result, Result.UNKNOWN);
  t.equal((await c.call(plainRequest(Op.MD_INFO, { dataLength: 10 }))).rsp.result, Result.INVALID_PARMS);
  const rec = Buffer.alloc(24, 3);
  t.equal(
    (await c.call(plainRequest(Op.SET_RECOVERY, { flags: Flag.CMD_WRITE, dataLength: 24 }), rec)).rsp.result,
    Result.SUCCESS,
  );
  t.ok((await c.call(plainRequest(Op.GET_RECOVERY, { dataLength: 24 }))).body.equals(rec));
  const five = Buffer.alloc(4);
  five.writeInt32LE(5, 0);
  t.equal(
    (await c.call(plainRequest(Op.SET_LOGLEVEL, { flags: Flag.CMD_WRITE, dataLength: 4 }), five)).rsp.result,
    Result.SUCCESS,
  );
  t.equal((await c.call(plainRequest(Op.GET_LOGLEVEL, { dataLength: 4 }))).body.readInt32LE(0), 5);
  // a fixed-vnodes cluster lets SET_VNODES through
  t.equal((await makeFs(c, 'plain', { copies: 2, clusterFlags: 0 })).rsp.result, Result.SUCCESS);
  t.equal(
    (await c.call(plainRequest(Op.SET_VNODES, { flags: Flag.CMD_WRITE, dataLength: 4 }), five)).rsp.result,
    Result.SUCCESS,
  );
  t.equal((await c.call(plainRequest(Op.GET_VNODES, { dataLength: 4 }))).body.readInt32LE(0), 5);
  const zero = Buffer.alloc(4);
  t.equal(
    (await c.call(plainRequest(Op.SET_VNODES, { flags: Flag.CMD_WRITE, dataLength: 4 }), zero)).rsp.result,
    Result.INVALID_PARMS,
  );
  // STRICT: a write needing more zones than there are nodes halts
  t.equal((await makeFs(c, 'plain', { copies: 3, clusterFlags: 0x01 })).rsp.result, Result.SUCCESS);
  await sheep.stopNode(2);
  t.equal((await createObj(c, vidToDataOid(5, 0), 0, Buffer.from('x'))).rsp.result, Result.HALT);
  await sheep.startNode(2);
  t.equal((await createObj(c, vidToDataOid(5, 0), 0, Buffer.from('x'))).rsp.result, Result.SUCCESS);
  t.same(sheep.internalErrors, []);
});

t.test('serveMemorySheep runs until aborted', async (t) => {
  const { serveMemorySheep } = await import('../../testing/serve.js');
  const ac = new AbortController();
  let addresses: readonly string[] = [];
  const done = serveMemorySheep(
    { nodes: 2 },
    {
      signal: ac.signal,
      onListening: (a) => {
        addresses = a;
        ac.abort();
      },
    },
  );
  await done;
  t.equal(addresses.length, 2);
  await t.rejects(RawClient.connect(addresses[0] as string), 'closed after the abort');
});
