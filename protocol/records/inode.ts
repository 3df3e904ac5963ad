/**
 * The inode (struct sd_inode): its 4664-byte header, the flat data_vdi_id[]
 * index after it, and the sizes derived from a VDI's size. INODE_OFF is the
 * one table of header field offsets: the codec, the client and the embedded
 * sheep all use it.
 */
import { SD_INODE_HEADER_SIZE, SD_MAX_VDI_LEN, SD_MAX_VDI_TAG_LEN } from '../constants.js';
import { ProtocolError } from '../errors.js';
import { cstr, need, u8, u32, u64, w8, w32, w64, wcstr } from '../bytes.js';

export interface InodeHeader {
  name: string;
  tag: string;
  /** sec << 32 | nsec */
  createTime: bigint;
  /** Non-zero means the inode is a snapshot. */
  snapCtime: bigint;
  vmClockNsec: bigint;
  vdiSize: bigint;
  vmStateSize: bigint;
  copyPolicy: number;
  storePolicy: number;
  nrCopies: number;
  blockSizeShift: number;
  snapId: number;
  vdiId: number;
  parentVdiId: number;
  btreeCounter: number;
}

/** Byte offsets of the inode's fields (offsetof in struct sd_inode); `dataVdiId` is where the index starts. */
export const INODE_OFF = {
  name: 0,
  tag: 256,
  createTime: 512,
  snapCtime: 520,
  vmClockNsec: 528,
  vdiSize: 536,
  vmStateSize: 544,
  copyPolicy: 552,
  storePolicy: 553,
  nrCopies: 554,
  blockSizeShift: 555,
  snapId: 556,
  vdiId: 560,
  parentVdiId: 564,
  btreeCounter: 568,
  dataVdiId: SD_INODE_HEADER_SIZE,
} as const;

/** Decode the 4664-byte inode header at `off`. */
export function decodeInodeHeader(b: Uint8Array, off = 0): InodeHeader {
  need(b, off, SD_INODE_HEADER_SIZE, 'inode header');
  const O = INODE_OFF;
  return {
    name: cstr(b, off + O.name, SD_MAX_VDI_LEN),
    tag: cstr(b, off + O.tag, SD_MAX_VDI_TAG_LEN),
    createTime: u64(b, off + O.createTime),
    snapCtime: u64(b, off + O.snapCtime),
    vmClockNsec: u64(b, off + O.vmClockNsec),
    vdiSize: u64(b, off + O.vdiSize),
    vmStateSize: u64(b, off + O.vmStateSize),
    copyPolicy: u8(b, off + O.copyPolicy),
    storePolicy: u8(b, off + O.storePolicy),
    nrCopies: u8(b, off + O.nrCopies),
    blockSizeShift: u8(b, off + O.blockSizeShift),
    snapId: u32(b, off + O.snapId),
    vdiId: u32(b, off + O.vdiId),
    parentVdiId: u32(b, off + O.parentVdiId),
    btreeCounter: u32(b, off + O.btreeCounter),
  };
}

/** Encode the 4664-byte inode header at `off` (the unused area is zeroed). */
export function encodeInodeHeader(h: InodeHeader, out: Uint8Array, off = 0): void {
  need(out, off, SD_INODE_HEADER_SIZE, 'inode header');
  const O = INODE_OFF;
  out.fill(0, off, off + SD_INODE_HEADER_SIZE);
  wcstr(out, off + O.name, SD_MAX_VDI_LEN, h.name, 'VDI name');
  wcstr(out, off + O.tag, SD_MAX_VDI_TAG_LEN, h.tag, 'snapshot tag');
  w64(out, off + O.createTime, h.createTime);
  w64(out, off + O.snapCtime, h.snapCtime);
  w64(out, off + O.vmClockNsec, h.vmClockNsec);
  w64(out, off + O.vdiSize, h.vdiSize);
  w64(out, off + O.vmStateSize, h.vmStateSize);
  w8(out, off + O.copyPolicy, h.copyPolicy);
  w8(out, off + O.storePolicy, h.storePolicy);
  w8(out, off + O.nrCopies, h.nrCopies);
  w8(out, off + O.blockSizeShift, h.blockSizeShift);
  w32(out, off + O.snapId, h.snapId);
  w32(out, off + O.vdiId, h.vdiId);
  w32(out, off + O.parentVdiId, h.parentVdiId);
  w32(out, off + O.btreeCounter, h.btreeCounter);
}

/** Byte offset of `data_vdi_id[i]` inside the inode object. */
export function dataVdiIdOffset(i: number): number {
  return INODE_OFF.dataVdiId + 4 * i;
}

/** Read `count` index slots (u32 each) starting at byte `off` of `b`. */
export function decodeIndexSlots(b: Uint8Array, off: number, count: number): Uint32Array {
  if (!Number.isInteger(count) || count < 0) throw new ProtocolError(`inode index: bad slot count ${count}`);
  need(b, off, count * 4, 'inode index');
  const out = new Uint32Array(count);
  for (let i = 0; i < count; i++) out[i] = u32(b, off + 4 * i);
  return out;
}

/** Encode index slots as little-endian u32 into `out` at `off`. */
export function encodeIndexSlots(slots: ArrayLike<number>, out: Uint8Array, off = 0): void {
  need(out, off, slots.length * 4, 'inode index');
  for (let i = 0; i < slots.length; i++) w32(out, off + 4 * i, slots[i] as number);
}

/** Objects a VDI of `size` bytes spans with objects of 2^bss bytes. */
export function objectCount(size: number | bigint, blockSizeShift: number): number {
  const s = BigInt(size);
  const os = 1n << BigInt(blockSizeShift);
  return Number((s + os - 1n) / os);
}

/** Bytes of a VDI's metadata a reader needs: header plus the index slots its size spans (`sd_inode_get_meta_size`). */
export function inodeMetaSize(size: number | bigint, blockSizeShift: number): number {
  return SD_INODE_HEADER_SIZE + 4 * objectCount(size, blockSizeShift);
}
