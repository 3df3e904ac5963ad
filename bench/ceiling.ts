/**
 * The client's own ceiling: the matrix workloads against the embedded
 * sheep's null mode (it answers at once and stores nothing; reads return
 * zeros), run in this process so that the client's CPU time per request can
 * be reported (process.cpuUsage around the measured phase). The cluster
 * still runs in a separate process.
 *
 *   node dist/bench/ceiling.js [--only SUBSTRING] [--quick] [--seconds S]
 *
 * Under `node --cpu-prof` this is the profiling harness of the hot path
 * (docs/benchmarks.md, "Profiling").
 */
import { SheepdogClient } from '../lib/client/client.js';
import { type BenchOp, type BenchPattern, fillVdi, measure, startEmbeddedCluster } from '../cli/bench/engine.js';
import { SheepdogPool } from '../lib/transport/pool.js';
import {
  GiB,
  type Machine,
  fmt,
  isMain,
  machine,
  markdownTable,
  parseFlags,
  saveResult,
  table,
  warnIfBusy,
} from './common.js';

interface Spec {
  name: string;
  op: BenchOp;
  pattern: BenchPattern;
  bs: number;
  qd: number;
  total?: number;
  seconds?: number;
}

export interface CeilingRow {
  workload: string;
  mibps: number;
  iops: number;
  p50_us: number;
  p99_us: number;
  /** Client CPU time (user + system) per request, microseconds. */
  cpu_us_per_req: number;
  /** Client CPU busy fraction during the run (1 = one core saturated). */
  cpu_busy: number;
}

function specs(quick: boolean, seconds: number): Spec[] {
  const total = quick ? 256 * 2 ** 20 : 2 * GiB;
  return [
    { name: '4 MiB seq write QD8', op: 'write', pattern: 'seq', bs: 4 * 2 ** 20, qd: 8, total },
    { name: '4 MiB seq read QD8', op: 'read', pattern: 'seq', bs: 4 * 2 ** 20, qd: 8, total },
    { name: '4 KiB random write QD32', op: 'write', pattern: 'random', bs: 4096, qd: 32, seconds },
    { name: '4 KiB random read QD32', op: 'read', pattern: 'random', bs: 4096, qd: 32, seconds },
    { name: '4 KiB random read QD1', op: 'read', pattern: 'random', bs: 4096, qd: 1, seconds },
  ];
}

export async function runCeiling(o: {
  quick: boolean;
  seconds: number;
  only: string | undefined;
  onRow?: (r: CeilingRow) => void;
}): Promise<{ kind: 'ceiling'; date: string; machine: Machine; rows: CeilingRow[] }> {
  const m = await machine();
  warnIfBusy(m);
  const cluster = await startEmbeddedCluster({ nodes: 3, port: 0, nullMode: true });
  const rows: CeilingRow[] = [];
  const client = new SheepdogClient({ nodes: [...cluster.addresses], requestTimeout: 120_000 });
  try {
    const pool = client.transport instanceof SheepdogPool ? client.transport : undefined;
    await client.createVdi('ceiling', GiB);
    const vdi = await client.openVdi('ceiling');
    await fillVdi(vdi); // null mode: only the index is written
    for (const s of specs(o.quick, o.seconds)) {
      if (o.only !== undefined && !s.name.includes(o.only)) continue;
      // warm-up: let the JIT see the path first
      await measure(vdi, { ...s, total: undefined, seconds: o.quick ? 0.2 : 1 });
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      const r = await measure(vdi, { ...s, total: s.total, seconds: s.seconds }, { pool });
      const wall = (performance.now() - t0) * 1000;
      const c = process.cpuUsage(c0);
      const reqs = Math.round(r.iops * r.seconds);
      const row: CeilingRow = {
        workload: s.name,
        mibps: r.mibps,
        iops: r.iops,
        p50_us: r.p50_us,
        p99_us: r.p99_us,
        cpu_us_per_req: Number(((c.user + c.system) / reqs).toFixed(1)),
        cpu_busy: Number(((c.user + c.system) / wall).toFixed(2)),
      };
      rows.push(row);
      o.onRow?.(row);
    }
    await vdi.close();
  } finally {
    await client.close().catch(() => {});
    await cluster.close();
  }
  return { kind: 'ceiling', date: new Date().toISOString(), machine: m, rows };
}

const HEADER = ['workload (null mode)', 'MiB/s', 'IOPS', 'p50 us', 'p99 us', 'client CPU us/req', 'client CPU busy'];

async function main(): Promise<void> {
  const { flags, values, nodes } = parseFlags(process.argv.slice(2), {
    flags: ['quick', 'markdown'],
    values: ['only', 'seconds'],
  });
  if (nodes) throw new Error('the ceiling runs against the embedded null-mode cluster only');
  const quick = flags.has('quick');
  const res = await runCeiling({
    quick,
    seconds: Number(values.get('seconds') ?? (quick ? 1 : 4)),
    only: values.get('only'),
  });
  const cells = res.rows.map((r) => [
    r.workload,
    fmt(r.mibps, 1),
    fmt(r.iops),
    fmt(r.p50_us),
    fmt(r.p99_us),
    fmt(r.cpu_us_per_req, 1),
    fmt(r.cpu_busy, 2),
  ]);
  const m = res.machine;
  process.stdout.write(
    `client ceiling (null-mode cluster in a separate process)\n${m.cpu}, ${m.nproc} CPUs, node ${m.node}, ${Math.round(m.busyBefore * 100)}% busy before the run\n\n`,
  );
  process.stdout.write(flags.has('markdown') ? markdownTable(HEADER, cells) : table(HEADER, cells));
  process.stdout.write(`\nresults in ${saveResult('ceiling', res)}\n`);
}

if (isMain(import.meta.url)) {
  main().catch((e: unknown) => {
    process.stderr.write(`ceiling: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exitCode = 1;
  });
}
