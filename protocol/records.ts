/**
 * Fixed-layout records carried in bodies: the inode header and its index,
 * sd_node, node_id, epoch_log, cluster_info, vdi_state, sheepdog_vdi_attr,
 * the VDI bitmaps and the hyper-volume B-tree nodes. Offsets are those of the
 * sheepdog 1.0 structs on x86-64. u64 fields are bigint.
 */
import {
  CLUSTER_INFO_SIZE,
  EPOCH_LOG_HEADER_SIZE,
  NODE_ID_SIZE,
  SD_ATTR_OBJ_SIZE,
  SD_INODE_HEADER_SIZE,
  SD_MAX_COPIES,
  SD_MAX_NODES,
  SD_MAX_VDI_ATTR_KEY_LEN,
  SD_MAX_VDI_ATTR_VALUE_LEN,
  SD_MAX_VDI_LEN,
  SD_MAX_VDI_TAG_LEN,
  SD_NODE_SIZE,
  SD_NR_VDIS,
  STORE_LEN,
  VDI_STATE_SIZE,
} from './constants.js';
import { InvalidArgumentError, ProtocolError } from './errors.js';
import { copyBytes, cstr, i16, need, u8, u16, u32, u64, utf8Bytes, w8, w16, w32, w64, wcstr } from './bytes.js';

// ---------------------------------------------------------------- inode

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
  return {
    name: cstr(b, off, SD_MAX_VDI_LEN),
    tag: cstr(b, off + 256, SD_MAX_VDI_TAG_LEN),
    createTime: u64(b, off + 512),
    snapCtime: u64(b, off + 520),
    vmClockNsec: u64(b, off + 528),
    vdiSize: u64(b, off + 536),
    vmStateSize: u64(b, off + 544),
    copyPolicy: u8(b, off + 552),
    storePolicy: u8(b, off + 553),
    nrCopies: u8(b, off + 554),
    blockSizeShift: u8(b, off + 555),
    snapId: u32(b, off + 556),
    vdiId: u32(b, off + 560),
    parentVdiId: u32(b, off + 564),
    btreeCounter: u32(b, off + 568),
  };
}

/** Encode the 4664-byte inode header at `off` (the unused area is zeroed). */
export function encodeInodeHeader(h: InodeHeader, out: Uint8Array, off = 0): void {
  need(out, off, SD_INODE_HEADER_SIZE, 'inode header');
  out.fill(0, off, off + SD_INODE_HEADER_SIZE);
  wcstr(out, off, SD_MAX_VDI_LEN, h.name, 'VDI name');
  wcstr(out, off + 256, SD_MAX_VDI_TAG_LEN, h.tag, 'snapshot tag');
  w64(out, off + 512, h.createTime);
  w64(out, off + 520, h.snapCtime);
  w64(out, off + 528, h.vmClockNsec);
  w64(out, off + 536, h.vdiSize);
  w64(out, off + 544, h.vmStateSize);
  w8(out, off + 552, h.copyPolicy);
  w8(out, off + 553, h.storePolicy);
  w8(out, off + 554, h.nrCopies);
  w8(out, off + 555, h.blockSizeShift);
  w32(out, off + 556, h.snapId);
  w32(out, off + 560, h.vdiId);
  w32(out, off + 564, h.parentVdiId);
  w32(out, off + 568, h.btreeCounter);
}

/** Byte offset of `data_vdi_id[i]` inside the inode object. */
export function dataVdiIdOffset(i: number): number {
  return SD_INODE_HEADER_SIZE + 4 * i;
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

// ------------------------------------------------------- hyper-volume B-tree

export const INODE_BTREE_MAGIC = 0x6274;
export const BTREE_INDEX_HEADER_SIZE = 8;
export const BTREE_INDEX_SIZE = 8;
/** struct sd_indirect_idx {u32 idx; u64 oid} is 16 bytes with C alignment. */
export const BTREE_INDIRECT_IDX_SIZE = 16;

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

// --------------------------------------------------------- addresses, nodes

/** Text form of a 16-byte sheep address: IPv4 when the first 12 bytes are zero; '' when all are zero. */
export function addrToString(b: Uint8Array, off = 0): string {
  need(b, off, 16, 'address');
  let zero12 = true;
  for (let i = 0; i < 12; i++) if (b[off + i] !== 0) zero12 = false;
  if (zero12) {
    const v4 = `${b[off + 12]}.${b[off + 13]}.${b[off + 14]}.${b[off + 15]}`;
    return v4 === '0.0.0.0' ? '' : v4;
  }
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((b[off + i] as number) << 8) | (b[off + i + 1] as number));
  // Compress the longest run of zero groups (RFC 5952).
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i > 1) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hx = (g: number[]): string => g.map((x) => x.toString(16)).join(':');
  if (best < 0) return hx(groups);
  return `${hx(groups.slice(0, best))}::${hx(groups.slice(best + bestLen))}`;
}

