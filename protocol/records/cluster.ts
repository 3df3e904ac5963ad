/**
 * Cluster records: struct epoch_log (STAT_CLUSTER replies) and struct
 * cluster_info (CLUSTER_INFO replies).
 */
import { CLUSTER_INFO_SIZE, EPOCH_LOG_HEADER_SIZE, SD_MAX_NODES, SD_NODE_SIZE, STORE_LEN } from '../constants.js';
import { InvalidArgumentError } from '../errors.js';
import { cstr, i16, need, u8, u16, u32, u64, utf8Bytes, w8, w16, w32, w64, wcstr } from '../bytes.js';
import { decodeNodeList, encodeSdNode, type SdNode } from './node.js';

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
