/**
 * The data_vdi_id index of an open VDI: which vid owns object idx. Flat
 * volumes keep u32 slots after the inode header; hyper volumes
 * (store_policy 1) keep a B-tree rooted there (lib/sd_inode.c).
 */
import { SD_INODE_HEADER_SIZE } from '../../protocol/constants.js';
import {
  BTREE_INDEX_HEADER_SIZE,
  BTREE_INDEX_SIZE,
  BTREE_INDIRECT_IDX_SIZE,
  INODE_BTREE_MAGIC,
  dataVdiIdOffset,
  decodeBtreeHeader,
  decodeBtreeIndex,
  decodeBtreeIndirect,
  encodeBtreeHeader,
  encodeBtreeIndex,
} from '../../protocol/records.js';
import { ProtocolError, SheepdogError } from '../errors.js';

/** Reads and writes of inode/B-tree bytes, as the client provides them. */
export interface IndexIO {
  read(oid: bigint, offset: number, length: number): Promise<Uint8Array>;
  write(oid: bigint, offset: number, data: Uint8Array): Promise<void>;
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

/** Leaf entries a B-tree node of 4 MiB holds (MAX_INDEX in lib/sd_inode.c). */
export const BTREE_MAX_INDEX = Math.floor((4 * 2 ** 20 - BTREE_INDEX_HEADER_SIZE) / BTREE_INDEX_SIZE);

/**
 * Hyper-volume index. Depth 1 (the root in the inode holds the leaves) is
 * read and written; depth 2 (root of indirect entries pointing at B-tree node
 * objects) is read. The root is written from offset 4660, four zero bytes
 * before data_vdi_id, like dog's header write: a write starting inside
 * data_vdi_id would make the gateway treat B-tree bytes as vid slots and
 * dec-ref objects that do not exist.
 */
export class HyperIndex implements VdiIndex {
  readonly kind = 'hyper' as const;
  readonly depth: number;
  private readonly map: Map<number, number>;
  /** The last root write queued: writes go one at a time (see persist). */
  private tail: Promise<void> = Promise.resolve();
  constructor(depth: number, map: Map<number, number>) {
    this.depth = depth;
    this.map = map;
  }
  static async load(io: IndexIO, inodeOid: bigint): Promise<HyperIndex> {
    const h = decodeBtreeHeader(await io.read(inodeOid, SD_INODE_HEADER_SIZE, BTREE_INDEX_HEADER_SIZE));
    const map = new Map<number, number>();
    if (h.magic === 0 && h.depth === 0 && h.entries === 0) return new HyperIndex(1, map); // never written
    if (h.magic !== INODE_BTREE_MAGIC)
      throw new ProtocolError(`hyper volume index has bad magic 0x${h.magic.toString(16)}`);
    if (h.depth === 1) {
      await readLeaves(io, inodeOid, SD_INODE_HEADER_SIZE, h.entries, map);
    } else if (h.depth === 2) {
      const n = h.entries;
      const b = await io.read(inodeOid, SD_INODE_HEADER_SIZE, BTREE_INDEX_HEADER_SIZE + n * BTREE_INDIRECT_IDX_SIZE);
      for (let i = 0; i < n; i++) {
        const e = decodeBtreeIndirect(b, 0, i);
        const lh = decodeBtreeHeader(await io.read(e.oid, 0, BTREE_INDEX_HEADER_SIZE));
        if (lh.magic !== INODE_BTREE_MAGIC || lh.depth !== 1)
          throw new ProtocolError('hyper volume leaf node is corrupt');
        await readLeaves(io, e.oid, 0, lh.entries, map);
      }
    } else {
      throw new ProtocolError(`hyper volume index has unsupported depth ${h.depth}`);
    }
    return new HyperIndex(h.depth, map);
  }
  get(idx: number): number {
    return this.map.get(idx) ?? 0;
  }
  set(idx: number, vid: number): void {
    if (vid === 0) this.map.delete(idx);
    else this.map.set(idx, vid);
  }
  /**
   * Every persist writes the whole root, so two in flight could land in
   * either order and the later-built one (holding both calls' entries) be
   * overwritten by the earlier: one at a time, each built when its turn
   * comes, so the last write holds every entry set before it.
   */
  persist(io: IndexIO, inodeOid: bigint, _idxs: readonly number[]): Promise<void> {
    return this.serialize(() => this.writeRoot(io, inodeOid));
  }
  serialize<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(fn);
    this.tail = run.then(
      () => {},
      () => {},
    );
    return run;
  }
  private async writeRoot(io: IndexIO, inodeOid: bigint): Promise<void> {
    if (this.depth !== 1) {
      throw new SheepdogError(
        'writing a depth-2 hyper-volume B-tree is not supported (volumes written by this SDK stay at depth 1)',
        'SHEEPDOG_ERR_UNSUPPORTED',
      );
    }
    const keys = [...this.map.keys()].sort((a, b) => a - b);
    if (keys.length > BTREE_MAX_INDEX) {
      throw new SheepdogError(
        `hyper volume index is full at depth 1 (${BTREE_MAX_INDEX} objects); B-tree split is not supported`,
        'SHEEPDOG_ERR_UNSUPPORTED',
      );
    }
    const buf = new Uint8Array(4 + BTREE_INDEX_HEADER_SIZE + keys.length * BTREE_INDEX_SIZE);
    encodeBtreeHeader({ magic: INODE_BTREE_MAGIC, depth: 1, entries: keys.length }, buf, 4);
    keys.forEach((k, i) => encodeBtreeIndex({ idx: k, vdiId: this.map.get(k) ?? 0 }, buf, 4, i));
    await io.write(inodeOid, SD_INODE_HEADER_SIZE - 4, buf);
  }
  *entries(): Iterable<[number, number]> {
    const keys = [...this.map.keys()].sort((a, b) => a - b);
    for (const k of keys) yield [k, this.map.get(k) ?? 0];
  }
}

async function readLeaves(io: IndexIO, oid: bigint, off: number, n: number, map: Map<number, number>): Promise<void> {
  if (n > BTREE_MAX_INDEX) throw new ProtocolError(`B-tree node claims ${n} entries`);
  if (n === 0) return;
  const b = await io.read(oid, off, BTREE_INDEX_HEADER_SIZE + n * BTREE_INDEX_SIZE);
  for (let i = 0; i < n; i++) {
    const e = decodeBtreeIndex(b, 0, i);
    if (e.vdiId !== 0) map.set(e.idx, e.vdiId);
  }
}

/** Await every promise; reject with the first failure after all settled. */
export async function settleAll(ps: Promise<unknown>[]): Promise<void> {
  const rs = await Promise.allSettled(ps);
  for (const r of rs) if (r.status === 'rejected') throw r.reason;
}
