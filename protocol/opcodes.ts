/**
 * The opcode table: every opcode of sheepdog 1.0 (include/sheepdog_proto.h,
 * include/internal_proto.h) with what the SDK knows about it. Everything
 * per-opcode derives from this one table: `Op` and `opName`, the header union
 * an opcode uses (`requestKind` / `responseKind` in header.ts), its proto_ver,
 * whether the pool may repeat it after a connection died (`isIdempotent` in
 * lib/transport/policy.ts) and how sheep's op table classes it (the embedded
 * sheep's dispatch in testing/ops.ts).
 *
 * Lookups by code go through an array indexed by opcode, built once at load.
 */
import type { RequestKind, ResponseKind } from './header.js';

/** proto_ver of public (client) operations, opcode < 0x80. */
export const SD_PROTO_VER = 0x02;
/** proto_ver that sheep 1.0 requires, exactly, for internal operations (opcode >= 0x80). */
export const SD_SHEEP_PROTO_VER = 0x0a;

/**
 * The class of an op in sheep 1.0's op table (sheep/ops.c `sd_ops[]`):
 * `cluster` ops run through the cluster driver on every node, `local` ops on
 * the node that got them, `gateway` ops are forwarded by the receiving node
 * to the object's replicas, `peer` ops are what a gateway sends a replica.
 */
export type SheepOpType = 'cluster' | 'local' | 'gateway' | 'peer';

/** One row of the table; what a row leaves out takes the default. */
interface OpcodeSpec {
  readonly code: number;
  /** The request header's union (default `raw`: none, kept verbatim). */
  readonly req?: RequestKind;
  /** The response header's union after `result` (default `raw`). */
  readonly rsp?: ResponseKind;
  /**
   * May be sent again, to any node, when the connection carrying it died
   * before the reply (default false): reads, lookups, statistics, object
   * writes at a fixed offset.
   */
  readonly repeatable?: boolean;
  /** Its class in sheep 1.0's `sd_ops[]`; absent: sheep 1.0 has no such op and answers INVALID_PARMS. */
  readonly sheep?: SheepOpType;
  /** `.force` in `sd_ops[]`: runs while the cluster waits for a format or for nodes to join (default false). */
  readonly force?: boolean;
}

