/**
 * What it costs Node itself to hand out new memory for every large read: the
 * floor under `vdi.read()` of 4 MiB, with no socket, no codec and no
 * Sheepdog in it. Each call either fills one reused Buffer (`reuse`: what
 * `vdi.readInto` and libsheepdog's `sd_vdi_read` do) or a new
 * `Buffer.allocUnsafeSlow(size)` (`fresh`: what a read that returns its
 * result must do), touching every byte once as the kernel's copy of a reply
 * does; `--live` results are kept alive at a time (QD8: eight replies held),
 * and the event loop turns once per `--live` calls, so that V8's GC tasks run
 * as they do between socket reads.
 *
 *   node dist/bench/fresh-memory.js [--size 4M] [--live 8] [--seconds 3] [--runs 5] [--markdown]
 *
 * Every case runs as its own process, alternating (reuse, fresh, fresh with
 * glibc's huge-page tunable, reuse, ...), and reports per call the CPU time
 * (user + system), the minor page faults, and the peak RSS of the process:
 * median (min-max) over the runs. The fresh-minus-reuse CPU is the price of
 * new memory: page faults and zeroing by the kernel, malloc and free, and
 * the garbage collections V8 starts because of the external memory.
 * Results go to bench/results/<stamp>-fresh-memory.json.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parseSize } from '../lib/client/names.js';
import {
  MiB,
  fmt,
  isMain,
  machine,
  markdownTable,
  median,
  parseFlags,
  saveResult,
  table,
  warnIfBusy,
} from './common.js';

const run = promisify(execFile);

/** One process's measurement. */
export interface FreshResult {
  mode: 'reuse' | 'fresh';
  size: number;
  live: number;
  calls: number;
  seconds: number;
  callsPerSecond: number;
  cpuUsPerCall: number;
  sysUsPerCall: number;
  minorFaultsPerCall: number;
  maxRssMb: number;
}

interface Case {
  name: string;
  mode: 'reuse' | 'fresh';
  env: Record<string, string>;
}

const CASES: Case[] = [
  { name: 'reuse one Buffer', mode: 'reuse', env: {} },
  { name: 'new Buffer per call', mode: 'fresh', env: {} },
  {
    name: 'new Buffer per call, GLIBC_TUNABLES=glibc.malloc.hugetlb=1',
    mode: 'fresh',
    env: { GLIBC_TUNABLES: 'glibc.malloc.hugetlb=1' },
  },
];

/** The measured loop (runs in the child). */
async function child(mode: 'reuse' | 'fresh', size: number, live: number, seconds: number): Promise<FreshResult> {
  const held: Buffer[] = [];
  const reused = Buffer.allocUnsafeSlow(size);
  const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
  // One second unmeasured: the loop is optimised and the heap has its shape.
  const loop = async (ms: number): Promise<number> => {
    let n = 0;
    const end = performance.now() + ms;
    while (performance.now() < end) {
      for (let i = 0; i < live; i++, n++) {
        const b = mode === 'reuse' ? reused : Buffer.allocUnsafeSlow(size);
        b.fill(n & 0xff);
        held.push(b);
        if (held.length > live) held.shift();
      }
      await turn();
    }
    return n;
  };
  await loop(1000);
  const ru0 = process.resourceUsage();
  const t0 = performance.now();
  const calls = await loop(seconds * 1000);
  const elapsed = (performance.now() - t0) / 1000;
  const ru = process.resourceUsage();
  const cpu = ru.userCPUTime - ru0.userCPUTime + (ru.systemCPUTime - ru0.systemCPUTime);
  return {
    mode,
    size,
    live,
    calls,
    seconds: elapsed,
    callsPerSecond: calls / elapsed,
    cpuUsPerCall: cpu / calls,
    sysUsPerCall: (ru.systemCPUTime - ru0.systemCPUTime) / calls,
    minorFaultsPerCall: (ru.minorPageFault - ru0.minorPageFault) / calls,
    maxRssMb: ru.maxRSS / 1024,
  };
}

function spread(xs: number[], digits = 0): string {
  return `${fmt(median(xs), digits)} (${fmt(Math.min(...xs), digits)}–${fmt(Math.max(...xs), digits)})`;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === '--child') {
    const [, mode, size, live, seconds] = argv;
    const r = await child(mode as 'reuse' | 'fresh', Number(size), Number(live), Number(seconds));
    process.stdout.write(`${JSON.stringify(r)}\n`);
    return;
  }
  const { flags, values } = parseFlags(argv, { flags: ['markdown'], values: ['size', 'live', 'seconds', 'runs'] });
  const size = parseSize(values.get('size') ?? '4M', '--size');
  const live = Number(values.get('live') ?? 8);
  const seconds = Number(values.get('seconds') ?? 3);
  const runs = Number(values.get('runs') ?? 5);
  if (!(Number.isInteger(live) && live >= 1)) throw new Error('--live must be a whole number ≥ 1');
  if (!(seconds > 0)) throw new Error('--seconds must be positive');
  if (!(Number.isInteger(runs) && runs >= 1)) throw new Error('--runs must be a whole number ≥ 1');
  const m = await machine();
  warnIfBusy(m);
  const script = fileURLToPath(import.meta.url);
  const results = new Map<string, FreshResult[]>(CASES.map((c) => [c.name, []]));
  for (let r = 0; r < runs; r++) {
    for (const c of CASES) {
      const { stdout } = await run(
        process.execPath,
        [script, '--child', c.mode, String(size), String(live), String(seconds)],
        { env: { ...process.env, NODE_OPTIONS: '', ...c.env } },
      );
      results.get(c.name)?.push(JSON.parse(stdout) as FreshResult);
    }
  }
  const reuseCpu = median((results.get(CASES[0]?.name ?? '') ?? []).map((x) => x.cpuUsPerCall));
  const header = [
    'case',
    'calls/s',
    'CPU µs/call',
    'of it system',
    'over reuse µs',
    'minor faults/call',
    'peak RSS MiB',
  ];
  const cells = CASES.map((c) => {
    const rs = results.get(c.name) ?? [];
    return [
      c.name,
      spread(rs.map((x) => x.callsPerSecond)),
      spread(rs.map((x) => x.cpuUsPerCall)),
      fmt(median(rs.map((x) => x.sysUsPerCall))),
      fmt(median(rs.map((x) => x.cpuUsPerCall)) - reuseCpu),
      fmt(median(rs.map((x) => x.minorFaultsPerCall))),
      spread(rs.map((x) => x.maxRssMb)),
    ];
  });
  process.stdout.write(
    `new memory per call: ${fmt(size / MiB, size < MiB ? 3 : 0)} MiB per call, ${live} alive, ${runs} alternating runs of ${seconds} s\n` +
      `${m.cpu}, ${m.nproc} CPUs, node ${m.node}, ${m.platform}\n\n`,
  );
  process.stdout.write(flags.has('markdown') ? markdownTable(header, cells) : table(header, cells));
  const file = saveResult('fresh-memory', {
    kind: 'fresh-memory',
    date: new Date().toISOString(),
    machine: m,
    size,
    live,
    seconds,
    runs,
    cases: CASES.map((c) => ({ name: c.name, env: c.env, results: results.get(c.name) })),
  });
  process.stdout.write(`\nresults: ${file}\n`);
}

if (isMain(import.meta.url)) {
  main().catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
