/**
 * Sheepdog wire constants (sheepdog 1.0: include/sheepdog_proto.h,
 * include/internal_proto.h, include/sheep.h). Opcodes, flags and result
 * codes are `as const` objects with derived types; no enums.
 */

/** Every request and response header is exactly this many bytes. */
export const HEADER_SIZE = 48;
/** proto_ver of public (client) operations, opcode < 0x80. */
export const SD_PROTO_VER = 0x02;
/** proto_ver that sheep 1.0 requires, exactly, for internal operations (opcode >= 0x80). */
export const SD_SHEEP_PROTO_VER = 0x0a;
export const SD_LISTEN_PORT = 7000;

export const Op = {
  CREATE_AND_WRITE_OBJ: 0x01,
  READ_OBJ: 0x02,
  WRITE_OBJ: 0x03,
  REMOVE_OBJ: 0x04,
  DISCARD_OBJ: 0x05,
  NEW_VDI: 0x11,
  LOCK_VDI: 0x12,
  RELEASE_VDI: 0x13,
  GET_VDI_INFO: 0x14,
  READ_VDIS: 0x15,
  FLUSH_VDI: 0x16,
  DEL_VDI: 0x17,
  GET_CLUSTER_DEFAULT: 0x18,
  GET_NODE_LIST: 0x82,
  MAKE_FS: 0x84,
  SHUTDOWN: 0x85,
  STAT_SHEEP: 0x86,
  STAT_CLUSTER: 0x87,
  GET_VDI_ATTR: 0x89,
  FORCE_RECOVER: 0x8a,
  GET_STORE_LIST: 0x90,
  SNAPSHOT: 0x91,
  RESTORE: 0x92,
  GET_SNAP_FILE: 0x93,
  CLEANUP: 0x94,
  TRACE_STATUS: 0x95,
  TRACE_READ_BUF: 0x96,
  STAT_RECOVERY: 0x97,
  FLUSH_DEL_CACHE: 0x98,
  NOTIFY_VDI_DEL: 0x99,
  KILL_NODE: 0x9a,
  TRACE_ENABLE: 0x9b,
  TRACE_DISABLE: 0x9c,
  GET_OBJ_LIST: 0xa1,
  GET_EPOCH: 0xa2,
  CREATE_AND_WRITE_PEER: 0xa3,
  READ_PEER: 0xa4,
  WRITE_PEER: 0xa5,
  REMOVE_PEER: 0xa6,
  ENABLE_RECOVER: 0xa8,
  DISABLE_RECOVER: 0xa9,
  GET_VDI_COPIES: 0xab,
  COMPLETE_RECOVERY: 0xac,
  FLUSH_NODES: 0xad,
  FLUSH_PEER: 0xae,
  NOTIFY_VDI_ADD: 0xaf,
  DELETE_CACHE: 0xb0,
  MD_INFO: 0xb1,
  MD_PLUG: 0xb2,
  MD_UNPLUG: 0xb3,
  GET_HASH: 0xb4,
  REWEIGHT: 0xb5,
  GET_CACHE_INFO: 0xb6,
  CACHE_PURGE: 0xb7,
  STAT: 0xb8,
  GET_LOGLEVEL: 0xb9,
  SET_LOGLEVEL: 0xba,
  NFS_CREATE: 0xbb,
  NFS_DELETE: 0xbc,
  EXIST: 0xbd,
  CLUSTER_INFO: 0xbe,
  ALTER_CLUSTER_COPY: 0xbf,
  ALTER_VDI_COPY: 0xc0,
  DECREF_OBJ: 0xc1,
  DECREF_PEER: 0xc2,
  PREVENT_INODE_UPDATE: 0xc3,
  ALLOW_INODE_UPDATE: 0xc4,
  REPAIR_REPLICA: 0xc5,
  OIDS_EXIST: 0xc6,
  VDI_STATE_CHECKPOINT_CTL: 0xc7,
  INODE_COHERENCE: 0xc8,
  READ_DEL_VDIS: 0xc9,
  GET_RECOVERY: 0xca,
  SET_RECOVERY: 0xcb,
  SET_VNODES: 0xcc,
  GET_VNODES: 0xcd,
} as const;
export type OpName = keyof typeof Op;
export type Opcode = (typeof Op)[OpName];

