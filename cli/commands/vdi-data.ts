/** `sheepdog vdi read | write | import | export`: a VDI's data, to and from stdio and files. */
import { pipeline } from 'node:stream/promises';
import { InvalidArgumentError } from '../../lib/errors.js';
import { toJson } from '../format.js';
import { createProgress } from '../progress.js';
import type { CommandSpec } from '../spec.js';
import { exportVdi, importVdi } from '../transfer.js';
import { BSS, COPIES, NO_PROGRESS, SNAPSHOT, createOpts, progressEnabled, sizeArg, snapOpt } from './args.js';

/** Up to `limit` bytes of `src` (all of it when limit is undefined). */
async function* take(src: AsyncIterable<Buffer | Uint8Array>, limit: number | undefined): AsyncGenerator<Buffer> {
  if (limit === 0) return;
  let left = limit ?? Number.POSITIVE_INFINITY;
  for await (const c of src) {
    const b = Buffer.isBuffer(c) ? c : Buffer.from(c);
    if (b.length >= left) {
      yield b.subarray(0, left);
      return;
    }
    left -= b.length;
    yield b;
  }
}

export const vdiRead: CommandSpec = {
  path: ['vdi', 'read'],
  args: 'NAME [OFFSET [LEN]]',
  summary: 'copy LEN bytes of the VDI from OFFSET to stdout (default: all of it)',
  description: 'OFFSET and LEN take K, M, G suffixes. Unallocated ranges read as zeros.',
  options: { snapshot: SNAPSHOT },
  min: 1,
  max: 3,
  examples: ['sheepdog vdi read vol1 1M 4096 | xxd | head'],
  async run(ctx, [name = '', off, len], opts) {
    const s = snapOpt(opts);
    const vdi = await ctx.client().openVdi(name, s === undefined ? {} : { snapshot: s });
    try {
      const start = off === undefined ? 0 : sizeArg(off, 'OFFSET');
      const length = len === undefined ? vdi.size - start : sizeArg(len, 'LEN');
      if (start > vdi.size || start + length > vdi.size) {
        throw new InvalidArgumentError(
          `range [${start}, ${start + length}) is past the end of VDI ${name} (${vdi.size} bytes)`,
        );
      }
      if (length === 0) return 0;
      await pipeline(vdi.createReadStream({ start, end: start + length - 1 }), ctx.io.stdout, { end: false });
    } finally {
      await vdi.close();
    }
    return 0;
  },
};

export const vdiWrite: CommandSpec = {
  path: ['vdi', 'write'],
  args: 'NAME [OFFSET [LEN]]',
  summary: 'copy stdin into the VDI at OFFSET (LEN bytes at most; default: until end of input)',
  description: 'OFFSET and LEN take K, M, G suffixes. Input past the end of the VDI is an error.',
  min: 1,
  max: 3,
  examples: ['head -c 10M /dev/urandom | sheepdog vdi write vol1', 'echo hello | sheepdog vdi write vol1 4096'],
  async run(ctx, [name = '', off, len], _opts) {
    const start = off === undefined ? 0 : sizeArg(off, 'OFFSET');
    const limit = len === undefined ? undefined : sizeArg(len, 'LEN');
    const vdi = await ctx.client().openVdi(name);
    try {
      if (start > vdi.size || (limit !== undefined && start + limit > vdi.size)) {
        throw new InvalidArgumentError(
          `range [${start}, ${start + (limit ?? 0)}) is past the end of VDI ${name} (${vdi.size} bytes)`,
        );
      }
      await pipeline(take(ctx.io.stdin, limit), vdi.createWriteStream({ start, skipZeroes: true }));
      await vdi.flush();
    } finally {
      await vdi.close();
    }
    return 0;
  },
};

export const vdiImport: CommandSpec = {
  path: ['vdi', 'import'],
  args: 'NAME FILE',
  summary: 'copy a raw image file into a VDI (created with the file\u2019s size if missing)',
  description:
    'All-zero blocks are not written, so the VDI stays thin. An existing VDI must be at least as large as FILE. ' +
    'A VDI created by a failed import is deleted again. FILE "-" reads stdin (the VDI must exist).',
  options: { copies: COPIES, 'block-size-shift': BSS, 'no-progress': NO_PROGRESS },
  min: 2,
  max: 2,
  json: true,
  examples: ['sheepdog vdi import vol1 disk.raw'],
  async run(ctx, [name = '', file = ''], opts) {
    const enabled = progressEnabled(ctx, opts);
    const r = await importVdi(ctx.client(), name, file, {
      create: createOpts(opts),
      stdin: ctx.io.stdin,
      progress: (total) => createProgress(`import ${name}`, total, ctx.io.stderr, enabled),
    });
    if (ctx.json) ctx.out(toJson({ name, file, ...r }));
    return 0;
  },
};

export const vdiExport: CommandSpec = {
  path: ['vdi', 'export'],
  args: 'NAME FILE',
  summary: 'copy a VDI (or a snapshot) into a raw image file, sparse',
  description:
    'Only allocated, non-zero blocks are written (positioned writes); the file gets the VDI\u2019s size, so ' +
    'unallocated ranges stay holes. FILE "-" writes to stdout (not sparse).',
  options: { snapshot: SNAPSHOT, 'no-progress': NO_PROGRESS },
  min: 2,
  max: 2,
  json: true,
  examples: ['sheepdog vdi export vol1 disk.raw', 'sheepdog vdi export vol1 --snapshot nightly backup.raw'],
  async run(ctx, [name = '', file = ''], opts) {
    const s = snapOpt(opts);
    const enabled = progressEnabled(ctx, opts) && file !== '-';
    const r = await exportVdi(ctx.client(), name, file, {
      ...(s === undefined ? {} : { snapshot: s }),
      progress: (total) => createProgress(`export ${name}`, total, ctx.io.stderr, enabled),
      stdout: ctx.io.stdout,
    });
    if (ctx.json && file !== '-') ctx.out(toJson({ name, file, ...r }));
    return 0;
  },
};