const TABLE = {
  // CREATE_AND_WRITE_OBJ is repeatable: sheep's own gateway re-sends it on
  // epoch changes and the store accepts a repeat (`default_create_and_write`
  // "exists" path); the data layer keeps creations of one object serialised
  // (one creation per oid at a time), so no other write can slip between the
  // two attempts.
  CREATE_AND_WRITE_OBJ: { code: 0x01, req: 'obj', rsp: 'obj', repeatable: true, sheep: 'gateway' },
  READ_OBJ: { code: 0x02, req: 'obj', rsp: 'obj', repeatable: true, sheep: 'gateway' },
  WRITE_OBJ: { code: 0x03, req: 'obj', rsp: 'obj', repeatable: true, sheep: 'gateway' },
  // A repeat answers NO_OBJ.
  REMOVE_OBJ: { code: 0x04, req: 'obj', rsp: 'obj', sheep: 'gateway' },
  DISCARD_OBJ: { code: 0x05, req: 'obj', rsp: 'obj', sheep: 'local' },
  NEW_VDI: { code: 0x11, req: 'vdi', rsp: 'vdi', sheep: 'cluster' },
  // LOCK_VDI / RELEASE_VDI belong to the gateway node that took them.
  LOCK_VDI: { code: 0x12, req: 'vdi', rsp: 'vdi', sheep: 'cluster' },
  RELEASE_VDI: { code: 0x13, req: 'vdi', rsp: 'vdi', sheep: 'cluster' },
  GET_VDI_INFO: { code: 0x14, req: 'vdi', rsp: 'vdi', repeatable: true, sheep: 'cluster' },
  READ_VDIS: { code: 0x15, repeatable: true, sheep: 'local', force: true },
  FLUSH_VDI: { code: 0x16, req: 'obj', repeatable: true, sheep: 'local' },
  DEL_VDI: { code: 0x17, req: 'vdi', rsp: 'vdi', sheep: 'cluster' },
  GET_CLUSTER_DEFAULT: { code: 0x18, rsp: 'cluster_default', repeatable: true, sheep: 'local', force: true },
  GET_NODE_LIST: { code: 0x82, rsp: 'node', repeatable: true, sheep: 'local', force: true },
  MAKE_FS: { code: 0x84, req: 'cluster', sheep: 'cluster', force: true },
  SHUTDOWN: { code: 0x85, sheep: 'cluster', force: true },
  STAT_SHEEP: { code: 0x86, rsp: 'node', repeatable: true, sheep: 'local' },
  STAT_CLUSTER: { code: 0x87, req: 'cluster', repeatable: true, sheep: 'local', force: true },
  // Repeatable as a lookup or a create-if-missing; not with EXCL (a repeat
  // answers VDI_EXIST) or DEL (a repeat answers NO_OBJ): `isIdempotent` checks the flags.
  GET_VDI_ATTR: { code: 0x89, req: 'vdi', rsp: 'vdi', repeatable: true, sheep: 'cluster' },
  FORCE_RECOVER: { code: 0x8a, sheep: 'cluster', force: true },
  GET_STORE_LIST: { code: 0x90, repeatable: true, sheep: 'local', force: true },
  SNAPSHOT: { code: 0x91 },
  RESTORE: { code: 0x92 },
  GET_SNAP_FILE: { code: 0x93 },
  CLEANUP: { code: 0x94, sheep: 'cluster', force: true },
  TRACE_STATUS: { code: 0x95, repeatable: true, sheep: 'local', force: true },
  TRACE_READ_BUF: { code: 0x96, sheep: 'local', force: true },
  STAT_RECOVERY: { code: 0x97, repeatable: true, sheep: 'local' },
  FLUSH_DEL_CACHE: { code: 0x98, sheep: 'local' },
  NOTIFY_VDI_DEL: { code: 0x99, sheep: 'cluster', force: true },
  KILL_NODE: { code: 0x9a, sheep: 'local', force: true },
  TRACE_ENABLE: { code: 0x9b, sheep: 'local', force: true },
  TRACE_DISABLE: { code: 0x9c, sheep: 'local', force: true },
  GET_OBJ_LIST: { code: 0xa1, req: 'obj', repeatable: true, sheep: 'local' },
  GET_EPOCH: { code: 0xa2, req: 'obj', repeatable: true, sheep: 'local' },
  CREATE_AND_WRITE_PEER: { code: 0xa3, req: 'obj', rsp: 'obj', sheep: 'peer' },
  READ_PEER: { code: 0xa4, req: 'obj', rsp: 'obj', sheep: 'peer' },
  WRITE_PEER: { code: 0xa5, req: 'obj', rsp: 'obj', sheep: 'peer' },
  REMOVE_PEER: { code: 0xa6, req: 'obj', rsp: 'obj', sheep: 'peer' },
  ENABLE_RECOVER: { code: 0xa8, sheep: 'cluster' },
  DISABLE_RECOVER: { code: 0xa9, sheep: 'cluster' },
  GET_VDI_COPIES: { code: 0xab, repeatable: true, sheep: 'local', force: true },
  COMPLETE_RECOVERY: { code: 0xac, sheep: 'cluster', force: true },
  FLUSH_NODES: { code: 0xad },
  FLUSH_PEER: { code: 0xae, req: 'obj' },
  NOTIFY_VDI_ADD: { code: 0xaf, req: 'vdi_state', sheep: 'cluster', force: true },
  DELETE_CACHE: { code: 0xb0, req: 'obj', repeatable: true, sheep: 'cluster' },
  MD_INFO: { code: 0xb1, repeatable: true, sheep: 'local' },
  MD_PLUG: { code: 0xb2, sheep: 'local' },
  MD_UNPLUG: { code: 0xb3, sheep: 'local' },
  GET_HASH: { code: 0xb4, req: 'obj', rsp: 'hash', repeatable: true, sheep: 'local' },
  REWEIGHT: { code: 0xb5, req: 'cluster', sheep: 'cluster' },
  GET_CACHE_INFO: { code: 0xb6, repeatable: true },
  CACHE_PURGE: { code: 0xb7 },
  STAT: { code: 0xb8, repeatable: true, sheep: 'local' },
  GET_LOGLEVEL: { code: 0xb9, repeatable: true, sheep: 'local', force: true },
  SET_LOGLEVEL: { code: 0xba, sheep: 'local', force: true },
  NFS_CREATE: { code: 0xbb },
  NFS_DELETE: { code: 0xbc },
  EXIST: { code: 0xbd, req: 'obj', repeatable: true, sheep: 'local', force: true },
  CLUSTER_INFO: { code: 0xbe, repeatable: true, sheep: 'local', force: true },
  ALTER_CLUSTER_COPY: { code: 0xbf, req: 'cluster', sheep: 'cluster' },
  ALTER_VDI_COPY: { code: 0xc0, req: 'vdi_state', sheep: 'cluster' },
  DECREF_OBJ: { code: 0xc1, req: 'obj', sheep: 'gateway' },
  DECREF_PEER: { code: 0xc2, req: 'obj', sheep: 'peer' },
  PREVENT_INODE_UPDATE: { code: 0xc3 },
  ALLOW_INODE_UPDATE: { code: 0xc4 },
  REPAIR_REPLICA: { code: 0xc5, req: 'obj', sheep: 'local' },
  OIDS_EXIST: { code: 0xc6, req: 'obj', repeatable: true, sheep: 'local', force: true },
  VDI_STATE_CHECKPOINT_CTL: { code: 0xc7, req: 'vdi_state_checkpoint', sheep: 'local' },
  INODE_COHERENCE: { code: 0xc8, req: 'inode_coherence', sheep: 'cluster' },
  READ_DEL_VDIS: { code: 0xc9, repeatable: true, sheep: 'local', force: true },
  GET_RECOVERY: { code: 0xca, repeatable: true, sheep: 'local', force: true },
  SET_RECOVERY: { code: 0xcb, sheep: 'local', force: true },
  SET_VNODES: { code: 0xcc, sheep: 'local' },
  GET_VNODES: { code: 0xcd, repeatable: true, sheep: 'local' },
} as const satisfies Record<string, OpcodeSpec>;

