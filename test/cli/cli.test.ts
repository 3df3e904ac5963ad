// The `sheepdog` CLI as a real process (dist/lib/cli/main.js) against an embedded
// cluster: every command once, its --json shape and exit code, data through
// stdin/stdout and files. Finer cases run in-process in run.test.ts.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, truncateSync, writeSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { SheepdogClient } from '../../lib/client/client.js';
import { startMemorySheep } from '../../testing/index.js';
import type { MemorySheep } from '../../testing/types.js';
import { CLI, childEnv, ensureBuilt, sheepdog, withoutTapHooks } from './helpers.js';

const MiB = 2 ** 20;

let sheep: MemorySheep;
let client: SheepdogClient;
let nodes: string[];
const dir = mkdtempSync(join(tmpdir(), 'sheepdog-cli-'));

t.before(async () => {
  await ensureBuilt();
  sheep = await startMemorySheep({ nodes: 3, copies: 2 });
  nodes = [...sheep.addresses];
  client = new SheepdogClient({ nodes });
});
t.teardown(async () => {
  await client?.close();
  await sheep?.close();
  rmSync(dir, { recursive: true, force: true });
});

function json<T = unknown>(b: Buffer): T {
  return JSON.parse(b.toString('utf8')) as T;
}

const sorted = (a: string[]): string[] => [...a].sort();

t.test('help, usage', async (t) => {
  const [top, sub, usage] = await Promise.all([
    sheepdog(undefined, ['--help']),
    sheepdog(undefined, ['vdi', 'create', '--help']),
    sheepdog(nodes, ['vdi', 'create', 'x']),
  ]);
  t.equal(top.code, 0);
  for (const c of [
    'vdi create',
    'vdi list',
    'vdi import',
    'vdi lock list',
    'node list',
    'cluster info',
    'serve',
    'bench',
  ]) {
    t.match(top.stdout.toString(), c, `lists ${c}`);
  }
  t.match(top.stdout.toString(), /Exit codes/);
  t.equal(sub.code, 0);
  t.match(sub.stdout.toString(), /Usage: sheepdog .*vdi create NAME SIZE/);
  t.match(sub.stdout.toString(), /--copies N\|D:P/);
  t.equal(usage.code, 64, 'usage error: 64');
  t.match(usage.stderr, /^sheepdog: vdi create: missing arguments/);
  t.equal(usage.stdout.length, 0);
});

t.test('a connection refused exits 2 (dog exits 0 here)', async (t) => {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  const r = await sheepdog([`127.0.0.1:${port}`], ['vdi', 'list']);
  t.equal(r.code, 2);
  t.match(r.stderr, /^sheepdog: vdi list: cannot reach the cluster/);
  t.match(r.stderr, `127.0.0.1:${port}`);
  t.equal(r.stderr.trim().split('\n').length, 1, 'one line');
  t.equal(r.stdout.length, 0);
});

t.test('cluster info, node list, node info (--json)', async (t) => {
  const [ci, nl, ni] = await Promise.all([
    sheepdog(nodes, ['cluster', 'info', '--json']),
    sheepdog(undefined, ['node', 'list', '--json'], { env: { SHEEPDOG_NODES: nodes.join(',') } }),
    sheepdog(nodes, ['node', 'info', '--json']),
  ]);
  t.equal(ci.code, 0, ci.stderr);
  const info = json<{
    status: string;
    copies: number;
    nodes: { address: string }[];
    formatted: boolean;
    createdAt: string;
  }>(ci.stdout);
  t.match(info, { status: 'running', copies: 2, formatted: true, redundancy: '2', locking: false });
  t.same(sorted(info.nodes.map((n) => n.address)), sorted(nodes));
  t.ok(!Number.isNaN(Date.parse(info.createdAt)), 'createdAt is an ISO date');

  t.equal(nl.code, 0, 'SHEEPDOG_NODES is honoured');
  const list = json<{ address: string; host: string; port: number; vnodes: number; zone: number }[]>(nl.stdout);
  t.same(sorted(list.map((n) => n.address)), sorted(nodes));
  t.match(list[0], { host: '127.0.0.1', port: Number, vnodes: Number, zone: Number });

  t.equal(ni.code, 0);
  const cap = json<{ nodes: { address: string; size: number; free: number }[]; total: { size: number; free: number } }>(
    ni.stdout,
  );
  t.equal(cap.nodes.length, 3);
  t.equal(
    cap.total.size,
    cap.nodes.reduce((s, n) => s + n.size, 0),
  );
  t.ok(cap.total.free <= cap.total.size);
});