const opNames = new Map<number, OpName>();
for (const [k, v] of Object.entries(Op)) opNames.set(v, k as OpName);

/** Symbolic name of an opcode; unknown opcodes give `UNKNOWN_0xNN` (never throws). */
export function opName(opcode: number): string {
  return opNames.get(opcode) ?? `UNKNOWN_0x${hex2(opcode)}`;
}

export function isKnownOpcode(opcode: number): opcode is Opcode {
  return opNames.has(opcode);
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

export const Flag = {
  CMD_WRITE: 0x01,
  CMD_COW: 0x02,
  CMD_CACHE: 0x04,
  CMD_DIRECT: 0x08,
  CMD_PIGGYBACK: 0x10,
  CMD_TGT: 0x20,
  CMD_FWD: 0x40,
  CMD_RECOVERY: 0x80,
  CMD_WILDCARD: 0x100,
  /** GET_VDI_ATTR: create the attribute if missing. Shares its bit with WILDCARD. */
  CMD_CREAT: 0x100,
  /** GET_VDI_ATTR: fail with VDI_EXIST if the attribute exists. */
  CMD_EXCL: 0x200,
  /** GET_VDI_ATTR: delete the attribute. */
  CMD_DEL: 0x400,
} as const;
export type FlagName = keyof typeof Flag;

export const Result = {
  SUCCESS: 0x00,
  UNKNOWN: 0x01,
  NO_OBJ: 0x02,
  EIO: 0x03,
  VDI_EXIST: 0x04,
  INVALID_PARMS: 0x05,
  SYSTEM_ERROR: 0x06,
  VDI_LOCKED: 0x07,
  NO_VDI: 0x08,
  NO_BASE_VDI: 0x09,
  VDI_READ: 0x0a,
  VDI_WRITE: 0x0b,
  BASE_VDI_READ: 0x0c,
  BASE_VDI_WRITE: 0x0d,
  NO_TAG: 0x0e,
  STARTUP: 0x0f,
  VDI_NOT_LOCKED: 0x10,
  SHUTDOWN: 0x11,
  NO_MEM: 0x12,
  FULL_VDI: 0x13,
  VER_MISMATCH: 0x14,
  NO_SPACE: 0x15,
  WAIT_FOR_FORMAT: 0x16,
  WAIT_FOR_JOIN: 0x17,
  JOIN_FAILED: 0x18,
  HALT: 0x19,
  READONLY: 0x1a,
  INODE_INVALIDATED: 0x1d,
  OLD_NODE_VER: 0x81,
  NEW_NODE_VER: 0x82,
  NOT_FORMATTED: 0x83,
  INVALID_CTIME: 0x84,
  INVALID_EPOCH: 0x85,
  NETWORK_ERROR: 0x86,
  NO_CACHE: 0x87,
  BUFFER_SMALL: 0x88,
  FORCE_RECOVER: 0x89,
  NO_STORE: 0x8a,
  NO_SUPPORT: 0x8b,
  NODE_IN_RECOVERY: 0x8c,
  KILLED: 0x8d,
  OID_EXIST: 0x8e,
  AGAIN: 0x8f,
  STALE_OBJ: 0x90,
  CLUSTER_ERROR: 0x91,
  VDI_NOT_EMPTY: 0x92,
  NOT_FOUND: 0x93,
  INCOMPLETE: 0x94,
  COLLECTING_CINFO: 0x95,
  GATEWAY_MODE: 0x97,
  INVALID_VNODES_STRATEGY: 0x98,
  NO_CHECKPOINT_ENTRY: 0x99,
} as const;
export type ResultName = keyof typeof Result;
export type ResultCode = (typeof Result)[ResultName];

const resultNames = new Map<number, ResultName>();
for (const [k, v] of Object.entries(Result)) resultNames.set(v, k as ResultName);

/** Messages exactly as sheep's `sd_strerror()` prints them (include/sheep.h). */
const resultMessages: Partial<Record<ResultName, string>> = {
  SUCCESS: 'Success',
  UNKNOWN: 'Unknown error',
  NO_OBJ: 'No object found',
  EIO: 'I/O error',
  VDI_EXIST: 'VDI exists already',
  INVALID_PARMS: 'Invalid parameters',
  SYSTEM_ERROR: 'System error',
  VDI_LOCKED: 'VDI is already locked',
  NO_VDI: 'No VDI found',
  NO_BASE_VDI: 'No base VDI found',
  VDI_READ: 'Failed to read from requested VDI',
  VDI_WRITE: 'Failed to write to requested VDI',
  BASE_VDI_READ: 'Failed to read from base VDI',
  BASE_VDI_WRITE: 'Failed to write to base VDI',
  NO_TAG: 'Failed to find requested tag',
  STARTUP: 'System is still booting',
  VDI_NOT_LOCKED: 'VDI is not locked',
  SHUTDOWN: 'System is shutting down',
  NO_MEM: 'Out of memory on server',
  FULL_VDI: 'Maximum number of VDIs reached',
  VER_MISMATCH: 'Protocol version mismatch',
  NO_SPACE: 'Server has no space for new objects',
  WAIT_FOR_FORMAT: 'Waiting for cluster to be formatted',
  WAIT_FOR_JOIN: 'Waiting for other nodes to join cluster',
  JOIN_FAILED: 'Node has failed to join cluster',
  HALT: 'IO has halted as there are not enough living nodes',
  READONLY: 'Object is read-only',
  INODE_INVALIDATED: 'Inode object is invalidated',
  INVALID_VNODES_STRATEGY: 'Invalid cluster vnodes strategy',
  GATEWAY_MODE: 'Targeted node is gateway mode',
  OLD_NODE_VER: 'Request has an old epoch',
  NEW_NODE_VER: 'Request has a new epoch',
  NOT_FORMATTED: 'Cluster has not been formatted',
  INVALID_CTIME: 'Creation times differ',
  INVALID_EPOCH: 'Invalid epoch',
  NETWORK_ERROR: 'Network error between sheep',
  NO_CACHE: 'No cache object found',
  BUFFER_SMALL: 'The buffer is too small',
  FORCE_RECOVER: 'Cluster is running/halted and cannot be force recovered',
  NO_STORE: 'Targeted backend store is not found',
  NO_SUPPORT: 'Operation is not supported',
  NODE_IN_RECOVERY: 'Targeted node is in recovery',
  KILLED: 'Node is killed',
  OID_EXIST: 'Object ID exists already',
  AGAIN: 'Ask to try again',
  STALE_OBJ: 'Object may be stale',
  CLUSTER_ERROR: 'Cluster driver error',
};

/** Symbolic name of a result code; unknown codes give `UNKNOWN_0xNN` (never throws). */
export function resultName(code: number): string {
  return resultNames.get(code) ?? `UNKNOWN_0x${hex2(code)}`;
}

export function isKnownResult(code: number): code is ResultCode {
  return resultNames.has(code);
}

/**
 * The message sheep prints for a result (`sd_strerror`). Codes sheep has no
 * text for give its own fallback, "Invalid error code <hex>".
 */
export function resultMessage(code: number): string {
  const name = resultNames.get(code);
  const msg = name === undefined ? undefined : resultMessages[name];
  return msg ?? `Invalid error code ${(code >>> 0).toString(16)}`;
}

export const ClusterFlag = {
  STRICT: 0x0001,
  DISKMODE: 0x0002,
  AUTO_VNODES: 0x0004,
  USE_LOCK: 0x0008,
  RECYCLE_VID: 0x0010,
  AVOID_DISKFULL: 0x0020,
} as const;

export const ClusterStatus = { OK: 1, WAIT: 2, SHUTDOWN: 3, KILLED: 4 } as const;
export const LockType = { NORMAL: 0, SHARED: 1 } as const;
export const LockState = { UNLOCKED: 1, LOCKED: 2, SHARED: 3 } as const;
export const SharedLockState = { MODIFIED: 1, SHARED: 2, INVALIDATED: 3 } as const;
/** `store_policy` of an inode: 0 = flat data_vdi_id[] index, 1 = hyper volume (B-tree index). */
export const StorePolicy = { FLAT: 0, HYPER: 1 } as const;

export const SD_MAX_VDI_LEN = 256;
export const SD_MAX_VDI_TAG_LEN = 256;
export const SD_MAX_VDI_ATTR_KEY_LEN = 256;
export const SD_MAX_VDI_ATTR_VALUE_LEN = 65536;
/** Number of VDI ids (24 bits); vid 0 is never used. */
export const SD_NR_VDIS = 1 << 24;
/** Bytes of the READ_VDIS / READ_DEL_VDIS bitmap. */
export const VDI_BITMAP_SIZE = SD_NR_VDIS / 8;
export const SD_DEFAULT_BLOCK_SIZE_SHIFT = 22;
export const SD_MIN_BLOCK_SIZE_SHIFT = 20;
export const SD_MAX_BLOCK_SIZE_SHIFT = 31;
export const SD_DATA_OBJ_SIZE = 1 << 22;
/** Slots of the flat data_vdi_id[] index. */
export const SD_INODE_DATA_INDEX = 1 << 20;
/** Max data objects of a hyper volume (32-bit index). */
export const MAX_DATA_OBJS = 2 ** 32;
/** offsetof(struct sd_inode, data_vdi_id). */
export const SD_INODE_HEADER_SIZE = 4664;
/** offsetof(struct sd_inode, gref). */
export const SD_INODE_GREF_OFFSET = SD_INODE_HEADER_SIZE + 4 * SD_INODE_DATA_INDEX;
/** sizeof(struct sd_inode) = 12,587,576. */
export const SD_INODE_SIZE = SD_INODE_GREF_OFFSET + 8 * SD_INODE_DATA_INDEX;
/** sizeof(struct sheepdog_vdi_attr). */
export const SD_ATTR_OBJ_SIZE = 66320;
/** A B-tree node object of a hyper volume is as large as the flat index. */
export const SD_INODE_DATA_INDEX_SIZE = 4 * SD_INODE_DATA_INDEX;
export const SD_LEDGER_OBJ_SIZE = 1 << 22;
/** Wire size of struct sd_node without HAVE_DISKVNODES. */
export const SD_NODE_SIZE = 80;
export const SD_MAX_NODES = 6144;
export const SD_EC_MAX_STRIP = 16;
export const SD_MAX_COPIES = SD_EC_MAX_STRIP * 2 - 1;
export const SD_DEFAULT_COPIES = 3;
export const SD_DEFAULT_VNODES = 128;
export const STORE_LEN = 16;
/** sizeof(struct epoch_log) without nodes. */
export const EPOCH_LOG_HEADER_SIZE = 48;
/** sizeof(struct cluster_info). */
export const CLUSTER_INFO_SIZE = 48 + SD_NODE_SIZE * SD_MAX_NODES;
/** sizeof(struct vdi_state). */
export const VDI_STATE_SIZE = 1428;
/** sizeof(struct node_id). */
export const NODE_ID_SIZE = 40;

function hex2(n: number): string {
  return (n >>> 0).toString(16).padStart(2, '0');
}
