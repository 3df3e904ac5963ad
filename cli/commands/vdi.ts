/** `sheepdog vdi create | list | info | delete | resize`: the life of a VDI. */
import type { VdiInfo } from '../../lib/client/client.js';
import { formatDate, formatSize, keyValues, table, toJson } from '../format.js';
import type { CommandSpec } from '../spec.js';
import { BSS, COPIES, SNAPSHOT_OPTS, createOpts, snapOpt, vdiSizeArg } from './args.js';

function vdiRow(v: VdiInfo): string[] {
  return [
    v.snapshot ? 's' : v.clone ? 'c' : ' ',
    v.name,
    String(v.snapId),
    formatSize(v.size),
    formatSize(v.used),
    formatSize(v.shared),
    formatDate(v.snapshot ? v.snapshotAt : v.createdAt),
    v.vdiId.toString(16).padStart(6, '0'),
    v.redundancy,
    v.tag,
    String(v.blockSizeShift),
  ];
}

function vdiInfoText(v: VdiInfo): string {
  const kind = v.snapshot ? 'snapshot' : v.clone ? 'clone' : 'volume';
  const pairs: [string, string][] = [
    ['Name', v.name],
    ['Type', kind],
    ['Snapshot id', String(v.snapId)],
  ];
  if (v.tag) pairs.push(['Tag', v.tag]);
  pairs.push(
    ['VDI id', `${v.vdiId.toString(16).padStart(6, '0')} (${v.vdiId})`],
    ['Size', `${formatSize(v.size)} (${v.size} bytes)`],
    ['Used', `${formatSize(v.used)} (${v.used} bytes)`],
    ['Shared', `${formatSize(v.shared)} (${v.shared} bytes)`],
    ['Redundancy', v.copyPolicy === 0 ? `${v.copies} copies` : `erasure code ${v.redundancy}`],
    ['Block size shift', `${v.blockSizeShift} (${formatSize(2 ** v.blockSizeShift)} objects)`],
    ['Layout', v.storePolicy === 1 ? 'hyper (B-tree index)' : 'flat'],
    ['Parent VDI id', v.parentVdiId === 0 ? '-' : v.parentVdiId.toString(16).padStart(6, '0')],
    ['Created', formatDate(v.createdAt)],
  );
  if (v.snapshotAt) pairs.push(['Snapshot taken', formatDate(v.snapshotAt)]);
  return keyValues(pairs);
}

export const vdiCreate: CommandSpec = {
  path: ['vdi', 'create'],
  args: 'NAME SIZE',
  summary: 'create a VDI (thin unless --prealloc)',
  description: 'SIZE takes K, M, G, T, P suffixes (powers of 1024): 512M, 10G, 1.5T.',
  options: {
    copies: COPIES,
    'block-size-shift': BSS,
    prealloc: { type: 'boolean', short: 'P', help: 'allocate every object now' },
    hyper: {
      type: 'boolean',
      short: 'y',
      help: 'hyper-volume layout (B-tree index; automatic past 4 TiB at 4 MiB objects)',
    },
  },
  min: 2,
  max: 2,
  json: true,
  examples: ['sheepdog vdi create vol1 10G', 'sheepdog vdi create ec1 1T --copies 4:2'],
  async run(ctx, [name = '', size = ''], opts) {
    const info = await ctx.client().createVdi(name, vdiSizeArg(size, 'SIZE'), createOpts(opts));
    if (ctx.json) ctx.out(toJson(info));
    return 0;
  },
};

export const vdiList: CommandSpec = {
  path: ['vdi', 'list'],
  args: '[NAME]',
  summary: 'list VDIs and snapshots (s = snapshot, c = clone)',
  min: 0,
  max: 1,
  json: true,
  async run(ctx, [name], _opts) {
    let list = await ctx.client().listVdis();
    if (name !== undefined) list = list.filter((v) => v.name === name);
    list.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.snapId - b.snapId));
    if (ctx.json) {
      ctx.out(toJson(list));
      return 0;
    }
    ctx.out(
      table(
        ['', 'Name', 'Id', 'Size', 'Used', 'Shared', 'Creation time', 'VDI id', 'Copies', 'Tag', 'Block Size Shift'],
        list.map(vdiRow),
        ['left', 'left', 'right', 'right', 'right', 'right', 'left', 'left', 'right', 'left', 'right'],
      ),
    );
    return 0;
  },
};

export const vdiInfo: CommandSpec = {
  path: ['vdi', 'info'],
  args: 'NAME',
  summary: 'details of a VDI (or of one of its snapshots)',
  options: { ...SNAPSHOT_OPTS },
  min: 1,
  max: 1,
  json: true,
  async run(ctx, [name = ''], opts) {
    const s = snapOpt(opts);
    const info = await ctx.client().getVdi(name, s === undefined ? {} : { snapshot: s });
    ctx.out(ctx.json ? toJson(info) : vdiInfoText(info));
    return 0;
  },
};

export const vdiDelete: CommandSpec = {
  path: ['vdi', 'delete'],
  args: 'NAME',
  summary: 'delete a VDI, or one of its snapshots with --snapshot',
  options: { ...SNAPSHOT_OPTS },
  min: 1,
  max: 1,
  async run(ctx, [name = ''], opts) {
    const s = snapOpt(opts);
    await ctx.client().deleteVdi(name, s === undefined ? {} : { snapshot: s });
    return 0;
  },
};

export const vdiResize: CommandSpec = {
  path: ['vdi', 'resize'],
  args: 'NAME SIZE',
  summary: 'grow a VDI to SIZE (shrinking is refused)',
  min: 2,
  max: 2,
  async run(ctx, [name = '', size = ''], _opts) {
    await ctx.client().resizeVdi(name, vdiSizeArg(size, 'SIZE'));
    return 0;
  },
};
