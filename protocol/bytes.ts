/**
 * Little-endian field access on any Uint8Array at any offset, with no
 * allocation (no DataView per call). 64-bit fields are bigint.
 */
import { InvalidArgumentError, ProtocolError } from './errors.js';

export function u8(b: Uint8Array, o: number): number {
  return b[o] as number;
}
export function u16(b: Uint8Array, o: number): number {
  return (b[o] as number) | ((b[o + 1] as number) << 8);
}
export function u32(b: Uint8Array, o: number): number {
  return (
    ((b[o] as number) | ((b[o + 1] as number) << 8) | ((b[o + 2] as number) << 16)) + (b[o + 3] as number) * 0x1000000
  );
}
export function i16(b: Uint8Array, o: number): number {
  const v = u16(b, o);
  return v >= 0x8000 ? v - 0x10000 : v;
}
export function u64(b: Uint8Array, o: number): bigint {
  const hi = u32(b, o + 4);
  const lo = u32(b, o);
  // Most u64 fields on the wire are 0 or fit 32 bits: one BigInt, not four.
  if (hi === 0) return lo === 0 ? 0n : BigInt(lo);
  return (BigInt(hi) << 32n) | BigInt(lo);
}
/** A u64 as a number; throws ProtocolError when it is above 2^53 - 1. */
export function u64n(b: Uint8Array, o: number): number {
  need(b, o, 8, 'u64');
  const hi = u32(b, o + 4);
  if (hi > 0x1fffff) throw new ProtocolError(`64-bit field at ${o} exceeds Number.MAX_SAFE_INTEGER`);
  return hi * 0x100000000 + u32(b, o);
}

export function w8(b: Uint8Array, o: number, v: number): void {
  b[o] = v;
}
export function w16(b: Uint8Array, o: number, v: number): void {
  b[o] = v;
  b[o + 1] = v >>> 8;
}
export function w32(b: Uint8Array, o: number, v: number): void {
  b[o] = v;
  b[o + 1] = v >>> 8;
  b[o + 2] = v >>> 16;
  b[o + 3] = v >>> 24;
}
const U64_MAX = 0xffffffffffffffffn;
export function w64(b: Uint8Array, o: number, v: bigint): void {
  if (v === 0n) {
    w32(b, o, 0);
    w32(b, o + 4, 0);
    return;
  }
  const x = v >= 0n && v <= U64_MAX ? v : BigInt.asUintN(64, v);
  w32(b, o, Number(x & 0xffffffffn));
  w32(b, o + 4, Number(x >> 32n));
}
/** Write a non-negative safe integer as u64. */
export function w64n(b: Uint8Array, o: number, v: number): void {
  w32(b, o, v >>> 0);
  w32(b, o + 4, Math.floor(v / 0x100000000));
}

// ignoreBOM: a name that starts with U+FEFF keeps it (the default would strip it).
const utf8 = new TextDecoder('utf-8', { ignoreBOM: true });
const enc = new TextEncoder();

/** Read a NUL-terminated string from a fixed-size field. */
export function cstr(b: Uint8Array, o: number, len: number): string {
  let end = o;
  const max = o + len;
  while (end < max && b[end] !== 0) end++;
  return utf8.decode(b.subarray(o, end));
}

/**
 * Write `s` as UTF-8 into a fixed field of `len` bytes, NUL-padded. The string
 * must leave room for the terminating NUL (sheep uses strlen / strncmp).
 */
export function wcstr(b: Uint8Array, o: number, len: number, s: string | Uint8Array, what = 'string'): void {
  const bytes = typeof s === 'string' ? enc.encode(s) : s;
  if (bytes.length >= len) {
    throw new InvalidArgumentError(`${what} is ${bytes.length} bytes; at most ${len - 1} fit`);
  }
  if (bytes.includes(0)) throw new InvalidArgumentError(`${what} contains a NUL byte`);
  b.set(bytes, o);
  b.fill(0, o + bytes.length, o + len);
}

/**
 * A copy of `b[start, end)` as a plain Uint8Array. (`Buffer#slice` is a view,
 * unlike `Uint8Array#slice`: decoded fields must not alias the input.)
 */
export function copyBytes(b: Uint8Array, start: number, end: number): Uint8Array {
  return new Uint8Array(b.subarray(start, end));
}

export function utf8Bytes(s: string): Uint8Array {
  return enc.encode(s);
}

/** Throw a ProtocolError unless `b` holds `need` bytes from `o`. */
export function need(b: Uint8Array, o: number, n: number, what: string): void {
  if (!Number.isInteger(o) || o < 0 || !Number.isInteger(n) || n < 0 || o + n > b.length) {
    throw new ProtocolError(`${what}: need ${n} bytes at offset ${o}, buffer has ${b.length}`);
  }
}
