/**
 * Wall time and CPU of one-shot commands, each a fresh process, against bare
 * Node startup (`node -e ''`). Runs alternate (A B C A B C ...), so load that
 * comes and goes hits every command alike.
 *
 *   node dist/bench/startup.js [--runs N] [-a HOST:PORT] [--dog PATH] [--baseline MAIN.JS] [--json]
 *
 * Without -a an embedded cluster (`sheepdog serve`, one node, in another
 * process) is started with --vdis VDIs (default 10); with -a the cluster
 * given is listed as it is. --dog PATH adds `dog vdi list` against the same
 * cluster (a real sheep). CPU is user + system time of the child, from
 * /proc/self/stat (Linux; 10 ms ticks, so only the mean over runs means much).
 * `sheepdog` is the package's bin (dist/cli/sheepdog.cjs: the bundled CLI with
 * its code cache); `vdi list` also runs through the ESM entry it is bundled
 * from (dist/cli/main.js). --baseline adds `vdi list` of another build of the
 * CLI (e.g. an older commit's dist/cli/sheepdog.cjs).
 *
 * NODE_EXTRA_CA_CERTS, when set (sandboxes and CI images often set it), makes
 * every Node process parse that certificate bundle at startup: on the 2-core
 * VM of docs/benchmarks.md about 65 ms of CPU, more than bare Node's own
 * startup without it. It weighs on `node -e ''` as on the CLI, so the ratios
 * depend on it: when it is set, the table adds `node -e ''` without it, and
 * --no-extra-ca runs every case without it.
 */
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import {
  CLI,
  MAIN,
  fmt,
  isMain,
  machine,
  markdownTable,
  median,
  parseFlags,
  saveResult,
  sourceVersion,
  table,
  warnIfBusy,
} from './common.js';

interface Case {
  name: string;
  cmd: string;
  args: string[];
  /** Environment of the child (default: this process's). */
  env?: NodeJS.ProcessEnv;
}

interface CaseResult {
  name: string;
  runs: number;
  wallMs: { median: number; min: number; max: number };
  /** Mean user + system CPU per run (undefined off Linux). */
  cpuMs: number | undefined;
  /** Median wall time over the median of `node -e ''`. */
  vsNode: number;
}

/** CPU time (ms) of the waited-for children of this process. */
function childCpuMs(): number | undefined {
  try {
    const f = readFileSync('/proc/self/stat', 'utf8');
    const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
    // Fields 16 and 17 of stat(5) (cutime, cstime): 14 and 15 after the command name and state.
    return ((Number(fields[13]) + Number(fields[14])) * 1000) / 100;
  } catch {
    return undefined;
  }
}

