/**
 * The ops of the embedded sheep (sheep/ops.c `sd_ops[]`; which ops exist,
 * their class and `force` are the opcode table's, protocol/opcodes.ts) and
 * the checks `queue_request()` makes before an op runs: proto_ver, unknown
 * opcodes, node/cluster status (force ops run even when the cluster is not
 * working), and the STRICT-mode zone check of gateway writes.
 */
import { u8, u16, u32, u64 } from '../protocol/bytes.js';
import {
  CLUSTER_INFO_SIZE,
  ClusterFlag,
  ClusterStatus,
  Flag,
  Op,
  Result,
  SD_INODE_DATA_INDEX,
  SD_SHEEP_PROTO_VER,
} from '../protocol/constants.js';
import type { Request } from '../protocol/header.js';
import { opcodeInfo, protoVerAccepted, type SheepOpName } from '../protocol/opcodes.js';
import { isVdiObj, LEDGER_BIT, oidToVid } from '../protocol/oid.js';
import { encodeClusterInfo } from '../protocol/records.js';
import { type NodeRecord, nidOf, type Reply, type SheepCluster } from './cluster.js';
import { DATA_OFF } from './inode.js';
import type { ObjectStore } from './store.js';
import { createHash } from 'node:crypto';

/** Per-node counters (SD_OP_STAT's struct sd_stat). */
export interface NodeCounters {
  gwayTotal: number;
  peerTotal: number;
  gwayRx: number;
  gwayTx: number;
  peerRx: number;
  peerTx: number;
  gwayRemove: number;
  gwayRead: number;
  gwayWrite: number;
  gwayFlush: number;
  peerRemove: number;
  peerRead: number;
  peerWrite: number;
}

export function newCounters(): NodeCounters {
  return {
    gwayTotal: 0,
    peerTotal: 0,
    gwayRx: 0,
    gwayTx: 0,
    peerRx: 0,
    peerTx: 0,
    gwayRemove: 0,
    gwayRead: 0,
    gwayWrite: 0,
    gwayFlush: 0,
    peerRemove: 0,
    peerRead: 0,
    peerWrite: 0,
  };
}

/** What an op may know and do about the node that received it. */
export interface NodeCtx {
  readonly record: NodeRecord;
  logLevel: number;
  readonly counters: NodeCounters;
  /** Stop this node after the reply (KILL_NODE). */
  kill(): void;
  /** Stop every node after the reply (SHUTDOWN). */
  shutdown(): void;
}

export interface OpCtx {
  cluster: SheepCluster;
  node: NodeCtx;
  req: Request;
  /** The raw 48-byte header (for unions the codec does not name). */
  hdr: Uint8Array;
  /** The request body: data_length bytes when WRITE was set, else empty. */
  body: Uint8Array;
}

const ok = (extra: Partial<Reply> = {}): Reply => ({ result: Result.SUCCESS, ...extra });
const res = (result: number): Reply => ({ result });

// Union fields read straight from the header.
const objOid = (h: Uint8Array): bigint => u64(h, 16);
const objCowOid = (h: Uint8Array): bigint => u64(h, 24);
const objTgtEpoch = (h: Uint8Array): number => u32(h, 36);
const objOffset = (h: Uint8Array): number => u32(h, 40);
const vdiSize = (h: Uint8Array): bigint => u64(h, 16);
const vdiBase = (h: Uint8Array): number => u32(h, 24);
const vdiSnapid = (h: Uint8Array): number => u32(h, 32);
const vdiType = (h: Uint8Array): number => u32(h, 36);
const dataLength = (h: Uint8Array): number => u32(h, 12);
const flags = (h: Uint8Array): number => u16(h, 2);
const epochOf = (h: Uint8Array): number => u32(h, 4);

/** The request body padded with zeros to data_length (sheep's buffer is data_length bytes). */
function dataBuf(c: OpCtx): Uint8Array {
  const n = dataLength(c.hdr);
  if (c.body.length >= n) return c.body;
  const b = new Uint8Array(n);
  b.set(c.body);
  return b;
}