/** Write an IPv4/IPv6 address text (or '' for none) as the 16-byte sheep form. */
export function addrFromString(s: string, out: Uint8Array, off = 0): void {
  need(out, off, 16, 'address');
  out.fill(0, off, off + 16);
  if (s === '') return;
  const v4 = parseIPv4(s);
  if (v4) {
    out.set(v4, off + 12);
    return;
  }
  const v6 = parseIPv6(s);
  if (!v6) throw new InvalidArgumentError(`not an IPv4 or IPv6 address: ${JSON.stringify(s)}`);
  out.set(v6, off);
}

function parseIPv4(s: string): Uint8Array | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return undefined;
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255)) return undefined;
  return Uint8Array.from(parts);
}

function parseIPv6(s0: string): Uint8Array | undefined {
  const s = s0.startsWith('[') && s0.endsWith(']') ? s0.slice(1, -1) : s0;
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  const parse = (h: string): number[] | undefined => {
    if (h === '') return [];
    const out: number[] = [];
    const parts = h.split(':');
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i] as string;
      if (i === parts.length - 1 && p.includes('.')) {
        const v4 = parseIPv4(p);
        if (!v4) return undefined;
        out.push(((v4[0] as number) << 8) | (v4[1] as number), ((v4[2] as number) << 8) | (v4[3] as number));
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(p)) return undefined;
        out.push(Number.parseInt(p, 16));
      }
    }
    return out;
  };
  const a = parse(halves[0] as string);
  const b = halves.length === 2 ? parse(halves[1] as string) : [];
  if (!a || !b) return undefined;
  let groups: number[];
  if (halves.length === 2) {
    if (a.length + b.length > 7) return undefined;
    groups = [...a, ...new Array<number>(8 - a.length - b.length).fill(0), ...b];
  } else {
    if (a.length !== 8) return undefined;
    groups = a;
  }
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  });
  return out;
}

export interface NodeId {
  addr: string;
  port: number;
  ioAddr: string;
  ioPort: number;
}

export function decodeNodeId(b: Uint8Array, off = 0): NodeId {
  need(b, off, NODE_ID_SIZE, 'node_id');
  return {
    addr: addrToString(b, off),
    port: u16(b, off + 16),
    ioAddr: addrToString(b, off + 18),
    ioPort: u16(b, off + 34),
  };
}
export function encodeNodeId(n: NodeId, out: Uint8Array, off = 0): void {
  need(out, off, NODE_ID_SIZE, 'node_id');
  out.fill(0, off, off + NODE_ID_SIZE);
  addrFromString(n.addr, out, off);
  w16(out, off + 16, n.port);
  addrFromString(n.ioAddr, out, off + 18);
  w16(out, off + 34, n.ioPort);
}

export interface SdNode {
  nid: NodeId;
  nrVnodes: number;
  zone: number;
  space: bigint;
}

/**
 * Decode a wire `struct sd_node` (80 bytes). Its first 24 bytes are the
 * sender's `struct rb_node` (pointers): skipped, never interpreted.
 */
export function decodeSdNode(b: Uint8Array, off = 0): SdNode {
  need(b, off, SD_NODE_SIZE, 'sd_node');
  return {
    nid: decodeNodeId(b, off + 24),
    nrVnodes: u16(b, off + 64),
    zone: u32(b, off + 68),
    space: u64(b, off + 72),
  };
}
/** Encode an sd_node; the rb_node prefix is written as zeros. */
export function encodeSdNode(n: SdNode, out: Uint8Array, off = 0): void {
  need(out, off, SD_NODE_SIZE, 'sd_node');
  out.fill(0, off, off + SD_NODE_SIZE);
  encodeNodeId(n.nid, out, off + 24);
  w16(out, off + 64, n.nrVnodes);
  w32(out, off + 68, n.zone);
  w64(out, off + 72, n.space);
}

/** Decode `count` consecutive sd_node records. */
export function decodeNodeList(b: Uint8Array, count: number, off = 0): SdNode[] {
  if (!Number.isInteger(count) || count < 0) throw new ProtocolError(`bad node count ${count}`);
  if (count > SD_MAX_NODES) throw new ProtocolError(`node count ${count} exceeds SD_MAX_NODES`);
  need(b, off, count * SD_NODE_SIZE, 'node list');
  const out: SdNode[] = [];
  for (let i = 0; i < count; i++) out.push(decodeSdNode(b, off + i * SD_NODE_SIZE));
  return out;
}

