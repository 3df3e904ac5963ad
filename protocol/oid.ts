/**
 * Object ids (u64, bigint): bits 0-31 data index, 32-55 vid, 59-63 type bits.
 * Matches include/sheepdog_proto.h.
 */
import { InvalidArgumentError } from './errors.js';

export const VDI_SPACE_SHIFT = 32n;
export const VDI_BIT = 1n << 63n;
export const VMSTATE_BIT = 1n << 62n;
export const VDI_ATTR_BIT = 1n << 61n;
export const VDI_BTREE_BIT = 1n << 60n;
export const LEDGER_BIT = 1n << 59n;
export const SD_VDI_MASK = 0x00ffffff00000000n;
const IDX_MASK = 0xffffffffn;

// The last vid's shifted value: object ids of one VDI are made over and over
// on the data path, and each BigInt operation allocates.
let lastVid = 0;
let lastVidBits = 0n;

function vidArg(vid: number): bigint {
  if (vid === lastVid) return lastVidBits;
  if (!Number.isInteger(vid) || vid < 0 || vid > 0xffffff) {
    throw new InvalidArgumentError(`vid must be a 24-bit integer, got ${vid}`);
  }
  const bits = BigInt(vid) << VDI_SPACE_SHIFT;
  lastVid = vid;
  lastVidBits = bits;
  return bits;
}
function u32Arg(v: number, what: string): bigint {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
    throw new InvalidArgumentError(`${what} must be a 32-bit unsigned integer, got ${v}`);
  }
  return BigInt(v);
}

export function vidToVdiOid(vid: number): bigint {
  return VDI_BIT | vidArg(vid);
}
export function vidToDataOid(vid: number, idx: number): bigint {
  return vidArg(vid) | u32Arg(idx, 'idx');
}
export function vidToVmstateOid(vid: number, idx: number): bigint {
  return VMSTATE_BIT | vidArg(vid) | u32Arg(idx, 'idx');
}
export function vidToAttrOid(vid: number, attrId: number): bigint {
  return VDI_ATTR_BIT | vidArg(vid) | u32Arg(attrId, 'attrId');
}
export function vidToBtreeOid(vid: number, btreeId: number): bigint {
  return VDI_BTREE_BIT | vidArg(vid) | u32Arg(btreeId, 'btreeId');
}
export function dataOidToLedgerOid(oid: bigint): bigint {
  return LEDGER_BIT | oid;
}
export function ledgerOidToDataOid(oid: bigint): bigint {
  return oid & ~LEDGER_BIT;
}
export function oidToVid(oid: bigint): number {
  return Number((oid & SD_VDI_MASK) >> VDI_SPACE_SHIFT);
}
/** The data index (low 32 bits) of a data, vmstate, attr or btree oid. */
export function oidToIdx(oid: bigint): number {
  return Number(oid & IDX_MASK);
}

export const isVdiObj = (oid: bigint): boolean => (oid & VDI_BIT) !== 0n;
export const isVmstateObj = (oid: bigint): boolean => (oid & VMSTATE_BIT) !== 0n;
export const isVdiAttrObj = (oid: bigint): boolean => (oid & VDI_ATTR_BIT) !== 0n;
export const isVdiBtreeObj = (oid: bigint): boolean => (oid & VDI_BTREE_BIT) !== 0n;
export const isLedgerObj = (oid: bigint): boolean => (oid & LEDGER_BIT) !== 0n;
export const isDataObj = (oid: bigint): boolean =>
  (oid & (VDI_BIT | VMSTATE_BIT | VDI_ATTR_BIT | VDI_BTREE_BIT | LEDGER_BIT)) === 0n;

export type OidType = 'vdi' | 'vmstate' | 'attr' | 'btree' | 'ledger' | 'data';

/** The object type, tested in sheep's order (`get_objsize`). */
export function oidType(oid: bigint): OidType {
  if (isVdiObj(oid)) return 'vdi';
  if (isVmstateObj(oid)) return 'vmstate';
  if (isVdiAttrObj(oid)) return 'attr';
  if (isVdiBtreeObj(oid)) return 'btree';
  if (isLedgerObj(oid)) return 'ledger';
  return 'data';
}

/** Oid as the 16-hex-digit string sheep logs use. */
export function oidHex(oid: bigint): string {
  return oid.toString(16).padStart(16, '0');
}
