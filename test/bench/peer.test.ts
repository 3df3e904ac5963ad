// bench/peer.ts (ours vs the C client) and bench/charts.ts (SVG charts):
// the pure parts, and the runner's order of runs with the programs replaced
// by fakes (small node scripts printing a JSON line). No C build needed.
import { chmodSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import t, { type Test } from 'tap';
import { startEmbeddedThread } from '../../cli/bench/engine.js';
import { SheepdogClient } from '../../lib/client/client.js';
import {
  barChart,
  chartsFor,
  escapeXml,
  kindOf,
  main as chartsMain,
  newestResults,
  peerCharts,
} from '../../bench/charts.js';
import {
  type PeerResult,
  type PeerRun,
  ROWS,
  type Row,
  commandFor,
  cpuPerRequest,
  main as peerMain,
  median,
  parsePeerArgs,
  ratioTable,
  report,
  runRow,
  schedule,
  spread,
  summarize,
  startNullSheep,
} from '../../bench/peer.js';
import type { Machine } from '../../bench/common.js';

const row = (id: string): Row => {
  const r = ROWS.find((x) => x.id === id);
  if (!r) throw new Error(id);
  return r;
};
const READ = row('rand-read-4k-qd32');
const WRITE = row('seq-write-4m');

const MACHINE: Machine = {
  nproc: 2,
  cpu: 'Test CPU',
  memTotalGiB: 8,
  memFreeGiB: 4,
  node: 'v20.0.0',
  platform: 'Linux test',
  loadavg: [0.1, 0.2, 0.3],
  busyBefore: 0.05,
};

class Capture extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.text += chunk.toString();
    cb();
  }
}

function run(p: Partial<PeerRun> & Pick<PeerRun, 'variant' | 'iops'>): PeerRun {
  return {
    server: 'null',
    row: READ.id,
    mode: 'steady',
    round: 1,
    op: 'read',
    pattern: 'random',
    bs: 4096,
    qd: 32,
    bytes: 4096 * 1000,
    seconds: 1,
    mibps: 1,
    p50_us: 100,
    p99_us: 1000,
    max_rss_mb: 50,
    cpu_ms: 20,
    cpu_us_per_req: 20,
    load1: 0,
    argv: [],
    ...p,
  };
}

// ------------------------------------------------------------ statistics

t.test('median, min, max', async (t) => {
  t.equal(median([3, 1, 2]), 2);
  t.equal(median([4, 1, 3, 2]), 2.5);
  t.equal(median([7]), 7);
  t.ok(Number.isNaN(median([])));
  t.strictSame(spread([5, 1, 9, 3, 7]), { min: 1, median: 5, max: 9 });
  t.equal(cpuPerRequest({ cpu_ms: 20, bytes: 4096 * 1000, bs: 4096 }), 20, '20 ms over 1000 requests: 20 µs each');
  t.equal(cpuPerRequest({ cpu_ms: 5, bytes: 0, bs: 4096 }), null, 'no requests: no per-request CPU');
});

t.test('summarize: ratio of the medians, --into ratio, peak RSS, median latency', async (t) => {
  const runs = [
    run({ variant: 'ours', iops: 900, p50_us: 110, max_rss_mb: 70 }),
    run({ variant: 'into', iops: 1200, max_rss_mb: 40 }),
    run({ variant: 'c', iops: 1000, p50_us: 90, max_rss_mb: 12 }),
    run({ variant: 'ours', iops: 800, round: 2, p50_us: 130, max_rss_mb: 90 }),
    run({ variant: 'into', iops: 1100, round: 2, max_rss_mb: 41 }),
    run({ variant: 'c', iops: 1000, round: 2, p50_us: 95, max_rss_mb: 13 }),
    run({ variant: 'ours', iops: 1000, round: 3, p50_us: 120, max_rss_mb: 80 }),
    run({ variant: 'into', iops: 1000, round: 3, max_rss_mb: 42 }),
    run({ variant: 'c', iops: 2000, round: 3, p50_us: 100, max_rss_mb: 11 }),
    run({ variant: 'ours', iops: 400, mode: 'cold' }),
    run({ variant: 'c', iops: 800, mode: 'cold' }),
  ];
  const s = summarize(runs);
  t.equal(s.length, 2, 'one summary per server, row and mode');
  const steady = s[0];
  t.equal(steady?.mode, 'steady');
  t.equal(steady?.name, '4 KiB rand read QD32');
  t.strictSame(steady?.ours.iops, { min: 800, median: 900, max: 1000 });
  t.strictSame(steady?.c.iops, { min: 1000, median: 1000, max: 2000 });
  t.equal(steady?.ratio, 0.9, 'median ours / median C');
  t.equal(steady?.into_ratio, 1.1);
  t.equal(steady?.ours.p50_us, 120, 'median p50');
  t.equal(steady?.ours.max_rss_mb, 90, 'peak RSS is the highest run');
  t.equal(steady?.c.max_rss_mb, 13);
  t.equal(s[1]?.mode, 'cold');
  t.equal(s[1]?.ratio, 0.5);
  t.equal(s[1]?.into, null, 'no --into runs: no --into ratio');
  t.equal(s[1]?.into_ratio, null);
  t.strictSame(summarize([run({ variant: 'ours', iops: 1 })]), [], 'no C runs: no ratio');
});