// ---------------------------------------------------------------- epoch log

export interface EpochLog {
  ctime: bigint;
  /** Seconds since the epoch (time_t). */
  time: bigint;
  epoch: number;
  nrNodes: number;
  disableRecovery: number;
  nrCopies: number;
  copyPolicy: number;
  flags: number;
  drvName: string;
  nodes: SdNode[];
}

/** Bytes one epoch_log entry takes in a STAT_CLUSTER reply whose request said `nodesNr`. */
export function epochLogStride(nodesNr: number): number {
  return EPOCH_LOG_HEADER_SIZE + nodesNr * SD_NODE_SIZE;
}

export function decodeEpochLog(b: Uint8Array, off = 0, maxNodes = SD_MAX_NODES): EpochLog {
  need(b, off, EPOCH_LOG_HEADER_SIZE, 'epoch_log');
  const nrNodes = u32(b, off + 20);
  const n = Math.min(nrNodes, maxNodes);
  return {
    ctime: u64(b, off),
    time: u64(b, off + 8),
    epoch: u32(b, off + 16),
    nrNodes,
    disableRecovery: u8(b, off + 24),
    nrCopies: u8(b, off + 25),
    copyPolicy: u8(b, off + 26),
    flags: u16(b, off + 30),
    drvName: cstr(b, off + 32, STORE_LEN),
    nodes: decodeNodeList(b, n, off + EPOCH_LOG_HEADER_SIZE),
  };
}

export function encodeEpochLog(e: EpochLog, out: Uint8Array, off = 0, stride = epochLogStride(e.nodes.length)): void {
  need(out, off, stride, 'epoch_log');
  out.fill(0, off, off + stride);
  w64(out, off, e.ctime);
  w64(out, off + 8, e.time);
  w32(out, off + 16, e.epoch);
  w32(out, off + 20, e.nrNodes);
  w8(out, off + 24, e.disableRecovery);
  w8(out, off + 25, e.nrCopies);
  w8(out, off + 26, e.copyPolicy);
  w16(out, off + 30, e.flags);
  // drv_name[16] ends where the nodes start: a 16-byte name has no NUL, and
  // nothing may be written past off + 48 (wcstr's NUL would be).
  const drv = utf8Bytes(e.drvName.slice(0, STORE_LEN));
  if (drv.length > STORE_LEN || drv.includes(0)) {
    throw new InvalidArgumentError(`driver name must be at most ${STORE_LEN} bytes without NUL`);
  }
  out.set(drv, off + 32);
  const room = Math.floor((stride - EPOCH_LOG_HEADER_SIZE) / SD_NODE_SIZE);
  e.nodes.slice(0, room).forEach((n, i) => encodeSdNode(n, out, off + EPOCH_LOG_HEADER_SIZE + i * SD_NODE_SIZE));
}

/**
 * Decode a STAT_CLUSTER reply body: epoch logs newest first, each `stride`
 * bytes (48 + nodesNr × 80, from the request).
 */
export function decodeEpochLogs(body: Uint8Array, nodesNr: number): EpochLog[] {
  const stride = epochLogStride(nodesNr);
  const out: EpochLog[] = [];
  for (let o = 0; o + stride <= body.length; o += stride) out.push(decodeEpochLog(body, o, nodesNr));
  return out;
}

// ------------------------------------------------------------- cluster info

export interface ClusterInfo {
  protoVer: number;
  disableRecovery: number;
  nrNodes: number;
  epoch: number;
  /** 0 means the cluster is not formatted. */
  ctime: bigint;
  flags: number;
  nrCopies: number;
  copyPolicy: number;
  status: number;
  blockSizeShift: number;
  defaultStore: string;
  nodes: SdNode[];
}

export function decodeClusterInfo(b: Uint8Array, off = 0): ClusterInfo {
  need(b, off, 48, 'cluster_info');
  const nrNodes = i16(b, off + 2);
  const room = Math.floor((b.length - off - 48) / SD_NODE_SIZE);
  const n = Math.max(0, Math.min(nrNodes, room, SD_MAX_NODES));
  return {
    protoVer: u8(b, off),
    disableRecovery: u8(b, off + 1),
    nrNodes,
    epoch: u32(b, off + 4),
    ctime: u64(b, off + 8),
    flags: u16(b, off + 16),
    nrCopies: u8(b, off + 18),
    copyPolicy: u8(b, off + 19),
    status: u8(b, off + 20),
    blockSizeShift: u8(b, off + 21),
    defaultStore: cstr(b, off + 25, STORE_LEN),
    nodes: decodeNodeList(b, n, off + 48),
  };
}

