/**
 * The data_vdi_id index of an open VDI: which vid owns object idx. Flat
 * volumes keep u32 slots after the inode header; hyper volumes
 * (store_policy 1) keep a B-tree rooted there (lib/sd_inode.c).
 */
import { SD_INODE_HEADER_SIZE } from '../../protocol/constants.js';
import { oidToVid, vidToBtreeOid } from '../../protocol/oid.js';
import {
  BTREE_INDEX_HEADER_SIZE,
  BTREE_INDEX_SIZE,
  BTREE_INDIRECT_IDX_SIZE,
  BTREE_MAX_INDEX as PROTO_MAX_INDEX,
  BTREE_MAX_INDIRECT,
  INODE_BTREE_MAGIC,
  INODE_OFF,
  dataVdiIdOffset,
  decodeBtreeHeader,
  decodeBtreeIndirect,
  encodeBtreeHeader,
} from '../../protocol/records.js';
import { ProtocolError, SheepdogError } from '../errors.js';

/** Reads and writes of inode/B-tree bytes, as the client provides them. */
export interface IndexIO {
  read(oid: bigint, offset: number, length: number): Promise<Uint8Array>;
  write(oid: bigint, offset: number, data: Uint8Array): Promise<void>;
  /** CREATE_AND_WRITE_OBJ at offset 0 (a new B-tree leaf node; copies and policy the VDI's). */
  create(oid: bigint, data: Uint8Array): Promise<void>;
}

export interface VdiIndex {
  readonly kind: 'flat' | 'hyper';
  /** vid owning object `idx` (0 = unallocated). */
  get(idx: number): number;
  set(idx: number, vid: number): void;
  /** Write the given slots (as now held in memory) to the inode of `inodeOid`. */
  persist(io: IndexIO, inodeOid: bigint, idxs: readonly number[]): Promise<void>;
  /** Allocated objects, ascending: [idx, vid]. */
  entries(): Iterable<[number, number]>;
  /**
   * Run `fn` with no index write of this VDI in flight (hyper: in the queue
   * of root writes, so a request that rewrites the root server-side, like
   * DISCARD_OBJ, cannot race one of ours; flat: slots are written one by one,
   * so `fn` just runs).
   */
  serialize<T>(fn: () => Promise<T>): Promise<T>;
}

/** Max write of slots in one request (dog zeroes in batches of 128; allocation runs may be longer). */
const MAX_RUN = 1 << 20;

export class FlatIndex implements VdiIndex {
  readonly kind = 'flat' as const;
  readonly slots: Uint32Array;
  constructor(slots: Uint32Array) {
    this.slots = slots;
  }
  static async load(io: IndexIO, inodeOid: bigint, count: number): Promise<FlatIndex> {
    const b = count === 0 ? new Uint8Array(0) : await io.read(inodeOid, SD_INODE_HEADER_SIZE, count * 4);
    if (b.length !== count * 4)
      throw new ProtocolError(`inode index read returned ${b.length} bytes, expected ${count * 4}`);
    const slots = new Uint32Array(count);
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    for (let i = 0; i < count; i++) slots[i] = dv.getUint32(4 * i, true);
    return new FlatIndex(slots);
  }
  get(idx: number): number {
    return this.slots[idx] ?? 0;
  }
  set(idx: number, vid: number): void {
    this.slots[idx] = vid;
  }
  async persist(io: IndexIO, inodeOid: bigint, idxs: readonly number[]): Promise<void> {
    const sorted = [...new Set(idxs)].sort((a, b) => a - b);
    const writes: Promise<void>[] = [];
    for (let i = 0; i < sorted.length;) {
      const start = sorted[i] as number;
      let end = start;
      i++;
      while (i < sorted.length && sorted[i] === end + 1 && end + 1 - start < MAX_RUN) {
        end++;
        i++;
      }
      const n = end - start + 1;
      const buf = Buffer.allocUnsafe(n * 4);
      for (let k = 0; k < n; k++) buf.writeUInt32LE(this.slots[start + k] ?? 0, 4 * k);
      writes.push(io.write(inodeOid, dataVdiIdOffset(start), buf));
    }
    await settleAll(writes);
  }
  serialize<T>(fn: () => Promise<T>): Promise<T> {
    return fn();
  }
  *entries(): Iterable<[number, number]> {
    const s = this.slots;
    for (let i = 0; i < s.length; i++) if (s[i] !== 0) yield [i, s[i] as number];
  }
}

