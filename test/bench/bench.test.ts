// Smoke test of `sheepdog bench` (the built CLI, as users run it): the --json
// line has exactly the contract keys with sane types. No timing assertions:
// the numbers depend on the machine and whatever else runs on it.
import { Writable } from 'node:stream';
import t from 'tap';
import { runBench } from '../../cli/bench/command.js';
import { startEmbeddedCluster, startEmbeddedThread } from '../../cli/bench/engine.js';
import { ensureBuilt, sheepdog } from '../cli/helpers.js';

const KEYS = [
  'op',
  'pattern',
  'bs',
  'qd',
  'bytes',
  'seconds',
  'mibps',
  'iops',
  'p50_us',
  'p99_us',
  'max_rss_mb',
  'cpu_ms',
];

t.before(async () => {
  await ensureBuilt();
});

function jsonLines(stdout: Buffer): Record<string, unknown>[] {
  return stdout
    .toString()
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** `sheepdog bench` in this process (coverage of cli/bench/), with its output captured. */
class Capture extends Writable {
  text = '';
  isTTY: boolean;
  columns = 100;
  constructor(tty = false) {
    super();
    this.isTTY = tty;
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.text += chunk.toString();
    cb();
  }
}

async function bench(args: string[], tty = false): Promise<{ code: number; out: string; err: string }> {
  const stdout = new Capture();
  const stderr = new Capture(tty);
  const code = await runBench(args, { stdout, stderr });
  return { code, out: stdout.text, err: stderr.text };
}

for (const op of ['read', 'write'] as const) {
  t.test(`bench --json: ${op}`, async (t) => {
    const args = ['bench', '--op', op, '--pattern', 'random', '--bs', '4K', '--qd', '4', '--total', '4M', '--json'];
    const r = await sheepdog(undefined, args, { timeout: 90_000 });
    t.equal(r.code, 0, r.stderr);
    const lines = jsonLines(r.stdout);
    t.equal(lines.length, 1, 'exactly one line on stdout');
    const j = lines[0] ?? {};
    t.strictSame(Object.keys(j), KEYS, 'exactly the contract keys, in order');
    t.equal(j['op'], op);
    t.equal(j['pattern'], 'random');
    t.equal(j['bs'], 4096, 'sizes accept K suffixes');
    t.equal(j['qd'], 4);
    t.equal(j['bytes'], 4 * 2 ** 20, '--total is honoured (a multiple of bs)');
    for (const k of ['seconds', 'mibps', 'iops', 'p50_us', 'p99_us', 'max_rss_mb', 'cpu_ms']) {
      const v = j[k];
      t.ok(typeof v === 'number' && Number.isFinite(v) && v > 0, `${k} is a positive number (${String(v)})`);
    }
    t.ok((j['p99_us'] as number) >= (j['p50_us'] as number), 'p99 >= p50');
    t.equal(r.stderr, '', 'nothing on stderr (not a TTY: no progress)');
  });
}

t.test('bench, text output: the embedded cluster runs outside this event loop', async (t) => {
  const args = [
    'bench',
    '--op',
    'read',
    '--pattern',
    'seq',
    '--bs',
    '1M',
    '--qd',
    '2',
    '--total',
    '4M',
    '--nodes',
    '2',
  ];
  const r = await sheepdog(undefined, args, { timeout: 90_000 });
  t.equal(r.code, 0, r.stderr);
  const out = r.stdout.toString();
  t.match(out, /read seq bs=1\.0 MiB qd=2 on 2 embedded gateways/);
  t.match(out, /cluster in a separate process/);
  t.match(out, /MiB\/s, \d+ IOPS/);
  t.match(out, /latency p50 [\d.]+ us, p99 [\d.]+ us/);
});

t.test('bench --null: the client-side ceiling', async (t) => {
  const args = ['bench', '--null', '--op', 'read', '--pattern', 'random', '--bs', '4K', '--qd', '2', '--total', '1M'];
  const r = await sheepdog(undefined, [...args, '--json'], { timeout: 90_000 });
  t.equal(r.code, 0, r.stderr);
  t.strictSame(Object.keys(jsonLines(r.stdout)[0] ?? {}), KEYS);
});

// Usage errors: the messages in process (cheap), and one through the real
// process for its exit status.
t.test('bench usage errors exit 64', async (t) => {
  const cases: [string[], RegExp][] = [
    [['--pattern', 'seq', '--bs', '4K', '--qd', '1', '--total', '1M'], /--op must be read or write/],
    [['--op', 'read', '--pattern', 'seq', '--bs', '4K', '--qd', '1'], /exactly one of --total and --seconds/],
    [['--op', 'read', '--pattern', 'zigzag', '--bs', '4K', '--qd', '1', '--total', '1M'], /--pattern/],
    [['--op', 'read', '--pattern', 'seq', '--bs', 'lots', '--qd', '1', '--total', '1M'], /--bs/],
    [['--op', 'read', '--pattern', 'seq', '--bs', '4K', '--qd', '0', '--total', '1M'], /--qd/],
    [['-a', '127.0.0.1:1', '--op', 'read', '--pattern', 'seq', '--bs', '4K', '--qd', '1', '--total', '1M'], /--vdi/],
    [['--op', 'read', '--pattern', 'seq', '--bs', '4K', '--qd', '1', '--total', '1M', '--bogus'], /bogus/],
  ];
  for (const [args, msg] of cases) {
    const r = await bench(args);
    t.equal(r.code, 64, args.join(' '));
    t.match(r.err, msg);
    t.equal(r.out, '');
  }
  const [args, msg] = cases[0] as [string[], RegExp];
  const r = await sheepdog(undefined, ['bench', ...args]);
  t.equal(r.code, 64, `the process exits 64: ${args.join(' ')}`);
  t.match(r.stderr, msg);
  t.equal(r.stdout.length, 0);
});

t.test('bench --help', async (t) => {
  const r = await sheepdog(undefined, ['bench', '--help']);
  t.equal(r.code, 0);
  t.match(r.stdout.toString(), /--op read\|write --pattern seq\|random --bs BYTES --qd N/);
});

t.test('bench against a cluster that is not there exits 2', async (t) => {
  const args = ['-a', '127.0.0.1:1', '--vdi', 'x', '--op', 'read', '--pattern', 'seq', '--bs', '4K', '--qd', '1'];
  const r = await sheepdog(undefined, ['bench', ...args, '--total', '4K', '--json'], { timeout: 60_000 });
  t.equal(r.code, 2, r.stderr);
  t.equal(r.stdout.length, 0, 'no JSON line when nothing was measured');
});

// ------------------------------------------------------------ in process
// The same command run in this process (coverage of cli/bench/): the
// embedded cluster still starts in a separate process, from dist/ when it is
// built (serverEntry), else from the sources.

t.test('runBench in process: --json, text, progress on a TTY, --into, --null', async (t) => {
  const base = ['--pattern', 'seq', '--bs', '64K', '--qd', '2', '--total', '1M', '--nodes', '1'];
  const j = await bench(['--op', 'read', ...base, '--json']);
  t.equal(j.code, 0, j.err);
  t.strictSame(Object.keys(JSON.parse(j.out) as object), KEYS);

  const w = await bench(['--op', 'write', ...base, '--fill']);
  t.equal(w.code, 0, w.err);
  t.match(w.out, /write seq bs=64\.0 KiB qd=2 on 1 embedded gateways/);

  const tty = await bench(['--op', 'read', ...base, '--into', '--null'], true);
  t.equal(tty.code, 0, tty.err);
  t.match(tty.out, /\(vdi\.readInto\)/);
  t.match(tty.out, /null mode/);
  t.match(tty.err, /read seq \[/, 'a progress bar on a TTY');

  const secs = await bench([
    '--op',
    'read',
    '--pattern',
    'random',
    '--bs',
    '4K',
    '--qd',
    '2',
    '--seconds',
    '0.2',
    '--create',
    '8M',
  ]);
  t.equal(secs.code, 0, secs.err);
  t.match(secs.out, /read random bs=4\.0 KiB qd=2 on 3 embedded gateways/);
});

t.test('runBench in process: against a cluster (-a), --create, --delete, warnings', async (t) => {
  const cluster = await startEmbeddedCluster({ nodes: 2, port: 0 });
  t.teardown(() => cluster.close());
  const a = ['-a', cluster.addresses.join(',')];
  const args = ['--pattern', 'seq', '--bs', '1M', '--qd', '2', '--total', '2M'];
  const c = await bench([...a, '--vdi', 'b1', '--create', '8M', '--op', 'write', ...args, '--json']);
  t.equal(c.code, 0, c.err);
  // The VDI stays (no --delete); reading its unwritten half warns.
  const r = await bench([...a, '--vdi', 'b1', '--op', 'read', ...args, '--json', '--discover']);
  t.equal(r.code, 0, r.err);
  t.match(r.err, /unallocated objects/);
  const d = await bench([...a, '--vdi', 'b2', '--create', '8M', '--delete', '--op', 'read', ...args]);
  t.equal(d.code, 0, d.err);
  const gone = await bench([...a, '--vdi', 'b2', '--op', 'read', ...args]);
  t.equal(gone.code, 4, 'deleted: NOT_FOUND');
  const exists = await bench([...a, '--vdi', 'b1', '--create', '8M', '--op', 'read', ...args]);
  t.equal(exists.code, 5, 'create over an existing VDI: EXISTS');
  const big = await bench([
    ...a,
    '--vdi',
    'b1',
    '--op',
    'read',
    '--pattern',
    'seq',
    '--bs',
    '16M',
    '--qd',
    '1',
    '--total',
    '16M',
  ]);
  t.equal(big.code, 64, 'bs larger than the VDI');
  t.match(big.err, /larger than VDI/);
});

t.test('runBench in process: usage and help', async (t) => {
  const h = await bench(['--help']);
  t.equal(h.code, 0);
  t.match(h.out, /Usage: sheepdog bench/);
  const cases: string[][] = [
    ['--op', 'read', '--pattern', 'seq', '--bs', '4K', '--qd', '1', '--total', '1M', 'extra'],
    ['--op', 'read', '--pattern', 'seq', '--qd', '1', '--total', '1M'],
    ['--op', 'read', '--pattern', 'seq', '--bs', '4K', '--total', '1M'],
    ['--op', 'read', '--pattern', 'seq', '--bs', '0', '--qd', '1', '--total', '1M'],
    ['--op', 'read', '--pattern', 'seq', '--bs', '4K', '--qd', '1', '--seconds', 'soon'],
    ['--op', 'read', '--pattern', 'seq', '--bs', '4K', '--qd', '1', '--total', '1M', '--fill', '--no-fill'],
    ['--op', 'write', '--pattern', 'seq', '--bs', '4K', '--qd', '1', '--total', '1M', '--into'],
    [
      '-a',
      '127.0.0.1:1',
      '--vdi',
      'x',
      '--null',
      '--op',
      'read',
      '--pattern',
      'seq',
      '--bs',
      '4K',
      '--qd',
      '1',
      '--total',
      '1M',
    ],
    [
      '-a',
      '127.0.0.1:1',
      '--vdi',
      'x',
      '--nodes',
      '2',
      '--op',
      'read',
      '--pattern',
      'seq',
      '--bs',
      '4K',
      '--qd',
      '1',
      '--total',
      '1M',
    ],
    ['-a', ',', '--vdi', 'x', '--op', 'read', '--pattern', 'seq', '--bs', '4K', '--qd', '1', '--total', '1M'],
    ['-a', 'host:port:x', '--vdi', 'x', '--op', 'read', '--pattern', 'seq', '--bs', '4K', '--qd', '1', '--total', '1M'],
    ['--op', 'read', '--pattern', 'seq', '--bs', '4K', '--qd', '1', '--total', '1M', '--connections', '0'],
  ];
  for (const args of cases) {
    const r = await bench(args);
    t.equal(r.code, 64, args.join(' '));
    t.match(r.err, /Run 'sheepdog bench --help'/);
  }
});

t.test('the worker-thread fallback serves a cluster too', async (t) => {
  const c = await startEmbeddedThread({ nodes: 1, port: 0 });
  t.equal(c.isolation, 'thread');
  t.equal(c.addresses.length, 1);
  await c.close();
  await c.close();
});

t.test("the cluster process's Node flags: no profiler; no preloads or loaders for compiled JavaScript", async (t) => {
  const { clusterExecArgv } = await import('../../cli/bench/launcher.js');
  const argv = [
    '--cpu-prof',
    '--cpu-prof-dir=/tmp',
    '--import=file:///a/ts-loader.mjs',
    '--import',
    'tsx',
    '--require',
    './pre.cjs',
    '--loader=x',
    '--max-old-space-size=512',
    '--enable-source-maps',
  ];
  t.strictSame(clusterExecArgv(argv, '/d/bench-sheep.js'), ['--max-old-space-size=512', '--enable-source-maps']);
  t.strictSame(clusterExecArgv(argv, '/d/bench-sheep.ts'), argv.slice(2), 'the source keeps its loaders');
});
