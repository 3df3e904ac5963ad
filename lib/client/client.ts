/**
 * SheepdogClient: typed cluster and VDI operations over a pool of sheep
 * gateways. Sequences follow dog/libsheepdog (docs/api.md lists them), minus
 * their bugs: every result is checked, deletes zero the index before DEL_VDI,
 * hyper volumes are deleted without breaking their B-tree.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import {
  CLUSTER_INFO_SIZE,
  ClusterFlag,
  ClusterStatus,
  Flag,
  LockState,
  LockType,
  Op,
  Result,
  SD_ATTR_OBJ_SIZE,
  SD_INODE_DATA_INDEX,
  SD_INODE_HEADER_SIZE,
  SD_INODE_SIZE,
  SD_MAX_COPIES,
  SD_MAX_BLOCK_SIZE_SHIFT,
  SD_MAX_NODES,
  SD_MIN_BLOCK_SIZE_SHIFT,
  SD_NODE_SIZE,
  SD_NR_VDIS,
  StorePolicy,
  VDI_BITMAP_SIZE,
  VDI_STATE_SIZE,
} from '../../protocol/constants.js';
import {
  clusterRequest,
  objRequest,
  plainRequest,
  vdiRequest,
  type Request,
  type VdiResponse,
} from '../../protocol/header.js';
import { oidHex, vidToAttrOid, vidToDataOid, vidToVdiOid } from '../../protocol/oid.js';
import type { VnodeRing } from '../../protocol/placement.js';
// The record files themselves, not the records barrel: a module loads only the codecs it uses.
import { decodeVdiAttr, encodeVdiAttr } from '../../protocol/records/attr.js';
import { decodeClusterInfo, decodeEpochLogs, epochLogStride } from '../../protocol/records/cluster.js';
import {
  INODE_OFF,
  type InodeHeader,
  dataVdiIdOffset,
  decodeInodeHeader,
  objectCount,
} from '../../protocol/records/inode.js';
import { encodeVdiNameBody } from '../../protocol/records/name-body.js';
import { type SdNode, decodeNodeList } from '../../protocol/records/node.js';
import { type VdiState, decodeVdiStates } from '../../protocol/records/vdi-state.js';
import {
  InvalidArgumentError,
  NoObjError,
  NoTagError,
  NoVdiError,
  OutcomeUnknownError,
  SheepdogError,
  SheepdogResponseError,
  VdiExistsError,
  VdiInUseError,
  responseError,
} from '../errors.js';
import {
  SD_MAX_VDI_SIZE,
  type SnapshotRef,
  checkAttrKey,
  checkBytes,
  checkNewTag,
  checkNewVdiName,
  checkSnapshotRef,
  checkVdiName,
  checkVdiSize,
  parseRedundancy,
  redundancyString,
} from './names.js';
import { readObject, writeObject, writeObjectResult } from './objects.js';
import { type PoolOptions, SheepdogPool } from '../transport/pool.js';
import { formatAddress, parseAddress } from '../util/address.js';
import { runBounded } from '../util/bounded.js';
import type { Reply, RequestOptions, Transport } from '../transport/types.js';
import type { FlatIndex, IndexIO, VdiIndex } from '../vdi/vdi-index.js';
import type { Vdi } from '../vdi/vdi.js';
import { type IoOptions, abortedError, callSignal, untilAborted } from '../util/signal.js';
import type { VdiHost, VdiCore } from '../vdi/core.js';
import type { BackupHost, BackupOptions, BackupStream, RestoreOptions, RestoreResult, VdiDiff } from './backup.js';

// Loaded when first used, so that a one-shot program (`sheepdog vdi list`)
// does not load the data path, placement or backup modules it never calls.
const vdiModules = () => Promise.all([import('../vdi/vdi.js'), import('../vdi/core.js')]);
const placement = () => import('../../protocol/placement.js');
const backup = () => import('./backup.js');
// The inode index classes (flat and B-tree): `vdi list` needs them only for hyper volumes.
const vdiIndex = () => import('../vdi/vdi-index.js');

export interface ClientOptions extends PoolOptions {
  /** Use this transport instead of creating a pool (tests, custom routing). */
  transport?: Transport;
  /** Object requests in flight per VDI call (default 16). */
  maxConcurrency?: number;
  /** Re-issues of a write that keeps meeting snapshots (default 16). */
  readonlyRetries?: number;
  /** Index slots zeroed per WRITE_OBJ when deleting (default 128, as dog). */
  deleteBatch?: number;
}

export interface CreateVdiOptions {
  /** Copies (1..31) or erasure code 'd:p' (e.g. '4:2'). Default: the cluster's. */
  copies?: number | string;
  /** Object size = 2^blockSizeShift (20..31). Default: the cluster's (22 = 4 MiB). */
  blockSizeShift?: number;
  /** Create every object now (dog -P). */
  preallocate?: boolean;
  /** Force the hyper-volume layout (B-tree index). Chosen automatically when the size needs it. */
  hyper?: boolean;
}

export interface DeleteVdiOptions {
  /** Delete this snapshot (tag or id) instead of the working VDI. */
  snapshot?: SnapshotRef;
  /** Delete even if a handle of this client has it open or its lock is held. */
  force?: boolean;
}

/** Per-call options of every SheepdogClient method: `signal` and `timeout` (ms) for the whole call. */
export type CallOptions = IoOptions;

/** The signal of the client call in progress (see SheepdogClient.scoped). */
const callScope = new AsyncLocalStorage<AbortSignal>();

/** DEL_VDI rounds before deleteVdi gives up on a VDI a writer keeps allocating in. */
const DELETE_ROUNDS = 8;
/** NEW_VDI sends of one create, snapshot or clone when outcomes keep being unknown (each reconciled by a lookup). */
const NEW_VDI_ROUNDS = 4;
/** Options of the client's object writes (see the constructor). */
const UNTIL_REPLY: RequestOptions = { untilReply: true };

export interface OpenVdiOptions {
  /** Open this snapshot (tag or id), read-only. */
  snapshot?: SnapshotRef;
  /** Take the VDI lock (LOCK_VDI) for this handle; released on close. */
  lock?: boolean;
}

export interface VdiInfo {
  name: string;
  vdiId: number;
  /** Snapshot id (dog's "Id"): 0 for a working VDI... as sheep numbers it. */
  snapId: number;
  snapshot: boolean;
  /** True for a VDI cloned from a snapshot (dog's 'c'). */
  clone: boolean;
  tag: string;
  size: number;
  /** Bytes in objects this VDI owns. */
  used: number;
  /** Bytes in objects it shares with its parent chain. */
  shared: number;
  copies: number;
  copyPolicy: number;
  /** "3" or "4:2", as `dog vdi list -r` prints it. */
  redundancy: string;
  storePolicy: number;
  blockSizeShift: number;
  parentVdiId: number;
  createdAt: Date;
  snapshotAt: Date | null;
}

export interface NodeInfo {
  /** `host:port` */
  address: string;
  host: string;
  port: number;
  vnodes: number;
  zone: number;
}

export interface ClusterInfoResult {
  status: 'running' | 'waiting-for-format' | 'waiting-for-join' | 'shutdown' | 'killed' | 'unknown';
  formatted: boolean;
  createdAt: Date | null;
  epoch: number;
  copies: number;
  copyPolicy: number;
  redundancy: string;
  blockSizeShift: number;
  locking: boolean;
  flags: number;
  store: string;
  nodes: NodeInfo[];
}

export interface NodeCapacity {
  address: string;
  size: number;
  free: number;
}

export interface LockInfo {
  name: string;
  vdiId: number;
  tag: string;
  snapId: number;
  state: 'locked' | 'shared';
  owners: string[];
}

export interface SnapshotResult {
  name: string;
  tag: string;
  /** The snapshot keeps the VDI's old id... */
  snapshotVdiId: number;
  /** ...and the working VDI moves to a new one. */
  workingVdiId: number;
}

/** `formatCluster` (dog cluster format). */
export interface FormatClusterOptions {
  /** Default redundancy: copies (1..31) or erasure code 'd:p'. Default 3. */
  copies?: number | string;
  /** Default object size 2^blockSizeShift (20..31). Default 22 (4 MiB). */
  blockSizeShift?: number;
  /** VDI locking (dog -l). */
  lock?: boolean;
  /** Refuse writes while fewer nodes than copies are up (dog -t/--strict). */
  strict?: boolean;
  /** Backend store driver (dog -b), default 'plain'. */
  store?: string;
  /** Fixed vnodes instead of sheep's automatic count (dog -V). */
  fixedVnodes?: boolean;
}

/** One epoch of the cluster's history (STAT_CLUSTER), newest first in `clusterEpochs`. */
export interface EpochInfo {
  epoch: number;
  /** When the epoch began. */
  time: Date;
  nodes: NodeInfo[];
}

/** A node's recovery state (STAT_RECOVERY), as `dog node recovery` shows it. */
export interface NodeRecovery extends NodeInfo {
  /** Position in the node list (dog's id). */
  index: number;
  inRecovery: boolean;
  /** Objects of this node's recovery list checked so far, and the list's size. */
  finished: number;
  total: number;
}