/** Leaf entries a B-tree node holds (MAX_INDEX in lib/sd_inode.c). */
export const BTREE_MAX_INDEX = PROTO_MAX_INDEX;

/**
 * Node buffers are kept in wire layout behind 4 bytes of zeros: [0, 4) zero,
 * [4, 12) the sd_index_header, then the entries. A depth-1 root is written
 * from SD_INODE_HEADER_SIZE - 4 (see HyperIndex), a leaf node from byte 0 of
 * its B-tree object (the zeros skipped).
 */
const PRE = 4;
const ENT0 = PRE + BTREE_INDEX_HEADER_SIZE;
const ROOT_BYTES_MAX = ENT0 + BTREE_MAX_INDIRECT * BTREE_INDIRECT_IDX_SIZE;

/** Entries per in-memory chunk of a node: an insert moves at most this many (8 KiB). */
const CHUNK = 1024;

/** A sorted run of sd_index entries in wire layout (u32 idx, u32 vdi_id, little-endian). */
class Chunk {
  readonly b: Uint8Array;
  readonly dv: DataView;
  n = 0;
  constructor() {
    this.b = new Uint8Array(CHUNK * BTREE_INDEX_SIZE);
    this.dv = new DataView(this.b.buffer);
  }
  key(i: number): number {
    return this.dv.getUint32(8 * i, true);
  }
  /** The first entry whose idx is >= `idx` (n if none). */
  find(idx: number): number {
    let lo = 0;
    let hi = this.n;
    while (lo < hi) {
      const m = (lo + hi) >>> 1;
      if (this.key(m) < idx) lo = m + 1;
      else hi = m;
    }
    return lo;
  }
}

/**
 * A node of sd_index {idx, vdi_id} entries sorted by idx (the depth-1 root or
 * a depth-2 leaf), held as chunks of up to CHUNK entries so an insert is two
 * binary searches and a move inside one chunk; a write copies the chunks
 * into one buffer in wire layout.
 */
class Leaf {
  /** The leaf's B-tree object; undefined until numbered (at the first write after it was made). */
  oid: bigint | undefined;
  /** It exists on the server (written once: later writes are WRITE_OBJ, not CREATE_AND_WRITE_OBJ). */
  created = false;
  /** It lost entries to a split: write it after the root that routes them elsewhere. */
  shrunk = false;
  n = 0;
  private chunks: Chunk[] = [];

