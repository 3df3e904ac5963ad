/** `sheepdog vdi create | list | info | delete | resize`: the life of a VDI. */
import type { VdiInfo } from '../../lib/client/client.js';
import { escapeControls, formatDate, formatSize, keyValues, table, toJson } from '../format.js';
import type { CommandSpec } from '../spec.js';
import { BSS, COPIES, RAW, SNAPSHOT_OPTS, createOpts, rawName, rawOpt, snapOpt, vdiSizeArg } from './args.js';

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

/** One line of `dog vdi list -r`. */
export function vdiRawRow(v: VdiInfo): string {
  return [
    v.snapshot ? 's' : v.clone ? 'c' : '=',
    rawName(v.name),
    String(v.snapshot ? v.snapId : 0),
    String(v.size),
    String(v.used),
    String(v.shared),
    String(Math.floor(v.createdAt.getTime() / 1000)),
    v.vdiId.toString(16),
    v.redundancy,
    rawName(v.tag),
    String(v.blockSizeShift),
  ].join(' ');
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
  description:
    '-r prints dog\u2019s raw form, in VDI id order as dog: TYPE NAME SNAPID SIZE USED SHARED CTIME VID COPIES TAG BSS ' +
    '(TYPE s snapshot, c clone, = other; spaces and backslashes in names escaped with a backslash; ' +
    'an empty tag leaves two spaces).',
  options: { raw: RAW },
  min: 0,
  max: 1,
  json: true,
  async run(ctx, [name], opts) {
    const raw = rawOpt(ctx, opts);
    let list = await ctx.client().listVdis();
    if (name !== undefined) list = list.filter((v) => v.name === name);
    if (raw) {
      list.sort((a, b) => a.vdiId - b.vdiId);
      ctx.out(list.map((v) => `${vdiRawRow(v)}\n`).join(''));
      return 0;
    }
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

interface TreeNode {
  v: VdiInfo;
  children: TreeNode[];
}

/** The parent/snapshot/clone forest: roots are VDIs without a (listed) parent; children in VDI id order. */
export function vdiForest(list: readonly VdiInfo[]): TreeNode[] {
  const byId = new Map<number, TreeNode>();
  const sorted = [...list].sort((a, b) => a.vdiId - b.vdiId);
  for (const v of sorted) byId.set(v.vdiId, { v, children: [] });
  const roots: TreeNode[] = [];
  for (const v of sorted) {
    const n = byId.get(v.vdiId) as TreeNode;
    const parent = v.parentVdiId === 0 || v.parentVdiId === v.vdiId ? undefined : byId.get(v.parentVdiId);
    if (parent) parent.children.push(n);
    else roots.push(n);
  }
  // The VDI's own line (same name) first, clones after it.
  for (const n of byId.values())
    n.children.sort((a, b) => Number(a.v.name !== n.v.name) - Number(b.v.name !== n.v.name) || a.v.vdiId - b.v.vdiId);
  return roots;
}

/** dog's tree drawing (treeview.c): `a---b`, branches as `-+-` with `|-` and `` `- `` below. */
export function drawForest(roots: readonly TreeNode[]): string {
  const label = (n: TreeNode, parent: TreeNode | undefined): string => {
    const own = n.v.snapshot ? `[${formatDate(n.v.createdAt)}]` : '(you are here)';
    return parent === undefined || parent.v.name !== n.v.name ? `${n.v.name}---${own}` : own;
  };
  const lines: string[] = [];
  const draw = (n: TreeNode, parent: TreeNode | undefined, prefix: string, head: string): void => {
    let text = head + label(n, parent);
    let pfx = prefix + ' '.repeat(label(n, parent).length);
    let node = n;
    // A straight chain stays on one line.
    while (node.children.length === 1) {
      const c = node.children[0] as TreeNode;
      const l = label(c, node);
      text += `---${l}`;
      pfx += ' '.repeat(3 + l.length);
      node = c;
    }
    if (node.children.length === 0) {
      lines.push(text);
      return;
    }
    const kids = node.children;
    kids.forEach((c, i) => {
      const last = i === kids.length - 1;
      if (i === 0) draw(c, node, `${pfx} ${last ? ' ' : '|'} `, `${text}-+-`);
      else draw(c, node, `${pfx} ${last ? ' ' : '|'} `, `${pfx} ${last ? '`' : '|'}-`);
    });
  };
  for (const r of roots) draw(r, undefined, '', '');
  return lines.length ? `${lines.map(escapeControls).join('\n')}\n` : '';
}

function treeJson(n: TreeNode): unknown {
  return { ...n.v, children: n.children.map(treeJson) };
}

export const vdiTree: CommandSpec = {
  path: ['vdi', 'tree'],
  args: '',
  summary: 'VDIs, snapshots and clones as a forest (parent \u2192 child)',
  description:
    'A snapshot is [its creation time], the working VDI (you are here). Unlike dog vdi tree, which groups ' +
    'by name and shows a clone as a root of its own, a clone hangs under the snapshot it was cloned from ' +
    '(the edge dog vdi graph draws), labelled with its name.',
  min: 0,
  max: 0,
  json: true,
  async run(ctx) {
    const roots = vdiForest(await ctx.client().listVdis());
    ctx.out(ctx.json ? toJson(roots.map(treeJson)) : drawForest(roots));
    return 0;
  },
};
