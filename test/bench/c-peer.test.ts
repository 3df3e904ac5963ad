// The C peer of the benchmarks (bench/c/): built against an installed
// libsheepdog only when SHEEPDOG_PREFIX names one, otherwise skipped (CI has
// none). Builds it, starts null-sheep on a free port, and runs a short
// workload with both sd-bench (libsheepdog) and `sheepdog bench` (runBench,
// in this process, from the .ts sources) against it: both print one JSON line
// with the contract keys, in order, and did real I/O.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
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
function startNullSheep(extra: string[] = []): Promise<{ child: ChildProcess; address: string; stderr: () => string }> {
  const child = spawn(join(BUILD, 'null-sheep'), ['--port', '0', '--vdi-size', '256M', ...extra], {
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

/** sd_hash_vdi: FNV-1a 64 of the name, low 24 bits. */
function sdHashVdi(name: string): number {
  let h = 0xcbf29ce484222325n;
  for (const c of Buffer.from(name)) h = ((h ^ BigInt(c)) * 0x100000001b3n) & 0xffffffffffffffffn;
  return Number(h & 0xffffffn);
}

/** Pipelined requests, written in small pieces: every reply in full, in order. */
async function pipelined(t: Test, address: string): Promise<void> {
  const [host, port] = address.split(':');
  const hdr = (op: number, flags: number, id: number, len: number, oid: bigint, off = 0): Buffer => {
    const h = Buffer.alloc(48);
    h.writeUInt8(2, 0);
    h.writeUInt8(op, 1);
    h.writeUInt16LE(flags, 2);
    h.writeUInt32LE(id, 8);
    h.writeUInt32LE(len, 12);
    h.writeBigUInt64LE(oid, 16);
    h.writeUInt32LE(off, 40);
    return h;
  };
  const name = Buffer.alloc(256);
  name.write('cpeer-pipe');
  const MiB4 = 4 * 2 ** 20;
  const payload = Buffer.alloc(MiB4, 0x5a);
  const reqs = Buffer.concat([
    hdr(0x14, 1, 1, 256, 0n), // GET_VDI_INFO
    name,
    hdr(0x03, 1, 2, MiB4, 7n << 32n), // WRITE_OBJ, 4 MiB payload
    payload,
    hdr(0x02, 0, 3, 4096, 7n << 32n, 8192), // READ_OBJ of a data object
    hdr(0x02, 0, 4, MiB4, (7n << 32n) | 1n), // READ_OBJ, 4 MiB
  ]);
  const sock = connect(Number(port), host);
  const chunks: Buffer[] = [];
  const want = 48 + 48 + 48 + 4096 + 48 + MiB4;
  const got = new Promise<Buffer>((resolve, reject) => {
    let n = 0;
    sock.on('data', (b: Buffer) => {
      chunks.push(b);
      n += b.length;
      if (n >= want) resolve(Buffer.concat(chunks));
    });
    sock.on('error', reject);
    sock.on('close', () => reject(new Error(`closed after ${n} of ${want} bytes`)));
  });
  for (let i = 0; i < reqs.length; i += 7001) sock.write(reqs.subarray(i, i + 7001));
  const r = await got;
  sock.destroy();
  t.equal(r.length, want, 'nothing more than the replies');
  let at = 0;
  const next = (id: number, len: number): number => {
    t.equal(r.readUInt32LE(at + 8), id, `reply ${id} in order`);
    t.equal(r.readUInt32LE(at + 12), len, `reply ${id}: data_length ${len}`);
    t.equal(r.readUInt32LE(at + 16), 0, `reply ${id}: SUCCESS`);
    const h = at;
    at += 48 + len;
    return h;
  };
  const info = next(1, 0);
  t.equal(r.readUInt32LE(info + 24), sdHashVdi('cpeer-pipe'), 'vid = sheep hash of the name');
  next(2, 0);
  const small = next(3, 4096);
  t.ok(
    r.subarray(small + 48, small + 48 + 4096).every((b) => b === 0),
    'data objects read as zeros',
  );
  next(4, MiB4);
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
  await t.test('null-sheep (threads): pipelined requests written in small pieces, answered in full', (t) =>
    pipelined(t, ns.address),
  );
  await t.test('null-sheep --epoll: the same', async (t) => {
    const ep = await startNullSheep(['--epoll']);
    t.teardown(() => ep.child.kill('SIGKILL'));
    await pipelined(t, ep.address);
    t.equal(ep.stderr(), '', 'nothing on stderr');
  });

  await t.test('sd-bench: the sheep going away mid-run is an error (exit 1, a message), not a hang', async (t) => {
    const gone = await startNullSheep(['-vv']);
    t.teardown(() => gone.child.kill('SIGKILL'));
    const args = ['-a', gone.address, '--vdi', 'cpeer', '--op', 'read', '--pattern', 'seq', '--bs', '4K', '--qd', '2'];
    const bench = spawn(join(BUILD, 'sd-bench'), [...args, '--seconds', '20', '--timeout', '10'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    bench.stderr.on('data', (b: Buffer) => (err += b.toString()));
    const done = new Promise<number | null>((r) => bench.once('exit', (code) => r(code)));
    // -vv logs every request: kill the sheep once data reads are flowing.
    await new Promise<void>((resolve) => {
      const poll = setInterval(() => {
        if (/op 0x02 .* oid 00/.test(gone.stderr())) {
          clearInterval(poll);
          resolve();
        }
      }, 10);
    });
    gone.child.kill('SIGKILL');
    t.equal(await done, 1, 'exit 1');
    // The watchdog sees the EOF, or a request written meanwhile fails first
    // (EPIPE), or libsheepdog's reply thread reads a reset (EIO to a caller).
    const msg = /^sd-bench: (127\.0\.0\.1:\d+ closed the connection|read at offset \d+: I\/O error)/;
    t.match(err, msg, 'a message');
  });

  const bad = await run(join(BUILD, 'sd-bench'), ['-a', ns.address, '--op', 'read']).catch(
    (e: { code?: number; stderr?: string }) => e,
  );
  t.equal((bad as { code?: number }).code, 64, 'sd-bench: bad arguments exit 64');
  ns.child.kill('SIGTERM');
  t.equal(await exited, 0, 'null-sheep exits 0 on SIGTERM');
  t.equal(ns.stderr(), '', 'null-sheep: no unknown opcode from either client');
});