  /** Entries from wire bytes (sorted, distinct). */
  static fromRaw(b: Uint8Array): Leaf {
    const l = new Leaf();
    for (let off = 0; off < b.length; off += CHUNK * 8) {
      const c = new Chunk();
      const part = b.subarray(off, Math.min(b.length, off + CHUNK * 8));
      c.b.set(part);
      c.n = part.length / 8;
      l.chunks.push(c);
    }
    l.n = b.length / 8;
    return l;
  }
  get last(): number {
    const c = this.chunks[this.chunks.length - 1] as Chunk;
    return c.key(c.n - 1);
  }
  /** The chunk an idx belongs in: the last whose first idx is <= it (the first if none). */
  private chunkFor(idx: number): number {
    let lo = 0;
    let hi = this.chunks.length - 1;
    while (lo < hi) {
      const m = (lo + hi + 1) >>> 1;
      if ((this.chunks[m] as Chunk).key(0) <= idx) lo = m;
      else hi = m - 1;
    }
    return lo;
  }
  /** The vid at `idx`, or -1 if it has no entry. */
  get(idx: number): number {
    if (this.n === 0) return -1;
    const c = this.chunks[this.chunkFor(idx)] as Chunk;
    const p = c.find(idx);
    return p < c.n && c.key(p) === idx ? c.dv.getUint32(8 * p + 4, true) : -1;
  }
  /** Set the vid of an existing entry; false if `idx` has none. */
  update(idx: number, vid: number): boolean {
    if (this.n === 0) return false;
    const c = this.chunks[this.chunkFor(idx)] as Chunk;
    const p = c.find(idx);
    if (p >= c.n || c.key(p) !== idx) return false;
    c.dv.setUint32(8 * p + 4, vid, true);
    return true;
  }
  /** Insert an entry `idx` does not have yet. */
  insert(idx: number, vid: number): void {
    if (this.chunks.length === 0) this.chunks.push(new Chunk());
    const ci = this.chunkFor(idx);
    let c = this.chunks[ci] as Chunk;
    let p = c.find(idx);
    if (c.n === CHUNK) {
      // split the chunk in halves; the entry goes into the half it sorts into
      const d = new Chunk();
      const h = CHUNK >>> 1;
      d.b.set(c.b.subarray(8 * h, 8 * CHUNK));
      d.n = CHUNK - h;
      c.n = h;
      this.chunks.splice(ci + 1, 0, d);
      if (p > h) {
        c = d;
        p -= h;
      }
    }
    if (p < c.n) c.b.copyWithin(8 * (p + 1), 8 * p, 8 * c.n);
    c.dv.setUint32(8 * p, idx, true);
    c.dv.setUint32(8 * p + 4, vid, true);
    c.n++;
    this.n++;
  }
  /** Move the first `num` entries to a new leaf (returned); this one keeps the rest. */
  splitFront(num: number): Leaf {
    const front = new Leaf();
    let left = num;
    while (left > 0) {
      const c = this.chunks[0] as Chunk;
      if (c.n <= left) {
        front.chunks.push(c);
        this.chunks.shift();
        left -= c.n;
        continue;
      }
      const d = new Chunk();
      d.b.set(c.b.subarray(0, 8 * left));
      d.n = left;
      c.b.copyWithin(0, 8 * left, 8 * c.n);
      c.n -= left;
      front.chunks.push(d);
      left = 0;
    }
    front.n = num;
    this.n -= num;
    return front;
  }
  /** A copy of 4 zero bytes, the header and the entries as they are now (a write in flight must not see later edits). */
  snapshot(): Uint8Array {
    const out = new Uint8Array(ENT0 + 8 * this.n);
    encodeBtreeHeader({ magic: INODE_BTREE_MAGIC, depth: 1, entries: this.n }, out, PRE);
    let o = ENT0;
    for (const c of this.chunks) {
      out.set(c.b.subarray(0, 8 * c.n), o);
      o += 8 * c.n;
    }
    return out;
  }
  *entries(): Iterable<[number, number]> {
    for (const c of this.chunks) {
      for (let i = 0; i < c.n; i++) {
        const v = c.dv.getUint32(8 * i + 4, true);
        if (v !== 0) yield [c.key(i), v];
      }
    }
  }
}

