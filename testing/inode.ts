/**
 * Inode layout helpers for the embedded sheep: header fields read from a
 * stored (sparse) inode object, and the server-side half of the hyper-volume
 * B-tree of lib/sd_inode.c (lookup, walk, copy). The layout itself (field
 * offsets, header codec, B-tree records) is protocol/records' model.
 */
import {
  SD_INODE_DATA_INDEX,
  SD_INODE_GREF_OFFSET,
  SD_INODE_HEADER_SIZE,
  SD_MAX_VDI_LEN,
  SD_MAX_VDI_TAG_LEN,
} from '../protocol/constants.js';
import { u64 } from '../protocol/bytes.js';
import {
  BTREE_INDEX_HEADER_SIZE,
  BTREE_INDEX_SIZE,
  BTREE_INDIRECT_IDX_SIZE,
  BTREE_MAX_INDEX,
  BTREE_MAX_INDIRECT,
  type BtreeIndexHeader,
  decodeBtreeHeader,
  encodeBtreeHeader,
  INODE_BTREE_MAGIC,
} from '../protocol/records/btree.js';
import { decodeInodeHeader, encodeInodeHeader, INODE_OFF, type InodeHeader } from '../protocol/records/inode.js';
import type { SparseObject } from './store.js';

/** Field offsets of struct sd_inode (the codec's table). */
export const OFF = INODE_OFF;

export const DATA_OFF = INODE_OFF.dataVdiId;
export const GREF_OFF = SD_INODE_GREF_OFFSET;
export const MAX_SLOTS = SD_INODE_DATA_INDEX;

/** The codec's inode header, with name and tag as the stored bytes (sheep compares them with strncmp). */
export interface InodeHead extends Omit<InodeHeader, 'name' | 'tag'> {
  /** The 256-byte name field as stored. */
  name: Uint8Array;
  tag: Uint8Array;
}

export function readHead(obj: SparseObject): InodeHead {
  const b = obj.read(0, SD_INODE_HEADER_SIZE);
  return {
    ...decodeInodeHeader(b),
    name: b.subarray(OFF.name, OFF.name + SD_MAX_VDI_LEN),
    tag: b.subarray(OFF.tag, OFF.tag + SD_MAX_VDI_TAG_LEN),
  };
}

/** C `strncmp(a, b, n)` on byte fields (missing bytes read as NUL). */
export function strncmp(a: Uint8Array, b: Uint8Array, n = SD_MAX_VDI_LEN): number {
  for (let i = 0; i < n; i++) {
    const ca = a[i] ?? 0;
    const cb = b[i] ?? 0;
    if (ca !== cb) return ca - cb;
    if (ca === 0) return 0;
  }
  return 0;
}

/** The bytes of a C string in a fixed field (up to the first NUL). */
export function cbytes(b: Uint8Array, len = b.length): Uint8Array {
  const n = Math.min(len, b.length);
  let e = 0;
  while (e < n && b[e] !== 0) e++;
  return b.subarray(0, e);
}

/** A new inode's header fields; the name as raw bytes, as sheep copies it. */
export type NewInode = Pick<
  InodeHeader,
  | 'vdiId'
  | 'createTime'
  | 'vdiSize'
  | 'copyPolicy'
  | 'storePolicy'
  | 'nrCopies'
  | 'blockSizeShift'
  | 'snapId'
  | 'parentVdiId'
> & { name: Uint8Array };

/** The first bytes of a fresh inode as `alloc_inode()` fills them (header, plus the B-tree root of a hyper volume). */
export function newInodeHead(n: NewInode, withRoot: boolean): Uint8Array {
  const b = new Uint8Array(SD_INODE_HEADER_SIZE + (withRoot ? BTREE_INDEX_HEADER_SIZE : 0));
  encodeInodeHeader({ ...n, name: '', tag: '', snapCtime: 0n, vmClockNsec: 0n, vmStateSize: 0n, btreeCounter: 0 }, b);
  // pstrcpy(new->name, 256, name): at most 255 bytes and a NUL, copied as bytes.
  b.set(cbytes(n.name, SD_MAX_VDI_LEN - 1), OFF.name);
  if (withRoot) encodeBtreeHeader({ magic: INODE_BTREE_MAGIC, depth: 1, entries: 0 }, b, DATA_OFF);
  return b;
}

// ---------------------------------------------------------------- B-tree

const HDR = BTREE_INDEX_HEADER_SIZE;
const IDX = BTREE_INDEX_SIZE;
const IND = BTREE_INDIRECT_IDX_SIZE;
const MAX_INDEX = BTREE_MAX_INDEX;
const MAX_INDIRECT = BTREE_MAX_INDIRECT;