t.test('ratio table: text and markdown', async (t) => {
  const s = summarize([
    run({ variant: 'ours', iops: 12345 }),
    run({ variant: 'into', iops: 15000 }),
    run({ variant: 'c', iops: 10000, p50_us: 80.5, p99_us: 900, cpu_us_per_req: 7.25 }),
    run({ variant: 'ours', iops: 300, row: WRITE.id, op: 'write', bs: WRITE.bs }),
    run({ variant: 'c', iops: 400, row: WRITE.id, op: 'write', bs: WRITE.bs }),
  ]);
  const text = ratioTable(s);
  const lines = text.trimEnd().split('\n');
  t.equal(lines.length, 4, 'header, rule, two rows');
  t.match(lines[0], /^workload +C IOPS median \(min–max\) +ours IOPS median/);
  t.match(text, /4 KiB rand read QD32 +10,000 \(10,000–10,000\) +12,345 \(12,345–12,345\) +1\.23 +1\.50/);
  t.match(text, /100\/1,000 vs 80\.5\/900/, 'p50/p99 ours vs C');
  t.match(text, /20\.0 vs 7\.3/, 'CPU µs per request ours vs C');
  t.match(text, /4 MiB seq write QD8 .* 0\.75 +— /, 'writes have no --into ratio');
  const md = ratioTable(s, true).trimEnd().split('\n');
  t.equal(md.length, 4);
  t.match(md[0], /^\| workload \| C IOPS median \(min–max\) \| .* \| CPU µs\/req ours vs C \|$/);
  t.equal(md[1], '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  t.match(md[2], /^\| 4 KiB rand read QD32 \| 10,000 \(10,000–10,000\) \| 12,345 .* \| 1\.23 \| 1\.50 \|/);

  const full = report(
    {
      machine: MACHINE,
      options: { servers: ['null', 'cluster'], address: '10.0.0.1:7000', runs: 1, seconds: 5, warmup: 2, rows: [] },
      summaries: [...s, ...s.map((x) => ({ ...x, mode: 'cold' as const }))],
      source: { commit: 'abc1234', dirty: true },
    },
    true,
  );
  t.match(full, /machine: 2 × Test CPU, 8 GiB .*5% of the CPUs busy before the run/);
  t.match(full, /commit abc1234 \(uncommitted changes\); 1 run of each, alternating; each run --seconds 5/);
  t.match(full, /#### null server \(bench\/c\/build\/null-sheep\), steady \(--warmup 2 s\)\n\n\| workload/);
  t.match(full, /#### null server \(bench\/c\/build\/null-sheep\), cold \(no warm-up\)/);
  t.notMatch(full, /real cluster/, 'no table for a server without results');
});

// ------------------------------------------------------------ order of runs

t.test('schedule: rounds of ours, [--into,] C, cold and steady interleaved', async (t) => {
  const s = schedule(READ, 2, ['cold', 'steady']).map((x) => `${x.round}:${x.mode}:${x.variant}`);
  t.strictSame(s, [
    '1:cold:ours',
    '1:cold:into',
    '1:cold:c',
    '1:steady:ours',
    '1:steady:into',
    '1:steady:c',
    '2:cold:ours',
    '2:cold:into',
    '2:cold:c',
    '2:steady:ours',
    '2:steady:into',
    '2:steady:c',
  ]);
  t.strictSame(
    schedule(WRITE, 3, ['cold']).map((x) => x.variant),
    ['ours', 'c', 'ours', 'c', 'ours', 'c'],
    'writes: no --into',
  );
});

t.test('command lines', async (t) => {
  const p = { ours: ['node', 'main.js', 'bench'], c: ['sd-bench'], nullSheep: ['null-sheep'] };
  t.strictSame(commandFor(p, 'c', READ, 'h:1', 'v', undefined, undefined), [
    'sd-bench',
    '-a',
    'h:1',
    '--vdi',
    'v',
    '--op',
    'read',
    '--pattern',
    'random',
    '--bs',
    '4096',
    '--qd',
    '32',
    '--total',
    String(128 * 2 ** 20),
  ]);
  const into = commandFor(p, 'into', READ, 'h:1', 'v', 5, 2);
  t.strictSame(into.slice(0, 8), ['node', 'main.js', 'bench', '-a', 'h:1', '--vdi', 'v', '--no-fill']);
  t.strictSame(into.slice(-6), ['--seconds', '5', '--warmup', '2', '--json', '--into']);
  t.notOk(commandFor(p, 'ours', READ, 'h:1', 'v', 5, 2).includes('--into'));
  t.notOk(commandFor(p, 'ours', READ, 'h:1', 'v', 5, 0).includes('--warmup'), 'no warm-up: no --warmup');
});

/** A fake program: logs its role and argv, prints a JSON line (or listens, as null-sheep). */
function fakes(dir: string): { log: string; ours: string; cBuild: string } {
  const log = join(dir, 'log');
  writeFileSync(log, '');
  // Started without tap's process-info hook (env -S sets NODE_OPTIONS empty): it costs a Node process ~0.4 s of CPU.
  const script = (role: string): string => `#!/usr/bin/env -S NODE_OPTIONS= ${process.execPath}
const fs = process.getBuiltinModule('node:fs'); // ESM (sd-bench, null-sheep) or CommonJS (ours.cjs) alike
const argv = process.argv.slice(2);
fs.appendFileSync(${JSON.stringify(log)}, JSON.stringify({ role: ${JSON.stringify(role)}, argv }) + '\\n');
if (${JSON.stringify(role)} === 'null-sheep') {
  process.on('SIGTERM', () => { fs.appendFileSync(${JSON.stringify(log)}, JSON.stringify({ role: 'null-sheep', stopped: true }) + '\\n'); process.exit(0); });
  setInterval(() => {}, 1000);
  process.stdout.write('null-sheep: a fake\\nlistening 127.0.0.1:4242\\n');
} else {
  const get = (k) => argv[argv.indexOf(k) + 1];
  const into = argv.includes('--into');
  const iops = ${JSON.stringify(role)} === 'c' ? 1000 : into ? 1200 : 900;
  const bs = Number(get('--bs'));
  process.stdout.write('some chatter\\n' + JSON.stringify({ op: get('--op'), pattern: get('--pattern'), bs, qd: Number(get('--qd')),
    bytes: bs * 100, seconds: 0.1, mibps: 1, iops, p50_us: 10, p99_us: 20, max_rss_mb: 30, cpu_ms: 4 }) + '\\n');
}
`;
  const cBuild = join(dir, 'build');
  mkdirSync(cBuild);
  for (const name of ['sd-bench', 'null-sheep']) {
    const f = join(cBuild, name);
    writeFileSync(f, script(name === 'sd-bench' ? 'c' : 'null-sheep'));
    chmodSync(f, 0o755);
  }
  const ours = join(dir, 'ours.cjs');
  writeFileSync(ours, script('ours').replace(/^#!.*\n/, ''));
  return { log, ours, cBuild };
}

function readLog(log: string): { role: string; argv?: string[]; stopped?: boolean }[] {
  return readFileSync(log, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as { role: string; argv?: string[]; stopped?: boolean });
}

t.test('runRow: the programs run alternating, ours, --into, C, ...', async (t) => {
  const f = fakes(t.testdir());
  const seen: string[] = [];
  const runs = await runRow(READ, {
    server: 'null',
    address: '127.0.0.1:9',
    vdi: 'v',
    runs: 2,
    seconds: 0.5,
    warmup: 1,
    programs: {
      ours: ['env', 'NODE_OPTIONS=', process.execPath, f.ours, 'bench'],
      c: [join(f.cBuild, 'sd-bench')],
      nullSheep: [],
    },
    onRun: (r) => seen.push(r.variant),
  });
  const log = readLog(f.log).map((e) => {
    const a = e.argv ?? [];
    return `${e.role === 'c' ? 'c' : a.includes('--into') ? 'into' : 'ours'}${a.includes('--warmup') ? '+warm' : ''}`;
  });
  t.strictSame(log, [
    'ours',
    'into',
    'c',
    'ours+warm',
    'into+warm',
    'c+warm',
    'ours',
    'into',
    'c',
    'ours+warm',
    'into+warm',
    'c+warm',
  ]);
  t.strictSame(seen, ['ours', 'into', 'c', 'ours', 'into', 'c', 'ours', 'into', 'c', 'ours', 'into', 'c']);
  t.equal(runs.length, 12);
  t.equal(runs[2]?.iops, 1000, "the C run's JSON line");
  t.equal(runs[0]?.cpu_us_per_req, 40, '4 ms over 100 requests');
  t.equal(runs[3]?.mode, 'steady');
  t.equal(runs[5]?.round, 1);
  t.equal(runs[6]?.round, 2);
  const s = summarize(runs);
  t.equal(s.find((x) => x.mode === 'steady')?.ratio, 0.9);
  t.equal(s.find((x) => x.mode === 'steady')?.into_ratio, 1.2);
});

t.test('runRow: a failing program fails the row with its stderr', async (t) => {
  const dir = t.testdir({ 'bad.cjs': "process.stderr.write('no such VDI\\n'); process.exit(4);" });
  await t.rejects(
    runRow(WRITE, {
      server: 'null',
      address: 'h:1',
      vdi: 'v',
      runs: 1,
      seconds: undefined,
      warmup: 0,
      programs: { ours: [process.execPath, join(dir, 'bad.cjs')], c: [], nullSheep: [] },
    }),
    /exit 4: no such VDI/,
  );
});

t.test('runRow: an abort stops the program running and the row', async (t) => {
  const dir = t.testdir({ 'hang.cjs': "process.stdout.write('started\\n'); setInterval(() => {}, 1000);" });
  const abort = new AbortController();
  const started = Date.now();
  const p = runRow(WRITE, {
    server: 'null',
    address: 'h:1',
    vdi: 'v',
    runs: 3,
    seconds: undefined,
    warmup: 0,
    programs: { ours: [process.execPath, join(dir, 'hang.cjs')], c: [], nullSheep: [] },
    signal: abort.signal,
  });
  setTimeout(() => abort.abort(new Error('interrupted')), 200);
  await t.rejects(p, /abort/i);
  t.ok(Date.now() - started < 20_000, 'did not wait for the hanging program');
  await t.rejects(
    runRow(WRITE, {
      server: 'null',
      address: 'h:1',
      vdi: 'v',
      runs: 1,
      seconds: undefined,
      warmup: 0,
      programs: { ours: [process.execPath, join(dir, 'hang.cjs')], c: [], nullSheep: [] },
      signal: abort.signal,
    }),
    /interrupted/,
    'an aborted signal starts nothing',
  );
});

t.test('startNullSheep: waits for "listening", stops with SIGTERM', async (t) => {
  const f = fakes(t.testdir());
  const ns = await startNullSheep([join(f.cBuild, 'null-sheep')], 12345);
  t.equal(ns.address, '127.0.0.1:4242');
  await ns.close();
  const log = readLog(f.log);
  t.strictSame(log[0]?.argv, ['--host', '127.0.0.1', '--port', '0', '--vdi-size', '12345']);
  t.equal(log[1]?.stopped, true, 'stopped by SIGTERM');
  const dir = t.testdir({ 'dies.cjs': 'process.exit(3)' });
  await t.rejects(startNullSheep([process.execPath, join(dir, 'dies.cjs')], 1), /exited before listening \(exit 3\)/);
});

// ------------------------------------------------------------ the command

t.test('peer main: usage errors 64, no C build 2', async (t) => {
  for (const args of [['--server', 'nowhere'], ['--rows', 'seq-write-9m'], ['--runs', '0'], ['--bogus']]) {
    const err = new Capture();
    t.equal(await peerMain(args, {}, { stdout: new Capture(), stderr: err }), 64, args.join(' '));
    t.match(err.text, /^peer: /);
  }
  t.strictSame(
    parsePeerArgs(['--rows', '1,rand-read-4k-qd1']).rows.map((r) => r.id),
    ['seq-write-4m', 'rand-read-4k-qd1'],
  );
  t.strictSame(parsePeerArgs([]).servers, ['null', 'cluster']);
  t.equal(parsePeerArgs([]).address, '127.0.0.1:7000');
  const err = new Capture();
  const dir = t.testdir();
  const code = await peerMain(['--c-build', dir], {}, { stdout: new Capture(), stderr: err });
  t.equal(code, 2);
  t.match(err.text, /sd-bench, .*null-sheep missing: set SHEEPDOG_PREFIX/);
});

t.test('peer main against the fake null server: tables, results file, null-sheep stopped', async (t) => {
  const dir = t.testdir();
  const f = fakes(dir);
  const results = join(dir, 'results');
  const out = new Capture();
  const err = new Capture();
  const args = ['--server', 'null', '--runs', '2', '--seconds', '0.1', '--warmup', '0.1', '--rows', 'rand-read-4k-qd1'];
  const code = await peerMain([...args, '--c-build', f.cBuild, '--ours', f.ours, '--results', results], process.env, {
    stdout: out,
    stderr: err,
  });
  t.equal(code, 0, err.text);
  t.match(out.text, /null server \(bench\/c\/build\/null-sheep\), steady \(--warmup 0\.1 s\)\nworkload/);
  t.match(out.text, /4 KiB rand read QD1 +1,000 \(1,000–1,000\) +900 \(900–900\) +0\.90 +1\.20/);
  t.match(out.text, /null server \(bench\/c\/build\/null-sheep\), cold/);
  const log = readLog(f.log);
  t.equal(log.filter((e) => e.role === 'null-sheep' && e.argv).length, 1, 'one null-sheep for the row');
  t.equal(log.at(-1)?.stopped, true, 'null-sheep stopped after the row');
  t.ok(
    log.filter((e) => e.role !== 'null-sheep').every((e) => e.argv?.join(' ').includes('-a 127.0.0.1:4242')),
    'both clients use the address null-sheep printed',
  );
  const files = readdirSync(results);
  t.equal(files.length, 1);
  t.match(files[0], /-peer\.json$/);
  const saved = JSON.parse(readFileSync(join(results, files[0] ?? ''), 'utf8')) as PeerResult;
  t.equal(saved.kind, 'peer');
  t.equal(saved.runs.length, 2 * 2 * 3, 'every run: 2 rounds × cold/steady × ours, --into, C');
  t.equal(saved.summaries.length, 2);
  t.equal(kindOf(files[0] ?? '', saved), 'peer');
  t.ok(chartsFor(files[0] ?? '', saved).length >= 3);
});

t.test('peer main against a cluster: a VDI per row, filled, deleted after', async (t) => {
  const cluster = await startEmbeddedThread({ nodes: 1, port: 0 });
  t.teardown(() => cluster.close());
  const dir = t.testdir();
  const f = fakes(dir);
  const results = join(dir, 'results');
  const address = cluster.addresses[0] ?? '';
  const err = new Capture();
  const code = await peerMain(
    ['--server', 'cluster', '-a', address, '--runs', '1', '--warmup', '0', '--rows', '5'].concat([
      '--c-build',
      f.cBuild,
      '--ours',
      f.ours,
      '--results',
      results,
    ]),
    process.env,
    { stdout: new Capture(), stderr: err },
  );
  t.equal(code, 0, err.text);
  const log = readLog(f.log);
  t.strictSame(
    log.map((e) => e.role),
    ['ours', 'ours', 'c'],
    'cold only (--warmup 0): ours, --into, C',
  );
  const vdi = log[0]?.argv?.[(log[0]?.argv?.indexOf('--vdi') ?? 0) + 1] ?? '';
  t.match(vdi, /^peer-\d+-rand-read-4k-qd1$/);
  t.ok(
    log.every((e) => e.argv?.includes(vdi)),
    'the same VDI for both clients',
  );
  const client = new SheepdogClient({ nodes: [address] });
  t.teardown(() => client.close());
  t.notOk(
    (await client.listVdis()).some((v) => v.name === vdi),
    'deleted after',
  );
});

// ------------------------------------------------------------ charts

/** Start tags well-formed (quoted attributes), tags balanced. */
function checkSvg(t: Test, svg: string): void {
  t.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" /);
  const stack: string[] = [];
  for (const m of svg.matchAll(/<[^>]*>/g)) {
    const tag = m[0];
    if (tag.startsWith('</')) {
      const name = tag.slice(2, -1);
      t.equal(stack.pop(), name, `</${name}> closes its tag`);
      continue;
    }
    if (!/^<[a-z]+(\s+[a-zA-Z][a-zA-Z0-9:-]*="[^"<>]*")*\s*\/?>$/.test(tag)) t.fail(`malformed tag ${tag}`);
    if (!tag.endsWith('/>')) stack.push(/^<([a-z]+)/.exec(tag)?.[1] ?? '');
  }
  t.strictSame(stack, [], 'every tag closed');
  const text = svg.replace(/<[^>]*>/g, '');
  t.notMatch(text, /[<>]|&(?!(lt|gt|amp|quot|apos);)/, 'text is escaped');
}

t.test('barChart: well-formed, one bar per value, the 1.0 line where 1.0 is', async (t) => {
  const svg = barChart({
    title: 'Ratio <test> & "quotes"',
    subtitle: "it's a subtitle",
    groups: ['4 KiB rand read QD32', 'a<b'],
    series: [
      { name: 'null', values: [0.5, 2] },
      { name: 'cluster', values: [1.25, null] },
    ],
    yLabel: 'ours / C',
    xLabel: 'workload',
    refLines: [{ value: 1, label: '1.0' }],
  });
  checkSvg(t, svg);
  t.match(svg, /<rect width="\d+" height="\d+" fill="#ffffff"\/>/, 'white background');
  const bars = [
    ...svg.matchAll(
      /<rect class="bar" x="[\d.]+" y="([\d.]+)" width="\d+" height="([\d.]+)"[^>]*><title>[^<]*: ([\d.]+)</g,
    ),
  ].map((m) => ({ y: Number(m[1]), h: Number(m[2]), v: m[3] }));
  t.strictSame(
    bars.map((b) => b.v),
    ['0.50', '1.25', '2.00'],
    'one bar per non-null value, group by group',
  );
  const values = [...svg.matchAll(/<text class="value"[^>]*>([^<]*)</g)].map((m) => m[1]);
  t.strictSame(values.sort(), ['0.50', '1.25', '2.00'], 'the values on the bars');
  const refs = [...svg.matchAll(/<line class="ref" x1="[\d.]+" y1="([\d.]+)"/g)];
  t.equal(refs.length, 1, 'one reference line');
  // Bars stand on the axis: bottom = y + height. The 1.0 line is half as high as the 2.0 bar.
  const [half, , two] = bars;
  const bottom = (half?.y ?? 0) + (half?.h ?? 0);
  t.ok(
    bars.every((b) => Math.abs(b.y + b.h - bottom) < 0.02),
    'a common baseline',
  );
  const heightOf1 = bottom - Number(refs[0]?.[1]);
  t.ok(Math.abs(heightOf1 / (two?.h ?? 1) - 0.5) < 0.01, `1.0 at half the height of 2.0 (${heightOf1} / ${two?.h})`);
  t.ok(Math.abs((half?.h ?? 0) / (two?.h ?? 1) - 0.25) < 0.01, 'heights proportional to values');
  t.match(svg, /Ratio &lt;test&gt; &amp; &quot;quotes&quot;/);
  t.match(svg, />a&lt;b</);
  t.equal(escapeXml(`<&>"'`), '&lt;&amp;&gt;&quot;&apos;');
  t.match(svg, /class="ylabel"[^>]*>ours \/ C</, 'labelled y axis');
  t.match(svg, /class="legend"[^>]*>null</);
});

t.test('peer charts: ratio per row and server, --into only for reads, latency, RSS', async (t) => {
  const mk = (server: 'null' | 'cluster', r: Row, c: number): PeerRun[] => [
    run({ server, row: r.id, variant: 'ours', iops: c * 0.8 }),
    ...(r.op === 'read' ? [run({ server, row: r.id, variant: 'into', iops: c * 1.1 })] : []),
    run({ server, row: r.id, variant: 'c', iops: c }),
  ];
  const runs = [
    ...mk('null', WRITE, 100),
    ...mk('null', READ, 1000),
    ...mk('cluster', WRITE, 50),
    ...mk('cluster', READ, 500),
  ];
  const res: PeerResult = {
    kind: 'peer',
    date: '2026-12-01T21:00:00.000Z',
    machine: MACHINE,
    loadavgAfter: [0, 0, 0],
    options: { servers: ['null', 'cluster'], address: 'h:1', runs: 1, seconds: 1, warmup: 1, rows: [] },
    programs: { ours: '', c: '', nullSheep: '' },
    summaries: summarize(runs),
    runs,
  };
  const charts = peerCharts(res);
  t.strictSame(
    charts.map((c) => c.file),
    ['peer-ratio.svg', 'peer-latency.svg', 'peer-rss.svg'],
    'steady only: no cold chart',
  );
  const ratio = charts[0]?.svg ?? '';
  checkSvg(t, ratio);
  t.equal([...ratio.matchAll(/class="bar"/g)].length, 6, '2 rows × 2 servers + --into for the read row on each');
  t.match(ratio, /<title>null server: readInto, 4 KiB rand read QD32: 1\.10<\/title>/);
  t.match(ratio, /<title>real cluster: vdi\.read \/ write, 4 MiB seq write QD8: 0\.80<\/title>/);
  t.ok(ratio.indexOf('4 MiB seq write QD8') < ratio.indexOf('4 KiB rand read QD32'), "rows in the issue's order");
  for (const c of charts) checkSvg(t, c.svg);
  t.equal([...(charts[1]?.svg ?? '').matchAll(/class="bar"/g)].length, 8, 'p50 and p99 per row and server');
  t.match(charts[2]?.svg ?? '', /goal: 128 MiB/);
});

t.test('nbd and startup charts; newest results; charts main', async (t) => {
  const nbd = {
    kind: 'nbd',
    rounds: 3,
    seconds: 5,
    rows: [
      { workload: '4 KiB random write QD32', nbd_vs_sdk: 0.55, nbd_vs_qemu: 0.39 },
      { workload: '4 MiB seq read QD8', nbd_vs_sdk: 0.95, nbd_vs_qemu: 0.47 },
    ],
  };
  const startup = {
    results: [
      { name: "node -e ''", runs: 7, vsNode: 1 },
      { name: 'sheepdog --version', runs: 7, vsNode: 1.34 },
      { name: 'sheepdog vdi list', runs: 7, vsNode: 3.77 },
    ],
  };
  const [n] = chartsFor('x-nbd.json', nbd);
  checkSvg(t, n?.svg ?? '');
  t.equal([...(n?.svg ?? '').matchAll(/class="bar"/g)].length, 4);
  t.equal([...(n?.svg ?? '').matchAll(/class="ref"/g)].length, 2, 'lines at 1.0 and at the 0.9 goal');
  t.equal(kindOf('2026-12-01T20-32-38-414Z-startup.json', startup), 'startup', 'kind from the file name');
  const [s] = chartsFor('2026-12-01T20-32-38-414Z-startup.json', startup);
  checkSvg(t, s?.svg ?? '');
  t.equal([...(s?.svg ?? '').matchAll(/class="bar"/g)].length, 2, "node -e '' itself is the 1.0 line, not a bar");
  t.throws(() => chartsFor('x-matrix.json', {}), /not a peer, nbd or startup result/);

  const dir = t.testdir({
    '2026-12-01T10-00-00-000Z-nbd.json': JSON.stringify({ ...nbd, rows: [] }),
    '2026-12-01T11-00-00-000Z-nbd.json': JSON.stringify(nbd),
    '2026-12-01T09-00-00-000Z-startup.json': JSON.stringify(startup),
    '2026-12-01T12-00-00-000Z-matrix.json': '{}',
  });
  t.strictSame(newestResults(dir), [
    join(dir, '2026-12-01T11-00-00-000Z-nbd.json'),
    join(dir, '2026-12-01T09-00-00-000Z-startup.json'),
  ]);
  const out = join(dir, 'out');
  const write = process.stdout.write;
  process.stdout.write = (() => true) as typeof process.stdout.write;
  let code: number;
  try {
    code = chartsMain(['--out', out, ...newestResults(dir)]);
  } finally {
    process.stdout.write = write;
  }
  t.equal(code, 0);
  t.strictSame(readdirSync(out).sort(), ['nbd-ratio.svg', 'startup.svg']);
  t.match(readFileSync(join(out, 'nbd-ratio.svg'), 'utf8'), /4 MiB seq read QD8/);
});
