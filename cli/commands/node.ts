/** `sheepdog node list | info | kill | recovery`: the cluster's nodes. */
import { parseAddress } from '../../lib/util/address.js';
import { UsageError } from '../exit.js';
import { formatSize, table, toJson } from '../format.js';
import type { CommandSpec } from '../spec.js';
import { RAW, rawOpt } from './args.js';

export const nodeList: CommandSpec = {
  path: ['node', 'list'],
  args: '',
  summary: 'list the cluster\u2019s nodes',
  description: '-r prints dog\u2019s raw form: ID HOST:PORT VNODES ZONE (the id is the position in the node list).',
  options: { raw: RAW },
  min: 0,
  max: 0,
  json: true,
  async run(ctx, _pos, opts) {
    const raw = rawOpt(ctx, opts);
    const nodes = await ctx.client().listNodes();
    if (raw) {
      ctx.out(nodes.map((n, i) => `${i} ${n.address} ${n.vnodes} ${n.zone}\n`).join(''));
      return 0;
    }
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
};

export const nodeInfo: CommandSpec = {
  path: ['node', 'info'],
  args: '',
  summary: 'store size and use of every node, and the total',
  description:
    '-r prints dog\u2019s raw form: ID SIZE USED AVAIL USE% per node, then ' +
    'Total SIZE USED AVAIL USE% VDI-SIZES (the sizes of every VDI that is not a snapshot).',
  options: { raw: RAW },
  min: 0,
  max: 0,
  json: true,
  async run(ctx, _pos, opts) {
    const raw = rawOpt(ctx, opts);
    const caps = await ctx.client().nodeCapacity();
    let size = 0;
    let free = 0;
    for (const c of caps) {
      size += c.size;
      free += c.free;
    }
    if (raw) {
      const pctRaw = (s: number, f: number): string => `${s === 0 ? 0 : Math.floor(((s - f) * 100) / s)}%`;
      const vdis = (await ctx.client().listVdis()).filter((v) => !v.snapshot);
      const virt = vdis.reduce((a, v) => a + v.size, 0);
      ctx.out(
        caps.map((c, i) => `${i} ${c.size} ${c.size - c.free} ${c.free} ${pctRaw(c.size, c.free)}\n`).join('') +
          `Total ${size} ${size - free} ${free} ${pctRaw(size, free)} ${virt}\n`,
      );
      return 0;
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
};

export const nodeKill: CommandSpec = {
  path: ['node', 'kill'],
  args: 'ID|HOST:PORT',
  summary: 'stop one sheep (the others recover its copies)',
  description:
    'ID is the node\u2019s position in `node list` (as dog node kill), or give its HOST:PORT. ' +
    'KILL_NODE is sent to that node itself.',
  min: 1,
  max: 1,
  async run(ctx, [which = '']) {
    const nodes = await ctx.client().listNodes();
    let address: string | undefined;
    if (/^\d+$/.test(which)) address = nodes[Number(which)]?.address;
    else {
      const key = parseAddress(which).key;
      address = nodes.find((n) => parseAddress(n.address).key === key)?.address;
    }
    if (address === undefined)
      throw new UsageError(
        `no node ${JSON.stringify(which)} in the node list (${nodes.map((n, i) => `${i} ${n.address}`).join(', ')})`,
      );
    await ctx.client().killNode(address);
    return 0;
  },
};

export const nodeRecovery: CommandSpec = {
  path: ['node', 'recovery'],
  args: '[info]',
  summary: 'nodes in recovery and their progress',
  description:
    'Only nodes that are recovering are listed, with their id in the node list (ids can be skipped). ' +
    '-r prints dog\u2019s raw form: ID HOST:PORT VNODES ZONE FINISHED TOTAL, nothing at all when no node recovers. ' +
    'TOTAL is the size of the node\u2019s list of objects to check, not the number that move.',
  options: { raw: RAW },
  min: 0,
  max: 1,
  json: true,
  async run(ctx, [sub], opts) {
    if (sub !== undefined && sub !== 'info')
      throw new UsageError(`node recovery takes only "info" (set-throttle / get-throttle are not supported)`);
    const raw = rawOpt(ctx, opts);
    const all = await ctx.client().recoveryStatus();
    const rec = all.filter((n) => n.inRecovery);
    if (ctx.json) ctx.out(toJson(rec));
    else if (raw)
      ctx.out(rec.map((n) => `${n.index} ${n.address} ${n.vnodes} ${n.zone} ${n.finished} ${n.total}\n`).join(''));
    else {
      // dog's layout, column for column.
      const rows = rec.map((n) => {
        const pct = n.total === 0 ? 0 : (n.finished / n.total) * 100;
        return `${String(n.index).padStart(4)}   ${n.address.padEnd(20)}${String(n.vnodes).padStart(5)}${String(n.zone).padStart(11)}${pct.toFixed(1).padStart(11)}%\n`;
      });
      ctx.out(`Nodes In Recovery:\n  Id   Host:Port         V-Nodes       Zone       Progress\n${rows.join('')}`);
    }
    return 0;
  },
};
