/** `sheepdog vdi setattr | getattr`: VDI attributes. */
import type { Readable } from 'node:stream';
import { UsageError } from '../exit.js';
import { toJson } from '../format.js';
import { type CommandSpec, bool } from '../spec.js';
import { SNAPSHOT_OPTS, snapOpt } from './args.js';

async function readAll(s: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(Buffer.isBuffer(c) ? c : Buffer.from(c as Uint8Array));
  return Buffer.concat(parts);
}

export const vdiSetattr: CommandSpec = {
  path: ['vdi', 'setattr'],
  args: 'NAME KEY [VALUE]',
  summary: 'set (or with --delete, remove) a VDI attribute; VALUE defaults to stdin',
  options: {
    exclusive: { type: 'boolean', short: 'x', help: 'fail (exit 5) if the attribute exists' },
    delete: { type: 'boolean', short: 'd', help: 'delete the attribute' },
    ...SNAPSHOT_OPTS,
  },
  min: 2,
  max: 3,
  async run(ctx, [name = '', key = '', value], opts) {
    const s = snapOpt(opts);
    const so = s === undefined ? {} : { snapshot: s };
    const client = ctx.client();
    if (bool(opts, 'delete')) {
      if (value !== undefined) throw new UsageError('vdi setattr --delete takes no VALUE');
      await client.deleteVdiAttr(name, key, so);
      return 0;
    }
    const v = value ?? (await readAll(ctx.io.stdin));
    await client.setVdiAttr(name, key, v, { ...so, exclusive: bool(opts, 'exclusive') });
    return 0;
  },
};

export const vdiGetattr: CommandSpec = {
  path: ['vdi', 'getattr'],
  args: 'NAME KEY',
  summary: 'print a VDI attribute\u2019s value (raw bytes; --json: as UTF-8 text)',
  options: { ...SNAPSHOT_OPTS },
  min: 2,
  max: 2,
  json: true,
  async run(ctx, [name = '', key = ''], opts) {
    const s = snapOpt(opts);
    const v = await ctx.client().getVdiAttrBuffer(name, key, s === undefined ? {} : { snapshot: s });
    if (ctx.json) ctx.out(toJson({ name, key, value: v.toString('utf8') }));
    else ctx.io.stdout.write(v);
    return 0;
  },
};
