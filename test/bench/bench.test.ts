// Smoke test of `sheepdog bench` (the built CLI, as users run it): the --json
// line has exactly the contract keys with sane types. No timing assertions:
// the numbers depend on the machine and whatever else runs on it.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { ROOT, ensureBuilt, sheepdog } from '../cli/helpers.js';

const KEYS = ['op', 'pattern', 'bs', 'qd', 'bytes', 'seconds', 'mibps', 'iops', 'p50_us', 'p99_us', 'max_rss_mb'];

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
    for (const k of ['seconds', 'mibps', 'iops', 'p50_us', 'p99_us', 'max_rss_mb']) {
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
  const launcher = existsSync(join(ROOT, 'dist', 'bench', 'launcher.js'));
  t.match(out, launcher ? /cluster in a separate process/ : /cluster in a separate thread/);
  t.match(out, /MiB\/s, \d+ IOPS/);
  t.match(out, /latency p50 [\d.]+ us, p99 [\d.]+ us/);
});

t.test('bench --null: the client-side ceiling', async (t) => {
  const args = ['bench', '--null', '--op', 'read', '--pattern', 'random', '--bs', '4K', '--qd', '2', '--total', '1M'];
  const r = await sheepdog(undefined, [...args, '--json'], { timeout: 90_000 });
  t.equal(r.code, 0, r.stderr);
  t.strictSame(Object.keys(jsonLines(r.stdout)[0] ?? {}), KEYS);
});

t.test('bench usage errors exit 64', async (t) => {
  const cases: [string[], RegExp][] = [
    [['--pattern', 'seq', '--bs', '4K', '--qd', '1', '--total', '1M'], /--op must be read or write/],
    [['--op', 'read', '--pattern', 'seq', '--bs', '4K', '--qd', '1'], /exactly one of --total and --seconds/],
    [['--op', 'read', '--pattern', 'zigzag', '--bs', '4K', '--qd', '1', '--total', '1M'], /--pattern/],
    [['--op', 'read', '--pattern', 'seq', '--bs', 'lots', '--qd', '1', '--total', '1M'], /--bs/],
    [['--op', 'read', '--pattern', 'seq', '--bs', '4K', '--qd', '0', '--total', '1M'], /--qd/],
    [['-a', '127.0.0.1:7000', '--op', 'read', '--pattern', 'seq', '--bs', '4K', '--qd', '1', '--total', '1M'], /--vdi/],
    [['--op', 'read', '--pattern', 'seq', '--bs', '4K', '--qd', '1', '--total', '1M', '--bogus'], /bogus/],
  ];
  for (const [args, msg] of cases) {
    const r = await sheepdog(undefined, ['bench', ...args]);
    t.equal(r.code, 64, args.join(' '));
    t.match(r.stderr, msg);
    t.equal(r.stdout.length, 0);
  }
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