/** Encode a cluster_info; `out` from `off` must hold 48 + 80 × nodes bytes (CLUSTER_INFO_SIZE for a full reply). */
export function encodeClusterInfo(c: ClusterInfo, out: Uint8Array, off = 0): void {
  const size = Math.min(CLUSTER_INFO_SIZE, out.length - off);
  need(out, off, 48 + c.nodes.length * SD_NODE_SIZE, 'cluster_info');
  out.fill(0, off, off + size);
  w8(out, off, c.protoVer);
  w8(out, off + 1, c.disableRecovery);
  w16(out, off + 2, c.nrNodes & 0xffff);
  w32(out, off + 4, c.epoch);
  w64(out, off + 8, c.ctime);
  w16(out, off + 16, c.flags);
  w8(out, off + 18, c.nrCopies);
  w8(out, off + 19, c.copyPolicy);
  w8(out, off + 20, c.status);
  w8(out, off + 21, c.blockSizeShift);
  wcstr(out, off + 25, STORE_LEN + 1, c.defaultStore.slice(0, STORE_LEN), 'store name');
  c.nodes.forEach((n, i) => encodeSdNode(n, out, off + 48 + i * SD_NODE_SIZE));
}

// ---------------------------------------------------------------- vdi_state

export interface VdiState {
  vid: number;
  nrCopies: number;
  snapshot: number;
  deleted: number;
  copyPolicy: number;
  blockSizeShift: number;
  parentVid: number;
  /** LockState: 1 unlocked, 2 locked, 3 shared. */
  lockState: number;
  lockOwner: NodeId;
  nrParticipants: number;
  participantsState: number[];
  participants: NodeId[];
}

export function decodeVdiState(b: Uint8Array, off = 0): VdiState {
  need(b, off, VDI_STATE_SIZE, 'vdi_state');
  const nrParticipants = u32(b, off + 60);
  const n = Math.min(nrParticipants, SD_MAX_COPIES);
  const participantsState: number[] = [];
  const participants: NodeId[] = [];
  for (let i = 0; i < n; i++) {
    participantsState.push(u32(b, off + 64 + 4 * i));
    participants.push(decodeNodeId(b, off + 188 + NODE_ID_SIZE * i));
  }
  return {
    vid: u32(b, off),
    nrCopies: u8(b, off + 4),
    snapshot: u8(b, off + 5),
    deleted: u8(b, off + 6),
    copyPolicy: u8(b, off + 7),
    blockSizeShift: u8(b, off + 8),
    parentVid: u32(b, off + 12),
    lockState: u32(b, off + 16),
    lockOwner: decodeNodeId(b, off + 20),
    nrParticipants,
    participantsState,
    participants,
  };
}

export function encodeVdiState(s: VdiState, out: Uint8Array, off = 0): void {
  need(out, off, VDI_STATE_SIZE, 'vdi_state');
  if (s.participants.length > SD_MAX_COPIES) throw new InvalidArgumentError('too many participants');
  out.fill(0, off, off + VDI_STATE_SIZE);
  w32(out, off, s.vid);
  w8(out, off + 4, s.nrCopies);
  w8(out, off + 5, s.snapshot);
  w8(out, off + 6, s.deleted);
  w8(out, off + 7, s.copyPolicy);
  w8(out, off + 8, s.blockSizeShift);
  w32(out, off + 12, s.parentVid);
  w32(out, off + 16, s.lockState);
  encodeNodeId(s.lockOwner, out, off + 20);
  w32(out, off + 60, s.nrParticipants);
  s.participantsState.forEach((v, i) => w32(out, off + 64 + 4 * i, v));
  s.participants.forEach((p, i) => encodeNodeId(p, out, off + 188 + NODE_ID_SIZE * i));
}

/** Decode a GET_VDI_COPIES reply body (whole vdi_state records). */
export function decodeVdiStates(body: Uint8Array): VdiState[] {
  const out: VdiState[] = [];
  for (let o = 0; o + VDI_STATE_SIZE <= body.length; o += VDI_STATE_SIZE) out.push(decodeVdiState(body, o));
  return out;
}

// ----------------------------------------------------------------- vdi attr

export interface VdiAttr {
  name: string;
  tag: string;
  ctime: bigint;
  snapId: number;
  key: string;
  /** value_len bytes of the value. */
  value: Uint8Array;
}