/** Which nodes hold an object, and which should (dog vdi object location). */
export interface ObjectLocation {
  oid: bigint;
  /** Copies the object has by its VDI's policy (d + p for erasure code). */
  copies: number;
  /** Every node of the node list, in its order, and whether it has the object (EXIST). */
  nodes: { address: string; has: boolean }[];
  /** Where sheep's placement puts it, first copy first. */
  expected: string[];
}

/** The allocated objects of a VDI (dog vdi object map): index → owning VDI id. */
export interface VdiObjects {
  name: string;
  vdiId: number;
  copies: number;
  copyPolicy: number;
  blockSizeShift: number;
  /** Objects the index can address. */
  maxObjects: number;
  /** [index, owning vid] for every allocated index, in index order. */
  objects: [number, number][];
}

/** One inconsistency `checkVdi` found in an object's replicas. */
export interface ReplicaProblem {
  oid: bigint;
  /** `missing`: a replica is absent; `mismatch`: it differs from the majority; `no-majority`: replicas differ and none wins; `lost`: no replica at all. */
  kind: 'missing' | 'mismatch' | 'no-majority' | 'lost';
  /** The replica's node (missing, mismatch); every expected node for no-majority / lost. */
  nodes: string[];
  /** SHA-1 of each replica found, by node (hex). */
  hashes: Record<string, string>;
  /** Repaired (with `repair`). */
  fixed: boolean;
}

export interface CheckVdiOptions {
  snapshot?: SnapshotRef;
  /** Only check that every replica exists (dog -e); no hashes compared. */
  existOnly?: boolean;
  /** Rewrite missing and differing replicas from the majority (never without one). */
  repair?: boolean;
  /** Called after each object (progress). */
  onObject?: (done: number, total: number) => void;
}

export interface CheckVdiResult {
  name: string;
  vdiId: number;
  /** Objects checked: every allocated data object of the index (inherited ones too, as dog) and the inode. */
  objects: number;
  problems: ReplicaProblem[];
}

const NAME_TAG_BODY = 512;
/** listVdis: index bytes read with each inode header (1,024 objects: 4 GiB at 4 MiB objects). */
const LIST_INDEX_BYTES = 4096;
/** listVdis: inode reads in flight (they are small; sheep answers them in parallel). */
const LIST_CONCURRENCY = 64;

/** A block of zero index slots (listVdis compares 1 KiB of the index at a time with it). */
const ZERO_SLOTS = new Uint8Array(1024);

/**
 * Slots of a flat index (`n` little-endian u32 at the start of `idx`) owned by
 * `vid` (used) and by another VDI (shared). All-zero 1 KiB blocks, most of a
 * thin VDI's index, are skipped with one native compare each.
 */
function tallyIndex(idx: Uint8Array, n: number, vid: number): { used: number; shared: number } {
  let used = 0;
  let shared = 0;
  const per = ZERO_SLOTS.length >>> 2;
  for (let k = 0; k < n; k += per) {
    const m = Math.min(per, n - k);
    const start = 4 * k;
    if (Buffer.compare(idx.subarray(start, start + 4 * m), ZERO_SLOTS.subarray(0, 4 * m)) === 0) continue;
    for (let o = start, end = start + 4 * m; o < end; o += 4) {
      const v =
        ((idx[o] as number) |
          ((idx[o + 1] as number) << 8) |
          ((idx[o + 2] as number) << 16) |
          ((idx[o + 3] as number) << 24)) >>>
        0;
      if (v === vid) used++;
      else if (v !== 0) shared++;
    }
  }
  return { used, shared };
}

/**
 * The vids set in the READ_VDIS bitmap `inuse` and not in the READ_DEL_VDIS
 * bitmap `deleted` (which may be shorter, or empty), ascending, without vid 0.
 * @internal
 */
export function liveVids(inuse: Uint8Array, deleted: Uint8Array): number[] {
  const nbytes = Math.min(inuse.length, SD_NR_VDIS >>> 3);
  const out: number[] = [];
  const bits = (byte: number): void => {
    let v = inuse[byte] as number;
    if (byte < deleted.length) v &= ~(deleted[byte] as number);
    while (v !== 0) {
      const low = v & -v;
      const vid = byte * 8 + 31 - Math.clz32(low);
      if (vid !== 0) out.push(vid);
      v ^= low;
    }
  };
  // Native code finds the set bits, where a loop over 512 Ki words would run
  // cold (a one-shot `vdi list`): blocks of all zeroes are skipped by memcmp,
  // and the non-zero bytes of the others are found by the regexp engine over
  // the block as a latin1 string.
  const map = Buffer.from(inuse.buffer, inuse.byteOffset, nbytes);
  const nonZero = /[^\0]/g;
  for (let off = 0; off < nbytes; off += SCAN_BLOCK) {
    const end = Math.min(off + SCAN_BLOCK, nbytes);
    if (map.compare(SCAN_ZEROES, 0, end - off, off, end) === 0) continue;
    const text = map.toString('latin1', off, end);
    for (let m = nonZero.exec(text); m !== null; m = nonZero.exec(text)) bits(off + m.index);
  }
  return out;
}

/** liveVids' scan: the bitmap in blocks of this many bytes, each first compared with zeroes. */
const SCAN_BLOCK = 4096;
const SCAN_ZEROES = Buffer.alloc(SCAN_BLOCK);

function tsToDate(t: bigint): Date {
  const sec = Number(t >> 32n);
  const nsec = Number(t & 0xffffffffn);
  return new Date(sec * 1000 + Math.floor(nsec / 1e6));
}

function addrOf(n: SdNode): NodeInfo {
  const host = n.nid.addr;
  const address = formatAddress(host, n.nid.port);
  return { address, host, port: n.nid.port, vnodes: n.nrVnodes, zone: n.zone };
}

export class SheepdogClient {
  readonly transport: Transport;
  private readonly maxConcurrency: number;
  private readonly readonlyRetries: number;
  /** The transport with the call scope: requests of a client call carry its signal. */
  private readonly io: Transport;
  /** Shared state of the working VDIs open in this client, by name. */
  private readonly states = new Map<string, VdiCore>();
  /** The last snapshot queued per VDI name (snapshots of one VDI run one at a time). */
  private readonly snapshotting = new Map<string, Promise<void>>();
  private readonly deleteBatch: number;
  private readonly indexIO: IndexIO;
  private readonly ownsTransport: boolean;
  /** Options of the pool this client made, for connections to single nodes (nodeReq). */
  private readonly poolOptions: PoolOptions;
  /** Connections to nodes that are not gateways of the pool (per-node ops), by `host:port`. */
  private readonly nodePools = new Map<string, SheepdogPool>();

  constructor(opts: ClientOptions = {}) {
    this.ownsTransport = opts.transport === undefined;
    this.poolOptions = opts;
    const raw = opts.transport ?? new SheepdogPool(opts);
    this.transport = raw;
    // Every request of a client call carries that call's signal (see scoped()).
    this.io = {
      request: (req, body, o) => {
        const signal = callScope.getStore();
        return raw.request(req, body, signal === undefined || o?.signal !== undefined ? o : { ...o, signal });
      },
      get nodes() {
        return raw.nodes;
      },
      close: () => raw.close(),
      destroy: (e) => raw.destroy(e),
    };
    this.maxConcurrency = opts.maxConcurrency ?? 16;
    this.readonlyRetries = opts.readonlyRetries ?? 16;
    this.deleteBatch = opts.deleteBatch ?? 128;
    checkBytes(this.maxConcurrency, 'maxConcurrency', { min: 1 });
    checkBytes(this.deleteBatch, 'deleteBatch', { min: 1 });
    const t = this.io;
    // Index writes are ordered with the data writes (under the objects'
    // gates, or behind their pending confirmations), so they are sent the
    // same way: settled only by their reply or the loss of their connection
    // (a deadline on the wire destroys it and they are replayed), not left
    // behind as orphans still on the wire when the call gives up. The
    // client's other object writes (tags, size, slots of a delete,
    // preallocation) are sent so too: a reply lost on a live connection
    // costs a replay, not the call.
    this.indexIO = {
      read: (oid, offset, length) => readObject(t, oid, offset, length),
      write: (oid, offset, data) => writeObject(t, oid, offset, data, { opts: UNTIL_REPLY }),
      create: (oid, data) => writeObject(t, oid, 0, data, { create: true, opts: UNTIL_REPLY }),
    };
  }

  // ------------------------------------------------------------ internals

  /**
   * Run a public call under its `signal` / `timeout`: every request it sends
   * carries the combined signal; the call rejects with the SDK's TimeoutError
   * or AbortError.
   */
  private scoped<T>(o: CallOptions | undefined, what: string, fn: () => Promise<T>): Promise<T> {
    const cs = callSignal(o, what);
    const signal = cs.signal;
    if (signal === undefined) return fn();
    if (signal.aborted) {
      cs.done();
      return Promise.reject(abortedError(signal, what));
    }
    return callScope.run(signal, fn).then(
      (v) => {
        cs.done();
        return v;
      },
      (e: unknown) => {
        cs.done();
        throw signal.aborted && !(e instanceof SheepdogError && e.code === (signal.reason as SheepdogError)?.code)
          ? abortedError(signal, what)
          : e;
      },
    );
  }