t.test('vdi create, snapshot, clone, list, info, resize, rollback, delete', async (t) => {
  const c = await sheepdog(nodes, ['vdi', 'create', 'cli-a', '64M', '--json']);
  t.equal(c.code, 0, c.stderr);
  t.match(json(c.stdout), {
    name: 'cli-a',
    size: 64 * MiB,
    copies: 2,
    redundancy: '2',
    snapshot: false,
    clone: false,
    vdiId: Number,
    snapId: Number,
    blockSizeShift: 22,
    createdAt: String,
    snapshotAt: null,
  });
  const exists = await sheepdog(nodes, ['vdi', 'create', 'cli-a', '1M']);
  t.equal(exists.code, 5, 'exists: 5');
  t.equal(exists.stderr, 'sheepdog: vdi create cli-a: VDI exists already (VDI_EXIST)\n');

  const snap = await sheepdog(nodes, ['vdi', 'snapshot', 'cli-a', '--tag', 'first', '--json']);
  t.equal(snap.code, 0, snap.stderr);
  t.match(json(snap.stdout), { name: 'cli-a', tag: 'first', snapshotVdiId: Number, workingVdiId: Number });

  const clone = await sheepdog(nodes, ['vdi', 'clone', 'cli-a', 'cli-c', '-s', 'first', '--json']);
  t.equal(clone.code, 0, clone.stderr);
  t.match(json(clone.stdout), { name: 'cli-c', clone: true, size: 64 * MiB });

  const [list, table, info] = await Promise.all([
    sheepdog(nodes, ['vdi', 'list', '--json']),
    sheepdog(nodes, ['vdi', 'list']),
    sheepdog(nodes, ['vdi', 'info', 'cli-a', '-s', '1', '--json']),
  ]);
  t.equal(list.code, 0);
  t.same(
    json<{ name: string; snapshot: boolean; tag: string }[]>(list.stdout).map(
      (v) => `${v.name}${v.snapshot ? `@${v.tag}` : ''}`,
    ),
    ['cli-a@first', 'cli-a', 'cli-c'],
    'sorted by name, snapshots first',
  );
  t.match(table.stdout.toString(), /Name +Id +Size +Used +Shared +Creation time +VDI id +Copies +Tag/);
  t.match(table.stdout.toString(), /^s +cli-a +1 +64\.0 MiB/m, 'snapshot row marked s');
  t.match(table.stdout.toString(), /^c +cli-c +/m, 'clone row marked c');
  t.match(json(info.stdout), { name: 'cli-a', snapshot: true, tag: 'first', snapId: 1 }, 'a snapshot by id');

  t.equal((await sheepdog(nodes, ['vdi', 'resize', 'cli-a', '128M'])).code, 0);
  t.equal((await client.getVdi('cli-a')).size, 128 * MiB);

  const v = await client.openVdi('cli-a');
  await v.write(Buffer.alloc(4096, 1), 0);
  await v.close();
  const rb = await sheepdog(nodes, ['vdi', 'rollback', 'cli-a', '--snapshot', 'first', '--json']);
  t.equal(rb.code, 0, rb.stderr);
  t.match(json(rb.stdout), { name: 'cli-a', size: 64 * MiB });
  const after = await client.openVdi('cli-a');
  t.ok((await after.read(0, 4096)).equals(Buffer.alloc(4096)), 'rolled back');
  await after.close();

  t.equal((await sheepdog(nodes, ['vdi', 'delete', 'cli-a', '--snapshot', 'first'])).code, 0);
  t.equal((await sheepdog(nodes, ['vdi', 'delete', 'cli-c'])).code, 0);
  const gone = await sheepdog(nodes, ['vdi', 'delete', 'nosuch']);
  t.equal(gone.code, 4, 'not found: 4');
  t.equal(gone.stderr, 'sheepdog: vdi delete nosuch: No VDI found (NO_VDI)\n');
  t.equal(gone.stdout.length, 0);
  t.same(
    (await client.listVdis()).map((x) => x.name),
    ['cli-a'],
  );
  await client.deleteVdi('cli-a');
});

