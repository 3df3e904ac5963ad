/**
 * The name (and tag) bodies of NEW_VDI, GET_VDI_INFO, LOCK_VDI and DEL_VDI.
 */
import { SD_MAX_VDI_LEN, SD_MAX_VDI_TAG_LEN } from '../constants.js';
import { cstr, wcstr } from '../bytes.js';

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