  private async req(req: Request, body?: Uint8Array, opts?: RequestOptions): Promise<Reply> {
    return this.io.request(req, body, opts);
  }

  /** Send and require SUCCESS (or one of `ok`). */
  private async call(
    req: Request,
    context: string,
    body?: Uint8Array,
    ok: readonly number[] = [],
    opts?: RequestOptions,
  ): Promise<Reply> {
    const r = await this.req(req, body, opts);
    if (r.header.result !== Result.SUCCESS && !ok.includes(r.header.result)) {
      throw responseError(r.header.result, context, r.node);
    }
    return r;
  }

  /** GET_VDI_INFO (or LOCK_VDI): name (+ tag or snapshot id) → vid. */
  private async lookup(name: string, snapshot?: SnapshotRef, lock = false): Promise<number> {
    const tag = typeof snapshot === 'string' ? snapshot : '';
    const snapid = typeof snapshot === 'number' ? snapshot : 0;
    const op = lock ? Op.LOCK_VDI : Op.GET_VDI_INFO;
    const r = await this.call(
      vdiRequest(op, { flags: Flag.CMD_WRITE, dataLength: NAME_TAG_BODY, snapid, type: LockType.NORMAL }),
      lock
        ? `lock VDI ${name}`
        : snapshot === undefined
          ? `VDI ${name}`
          : `snapshot ${String(snapshot)} of VDI ${name}`,
      encodeVdiNameBody(name, tag),
      [],
      { idempotent: !lock },
    );
    return (r.header as VdiResponse).vdiId;
  }

  private async readHeader(vid: number): Promise<InodeHeader> {
    return decodeInodeHeader(await readObject(this.io, vidToVdiOid(vid), 0, SD_INODE_HEADER_SIZE));
  }

  private async loadIndex(h: InodeHeader): Promise<VdiIndex> {
    const oid = vidToVdiOid(h.vdiId);
    const { FlatIndex, HyperIndex } = await vdiIndex();
    if (h.storePolicy === StorePolicy.HYPER) return HyperIndex.load(this.indexIO, oid);
    return FlatIndex.load(this.indexIO, oid, Math.min(objectCount(h.vdiSize, h.blockSizeShift), SD_INODE_DATA_INDEX));
  }

  private async loadInode(vid: number): Promise<{ header: InodeHeader; index: VdiIndex }> {
    const header = await this.readHeader(vid);
    return { header, index: await this.loadIndex(header) };
  }

  private host(): VdiHost {
    return {
      transport: this.transport,
      indexIO: this.indexIO,
      lookupWorking: (name) => this.lookup(name),
      loadInode: (vid) => this.loadInode(vid),
      releaseLock: (vid) => this.release(vid, LockType.NORMAL),
      forget: (st) => {
        if (this.states.get(st.name) === st) this.states.delete(st.name);
      },
      exclusiveOfSnapshots: (name, fn) => this.serialSnapshots(name, fn),
      maxConcurrency: this.maxConcurrency,
      readonlyRetries: this.readonlyRetries,
      transientRetries: this.readonlyRetries,
    };
  }

  private async release(vid: number, type: number): Promise<void> {
    await this.call(
      vdiRequest(Op.RELEASE_VDI, { baseVdiId: vid, type }),
      `release lock of VDI ${vid.toString(16)}`,
      undefined,
      [Result.VDI_NOT_LOCKED],
    );
  }

  private info(h: InodeHeader, index?: VdiIndex): VdiInfo {
    let used = 0;
    let shared = 0;
    const os = 2 ** h.blockSizeShift;
    if (index) {
      for (const [, v] of index.entries()) {
        if (v === h.vdiId) used += os;
        else shared += os;
      }
    }
    return this.infoOf(h, used, shared);
  }

  /** VdiInfo of an inode header whose used and shared bytes are known. */
  private infoOf(h: InodeHeader, used: number, shared: number): VdiInfo {
    const snapshot = h.snapCtime !== 0n;
    return {
      name: h.name,
      vdiId: h.vdiId,
      snapId: h.snapId,
      snapshot,
      clone: !snapshot && h.snapId === 1 && h.parentVdiId !== 0,
      tag: h.tag,
      size: Number(h.vdiSize),
      used,
      shared,
      copies: h.nrCopies,
      copyPolicy: h.copyPolicy,
      redundancy: redundancyString(h.nrCopies, h.copyPolicy),
      storePolicy: h.storePolicy,
      blockSizeShift: h.blockSizeShift,
      parentVdiId: h.parentVdiId,
      createdAt: tsToDate(h.createTime),
      snapshotAt: snapshot ? tsToDate(h.snapCtime) : null,
    };
  }

  private async clusterDefaults(): Promise<{ copies: number; copyPolicy: number; blockSizeShift: number }> {
    const r = await this.call(plainRequest(Op.GET_CLUSTER_DEFAULT), 'cluster defaults');
    const h = r.header;
    if (h.kind !== 'cluster_default') throw new SheepdogError('unexpected reply to GET_CLUSTER_DEFAULT');
    return { copies: h.nrCopies, copyPolicy: h.copyPolicy, blockSizeShift: h.blockSizeShift || 22 };
  }

  /** NEW_VDI: not repeatable; an unknown outcome is reconciled by a lookup. */
  private async newVdi(name: string, fields: Parameters<typeof vdiRequest>[1], context: string): Promise<number> {
    const req = vdiRequest(Op.NEW_VDI, { ...fields, flags: Flag.CMD_WRITE, dataLength: 256 });
    const base = fields?.baseVdiId ?? 0;
    const working = async (): Promise<number | undefined> => {
      try {
        return await this.lookup(name);
      } catch (e2) {
        if (e2 instanceof NoVdiError) return undefined;
        throw e2;
      }
    };
    // A plain create: whether the name existed before we asked, so that an
    // unknown outcome is not reconciled by adopting someone else's VDI.
    const before = base === 0 ? await working() : undefined;
    for (let round = 0; ; round++) {
      try {
        const r = await this.call(req, context, encodeVdiNameBody(name), [], { idempotent: false });
        return (r.header as VdiResponse).vdiId;
      } catch (e) {
        if (!(e instanceof OutcomeUnknownError) || round >= NEW_VDI_ROUNDS - 1) throw e;
        // Did it happen? A working VDI of that name that is new (not the one
        // there before), whose parent is the base we asked for and whose
        // geometry is what we asked for, means yes; none (or, for a snapshot,
        // the base itself still working) means no, and it is safe to send
        // again. Residual: another client creating the same name with the same
        // geometry in the same instant is indistinguishable from us.
        const found = await working();
        if (found !== undefined && found !== base && found !== before) {
          const h = await this.readHeader(found);
          const same =
            h.parentVdiId === base &&
            (fields?.vdiSize === undefined || h.vdiSize === BigInt(fields.vdiSize)) &&
            (fields?.blockSizeShift === undefined ||
              fields.blockSizeShift === 0 ||
              h.blockSizeShift === fields.blockSizeShift);
          if (same) return found;
          throw e;
        }
        if (found !== undefined && found === before && base === 0) throw e;
        // It did not happen: send it again (and reconcile again if that
        // outcome is unknown too).
      }
    }
  }

  // ---------------------------------------------------------- cluster ops

  /** Cluster status, format parameters and members (CLUSTER_INFO + STAT_CLUSTER status). */
  async clusterInfo(opts: CallOptions = {}): Promise<ClusterInfoResult> {
    return this.scoped(opts, 'clusterInfo', async () => {
      const r = await this.req(plainRequest(Op.CLUSTER_INFO, { dataLength: CLUSTER_INFO_SIZE }));
      if (r.header.result !== Result.SUCCESS) throw responseError(r.header.result, 'cluster info', r.node);
      const ci = decodeClusterInfo(r.body);
      const st = await this.req(plainRequest(Op.STAT_CLUSTER, { dataLength: 48 }), undefined);
      const byResult: Record<number, ClusterInfoResult['status']> = {
        [Result.SUCCESS]: 'running',
        [Result.WAIT_FOR_FORMAT]: 'waiting-for-format',
        [Result.WAIT_FOR_JOIN]: 'waiting-for-join',
        [Result.SHUTDOWN]: 'shutdown',
        [Result.KILLED]: 'killed',
      };
      let status = byResult[st.header.result] ?? 'unknown';
      if (status === 'unknown') {
        status =
          ci.ctime === 0n
            ? 'waiting-for-format'
            : ci.status === ClusterStatus.OK
              ? 'running'
              : ci.status === ClusterStatus.SHUTDOWN
                ? 'shutdown'
                : 'unknown';
      }
      return {
        status,
        formatted: ci.ctime !== 0n,
        createdAt: ci.ctime === 0n ? null : new Date(Number(ci.ctime >> 32n) * 1000),
        epoch: ci.epoch,
        copies: ci.nrCopies,
        copyPolicy: ci.copyPolicy,
        redundancy: redundancyString(ci.nrCopies, ci.copyPolicy),
        blockSizeShift: ci.blockSizeShift,
        locking: (ci.flags & ClusterFlag.USE_LOCK) !== 0,
        flags: ci.flags,
        store: ci.defaultStore,
        nodes: ci.nodes.map(addrOf),
      };
    });
  }

