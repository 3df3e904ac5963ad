/**
 * The shared state of an embedded sheep cluster and the operations sheep 1.0
 * performs on it: the cluster info and epoch log, the VDI bitmaps and
 * vdi_state table, VDI creation/snapshot/clone/rebase/deletion/lookup and
 * attributes (sheep/vdi.c, sheep/ops.c), locking, and the gateway data path
 * with copy-on-write and generational reference counting (sheep/gateway.c,
 * peer_decref_object). All of it runs synchronously on the event loop, which
 * is what makes cluster operations totally ordered, like sheep's cluster driver.
 */
import { u32 } from '../protocol/bytes.js';
import {
  ClusterFlag,
  ClusterStatus,
  EPOCH_LOG_HEADER_SIZE,
  LockState,
  LockType,
  Result,
  SD_ATTR_OBJ_SIZE,
  SD_DEFAULT_BLOCK_SIZE_SHIFT,
  SD_DEFAULT_COPIES,
  SD_INODE_DATA_INDEX_SIZE,
  SD_INODE_SIZE,
  SD_LEDGER_OBJ_SIZE,
  SD_MAX_COPIES,
  SD_MAX_VDI_LEN,
  SD_MAX_VDI_TAG_LEN,
  SD_NODE_SIZE,
  SD_NR_VDIS,
  SharedLockState,
  STORE_LEN,
  VDI_BITMAP_SIZE,
  VDI_STATE_SIZE,
} from '../protocol/constants.js';
import { fnv1a64, sdHashVdi } from '../protocol/hash.js';
import {
  isDataObj,
  isLedgerObj,
  isVdiAttrObj,
  isVdiBtreeObj,
  isVdiObj,
  LEDGER_BIT,
  oidToIdx,
  oidToVid,
  vidToAttrOid,
  vidToBtreeOid,
  vidToDataOid,
  vidToVdiOid,
} from '../protocol/oid.js';
import {
  bitmapSet,
  bitmapTest,
  encodeEpochLog,
  encodeSdNode,
  encodeVdiState,
  type NodeId,
  type SdNode,
} from '../protocol/records.js';
import {
  cbytes,
  DATA_OFF,
  GREF_OFF,
  hyperFind,
  hyperIndirects,
  hyperWalk,
  MAX_SLOTS,
  newInodeHead,
  type NewInode,
  OFF,
  readHead,
  strncmp,
} from './inode.js';
import { Replicas } from './replicas.js';
import { CHUNK_SIZE, SparseObject, type StoreResult } from './store.js';

/** One sheep of the cluster as the other sheep see it. */
export interface NodeRecord {
  index: number;
  /** Address text used in sd_node / node_id records. */
  addr: string;
  port: number;
  zone: number;
  nrVnodes: number;
  /** Bytes this node offers (sd_node.space, STAT_SHEEP store_size). */
  space: bigint;
}

export interface EpochEntry {
  epoch: number;
  /** Seconds since the Unix epoch (epoch log timestamp). */
  time: number;
  nodes: NodeRecord[];
}

export interface Participant {
  nid: NodeId;
  state: number;
}

export interface VdiStateEntry {
  vid: number;
  nrCopies: number;
  snapshot: boolean;
  deleted: boolean;
  copyPolicy: number;
  blockSizeShift: number;
  parentVid: number;
  lockState: number;
  owner: NodeId;
  participants: Participant[];
}

/** What an operation answers; the server turns it into a response frame. */
export interface Reply {
  result: number;
  /** vdi union */
  vdiId?: number;
  attrId?: number;
  copies?: number;
  blockSizeShift?: number;
  /** node union */
  nrNodes?: number;
  storeSize?: bigint;
  storeFree?: bigint;
  /** cluster_default union */
  defaults?: { nrCopies: number; copyPolicy: number; blockSizeShift: number };
  /** hash union */
  digest?: Uint8Array;
  /** Reply body; data_length is its length. */
  body?: Uint8Array;
  /** Runs after the reply is on its way (SHUTDOWN, KILL_NODE). */
  after?: () => void;
}

export interface ClusterOptions {
  /** Nodes of the cluster (each has its own store). */
  nodes: number;
  maxMemory: number;
  nullMode: boolean;
}

/** The persisted cluster configuration (everything but objects). */
export interface ClusterConfig {
  version: 1;
  status: number;
  ctime: string;
  epoch: number;
  nrCopies: number;
  copyPolicy: number;
  flags: number;
  blockSizeShift: number;
  defaultStore: string;
  disableRecovery: number;
  epochs: { epoch: number; time: number; nodes: (Omit<NodeRecord, 'space'> & { space: string })[] }[];
}

const NO_NID: NodeId = { addr: '', port: 0, ioAddr: '', ioPort: 0 };
export const STORE_DRIVERS = ['tree', 'plain'] as const;

export function nidOf(n: NodeRecord): NodeId {
  return { addr: n.addr, port: n.port, ioAddr: '', ioPort: 0 };
}
function sameNid(a: NodeId, b: NodeId): boolean {
  return a.addr === b.addr && a.port === b.port && a.ioAddr === b.ioAddr && a.ioPort === b.ioPort;
}

/** `ec_policy_to_dp()`: total strips of an EC policy, or 0 for an invalid one (sheep panics). */
export function ecPolicyToDp(policy: number): number {
  const p = policy & 0x0f;
  const d = (policy >> 4) * 2;
  return p === 0 ? 0 : d + p;
}

/** gettimeofday() as sheep stores it: sec << 32 | usec * 1000. */
export function nowCtime(): bigint {
  const us = Math.floor((performance.timeOrigin + performance.now()) * 1000);
  const sec = Math.floor(us / 1e6);
  return (BigInt(sec) << 32n) | BigInt((us % 1e6) * 1000);
}

function u32le(v: number): Uint8Array {
  const b = new Uint8Array(4);
  b[0] = v;
  b[1] = v >>> 8;
  b[2] = v >>> 16;
  b[3] = v >>> 24;
  return b;
}
function u64le(v: bigint): Uint8Array {
  const b = new Uint8Array(8);
  let x = BigInt.asUintN(64, v);
  for (let i = 0; i < 8; i++) {
    b[i] = Number(x & 0xffn);
    x >>= 8n;
  }
  return b;
}
/** C string field compare (strcmp of two NUL-terminated fields). */
function strcmpField(a: Uint8Array, b: Uint8Array): number {
  return strncmp(a, b, Math.max(a.length, b.length));
}