/** A depth-2 root: sd_indirect_idx {idx = the largest idx its leaf may hold, oid} per leaf, sorted. */
class Root {
  readonly leaves: Leaf[] = [];
  private buf = new Uint8Array(ENT0 + 64 * BTREE_INDIRECT_IDX_SIZE);
  private dv = new DataView(this.buf.buffer);
  get n(): number {
    return this.leaves.length;
  }
  key(i: number): number {
    return this.dv.getUint32(ENT0 + 16 * i, true);
  }
  setKey(i: number, idx: number): void {
    this.dv.setUint32(ENT0 + 16 * i, idx, true);
  }
  /** `nbsearch` over the indirect entries: the first whose idx is >= `idx` (n if none). */
  find(idx: number): number {
    let lo = 0;
    let hi = this.n;
    while (lo < hi) {
      const m = (lo + hi) >>> 1;
      if (this.key(m) < idx) lo = m + 1;
      else hi = m;
    }
    return lo;
  }
  insertAt(i: number, idx: number, leaf: Leaf): void {
    const n = this.n;
    if (n >= BTREE_MAX_INDIRECT) {
      throw new SheepdogError(
        `hyper volume B-tree is full (${BTREE_MAX_INDIRECT} leaf nodes, sheep's two-level limit)`,
        'SHEEPDOG_ERR_UNSUPPORTED',
      );
    }
    const need = ENT0 + (n + 1) * 16;
    if (need > this.buf.length) {
      const b = new Uint8Array(Math.min(Math.max(need, this.buf.length * 2), ROOT_BYTES_MAX));
      b.set(this.buf.subarray(0, ENT0 + n * 16));
      this.buf = b;
      this.dv = new DataView(b.buffer);
    }
    if (i < n) this.buf.copyWithin(ENT0 + 16 * (i + 1), ENT0 + 16 * i, ENT0 + 16 * n);
    this.setKey(i, idx);
    this.leaves.splice(i, 0, leaf);
  }
  /** A copy of the 4 zero bytes, header and indirect entries (every leaf numbered). */
  snapshot(): Uint8Array {
    const n = this.n;
    encodeBtreeHeader({ magic: INODE_BTREE_MAGIC, depth: 2, entries: n }, this.buf, PRE);
    for (let i = 0; i < n; i++) {
      const oid = this.leaves[i]?.oid;
      if (oid === undefined) throw new Error('internal: an unnumbered leaf in a root write');
      this.dv.setUint32(ENT0 + 16 * i + 4, 0, true);
      this.dv.setBigUint64(ENT0 + 16 * i + 8, oid, true);
    }
    return this.buf.slice(0, ENT0 + 16 * n);
  }
}

/**
 * Hyper-volume index: the B-tree of lib/sd_inode.c, kept in memory node by
 * node in wire layout, so an allocation is a binary search and an insert
 * into one sorted node (O(log n) compares plus a memmove within the node),
 * and a write sends the bytes of the nodes that changed.
 *
 * Depth 1: the root in the inode holds up to BTREE_MAX_INDEX leaves. When it
 * is full, it splits as sheep's transfer_to_idx_root(): the first half and
 * the rest go to two new B-tree objects (vid_to_btree_oid(vid,
 * btree_counter++)), and the root becomes depth 2: sd_indirect_idx entries
 * {largest idx of the leaf, oid}. At depth 2 an idx goes to the first leaf
 * whose indirect idx is >= it; past the last one, into the last leaf while
 * it has room (its indirect idx raised), else into a new leaf; a full leaf
 * splits in two (first half to a new object), as insert_new_node() and
 * split_index_node() do. Entries are never removed: a discarded object keeps
 * its entry with vdi_id 0, as sheep's DISCARD_OBJ leaves it.
 *
 * The root is written from offset 4660, four zero bytes before
 * data_vdi_id, like dog's header write: a write starting inside data_vdi_id
 * would make the gateway treat B-tree bytes as vid slots and dec-ref
 * objects that do not exist.
 */
export class HyperIndex implements VdiIndex {
  readonly kind = 'hyper' as const;
  private root1: Leaf | undefined;
  private root2: Root | undefined;
  /** Leaf nodes (depth 2) changed since they were last written. */
  private readonly dirty = new Set<Leaf>();
  private rootDirty = false;
  /** Leaves made since the last write, in the order they were made (numbered in that order, as sheep does). */
  private readonly fresh: Leaf[] = [];
  /** btree_counter: read from the inode before the first leaf is numbered. */
  private counter: number | undefined;
  private counterOnDisk: number | undefined;
  /** The last index write queued: writes go one at a time (see persist). */
  private tail: Promise<void> = Promise.resolve();
  /** A write queued and not started yet: later persists join it. */
  private queued: Promise<void> | undefined;