  /** The cluster's nodes (GET_NODE_LIST). */
  async listNodes(opts: CallOptions = {}): Promise<NodeInfo[]> {
    return this.scoped(opts, 'listNodes', async () => {
      const r = await this.call(
        plainRequest(Op.GET_NODE_LIST, { dataLength: SD_MAX_NODES * SD_NODE_SIZE }),
        'node list',
      );
      const n = r.header.kind === 'node' ? r.header.nrNodes : Math.floor(r.body.length / SD_NODE_SIZE);
      return decodeNodeList(r.body, Math.min(n, Math.floor(r.body.length / SD_NODE_SIZE))).map(addrOf);
    });
  }

  /** Store size and free bytes of every node (STAT_SHEEP sent to each). */
  async nodeCapacity(opts: CallOptions = {}): Promise<NodeCapacity[]> {
    return this.scoped(opts, 'nodeCapacity', async () => {
      const nodes = await this.listNodes();
      return Promise.all(
        nodes.map(async (n) => {
          const r = await this.nodeCall(n.address, plainRequest(Op.STAT_SHEEP), `stat of node ${n.address}`);
          const h = r.header;
          return h.kind === 'node'
            ? { address: n.address, size: Number(h.storeSize), free: Number(h.storeFree) }
            : { address: n.address, size: 0, free: 0 };
        }),
      );
    });
  }

  // ------------------------------------------- administration (dog-style)

  /**
   * Send a request to one node of the cluster, by `host:port`: through the
   * pool when it is one of its gateways, else over a connection of its own
   * (kept until close()), so that per-node ops reach every node of the node
   * list even when only one gateway was configured.
   */
  private async nodeReq(address: string, req: Request, body?: Uint8Array, opts: RequestOptions = {}): Promise<Reply> {
    const key = parseAddress(address).key;
    const known = this.transport.nodes.map((n) => parseAddress(n).key);
    if (!this.ownsTransport || known.includes(key)) return this.req(req, body, { ...opts, node: key });
    let p = this.nodePools.get(key);
    if (p === undefined) {
      p = new SheepdogPool({ ...this.poolOptions, nodes: [key], discover: false });
      this.nodePools.set(key, p);
    }
    const signal = callScope.getStore();
    return p.request(req, body, signal === undefined || opts.signal !== undefined ? opts : { ...opts, signal });
  }

  /** `nodeReq` requiring SUCCESS (or one of `ok`). */
  private async nodeCall(
    address: string,
    req: Request,
    context: string,
    body?: Uint8Array,
    ok: readonly number[] = [],
  ): Promise<Reply> {
    const r = await this.nodeReq(address, req, body);
    if (r.header.result !== Result.SUCCESS && !ok.includes(r.header.result)) {
      throw responseError(r.header.result, context, r.node ?? address);
    }
    return r;
  }

  /**
   * Format the cluster (MAKE_FS, dog cluster format): every VDI of a
   * formatted cluster is gone afterwards. The ctime is now.
   */
  async formatCluster(opts: FormatClusterOptions & CallOptions = {}): Promise<void> {
    return this.scoped(opts, 'formatCluster', async () => {
      const red = opts.copies === undefined ? { copies: 0, copyPolicy: 0 } : parseRedundancy(opts.copies);
      const bss = opts.blockSizeShift ?? 22;
      if (!Number.isInteger(bss) || bss < SD_MIN_BLOCK_SIZE_SHIFT || bss > SD_MAX_BLOCK_SIZE_SHIFT) {
        throw new InvalidArgumentError(
          `blockSizeShift must be ${SD_MIN_BLOCK_SIZE_SHIFT}..${SD_MAX_BLOCK_SIZE_SHIFT}, got ${bss}`,
        );
      }
      const store = opts.store ?? 'plain';
      if (!/^[a-z0-9_]{1,15}$/.test(store))
        throw new InvalidArgumentError(`invalid store name ${JSON.stringify(store)}`);
      const flags =
        (opts.strict ? ClusterFlag.STRICT : 0) |
        (opts.lock ? ClusterFlag.USE_LOCK : 0) |
        (opts.fixedVnodes ? 0 : ClusterFlag.AUTO_VNODES);
      const now = Date.now();
      const ctime = (BigInt(Math.floor(now / 1000)) << 32n) | BigInt((now % 1000) * 1_000_000);
      const body = Buffer.from(`${store}\0`, 'latin1');
      await this.call(
        clusterRequest(Op.MAKE_FS, {
          flags: Flag.CMD_WRITE,
          dataLength: body.length,
          copies: red.copies || 3,
          copyPolicy: red.copyPolicy,
          clusterFlags: flags,
          blockSizeShift: bss,
          ctime,
        }),
        'format the cluster',
        body,
        [],
        { idempotent: false },
      );
    });
  }

  /** Stop every sheep of the cluster (SHUTDOWN, dog cluster shutdown). */
  async shutdownCluster(opts: CallOptions = {}): Promise<void> {
    return this.scoped(opts, 'shutdownCluster', async () => {
      await this.call(plainRequest(Op.SHUTDOWN), 'shut down the cluster', undefined, [], { idempotent: false });
    });
  }

  /** Stop one sheep (KILL_NODE to `address`, dog node kill): it leaves and the others recover. */
  async killNode(address: string, opts: CallOptions = {}): Promise<void> {
    return this.scoped(opts, 'killNode', async () => {
      try {
        await this.nodeCall(address, plainRequest(Op.KILL_NODE), `kill node ${address}`);
      } catch (e) {
        // The node may die before its reply is read: it is gone either way.
        if (!(e instanceof OutcomeUnknownError)) throw e;
      }
    });
  }

  /** FORCE_RECOVER, ENABLE_RECOVER or DISABLE_RECOVER (dog cluster recover force|enable|disable). */
  async recoverCluster(action: 'force' | 'enable' | 'disable', opts: CallOptions = {}): Promise<void> {
    return this.scoped(opts, 'recoverCluster', async () => {
      const op = { force: Op.FORCE_RECOVER, enable: Op.ENABLE_RECOVER, disable: Op.DISABLE_RECOVER }[action];
      if (op === undefined) throw new InvalidArgumentError(`unknown recover action ${JSON.stringify(action)}`);
      await this.call(plainRequest(op), `${action} recovery`);
    });
  }

  /** Whether automatic recovery is on (CLUSTER_INFO's disable_recovery). */
  async autoRecovery(opts: CallOptions = {}): Promise<boolean> {
    return this.scoped(opts, 'autoRecovery', async () => {
      const r = await this.call(plainRequest(Op.CLUSTER_INFO, { dataLength: CLUSTER_INFO_SIZE }), 'cluster info');
      return decodeClusterInfo(r.body).disableRecovery === 0;
    });
  }

  /** The epochs of the cluster, newest first, with their members (STAT_CLUSTER, as dog cluster info). */
  async clusterEpochs(opts: CallOptions = {}): Promise<EpochInfo[]> {
    return this.scoped(opts, 'clusterEpochs', async () => {
      const ci = await this.call(plainRequest(Op.CLUSTER_INFO, { dataLength: CLUSTER_INFO_SIZE }), 'cluster info');
      const epochs = Math.max(1, decodeClusterInfo(ci.body).epoch);
      const fits = (nodesNr: number): number => Math.min(epochs, Math.floor((64 << 20) / epochLogStride(nodesNr)));
      for (const nodesNr of [64, 1024, SD_MAX_NODES]) {
        const r = await this.req(
          clusterRequest(Op.STAT_CLUSTER, { nodesNr, dataLength: fits(nodesNr) * epochLogStride(nodesNr) }),
        );
        const res = r.header.result;
        if (res === Result.BUFFER_SMALL) continue;
        // STAT_CLUSTER answers with the cluster's status (WAIT_FOR_FORMAT...) and the logs it has.
        if (res !== Result.SUCCESS && r.body.length === 0) throw responseError(res, 'cluster epochs', r.node);
        return decodeEpochLogs(r.body, nodesNr)
          .filter((l) => l.epoch !== 0)
          .map((l) => ({ epoch: l.epoch, time: new Date(Number(l.time) * 1000), nodes: l.nodes.map(addrOf) }));
      }
      throw new SheepdogError('the epoch log does not fit any buffer');
    });
  }

  /** Recovery state of every node (STAT_RECOVERY to each, dog node recovery). */
  async recoveryStatus(opts: CallOptions = {}): Promise<NodeRecovery[]> {
    return this.scoped(opts, 'recoveryStatus', async () => {
      const nodes = await this.listNodes();
      return Promise.all(
        nodes.map(async (n, index) => {
          const r = await this.nodeCall(
            n.address,
            plainRequest(Op.STAT_RECOVERY, { dataLength: 24 }),
            `recovery state of node ${n.address}`,
          );
          const b = Buffer.from(r.body.buffer, r.body.byteOffset, r.body.length);
          const inRecovery = b.length >= 1 && b[0] !== 0;
          const finished = b.length >= 16 ? Number(b.readBigUInt64LE(8)) : 0;
          const total = b.length >= 24 ? Number(b.readBigUInt64LE(16)) : 0;
          return { ...n, index, inRecovery, finished, total };
        }),
      );
    });
  }

