/** `sheepdog cluster info`. */
import { ExitCode } from '../exit.js';
import { formatDate, formatSize, keyValues, toJson } from '../format.js';
import type { CommandSpec } from '../spec.js';

export const clusterInfo: CommandSpec = {
  path: ['cluster', 'info'],
  args: '',
  summary: 'cluster status, format parameters and members',
  description:
    'A cluster that is not running (not formatted, waiting for nodes, shutting down) is a failure: exit 2, ' +
    'nothing on stdout (not even with --json), its status on stderr.',
  min: 0,
  max: 0,
  json: true,
  async run(ctx) {
    const ci = await ctx.client().clusterInfo();
    if (ci.status !== 'running') {
      // A failure like any other (docs/cli.md: nothing on stdout): the format
      // parameters of an unformatted cluster are zeros, not facts.
      const members = ci.nodes.map((n) => n.address).join(', ') || 'none';
      ctx.note(
        `sheepdog: cluster info: the cluster is not running: ${ci.status} (epoch ${ci.epoch}; nodes: ${members})`,
      );
      return ExitCode.UNAVAILABLE;
    }
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
    return ExitCode.OK;
  },
};
