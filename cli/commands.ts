/** The `sheepdog` commands: what each does with the SDK, and how it prints. */
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { CreateVdiOptions, VdiInfo } from '../lib/client/client.js';
import { InvalidArgumentError } from '../lib/errors.js';
import { type SnapshotRef, parseSize } from '../lib/client/names.js';
import { ExitCode, UsageError } from './exit.js';
import { formatDate, formatSize, keyValues, table, toJson } from './format.js';
import { createProgress } from './progress.js';
import { serveCommand } from './serve.js';
import { type CommandSpec, type Context, type OptionSpec, type OptionValues, bool, str } from './spec.js';
import { exportVdi, importVdi } from './transfer.js';

// ------------------------------------------------------------- arguments

/** A snapshot given as a number is its id, anything else a tag (as dog -s). */
export function parseSnapshotRef(s: string): SnapshotRef {
  return /^\d+$/.test(s) ? Number(s) : s;
}

function snapOpt(opts: OptionValues): SnapshotRef | undefined {
  const s = str(opts, 'snapshot');
  return s === undefined ? undefined : parseSnapshotRef(s);
}

function requireSnap(opts: OptionValues, cmd: string): SnapshotRef {
  const s = snapOpt(opts);
  if (s === undefined) throw new UsageError(`${cmd} needs --snapshot TAG|ID`);
  return s;
}

function sizeArg(s: string, what: string): number {
  const n = parseSize(s, what);
  return n;
}

function intOpt(opts: OptionValues, name: string): number | undefined {
  const s = str(opts, name);
  if (s === undefined) return undefined;
  if (!/^\d+$/.test(s)) throw new UsageError(`--${name} must be a whole number, got ${JSON.stringify(s)}`);
  return Number(s);
}

