/** `sheepdog cluster info`. */
import { ExitCode } from '../exit.js';
import { formatDate, formatSize, keyValues, toJson } from '../format.js';
import type { CommandSpec } from '../spec.js';

export const clusterInfo: CommandSpec = {
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
};