export type BtreeHeader = BtreeIndexHeader;

export function btreeHeaderAt(obj: SparseObject, off: number): BtreeHeader {
  return decodeBtreeHeader(obj.read(off, HDR));
}

/** `nbsearch`: index of the first entry whose idx is >= key (entries sorted by idx). */
function lowerBound(n: number, idxAt: (i: number) => number, key: number): number {
  let l = 0;
  let r = n - 1;
  while (l <= r) {
    const m = l + Math.floor((r - l) / 2);
    const v = idxAt(m);
    if (key < v) r = m - 1;
    else if (key > v) l = m + 1;
    else return m;
  }
  return l;
}

export interface BtreeSlot {
  /** The object holding the sd_index entry (the inode or a leaf node). */
  holder: 'inode' | bigint;
  /** Byte offset of the entry's vdi_id inside its holder. */
  vidOff: number;
  vid: number;
}

/**
 * `search_whole_btree()` for a lookup: the sd_index entry of `idx` in a
 * hyper volume, or undefined. `leaf(oid)` returns a stored B-tree node.
 */
export function hyperFind(
  inode: SparseObject,
  idx: number,
  leaf: (oid: bigint) => SparseObject | undefined,
): BtreeSlot | undefined {
  if (inode.u32(DATA_OFF) === 0) return undefined; // B-tree not initialised
  const root = btreeHeaderAt(inode, DATA_OFF);
  if (root.depth === 1) {
    const n = Math.min(root.entries, MAX_INDEX);
    const at = (i: number): number => inode.u32(DATA_OFF + HDR + i * IDX);
    const p = lowerBound(n, at, idx);
    if (p < n && at(p) === idx) {
      const vidOff = DATA_OFF + HDR + p * IDX + 4;
      return { holder: 'inode', vidOff, vid: inode.u32(vidOff) };
    }
    return undefined;
  }
  if (root.depth === 2) {
    const n = Math.min(root.entries, MAX_INDIRECT);
    const at = (i: number): number => inode.u32(DATA_OFF + HDR + i * IND);
    const p = lowerBound(n, at, idx);
    if (p >= n) return undefined;
    const oid = indirectOid(inode, p);
    const node = leaf(oid);
    if (!node) return undefined;
    const h = btreeHeaderAt(node, 0);
    const m = Math.min(h.entries, MAX_INDEX);
    const lat = (i: number): number => node.u32(HDR + i * IDX);
    const q = lowerBound(m, lat, idx);
    if (q < m && lat(q) === idx) {
      const vidOff = HDR + q * IDX + 4;
      return { holder: oid, vidOff, vid: node.u32(vidOff) };
    }
  }
  return undefined;
}

function indirectOid(inode: SparseObject, i: number): bigint {
  const b = inode.read(DATA_OFF + HDR + i * IND + 8, 8);
  return u64(b, 0);
}

/**
 * `sd_inode_index_walk()`: every sd_index (idx, vdi_id) of a hyper volume.
 * Leaf nodes that cannot be read are skipped, as sheep does. Depths other
 * than 1 and 2 (sheep panics on them) walk nothing.
 */
export function hyperWalk(
  inode: SparseObject,
  leaf: (oid: bigint) => SparseObject | undefined,
  fn: (idx: number, vid: number) => void,
): void {
  const root = btreeHeaderAt(inode, DATA_OFF);
  if (root.depth === 1) {
    const n = Math.min(root.entries, MAX_INDEX);
    for (let i = 0; i < n; i++) {
      const o = DATA_OFF + HDR + i * IDX;
      fn(inode.u32(o), inode.u32(o + 4));
    }
  } else if (root.depth === 2) {
    const n = Math.min(root.entries, MAX_INDIRECT);
    for (let i = 0; i < n; i++) {
      const node = leaf(indirectOid(inode, i));
      if (!node) continue;
      const h = btreeHeaderAt(node, 0);
      const m = Math.min(h.entries, MAX_INDEX);
      for (let k = 0; k < m; k++) fn(node.u32(HDR + k * IDX), node.u32(HDR + k * IDX + 4));
    }
  }
}

/** The indirect entries (leaf oids) of a depth-2 root, with the byte offset of each oid field. */
export function hyperIndirects(inode: SparseObject): { oid: bigint; oidOff: number }[] {
  const root = btreeHeaderAt(inode, DATA_OFF);
  if (root.depth <= 1) return [];
  const n = Math.min(root.entries, MAX_INDIRECT);
  const out: { oid: bigint; oidOff: number }[] = [];
  for (let i = 0; i < n; i++) out.push({ oid: indirectOid(inode, i), oidOff: DATA_OFF + HDR + i * IND + 8 });
  return out;
}