function tgtRefresh(c: OpCtx, oid: bigint): boolean {
  return (flags(c.hdr) & Flag.CMD_TGT) !== 0 && c.cluster.refreshRequired(oidToVid(oid), nidOf(c.node.record));
}

function isInodeRefreshReq(h: Uint8Array): boolean {
  return isVdiObj(objOid(h)) && objOffset(h) === 0 && dataLength(h) === DATA_OFF + 4 * SD_INODE_DATA_INDEX;
}

function storeFree(c: OpCtx): { storeSize: bigint; storeFree: bigint } {
  const size = c.node.record.space;
  const used = BigInt(c.cluster.usedOn(c.node.record.index));
  return { storeSize: size, storeFree: used > size ? 0n : size - used };
}

function clusterInfoBody(c: OpCtx): Uint8Array {
  const cl = c.cluster;
  const nodes = cl.members();
  const body = new Uint8Array(CLUSTER_INFO_SIZE);
  encodeClusterInfo(
    {
      protoVer: SD_SHEEP_PROTO_VER,
      disableRecovery: cl.disableRecovery,
      nrNodes: nodes.length,
      epoch: cl.epoch,
      ctime: cl.ctime,
      flags: cl.flags,
      nrCopies: cl.nrCopies,
      copyPolicy: cl.copyPolicy,
      status: cl.status,
      blockSizeShift: cl.blockSizeShift,
      defaultStore: cl.defaultStore,
      nodes: cl.sdNodes(nodes),
    },
    body,
  );
  return body;
}

function sdStatBody(n: NodeCounters): Uint8Array {
  const v = [
    0,
    0,
    n.gwayTotal,
    n.peerTotal,
    n.gwayRx,
    n.gwayTx,
    n.peerRx,
    n.peerTx,
    n.gwayRemove,
    n.gwayRead,
    n.gwayWrite,
    n.gwayFlush,
    n.peerRemove,
    n.peerRead,
    n.peerWrite,
  ];
  const b = Buffer.alloc(v.length * 8);
  v.forEach((x, i) => b.writeBigUInt64LE(BigInt(x), i * 8));
  return b;
}

/** This node's own store. */
function local(c: OpCtx): ObjectStore {
  return c.cluster.store.local(c.node.record.index);
}

/** `request_in_recovery()` of a peer request: an object being recovered on this node is recovered first. */
function localRecovered(c: OpCtx): ObjectStore {
  const i = c.node.record.index;
  if (c.req.opcode !== Op.CREATE_AND_WRITE_PEER && !(flags(c.hdr) & Flag.CMD_RECOVERY)) {
    c.cluster.store.ensure(objOid(c.hdr), i);
  }
  return c.cluster.store.local(i);
}

/** `get_recovery_state()`: in_recovery u8, state u32 at 4, nr_finished u64 at 8, nr_total u64 at 16. */
function recoveryState(c: OpCtx): Uint8Array {
  const s = c.cluster.store.nodes[c.node.record.index];
  const b = Buffer.alloc(24);
  if (!s?.inRecovery) return b;
  b[0] = 1;
  b.writeUInt32LE(1, 4); // RW_RECOVER_OBJ
  b.writeBigUInt64LE(BigInt(s.done), 8);
  b.writeBigUInt64LE(BigInt(s.total), 16);
  return b;
}

/** `check_request_epoch()` of peer requests. */
function peerEpochCheck(c: OpCtx): Reply | undefined {
  if (objOid(c.hdr) === 0n) return undefined;
  const e = epochOf(c.hdr);
  if (e < c.cluster.epoch) return res(Result.OLD_NODE_VER);
  // sheep parks a request from the future until its own epoch catches up; we answer at once.
  if (e > c.cluster.epoch) return res(Result.NEW_NODE_VER);
  return undefined;
}