  /** The placement ring of the current node list. */
  private async ring(): Promise<{
    nodes: NodeInfo[];
    ring: VnodeRing;
    oidToNodes: (typeof import('../../protocol/placement.js'))['oidToNodes'];
  }> {
    const [nodes, { buildRing, oidToNodes }] = await Promise.all([this.listNodes(), placement()]);
    const ring = buildRing(
      nodes.map((n) => ({ nid: { addr: n.host, port: n.port }, nrVnodes: n.vnodes, zone: n.zone })),
    );
    return { nodes, ring, oidToNodes };
  }

  /**
   * Which nodes have object `oid` (EXIST sent to each node of the node list)
   * and where sheep's placement puts its `copies` copies (dog vdi object location).
   */
  async objectLocation(oid: bigint, copies: number, opts: CallOptions = {}): Promise<ObjectLocation> {
    return this.scoped(opts, 'objectLocation', async () => {
      const { nodes, ring, oidToNodes } = await this.ring();
      const expected = oidToNodes(ring, oid, Math.min(copies, SD_MAX_COPIES)).map((i) => nodes[i]?.address ?? '');
      const has = await Promise.all(
        nodes.map(async (n) => {
          const r = await this.nodeCall(
            n.address,
            objRequest(Op.EXIST, { oid }),
            `object ${oidHex(oid)} on ${n.address}`,
            undefined,
            [Result.NO_OBJ],
          );
          return { address: n.address, has: r.header.result === Result.SUCCESS };
        }),
      );
      return { oid, copies, nodes: has, expected };
    });
  }

  /** The allocated objects of a VDI or snapshot, index → owning VDI (dog vdi object map). */
  async vdiObjects(name: string, opts: { snapshot?: SnapshotRef } & CallOptions = {}): Promise<VdiObjects> {
    return this.scoped(opts, 'vdiObjects', async () => {
      checkVdiName(name);
      const snap = opts.snapshot === undefined ? undefined : checkSnapshotRef(opts.snapshot);
      const { header: h, index } = await this.loadInode(await this.lookup(name, snap));
      const objects = [...index.entries()].sort((a, b) => a[0] - b[0]);
      return {
        name: h.name,
        vdiId: h.vdiId,
        copies: h.nrCopies,
        copyPolicy: h.copyPolicy,
        blockSizeShift: h.blockSizeShift,
        maxObjects: objectCount(h.vdiSize, h.blockSizeShift),
        objects,
      };
    });
  }

  /**
   * Replica consistency of a VDI (dog vdi check): for every allocated object
   * and the inode, GET_HASH to each node placement puts a copy on; a
   * missing replica, or one whose hash differs from the majority, is a
   * problem. With `repair`, the majority replica is read from its node
   * (READ_PEER) and written to the others (CREATE_AND_WRITE_PEER /
   * WRITE_PEER). Replicas that differ with no majority (always so with two
   * copies) are reported, never repaired. Erasure-coded VDIs are refused.
   */
  async checkVdi(name: string, opts: CheckVdiOptions & CallOptions = {}): Promise<CheckVdiResult> {
    return this.scoped(opts, 'checkVdi', async () => {
      checkVdiName(name);
      const snap = opts.snapshot === undefined ? undefined : checkSnapshotRef(opts.snapshot);
      const { header: h, index } = await this.loadInode(await this.lookup(name, snap));
      if (h.copyPolicy !== 0) {
        throw new InvalidArgumentError(`VDI ${name} is erasure-coded: checking its strips is not supported`);
      }
      const ci = await this.call(plainRequest(Op.CLUSTER_INFO, { dataLength: CLUSTER_INFO_SIZE }), 'cluster info');
      const epoch = decodeClusterInfo(ci.body).epoch;
      const { nodes, ring, oidToNodes } = await this.ring();
      const oids: [bigint, number][] = [...index.entries()]
        .sort((a, b) => a[0] - b[0])
        .map(([idx, vid]) => [vidToDataOid(vid, idx), 2 ** h.blockSizeShift]);
      oids.push([vidToVdiOid(h.vdiId), SD_INODE_SIZE]);
      const problems: ReplicaProblem[] = [];
      let done = 0;
      await runBounded(oids, this.maxConcurrency, async ([oid, size]) => {
        const where = oidToNodes(ring, oid, h.nrCopies).map((i) => nodes[i]?.address ?? '');
        problems.push(...(await this.checkObject(oid, size, h.nrCopies, where, epoch, opts)));
        opts.onObject?.(++done, oids.length);
      });
      problems.sort((a, b) => (a.oid < b.oid ? -1 : a.oid > b.oid ? 1 : 0));
      return { name: h.name, vdiId: h.vdiId, objects: oids.length, problems };
    });
  }

  private async checkObject(
    oid: bigint,
    size: number,
    copies: number,
    where: string[],
    epoch: number,
    opts: CheckVdiOptions,
  ): Promise<ReplicaProblem[]> {
    const ctx = (n: string): string => `object ${oidHex(oid)} on ${n}`;
    const hashes: Record<string, string> = {};
    const missing: string[] = [];
    for (const n of where) {
      if (opts.existOnly) {
        const r = await this.nodeCall(n, objRequest(Op.EXIST, { oid }), ctx(n), undefined, [Result.NO_OBJ]);
        if (r.header.result === Result.NO_OBJ) missing.push(n);
        continue;
      }
      const r = await this.nodeCall(n, objRequest(Op.GET_HASH, { oid, tgtEpoch: epoch }), ctx(n), undefined, [
        Result.NO_OBJ,
      ]);
      if (r.header.result === Result.NO_OBJ || r.header.kind !== 'hash') missing.push(n);
      else hashes[n] = Buffer.from(r.header.digest).toString('hex');
    }
    const found = Object.keys(hashes);
    if (opts.existOnly) return missing.map((n) => ({ oid, kind: 'missing', nodes: [n], hashes, fixed: false }));
    if (found.length === 0) return [{ oid, kind: 'lost', nodes: where, hashes, fixed: false }];
    const counts = new Map<string, number>();
    for (const d of Object.values(hashes)) counts.set(d, (counts.get(d) ?? 0) + 1);
    const best = [...counts].find(([, c]) => c > found.length / 2)?.[0];
    if (best === undefined) return [{ oid, kind: 'no-majority', nodes: where, hashes, fixed: false }];
    const bad = where.filter((n) => !missing.includes(n) && hashes[n] !== best);
    const out: ReplicaProblem[] = [
      ...missing.map((n) => ({ oid, kind: 'missing' as const, nodes: [n], hashes, fixed: false })),
      ...bad.map((n) => ({ oid, kind: 'mismatch' as const, nodes: [n], hashes, fixed: false })),
    ];
    if (!opts.repair || out.length === 0) return out;
    const source = found.find((n) => hashes[n] === best) as string;
    const data = (
      await this.nodeCall(source, objRequest(Op.READ_PEER, { oid, epoch, dataLength: size }), `read ${ctx(source)}`)
    ).body;
    for (const p of out) {
      const n = p.nodes[0] as string;
      const op = p.kind === 'missing' ? Op.CREATE_AND_WRITE_PEER : Op.WRITE_PEER;
      await this.nodeCall(
        n,
        objRequest(op, { oid, epoch, flags: Flag.CMD_WRITE, dataLength: data.length, copies }),
        `repair ${ctx(n)}`,
        data,
      );
      p.fixed = true;
    }
    return out;
  }

  // -------------------------------------------------------------- VDI ops

  /**
   * Create a VDI of `size` bytes: a safe integer, or a bigint for hyper
   * volumes past 2^53 - 1 bytes (up to sheep's 16 PiB). The name must not
   * hold control characters.
   */
  async createVdi(name: string, size: number | bigint, opts: CreateVdiOptions & CallOptions = {}): Promise<VdiInfo> {
    return this.scoped(opts, 'createVdi', async () => {
      checkNewVdiName(name);
      const sz = checkVdiSize(size);
      const red = opts.copies === undefined ? { copies: 0, copyPolicy: 0 } : parseRedundancy(opts.copies);
      let bss = opts.blockSizeShift;
      if (
        bss !== undefined &&
        (!Number.isInteger(bss) || bss < SD_MIN_BLOCK_SIZE_SHIFT || bss > SD_MAX_BLOCK_SIZE_SHIFT)
      ) {
        throw new InvalidArgumentError(
          `blockSizeShift must be ${SD_MIN_BLOCK_SIZE_SHIFT}..${SD_MAX_BLOCK_SIZE_SHIFT}, got ${bss}`,
        );
      }
      bss ??= (await this.clusterDefaults()).blockSizeShift;
      const flatMax = 2 ** bss * SD_INODE_DATA_INDEX;
      const hyper = opts.hyper === true || sz > BigInt(flatMax);
      if (hyper) {
        if (bss !== 22) {
          throw new InvalidArgumentError(
            `a hyper volume (over ${flatMax} bytes at block size shift ${bss}) needs block size shift 22`,
          );
        }
        if (opts.preallocate) throw new InvalidArgumentError('preallocation of hyper volumes is not supported');
      }
      const vid = await this.newVdi(
        name,
        {
          vdiSize: sz,
          copies: red.copies,
          copyPolicy: red.copyPolicy,
          storePolicy: hyper ? StorePolicy.HYPER : StorePolicy.FLAT,
          blockSizeShift: bss,
        },
        `create VDI ${name}`,
      );
      const header = await this.readHeader(vid);
      if (opts.preallocate) await this.preallocate(header);
      return this.info(header, opts.preallocate ? await this.loadIndex(header) : undefined);
    });
  }

