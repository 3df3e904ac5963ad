/**
 * Replicas and recovery of the embedded sheep. Every node has its own
 * object store; an object lives on the nodes sheep 1.0's ring places it on
 * (protocol/placement.ts) among the nodes that are up. `Replicas` is what a
 * gateway sees (the cluster's operations in testing/cluster.ts run on it):
 * a write goes to every replica and succeeds only when every one took it, a
 * read is served by one replica (the gateway's own copy first) and falls back
 * to the others.
 *
 * On every membership change (sheep/recovery.c): a node's copies of objects
 * it no longer holds become stale copies (sheep's `.stale` directory), a
 * node that rejoins keeps nothing current (all of its copies become stale),
 * and every object a node should now hold but does not is pending on it.
 * Recovery copies pending objects from a current copy on a live node (or,
 * failing that, from the newest stale copy), a few per event-loop turn; a
 * request that touches a pending object recovers that object at once first
 * (sheep puts the request to sleep and recovers the object out of turn).
 * An object whose every copy is on nodes that are down cannot be recovered:
 * it is gone until one of them comes back.
 */
import { buildRing, oidToNodes, type VnodeRing } from '../protocol/placement.js';
import { SD_MAX_COPIES } from '../protocol/constants.js';
import { LEDGER_BIT } from '../protocol/oid.js';
import type { NodeRecord } from './cluster.js';
import { CHUNK_SIZE, ObjectStore, SparseObject, type StoreBackend, type StoreResult } from './store.js';

/** Objects recovered per event-loop turn. */
const RECOVERY_BATCH = 16;

interface Stale {
  obj: SparseObject;
  /** The epoch in which this copy was last current. */
  epoch: number;
}

export class NodeStore {
  readonly index: number;
  readonly working: ObjectStore;
  readonly stale = new Map<bigint, Stale>();
  staleBytes = 0;
  readonly pending = new Set<bigint>();
  /** STAT_RECOVERY: objects this node holds in the current epoch, and how many of them are done. */
  total = 0;
  done = 0;
  inRecovery = false;
  /** Up at the last membership change. */
  wasLive = false;
  /** The last epoch this node was part of. */
  lastEpoch = 0;

  constructor(index: number, maxBytes: number) {
    this.index = index;
    this.working = new ObjectStore(maxBytes);
  }

  get bytes(): number {
    return this.working.bytes + this.staleBytes;
  }

  addStale(oid: bigint, obj: SparseObject, epoch: number): void {
    const old = this.stale.get(oid);
    if (old && old.epoch > epoch) return;
    if (old) this.staleBytes -= old.obj.allocated;
    this.stale.set(oid, { obj, epoch });
    this.staleBytes += obj.allocated;
  }

  dropStale(oid: bigint): void {
    const s = this.stale.get(oid);
    if (!s) return;
    this.staleBytes -= s.obj.allocated;
    this.stale.delete(oid);
  }

  clearStale(): void {
    this.stale.clear();
    this.staleBytes = 0;
  }
}

function cloneObject(o: SparseObject): SparseObject {
  const c = new SparseObject(o.size);
  for (const [ci, chunk] of o.chunks) c.write(ci * CHUNK_SIZE, chunk);
  c.size = o.size;
  return c;
}

export interface ReplicaEnv {
  /** The nodes that are up, sorted as sheep's node tree. */
  members(): NodeRecord[];
  /** nr_copies of an object's VDI (vdi_state, else the cluster's). */
  copiesOf(oid: bigint): number;
  epoch(): number;
  recoveryDisabled(): boolean;
}

export class Replicas {
  readonly nodes: NodeStore[] = [];
  readonly maxBytes: number;
  private readonly env: ReplicaEnv;
  /** The node whose gateway runs the current request (its copy is read first), -1 for none. */
  gateway = -1;
  /** obj.copies of the current gateway request (0: the VDI's). */
  reqCopies = 0;
  private ring: { ring: VnodeRing; members: NodeRecord[] } | undefined;
  private readonly placed = new Map<bigint, number[]>();
  private rotate = 0;
  private scheduled: NodeJS.Immediate | undefined;
  private waiters: (() => void)[] = [];
  closed = false;

  constructor(nrNodes: number, maxBytes: number, env: ReplicaEnv) {
    this.maxBytes = maxBytes;
    this.env = env;
    for (let i = 0; i < nrNodes; i++) this.nodes.push(new NodeStore(i, maxBytes));
  }

  // ------------------------------------------------------------ placement

  /** Membership changed: forget the ring. */
  membersChanged(): void {
    this.ring = undefined;
    this.placed.clear();
  }

  private currentRing(): { ring: VnodeRing; members: NodeRecord[] } {
    if (!this.ring) {
      const members = this.env.members();
      const ring = buildRing(
        members.map((m) => ({ nid: { addr: m.addr, port: m.port }, nrVnodes: m.nrVnodes, zone: m.zone })),
      );
      this.ring = { ring, members };
    }
    return this.ring;
  }