t.test('vdi write / vdi read: a random 10 MiB file through stdin and stdout', async (t) => {
  await client.createVdi('rw', 16 * MiB);
  const data = randomBytes(10 * MiB);
  const w = await sheepdog(nodes, ['vdi', 'write', 'rw'], { input: data });
  t.equal(w.code, 0, w.stderr);
  const r = await sheepdog(nodes, ['vdi', 'read', 'rw', '0', '10M']);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout.length, data.length);
  t.ok(r.stdout.equals(data), 'byte for byte');
  await client.deleteVdi('rw');
});

t.test('vdi import / vdi export: sparse round trip through files', async (t) => {
  const src = join(dir, 'image.raw');
  const size = 24 * MiB + 12345;
  const fd = openSync(src, 'w');
  for (const [off, len] of [
    [0, MiB],
    [5 * MiB + 77, 3 * MiB],
    [20 * MiB, 64 * 1024],
  ] as const) {
    writeSync(fd, randomBytes(len), 0, len, off);
  }
  closeSync(fd);
  truncateSync(src, size);

  const imp = await sheepdog(nodes, ['vdi', 'import', 'img', src, '--json']);
  t.equal(imp.code, 0, imp.stderr);
  t.same(json(imp.stdout), { name: 'img', file: src, size, bytes: size, created: true });
  const info = await client.getVdi('img');
  t.equal(info.size, size, 'created with the file size');
  t.equal(info.used, 4 * 4 * MiB, 'all-zero objects were not written (4 of 7 hold data)');

  const dst = join(dir, 'export.raw');
  const exp = await sheepdog(nodes, ['vdi', 'export', 'img', dst, '--json']);
  t.equal(exp.code, 0, exp.stderr);
  const er = json<{ name: string; file: string; size: number; written: number }>(exp.stdout);
  t.match(er, { name: 'img', file: dst, size });
  t.ok(er.written < 5 * MiB, `only data blocks written (${er.written} bytes)`);
  const a = readFileSync(src);
  const b = readFileSync(dst);
  t.equal(b.length, size, 'file size set');
  t.ok(a.equals(b), 'round trip byte for byte');
  const st = statSync(dst);
  t.ok(st.blocks * 512 < size / 2, `export is sparse (${st.blocks * 512} bytes allocated of ${size})`);
  await client.deleteVdi('img');
});

t.test('vdi setattr / getattr', async (t) => {
  await client.createVdi('attrs', MiB);
  t.equal(
    (await sheepdog(nodes, ['vdi', 'setattr', 'attrs', 'owner'], { input: 'alice' })).code,
    0,
    'value from stdin',
  );
  const [raw, js, missing] = await Promise.all([
    sheepdog(nodes, ['vdi', 'getattr', 'attrs', 'owner']),
    sheepdog(nodes, ['vdi', 'getattr', 'attrs', 'owner', '--json']),
    sheepdog(nodes, ['vdi', 'getattr', 'attrs', 'nope']),
  ]);
  t.equal(raw.stdout.toString(), 'alice', 'raw value');
  t.same(json(js.stdout), { name: 'attrs', key: 'owner', value: 'alice' });
  t.equal(missing.code, 4, 'missing attribute: 4');
  t.match(missing.stderr, /\(NO_OBJ\)\n$/);
  await client.deleteVdi('attrs');
});

t.test('vdi lock list / unlock on a locking cluster', async (t) => {
  const locking = await startMemorySheep({ nodes: 2, copies: 2, lock: true });
  const lc = new SheepdogClient({ nodes: [...locking.addresses] });
  t.teardown(async () => {
    await lc.close();
    await locking.close();
  });
  const ln = [...locking.addresses];
  await lc.createVdi('locked', MiB);
  const h = await lc.openVdi('locked', { lock: true });
  const held = await sheepdog(ln, ['vdi', 'lock', 'list', '--json']);
  t.equal(held.code, 0, held.stderr);
  const locks = json<{ name: string; state: string; owners: string[]; vdiId: number; tag: string; snapId: number }[]>(
    held.stdout,
  );
  t.equal(locks.length, 1);
  t.match(locks[0], { name: 'locked', state: 'locked', vdiId: Number, tag: '', snapId: Number, owners: Array });
  t.equal((await sheepdog(ln, ['vdi', 'lock', 'unlock', 'locked'])).code, 0);
  t.same(await lc.listLocks(), [], 'released');
  await h.close();
});