export function decodeVdiAttr(b: Uint8Array, off = 0): VdiAttr {
  // Accept a body truncated after the key (dog sends the whole struct, but a
  // reader of an attr object may ask only for header + key + value_len bytes).
  need(b, off, 784, 'sheepdog_vdi_attr');
  const valueLen = u32(b, off + 524);
  if (valueLen > SD_MAX_VDI_ATTR_VALUE_LEN) throw new ProtocolError(`attr value_len ${valueLen} exceeds 65536`);
  const avail = Math.min(valueLen, b.length - off - 784);
  return {
    name: cstr(b, off, SD_MAX_VDI_LEN),
    tag: cstr(b, off + 256, SD_MAX_VDI_TAG_LEN),
    ctime: u64(b, off + 512),
    snapId: u32(b, off + 520),
    key: cstr(b, off + 528, SD_MAX_VDI_ATTR_KEY_LEN),
    value: copyBytes(b, off + 784, off + 784 + avail),
  };
}

export function encodeVdiAttr(a: VdiAttr, out: Uint8Array, off = 0): void {
  need(out, off, SD_ATTR_OBJ_SIZE, 'sheepdog_vdi_attr');
  if (a.value.length > SD_MAX_VDI_ATTR_VALUE_LEN) {
    throw new InvalidArgumentError(`attribute value is ${a.value.length} bytes; at most 65536`);
  }
  out.fill(0, off, off + SD_ATTR_OBJ_SIZE);
  wcstr(out, off, SD_MAX_VDI_LEN, a.name, 'VDI name');
  wcstr(out, off + 256, SD_MAX_VDI_TAG_LEN, a.tag, 'snapshot tag');
  w64(out, off + 512, a.ctime);
  w32(out, off + 520, a.snapId);
  w32(out, off + 524, a.value.length);
  wcstr(out, off + 528, SD_MAX_VDI_ATTR_KEY_LEN, a.key, 'attribute key');
  out.set(a.value, off + 784);
}

// ------------------------------------------------------- name/tag bodies

/** A 256-byte name body (NEW_VDI) or 512-byte name+tag body (GET_VDI_INFO, LOCK_VDI, DEL_VDI). */
export function encodeVdiNameBody(name: string, tag?: string): Uint8Array {
  const out = new Uint8Array(tag === undefined ? SD_MAX_VDI_LEN : SD_MAX_VDI_LEN + SD_MAX_VDI_TAG_LEN);
  wcstr(out, 0, SD_MAX_VDI_LEN, name, 'VDI name');
  if (tag !== undefined) wcstr(out, SD_MAX_VDI_LEN, SD_MAX_VDI_TAG_LEN, tag, 'snapshot tag');
  return out;
}

export function decodeVdiNameBody(b: Uint8Array): { name: string; tag: string } {
  return {
    name: cstr(b, 0, Math.min(SD_MAX_VDI_LEN, b.length)),
    tag:
      b.length > SD_MAX_VDI_LEN ? cstr(b, SD_MAX_VDI_LEN, Math.min(SD_MAX_VDI_TAG_LEN, b.length - SD_MAX_VDI_LEN)) : '',
  };
}

// ------------------------------------------------------------------ bitmaps

/** Bit `i` of a little-endian unsigned-long bitmap (LSB-first bytes). */
export function bitmapTest(b: Uint8Array, i: number): boolean {
  return (((b[i >>> 3] as number) >>> (i & 7)) & 1) === 1;
}
export function bitmapSet(b: Uint8Array, i: number): void {
  b[i >>> 3] = (b[i >>> 3] as number) | (1 << (i & 7));
}
export function bitmapClear(b: Uint8Array, i: number): void {
  b[i >>> 3] = (b[i >>> 3] as number) & ~(1 << (i & 7));
}
/** Every set bit, ascending, skipping zero bytes quickly. */
export function* bitmapSetBits(b: Uint8Array, nbits = b.length * 8): Generator<number> {
  const nbytes = Math.ceil(nbits / 8);
  for (let byte = 0; byte < nbytes; byte++) {
    const v = b[byte] as number;
    if (v === 0) continue;
    for (let bit = 0; bit < 8; bit++) {
      const i = byte * 8 + bit;
      if (i < nbits && (v >>> bit) & 1) yield i;
    }
  }
}
/** First clear bit at or after `start` (no wrap), or `nbits` if none. */
export function bitmapNextZero(b: Uint8Array, start: number, nbits = SD_NR_VDIS): number {
  for (let i = start; i < nbits; i++) {
    if ((i & 7) === 0 && b[i >>> 3] === 0xff) {
      i += 7;
      continue;
    }
    if (!bitmapTest(b, i)) return i;
  }
  return nbits;
}