function createOpts(opts: OptionValues): CreateVdiOptions {
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

const SNAPSHOT: OptionSpec = { type: 'string', short: 's', arg: 'TAG|ID', help: 'a snapshot, by tag or by id' };
const COPIES: OptionSpec = {
  type: 'string',
  short: 'c',
  arg: 'N|D:P',
  help: 'redundancy: N copies (1..31) or erasure code D:P (D = 2, 4, 8, 16); default: the cluster\u2019s',
};
const BSS: OptionSpec = {
  type: 'string',
  short: 'z',
  arg: 'N',
  help: 'object size 2^N bytes (20..31); default: the cluster\u2019s (22 = 4 MiB)',
};
const NO_PROGRESS: OptionSpec = { type: 'boolean', help: 'no progress bar (shown only when stderr is a terminal)' };

function progressEnabled(ctx: Context, opts: OptionValues): boolean {
  return ctx.io.stderr.isTTY === true && !bool(opts, 'no-progress') && !ctx.json;
}

// ---------------------------------------------------------------- output

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

async function readAll(s: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(Buffer.isBuffer(c) ? c : Buffer.from(c as Uint8Array));
  return Buffer.concat(parts);
}

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

// -------------------------------------------------------------- commands

export const commands: CommandSpec[] = [
  {
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
      const info = await ctx.client().createVdi(name, sizeArg(size, 'SIZE'), createOpts(opts));
      if (ctx.json) ctx.out(toJson(info));
      return 0;
    },
  },
  {
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
  },
  {
    path: ['vdi', 'info'],
    args: 'NAME',
    summary: 'details of a VDI (or of one of its snapshots)',
    options: { snapshot: SNAPSHOT },
    min: 1,
    max: 1,
    json: true,
    async run(ctx, [name = ''], opts) {
      const s = snapOpt(opts);
      const info = await ctx.client().getVdi(name, s === undefined ? {} : { snapshot: s });
      ctx.out(ctx.json ? toJson(info) : vdiInfoText(info));
      return 0;
    },
  },
  {
    path: ['vdi', 'delete'],
    args: 'NAME',
    summary: 'delete a VDI, or one of its snapshots with --snapshot',
    options: { snapshot: SNAPSHOT },
    min: 1,
    max: 1,
    async run(ctx, [name = ''], opts) {
      const s = snapOpt(opts);
      await ctx.client().deleteVdi(name, s === undefined ? {} : { snapshot: s });
      return 0;
    },
  },
  {
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
      if (ctx.json) ctx.out(toJson(r));
      return 0;
    },
  },
  {
    path: ['vdi', 'clone'],
    args: 'SRC DST',
    summary: 'clone a snapshot of SRC into a new VDI DST (copy-on-write)',
    options: { snapshot: { ...SNAPSHOT, help: 'the snapshot of SRC to clone (required)' } },
    min: 2,
    max: 2,
    json: true,
    examples: ['sheepdog vdi clone vol1 vol2 --snapshot before-upgrade'],
    async run(ctx, [src = '', dst = ''], opts) {
      const info = await ctx.client().cloneVdi(src, requireSnap(opts, 'vdi clone'), dst);
      if (ctx.json) ctx.out(toJson(info));
      return 0;
    },
  },
  {
    path: ['vdi', 'rollback'],
    args: 'NAME',
    summary: 'roll a VDI back to a snapshot (discards changes made since)',
    options: { snapshot: { ...SNAPSHOT, help: 'the snapshot to roll back to (required)' } },
    min: 1,
    max: 1,
    json: true,
    async run(ctx, [name = ''], opts) {
      const info = await ctx.client().rollbackVdi(name, requireSnap(opts, 'vdi rollback'));
      if (ctx.json) ctx.out(toJson(info));
      return 0;
    },
  },
  {
    path: ['vdi', 'resize'],
    args: 'NAME SIZE',
    summary: 'grow a VDI to SIZE (shrinking is refused)',
    min: 2,
    max: 2,
    async run(ctx, [name = '', size = ''], _opts) {
      await ctx.client().resizeVdi(name, sizeArg(size, 'SIZE'));
      return 0;
    },
  },
  {
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
  },
  {
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
  },
  {
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
  },
  {
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
  },
  {
    path: ['vdi', 'setattr'],
    args: 'NAME KEY [VALUE]',
    summary: 'set (or with --delete, remove) a VDI attribute; VALUE defaults to stdin',
    options: {
      exclusive: { type: 'boolean', short: 'x', help: 'fail (exit 5) if the attribute exists' },
      delete: { type: 'boolean', short: 'd', help: 'delete the attribute' },
      snapshot: SNAPSHOT,
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
  },
  {
    path: ['vdi', 'getattr'],
    args: 'NAME KEY',
    summary: 'print a VDI attribute\u2019s value (raw bytes; --json: as UTF-8 text)',
    options: { snapshot: SNAPSHOT },
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
  },
  {
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
  },
  {
    path: ['vdi', 'lock', 'unlock'],
    args: 'NAME',
    summary: 'force-release a VDI\u2019s lock, whoever holds it',
    options: { snapshot: SNAPSHOT },
    min: 1,
    max: 1,
    async run(ctx, [name = ''], opts) {
      const s = snapOpt(opts);
      await ctx.client().unlockVdi(name, s === undefined ? {} : { snapshot: s });
      return 0;
    },
  },
  {
    path: ['node', 'list'],
    args: '',
    summary: 'list the cluster\u2019s nodes',
    min: 0,
    max: 0,
    json: true,
    async run(ctx) {
      const nodes = await ctx.client().listNodes();
      if (ctx.json) {
        ctx.out(toJson(nodes));
        return 0;
      }
      ctx.out(
        table(
          ['Id', 'Host:Port', 'V-Nodes', 'Zone'],
          nodes.map((n, i) => [String(i), n.address, String(n.vnodes), String(n.zone)]),
          ['right', 'left', 'right', 'right'],
        ),
      );
      return 0;
    },
  },
  {
    path: ['node', 'info'],
    args: '',
    summary: 'store size and use of every node, and the total',
    min: 0,
    max: 0,
    json: true,
    async run(ctx) {
      const caps = await ctx.client().nodeCapacity();
      let size = 0;
      let free = 0;
      for (const c of caps) {
        size += c.size;
        free += c.free;
      }
      if (ctx.json) {
        ctx.out(toJson({ nodes: caps, total: { size, free } }));
        return 0;
      }
      const pct = (s: number, f: number): string => (s === 0 ? '-' : `${Math.round(((s - f) / s) * 100)}%`);
      const rows = caps.map((c, i) => [
        String(i),
        c.address,
        formatSize(c.size),
        formatSize(c.size - c.free),
        formatSize(c.free),
        pct(c.size, c.free),
      ]);
      rows.push(['Total', '', formatSize(size), formatSize(size - free), formatSize(free), pct(size, free)]);
      ctx.out(
        table(['Id', 'Host:Port', 'Size', 'Used', 'Avail', 'Use%'], rows, [
          'left',
          'left',
          'right',
          'right',
          'right',
          'right',
        ]),
      );
      return 0;
    },
  },
  {
    path: ['cluster', 'info'],
    args: '',
    summary: 'cluster status, format parameters and members',
    description: 'Exits 2 when the cluster is not running (not formatted, waiting for nodes, shutting down).',
    min: 0,
    max: 0,
    json: true,
    async run(ctx) {
      const ci = await ctx.client().clusterInfo();
      if (ctx.json) ctx.out(toJson(ci));
      else {
        ctx.out(
          keyValues([
            ['Cluster status', ci.status],
            ['Created', ci.createdAt ? formatDate(ci.createdAt) : 'not formatted'],
            ['Epoch', String(ci.epoch)],
            ['Redundancy', ci.copyPolicy === 0 ? `${ci.copies} copies` : `erasure code ${ci.redundancy}`],
            ['Block size shift', `${ci.blockSizeShift} (${formatSize(2 ** ci.blockSizeShift)} objects)`],
            ['VDI locking', ci.locking ? 'on' : 'off'],
            ['Store', ci.store || '-'],
            ['Nodes', ci.nodes.map((n) => n.address).join(', ') || '-'],
          ]),
        );
      }
      return ci.status === 'running' ? ExitCode.OK : ExitCode.UNAVAILABLE;
    },
  },
  serveCommand,
];