  private async preallocate(h: InodeHeader): Promise<void> {
    const n = objectCount(h.vdiSize, h.blockSizeShift);
    const policy = { copies: h.nrCopies, copyPolicy: h.copyPolicy };
    const idxs = Array.from({ length: n }, (_, i) => i);
    await runBounded(idxs, this.maxConcurrency, async (i) => {
      const r = await writeObjectResult(this.io, vidToDataOid(h.vdiId, i), 0, new Uint8Array(0), {
        create: true,
        policy,
        opts: UNTIL_REPLY,
      });
      if (r !== Result.SUCCESS && r !== Result.OID_EXIST) throw responseError(r, `preallocate ${h.name}`);
    });
    const { FlatIndex } = await vdiIndex();
    const index = new FlatIndex(new Uint32Array(n).fill(h.vdiId));
    await index.persist(this.indexIO, vidToVdiOid(h.vdiId), idxs);
  }

  /** Open a VDI (or one of its snapshots, read-only) for I/O. */
  async openVdi(name: string, opts: OpenVdiOptions & CallOptions = {}): Promise<Vdi> {
    return this.scoped(opts, 'openVdi', async () => {
      checkVdiName(name);
      const snap = opts.snapshot === undefined ? undefined : checkSnapshotRef(opts.snapshot);
      const lock = opts.lock === true;
      if (lock && snap !== undefined) throw new InvalidArgumentError('a snapshot cannot be opened with a lock');
      const [{ Vdi }, { VdiCore }] = await vdiModules();
      const vid = await this.lookup(name, snap, lock);
      try {
        // Handles of one working VDI share their state (gates, pending index
        // updates): see lib/vdi/core.ts.
        const shared = snap === undefined ? this.states.get(name) : undefined;
        if (shared !== undefined) return new Vdi(shared, { locked: lock });
        const { header, index } = await this.loadInode(vid);
        const snapshot = header.snapCtime !== 0n;
        const st = new VdiCore(this.host(), name, header, index, snapshot);
        if (!snapshot) {
          const raced = this.states.get(name);
          if (raced !== undefined) return new Vdi(raced, { locked: lock });
          this.states.set(name, st);
        }
        return new Vdi(st, { locked: lock });
      } catch (e) {
        if (lock) await this.release(vid, LockType.NORMAL).catch(() => {});
        throw e;
      }
    });
  }

  /** Information about a VDI (or a snapshot of it). */
  async getVdi(name: string, opts: { snapshot?: SnapshotRef } & CallOptions = {}): Promise<VdiInfo> {
    return this.scoped(opts, 'getVdi', async () => {
      checkVdiName(name);
      const snap = opts.snapshot === undefined ? undefined : checkSnapshotRef(opts.snapshot);
      const { header, index } = await this.loadInode(await this.lookup(name, snap));
      return this.info(header, index);
    });
  }

  /**
   * Every VDI and snapshot, like `dog vdi list`: READ_VDIS, then each inode's
   * header and flat index (used/shared) in one read, all pipelined. An index
   * longer than LIST_INDEX_BYTES costs a second read; a hyper volume's B-tree
   * is walked as openVdi does.
   */
  async listVdis(opts: CallOptions = {}): Promise<VdiInfo[]> {
    return this.scoped(opts, 'listVdis', async () => {
      const [inuse, del] = await Promise.all([
        this.call(plainRequest(Op.READ_VDIS, { dataLength: VDI_BITMAP_SIZE }), 'read VDI bitmap'),
        this.req(plainRequest(Op.READ_DEL_VDIS, { dataLength: VDI_BITMAP_SIZE })),
      ]);
      const deleted = del.header.result === Result.SUCCESS ? del.body : new Uint8Array(0);
      const vids = liveVids(inuse.body, deleted);
      const out: (VdiInfo | undefined)[] = new Array(vids.length);
      let next = 0;
      // Each worker reads its inodes one after the other into a buffer of its own
      // (readInto: no new buffer per reply); a header is decoded and its index
      // tallied before the worker's next read reuses the buffer.
      const worker = async (): Promise<void> => {
        const buf = new Uint8Array(SD_INODE_HEADER_SIZE + LIST_INDEX_BYTES);
        while (next < vids.length) {
          const i = next++;
          const info = await this.listOne(vids[i] as number, buf);
          if (info !== undefined) out[i] = info;
        }
      };
      const workers: Promise<void>[] = [];
      for (let k = Math.min(Math.max(this.maxConcurrency, LIST_CONCURRENCY), vids.length); k > 0; k--)
        workers.push(worker());
      // Every worker settles before the first error is thrown (as runBounded).
      const settled = await Promise.allSettled(workers);
      for (const r of settled) if (r.status === 'rejected') throw r.reason;
      return out.filter((x): x is VdiInfo => x !== undefined);
    });
  }

  /** listVdis: one inode, read into `buf` (header and the first LIST_INDEX_BYTES of its index); undefined if it is gone. */
  private async listOne(vid: number, buf: Uint8Array): Promise<VdiInfo | undefined> {
    const oid = vidToVdiOid(vid);
    let b: Uint8Array;
    try {
      b = await readObject(this.io, oid, 0, buf.length, { readInto: buf });
    } catch (e) {
      if (e instanceof NoObjError) return undefined; // vid reserved, inode gone
      throw e;
    }
    const h = decodeInodeHeader(b);
    if (h.name === '') return undefined; // deleted
    if (h.storePolicy === StorePolicy.HYPER) return this.info(h, await this.loadIndex(h));
    const count = Math.min(objectCount(h.vdiSize, h.blockSizeShift), SD_INODE_DATA_INDEX);
    const have = Math.min(count, (b.length - SD_INODE_HEADER_SIZE) >>> 2);
    const t = tallyIndex(b.subarray(SD_INODE_HEADER_SIZE), have, h.vdiId);
    if (count > have) {
      const rest = await readObject(this.io, oid, SD_INODE_HEADER_SIZE + 4 * have, 4 * (count - have));
      if (rest.length !== 4 * (count - have))
        throw new SheepdogError(`inode index read returned ${rest.length} bytes, expected ${4 * (count - have)}`);
      const r = tallyIndex(rest, count - have, h.vdiId);
      t.used += r.used;
      t.shared += r.shared;
    }
    const os = 2 ** h.blockSizeShift;
    return this.infoOf(h, t.used * os, t.shared * os);
  }

  /**
   * Snapshot a VDI as dog does: the tag is written into the current inode,
   * then NEW_VDI(snapid=1) turns it into the snapshot and makes a new working
   * VDI. Open handles keep working (their writes get READONLY and move on).
   */
  async snapshotVdi(name: string, tag: string, opts: CallOptions = {}): Promise<SnapshotResult> {
    return this.scoped(opts, 'snapshotVdi', async () => {
      checkVdiName(name);
      checkNewTag(tag);
      // The tag write and NEW_VDI are two steps: two snapshots of one VDI
      // interleaved would lose a tag (sheepdog issue #330). This client runs
      // them one at a time per VDI; other clients can still interleave.
      return this.serialSnapshots(name, () => this.snapshotOnce(name, tag), callScope.getStore());
    });
  }

  /**
   * Run `fn` after every snapshot of `name` queued before it, and before any
   * queued after. With `signal`, giving up while still queued leaves the
   * queue at once (AbortError); the next in line still waits for the ones
   * before.
   */
  private serialSnapshots<T>(name: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const prev = this.snapshotting.get(name) ?? Promise.resolve();
    const run = (signal === undefined ? prev : untilAborted(prev, signal, `snapshot of ${name}`)).then(fn);
    const tail = prev.then(() =>
      run.then(
        () => {},
        () => {},
      ),
    );
    this.snapshotting.set(name, tail);
    void tail.then(() => {
      if (this.snapshotting.get(name) === tail) this.snapshotting.delete(name);
    });
    return run;
  }

