/**
 * Object placement as sheep 1.0 computes it (include/sheep.h,
 * include/sheepdog_proto.h): every node puts `nr_vnodes` virtual nodes on a
 * 64-bit consistent-hash ring, an object lives on the first vnode at or after
 * the hash of its oid, and its further copies on the next vnodes along the
 * ring whose nodes are in zones not chosen yet. A pure function of the node
 * list (GET_NODE_LIST, or an epoch of STAT_CLUSTER / GET_EPOCH): `dog vdi
 * object location` computes it client-side, and the embedded sheep places
 * its replicas with it.
 */
import { InvalidArgumentError } from './errors.js';
import { FNV1A_64_INIT, fnv1a64 } from './hash.js';
import { addrFromString } from './records.js';
import { SD_MAX_COPIES } from './constants.js';

/** What placement needs of a node: `struct sd_node`'s nid (address, port), nr_vnodes and zone. */
export interface PlacementNode {
  nid: { addr: string; port: number };
  nrVnodes: number;
  zone: number;
}

export interface Vnode {
  /** Position on the ring. */
  hash: bigint;
  /** Index into `VnodeRing.nodes`. */
  node: number;
}

export interface VnodeRing {
  /** The nodes, in the order given. */
  readonly nodes: readonly PlacementNode[];
  /** Every vnode, sorted by hash. */
  readonly vnodes: readonly Vnode[];
  /** Zones of the nodes that have vnodes (a pure gateway adds no redundancy), at most SD_MAX_COPIES. */
  readonly nrZones: number;
}

const M64 = (1n << 64n) - 1n;
const oidBytes = new Uint8Array(8);
const oidView = new DataView(oidBytes.buffer);

/** `fnv_64a_64(v, hval)`: FNV-1a over the 8 little-endian bytes of `v`. */
export function fnv64a64(v: bigint, hval: bigint): bigint {
  oidView.setBigUint64(0, v & M64, true);
  return fnv1a64(oidBytes, hval);
}

/** `sd_hash_next(hval)`: the next vnode hash of a node. */
export function sdHashNext(hval: bigint): bigint {
  return fnv64a64(hval, hval);
}

/** `sd_hash_oid(oid)`: where an object sits on the ring. */
export function sdHashOid(oid: bigint): bigint {
  return sdHashNext(fnv64a64(oid, FNV1A_64_INIT));
}

/** `sd_hash(&nid, offsetof(nid, io_addr))`: the seed of a node's vnode hashes (address bytes, then the port little-endian). */
export function sdHashNode(addr: string, port: number): bigint {
  const b = new Uint8Array(18);
  addrFromString(addr, b, 0);
  b[16] = port & 0xff;
  b[17] = (port >>> 8) & 0xff;
  return sdHashNext(fnv1a64(b));
}

/** `nodes_to_vnodes()` + the zone count of `alloc_vnode_info()`. */
export function buildRing(nodes: readonly PlacementNode[]): VnodeRing {
  const vnodes: Vnode[] = [];
  const zones = new Set<number>();
  nodes.forEach((n, i) => {
    if (!Number.isInteger(n.nrVnodes) || n.nrVnodes < 0 || n.nrVnodes > 0xffff) {
      throw new InvalidArgumentError(`nrVnodes must be a 16-bit unsigned integer, got ${n.nrVnodes}`);
    }
    let h = sdHashNode(n.nid.addr, n.nid.port);
    for (let k = 0; k < n.nrVnodes; k++) {
      h = sdHashNext(h);
      vnodes.push({ hash: h, node: i });
    }
    if (n.nrVnodes > 0 && zones.size < SD_MAX_COPIES) zones.add(n.zone >>> 0);
  });
  vnodes.sort((a, b) => (a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : 0));
  return { nodes, vnodes, nrZones: zones.size };
}

/** `get_obj_copy_number()`: the copies an object gets on this ring, min(nr_copies, zones). */
export function effectiveCopies(ring: VnodeRing, nrCopies: number): number {
  return Math.min(nrCopies, ring.nrZones);
}

/** `oid_to_first_vnode()`: the first vnode whose hash is >= the oid's (wrapping to the first). */
function firstVnode(ring: VnodeRing, oid: bigint): number {
  const h = sdHashOid(oid);
  const v = ring.vnodes;
  let lo = 0;
  let hi = v.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((v[mid] as Vnode).hash < h) lo = mid + 1;
    else hi = mid;
  }
  return lo === v.length ? 0 : lo;
}

/**
 * `oid_to_nodes()`: the nodes (indices into `ring.nodes`) holding the
 * copies of `oid`, copy 0 first. `copies` is capped at the ring's zones,
 * as sheep caps it (`get_req_copy_number`); an empty ring places nothing.
 */
export function oidToNodes(ring: VnodeRing, oid: bigint, copies: number): number[] {
  if (!Number.isInteger(copies) || copies < 0 || copies > SD_MAX_COPIES) {
    throw new InvalidArgumentError(`copies must be an integer in 0..${SD_MAX_COPIES}, got ${copies}`);
  }
  const n = effectiveCopies(ring, copies);
  if (n === 0 || ring.vnodes.length === 0) return [];
  const start = firstVnode(ring, oid);
  const out = [(ring.vnodes[start] as Vnode).node];
  const usedZones = [ring.nodes[out[0] as number]?.zone];
  for (let i = start + 1; out.length < n; i++) {
    const pos = i % ring.vnodes.length;
    if (pos === start) break; // unreachable with n <= zones
    const vn = ring.vnodes[pos] as Vnode;
    const zone = ring.nodes[vn.node]?.zone;
    if (usedZones.includes(zone)) continue;
    out.push(vn.node);
    usedZones.push(zone);
  }
  return out;
}
