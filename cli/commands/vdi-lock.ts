/** `sheepdog vdi lock list | unlock`: VDI locks. */
import { table, toJson } from '../format.js';
import type { CommandSpec } from '../spec.js';
import { SNAPSHOT_OPTS, snapOpt } from './args.js';

export const vdiLockList: CommandSpec = {
  path: ['vdi', 'lock', 'list'],
  args: '',
  summary: 'list VDIs whose lock is held, and by which gateway',
  min: 0,
  max: 0,
  json: true,
  async run(ctx) {
    const locks = await ctx.client().listLocks();
    if (ctx.json) {
      ctx.out(toJson(locks));
      return 0;
    }
    ctx.out(
      table(
        ['Name', 'Tag', 'Id', 'VDI id', 'State', 'Owners'],
        locks.map((l) => [
          l.name,
          l.tag,
          String(l.snapId),
          l.vdiId.toString(16).padStart(6, '0'),
          l.state,
          l.owners.join(','),
        ]),
      ),
    );
    return 0;
  },
};

export const vdiLockUnlock: CommandSpec = {
  path: ['vdi', 'lock', 'unlock'],
  args: 'NAME',
  summary: 'force-release a VDI\u2019s lock, whoever holds it',
  options: { ...SNAPSHOT_OPTS },
  min: 1,
  max: 1,
  async run(ctx, [name = ''], opts) {
    const s = snapOpt(opts);
    await ctx.client().unlockVdi(name, s === undefined ? {} : { snapshot: s });
    return 0;
  },
};
