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

/** C0 controls, DEL and C1 controls: they break tables and terminals. */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

function noControl(v: string, what: string): string {
  const c = CONTROL.exec(v);
  if (c) {
    const code = c[0].charCodeAt(0).toString(16).padStart(2, '0');
    throw new InvalidArgumentError(`${what} ${JSON.stringify(v)} contains a control character (\\x${code})`);
  }
  return v;
}

/**
 * The name of a new VDI (create, clone, import): as checkVdiName, and no
 * control characters (newline, tab, escape...), which break tables and
 * terminals. Existing names holding them are still looked up with checkVdiName.
 */
export function checkNewVdiName(name: unknown, what = 'VDI name'): string {
  return noControl(checkVdiName(name, what), what);
}

/** The tag of a new snapshot: as checkTag, and no control characters. */
export function checkNewTag(tag: unknown, what = 'snapshot tag'): string {
  return noControl(checkTag(tag, what), what);
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

const SUFFIX: Record<string, bigint> = {
  '': 1n,
  K: 1n << 10n,
  M: 1n << 20n,
  G: 1n << 30n,
  T: 1n << 40n,
  P: 1n << 50n,
};

/**
 * The largest VDI sheep creates: 2^32 objects of 4 MiB, 16 PiB (a hyper
 * volume; sheep's SD_MAX_VDI_SIZE). Past 2^53 bytes a size is not a safe
 * JavaScript number, so it is passed as a bigint.
 */
export const SD_MAX_VDI_SIZE = 1n << 54n;

/**
 * Parse "10G", "512M", "4096", "1.5T", "16P" exactly (binary units K..P,
 * optional trailing B/iB) into a bigint. Negative sizes and fractions of a
 * byte are refused with a message saying so.
 */
export function parseSizeBig(s: string, what = 'size'): bigint {
  const m = /^\s*(-?)(\d+)(?:\.(\d+))?\s*([KMGTP]?)(?:i?B)?\s*$/i.exec(s);
  if (!m)
    throw new InvalidArgumentError(`${what}: cannot parse ${JSON.stringify(s)} (use e.g. 4096, 512M, 10G, 1.5T, 16P)`);
  if (m[1] === '-') throw new InvalidArgumentError(`${what}: ${JSON.stringify(s)} is negative`);
  const frac = m[3] ?? '';
  const mult = SUFFIX[(m[4] ?? '').toUpperCase()] ?? 1n;
  const scaled = BigInt(`${m[2] ?? '0'}${frac}`) * mult;
  const div = 10n ** BigInt(frac.length);
  if (scaled % div !== 0n)
    throw new InvalidArgumentError(`${what}: ${JSON.stringify(s)} is not a whole number of bytes`);
  return scaled / div;
}

/** Like parseSizeBig, for offsets and lengths: a safe integer (at most 2^53 - 1). */
export function parseSize(s: string, what = 'size'): number {
  const v = parseSizeBig(s, what);
  if (v > BigInt(Number.MAX_SAFE_INTEGER))
    throw new InvalidArgumentError(`${what}: ${JSON.stringify(s)} is past 2^53 - 1 bytes`);
  return Number(v);
}

/**
 * A VDI size: a safe integer or a bigint, 1 .. SD_MAX_VDI_SIZE (16 PiB).
 * Returned as a bigint (exact).
 */
export function checkVdiSize(n: unknown, what = 'size'): bigint {
  let v: bigint;
  if (typeof n === 'bigint') v = n;
  else if (typeof n === 'number' && Number.isSafeInteger(n)) v = BigInt(n);
  else
    throw new InvalidArgumentError(
      `${what} must be an integer number of bytes (a safe integer or a bigint), got ${String(n)}`,
    );
  if (v < 1n) throw new InvalidArgumentError(`${what} must be at least 1 byte, got ${v}`);
  if (v > SD_MAX_VDI_SIZE)
    throw new InvalidArgumentError(`${what} ${v} is past sheep's largest VDI (${SD_MAX_VDI_SIZE} bytes, 16 PiB)`);
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
