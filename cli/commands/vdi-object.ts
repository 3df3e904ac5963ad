/** `sheepdog vdi object location | map`: where a VDI's objects are (dog vdi object). */
import { vidToDataOid, vidToVdiOid } from '../../protocol/oid.js';
import { UsageError } from '../exit.js';
import { toJson } from '../format.js';
import { type CommandSpec, type OptionSpec, type OptionValues, str } from '../spec.js';
import { SNAPSHOT_OPTS, snapOpt } from './args.js';

const INDEX: OptionSpec = {
  type: 'string',
  short: 'i',
  arg: 'N',
  help: 'the data object at index N (default: the inode)',
};

function indexOpt(opts: OptionValues): number | undefined {
  const s = str(opts, 'index');
  if (s === undefined) return undefined;
  if (!/^\d+$/.test(s) || Number(s) > 0xffffffff)
    throw new UsageError(`--index must be an object index, got ${JSON.stringify(s)}`);
  return Number(s);
}

const hex = (n: number | bigint): string => n.toString(16);

export const vdiObjectLocation: CommandSpec = {
  path: ['vdi', 'object', 'location'],
  args: 'NAME',
  summary: 'which nodes hold an object of a VDI, and where placement puts it',
  description:
    'As dog vdi object location: without -i the inode, with -i N the data object at index N (the oid carries ' +
    'the id of the VDI that owns it, which may be a parent). Every node of the node list is asked (EXIST); ' +
    'the expected nodes are computed from the node list with sheep 1.0\u2019s placement (first = primary). ' +
    'An unallocated index prints "The inode object 0xVID idx N is not allocated" (exit 0).',
  options: { ...SNAPSHOT_OPTS, index: INDEX },
  min: 1,
  max: 1,
  json: true,
  async run(ctx, [name = ''], opts) {
    const c = ctx.client();
    const s = snapOpt(opts);
    const idx = indexOpt(opts);
    const objs = await c.vdiObjects(name, s === undefined ? {} : { snapshot: s });
    const copies = objs.copyPolicy === 0 ? objs.copies : (objs.copyPolicy >> 4) * 2 + (objs.copyPolicy & 0xf);
    let oid: bigint;
    let head: string;
    if (idx === undefined) {
      oid = vidToVdiOid(objs.vdiId);
      head = `Looking for the inode object 0x${hex(objs.vdiId)}`;
    } else {
      if (idx >= objs.maxObjects)
        throw new UsageError(`index ${idx} is past the end of VDI ${name} (${objs.maxObjects} objects)`);
      const owner = objs.objects.find(([i]) => i === idx)?.[1];
      if (owner === undefined) {
        if (ctx.json) ctx.out(toJson({ index: idx, allocated: false }));
        else ctx.out(`The inode object 0x${hex(objs.vdiId)} idx ${idx} is not allocated\n`);
        return 0;
      }
      oid = vidToDataOid(owner, idx);
      head = `Looking for the object 0x${hex(oid)} (vid 0x${hex(objs.vdiId)} idx ${idx}, ${copies} copies)`;
    }
    const loc = await c.objectLocation(oid, copies);
    if (ctx.json) {
      ctx.out(toJson({ ...loc, oid: oid.toString(16).padStart(16, '0'), index: idx ?? null, allocated: true }));
      return 0;
    }
    ctx.out(
      `${head} with ${loc.nodes.length} nodes\n\n` +
        loc.nodes.map((n) => `${n.address} ${n.has ? 'has' : "doesn't have"} the object\n`).join('') +
        `\nAccording to sheepdog algorithm, the object should be located at:\n${loc.expected.join(' ')}\n`,
    );
    return 0;
  },
};

export const vdiObjectMap: CommandSpec = {
  path: ['vdi', 'object', 'map'],
  args: 'NAME',
  summary: 'the allocated objects of a VDI and the VDI owning each',
  description:
    'As dog vdi object map: "Index VID" rows (decimal index, zero-padded to 8; hex id of the owning VDI), ' +
    'only allocated indexes; with -i N that one index (vid 0 when unallocated).',
  options: { ...SNAPSHOT_OPTS, index: INDEX },
  min: 1,
  max: 1,
  json: true,
  async run(ctx, [name = ''], opts) {
    const s = snapOpt(opts);
    const idx = indexOpt(opts);
    const objs = await ctx.client().vdiObjects(name, s === undefined ? {} : { snapshot: s });
    let rows = objs.objects;
    if (idx !== undefined) {
      if (idx >= objs.maxObjects)
        throw new UsageError(`index ${idx} is past the end of VDI ${name} (${objs.maxObjects} objects)`);
      rows = [[idx, objs.objects.find(([i]) => i === idx)?.[1] ?? 0]];
    }
    if (ctx.json) {
      ctx.out(toJson(rows.map(([index, vdiId]) => ({ index, vdiId }))));
      return 0;
    }
    ctx.out(
      `Index       VID\n${rows.map(([i, v]) => `${String(i).padStart(8, '0')} ${hex(v).padStart(8)}\n`).join('')}`,
    );
    return 0;
  },
};