  /** Node indices holding `oid` now, copy 0 first. */
  targets(oid: bigint, copies = 0): number[] {
    if (copies === 0) {
      const hit = this.placed.get(oid);
      if (hit) return hit;
    }
    const { ring, members } = this.currentRing();
    const n = copies || this.env.copiesOf(oid);
    const out = oidToNodes(ring, oid, n).map((i) => (members[i] as NodeRecord).index);
    if (copies === 0) {
      if (this.placed.size > 65536) this.placed.clear();
      this.placed.set(oid, out);
    }
    return out;
  }

  private reqTargets(oid: bigint): number[] {
    const c = Math.min(this.reqCopies, SD_MAX_COPIES);
    return this.targets(oid, c !== 0 && c !== this.env.copiesOf(oid) ? c : 0);
  }

  private isLive(i: number): boolean {
    return this.currentRing().members.some((m) => m.index === i);
  }

  // ---------------------------------------------------------- the budget

  get bytes(): number {
    let n = 0;
    for (const s of this.nodes) n += s.bytes;
    return n;
  }

  /** Let node `s` use what the other nodes leave of the cluster's memory. */
  private budget(s: NodeStore): ObjectStore {
    s.working.maxBytes = this.maxBytes - (this.bytes - s.working.bytes);
    return s.working;
  }

  // ------------------------------------------------------------ recovery

  /** The object is pending on node `i`: recover it now (a request needs it). */
  ensure(oid: bigint, i: number): void {
    const s = this.nodes[i] as NodeStore;
    if (s.pending.has(oid)) this.recoverOne(s, oid);
  }

  private recoverOne(s: NodeStore, oid: bigint): void {
    s.pending.delete(oid);
    s.done++;
    let src: SparseObject | undefined;
    const live = this.currentRing().members.map((m) => m.index);
    for (const m of [...this.targets(oid), ...live]) {
      if (m === s.index) continue;
      const o = (this.nodes[m] as NodeStore).working.get(oid);
      if (o) {
        src = o;
        break;
      }
    }
    if (!src) {
      let best: Stale | undefined;
      for (const m of live) {
        const st = (this.nodes[m] as NodeStore).stale.get(oid);
        if (st && (!best || st.epoch > best.epoch)) best = st;
      }
      src = best?.obj;
    }
    if (!src) return; // every copy is on nodes that are down
    const copy = src === s.stale.get(oid)?.obj ? src : cloneObject(src);
    s.dropStale(oid);
    this.budget(s).put(oid, copy);
  }