type Table = typeof TABLE;
export type OpName = keyof Table;
/** The names of the ops sheep 1.0 has in its op table. */
export type SheepOpName = { [K in OpName]: Table[K] extends { readonly sheep: SheepOpType } ? K : never }[OpName];

/** Opcode by name (`Op.READ_OBJ` is 0x02). */
export const Op = Object.fromEntries(Object.entries(TABLE).map(([name, spec]) => [name, spec.code])) as {
  readonly [K in OpName]: Table[K]['code'];
};
export type Opcode = (typeof Op)[OpName];

/** What the table says about one opcode, defaults filled in. */
export interface OpcodeInfo {
  readonly code: Opcode;
  readonly name: OpName;
  readonly request: RequestKind;
  readonly response: ResponseKind;
  /** The proto_ver a request carries (`protoVerFor`). */
  readonly protoVer: number;
  /** Repeatable after a lost connection, as far as the opcode goes (GET_VDI_ATTR also depends on flags). */
  readonly repeatable: boolean;
  /** Class in sheep 1.0's op table; undefined when sheep 1.0 has no such op. */
  readonly sheep: SheepOpType | undefined;
  /** Runs while the cluster is not working. */
  readonly force: boolean;
}

/**
 * The proto_ver a request must carry (`sd_init_req()`): public ops (< 0x80)
 * use SD_PROTO_VER, internal ops (>= 0x80) exactly SD_SHEEP_PROTO_VER.
 */
export function protoVerFor(opcode: number): number {
  return opcode >= 0x80 ? SD_SHEEP_PROTO_VER : SD_PROTO_VER;
}

/**
 * Whether sheep 1.0 accepts `protoVer` for `opcode` (`queue_request()`):
 * internal ops need exactly 0x0a; public ops accept anything up to 0x02.
 */
export function protoVerAccepted(opcode: number, protoVer: number): boolean {
  return opcode >= 0x80 ? protoVer === SD_SHEEP_PROTO_VER : protoVer <= SD_PROTO_VER;
}

/** Every known opcode, ascending. */
export const OPCODES: readonly OpcodeInfo[] = Object.freeze(
  (Object.entries(TABLE) as [OpName, OpcodeSpec][]).map(([name, s]) =>
    Object.freeze({
      code: s.code as Opcode,
      name,
      request: s.req ?? 'raw',
      response: s.rsp ?? 'raw',
      protoVer: protoVerFor(s.code),
      repeatable: s.repeatable ?? false,
      sheep: s.sheep,
      force: s.force ?? false,
    }),
  ),
);

const BY_CODE: (OpcodeInfo | undefined)[] = new Array<OpcodeInfo | undefined>(256).fill(undefined);
for (const info of OPCODES) BY_CODE[info.code] = info;

/** The table's row for `opcode`, or undefined for an unknown opcode. O(1). */
export function opcodeInfo(opcode: number): OpcodeInfo | undefined {
  return BY_CODE[opcode];
}

/** Symbolic name of an opcode; unknown opcodes give `UNKNOWN_0xNN` (never throws). */
export function opName(opcode: number): string {
  return BY_CODE[opcode]?.name ?? `UNKNOWN_0x${(opcode >>> 0).toString(16).padStart(2, '0')}`;
}

export function isKnownOpcode(opcode: number): opcode is Opcode {
  return BY_CODE[opcode] !== undefined;
}
