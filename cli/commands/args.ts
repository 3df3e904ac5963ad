/** Arguments and options shared by the `vdi` commands. */
import type { CreateVdiOptions } from '../../lib/client/client.js';
import { type SnapshotRef, checkVdiSize, parseSize, parseSizeBig } from '../../lib/client/names.js';
import { UsageError } from '../exit.js';
import { type Context, type OptionSpec, type OptionValues, bool, str } from '../spec.js';

// ------------------------------------------------------------- arguments

/** A snapshot given as a number is its id, anything else a tag (as dog -s). */
export function parseSnapshotRef(s: string): SnapshotRef {
  return /^\d+$/.test(s) ? Number(s) : s;
}

/**
 * The snapshot selected by `-s/--snapshot TAG|ID` (all digits: an id, as
 * dog's -s), `--tag TAG` (always a tag, even all digits) or `--id ID`.
 */
export function snapOpt(opts: OptionValues): SnapshotRef | undefined {
  const s = str(opts, 'snapshot');
  const tag = str(opts, 'tag');
  const id = str(opts, 'id');
  if ([s, tag, id].filter((x) => x !== undefined).length > 1)
    throw new UsageError('give one of --snapshot, --tag and --id');
  if (tag !== undefined) return tag;
  if (id !== undefined) {
    if (!/^\d+$/.test(id) || Number(id) < 1 || Number(id) > 0xffffffff)
      throw new UsageError(`--id must be a snapshot id (1..4294967295), got ${JSON.stringify(id)}`);
    return Number(id);
  }
  return s === undefined ? undefined : parseSnapshotRef(s);
}

export function requireSnap(opts: OptionValues, cmd: string): SnapshotRef {
  const s = snapOpt(opts);
  if (s === undefined) throw new UsageError(`${cmd} needs --snapshot TAG|ID (or --tag TAG, --id ID)`);
  return s;
}

/** An offset or length: a safe integer. */
export function sizeArg(s: string, what: string): number {
  return parseSize(s, what);
}

/** A VDI size, exact up to sheep's 16 PiB: a number when safe, else a bigint. */
export function vdiSizeArg(s: string, what = 'SIZE'): number | bigint {
  const v = checkVdiSize(parseSizeBig(s, what), what);
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

function intOpt(opts: OptionValues, name: string): number | undefined {
  const s = str(opts, name);
  if (s === undefined) return undefined;
  if (!/^\d+$/.test(s)) throw new UsageError(`--${name} must be a whole number, got ${JSON.stringify(s)}`);
  return Number(s);
}

export function createOpts(opts: OptionValues): CreateVdiOptions {
  const o: CreateVdiOptions = {};
  const c = str(opts, 'copies');
  if (c !== undefined) o.copies = /^\d+$/.test(c) ? Number(c) : c;
  const bss = intOpt(opts, 'block-size-shift');
  if (bss !== undefined) o.blockSizeShift = bss;
  if (bool(opts, 'prealloc')) o.preallocate = true;
  if (bool(opts, 'hyper')) o.hyper = true;
  return o;
}

// --------------------------------------------------------------- options

export const SNAPSHOT: OptionSpec = {
  type: 'string',
  short: 's',
  arg: 'TAG|ID',
  help: 'a snapshot, by tag or by id (all digits: an id)',
};
/** `--snapshot`, `--tag`, `--id`: the options that select a snapshot. */
export const SNAPSHOT_OPTS: Record<string, OptionSpec> = {
  snapshot: SNAPSHOT,
  tag: { type: 'string', arg: 'TAG', help: 'a snapshot by tag, even an all-digit one' },
  id: { type: 'string', arg: 'ID', help: 'a snapshot by id' },
};
export const COPIES: OptionSpec = {
  type: 'string',
  short: 'c',
  arg: 'N|D:P',
  help: 'redundancy: N copies (1..31) or erasure code D:P (D = 2, 4, 8, 16); default: the cluster\u2019s',
};
export const BSS: OptionSpec = {
  type: 'string',
  short: 'z',
  arg: 'N',
  help: 'object size 2^N bytes (20..31); default: the cluster\u2019s (22 = 4 MiB)',
};
export const NO_PROGRESS: OptionSpec = {
  type: 'boolean',
  help: 'no progress bar (shown only when stderr is a terminal)',
};

export function progressEnabled(ctx: Context, opts: OptionValues): boolean {
  return ctx.io.stderr.isTTY === true && !bool(opts, 'no-progress') && !ctx.json;
}

/** dog's `-r/--raw`: its exact columns, for scripts written for dog. */
export const RAW: OptionSpec = {
  type: 'boolean',
  short: 'r',
  help: 'dog\u2019s raw output: no header, fields separated by one space, sizes in bytes',
};

/** dog's escaping of a name in raw output: spaces and backslashes get a backslash. */
export function rawName(s: string): string {
  return s.replace(/[\\ ]/g, (c) => `\\${c}`);
}

/** Refuse `--raw` together with `--json`. */
export function rawOpt(ctx: Context, opts: OptionValues): boolean {
  const raw = bool(opts, 'raw');
  if (raw && ctx.json) throw new UsageError('give one of --raw and --json');
  return raw;
}
