/**
 * Sheepdog wire constants (sheepdog 1.0: include/sheepdog_proto.h,
 * include/internal_proto.h, include/sheep.h). Flags and result codes are
 * `as const` objects with derived types; no enums. Opcodes and proto_ver live
 * in the opcode table (opcodes.ts) and are re-exported here.
 */
export {
  isKnownOpcode,
  Op,
  type Opcode,
  type OpName,
  opName,
  protoVerAccepted,
  protoVerFor,
  SD_PROTO_VER,
  SD_SHEEP_PROTO_VER,
} from './opcodes.js';

/** Every request and response header is exactly this many bytes. */
export const HEADER_SIZE = 48;
export const SD_LISTEN_PORT = 7000;

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
