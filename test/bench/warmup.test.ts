// `sheepdog bench --warmup S`: the same workload runs S seconds first,
// unmeasured; the --json line gains cpu_ms as its last key. Run in this
// process (runBench; the embedded cluster still starts in its own process)
// and through the engine (measure) on an embedded cluster in a worker thread.
// No timing assertions: what is checked is what is counted.
import { Writable } from 'node:stream';
import t from 'tap';
import { runBench } from '../../cli/bench/command.js';
import { BENCH_JSON_KEYS, measure, startEmbeddedThread } from '../../cli/bench/engine.js';
import { SheepdogClient } from '../../lib/client/client.js';

class Capture extends Writable {
  text = '';
  isTTY = false;
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.text += chunk.toString();
    cb();
  }
}

async function bench(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const stdout = new Capture();
  const stderr = new Capture();
  const code = await runBench(args, { stdout, stderr });
  return { code, out: stdout.text, err: stderr.text };
}

const OLD_KEYS = ['op', 'pattern', 'bs', 'qd', 'bytes', 'seconds', 'mibps', 'iops', 'p50_us', 'p99_us', 'max_rss_mb'];

t.test('the --json contract: the old keys in their order, cpu_ms appended', async (t) => {
  t.strictSame([...BENCH_JSON_KEYS], [...OLD_KEYS, 'cpu_ms']);
});

t.test('--warmup: the warm-up is not counted in bytes; cpu_ms is the last key', async (t) => {
  // One embedded cluster (a worker thread) for the three runs, rather than one launched per run.
  const cluster = await startEmbeddedThread({ nodes: 1, port: 0 });
  t.teardown(() => cluster.close());
  const base = ['-a', cluster.addresses.join(','), '--vdi', 'warm', '--op', 'write', '--pattern', 'random'];
  base.push('--bs', '4K', '--qd', '4', '--total', '1M');
  const j = await bench([...base, '--create', '16M', '--warmup', '0.3', '--json']);
  t.equal(j.code, 0, j.err);
  const line = JSON.parse(j.out) as Record<string, unknown>;
  t.strictSame(Object.keys(line), [...OLD_KEYS, 'cpu_ms'], 'cpu_ms is the new last key');
  // 0.3 s of 4 KiB writes at QD4 is far more than 1 MiB: counting any of it would show.
  t.equal(line['bytes'], 2 ** 20, 'bytes is the measured phase only (--total)');
  const cpu = line['cpu_ms'];
  t.ok(typeof cpu === 'number' && Number.isFinite(cpu) && cpu > 0, `cpu_ms is a positive number (${String(cpu)})`);

  const text = await bench([...base, '--warmup', '0.3']);
  t.equal(text.code, 0, text.err);
  const m = /after an unmeasured warm-up of ([\d.]+) s \((\d+) requests\)/.exec(text.out);
  t.ok(m, `the text output reports the warm-up:\n${text.out}`);
  t.ok(Number(m?.[1]) >= 0.3, 'the warm-up lasted at least --warmup seconds');
  t.ok(Number(m?.[2]) > 0, 'requests were issued during the warm-up');
  t.match(text.out, /1\.0 MiB in /, 'the measured phase moved exactly --total');

  const cold = await bench(base);
  t.equal(cold.code, 0, cold.err);
  t.notMatch(cold.out, /warm-up/, 'no warm-up without --warmup');
});

t.test('measure({ warmup }): same workload first, nothing of it in the result', async (t) => {
  const cluster = await startEmbeddedThread({ nodes: 1, port: 0 });
  t.teardown(() => cluster.close());
  const client = new SheepdogClient({ nodes: [...cluster.addresses] });
  t.teardown(() => client.close());
  await client.createVdi('warm', 16 * 2 ** 20);
  const vdi = await client.openVdi('warm');
  t.teardown(() => vdi.close());
  const w = await measure(vdi, {
    op: 'write',
    pattern: 'seq',
    bs: 65536,
    qd: 2,
    total: 65536 * 8,
    seconds: undefined,
    warmup: 0.2,
  });
  t.ok(w.warmup !== undefined && w.warmup.requests > 0, `warm-up requests: ${w.warmup?.requests}`);
  t.ok((w.warmup?.seconds ?? 0) >= 0.2);
  t.equal(w.bytes, 65536 * 8, 'only the measured requests are counted');
  t.equal(w.iops > 0 && w.cpu_ms >= 0, true);
  const none = await measure(vdi, { op: 'read', pattern: 'seq', bs: 65536, qd: 1, total: 65536, seconds: undefined });
  t.equal(none.warmup, undefined);
  t.equal(none.bytes, 65536);
});

t.test('--warmup usage errors exit 64', async (t) => {
  const base = ['--op', 'read', '--pattern', 'seq', '--bs', '4K', '--qd', '1', '--total', '1M'];
  for (const bad of ['-1', 'soon', '1e3', '']) {
    const r = await bench([...base, `--warmup=${bad}`]);
    t.equal(r.code, 64, `--warmup ${JSON.stringify(bad)}`);
    t.match(r.err, /--warmup must be a number of seconds/);
    t.equal(r.out, '');
  }
});
