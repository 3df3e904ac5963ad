/** `sheepdog vdi backup | restore`: dog 1.0's backup format on stdout / stdin (docs/backup.md). */
import { fstatSync } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { toJson } from '../format.js';
import { UsageError } from '../exit.js';
import { createProgress } from '../progress.js';
import { type OptionValues, bool, str } from '../spec.js';
import type { CommandSpec } from '../spec.js';
import {
  BSS,
  COPIES,
  NO_PROGRESS,
  SNAPSHOT,
  createOpts,
  parseSnapshotRef,
  progressEnabled,
  vdiSizeArg,
} from './args.js';

function snap(opts: OptionValues, name: string): ReturnType<typeof parseSnapshotRef> | undefined {
  const s = str(opts, name);
  return s === undefined ? undefined : parseSnapshotRef(s);
}

/** The size of stdin when it is a regular file (`< FILE`), for the progress bar. */
function stdinSize(stdin: unknown): number | undefined {
  const fd = (stdin as { fd?: unknown }).fd;
  if (typeof fd !== 'number') return undefined;
  try {
    const st = fstatSync(fd);
    return st.isFile() ? st.size : undefined;
  } catch {
    return undefined;
  }
}

export const vdiBackup: CommandSpec = {
  path: ['vdi', 'backup'],
  args: 'NAME',
  summary: 'write a backup of the VDI to stdout, in dog 1.0\u2019s format (incremental with -F)',
  description:
    'Every object that differs between snapshot -F FROM (default: none, a full backup) and snapshot -s TO ' +
    '(default: the working VDI; back up a snapshot for a consistent image), trimmed to the 512-byte sectors ' +
    'that differ, as `dog vdi backup -F FROM -s TO` writes it: `dog vdi restore` reads it, and ' +
    '`sheepdog vdi restore` reads dog\u2019s. With --json the summary goes to stderr (stdout carries the backup).',
  options: {
    from: { type: 'string', short: 'F', arg: 'TAG|ID', help: 'the older snapshot: back up only what changed since' },
    snapshot: { ...SNAPSHOT, help: 'the newer snapshot (default: the working VDI)' },
    'no-progress': NO_PROGRESS,
  },
  min: 1,
  max: 1,
  json: true,
  examples: [
    'sheepdog vdi backup -s mon vol1 > vol1.mon.full',
    'sheepdog vdi backup -F mon -s tue vol1 > vol1.mon-tue.incr',
  ],
  async run(ctx, [name = ''], opts) {
    if (ctx.io.stdout.isTTY === true) throw new UsageError('stdout is a terminal: redirect the backup to a file');
    const from = snap(opts, 'from');
    const to = snap(opts, 'snapshot');
    let progress = createProgress('backup', 0, ctx.io.stderr, false);
    const stream = await ctx.client().backupVdi(name, {
      ...(from === undefined ? {} : { from }),
      ...(to === undefined ? {} : { to }),
      onProgress: (p) => progress.update(p.scanned * stream.plan.objectSize),
    });
    progress = createProgress(
      `backup ${name}`,
      stream.plan.objects * stream.plan.objectSize,
      ctx.io.stderr,
      progressEnabled(ctx, opts),
    );
    try {
      await pipeline(stream, ctx.io.stdout, { end: false });
      progress.stop(true);
    } catch (e) {
      progress.stop(false);
      throw e;
    }
    const s = stream.stats;
    if (ctx.json) {
      ctx.io.stderr.write(
        toJson({ name, from: from ?? null, to: to ?? null, objects: s.objects, bytes: s.bytes, seconds: s.seconds }),
      );
    }
    return 0;
  },
};

export const vdiRestore: CommandSpec = {
  path: ['vdi', 'restore'],
  args: 'NAME',
  summary: 'restore a backup (dog 1.0\u2019s format) from stdin onto snapshot -s of the VDI',
  description:
    'As `dog vdi restore -s SNAP NAME`: the working VDI is deleted (its writes since the last snapshot are ' +
    'lost, as with dog), the backup is applied to a new VDI based on SNAP, which becomes a new snapshot ' +
    '(untagged unless --snapshot-tag), and the working VDI is re-made from its old parent. --into TARGET ' +
    'restores into a new VDI TARGET instead and changes nothing else. --size restores a backup made without ' +
    '-F into a new VDI of that size. A corrupt or cut stream fails (exit 1) naming the byte offset, and the ' +
    'VDI being restored is deleted unless --keep.',
  options: {
    snapshot: { ...SNAPSHOT, help: 'the snapshot the backup was made from (its -F)' },
    into: { type: 'string', arg: 'TARGET', help: 'restore into this new VDI (a clone of the snapshot)' },
    size: { type: 'string', arg: 'SIZE', help: 'for a full backup without -s: size of the new VDI' },
    copies: COPIES,
    'block-size-shift': BSS,
    'snapshot-tag': { type: 'string', arg: 'TAG', help: 'tag of the snapshot the dog-style restore makes' },
    keep: { type: 'boolean', help: 'keep the partly restored VDI when the restore fails' },
    force: { type: 'boolean', short: 'f', help: 'delete the working VDI even if it is locked' },
    'no-progress': NO_PROGRESS,
  },
  min: 1,
  max: 1,
  json: true,
  examples: [
    'sheepdog vdi restore -s mon vol1 < vol1.mon-tue.incr',
    'sheepdog vdi restore -s mon --into vol1-tue vol1 < vol1.mon-tue.incr',
    'sheepdog vdi restore --size 10G vol2 < vol1.mon.full',
  ],
  async run(ctx, [name = ''], opts) {
    if (ctx.io.stdin.isTTY === true) throw new UsageError('stdin is a terminal: redirect a backup file into it');
    const snapshot = snap(opts, 'snapshot');
    const sz = str(opts, 'size');
    if (snapshot === undefined && sz === undefined) {
      throw new UsageError('restore needs -s SNAP (the backup\u2019s -F), or --size for a full backup');
    }
    const into = str(opts, 'into');
    const tag = str(opts, 'snapshot-tag');
    const progress = createProgress(
      `restore ${name}`,
      stdinSize(ctx.io.stdin),
      ctx.io.stderr,
      progressEnabled(ctx, opts),
    );
    let r;
    try {
      r = await ctx.client().restoreVdi(name, ctx.io.stdin, {
        ...(snapshot === undefined ? {} : { snapshot }),
        ...(into === undefined ? {} : { into }),
        ...(sz === undefined ? {} : { size: vdiSizeArg(sz), ...createOpts(opts) }),
        ...(tag === undefined ? {} : { tag }),
        keep: bool(opts, 'keep'),
        force: bool(opts, 'force'),
        onProgress: (p) => progress.update(p.bytes),
      });
      progress.stop(true);
    } catch (e) {
      progress.stop(false);
      throw e;
    }
    if (ctx.json) {
      ctx.out(
        toJson({
          name: r.name,
          vdiId: r.vdiId,
          snapshot: r.snapshot,
          objects: r.objects,
          bytes: r.bytes,
          seconds: r.seconds,
        }),
      );
    } else if (r.snapshot) {
      ctx.note(`restored ${name} as a new snapshot (vdi id ${r.vdiId.toString(16)}): ${r.objects} objects`);
    }
    return 0;
  },
};
