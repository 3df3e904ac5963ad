/** `sheepdog node list | info`: the cluster's nodes. */
import { formatSize, table, toJson } from '../format.js';
import type { CommandSpec } from '../spec.js';

export const nodeList: CommandSpec = {
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
};

export const nodeInfo: CommandSpec = {
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
};