function storeResult(r: StoreResult): number {
  return r === 'ok' ? Result.SUCCESS : r === 'no_obj' ? Result.NO_OBJ : Result.NO_SPACE;
}

interface VdiIocb {
  name: Uint8Array;
  /** null: the request carried no tag field at all. */
  tag: Uint8Array | null;
  snapid: number;
}
interface VdiInfo {
  vid: number;
  snapid: number;
  createTime: bigint;
  freeBit: number;
}

export class SheepCluster {
  /** The objects as a gateway sees them: per-node stores, replicas placed on the ring (testing/replicas.ts). */
  readonly store: Replicas;
  readonly nullMode: boolean;
  status: number = ClusterStatus.WAIT;
  ctime = 0n;
  epoch = 0;
  epochs: EpochEntry[] = [];
  nrCopies = SD_DEFAULT_COPIES;
  copyPolicy = 0;
  flags = 0;
  blockSizeShift = SD_DEFAULT_BLOCK_SIZE_SHIFT;
  defaultStore = '';
  disableRecovery = 0;
  readonly inuse = new Uint8Array(VDI_BITMAP_SIZE);
  readonly deleted = new Uint8Array(VDI_BITMAP_SIZE);
  readonly vdis = new Map<number, VdiStateEntry>();
  /** The nodes currently in the cluster, sorted as sheep's node tree (address, port). */
  members: () => NodeRecord[] = () => [];
  /** Called when the persisted configuration changed. */
  onConfigChange: (() => void) | undefined;
  /** Recovery throttling (GET/SET_RECOVERY), kept verbatim. */
  recovery = new Uint8Array(24);

  constructor(opts: ClusterOptions) {
    this.store = new Replicas(opts.nodes, opts.maxMemory, {
      members: () => this.members(),
      copiesOf: (oid) => this.copyNumber(oidToVid(oid)),
      epoch: () => this.epoch,
      recoveryDisabled: () => this.disableRecovery !== 0,
    });
    this.nullMode = opts.nullMode;
  }

  // ------------------------------------------------------------ cluster

  get formatted(): boolean {
    return this.ctime !== 0n;
  }

  /** `cluster_make_fs()`: wipe every object and VDI and start at epoch 1. */
  makeFs(
    copies: number,
    copyPolicy: number,
    flags: number,
    blockSizeShift: number,
    ctime: bigint,
    store: string,
  ): number {
    if (!(STORE_DRIVERS as readonly string[]).includes(store)) return Result.NO_STORE;
    this.defaultStore = store.slice(0, STORE_LEN - 1);
    this.store.clear();
    this.nrCopies = copies || SD_DEFAULT_COPIES;
    this.copyPolicy = copyPolicy;
    this.blockSizeShift = blockSizeShift || SD_DEFAULT_BLOCK_SIZE_SHIFT;
    this.flags = flags;
    this.ctime = ctime;
    this.epochs = [];
    this.inuse.fill(0);
    this.deleted.fill(0);
    this.vdis.clear();
    this.epoch = 0;
    this.status = ClusterStatus.OK;
    this.incEpoch();
    return Result.SUCCESS;
  }

  /** `inc_and_log_epoch()` with the current members. */
  incEpoch(): void {
    this.epoch++;
    this.epochs.push({
      epoch: this.epoch,
      time: Math.floor(Date.now() / 1000),
      nodes: this.members().map((n) => ({ ...n })),
    });
    // sheep keeps every epoch file; a long-lived embedded cluster keeps the last 1024.
    if (this.epochs.length > 1024) this.epochs.splice(0, this.epochs.length - 1024);
    this.store.replan();
    this.onConfigChange?.();
  }

  /** A node joined or left: sheep bumps the epoch when the cluster is running. */
  membershipChanged(): void {
    if (this.status === ClusterStatus.OK) this.incEpoch();
  }

  config(): ClusterConfig {
    return {
      version: 1,
      status: this.status,
      ctime: this.ctime.toString(),
      epoch: this.epoch,
      nrCopies: this.nrCopies,
      copyPolicy: this.copyPolicy,
      flags: this.flags,
      blockSizeShift: this.blockSizeShift,
      defaultStore: this.defaultStore,
      disableRecovery: this.disableRecovery,
      epochs: this.epochs.map((e) => ({
        epoch: e.epoch,
        time: e.time,
        nodes: e.nodes.map((n) => ({ ...n, space: n.space.toString() })),
      })),
    };
  }

  loadConfig(c: ClusterConfig): void {
    this.status = c.status;
    this.ctime = BigInt(c.ctime);
    this.epoch = c.epoch;
    this.nrCopies = c.nrCopies;
    this.copyPolicy = c.copyPolicy;
    this.flags = c.flags;
    this.blockSizeShift = c.blockSizeShift;
    this.defaultStore = c.defaultStore;
    this.disableRecovery = c.disableRecovery;
    this.epochs = c.epochs.map((e) => ({
      epoch: e.epoch,
      time: e.time,
      nodes: e.nodes.map((n) => ({ ...n, space: BigInt(n.space) })),
    }));
  }