  private async snapshotOnce(name: string, tag: string): Promise<SnapshotResult> {
    try {
      await this.lookup(name, tag);
      throw new VdiExistsError(`snapshot tag ${JSON.stringify(tag)} of VDI ${name} exists already`);
    } catch (e) {
      if (!(e instanceof NoTagError)) throw e;
    }
    const vid = await this.lookup(name);
    const h = await this.readHeader(vid);
    if (h.storePolicy === StorePolicy.HYPER) {
      throw new InvalidArgumentError(`VDI ${name} is a hyper volume: sheepdog cannot snapshot those`);
    }
    const tagBuf = Buffer.alloc(256);
    tagBuf.write(tag, 'utf8');
    await writeObject(this.io, vidToVdiOid(vid), INODE_OFF.tag, tagBuf, { opts: UNTIL_REPLY });
    const newVid = await this.newVdi(
      name,
      {
        vdiSize: h.vdiSize,
        baseVdiId: vid,
        snapid: 1,
        copies: h.nrCopies,
        copyPolicy: h.copyPolicy,
        storePolicy: h.storePolicy,
        blockSizeShift: h.blockSizeShift,
      },
      `snapshot VDI ${name}`,
    );
    return { name, tag, snapshotVdiId: vid, workingVdiId: newVid };
  }

  private async snapshotHeader(name: string, snapshot: SnapshotRef): Promise<InodeHeader> {
    const snap = checkSnapshotRef(snapshot);
    const vid = await this.lookup(name, snap);
    const h = await this.readHeader(vid);
    if (h.snapCtime === 0n) {
      throw new InvalidArgumentError(`${name} (${String(snapshot)}) is not a snapshot: clone and rollback need one`);
    }
    return h;
  }

  /** Clone a snapshot into a new VDI that shares its objects until written (copy-on-write). */
  async cloneVdi(name: string, snapshot: SnapshotRef, target: string, opts: CallOptions = {}): Promise<VdiInfo> {
    return this.scoped(opts, 'cloneVdi', async () => {
      checkVdiName(name);
      checkNewVdiName(target, 'target VDI name');
      const h = await this.snapshotHeader(name, snapshot);
      return this.newVdiFrom(target, h, `clone ${name} (${String(snapshot)}) to ${target}`);
    });
  }

  /** NEW_VDI of a working VDI based on snapshot `h` (same size and policy), then its info. */
  private async newVdiFrom(name: string, h: InodeHeader, context: string): Promise<VdiInfo> {
    const vid = await this.newVdi(
      name,
      {
        vdiSize: h.vdiSize,
        baseVdiId: h.vdiId,
        copies: h.nrCopies,
        copyPolicy: h.copyPolicy,
        storePolicy: h.storePolicy,
        blockSizeShift: h.blockSizeShift,
      },
      context,
    );
    const { header, index } = await this.loadInode(vid);
    return this.info(header, index);
  }

  /** Roll a VDI back to a snapshot: the working VDI is deleted and re-made from the snapshot. */
  async rollbackVdi(
    name: string,
    snapshot: SnapshotRef,
    opts: { force?: boolean } & CallOptions = {},
  ): Promise<VdiInfo> {
    return this.scoped(opts, 'rollbackVdi', async () => {
      checkVdiName(name);
      const h = await this.snapshotHeader(name, snapshot);
      // Refused while open here or locked (VdiInUseError), as deleteVdi: a
      // handle left open would write into the deleted working VDI.
      await this.deleteVdi(name, opts.force ? { force: true } : {});
      return this.newVdiFrom(name, h, `rollback VDI ${name}`);
    });
  }

  /** Grow a VDI (`newSize` a safe integer or a bigint). Shrinking is refused (InvalidArgumentError). */
  async resizeVdi(name: string, newSize: number | bigint, opts: CallOptions = {}): Promise<void> {
    return this.scoped(opts, 'resizeVdi', async () => {
      checkVdiName(name);
      const size = checkVdiSize(newSize);
      const vid = await this.lookup(name);
      const h = await this.readHeader(vid);
      const cur = h.vdiSize;
      if (size < cur)
        throw new InvalidArgumentError(`shrinking VDI ${name} from ${cur} to ${size} bytes is not supported`);
      const max =
        h.storePolicy === StorePolicy.HYPER ? SD_MAX_VDI_SIZE : BigInt(2 ** h.blockSizeShift * SD_INODE_DATA_INDEX);
      if (size > max) throw new InvalidArgumentError(`VDI ${name} cannot grow past ${max} bytes`);
      if (size === cur) return;
      const b = Buffer.alloc(8);
      b.writeBigUInt64LE(size);
      await writeObject(this.io, vidToVdiOid(vid), INODE_OFF.vdiSize, b, { opts: UNTIL_REPLY });
    });
  }

  /**
   * Delete a VDI or one of its snapshots: the index is zeroed in batches (so
   * sheep reclaims the objects), then DEL_VDI. Hyper volumes keep their B-tree
   * intact and sheep walks it itself (zeroing it, as dog 1.0 does, leaves
   * depth 0 and makes sheep panic).
   */
  async deleteVdi(name: string, opts: DeleteVdiOptions & CallOptions = {}): Promise<void> {
    return this.scoped(opts, 'deleteVdi', async () => {
      checkVdiName(name);
      const snap = opts.snapshot === undefined ? undefined : checkSnapshotRef(opts.snapshot);
      const vid = await this.lookup(name, snap);
      if (snap === undefined && !opts.force) await this.checkNotInUse(name, vid);
      // Sheep answers SUCCESS to a DEL_VDI that found objects still indexed
      // (a writer created some after the index was zeroed) and keeps the VDI:
      // the outcome is checked, and the index zeroed again, a bounded number
      // of rounds.
      for (let round = 0; ; round++) {
        const h = await this.readHeader(vid);
        if (h.storePolicy !== StorePolicy.HYPER) await this.zeroIndex(h);
        const tag = typeof snap === 'string' ? snap : '';
        const snapid = typeof snap === 'number' ? snap : 0;
        try {
          await this.call(
            vdiRequest(Op.DEL_VDI, { flags: Flag.CMD_WRITE, dataLength: NAME_TAG_BODY, snapid }),
            `delete VDI ${name}`,
            encodeVdiNameBody(name, tag),
            [],
            { idempotent: false },
          );
        } catch (e) {
          if (!(e instanceof OutcomeUnknownError)) throw e;
          // Reconciled below: gone means it happened.
        }
        try {
          if ((await this.lookup(name, snap)) !== vid) return;
        } catch (e) {
          if (e instanceof NoVdiError || e instanceof NoTagError) return;
          throw e;
        }
        if (round >= DELETE_ROUNDS) {
          throw new VdiInUseError(
            `VDI ${name} is still there after ${round + 1} deletes: a writer keeps allocating objects in it`,
            name,
            'open',
          );
        }
      }
    });
  }

  /** Zero every slot of a flat index, in runs of at most deleteBatch (the gateway reclaims the objects). */
  private async zeroIndex(h: InodeHeader): Promise<void> {
    const index = (await this.loadIndex(h)) as FlatIndex;
    const oid = vidToVdiOid(h.vdiId);
    const runs: [number, number][] = [];
    const s = index.slots;
    for (let i = 0; i < s.length;) {
      if (s[i] === 0) {
        i++;
        continue;
      }
      const start = i;
      while (i < s.length && s[i] !== 0 && i - start < this.deleteBatch) i++;
      runs.push([start, i - start]);
    }
    const zeros = new Uint8Array(4 * this.deleteBatch);
    await runBounded(runs, this.maxConcurrency, async ([start, n]) => {
      await writeObject(this.io, oid, dataVdiIdOffset(start), zeros.subarray(0, 4 * n), { opts: UNTIL_REPLY });
    });
  }

  /** Refuse to delete a working VDI a handle of this client has open, or whose lock is held. */
  private async checkNotInUse(name: string, vid: number): Promise<void> {
    const open = this.states.get(name);
    if (open !== undefined && open.refs > 0) {
      throw new VdiInUseError(
        `VDI ${name} is open in this client (close its handles first, or pass force)`,
        name,
        'open',
      );
    }
    const state = (await this.vdiStates()).find((s) => s.vid === vid);
    if (state !== undefined && (state.lockState === LockState.LOCKED || state.lockState === LockState.SHARED)) {
      throw new VdiInUseError(
        `VDI ${name} is locked (in use by a client; unlock it first, or pass force)`,
        name,
        'locked',
      );
    }
  }

  // ------------------------------------------------------------- attributes

  private attrBody(name: string, key: string, value: Uint8Array, snapshot?: SnapshotRef): Uint8Array {
    const b = new Uint8Array(SD_ATTR_OBJ_SIZE);
    encodeVdiAttr(
      {
        name,
        tag: typeof snapshot === 'string' ? snapshot : '',
        ctime: 0n,
        snapId: typeof snapshot === 'number' ? snapshot : 0,
        key,
        value,
      },
      b,
    );
    return b;
  }

  private async attrOp(
    name: string,
    key: string,
    flags: number,
    value: Uint8Array,
    snapshot: SnapshotRef | undefined,
    context: string,
  ): Promise<{ vdiId: number; attrId: number }> {
    checkVdiName(name);
    checkAttrKey(key);
    const snap = snapshot === undefined ? undefined : checkSnapshotRef(snapshot);
    const r = await this.req(
      vdiRequest(Op.GET_VDI_ATTR, {
        flags: Flag.CMD_WRITE | flags,
        dataLength: SD_ATTR_OBJ_SIZE,
        snapid: typeof snap === 'number' ? snap : 0,
      }),
      this.attrBody(name, key, value, snap),
      { idempotent: (flags & Flag.CMD_EXCL) === 0 },
    );
    const res = r.header.result;
    if (res === Result.NO_OBJ)
      throw new NoObjError(`attribute ${JSON.stringify(key)} of VDI ${name} not found`, r.node);
    if (res !== Result.SUCCESS) throw responseError(res, context, r.node);
    const h = r.header as VdiResponse;
    return { vdiId: h.vdiId, attrId: h.attrId };
  }