t.test('serve: runs a cluster in the foreground until SIGTERM', async (t) => {
  const env = childEnv();
  const [cmd, argv] = withoutTapHooks(
    process.execPath,
    [CLI, 'serve', '--port', '0', '--nodes', '2', '--copies', '2', '--json'],
    env,
  );
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], env });
  let out = '';
  let err = '';
  child.stderr.on('data', (b: Buffer) => {
    err += b.toString();
  });
  const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
  const addresses = await new Promise<string[]>((resolve, reject) => {
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      try {
        resolve((JSON.parse(out) as { addresses: string[] }).addresses);
      } catch {
        // not complete yet
      }
    });
    child.on('close', () => reject(new Error(`serve exited early: ${err}`)));
  });
  t.equal(addresses.length, 2);
  const ci = await sheepdog(addresses, ['cluster', 'info', '--json']);
  t.equal(ci.code, 0, ci.stderr);
  t.match(json(ci.stdout), { status: 'running', copies: 2 });
  child.kill('SIGTERM');
  t.equal(await exited, 0, 'clean exit on SIGTERM');
  t.match(err, /serving 2 nodes/);
  t.match(err, /SIGTERM: stopping/);
});

t.test('bench is wired to cli/bench (or says it is absent)', async (t) => {
  const r = await sheepdog(undefined, ['bench', '--help'], { timeout: 30_000 });
  if (r.code === 0) t.pass('bench module present');
  else {
    t.equal(r.code, 1, r.stderr);
    t.match(r.stderr, /not part of this build/);
  }
});

t.test('README: the backgrounded serve is stopped by the kill it shows', async (t) => {
  const readme = readFileSync(join(CLI, '..', '..', '..', 'README.md'), 'utf8');
  const start = readme.split('\n').find((l) => / serve &/.test(l)) ?? '';
  t.notMatch(start, /^npx /, 'not `npx sheepdog serve &`: $! would be npx');
  const m = /^(\S+) serve & (\w+)=\$!/.exec(start);
  t.ok(m, start);
  const stop = readme.split('\n').find((l) => l.startsWith(`kill $${m?.[2]}`));
  t.ok(stop, 'a kill of the saved pid');
  // Run the README's lines, on an ephemeral port, with the bin where npm puts it.
  const dir = mkdtempSync(join(tmpdir(), 'sheepdog-readme-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const { chmodSync, mkdirSync, symlinkSync } = await import('node:fs');
  mkdirSync(join(dir, 'node_modules', '.bin'), { recursive: true });
  chmodSync(CLI, 0o755); // as npm install leaves a bin
  symlinkSync(CLI, join(dir, m?.[1] ?? 'x'));
  const script =
    `${m?.[1]} serve --port 0 --nodes 1 > addr & ${m?.[2]}=$!\n` +
    `i=0; while [ ! -s addr ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done\n` +
    `${stop?.split('#')[0] ?? ''}\nwait $${m?.[2]}; echo "rc=$?"; cat addr`;
  const out = await new Promise<string>((resolve, reject) => {
    const sh = spawn('sh', ['-c', script], { cwd: dir, env: childEnv() });
    let o = '';
    sh.stdout.on('data', (b: Buffer) => (o += b.toString()));
    sh.on('error', reject);
    sh.on('close', () => resolve(o));
  });
  t.match(out, /^rc=0\n127\.0\.0\.1:\d+\n$/, 'the server itself got the signal and exited 0');
  const addr = /127\.0\.0\.1:\d+/.exec(out)?.[0] ?? '';
  const r = await sheepdog([addr], ['node', 'list']);
  t.equal(r.code, 2, 'nothing is left on the port');
});
