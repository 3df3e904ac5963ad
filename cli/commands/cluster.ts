/** `sheepdog cluster info | format | shutdown | recover | check`. */
import type { ClusterInfoResult, EpochInfo } from '../../lib/client/client.js';
import { Result } from '../../protocol/constants.js';
import { SheepdogResponseError } from '../../lib/errors.js';
import { CliError, ExitCode, UsageError } from '../exit.js';
import { formatDate, formatSize, keyValues, toJson } from '../format.js';
import { type CommandSpec, bool, str } from '../spec.js';
import { COPIES, RAW, rawOpt } from './args.js';
import { CHECK_OPTS, checkJson, checkOne, checkReport } from './vdi-check.js';

/** `YYYY-MM-DD HH:MM:SS`, local time (dog's epoch table). */
function epochTime(d: Date): string {
  const p = (x: number): string => String(x).padStart(2, '0');
  return `${formatDate(d)}:${p(d.getSeconds())}`;
}

function epochNodes(e: EpochInfo): string {
  return `[${e.nodes.map((n) => `${n.address}:${n.vnodes}`).join(', ')}]`;
}

/** dog's `cluster info -r [-v]`. */
function rawInfo(ci: ClusterInfoResult, auto: boolean, epochs: EpochInfo[], verbose: boolean): string {
  const lines = [`running, auto-recovery ${auto ? 'enabled' : 'disabled'}`];
  if (verbose) {
    lines.push(
      `${ci.store} with ${ci.redundancy} redundancy policy`,
      ci.flags & 0x4 ? 'auto' : 'fixed',
      ci.flags & 0x2 ? 'disk' : 'node',
    );
  } else lines.push('');
  for (const e of epochs) lines.push(`${Math.floor(e.time.getTime() / 1000)} ${e.epoch} ${epochNodes(e)}`);
  return `${lines.join('\n')}\n`;
}

export const clusterInfo: CommandSpec = {
  path: ['cluster', 'info'],
  args: '',
  summary: 'cluster status, format parameters and members',
  description:
    'A cluster that is not running (not formatted, waiting for nodes, shutting down) is a failure: exit 2, ' +
    'nothing on stdout (not even with --json or -r), its status on stderr. -r prints dog\u2019s raw form: ' +
    'the status line, then (with -v) store and redundancy, vnodes strategy and vnode mode, else an empty ' +
    'line, then one line per epoch, newest first: unix time, epoch, [host:port:vnodes, ...].',
  options: {
    raw: RAW,
    verbose: { type: 'boolean', short: 'v', help: 'with -r or alone: store, vnodes strategy and mode, and the epochs' },
  },
  min: 0,
  max: 0,
  json: true,
  async run(ctx, _pos, opts) {
    const raw = rawOpt(ctx, opts);
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
    const verbose = bool(opts, 'verbose');
    if (raw) {
      const [auto, epochs] = await Promise.all([ctx.client().autoRecovery(), ctx.client().clusterEpochs()]);
      ctx.out(rawInfo(ci, auto, epochs, verbose));
      return ExitCode.OK;
    }
    if (ctx.json) {
      ctx.out(toJson(verbose ? { ...ci, epochs: await ctx.client().clusterEpochs() } : ci));
      return ExitCode.OK;
    }
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
    if (verbose) {
      const epochs = await ctx.client().clusterEpochs();
      ctx.out(
        `\nEpoch Time           Version [Host:Port:V-Nodes,,,]\n${epochs
          .map((e) => `${epochTime(e.time)} ${String(e.epoch).padStart(6)} ${epochNodes(e)}`)
          .join('\n')}\n`,
      );
    }
    return ExitCode.OK;
  },
};

