/**
 * struct sheepdog_vdi_attr: the GET_VDI_ATTR body and the attribute object.
 */
import {
  SD_ATTR_OBJ_SIZE,
  SD_MAX_VDI_ATTR_KEY_LEN,
  SD_MAX_VDI_ATTR_VALUE_LEN,
  SD_MAX_VDI_LEN,
  SD_MAX_VDI_TAG_LEN,
} from '../constants.js';
import { InvalidArgumentError, ProtocolError } from '../errors.js';
import { copyBytes, cstr, need, u32, u64, w32, w64, wcstr } from '../bytes.js';

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
