/** `sheepdog vdi snapshot | clone | rollback`. */
import { UsageError } from '../exit.js';
import { toJson } from '../format.js';
import { type CommandSpec, type OptionSpec, str } from '../spec.js';
import { SNAPSHOT_OPTS, requireSnap } from './args.js';

export const vdiSnapshot: CommandSpec = {
  path: ['vdi', 'snapshot'],
  args: 'NAME',
  summary: 'snapshot a VDI under a tag',
  options: { tag: { type: 'string', short: 's', arg: 'TAG', help: 'the snapshot\u2019s tag (required)' } },
  min: 1,
  max: 1,
  json: true,
  examples: ['sheepdog vdi snapshot vol1 --tag before-upgrade'],
  async run(ctx, [name = ''], opts) {
    const tag = str(opts, 'tag');
    if (tag === undefined) throw new UsageError('vdi snapshot needs --tag TAG');
    const r = await ctx.client().snapshotVdi(name, tag);
    if (/^\d+$/.test(tag)) {
      // Not refused: dates (20240501) are common tags, and dog accepts them.
      ctx.note(
        `sheepdog: vdi snapshot ${name}: note: tag ${JSON.stringify(tag)} is all digits; ` +
          `-s ${tag} selects snapshot id ${tag}, so select this one with --tag ${tag}`,
      );
    }
    if (ctx.json) ctx.out(toJson(r));
    return 0;
  },
};

export const vdiClone: CommandSpec = {
  path: ['vdi', 'clone'],
  args: 'SRC DST',
  summary: 'clone a snapshot of SRC into a new VDI DST (copy-on-write)',
  options: {
    ...SNAPSHOT_OPTS,
    snapshot: {
      ...(SNAPSHOT_OPTS['snapshot'] as OptionSpec),
      help: 'the snapshot of SRC to clone (required: this, --tag or --id)',
    },
  },
  min: 2,
  max: 2,
  json: true,
  examples: ['sheepdog vdi clone vol1 vol2 --snapshot before-upgrade'],
  async run(ctx, [src = '', dst = ''], opts) {
    const info = await ctx.client().cloneVdi(src, requireSnap(opts, 'vdi clone'), dst);
    if (ctx.json) ctx.out(toJson(info));
    return 0;
  },
};

export const vdiRollback: CommandSpec = {
  path: ['vdi', 'rollback'],
  args: 'NAME',
  summary: 'roll a VDI back to a snapshot (discards changes made since)',
  options: {
    ...SNAPSHOT_OPTS,
    snapshot: {
      ...(SNAPSHOT_OPTS['snapshot'] as OptionSpec),
      help: 'the snapshot to roll back to (required: this, --tag or --id)',
    },
  },
  min: 1,
  max: 1,
  json: true,
  async run(ctx, [name = ''], opts) {
    const info = await ctx.client().rollbackVdi(name, requireSnap(opts, 'vdi rollback'));
    if (ctx.json) ctx.out(toJson(info));
    return 0;
  },
};