  /** Rebuild the VDI bitmaps and vdi_state from the stored inodes, as sheep's `init_vdi_state()` does at start. */
  rebuildVdiState(): void {
    this.inuse.fill(0);
    this.deleted.fill(0);
    this.vdis.clear();
    const oids = [...this.store.objects.keys()].filter(isVdiObj).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const oid of oids) {
      const obj = this.store.get(oid) as SparseObject;
      const h = readHead(obj);
      const vid = oidToVid(oid);
      this.addVdiState(vid, h.nrCopies, h.snapCtime !== 0n, h.copyPolicy, h.blockSizeShift, h.parentVdiId);
      if (h.name[0] === 0) bitmapSet(this.deleted, vid);
      bitmapSet(this.inuse, vid);
    }
  }

  sdNodes(nodes: NodeRecord[]): SdNode[] {
    return nodes.map((n) => ({ nid: nidOf(n), nrVnodes: n.nrVnodes, zone: n.zone, space: n.space }));
  }

  nodeListBody(): Uint8Array {
    const nodes = this.members();
    const out = new Uint8Array(nodes.length * SD_NODE_SIZE);
    this.sdNodes(nodes).forEach((n, i) => encodeSdNode(n, out, i * SD_NODE_SIZE));
    return out;
  }

  /** `local_stat_cluster()`. */
  statCluster(dataLength: number, nodesNr: number): Reply {
    const stride = EPOCH_LOG_HEADER_SIZE + nodesNr * SD_NODE_SIZE;
    const maxLogs = Math.floor(dataLength / stride);
    const parts: Uint8Array[] = [];
    let result: number | undefined;
    let ep = this.epochs.length - 1;
    for (let i = 0; i < maxLogs && ep >= 0; i++, ep--) {
      const e = this.epochs[ep] as EpochEntry;
      if (nodesNr > 0 && e.nodes.length > nodesNr) {
        result = Result.BUFFER_SMALL;
        break;
      }
      const buf = new Uint8Array(stride);
      encodeEpochLog(
        {
          ctime: i === 0 ? this.ctime : 0n,
          time: nodesNr > 0 ? BigInt(e.time) : 0n,
          epoch: e.epoch,
          nrNodes: nodesNr > 0 ? e.nodes.length : 0,
          disableRecovery: i === 0 ? this.disableRecovery : 0,
          nrCopies: i === 0 ? this.nrCopies : 0,
          copyPolicy: i === 0 ? this.copyPolicy : 0,
          flags: i === 0 ? this.flags : 0,
          drvName: i === 0 ? this.defaultStore.slice(0, STORE_LEN - 1) : '',
          nodes: nodesNr > 0 ? this.sdNodes(e.nodes) : [],
        },
        buf,
        0,
        stride,
      );
      parts.push(buf);
    }
    const body = concat(parts);
    if (result !== undefined) return { result, body };
    return { result: this.statusResult(), body };
  }

  statusResult(): number {
    switch (this.status) {
      case ClusterStatus.OK:
        return Result.SUCCESS;
      case ClusterStatus.WAIT:
        return this.ctime === 0n ? Result.WAIT_FOR_FORMAT : Result.WAIT_FOR_JOIN;
      case ClusterStatus.SHUTDOWN:
        return Result.SHUTDOWN;
      default:
        return Result.SYSTEM_ERROR;
    }
  }

  /** `local_get_epoch()`: the nodes of epoch `epoch` followed by its time_t. */
  getEpoch(epoch: number, dataLength: number): Reply {
    const e = this.epochs.find((x) => x.epoch === epoch);
    if (!e) return { result: Result.NO_TAG };
    const nodes = e.nodes.length * SD_NODE_SIZE;
    if (dataLength - 8 < nodes) return { result: Result.BUFFER_SMALL };
    const body = new Uint8Array(nodes + 8);
    this.sdNodes(e.nodes).forEach((n, i) => encodeSdNode(n, body, i * SD_NODE_SIZE));
    body.set(u64le(BigInt(e.time)), nodes);
    return { result: Result.SUCCESS, body };
  }

  // --------------------------------------------------------- vdi state

  copyNumber(vid: number): number {
    return this.vdis.get(vid)?.nrCopies ?? this.nrCopies;
  }
  copyPolicyOf(vid: number): number {
    return this.vdis.get(vid)?.copyPolicy ?? this.copyPolicy;
  }
  bssOf(vid: number): number {
    return this.vdis.get(vid)?.blockSizeShift ?? this.blockSizeShift;
  }
  /** `get_vdi_object_size()` (u32 shift semantics of x86). */
  objectSize(vid: number): number {
    return 2 ** (this.bssOf(vid) & 31);
  }
  /** `get_objsize()`. */
  objsize(oid: bigint): number {
    if (isVdiObj(oid)) return SD_INODE_SIZE;
    if (isVdiAttrObj(oid)) return SD_ATTR_OBJ_SIZE;
    if (isVdiBtreeObj(oid)) return SD_INODE_DATA_INDEX_SIZE;
    if (isLedgerObj(oid)) return SD_LEDGER_OBJ_SIZE;
    return this.objectSize(oidToVid(oid));
  }

  /** `add_vdi_state()`. */
  addVdiState(vid: number, nrCopies: number, snapshot: boolean, cp: number, bss: number, parentVid: number): void {
    const old = this.vdis.get(vid);
    if (old) {
      old.nrCopies = nrCopies;
      old.snapshot = snapshot;
      old.copyPolicy = cp;
      old.blockSizeShift = bss;
      if (parentVid) old.parentVid = parentVid;
      return;
    }
    this.vdis.set(vid, {
      vid,
      nrCopies,
      snapshot,
      deleted: false,
      copyPolicy: cp,
      blockSizeShift: bss,
      parentVid,
      lockState: LockState.UNLOCKED,
      owner: NO_NID,
      participants: [],
    });
  }

  /** `cluster_notify_vdi_add()`. */
  notifyVdiAdd(
    oldVid: number,
    newVid: number,
    copies: number,
    copyPolicy: number,
    bss: number,
    setBitmap: boolean,
  ): void {
    if (oldVid) this.addVdiState(oldVid, this.copyNumber(oldVid), true, copyPolicy, this.bssOf(oldVid), 0);
    if (setBitmap) bitmapSet(this.inuse, newVid);
    this.addVdiState(newVid, copies, false, copyPolicy, bss, oldVid);
  }

  /** `oid_is_readonly()`: data objects of snapshots. */
  readonlyOid(oid: bigint): boolean {
    if (!isDataObj(oid)) return false;
    return this.vdis.get(oidToVid(oid))?.snapshot ?? false;
  }

  vdiCopies(dataLength: number): Reply {
    const list = [...this.vdis.values()].sort((a, b) => a.vid - b.vid);
    if (dataLength < list.length * VDI_STATE_SIZE) return { result: Result.BUFFER_SMALL };
    const body = new Uint8Array(list.length * VDI_STATE_SIZE);
    list.forEach((e, i) =>
      encodeVdiState(
        {
          vid: e.vid,
          nrCopies: e.nrCopies,
          snapshot: e.snapshot ? 1 : 0,
          deleted: e.deleted ? 1 : 0,
          copyPolicy: e.copyPolicy,
          blockSizeShift: e.blockSizeShift,
          parentVid: e.parentVid,
          lockState: e.lockState,
          lockOwner: e.owner,
          nrParticipants: e.participants.length,
          participantsState: e.participants.map((p) => p.state),
          participants: e.participants.map((p) => p.nid),
        },
        body,
        i * VDI_STATE_SIZE,
      ),
    );
    return { result: Result.SUCCESS, body };
  }

  // ------------------------------------------------------------ locking

  /** `vdi_lock()`. */
  vdiLock(vid: number, owner: NodeId, type: number): boolean {
    const e = this.vdis.get(vid);
    if (!e) return false;
    if (type === LockType.NORMAL) {
      if (e.lockState !== LockState.UNLOCKED) return false;
      e.lockState = LockState.LOCKED;
      e.owner = owner;
      return true;
    }
    if (type !== LockType.SHARED) return false;
    if (e.lockState === LockState.LOCKED) return false;
    if (e.lockState === LockState.UNLOCKED) {
      e.participants = [{ nid: owner, state: SharedLockState.MODIFIED }];
      e.lockState = LockState.SHARED;
      return true;
    }
    if (e.lockState !== LockState.SHARED) return false;
    if (e.participants.length >= SD_MAX_COPIES) return false;
    if (e.participants.some((p) => sameNid(p.nid, owner))) return false;
    const modified = e.participants.some((p) => p.state === SharedLockState.MODIFIED);
    e.participants.push({ nid: owner, state: modified ? SharedLockState.INVALIDATED : SharedLockState.SHARED });
    return true;
  }

  /** `vdi_unlock()`: a normal lock is released whoever asks. */
  vdiUnlock(vid: number, owner: NodeId, type: number): void {
    const e = this.vdis.get(vid);
    if (!e) return;
    if (type === LockType.NORMAL) {
      if (e.lockState === LockState.LOCKED) {
        e.lockState = LockState.UNLOCKED;
        e.owner = NO_NID;
      }
    } else if (e.lockState === LockState.SHARED) {
      this.delParticipant(e, owner);
    }
  }

  delParticipant(e: VdiStateEntry, nid: NodeId): void {
    const i = e.participants.findIndex((p) => sameNid(p.nid, nid));
    if (i < 0) return;
    e.participants.splice(i, 1);
    if (e.participants.length === 0) e.lockState = LockState.UNLOCKED;
  }

  /** A node left: drop it from shared locks (normal locks stay, as in sheep). */
  nodeLeft(n: NodeRecord): void {
    const nid = nidOf(n);
    for (const e of this.vdis.values()) if (e.participants.length) this.delParticipant(e, nid);
  }

  /** `inode_coherence_update()`. */
  inodeCoherence(vid: number, validate: boolean, sender: NodeId): number {
    const e = this.vdis.get(vid);
    if (!e) return Result.NO_VDI;
    if (validate) {
      for (const p of e.participants) {
        if (!sameNid(p.nid, sender) && p.state === SharedLockState.INVALIDATED) continue;
        p.state = SharedLockState.SHARED;
      }
      return Result.SUCCESS;
    }
    let invalidated = false;
    for (const p of e.participants) {
      if (!sameNid(p.nid, sender)) p.state = SharedLockState.INVALIDATED;
      else {
        p.state = SharedLockState.MODIFIED;
        invalidated = true;
      }
    }
    return invalidated ? Result.SUCCESS : Result.NO_VDI;
  }

  private myParticipant(vid: number, node: NodeId): Participant | undefined {
    const e = this.vdis.get(vid);
    if (!e || e.snapshot || e.lockState !== LockState.SHARED) return undefined;
    return e.participants.find((p) => sameNid(p.nid, node));
  }

  /** `is_refresh_required()`. */
  refreshRequired(vid: number, node: NodeId): boolean {
    return this.myParticipant(vid, node)?.state === SharedLockState.INVALIDATED;
  }
  /** `validate_myself()`. */
  validateMyself(vid: number, node: NodeId): void {
    if (this.myParticipant(vid, node)?.state === SharedLockState.INVALIDATED) this.inodeCoherence(vid, true, node);
  }
  /** `invalidate_other_nodes()`. */
  invalidateOthers(vid: number, node: NodeId): void {
    const e = this.vdis.get(vid);
    if (!e || e.lockState !== LockState.SHARED) return;
    const me = e.participants.find((p) => sameNid(p.nid, node));
    if (me && me.state !== SharedLockState.MODIFIED) this.inodeCoherence(vid, false, node);
  }

  // ------------------------------------------------------------- lookup

  private inodeHeadOf(vid: number): ReturnType<typeof readHead> | undefined {
    const obj = this.store.get(vidToVdiOid(vid));
    return obj ? readHead(obj) : undefined;
  }

  /** Highest vid <= i and >= lo whose in-use or deleted bit is set, or -1. */
  private prevUsed(i: number, lo: number): number {
    const a = this.inuse;
    const d = this.deleted;
    while (i >= lo && i >= 0) {
      const byte = i >>> 3;
      if ((a[byte] as number) === 0 && (d[byte] as number) === 0) {
        // skip this byte, and whole zero words below it
        let b = byte - 1;
        while (b >= 3 && b % 4 === 3 && this.inuse32[(b - 3) >>> 2] === 0 && this.deleted32[(b - 3) >>> 2] === 0)
          b -= 4;
        i = b * 8 + 7;
        continue;
      }
      if (bitmapTest(a, i) || bitmapTest(d, i)) return i;
      i--;
    }
    return -1;
  }
  private readonly inuse32 = new Uint32Array(this.inuse.buffer);
  private readonly deleted32 = new Uint32Array(this.deleted.buffer);

  /** `fill_vdi_info_range()`: scan [left, right) from the top. */
  private fillRange(left: number, right: number, io: VdiIocb, info: VdiInfo): number {
    const hasTag = (io.tag !== null && io.tag[0] !== 0) || io.snapid !== 0;
    let found = false;
    for (let i = this.prevUsed(right - 1, left); i >= left && i > 0; i = this.prevUsed(i - 1, left)) {
      const h = this.inodeHeadOf(i);
      if (!h) return Result.NO_OBJ;
      if (strncmp(h.name, io.name) !== 0) continue;
      const snapshot = h.snapCtime !== 0n;
      if (hasTag) {
        if (!snapshot) {
          found = true;
          info.vid = h.vdiId;
          continue;
        }
        const tagMatch = h.tag[0] !== 0 && io.tag !== null && strncmp(h.tag, io.tag) === 0;
        if (!tagMatch && io.snapid !== h.snapId) continue;
      } else {
        info.snapid = h.snapId + 1;
        if (snapshot) {
          info.vid = h.vdiId; // the working VDI is gone
          break;
        }
      }
      info.createTime = h.createTime;
      info.vid = h.vdiId;
      return Result.SUCCESS;
    }
    return found ? Result.NO_TAG : Result.NO_VDI;
  }

  /** `vdi_lookup()`. */
  lookup(io: VdiIocb): { ret: number; info: VdiInfo } {
    const info: VdiInfo = { vid: 0, snapid: 0, createTime: 0n, freeBit: 0 };
    if (this.flags & ClusterFlag.RECYCLE_VID) {
      info.freeBit = nextZero(this.inuse, 1);
      const ret = this.fillRange(1, SD_NR_VDIS, io, info);
      if (ret === Result.NO_VDI && info.vid !== 0 && bitmapTest(this.inuse, info.vid))
        return { ret: Result.SUCCESS, info };
      return { ret, info };
    }
    let left = sdHashVdi(cbytes(io.name, SD_MAX_VDI_LEN));
    if (left === 0) left = 1;
    let right = nextZero(this.inuse, left);
    info.freeBit = right;
    if (left === right) return { ret: Result.NO_VDI, info };
    if (right === SD_NR_VDIS) {
      right = nextZero(this.inuse, 1);
      info.freeBit = right;
      if (right === SD_NR_VDIS) return { ret: Result.FULL_VDI, info };
    }
    if (left < right) return { ret: this.fillRange(left, right, io, info), info };
    let ret = 1 < right ? this.fillRange(1, right, io, info) : Result.NO_VDI;
    if (ret === Result.NO_VDI || ret === Result.NO_TAG) ret = this.fillRange(left, SD_NR_VDIS, io, info);
    return { ret, info };
  }

  // ------------------------------------------------------ vdi operations

  /** `cluster_new_vdi()` + `post_cluster_new_vdi()`. */
  newVdi(
    p: {
      vdiSize: bigint;
      baseVdiId: number;
      copies: number;
      copyPolicy: number;
      storePolicy: number;
      blockSizeShift: number;
      snapid: number;
    },
    name: Uint8Array,
    dataLength: number,
  ): Reply {
    let nrCopies = p.copies;
    let copyPolicy = p.copyPolicy;
    if (!p.copies) {
      nrCopies = this.nrCopies;
      copyPolicy = this.copyPolicy;
    }
    if (copyPolicy) {
      nrCopies = ecPolicyToDp(copyPolicy);
      if (nrCopies === 0) return { result: Result.INVALID_PARMS }; // sheep panics here
    }
    const bss = p.blockSizeShift || this.blockSizeShift;
    if (dataLength !== SD_MAX_VDI_LEN) return { result: Result.INVALID_PARMS };
    const io = {
      name,
      size: p.vdiSize,
      baseVid: p.baseVdiId,
      copyPolicy,
      storePolicy: p.storePolicy,
      nrCopies,
      bss,
      time: nowCtime(),
    };
    const r = p.snapid ? this.vdiSnapshot(io) : this.vdiCreate(io);
    if (r.result === Result.SUCCESS) bitmapSet(this.inuse, r.vid);
    return { result: r.result, vdiId: r.vid, copies: nrCopies, blockSizeShift: bss };
  }

  private vdiCreate(io: NewVdiIocb): { result: number; vid: number } {
    const { ret, info } = this.lookup({ name: io.name, tag: null, snapid: 0 });
    if (ret === Result.SUCCESS) return { result: Result.VDI_EXIST, vid: 0 };
    if (ret !== Result.NO_VDI) return { result: ret, vid: 0 };
    const snapid = info.snapid === 0 ? 1 : info.snapid;
    const vid = info.freeBit;
    this.notifyVdiAdd(io.baseVid === 0 ? info.vid : io.baseVid, vid, io.nrCopies, io.copyPolicy, io.bss, false);
    if (io.baseVid === 0) return { result: this.createInode(io, snapid, vid), vid };
    return { result: this.cloneInode(io, snapid, vid, io.baseVid, 'clone'), vid };
  }

  private vdiSnapshot(io: NewVdiIocb): { result: number; vid: number } {
    const { ret, info } = this.lookup({ name: io.name, tag: null, snapid: 0 });
    if (ret !== Result.SUCCESS) return { result: ret, vid: 0 };
    const vid = info.freeBit;
    this.notifyVdiAdd(info.vid, vid, io.nrCopies, io.copyPolicy, io.bss, false);
    if (io.baseVid === info.vid) return { result: this.cloneInode(io, info.snapid, vid, io.baseVid, 'snapshot'), vid };
    return { result: this.cloneInode(io, info.snapid, vid, io.baseVid, 'rebase', info.vid), vid };
  }

  /** `create_vdi()`. */
  private createInode(io: NewVdiIocb, snapid: number, vid: number): number {
    const head = newInodeHead(inodeFields(io, vid, snapid), io.storePolicy !== 0);
    const r = this.store.create(vidToVdiOid(vid), SD_INODE_SIZE, 0, head);
    return r === 'ok' ? Result.SUCCESS : Result.VDI_WRITE;
  }

  /**
   * `clone_vdi()`, `snapshot_vdi()` and `rebase_vdi()`: bump the base's
   * reference counts (and mark the snapshot) and write a new inode sharing
   * the base's index with the next generation.
   */
  private cloneInode(
    io: NewVdiIocb,
    snapid: number,
    vid: number,
    baseVid: number,
    kind: 'clone' | 'snapshot' | 'rebase',
    curVid = 0,
  ): number {
    const baseOid = vidToVdiOid(baseVid);
    const base = this.store.get(baseOid);
    if (!base) return Result.BASE_VDI_READ;
    const writeFail =
      kind === 'snapshot' ? Result.BASE_VDI_WRITE : kind === 'clone' ? Result.BASE_VDI_WRITE : Result.VDI_WRITE;
    if (kind === 'rebase') {
      const r = this.store.write(vidToVdiOid(curVid), OFF.snapCtime, u64le(io.time));
      if (r !== 'ok') return Result.VDI_WRITE;
    }
    if (kind === 'snapshot') {
      const r = this.store.write(baseOid, OFF.snapCtime, u64le(io.time));
      if (r !== 'ok') return Result.BASE_VDI_WRITE;
    }
    // base->gref[i].count++ for every mapped slot
    const mapped: number[] = [];
    base.forEachNonZeroU32(DATA_OFF, MAX_SLOTS, (i) => mapped.push(i));
    for (const i of mapped) {
      const off = GREF_OFF + 8 * i + 4;
      const r = this.store.write(baseOid, off, u32le((base.u32(off) + 1) >>> 0));
      if (r !== 'ok') return writeFail;
    }
    // alloc_inode() with the base's index
    const obj = new SparseObject(SD_INODE_SIZE);
    obj.write(0, newInodeHead(inodeFields(io, vid, snapid), false));
    copyRegion(base, obj, DATA_OFF, SD_INODE_DATA_INDEX_SIZE);
    if (io.storePolicy === 1) {
      // sd_inode_copy_vdis(): a depth-2 B-tree gets its own copies of the leaf nodes
      let counter = 0;
      for (const ind of hyperIndirects(obj)) {
        const leaf = this.store.get(ind.oid);
        const newOid = vidToBtreeOid(vid, counter++);
        const node = new SparseObject(SD_INODE_DATA_INDEX_SIZE);
        if (leaf) copyRegion(leaf, node, 0, SD_INODE_DATA_INDEX_SIZE);
        const r = this.store.put(newOid, node);
        if (r !== 'ok') return Result.VDI_WRITE;
        obj.write(ind.oidOff, u64le(newOid));
      }
      if (counter) obj.write(OFF.btreeCounter, u32le(counter));
    }
    for (const i of mapped) {
      const gen = base.u32(GREF_OFF + 8 * i);
      obj.write(GREF_OFF + 8 * i, u32le((gen + 1) >>> 0));
    }
    const r = this.store.put(vidToVdiOid(vid), obj);
    return r === 'ok' ? Result.SUCCESS : Result.VDI_WRITE;
  }

  /** `cluster_get_vdi_info()` (and the work half of LOCK_VDI). */
  getVdiInfo(body: Uint8Array, dataLength: number, snapid: number): Reply {
    const io = this.iocbFromBody(body, dataLength, snapid);
    if (!io) return { result: Result.INVALID_PARMS };
    const { ret, info } = this.lookup(io);
    if (ret !== Result.SUCCESS) return { result: ret };
    return { result: ret, vdiId: info.vid, copies: this.copyNumber(info.vid), blockSizeShift: this.bssOf(info.vid) };
  }

  /** `vdi_init_tag()`: 512 bytes carry a tag, 256 none, anything else is refused. */
  private iocbFromBody(body: Uint8Array, dataLength: number, snapid: number): VdiIocb | undefined {
    const pad = padTo(body, Math.max(dataLength, SD_MAX_VDI_LEN));
    if (dataLength === SD_MAX_VDI_LEN + SD_MAX_VDI_TAG_LEN) {
      return { name: pad.subarray(0, SD_MAX_VDI_LEN), tag: pad.subarray(SD_MAX_VDI_LEN, 512), snapid };
    }
    if (dataLength === SD_MAX_VDI_LEN) return { name: pad.subarray(0, SD_MAX_VDI_LEN), tag: null, snapid };
    return undefined;
  }

  lockVdi(body: Uint8Array, dataLength: number, snapid: number, type: number, sender: NodeId): Reply {
    const r = this.getVdiInfo(body, dataLength, snapid);
    if (r.result !== Result.SUCCESS || !(this.flags & ClusterFlag.USE_LOCK)) return r;
    if (!this.vdiLock(r.vdiId ?? 0, sender, type)) r.result = Result.VDI_LOCKED;
    return r;
  }

  releaseVdi(vid: number, type: number, sender: NodeId): Reply {
    if (this.flags & ClusterFlag.USE_LOCK) this.vdiUnlock(vid, sender, type);
    return { result: Result.SUCCESS };
  }

  /** `cluster_del_vdi()` → `vdi_delete()` → `delete_vdi_work()`, then `post_cluster_del_vdi()`. */
  delVdi(body: Uint8Array, dataLength: number, snapid: number): Reply {
    const io = this.iocbFromBody(body, dataLength, snapid);
    if (!io) return { result: Result.INVALID_PARMS };
    const { ret, info } = this.lookup(io);
    if (ret !== Result.SUCCESS) return { result: ret };
    this.deleteVdiWork(info.vid);
    bitmapSet(this.deleted, info.vid);
    const e = this.vdis.get(info.vid);
    if (e) e.deleted = true;
    return { result: Result.SUCCESS, vdiId: info.vid };
  }

  private deleteVdiWork(vid: number): void {
    const oid = vidToVdiOid(vid);
    const obj = this.store.get(oid);
    if (!obj) return;
    const h = readHead(obj);
    const nameEmpty = h.name[0] === 0;
    if (h.vdiSize === 0n && nameEmpty) return;
    if (h.storePolicy === 0) {
      const objSize = BigInt(2 ** (h.blockSizeShift & 63));
      const nrObjs = (h.vdiSize + objSize - 1n) / objSize;
      // data_vdi_id[] and, past it, whatever sd_inode_get_vid() would read of the struct
      const words = Number(nrObjs > BigInt((SD_INODE_SIZE - DATA_OFF) / 4) ? (SD_INODE_SIZE - DATA_OFF) / 4 : nrObjs);
      if (!obj.isZeroRange(DATA_OFF, words * 4)) return; // "vid: %x still has objects"
    } else {
      // hyper volume: sheep walks the B-tree and removes the objects of this VDI
      hyperWalk(
        obj,
        (o) => this.store.get(o),
        (idx, v) => {
          if (v !== 0 && v === h.vdiId) this.removeData(vidToDataOid(v, idx));
        },
      );
    }
    if (nameEmpty) return;
    this.store.write(oid, OFF.vdiSize, new Uint8Array(8));
    this.store.write(oid, OFF.name, new Uint8Array(SD_MAX_VDI_LEN));
    this.store.zero(oid, DATA_OFF, SD_INODE_SIZE - DATA_OFF);
  }

  /** `cluster_get_vdi_attr()` + `get_vdi_attr()`. */
  getVdiAttr(body: Uint8Array, dataLength: number, snapid: number, flags: number): Reply {
    const vattr = padTo(body, Math.max(dataLength, SD_ATTR_OBJ_SIZE), true);
    const name = vattr.subarray(0, 256);
    const tag = vattr.subarray(256, 512);
    const { ret, info } = this.lookup({ name, tag, snapid });
    if (ret !== Result.SUCCESS) return { result: ret };
    const vid = sdHashVdi(cbytes(name));
    const wr = (flags & 0x100) !== 0;
    const excl = (flags & 0x200) !== 0;
    const del = (flags & 0x400) !== 0;
    vattr.set(u64le(info.createTime), 512);
    let attrId = hashVdiAttr(vattr);
    const end = (attrId - 1) >>> 0;
    let result: number = Result.NO_OBJ;
    let tries = 0;
    while (attrId !== end) {
      if (++tries > 1 << 20) {
        result = Result.FULL_VDI;
        break;
      }
      const oid = vidToAttrOid(vid, attrId);
      let tmp: Uint8Array | undefined;
      if (excl || !wr) {
        tmp = this.store.read(oid, 0, SD_ATTR_OBJ_SIZE);
        result = tmp ? Result.SUCCESS : Result.NO_OBJ;
      }
      if (result === Result.NO_OBJ && wr) {
        const r = this.store.create(oid, SD_ATTR_OBJ_SIZE, 0, vattr.subarray(0, dataLength));
        result = r === 'ok' ? Result.SUCCESS : Result.EIO;
        break;
      }
      if (result !== Result.SUCCESS || !tmp) break;
      if (
        strcmpField(tmp.subarray(0, 256), name) === 0 &&
        strcmpField(tmp.subarray(256, 512), tag) === 0 &&
        u32(tmp, 520) === u32(vattr, 520) &&
        strcmpField(tmp.subarray(528, 784), vattr.subarray(528, 784)) === 0
      ) {
        if (excl) result = Result.VDI_EXIST;
        else if (del) result = this.store.write(oid, 0, new Uint8Array(1)) === 'ok' ? Result.SUCCESS : Result.EIO;
        else if (wr)
          result = this.store.write(oid, 0, vattr.subarray(0, SD_ATTR_OBJ_SIZE)) === 'ok' ? Result.SUCCESS : Result.EIO;
        else result = Result.SUCCESS;
        break;
      }
      attrId = (attrId + 1) >>> 0;
    }
    if (attrId === end) result = Result.FULL_VDI;
    return { result, vdiId: vid, attrId, copies: this.copyNumber(vid) };
  }

  readVdis(bitmap: Uint8Array, dataLength: number): Reply {
    if (dataLength !== VDI_BITMAP_SIZE) return { result: Result.INVALID_PARMS };
    return { result: Result.SUCCESS, body: bitmap.slice() };
  }

  // ------------------------------------------------------- gateway path

  /** `gateway_read_obj()` (the TGT refresh check is the caller's). */
  readObj(oid: bigint, offset: number, length: number): Reply {
    if (this.nullMode && isDataObj(oid)) return { result: Result.SUCCESS, body: new Uint8Array(length) };
    const data = this.store.read(oid, offset, length);
    if (!data) return { result: Result.NO_OBJ };
    return { result: Result.SUCCESS, body: data };
  }

  /** `gateway_write_obj()`: a write into an inode's data_vdi_id[] range drops the references the old entries held. */
  writeObj(oid: bigint, offset: number, data: Uint8Array, node: NodeId): number {
    if (this.readonlyOid(oid)) return Result.READONLY;
    if (this.nullMode && isDataObj(oid)) return Result.SUCCESS;
    const update = isVdiObj(oid) && offset >= DATA_OFF && offset + data.length <= DATA_OFF + 4 * MAX_SLOTS;
    let vids: number[] = [];
    let refs: { gen: number; count: number }[] = [];
    let start = 0;
    const nr = Math.floor(data.length / 4);
    if (update) {
      this.invalidateOthers(oidToVid(oid), node);
      const inode = this.store.get(oid);
      if (!inode) return Result.NO_OBJ;
      start = Math.floor((offset - DATA_OFF) / 4);
      vids = new Array<number>(nr);
      refs = new Array(nr);
      for (let i = 0; i < nr; i++) {
        vids[i] = inode.u32(DATA_OFF + 4 * (start + i));
        refs[i] = { gen: inode.u32(GREF_OFF + 8 * (start + i)), count: inode.u32(GREF_OFF + 8 * (start + i) + 4) };
      }
    }
    const r = this.store.write(oid, offset, data);
    if (r !== 'ok') return storeResult(r);
    if (update && nr > 0) {
      this.store.zero(oid, GREF_OFF + 8 * start, 8 * nr);
      for (let i = 0; i < nr; i++) {
        const old = vids[i] as number;
        if (old === 0 || old === u32(data, 4 * i)) continue;
        const ref = refs[i] as { gen: number; count: number };
        this.decObjectRefcnt(vidToDataOid(old, (i + start) >>> 0), ref.gen, ref.count);
      }
    }
    return Result.SUCCESS;
  }

  /** `gateway_create_and_write_obj()` incl. `gateway_handle_cow()`. */
  createAndWriteObj(oid: bigint, cowOid: bigint, offset: number, data: Uint8Array, cow: boolean): number {
    if (this.readonlyOid(oid)) return Result.READONLY;
    if (this.nullMode && isDataObj(oid)) return Result.SUCCESS;
    const size = this.objsize(oid);
    if (!cow) return storeResult(this.store.create(oid, size, offset, data));
    if (offset + data.length > size) return Result.INVALID_PARMS; // sheep would overrun its buffer
    const obj = new SparseObject(size);
    if (data.length !== size) {
      const src = this.store.get(cowOid);
      if (!src) return Result.NO_OBJ;
      copyRegion(src, obj, 0, size);
    }
    obj.write(offset, data);
    return storeResult(this.store.put(oid, obj));
  }

  removeObj(oid: bigint): number {
    if (this.nullMode && isDataObj(oid)) return Result.SUCCESS;
    return this.store.remove(oid) ? Result.SUCCESS : Result.NO_OBJ;
  }

  private removeData(oid: bigint): void {
    this.store.remove(oid);
  }

  /** `local_discard_obj()`. */
  discardObj(oid: bigint, node: NodeId): number {
    const vid = oidToVid(oid);
    const idx = oidToIdx(oid);
    const inodeOid = vidToVdiOid(vid);
    const inode = this.store.get(inodeOid);
    if (!inode) return Result.NO_OBJ;
    const h = readHead(inode);
    let ret: number = Result.SUCCESS;
    if (h.storePolicy === 0) {
      if (idx >= MAX_SLOTS) return Result.SUCCESS;
      if (inode.u32(DATA_OFF + 4 * idx) === 0) return Result.SUCCESS;
      ret = this.writeObj(inodeOid, DATA_OFF + 4 * idx, new Uint8Array(4), node);
    } else {
      const slot = hyperFind(inode, idx, (o) => this.store.get(o));
      if (!slot || slot.vid === 0) return Result.SUCCESS;
      const holder = slot.holder === 'inode' ? inodeOid : slot.holder;
      ret = storeResult(this.store.write(holder, slot.vidOff, new Uint8Array(4)));
    }
    if (ret !== Result.SUCCESS) return ret;
    this.removeData(oid);
    return Result.SUCCESS;
  }

  /** `sd_dec_object_refcnt()`. */
  decObjectRefcnt(dataOid: bigint, generation: number, count: number): void {
    if (this.nullMode) return;
    if (generation === 0 && count === 0) {
      this.removeData(dataOid);
      return;
    }
    this.decrefLedger(LEDGER_BIT | dataOid, generation, count);
  }

  /** `peer_decref_object()`: generational reference counting in the ledger object. */
  decrefLedger(ledgerOid: bigint, generation: number, count: number): number {
    const words = SD_LEDGER_OBJ_SIZE / 4;
    if (generation + 1 >= words) return Result.INVALID_PARMS; // sheep would write past the ledger
    const dataOid = ledgerOid & ~LEDGER_BIT;
    const existing = this.store.get(ledgerOid);
    const ledger = new SparseObject(SD_LEDGER_OBJ_SIZE);
    if (existing) copyRegion(existing, ledger, 0, SD_LEDGER_OBJ_SIZE);
    else ledger.write(0, u32le(1));
    ledger.write(4 * generation, u32le((ledger.u32(4 * generation) - 1) >>> 0));
    ledger.write(4 * (generation + 1), u32le((ledger.u32(4 * (generation + 1)) + count) >>> 0));
    if (ledger.chunks.size === 0) {
      if (existing) this.store.remove(ledgerOid);
      this.removeData(dataOid);
      return Result.SUCCESS;
    }
    return storeResult(this.store.put(ledgerOid, ledger));
  }

  /** Bytes node `i` stores (its objects and stale copies). */
  usedOn(i: number): number {
    return this.store.nodes[i]?.bytes ?? 0;
  }
}

