// The C peer of the benchmarks (bench/c/): built against an installed
// libsheepdog only when SHEEPDOG_PREFIX names one, otherwise skipped (CI has
// none). Builds it, starts null-sheep on a free port, and runs a short
// workload with both sd-bench (libsheepdog) and `sheepdog bench` (runBench,
// in this process, from the .ts sources) against it: both print one JSON line
// with the contract keys, in order, and did real I/O.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import t, { type Test } from 'tap';
import { runBench } from '../../cli/bench/command.js';
import { BENCH_JSON_KEYS } from '../../cli/bench/engine.js';
import { ROOT } from '../cli/helpers.js';

const run = promisify(execFile);
const PREFIX = process.env['SHEEPDOG_PREFIX'];
const BUILD = join(ROOT, 'bench', 'c', 'build');

/** Build bench/c; the reason to skip when that is not possible. */
async function build(): Promise<string | undefined> {
  if (PREFIX === undefined || PREFIX === '')
    return 'SHEEPDOG_PREFIX is not set (an installed Sheepdog 1.0 with libsheepdog): the C peer is not built';
  if (!existsSync(join(PREFIX, 'lib', 'libsheepdog.so'))) return `no libsheepdog.so under SHEEPDOG_PREFIX=${PREFIX}`;
  try {
    await run('bash', [join(ROOT, 'bench', 'c', 'build.sh')], { env: { ...process.env, SHEEPDOG_PREFIX: PREFIX } });
  } catch (e) {
    return `bench/c/build.sh failed: ${(e as Error).message}`;
  }
  return undefined;
}

/** Start null-sheep on a free port; resolves with its address once it printed `listening HOST:PORT`. */
function startNullSheep(): Promise<{ child: ChildProcess; address: string; stderr: () => string }> {
  const child = spawn(join(BUILD, 'null-sheep'), ['--port', '0', '--vdi-size', '256M'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr?.on('data', (b: Buffer) => (err += b.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`null-sheep did not start: ${err}`)), 5000);
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`null-sheep exited (${code}): ${err}`)));
    if (child.stdout === null) throw new Error('no stdout');
    const lines = createInterface({ input: child.stdout });
    lines.once('line', (l) => {
      clearTimeout(timer);
      const m = /^listening (\S+:\d+)$/.exec(l);
      if (m?.[1] === undefined) reject(new Error(`unexpected first line from null-sheep: ${l}`));
      else resolve({ child, address: m[1], stderr: () => err });
    });
  });
}

function checkLine(t: Test, out: string, op: string, bs: number, qd: number, total: number): void {
  const lines = out.split('\n').filter((l) => l !== '');
  t.equal(lines.length, 1, 'exactly one line on stdout');
  const j = JSON.parse(lines[0] ?? '{}') as Record<string, unknown>;
  t.strictSame(Object.keys(j), [...BENCH_JSON_KEYS], 'the contract keys, in order');
  t.equal(j['op'], op);
  t.equal(j['pattern'], 'random');
  t.equal(j['bs'], bs);
  t.equal(j['qd'], qd);
  t.equal(j['bytes'], total, '--total is honoured');
  t.ok((j['iops'] as number) > 0, `iops > 0 (${String(j['iops'])})`);
  t.ok((j['p99_us'] as number) >= (j['p50_us'] as number), 'p99 >= p50');
}

/** `sheepdog bench ARGS` in this process. */
async function bench(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const sink = (add: (s: string) => void): Writable =>
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        add(chunk.toString());
        cb();
      },
    });
  const code = await runBench(args, {
    stdout: sink((s) => (out += s)),
    stderr: sink((s) => (err += s)),
    env: {},
  });
  return { code, out, err };
}

const skip = await build();

t.test('C peer: sd-bench and sheepdog bench against null-sheep', { skip: skip ?? false }, async (t) => {
  const ns = await startNullSheep();
  const exited = new Promise<number | null>((r) => ns.child.once('exit', (code) => r(code)));
  t.teardown(() => {
    ns.child.kill('SIGKILL');
  });
  for (const op of ['read', 'write'] as const) {
    const work = ['--op', op, '--pattern', 'random', '--bs', '4K', '--qd', '4', '--total', '2M'];
    const c = await run(join(BUILD, 'sd-bench'), ['-a', ns.address, '--vdi', 'cpeer', ...work, '--warmup', '0.2'], {
      timeout: 10_000,
    });
    t.test(`sd-bench ${op}`, async (t) => checkLine(t, c.stdout, op, 4096, 4, 2 * 2 ** 20));
    const ours = await bench(['-a', ns.address, '--vdi', 'cpeer', '--no-fill', ...work, '--json']);
    t.equal(ours.code, 0, ours.err);
    t.test(`sheepdog bench ${op}`, async (t) => checkLine(t, ours.out, op, 4096, 4, 2 * 2 ** 20));
  }
  const bad = await run(join(BUILD, 'sd-bench'), ['-a', ns.address, '--op', 'read']).catch(
    (e: { code?: number; stderr?: string }) => e,
  );
  t.equal((bad as { code?: number }).code, 64, 'sd-bench: bad arguments exit 64');
  ns.child.kill('SIGTERM');
  t.equal(await exited, 0, 'null-sheep exits 0 on SIGTERM');
  t.equal(ns.stderr(), '', 'null-sheep: no unknown opcode from either client');
});
