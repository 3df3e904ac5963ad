/**
 * The B-tree of a hyper volume (store_policy 1, lib/sd_inode.c): a node is an
 * 8-byte header followed by sd_index leaves (depth 1) or sd_indirect_idx
 * entries (depth 2). The root lies where the flat index would start.
 */
import { SD_INODE_DATA_INDEX_SIZE } from '../constants.js';
import { ProtocolError } from '../errors.js';
import { need, u16, u32, u64, w16, w32, w64 } from '../bytes.js';

export const INODE_BTREE_MAGIC = 0x6274;
export const BTREE_INDEX_HEADER_SIZE = 8;
export const BTREE_INDEX_SIZE = 8;
/** struct sd_indirect_idx {u32 idx; u64 oid} is 16 bytes with C alignment. */
export const BTREE_INDIRECT_IDX_SIZE = 16;
/** sd_index entries a node holds after its header (the node is as large as the flat index). */
export const BTREE_MAX_INDEX = Math.floor((SD_INODE_DATA_INDEX_SIZE - BTREE_INDEX_HEADER_SIZE) / BTREE_INDEX_SIZE);
/** sd_indirect_idx entries a depth-2 node holds after its header. */
export const BTREE_MAX_INDIRECT = Math.floor(
  (SD_INODE_DATA_INDEX_SIZE - BTREE_INDEX_HEADER_SIZE) / BTREE_INDIRECT_IDX_SIZE,
);

export interface BtreeIndexHeader {
  magic: number;
  /** 1: the node holds sd_index leaves; 2: it holds sd_indirect_idx entries. */
  depth: number;
  entries: number;
}
export function decodeBtreeHeader(b: Uint8Array, off = 0): BtreeIndexHeader {
  need(b, off, BTREE_INDEX_HEADER_SIZE, 'B-tree header');
  return { magic: u16(b, off), depth: u16(b, off + 2), entries: u32(b, off + 4) };
}
export function encodeBtreeHeader(h: BtreeIndexHeader, out: Uint8Array, off = 0): void {
  need(out, off, BTREE_INDEX_HEADER_SIZE, 'B-tree header');
  w16(out, off, h.magic);
  w16(out, off + 2, h.depth);
  w32(out, off + 4, h.entries);
}
/** Offset of entry `i` of `size` bytes in a node whose header is at `off`; checks both. */
function btreeEntry(b: Uint8Array, off: number, i: number, size: number, what: string): number {
  if (!Number.isInteger(i) || i < 0) throw new ProtocolError(`${what}: bad entry number ${i}`);
  need(b, off, BTREE_INDEX_HEADER_SIZE + (i + 1) * size, what);
  return off + BTREE_INDEX_HEADER_SIZE + i * size;
}
/** Leaf entry `i` (struct sd_index) of a node whose header is at `off`. */
export function decodeBtreeIndex(b: Uint8Array, off: number, i: number): { idx: number; vdiId: number } {
  const o = btreeEntry(b, off, i, BTREE_INDEX_SIZE, 'B-tree index');
  return { idx: u32(b, o), vdiId: u32(b, o + 4) };
}
export function encodeBtreeIndex(e: { idx: number; vdiId: number }, out: Uint8Array, off: number, i: number): void {
  const o = btreeEntry(out, off, i, BTREE_INDEX_SIZE, 'B-tree index');
  w32(out, o, e.idx);
  w32(out, o + 4, e.vdiId);
}
/** Indirect entry `i` (struct sd_indirect_idx) of a depth-2 node whose header is at `off`. */
export function decodeBtreeIndirect(b: Uint8Array, off: number, i: number): { idx: number; oid: bigint } {
  const o = btreeEntry(b, off, i, BTREE_INDIRECT_IDX_SIZE, 'B-tree indirect index');
  return { idx: u32(b, o), oid: u64(b, o + 8) };
}
export function encodeBtreeIndirect(e: { idx: number; oid: bigint }, out: Uint8Array, off: number, i: number): void {
  const o = btreeEntry(out, off, i, BTREE_INDIRECT_IDX_SIZE, 'B-tree indirect index');
  w32(out, o, e.idx);
  w32(out, o + 4, 0);
  w64(out, o + 8, e.oid);
}
