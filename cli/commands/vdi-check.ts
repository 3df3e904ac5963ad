/**
 * `sheepdog vdi check`: replica consistency of a VDI's objects (GET_HASH of
 * each replica on its node, as dog), `--repair` by majority, `-e` existence
 * only. Shared with `cluster check`.
 */
import type { CheckVdiResult, ReplicaProblem } from '../../lib/client/client.js';
import type { SnapshotRef } from '../../lib/client/names.js';
import { ExitCode, UsageError } from '../exit.js';
import { escapeControls, toJson } from '../format.js';
import { type CommandSpec, type Context, type OptionSpec, type OptionValues, bool } from '../spec.js';
import { SNAPSHOT_OPTS, snapOpt } from './args.js';

export const CHECK_OPTS: Record<string, OptionSpec> = {
  exist: {
    type: 'boolean',
    short: 'e',
    help: 'only check that every replica exists (dog -e): no hashes, no repair',
  },
  repair: {
    type: 'boolean',
    help: 'rewrite missing and differing replicas from the majority (never without one)',
  },
};

const hex16 = (oid: bigint): string => oid.toString(16).padStart(16, '0');

export async function checkOne(
  ctx: Context,
  name: string,
  snapshot: SnapshotRef | undefined,
  opts: OptionValues,
): Promise<CheckVdiResult> {
  const exist = bool(opts, 'exist');
  const repair = bool(opts, 'repair');
  if (exist && repair) throw new UsageError('give one of --exist and --repair');
  return ctx.client().checkVdi(name, {
    ...(snapshot === undefined ? {} : { snapshot }),
    existOnly: exist,
    repair,
  });
}

function problemLine(p: ReplicaProblem, repair: boolean): { out?: string; err?: string } {
  const node = p.nodes[0] ?? '';
  switch (p.kind) {
    case 'missing':
      return p.fixed
        ? { out: `fixed missing ${p.oid.toString(16)}` }
        : { out: `[${node}] oid ${hex16(p.oid)} is missing.` };
    case 'mismatch':
      return p.fixed
        ? { out: `fixed replica ${p.oid.toString(16)}` }
        : { out: `[${node}] oid ${hex16(p.oid)} differs from the majority of its replicas.` };
    case 'no-majority':
      return {
        err: `no majority of ${p.oid.toString(16)}${repair ? ' (not repaired)' : ''}: ${Object.entries(p.hashes)
          .map(([n, h]) => `${n} sha1 ${h}`)
          .concat(p.nodes.filter((n) => p.hashes[n] === undefined).map((n) => `${n} missing`))
          .join(', ')}`,
      };
    case 'lost':
      return { err: `oid ${hex16(p.oid)} is lost: no replica on ${p.nodes.join(', ')}` };
  }
}

/** The text report of one VDI: a line per problem, then dog's closing line. */
export function checkReport(ctx: Context, r: CheckVdiResult, opts: OptionValues): void {
  const repair = bool(opts, 'repair');
  const name = escapeControls(r.name);
  for (const p of r.problems) {
    const l = problemLine(p, repair);
    if (l.out !== undefined) ctx.out(`${l.out}\n`);
    if (l.err !== undefined) ctx.note(l.err);
  }
  if (bool(opts, 'exist')) {
    const n = r.problems.length;
    ctx.out(n === 0 ? `${name} is fine, no object is missing.\n` : `${name} lost ${n} object(s).\n`);
  } else if (repair) ctx.out(`finish check&repair ${name}\n`);
  else {
    const bad = new Set(r.problems.map((p) => p.oid)).size;
    ctx.out(
      bad === 0
        ? `${name} is fine: ${r.objects} object(s), every replica matches.\n`
        : `${name}: ${bad} of ${r.objects} object(s) inconsistent (--repair fixes those with a majority).\n`,
    );
  }
}

export function checkJson(r: CheckVdiResult): unknown {
  return {
    name: r.name,
    vdiId: r.vdiId,
    objects: r.objects,
    problems: r.problems.map((p) => ({ ...p, oid: hex16(p.oid) })),
  };
}

export const vdiCheck: CommandSpec = {
  path: ['vdi', 'check'],
  args: 'NAME',
  summary: 'check the replicas of every object of a VDI (--repair: fix by majority)',
  description:
    'For every allocated object and the inode: GET_HASH on each node that should hold a copy. ' +
    'A missing replica, or one that differs from the majority, is reported with the object id and ' +
    'the exit is 1. --repair copies the majority replica over them (READ_PEER, then ' +
    'CREATE_AND_WRITE_PEER / WRITE_PEER) and exits 0 once every object is consistent. Replicas that ' +
    'differ with no majority (two copies that disagree) are reported on stderr ("no majority of OID") ' +
    'and never repaired: exit 1. -e only checks existence (dog -e). Erasure-coded VDIs are refused.',
  options: { ...SNAPSHOT_OPTS, ...CHECK_OPTS },
  min: 1,
  max: 1,
  json: true,
  examples: ['sheepdog vdi check vol1', 'sheepdog vdi check vol1 --repair', 'sheepdog vdi check -e vol1'],
  async run(ctx, [name = ''], opts) {
    const r = await checkOne(ctx, name, snapOpt(opts), opts);
    if (ctx.json) ctx.out(toJson(checkJson(r)));
    else checkReport(ctx, r, opts);
    return r.problems.some((p) => !p.fixed) ? ExitCode.FAILURE : ExitCode.OK;
  },
};