  /** Set a key/value attribute on a VDI (dog vdi setattr). `exclusive` refuses to overwrite (VdiExistsError). */
  async setVdiAttr(
    name: string,
    key: string,
    value: string | Uint8Array,
    opts: { exclusive?: boolean; snapshot?: SnapshotRef } & CallOptions = {},
  ): Promise<void> {
    return this.scoped(opts, 'setVdiAttr', async () => {
      const v = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
      if (v.length > 65536) throw new InvalidArgumentError(`attribute value is ${v.length} bytes; at most 65536`);
      await this.vdiMustExist(name, opts.snapshot);
      await this.attrOp(
        name,
        key,
        Flag.CMD_CREAT | (opts.exclusive ? Flag.CMD_EXCL : 0),
        v,
        opts.snapshot,
        `set attribute ${key} of ${name}`,
      );
    });
  }

  /** An attribute's value as a Buffer; NoObjError if the key is not set. */
  async getVdiAttrBuffer(
    name: string,
    key: string,
    opts: { snapshot?: SnapshotRef } & CallOptions = {},
  ): Promise<Buffer> {
    return this.scoped(opts, 'getVdiAttrBuffer', async () => {
      await this.vdiMustExist(name, opts.snapshot);
      const { vdiId, attrId } = await this.attrOp(
        name,
        key,
        0,
        new Uint8Array(0),
        opts.snapshot,
        `get attribute ${key} of ${name}`,
      );
      const b = await readObject(this.io, vidToAttrOid(vdiId, attrId), 0, SD_ATTR_OBJ_SIZE);
      return Buffer.from(decodeVdiAttr(b).value);
    });
  }

  /** An attribute's value as UTF-8 text; NoObjError if the key is not set. */
  async getVdiAttr(name: string, key: string, opts: { snapshot?: SnapshotRef } & CallOptions = {}): Promise<string> {
    return this.scoped(opts, 'getVdiAttr', async () => {
      return (await this.getVdiAttrBuffer(name, key, opts)).toString('utf8');
    });
  }

  /** Delete an attribute; NoObjError if it is not set. */
  async deleteVdiAttr(name: string, key: string, opts: { snapshot?: SnapshotRef } & CallOptions = {}): Promise<void> {
    return this.scoped(opts, 'deleteVdiAttr', async () => {
      await this.vdiMustExist(name, opts.snapshot);
      await this.attrOp(
        name,
        key,
        Flag.CMD_DEL,
        new Uint8Array(0),
        opts.snapshot,
        `delete attribute ${key} of ${name}`,
      );
    });
  }

  /** Attributes are keyed by the name hash, so sheep does not check the VDI: we do. */
  private async vdiMustExist(name: string, snapshot?: SnapshotRef): Promise<void> {
    await this.lookup(checkVdiName(name), snapshot === undefined ? undefined : checkSnapshotRef(snapshot));
  }

  // ----------------------------------------------------------------- backup

  /** What lib/client/backup.ts needs of this client. */
  private backupHost(): BackupHost {
    return {
      io: this.io,
      maxConcurrency: this.maxConcurrency,
      lookup: (name, snapshot) => this.lookup(name, snapshot),
      loadInode: (vid) => this.loadInode(vid),
      readHeader: (vid) => this.readHeader(vid),
      snapshotHeader: (name, snapshot) => this.snapshotHeader(name, snapshot),
      newVdiFrom: async (name, h) => (await this.newVdiFrom(name, h, `restore VDI ${name}`)).vdiId,
      snapshotOnto: (name, base) =>
        this.newVdi(
          name,
          {
            vdiSize: base.vdiSize,
            baseVdiId: base.vdiId,
            snapid: 1,
            copies: base.nrCopies,
            copyPolicy: base.copyPolicy,
            storePolicy: base.storePolicy,
            blockSizeShift: base.blockSizeShift,
          },
          `snapshot restored VDI ${name}`,
        ),
      createVdi: async (name, size, o) => (await this.createVdi(name, size, o)).vdiId,
      openVdi: (name) => this.openVdi(name),
      deleteVdi: (name, o) => this.deleteVdi(name, o),
      writeTag: async (vid, tag) => {
        const b = Buffer.alloc(256);
        b.write(tag, 'utf8');
        await writeObject(this.io, vidToVdiOid(vid), INODE_OFF.tag, b, { opts: UNTIL_REPLY });
      },
      unscoped: (fn) => callScope.exit(fn),
    };
  }

  /**
   * A backup of `name` in dog 1.0's format (dog vdi backup): every object
   * that differs between snapshot `from` (default: none, i.e. zeros) and
   * `to` (default: the working VDI). Resolves once both inodes are read;
   * `timeout` covers that, `signal` the whole stream. See docs/backup.md.
   */
  async backupVdi(name: string, opts: BackupOptions = {}): Promise<BackupStream> {
    return this.scoped(opts, 'backupVdi', async () => (await backup()).openBackup(this.backupHost(), name, opts));
  }

  /**
   * Restore a backup stream (dog's format) onto snapshot `opts.snapshot` of
   * `name`: into a new VDI `opts.into`, or as dog vdi restore does. A bad or
   * short stream is a BackupFormatError naming the offset, and the VDI being
   * restored is deleted (unless `keep`). See docs/backup.md.
   */
  async restoreVdi(name: string, source: AsyncIterable<unknown>, opts: RestoreOptions = {}): Promise<RestoreResult> {
    return this.scoped(opts, 'restoreVdi', async () =>
      (await backup()).restoreBackup(this.backupHost(), name, source, opts),
    );
  }

  /** The objects whose index entries differ between snapshot `from` and `to` (default: the working VDI); no data read. */
  async diffVdi(name: string, from: SnapshotRef, to?: SnapshotRef, opts: CallOptions = {}): Promise<VdiDiff> {
    return this.scoped(opts, 'diffVdi', async () => (await backup()).diffInodes(this.backupHost(), name, from, to));
  }

  // ------------------------------------------------------------------ locks

  private async vdiStates(): Promise<VdiState[]> {
    for (let n = 512; n <= SD_NR_VDIS; n *= 2) {
      const r = await this.req(plainRequest(Op.GET_VDI_COPIES, { dataLength: n * VDI_STATE_SIZE }));
      if (r.header.result === Result.BUFFER_SMALL) continue;
      if (r.header.result !== Result.SUCCESS) throw responseError(r.header.result, 'VDI states', r.node);
      return decodeVdiStates(r.body);
    }
    throw new SheepdogError('VDI state table does not fit any buffer');
  }

  /** VDIs whose lock is held (GET_VDI_COPIES), with the owning gateway node(s). */
  async listLocks(opts: CallOptions = {}): Promise<LockInfo[]> {
    return this.scoped(opts, 'listLocks', async () => {
      const states = (await this.vdiStates()).filter(
        (s) => s.lockState === LockState.LOCKED || s.lockState === LockState.SHARED,
      );
      const out: LockInfo[] = [];
      for (const s of states) {
        let h: InodeHeader | undefined;
        try {
          h = await this.readHeader(s.vid);
        } catch (e) {
          if (!(e instanceof SheepdogResponseError)) throw e;
        }
        const fmt = (n: { addr: string; port: number }): string => formatAddress(n.addr, n.port);
        out.push({
          name: h?.name ?? '',
          vdiId: s.vid,
          tag: h?.tag ?? '',
          snapId: h?.snapId ?? 0,
          state: s.lockState === LockState.SHARED ? 'shared' : 'locked',
          owners: s.lockState === LockState.SHARED ? s.participants.map(fmt) : [fmt(s.lockOwner)],
        });
      }
      return out;
    });
  }

  /** Force-release a VDI's lock (dog vdi lock unlock), whoever holds it. */
  async unlockVdi(name: string, opts: { snapshot?: SnapshotRef } & CallOptions = {}): Promise<void> {
    return this.scoped(opts, 'unlockVdi', async () => {
      checkVdiName(name);
      const vid = await this.lookup(name, opts.snapshot === undefined ? undefined : checkSnapshotRef(opts.snapshot));
      const st = (await this.vdiStates()).find((s) => s.vid === vid);
      if (!st || st.lockState === LockState.UNLOCKED) return;
      await this.release(vid, st.lockState === LockState.SHARED ? LockType.SHARED : LockType.NORMAL);
    });
  }

  /** Close the pool (when this client made it): waits for requests in flight. */
  async close(): Promise<void> {
    const pools = [...this.nodePools.values()];
    this.nodePools.clear();
    await Promise.all(pools.map((p) => p.close().catch(() => {})));
    if (this.ownsTransport) await this.transport.close();
  }
}