/**
 * What each op of sheep's op table does. Which ops there are, their class
 * (cluster, local, gateway, peer) and `force` come from the opcode table
 * (protocol/opcodes.ts); the type makes this object name exactly those ops.
 */
const RUN: { readonly [K in SheepOpName]: (c: OpCtx) => Reply } = {
  // ------------------------------------------------------ cluster ops
  NEW_VDI: (c) => {
    const h = c.hdr;
    return c.cluster.newVdi(
      {
        vdiSize: vdiSize(h),
        baseVdiId: vdiBase(h),
        copies: u8(h, 28),
        copyPolicy: u8(h, 29),
        storePolicy: u8(h, 30),
        blockSizeShift: u8(h, 31),
        snapid: vdiSnapid(h),
      },
      dataBuf(c),
      dataLength(h),
    );
  },
  DEL_VDI: (c) => c.cluster.delVdi(dataBuf(c), dataLength(c.hdr), vdiSnapid(c.hdr)),
  MAKE_FS: (c) => {
    const h = c.hdr;
    const data = dataBuf(c);
    let e = 0;
    while (e < data.length && data[e] !== 0) e++;
    const store = Buffer.from(data.subarray(0, e)).toString('latin1');
    return res(c.cluster.makeFs(u8(h, 32), u8(h, 33), u16(h, 34), u8(h, 44), u64(h, 24), store));
  },
  SHUTDOWN: (c) => {
    c.cluster.status = ClusterStatus.SHUTDOWN;
    c.cluster.onConfigChange?.();
    return ok({ after: () => c.node.shutdown() });
  },
  GET_VDI_ATTR: (c) => c.cluster.getVdiAttr(dataBuf(c), dataLength(c.hdr), vdiSnapid(c.hdr), flags(c.hdr)),
  FORCE_RECOVER: () => res(Result.FORCE_RECOVER),
  CLEANUP: () => ok(),
  NOTIFY_VDI_DEL: () => ok(),
  NOTIFY_VDI_ADD: (c) => {
    const h = c.hdr;
    c.cluster.notifyVdiAdd(u32(h, 16), u32(h, 20), u8(h, 24), u8(h, 26), u8(h, 27), u8(h, 25) !== 0);
    return ok();
  },
  DELETE_CACHE: () => ok(),
  COMPLETE_RECOVERY: () => ok(),
  GET_VDI_INFO: (c) => c.cluster.getVdiInfo(dataBuf(c), dataLength(c.hdr), vdiSnapid(c.hdr)),
  LOCK_VDI: (c) =>
    c.cluster.lockVdi(dataBuf(c), dataLength(c.hdr), vdiSnapid(c.hdr), vdiType(c.hdr), nidOf(c.node.record)),
  RELEASE_VDI: (c) => c.cluster.releaseVdi(vdiBase(c.hdr), vdiType(c.hdr), nidOf(c.node.record)),
  REWEIGHT: () => ok(),
  ENABLE_RECOVER: (c) => {
    c.cluster.disableRecovery = 0;
    c.cluster.store.resume();
    c.cluster.onConfigChange?.();
    return ok();
  },
  DISABLE_RECOVER: (c) => {
    c.cluster.disableRecovery = 1;
    c.cluster.onConfigChange?.();
    return ok();
  },
  ALTER_CLUSTER_COPY: (c) => {
    if (u8(c.hdr, 33) !== 0) return res(Result.INVALID_PARMS);
    c.cluster.nrCopies = u8(c.hdr, 32);
    c.cluster.onConfigChange?.();
    return ok();
  },
  ALTER_VDI_COPY: (c) => {
    const h = c.hdr;
    // sheep checks req->cluster.copy_policy (offset 33) on this vdi_state request
    if (u8(h, 33) !== 0) return res(Result.INVALID_PARMS);
    c.cluster.addVdiState(u32(h, 20), u8(h, 24), false, 0, u8(h, 27), 0);
    return ok();
  },
  INODE_COHERENCE: (c) => res(c.cluster.inodeCoherence(u32(c.hdr, 16), u32(c.hdr, 20) !== 0, nidOf(c.node.record))),

  // -------------------------------------------------------- local ops
  GET_STORE_LIST: (c) => ok({ body: Buffer.from('tree plain ').subarray(0, dataLength(c.hdr)) }),
  READ_VDIS: (c) => c.cluster.readVdis(c.cluster.inuse, dataLength(c.hdr)),
  READ_DEL_VDIS: (c) => c.cluster.readVdis(c.cluster.deleted, dataLength(c.hdr)),
  GET_VDI_COPIES: (c) => c.cluster.vdiCopies(dataLength(c.hdr)),
  GET_NODE_LIST: (c) => ok({ nrNodes: c.cluster.members().length, body: c.cluster.nodeListBody() }),
  STAT_SHEEP: (c) => ok(storeFree(c)),
  STAT_RECOVERY: (c) => ok({ body: recoveryState(c) }),
  STAT_CLUSTER: (c) => c.cluster.statCluster(dataLength(c.hdr), u32(c.hdr, 40)),
  GET_OBJ_LIST: (c) => {
    const oids = [...local(c).objects.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    if (dataLength(c.hdr) < oids.length * 8) return res(Result.BUFFER_SMALL);
    const b = Buffer.alloc(oids.length * 8);
    oids.forEach((o, i) => b.writeBigUInt64LE(o, i * 8));
    return ok({ body: b });
  },
  GET_EPOCH: (c) => c.cluster.getEpoch(objTgtEpoch(c.hdr), dataLength(c.hdr)),
  FLUSH_VDI: (c) => {
    c.node.counters.gwayFlush++;
    return res(Result.INVALID_PARMS);
  },
  DISCARD_OBJ: (c) => {
    c.node.counters.gwayRemove++;
    return res(c.cluster.discardObj(objOid(c.hdr), nidOf(c.node.record)));
  },
  FLUSH_DEL_CACHE: () => ok(),
  TRACE_ENABLE: () => ok(),
  TRACE_DISABLE: () => ok(),
  TRACE_STATUS: () => ok(),
  TRACE_READ_BUF: () => ok(),
  KILL_NODE: (c) => ok({ after: () => c.node.kill() }),
  MD_INFO: (c) => {
    // struct sd_md_info: 64 x {int idx; u64 free; u64 used; char path[4096]} + int nr
    const size = 64 * 4120 + 8;
    if (dataLength(c.hdr) !== size) return res(Result.INVALID_PARMS); // sheep asserts
    const b = Buffer.alloc(size);
    const { storeSize, storeFree: free } = storeFree(c);
    b.writeInt32LE(0, 0);
    b.writeBigUInt64LE(free, 8);
    b.writeBigUInt64LE(storeSize - free, 16);
    b.write(`/embedded-sheep/${c.node.record.index}/obj`, 24, 'latin1');
    b.writeInt32LE(1, 64 * 4120);
    return ok({ body: b });
  },
  MD_PLUG: () => res(Result.UNKNOWN),
  MD_UNPLUG: () => res(Result.UNKNOWN),
  GET_HASH: (c) => {
    const oid = objOid(c.hdr);
    const obj = local(c).get(oid);
    if (!obj) return res(Result.NO_OBJ);
    const digest = createHash('sha1')
      .update(obj.read(0, c.cluster.objsize(oid)))
      .digest();
    return ok({ digest: new Uint8Array(digest) });
  },
  STAT: (c) => ok({ body: sdStatBody(c.node.counters) }),
  GET_LOGLEVEL: (c) => {
    const b = Buffer.alloc(4);
    b.writeInt32LE(c.node.logLevel, 0);
    return ok({ body: b });
  },
  SET_LOGLEVEL: (c) => {
    const d = dataBuf(c);
    const v = d.length >= 4 ? Buffer.from(d.buffer, d.byteOffset, 4).readInt32LE(0) : 0;
    if (v < 0 || v > 7) return res(Result.INVALID_PARMS);
    c.node.logLevel = v;
    return ok();
  },
  EXIST: (c) => res(local(c).has(objOid(c.hdr)) ? Result.SUCCESS : Result.NO_OBJ),
  OIDS_EXIST: (c) => {
    const d = dataBuf(c);
    const n = Math.floor(dataLength(c.hdr) / 8);
    const missing: bigint[] = [];
    for (let i = 0; i < n; i++) {
      const oid = u64(d, i * 8);
      if (!local(c).has(oid)) missing.push(oid);
    }
    if (missing.length === 0) return ok();
    const b = Buffer.alloc(missing.length * 8);
    missing.forEach((o, i) => b.writeBigUInt64LE(o, i * 8));
    return { result: Result.NO_OBJ, body: b };
  },
  CLUSTER_INFO: (c) => ok({ body: clusterInfoBody(c) }),
  REPAIR_REPLICA: (c) => res(localRecovered(c).has(objOid(c.hdr)) ? Result.SUCCESS : Result.NO_OBJ),
  VDI_STATE_CHECKPOINT_CTL: (c) => {
    if (!(c.cluster.flags & ClusterFlag.USE_LOCK)) return ok();
    // no checkpoint is ever prepared (they are taken on membership changes during recovery)
    return res(u32(c.hdr, 16) ? Result.AGAIN : Result.SUCCESS);
  },
  GET_CLUSTER_DEFAULT: (c) =>
    ok({
      defaults: {
        nrCopies: c.cluster.nrCopies,
        copyPolicy: c.cluster.copyPolicy,
        blockSizeShift: c.cluster.blockSizeShift,
      },
    }),
  GET_VNODES: (c) => {
    const b = Buffer.alloc(4);
    b.writeInt32LE(c.node.record.nrVnodes, 0);
    return ok({ body: b });
  },
  SET_VNODES: (c) => {
    if (c.cluster.flags & ClusterFlag.AUTO_VNODES) return res(Result.INVALID_VNODES_STRATEGY);
    const d = dataBuf(c);
    const v = d.length >= 4 ? Buffer.from(d.buffer, d.byteOffset, 4).readInt32LE(0) : 0;
    if (v < 1 || v > 0xffff) return res(Result.INVALID_PARMS);
    c.node.record.nrVnodes = v;
    return ok();
  },
  GET_RECOVERY: (c) => ok({ body: c.cluster.recovery.slice() }),
  SET_RECOVERY: (c) => {
    const d = dataBuf(c);
    c.cluster.recovery.set(d.subarray(0, Math.min(d.length, c.cluster.recovery.length)));
    return ok();
  },

  // ------------------------------------------------------ gateway ops
  CREATE_AND_WRITE_OBJ: (c) => {
    const oid = objOid(c.hdr);
    c.node.counters.gwayWrite++;
    if (tgtRefresh(c, oid)) return res(Result.INODE_INVALIDATED);
    const cow = (flags(c.hdr) & Flag.CMD_COW) !== 0;
    return res(c.cluster.createAndWriteObj(oid, objCowOid(c.hdr), objOffset(c.hdr), dataBuf(c), cow));
  },
  READ_OBJ: (c) => {
    const oid = objOid(c.hdr);
    c.node.counters.gwayRead++;
    if (tgtRefresh(c, oid) && !isInodeRefreshReq(c.hdr)) return res(Result.INODE_INVALIDATED);
    const r = c.cluster.readObj(oid, objOffset(c.hdr), dataLength(c.hdr));
    if (r.result === Result.SUCCESS && isInodeRefreshReq(c.hdr)) {
      c.cluster.validateMyself(oidToVid(oid), nidOf(c.node.record));
    }
    return r;
  },
  WRITE_OBJ: (c) => {
    const oid = objOid(c.hdr);
    c.node.counters.gwayWrite++;
    if (tgtRefresh(c, oid)) return res(Result.INODE_INVALIDATED);
    return res(c.cluster.writeObj(oid, objOffset(c.hdr), dataBuf(c), nidOf(c.node.record)));
  },
  REMOVE_OBJ: (c) => res(c.cluster.removeObj(objOid(c.hdr))),
  DECREF_OBJ: (c) => res(c.cluster.decrefLedger(objOid(c.hdr) | LEDGER_BIT, u32(c.hdr, 24), u32(c.hdr, 28))),

  // --------------------------------------------------------- peer ops
  CREATE_AND_WRITE_PEER: (c) => {
    c.node.counters.peerWrite++;
    const oid = objOid(c.hdr);
    const r = localRecovered(c).create(oid, c.cluster.objsize(oid), objOffset(c.hdr), dataBuf(c));
    return res(r === 'ok' ? Result.SUCCESS : Result.NO_SPACE);
  },
  READ_PEER: (c) => {
    c.node.counters.peerRead++;
    const data = localRecovered(c).read(objOid(c.hdr), objOffset(c.hdr), dataLength(c.hdr));
    return data ? ok({ body: data }) : res(Result.NO_OBJ);
  },
  WRITE_PEER: (c) => {
    c.node.counters.peerWrite++;
    const r = localRecovered(c).write(objOid(c.hdr), objOffset(c.hdr), dataBuf(c));
    return res(r === 'ok' ? Result.SUCCESS : r === 'no_obj' ? Result.NO_OBJ : Result.NO_SPACE);
  },
  REMOVE_PEER: (c) => {
    c.node.counters.peerRemove++;
    return res(localRecovered(c).remove(objOid(c.hdr)) ? Result.SUCCESS : Result.NO_OBJ);
  },
  DECREF_PEER: (c) => res(c.cluster.decrefLedger(objOid(c.hdr), u32(c.hdr, 24), u32(c.hdr, 28))),
};

/** Whether sheep 1.0 has this opcode in its op table. */
export function isSheepOp(opcode: number): boolean {
  return opcodeInfo(opcode)?.sheep !== undefined;
}

/** `queue_request()` and the op itself. */
export function dispatch(c: OpCtx): Reply {
  const { req, cluster } = c;
  if (!protoVerAccepted(req.opcode, req.protoVer)) return res(Result.VER_MISMATCH);
  const op = opcodeInfo(req.opcode);
  if (op?.sheep === undefined) return res(Result.INVALID_PARMS);
  switch (cluster.status) {
    case ClusterStatus.KILLED:
      return res(Result.KILLED);
    case ClusterStatus.SHUTDOWN:
      return res(Result.SHUTDOWN);
    case ClusterStatus.WAIT:
      if (!op.force) return res(cluster.ctime === 0n ? Result.WAIT_FOR_FORMAT : Result.WAIT_FOR_JOIN);
      break;
    default:
      break;
  }
  if (op.sheep === 'gateway') {
    const n = c.node.counters;
    n.gwayTotal++;
    if (req.flags & Flag.CMD_WRITE) n.gwayRx += req.dataLength;
    else n.gwayTx += req.dataLength;
    if (
      cluster.flags & ClusterFlag.STRICT &&
      (req.opcode === Op.CREATE_AND_WRITE_OBJ || req.opcode === Op.WRITE_OBJ) &&
      cluster.members().length < cluster.copyNumber(oidToVid(objOid(c.hdr)))
    ) {
      return res(Result.HALT);
    }
  } else if (op.sheep === 'peer') {
    const n = c.node.counters;
    n.peerTotal++;
    if (req.flags & Flag.CMD_WRITE) n.peerRx += req.dataLength;
    else n.peerTx += req.dataLength;
    const stale = peerEpochCheck(c);
    if (stale) return stale;
  }
  const store = cluster.store;
  store.gateway = c.node.record.index;
  store.reqCopies = op.sheep === 'gateway' ? u8(c.hdr, 32) : 0;
  try {
    return RUN[op.name as SheepOpName](c);
  } finally {
    store.gateway = -1;
    store.reqCopies = 0;
  }
}
