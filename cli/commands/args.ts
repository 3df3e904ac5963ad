/** Arguments and options shared by the `vdi` commands. */
import type { CreateVdiOptions } from '../../lib/client/client.js';
import { type SnapshotRef, parseSize } from '../../lib/client/names.js';
import { UsageError } from '../exit.js';
import { type Context, type OptionSpec, type OptionValues, bool, str } from '../spec.js';

// ------------------------------------------------------------- arguments

/** A snapshot given as a number is its id, anything else a tag (as dog -s). */
export function parseSnapshotRef(s: string): SnapshotRef {
  return /^\d+$/.test(s) ? Number(s) : s;
}

export function snapOpt(opts: OptionValues): SnapshotRef | undefined {
  const s = str(opts, 'snapshot');
  return s === undefined ? undefined : parseSnapshotRef(s);
}

export function requireSnap(opts: OptionValues, cmd: string): SnapshotRef {
  const s = snapOpt(opts);
  if (s === undefined) throw new UsageError(`${cmd} needs --snapshot TAG|ID`);
  return s;
}

export function sizeArg(s: string, what: string): number {
  const n = parseSize(s, what);
  return n;
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

export const SNAPSHOT: OptionSpec = { type: 'string', short: 's', arg: 'TAG|ID', help: 'a snapshot, by tag or by id' };
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