/** Start `sheepdog serve` (one node, ephemeral port) and make `vdis` VDIs; resolves with its address and a stop function. */
async function embedded(vdis: number): Promise<{ address: string; stop: () => Promise<void> }> {
  const child = spawn(process.execPath, [CLI, 'serve', '-n', '1', '-p', '0'], { stdio: ['ignore', 'pipe', 'ignore'] });
  const address = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      out += d;
      const line = out.split('\n')[0];
      if (out.includes('\n') && line) resolve(line.trim());
    });
    child.once('exit', (code) => reject(new Error(`sheepdog serve exited (${code})`)));
  });
  const { SheepdogClient } = await import('../lib/client/client.js');
  const c = new SheepdogClient({ nodes: [address] });
  try {
    await Promise.all(Array.from({ length: vdis }, (_, i) => c.createVdi(`startup${i}`, 2 ** 30)));
  } finally {
    await c.close();
  }
  return {
    address,
    stop: () =>
      new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

function runCases(cases: Case[], runs: number): CaseResult[] {
  const wall = cases.map(() => [] as number[]);
  const cpu = cases.map(() => 0);
  let cpuKnown = true;
  // One unmeasured round: the page cache and the cluster warm up.
  for (const c of cases) spawnSync(c.cmd, c.args, { stdio: 'ignore', env: c.env ?? process.env });
  for (let r = 0; r < runs; r++) {
    cases.forEach((c, i) => {
      const c0 = childCpuMs();
      const t0 = process.hrtime.bigint();
      const res = spawnSync(c.cmd, c.args, { stdio: ['ignore', 'ignore', 'pipe'], env: c.env ?? process.env });
      const t1 = process.hrtime.bigint();
      const c1 = childCpuMs();
      if (res.status !== 0) throw new Error(`${c.name} failed (${res.status}): ${res.stderr?.toString().trim()}`);
      (wall[i] as number[]).push(Number(t1 - t0) / 1e6);
      if (c0 === undefined || c1 === undefined) cpuKnown = false;
      else cpu[i] = (cpu[i] as number) + (c1 - c0);
    });
  }
  const base = median(wall[0] as number[]);
  return cases.map((c, i) => {
    const w = wall[i] as number[];
    return {
      name: c.name,
      runs,
      wallMs: { median: median(w), min: Math.min(...w), max: Math.max(...w) },
      cpuMs: cpuKnown ? (cpu[i] as number) / runs : undefined,
      vsNode: median(w) / base,
    };
  });
}

async function main(): Promise<void> {
  const { nodes, flags, values } = parseFlags(process.argv.slice(2), {
    flags: ['json', 'no-extra-ca'],
    values: ['runs', 'dog', 'vdis', 'baseline'],
  });
  const runs = Number(values.get('runs') ?? 21);
  const extraCa = process.env['NODE_EXTRA_CA_CERTS'];
  if (flags.has('no-extra-ca')) delete process.env['NODE_EXTRA_CA_CERTS'];
  const m = await machine();
  warnIfBusy(m);
  const server = nodes === undefined ? await embedded(Number(values.get('vdis') ?? 10)) : undefined;
  const address = nodes?.[0] ?? (server?.address as string);
  const [host = '127.0.0.1', port = '7000'] = address.split(':');
  const cases: Case[] = [
    { name: "node -e ''", cmd: process.execPath, args: ['-e', ''] },
    { name: 'sheepdog --version', cmd: process.execPath, args: [CLI, '--version'] },
    { name: 'sheepdog --help', cmd: process.execPath, args: [CLI, '--help'] },
    { name: 'sheepdog vdi list', cmd: process.execPath, args: [CLI, 'vdi', 'list', '-a', address] },
    { name: 'sheepdog node list', cmd: process.execPath, args: [CLI, 'node', 'list', '-a', address] },
    // The ESM entry the bundle is made from: what the bundle and its code cache save.
    { name: 'vdi list, ESM entry (main.js)', cmd: process.execPath, args: [MAIN, 'vdi', 'list', '-a', address] },
  ];
  if (extraCa !== undefined && !flags.has('no-extra-ca')) {
    const env = { ...process.env };
    delete env['NODE_EXTRA_CA_CERTS'];
    cases.splice(1, 0, { name: "node -e '' (no NODE_EXTRA_CA_CERTS)", cmd: process.execPath, args: ['-e', ''], env });
  }
  const baseline = values.get('baseline');
  if (baseline !== undefined)
    cases.push({ name: 'vdi list (baseline)', cmd: process.execPath, args: [baseline, 'vdi', 'list', '-a', address] });
  const dog = values.get('dog');
  if (dog !== undefined) cases.push({ name: 'dog vdi list', cmd: dog, args: ['vdi', 'list', '-a', host, '-p', port] });
  let results: CaseResult[];
  try {
    results = runCases(cases, runs);
  } finally {
    await server?.stop();
  }
  const src = sourceVersion();
  const extraCaCerts = extraCa === undefined ? 'unset' : flags.has('no-extra-ca') ? 'removed' : 'set';
  const file = saveResult('startup', {
    machine: m,
    source: src,
    address,
    embedded: server !== undefined,
    extraCaCerts,
    results,
  });
  if (flags.has('json')) {
    process.stdout.write(`${JSON.stringify({ machine: m, source: src, extraCaCerts, results }, null, 2)}\n`);
    return;
  }
  const header = ['command', 'median ms', 'min ms', 'max ms', 'CPU ms (mean)', '× node -e'];
  const rows = results.map((r) => [
    r.name,
    fmt(r.wallMs.median, 1),
    fmt(r.wallMs.min, 1),
    fmt(r.wallMs.max, 1),
    r.cpuMs === undefined ? '-' : fmt(r.cpuMs, 1),
    fmt(r.vsNode, 2),
  ]);
  process.stdout.write(
    `${m.cpu}, ${m.nproc} CPUs, node ${m.node}, load ${m.loadavg.join(' ')}, busy before ${Math.round(m.busyBefore * 100)}%; ` +
      `commit ${src ? `${src.commit}${src.dirty ? '+dirty' : ''}` : 'unknown'}; ${runs} runs each, alternating; ` +
      `cluster ${server ? 'embedded (sheepdog serve)' : address}; ` +
      `NODE_EXTRA_CA_CERTS ${extraCa === undefined ? 'unset' : flags.has('no-extra-ca') ? 'removed (--no-extra-ca)' : 'set'}\n\n`,
  );
  process.stdout.write(table(header, rows));
  process.stdout.write(`\n${markdownTable(header, rows)}\nsaved ${file}\n`);
}

if (isMain(import.meta.url)) {
  main().catch((e: unknown) => {
    process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  });
}
