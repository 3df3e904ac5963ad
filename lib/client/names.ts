/** Input validation shared by the client, driver and CLI. */
import { InvalidArgumentError } from '../errors.js';
import { SD_MAX_VDI_ATTR_KEY_LEN, SD_MAX_VDI_LEN, SD_MAX_VDI_TAG_LEN } from '../../protocol/constants.js';

const enc = new TextEncoder();

function checkString(s: unknown, what: string, max: number, allowEmpty: boolean): string {
  if (typeof s !== 'string') throw new InvalidArgumentError(`${what} must be a string`);
  const n = enc.encode(s).length;
  if (!allowEmpty && n === 0) throw new InvalidArgumentError(`${what} must not be empty`);
  if (n > max) throw new InvalidArgumentError(`${what} is ${n} bytes of UTF-8; at most ${max} are allowed`);
  if (s.includes('\0')) throw new InvalidArgumentError(`${what} must not contain a NUL character`);
  return s;
}

/** A VDI name: 1–255 bytes of UTF-8, no NUL. */
export function checkVdiName(name: unknown, what = 'VDI name'): string {
  return checkString(name, what, SD_MAX_VDI_LEN - 1, false);
}

/** A snapshot tag: 1–255 bytes of UTF-8, no NUL. */
export function checkTag(tag: unknown, what = 'snapshot tag'): string {
  return checkString(tag, what, SD_MAX_VDI_TAG_LEN - 1, false);
}

/** An attribute key: 1–255 bytes of UTF-8, no NUL. */
export function checkAttrKey(key: unknown): string {
  return checkString(key, 'attribute key', SD_MAX_VDI_ATTR_KEY_LEN - 1, false);
}

/** A non-negative safe integer byte count or offset. */
export function checkBytes(n: unknown, what: string, { min = 0 }: { min?: number } = {}): number {
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < min) {
    throw new InvalidArgumentError(`${what} must be an integer >= ${min} (bytes), got ${String(n)}`);
  }
  return n;
}

/** A snapshot selector: a tag (string) or a snapshot id (positive integer). */
export type SnapshotRef = string | number;

export function checkSnapshotRef(ref: unknown): SnapshotRef {
  if (typeof ref === 'number') {
    if (!Number.isInteger(ref) || ref < 1 || ref > 0xffffffff) {
      throw new InvalidArgumentError(`snapshot id must be an integer in 1..2^32-1, got ${ref}`);
    }
    return ref;
  }
  return checkTag(ref);
}

const SUFFIX: Record<string, number> = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40, P: 2 ** 50 };

/** Parse "10G", "512M", "4096", "1.5T" (binary units, optional trailing B/iB). */
export function parseSize(s: string, what = 'size'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:i?B)?\s*$/i.exec(s);
  if (!m) throw new InvalidArgumentError(`${what}: cannot parse ${JSON.stringify(s)} (use e.g. 4096, 512M, 10G)`);
  const mult = SUFFIX[(m[2] ?? '').toUpperCase()] ?? 1;
  const v = Number(m[1]) * mult;
  if (!Number.isSafeInteger(v))
    throw new InvalidArgumentError(`${what}: ${JSON.stringify(s)} is not a whole number of bytes`);
  return v;
}

/** Redundancy: a number of copies (1..31) or erasure code "d:p" (d in 2,4,8,16; p in 1..15). */
export function parseRedundancy(r: number | string): { copies: number; copyPolicy: number } {
  if (typeof r === 'number') {
    if (!Number.isInteger(r) || r < 1 || r > 31) throw new InvalidArgumentError(`copies must be 1..31, got ${r}`);
    return { copies: r, copyPolicy: 0 };
  }
  const m = /^(\d+)(?::(\d+))?$/.exec(r.trim());
  if (!m) throw new InvalidArgumentError(`redundancy must be N or D:P, got ${JSON.stringify(r)}`);
  if (m[2] === undefined) return parseRedundancy(Number(m[1]));
  const d = Number(m[1]);
  const p = Number(m[2]);
  if (![2, 4, 8, 16].includes(d))
    throw new InvalidArgumentError(`erasure-code data strips must be 2, 4, 8 or 16, got ${d}`);
  if (p < 1 || p > 15) throw new InvalidArgumentError(`erasure-code parity must be 1..15, got ${p}`);
  return { copies: d + p, copyPolicy: ((d / 2) << 4) | p };
}

/** Text form of a VDI's redundancy, as `dog vdi list -r` prints it ("2" or "2:1"). */
export function redundancyString(copies: number, copyPolicy: number): string {
  if (copyPolicy === 0) return String(copies);
  return `${(copyPolicy >> 4) * 2}:${copyPolicy & 0xf}`;
}