  /** A membership change (a new epoch): plan what every node must recover. */
  replan(): void {
    this.membersChanged();
    const epoch = this.env.epoch();
    const liveIdx = new Set(this.currentRing().members.map((m) => m.index));
    for (const s of this.nodes) {
      if (!liveIdx.has(s.index)) {
        if (s.wasLive) s.lastEpoch = epoch - 1;
        s.wasLive = false;
        s.inRecovery = false;
        continue;
      }
      if (!s.wasLive) {
        // a node that (re)joins: none of its copies can be trusted to be current
        for (const [oid, obj] of [...s.working.objects]) {
          s.working.remove(oid);
          s.addStale(oid, obj, s.lastEpoch);
        }
      }
      s.wasLive = true;
    }
    const universe = new Set<bigint>();
    for (const i of liveIdx) {
      const s = this.nodes[i] as NodeStore;
      for (const oid of s.working.objects.keys()) universe.add(oid);
      for (const oid of s.stale.keys()) universe.add(oid);
      for (const oid of s.pending) universe.add(oid);
    }
    for (const i of liveIdx) {
      const s = this.nodes[i] as NodeStore;
      s.pending.clear();
      s.total = 0;
    }
    for (const oid of universe) {
      const at = this.targets(oid);
      for (const i of at) {
        const s = this.nodes[i] as NodeStore;
        s.total++;
        if (!s.working.has(oid)) s.pending.add(oid);
      }
    }
    for (const i of liveIdx) {
      const s = this.nodes[i] as NodeStore;
      // copies this node no longer holds go to its stale directory
      for (const [oid, obj] of [...s.working.objects]) {
        if (this.targets(oid).includes(i)) continue;
        s.working.remove(oid);
        s.addStale(oid, obj, epoch - 1);
      }
      s.done = s.total - s.pending.size;
      s.inRecovery = true;
      s.lastEpoch = epoch;
    }
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled || this.closed) return;
    this.scheduled = setImmediate(() => {
      this.scheduled = undefined;
      this.step();
    });
  }

  /** Resume after ENABLE_RECOVER. */
  resume(): void {
    this.schedule();
  }

  private step(): void {
    if (this.closed) return;
    if (!this.env.recoveryDisabled()) {
      let budget = RECOVERY_BATCH;
      for (const s of this.nodes) {
        while (budget > 0 && s.pending.size > 0) {
          const oid = s.pending.values().next().value as bigint;
          this.recoverOne(s, oid);
          budget--;
        }
      }
    }
    if (this.nodes.some((s) => s.pending.size > 0)) {
      if (!this.env.recoveryDisabled()) this.schedule();
      return;
    }
    this.finish();
  }

  private finish(): void {
    for (const s of this.nodes) {
      if (!s.inRecovery) continue;
      s.inRecovery = false;
      s.clearStale();
    }
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  get recovering(): boolean {
    return this.nodes.some((s) => s.inRecovery);
  }

  /** Resolves once no node is recovering. */
  recovered(): Promise<void> {
    if (!this.recovering) return Promise.resolve();
    this.schedule();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  close(): void {
    this.closed = true;
    if (this.scheduled) clearImmediate(this.scheduled);
    this.scheduled = undefined;
    this.finish();
  }

  // --------------------------------------------- the gateway's object store

  /** Objects stored on the nodes that are up (ledgers excepted). */
  get count(): number {
    const seen = new Set<bigint>();
    for (const s of this.nodes) {
      if (!this.isLive(s.index)) continue;
      for (const oid of s.working.objects.keys()) if ((oid & LEDGER_BIT) === 0n) seen.add(oid);
      for (const oid of s.stale.keys()) if ((oid & LEDGER_BIT) === 0n) seen.add(oid);
    }
    return seen.size;
  }

  /** One copy of every object stored on the nodes that are up. */
  get objects(): Map<bigint, SparseObject> {
    const out = new Map<bigint, SparseObject>();
    for (const s of this.nodes) {
      if (!this.isLive(s.index)) continue;
      for (const [oid, o] of s.working.objects) if (!out.has(oid)) out.set(oid, o);
    }
    return out;
  }

  /** Read order: the gateway's own copy, then the others starting at a rotating one. */
  private readOrder(at: number[]): number[] {
    const g = at.indexOf(this.gateway);
    if (g >= 0) return [this.gateway, ...at.slice(0, g), ...at.slice(g + 1)];
    if (at.length < 2) return at;
    const r = this.rotate++ % at.length;
    return [...at.slice(r), ...at.slice(0, r)];
  }

  get(oid: bigint): SparseObject | undefined {
    for (const i of this.readOrder(this.reqTargets(oid))) {
      this.ensure(oid, i);
      const o = (this.nodes[i] as NodeStore).working.get(oid);
      if (o) return o;
    }
    return undefined;
  }

  has(oid: bigint): boolean {
    return this.get(oid) !== undefined;
  }

  read(oid: bigint, off: number, len: number): Uint8Array | undefined {
    return this.get(oid)?.read(off, len);
  }

  private each(oid: bigint, fn: (s: ObjectStore, first: boolean) => StoreResult, recover = true): StoreResult {
    const at = this.reqTargets(oid);
    if (at.length === 0) return 'no_obj';
    let result: StoreResult = 'ok';
    at.forEach((i, k) => {
      const s = this.nodes[i] as NodeStore;
      if (recover) this.ensure(oid, i);
      else if (s.pending.delete(oid)) s.done++;
      const r = fn(this.budget(s), k === 0);
      if (r !== 'ok' && result === 'ok') result = r;
    });
    return result;
  }

  /** CREATE_AND_WRITE: sheep serves it at once, even on an object in recovery. */
  create(oid: bigint, size: number, off: number, data: Uint8Array): StoreResult {
    return this.each(oid, (s) => s.create(oid, size, off, data), false);
  }

  put(oid: bigint, obj: SparseObject): StoreResult {
    return this.each(oid, (s, first) => s.put(oid, first ? obj : cloneObject(obj)), false);
  }

  write(oid: bigint, off: number, data: Uint8Array): StoreResult {
    return this.each(oid, (s) => s.write(oid, off, data));
  }

  zero(oid: bigint, off: number, len: number): StoreResult {
    return this.each(oid, (s) => s.zero(oid, off, len));
  }

  remove(oid: bigint): boolean {
    let any = false;
    this.each(oid, (s) => {
      if (s.remove(oid)) any = true;
      return 'ok';
    });
    // a removed object stays removed: no stale copy of a live node brings it back
    for (const s of this.nodes) if (this.isLive(s.index)) s.dropStale(oid);
    return any;
  }

  clear(): void {
    for (const s of this.nodes) {
      s.working.clear();
      s.clearStale();
      s.pending.clear();
      s.total = 0;
      s.done = 0;
      s.inRecovery = false;
    }
  }

  /** The store of node `i`, for the requests that work on a node's own copies (peer ops, EXIST…). */
  local(i: number): ObjectStore {
    return this.budget(this.nodes[i] as NodeStore);
  }

  setBackends(make: (i: number) => StoreBackend): void {
    for (const s of this.nodes) s.working.backend = make(s.index);
  }
}
