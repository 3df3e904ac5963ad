/** `sheepdog vdi read | write | import | export`: a VDI's data, to and from stdio and files. */
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { InvalidArgumentError } from '../../lib/errors.js';
import { toJson } from '../format.js';
import { createProgress } from '../progress.js';
import type { CommandSpec } from '../spec.js';
import { copyIn, exportVdi, importVdi } from '../transfer.js';
import { BSS, COPIES, NO_PROGRESS, SNAPSHOT_OPTS, createOpts, progressEnabled, sizeArg, snapOpt } from './args.js';

export const vdiRead: CommandSpec = {
  path: ['vdi', 'read'],
  args: 'NAME [OFFSET [LEN]]',
  summary: 'copy LEN bytes of the VDI from OFFSET to stdout (default: all of it)',
  description: 'OFFSET and LEN take K, M, G, T, P suffixes. Unallocated ranges read as zeros.',
  options: { ...SNAPSHOT_OPTS, 'no-progress': NO_PROGRESS },
  min: 1,
  max: 3,
  examples: ['sheepdog vdi read vol1 1M 4096 | xxd | head'],
  async run(ctx, [name = '', off, len], opts) {
    const s = snapOpt(opts);
    const start = off === undefined ? 0 : sizeArg(off, 'OFFSET');
    const want = len === undefined ? undefined : sizeArg(len, 'LEN');
    const vdi = await ctx.client().openVdi(name, s === undefined ? {} : { snapshot: s });
    try {
      const length = want ?? Math.max(0, vdi.size - start);
      if (start > vdi.size || start + length > vdi.size) {
        throw new InvalidArgumentError(
          `range [${start}, ${start + length}) is past the end of VDI ${name} (${vdi.size} bytes)`,
        );
      }
      if (length === 0) return 0;
      const progress = createProgress(`read ${name}`, length, ctx.io.stderr, progressEnabled(ctx, opts));
      let done = 0;
      const count = new Transform({
        transform(chunk: Buffer, _e, cb) {
          done += chunk.length;
          progress.update(done);
          cb(null, chunk);
        },
      });
      try {
        // createReadStream's `end` is inclusive, as fs.createReadStream's.
        await pipeline(vdi.createReadStream({ start, end: start + length - 1 }), count, ctx.io.stdout, { end: false });
        progress.stop(true);
      } catch (e) {
        progress.stop(false);
        throw e;
      }
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
  description:
    'OFFSET and LEN take K, M, G, T, P suffixes. Input that continues past the end of the VDI is detected ' +
    'before anything beyond it is written: what fits is written, then it fails (exit 64) saying how many ' +
    'bytes landed. A failed write says so too.',
  options: { 'no-progress': NO_PROGRESS },
  min: 1,
  max: 3,
  json: true,
  examples: ['head -c 10M /dev/urandom | sheepdog vdi write vol1', 'echo hello | sheepdog vdi write vol1 4096'],
  async run(ctx, [name = '', off, len], opts) {
    const start = off === undefined ? 0 : sizeArg(off, 'OFFSET');
    const limit = len === undefined ? undefined : sizeArg(len, 'LEN');
    const vdi = await ctx.client().openVdi(name);
    let bytes: number;
    try {
      if (start > vdi.size || (limit !== undefined && start + limit > vdi.size)) {
        throw new InvalidArgumentError(
          `range [${start}, ${start + (limit ?? 0)}) is past the end of VDI ${name} (${vdi.size} bytes)`,
        );
      }
      const progress = createProgress(`write ${name}`, limit, ctx.io.stderr, progressEnabled(ctx, opts));
      try {
        bytes = await copyIn(vdi, ctx.io.stdin, {
          start,
          ...(limit === undefined ? {} : { limit }),
          progress,
          skipZeroes: true,
        });
        await vdi.flush();
        progress.stop(true);
      } catch (e) {
        progress.stop(false);
        throw e;
      }
    } finally {
      await vdi.close();
    }
    if (ctx.json) ctx.out(toJson({ name, offset: start, bytes }));
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
      // Only `-` reads stdin: building process.stdin costs a one-shot command time.
      stdin: () => ctx.io.stdin,
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
  options: { ...SNAPSHOT_OPTS, 'no-progress': NO_PROGRESS },
  min: 2,
  max: 2,
  json: true,
  examples: ['sheepdog vdi export vol1 disk.raw', 'sheepdog vdi export vol1 --snapshot nightly backup.raw'],
  async run(ctx, [name = '', file = ''], opts) {
    const s = snapOpt(opts);
    const enabled = progressEnabled(ctx, opts);
    const r = await exportVdi(ctx.client(), name, file, {
      ...(s === undefined ? {} : { snapshot: s }),
      progress: (total) => createProgress(`export ${name}`, total, ctx.io.stderr, enabled),
      stdout: ctx.io.stdout,
    });
    if (ctx.json && file !== '-') ctx.out(toJson({ name, file, ...r }));
    return 0;
  },
};