  private constructor(root1: Leaf | undefined, root2: Root | undefined) {
    this.root1 = root1;
    this.root2 = root2;
  }
  /** An empty depth-1 index. */
  static empty(): HyperIndex {
    return new HyperIndex(new Leaf(), undefined);
  }
  get depth(): 1 | 2 {
    return this.root2 ? 2 : 1;
  }
  /** Leaf nodes (depth 2; 0 at depth 1). */
  get leafCount(): number {
    return this.root2?.n ?? 0;
  }

  static async load(io: IndexIO, inodeOid: bigint): Promise<HyperIndex> {
    const h = decodeBtreeHeader(await io.read(inodeOid, SD_INODE_HEADER_SIZE, BTREE_INDEX_HEADER_SIZE));
    if (h.magic === 0 && h.depth === 0 && h.entries === 0) return HyperIndex.empty(); // never written
    if (h.magic !== INODE_BTREE_MAGIC)
      throw new ProtocolError(`hyper volume index has bad magic 0x${h.magic.toString(16)}`);
    if (h.depth === 1) {
      if (h.entries > BTREE_MAX_INDEX) throw new ProtocolError(`B-tree root claims ${h.entries} entries`);
      const r = await readLeaf(io, inodeOid, SD_INODE_HEADER_SIZE, h.entries, -1, Infinity);
      const idx = new HyperIndex(r.leaf, undefined);
      idx.rootDirty = r.dropped;
      return idx;
    }
    if (h.depth !== 2) throw new ProtocolError(`hyper volume index has unsupported depth ${h.depth}`);
    const n = h.entries;
    if (n > BTREE_MAX_INDIRECT) throw new ProtocolError(`B-tree root claims ${n} indirect entries`);
    const b = await io.read(inodeOid, SD_INODE_HEADER_SIZE, BTREE_INDEX_HEADER_SIZE + n * BTREE_INDIRECT_IDX_SIZE);
    const ind = Array.from({ length: n }, (_, i) => decodeBtreeIndirect(b, 0, i));
    const root = new Root();
    const idx = new HyperIndex(undefined, root);
    const leaves: (Leaf | undefined)[] = new Array(n);
    await runLimited(n, 8, async (i) => {
      const e = ind[i] as { idx: number; oid: bigint };
      const lh = decodeBtreeHeader(await io.read(e.oid, 0, BTREE_INDEX_HEADER_SIZE));
      if (lh.magic !== INODE_BTREE_MAGIC || lh.depth !== 1 || lh.entries > BTREE_MAX_INDEX)
        throw new ProtocolError(`hyper volume leaf node ${e.oid.toString(16)} is corrupt`);
      // What sheep's lookup can reach: (previous indirect idx, this one]. More
      // is left over from a split interrupted before the old leaf was rewritten.
      const lo = i === 0 ? -1 : (ind[i - 1]?.idx ?? -1);
      const r = await readLeaf(io, e.oid, 0, lh.entries, lo, e.idx);
      r.leaf.oid = e.oid;
      r.leaf.created = true;
      leaves[i] = r.leaf;
      if (r.dropped) idx.dirty.add(r.leaf);
    });
    ind.forEach((e, i) => root.insertAt(i, e.idx, leaves[i] as Leaf));
    return idx;
  }

  get(idx: number): number {
    let l = this.root1;
    if (!l) {
      const r = this.root2 as Root;
      l = r.leaves[r.find(idx)];
      if (!l) return 0;
    }
    return Math.max(l.get(idx), 0);
  }