export const clusterFormat: CommandSpec = {
  path: ['cluster', 'format'],
  args: '',
  summary: 'format the cluster (every VDI of a formatted cluster is lost)',
  description:
    'MAKE_FS, as dog cluster format. A cluster that is formatted already is refused (exit 5) ' +
    'unless --force: dog asks on the terminal, this tool never prompts.',
  options: {
    copies: { ...COPIES, help: 'default redundancy: N copies (1..31) or erasure code D:P; default 3' },
    'block-size-shift': {
      type: 'string',
      short: 'z',
      arg: 'N',
      help: 'default object size 2^N bytes (20..31, default 22 = 4 MiB)',
    },
    store: { type: 'string', short: 'b', arg: 'STORE', help: 'backend store driver (dog -b): plain (default) or tree' },
    lock: { type: 'boolean', short: 'l', help: 'VDI locking (dog -l)' },
    strict: { type: 'boolean', short: 't', help: 'refuse writes while fewer nodes than copies are up (dog -t)' },
    'fixed-vnodes': { type: 'boolean', short: 'V', help: 'fixed vnodes instead of the automatic count (dog -V)' },
    force: { type: 'boolean', short: 'f', help: 'format a cluster that is formatted already' },
  },
  min: 0,
  max: 0,
  examples: ['sheepdog cluster format -c 2', 'sheepdog cluster format -c 4:2 -l --strict'],
  async run(ctx, _pos, opts) {
    const c = ctx.client();
    const ci = await c.clusterInfo();
    if (ci.formatted && !bool(opts, 'force'))
      throw new CliError(
        `the cluster is formatted already (epoch ${ci.epoch}, ${ci.redundancy} copies): --force formats it again, destroying every VDI`,
        ExitCode.EXISTS,
      );
    const copies = str(opts, 'copies');
    const bss = str(opts, 'block-size-shift');
    if (bss !== undefined && !/^\d+$/.test(bss))
      throw new UsageError(`--block-size-shift must be a whole number, got ${JSON.stringify(bss)}`);
    const store = str(opts, 'store') ?? 'plain';
    ctx.note(`using backend ${store} store`);
    await c.formatCluster({
      ...(copies === undefined ? {} : { copies: /^\d+$/.test(copies) ? Number(copies) : copies }),
      ...(bss === undefined ? {} : { blockSizeShift: Number(bss) }),
      store,
      lock: bool(opts, 'lock'),
      strict: bool(opts, 'strict'),
      fixedVnodes: bool(opts, 'fixed-vnodes'),
    });
    return ExitCode.OK;
  },
};

export const clusterShutdown: CommandSpec = {
  path: ['cluster', 'shutdown'],
  args: '',
  summary: 'stop every sheep of the cluster',
  min: 0,
  max: 0,
  async run(ctx) {
    await ctx.client().shutdownCluster();
    return ExitCode.OK;
  },
};

export const clusterRecover: CommandSpec = {
  path: ['cluster', 'recover'],
  args: 'force|enable|disable',
  summary: 'force recovery now, or turn automatic recovery on or off',
  description:
    'force: FORCE_RECOVER (a cluster waiting for nodes that will not come back starts with those it has; ' +
    'a running cluster refuses: exit 1). enable / disable: automatic recovery after membership changes ' +
    '(enable also runs a recovery that was held back). No prompt (dog asks before force).',
  min: 1,
  max: 1,
  async run(ctx, [action = '']) {
    if (action !== 'force' && action !== 'enable' && action !== 'disable')
      throw new UsageError(`cluster recover takes force, enable or disable, got ${JSON.stringify(action)}`);
    try {
      await ctx.client().recoverCluster(action);
    } catch (e) {
      if (e instanceof SheepdogResponseError && e.result === Result.FORCE_RECOVER)
        throw new CliError('the cluster is running (or halted): nothing to force recover (FORCE_RECOVER)');
      throw e;
    }
    return ExitCode.OK;
  },
};

export const clusterCheck: CommandSpec = {
  path: ['cluster', 'check'],
  args: '',
  summary: 'vdi check of every VDI and snapshot (--repair: fix by majority)',
  description:
    'Runs vdi check on every VDI and snapshot, in VDI id order as dog. Each is announced on stdout ' +
    '(dog\u2019s "fix vdi NAME" / "fix snapshot NAME (id: N, tag: "T")" with --repair, "check ..." without). ' +
    'Exit 1 if any object is left inconsistent.',
  options: { ...CHECK_OPTS },
  min: 0,
  max: 0,
  json: true,
  async run(ctx, _pos, opts) {
    const list = (await ctx.client().listVdis()).sort((a, b) => a.vdiId - b.vdiId);
    const repair = bool(opts, 'repair');
    const results = [];
    let bad = false;
    for (const v of list) {
      if (!ctx.json) {
        const verb = repair ? 'fix' : 'check';
        ctx.out(
          v.snapshot
            ? `${verb} snapshot ${v.name} (id: ${v.snapId}, tag: ${JSON.stringify(v.tag)})\n`
            : `${verb} vdi ${v.name}\n`,
        );
      }
      const r = await checkOne(ctx, v.name, v.snapshot ? v.snapId : undefined, opts);
      results.push(r);
      if (!ctx.json) checkReport(ctx, r, opts);
      if (r.problems.some((p) => !p.fixed)) bad = true;
    }
    if (ctx.json) ctx.out(toJson(results.map(checkJson)));
    return bad ? ExitCode.FAILURE : ExitCode.OK;
  },
};
