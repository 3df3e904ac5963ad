/**
 * Node records: the 16-byte sheep address, struct node_id and struct sd_node
 * (GET_NODE_LIST replies, epoch logs, cluster_info).
 */
import { NODE_ID_SIZE, SD_MAX_NODES, SD_NODE_SIZE } from '../constants.js';
import { InvalidArgumentError, ProtocolError } from '../errors.js';
import { need, u16, u32, u64, w16, w32, w64 } from '../bytes.js';

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