  set(idx: number, vid: number): void {
    if (!Number.isInteger(idx) || idx < 0 || idx > 0xffffffff) throw new RangeError(`object index ${idx}`);
    for (;;) {
      if (this.root1) {
        const l = this.root1;
        const old = l.get(idx);
        if (old >= 0) {
          if (old !== vid) {
            l.update(idx, vid);
            this.rootDirty = true;
          }
          return;
        }
        if (vid === 0) return;
        if (l.n < BTREE_MAX_INDEX) {
          l.insert(idx, vid);
          this.rootDirty = true;
          return;
        }
        this.splitRoot();
        continue;
      }
      const r = this.root2 as Root;
      const p = r.find(idx);
      if (p < r.n) {
        const l = r.leaves[p] as Leaf;
        const old = l.get(idx);
        if (old >= 0) {
          if (old !== vid) {
            l.update(idx, vid);
            this.dirty.add(l);
          }
          return;
        }
        if (vid === 0) return;
        if (l.n < BTREE_MAX_INDEX) {
          l.insert(idx, vid);
          this.dirty.add(l);
          return;
        }
        this.splitLeaf(p);
        continue;
      }
      if (vid === 0) return;
      const last = r.n > 0 ? (r.leaves[r.n - 1] as Leaf) : undefined;
      if (last && last.n < BTREE_MAX_INDEX) {
        // past every indirect idx: into the last leaf, whose indirect idx rises
        last.insert(idx, vid);
        r.setKey(r.n - 1, idx);
        this.dirty.add(last);
        this.rootDirty = true;
        return;
      }
      const leaf = new Leaf();
      leaf.insert(idx, vid);
      r.insertAt(r.n, idx, leaf);
      this.fresh.push(leaf);
      this.dirty.add(leaf);
      this.rootDirty = true;
      return;
    }
  }

  /** transfer_to_idx_root(): the full depth-1 root becomes two leaves under a depth-2 root. */
  private splitRoot(): void {
    const right = this.root1 as Leaf;
    const left = right.splitFront(Math.floor(right.n / 2));
    const root = new Root();
    root.insertAt(0, left.last, left);
    root.insertAt(1, right.last, right);
    this.fresh.push(left, right);
    this.dirty.add(left);
    this.dirty.add(right);
    this.root1 = undefined;
    this.root2 = root;
    this.rootDirty = true;
  }

  /** split_index_node(): the first half of full leaf `p` moves to a new leaf placed before it. */
  private splitLeaf(p: number): void {
    const r = this.root2 as Root;
    const old = r.leaves[p] as Leaf;
    const nl = old.splitFront(Math.floor(old.n / 2));
    old.shrunk = true;
    r.insertAt(p, nl.last, nl);
    this.fresh.push(nl);
    this.dirty.add(nl);
    this.dirty.add(old);
    this.rootDirty = true;
  }

  /**
   * Write what changed since the last write. Writes go one at a time, each
   * built when its turn comes, so the last write holds every entry set
   * before it; a persist made while one is queued (not started) joins it, so
   * allocations that arrive during a write share the next one.
   */
  persist(io: IndexIO, inodeOid: bigint, idxs: readonly number[]): Promise<void> {
    // Slots whose earlier write failed may sit in clean nodes: mark theirs.
    for (const idx of idxs) this.touch(idx);
    if (this.queued) return this.queued;
    const p = this.serialize(async () => {
      this.queued = undefined;
      await this.flush(io, inodeOid);
    });
    this.queued = p;
    return p;
  }

  private touch(idx: number): void {
    if (this.root1) {
      this.rootDirty = true;
      return;
    }
    const r = this.root2 as Root;
    const p = Math.min(r.find(idx), r.n - 1);
    const l = r.leaves[p];
    if (l) this.dirty.add(l);
  }

