/** FNV-1a 64 and the VDI-name hash (include/sheepdog_proto.h). */
import { SD_NR_VDIS } from './constants.js';

export const FNV1A_64_INIT = 0xcbf29ce484222325n;
export const FNV_64_PRIME = 0x100000001b3n;
const enc = new TextEncoder();

/** 64-bit FNV-1a over `bytes`, continuing from `hval`. */
export function fnv1a64(bytes: Uint8Array, hval: bigint = FNV1A_64_INIT): bigint {
  // 64-bit multiply done as 16-bit limbs in numbers; avoids a bigint per byte.
  let h0 = Number(hval & 0xffffn);
  let h1 = Number((hval >> 16n) & 0xffffn);
  let h2 = Number((hval >> 32n) & 0xffffn);
  let h3 = Number((hval >> 48n) & 0xffffn);
  for (let i = 0; i < bytes.length; i++) {
    h0 ^= bytes[i] as number;
    // prime = 0x100_0000_01b3: limbs p0 = 0x01b3, p2 = 0x0100
    const t0 = h0 * 0x1b3;
    const t1 = h1 * 0x1b3;
    const t2 = h2 * 0x1b3 + h0 * 0x100;
    const t3 = h3 * 0x1b3 + h1 * 0x100;
    h0 = t0 & 0xffff;
    const c1 = t1 + Math.floor(t0 / 0x10000);
    h1 = c1 & 0xffff;
    const c2 = t2 + Math.floor(c1 / 0x10000);
    h2 = c2 & 0xffff;
    h3 = (t3 + Math.floor(c2 / 0x10000)) & 0xffff;
  }
  return (BigInt(h3) << 48n) | (BigInt(h2) << 32n) | (BigInt(h1) << 16n) | BigInt(h0);
}

/**
 * `sd_hash_vdi(name)`: FNV-1a 64 of the name's bytes, low 24 bits. This is
 * where sheep starts looking for a free vid on NEW_VDI and where a lookup
 * starts its scan; 0 is never a vid (sheep then starts at 1).
 */
export function sdHashVdi(name: string | Uint8Array): number {
  const bytes = typeof name === 'string' ? enc.encode(name) : name;
  return Number(fnv1a64(bytes) & BigInt(SD_NR_VDIS - 1));
}