interface NewVdiIocb {
  name: Uint8Array;
  size: bigint;
  baseVid: number;
  copyPolicy: number;
  storePolicy: number;
  nrCopies: number;
  bss: number;
  time: bigint;
}

/** `hash_vdi_attr()`: FNV-1a over name[256], tag[256], snap_id and key[256], low 32 bits. */
export function hashVdiAttr(vattr: Uint8Array): number {
  let h = fnv1a64(vattr.subarray(0, 512));
  h = fnv1a64(vattr.subarray(520, 524), h);
  h = fnv1a64(vattr.subarray(528, 784), h);
  return Number(h & 0xffffffffn);
}

/** First clear bit at or after `start`, SD_NR_VDIS if none (find_next_zero_bit). */
export function nextZero(b: Uint8Array, start: number): number {
  let i = start;
  while (i < SD_NR_VDIS) {
    if ((i & 7) === 0 && b[i >>> 3] === 0xff) {
      i += 8;
      continue;
    }
    if (!bitmapTest(b, i)) return i;
    i++;
  }
  return SD_NR_VDIS;
}

/** Copy the allocated bytes of src[off, off + len) into dst (same offsets). */
export function copyRegion(src: SparseObject, dst: SparseObject, off: number, len: number): void {
  const end = off + len;
  for (const ci of src.sortedChunks()) {
    const cStart = ci * CHUNK_SIZE;
    const lo = Math.max(cStart, off);
    const hi = Math.min(cStart + CHUNK_SIZE, end);
    if (lo >= hi) continue;
    const c = src.chunks.get(ci) as Uint8Array;
    dst.write(lo, c.subarray(lo - cStart, hi - cStart));
  }
}

function padTo(b: Uint8Array, n: number, copy = false): Uint8Array {
  if (b.length >= n && !copy) return b;
  const out = new Uint8Array(Math.max(n, b.length));
  out.set(b);
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** The header fields of a new inode made by NEW_VDI. */
function inodeFields(io: NewVdiIocb, vid: number, snapid: number): NewInode {
  return {
    name: io.name,
    vdiId: vid,
    createTime: io.time,
    vdiSize: io.size,
    copyPolicy: io.copyPolicy,
    storePolicy: io.storePolicy,
    nrCopies: io.nrCopies,
    blockSizeShift: io.bss,
    snapId: snapid,
    parentVdiId: io.baseVid,
  };
}