  serialize<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(fn);
    this.tail = run.then(
      () => {},
      () => {},
    );
    return run;
  }

  /**
   * New leaves are numbered and btree_counter written first (a crash then
   * leaves unreferenced objects, never a counter that would hand out an oid
   * in use); then the leaves (created or rewritten), then the root, then
   * leaves that lost entries to a split: each state in between reads back
   * with every entry reachable.
   */
  private async flush(io: IndexIO, inodeOid: bigint): Promise<void> {
    if (this.fresh.length > 0) {
      if (this.counter === undefined) {
        const b = await io.read(inodeOid, INODE_OFF.btreeCounter, 4);
        this.counter = new DataView(b.buffer, b.byteOffset, 4).getUint32(0, true);
        this.counterOnDisk = this.counter;
      }
      const vid = oidToVid(inodeOid);
      for (const l of this.fresh.splice(0)) l.oid = vidToBtreeOid(vid, this.counter++);
    }
    const counter = this.counter !== this.counterOnDisk ? this.counter : undefined;
    const leaves = [...this.dirty];
    this.dirty.clear();
    const early: { leaf: Leaf; bytes: Uint8Array; create: boolean }[] = [];
    const late: { leaf: Leaf; bytes: Uint8Array; create: boolean }[] = [];
    for (const leaf of leaves) {
      const w = { leaf, bytes: leaf.snapshot().subarray(PRE), create: !leaf.created };
      if (leaf.shrunk && leaf.created) late.push(w);
      else early.push(w);
      leaf.shrunk = false;
    }
    const root = this.rootDirty ? (this.root1 ?? (this.root2 as Root)).snapshot() : undefined;
    this.rootDirty = false;
    const writeLeaves = (ws: typeof early): Promise<void> =>
      settleAll(
        ws.map(async (w) => {
          const oid = w.leaf.oid as bigint;
          if (w.create) await io.create(oid, w.bytes);
          else await io.write(oid, 0, w.bytes);
          w.leaf.created = true;
        }),
      );
    try {
      if (counter !== undefined) {
        const b = new Uint8Array(4);
        new DataView(b.buffer).setUint32(0, counter, true);
        await io.write(inodeOid, INODE_OFF.btreeCounter, b);
        this.counterOnDisk = counter;
      }
      await writeLeaves(early);
      if (root) await io.write(inodeOid, SD_INODE_HEADER_SIZE - PRE, root);
      await writeLeaves(late);
    } catch (e) {
      // What landed is unknown: everything this write held is written again next time.
      for (const w of early) this.dirty.add(w.leaf);
      for (const w of late) {
        this.dirty.add(w.leaf);
        w.leaf.shrunk = true;
      }
      if (root) this.rootDirty = true;
      throw e;
    }
  }

  *entries(): Iterable<[number, number]> {
    const nodes = this.root1 ? [this.root1] : (this.root2 as Root).leaves;
    for (const l of nodes) yield* l.entries();
  }
}

/** Read a node's entries, keeping those in (lo, hi] in ascending order. */
async function readLeaf(
  io: IndexIO,
  oid: bigint,
  off: number,
  n: number,
  lo: number,
  hi: number,
): Promise<{ leaf: Leaf; dropped: boolean }> {
  if (n === 0) return { leaf: new Leaf(), dropped: false };
  const b = await io.read(oid, off + BTREE_INDEX_HEADER_SIZE, n * BTREE_INDEX_SIZE);
  if (b.length !== n * BTREE_INDEX_SIZE)
    throw new ProtocolError(`B-tree node read returned ${b.length} bytes, expected ${n * BTREE_INDEX_SIZE}`);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let sorted = true;
  let inRange = true;
  let prev = -1;
  for (let i = 0; i < n; i++) {
    const k = dv.getUint32(8 * i, true);
    if (k <= prev) sorted = false;
    if (k <= lo || k > hi) inRange = false;
    prev = k;
  }
  if (sorted && inRange) return { leaf: Leaf.fromRaw(b), dropped: false };
  const es: [number, number][] = [];
  for (let i = 0; i < n; i++) {
    const k = dv.getUint32(8 * i, true);
    if (k > lo && k <= hi) es.push([k, dv.getUint32(8 * i + 4, true)]);
  }
  es.sort((a, c) => a[0] - c[0]);
  const leaf = new Leaf();
  let last = -1;
  for (const [k, v] of es) {
    if (k === last) continue;
    leaf.insert(k, v);
    last = k;
  }
  return { leaf, dropped: true };
}

async function runLimited(n: number, limit: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < n) await fn(next++);
  };
  await settleAll(Array.from({ length: Math.min(limit, n) }, worker));
}

/** Await every promise; reject with the first failure after all settled. */
export async function settleAll(ps: Promise<unknown>[]): Promise<void> {
  const rs = await Promise.allSettled(ps);
  for (const r of rs) if (r.status === 'rejected') throw r.reason;
}
