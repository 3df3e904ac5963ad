/**
 * The VDI bitmaps of READ_VDIS / READ_DEL_VDIS: little-endian unsigned-long
 * bitmaps, one bit per vid.
 */
import { SD_NR_VDIS } from '../constants.js';

/** Bit `i` of a little-endian unsigned-long bitmap (LSB-first bytes). */
export function bitmapTest(b: Uint8Array, i: number): boolean {
  return (((b[i >>> 3] as number) >>> (i & 7)) & 1) === 1;
}
export function bitmapSet(b: Uint8Array, i: number): void {
  b[i >>> 3] = (b[i >>> 3] as number) | (1 << (i & 7));
}
export function bitmapClear(b: Uint8Array, i: number): void {
  b[i >>> 3] = (b[i >>> 3] as number) & ~(1 << (i & 7));
}
/** Every set bit, ascending, skipping zero words quickly. */
export function* bitmapSetBits(b: Uint8Array, nbits = b.length * 8): Generator<number> {
  const nbytes = Math.min(Math.ceil(nbits / 8), b.length);
  // Whole zero 32-bit words are skipped four bytes at a time (a 2 MiB VDI bitmap is mostly zero).
  const words = b.byteOffset % 4 === 0 ? new Uint32Array(b.buffer, b.byteOffset, nbytes >>> 2) : undefined;
  for (let byte = 0; byte < nbytes; byte++) {
    if (words !== undefined && (byte & 3) === 0 && byte >>> 2 < words.length && words[byte >>> 2] === 0) {
      byte += 3;
      continue;
    }
    const v = b[byte] as number;
    if (v === 0) continue;
    for (let bit = 0; bit < 8; bit++) {
      const i = byte * 8 + bit;
      if (i < nbits && (v >>> bit) & 1) yield i;
    }
  }
}
/** First clear bit at or after `start` (no wrap), or `nbits` if none. */
export function bitmapNextZero(b: Uint8Array, start: number, nbits = SD_NR_VDIS): number {
  for (let i = start; i < nbits; i++) {
    if ((i & 7) === 0 && b[i >>> 3] === 0xff) {
      i += 7;
      continue;
    }
    if (!bitmapTest(b, i)) return i;
  }
  return nbits;
}
