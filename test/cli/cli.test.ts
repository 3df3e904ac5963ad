// The `sheepdog` CLI as a real process (dist/lib/cli/main.js) against an embedded cluster.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { SheepdogClient } from '../../lib/client.js';
import { startMemorySheep } from '../../lib/sheep/index.js';
import type { MemorySheep } from '../../lib/sheep/types.js';
import { CLI, ensureBuilt, sheepdog } from './helpers.js';

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

t.test('help and version', async (t) => {
  const top = await sheepdog(undefined, ['--help']);
  t.equal(top.code, 0);
  const text = top.stdout.toString();
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
    t.match(text, c, `lists ${c}`);
  }
  t.match(text, /Exit codes/);
  const sub = await sheepdog(undefined, ['vdi', 'create', '--help']);
  t.equal(sub.code, 0);
  t.match(sub.stdout.toString(), /Usage: sheepdog .*vdi create NAME SIZE/);
  t.match(sub.stdout.toString(), /--copies N\|D:P/);
  const group = await sheepdog(undefined, ['vdi', '--help']);
  t.equal(group.code, 0);
  t.match(group.stdout.toString(), /vdi snapshot NAME/);
  const v = await sheepdog(undefined, ['--version']);
  t.equal(v.code, 0);
  t.match(v.stdout.toString(), /^sheepdog \d+\.\d+\.\d+/);
});

t.test('usage errors exit 64', async (t) => {
  for (const args of [
    [],
    ['frobnicate'],
    ['vdi'],
    ['vdi', 'create', 'x'],
    ['vdi', 'create', 'x', '1Q'],
    ['vdi', 'list', '--bogus'],
  ]) {
    const r = await sheepdog(nodes, args);
    t.equal(r.code, 64, `${args.join(' ') || '(nothing)'}: exit 64`);
    t.match(r.stderr, /^sheepdog/, 'message on stderr');
    t.equal(r.stdout.length, 0, 'nothing on stdout');
  }
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
});

t.test('cluster info, node list, node info', async (t) => {
  const ci = await sheepdog(nodes, ['cluster', 'info', '--json']);
  t.equal(ci.code, 0, ci.stderr);
  const info = json<{
    status: string;
    copies: number;
    nodes: { address: string }[];
    formatted: boolean;
    createdAt: string;
  }>(ci.stdout);
  t.equal(info.status, 'running');
  t.equal(info.copies, 2);
  t.equal(info.formatted, true);
  t.same(
    info.nodes.map((n) => n.address),
    nodes,
  );
  t.ok(!Number.isNaN(Date.parse(info.createdAt)), 'createdAt is an ISO date');
  const text = await sheepdog(nodes, ['cluster', 'info']);
  t.match(text.stdout.toString(), /Cluster status: +running/);

  const nl = await sheepdog(nodes, ['node', 'list', '--json']);
  t.equal(nl.code, 0);
  const list = json<{ address: string; host: string; port: number; vnodes: number; zone: number }[]>(nl.stdout);
  t.same(
    list.map((n) => n.address),
    nodes,
  );
  t.type(list[0]?.port, 'number');
  t.match((await sheepdog(nodes, ['node', 'list'])).stdout.toString(), /Id +Host:Port +V-Nodes +Zone/);

  const ni = await sheepdog(nodes, ['node', 'info', '--json']);
  const cap = json<{ nodes: { address: string; size: number; free: number }[]; total: { size: number; free: number } }>(
    ni.stdout,
  );
  t.equal(cap.nodes.length, 3);
  t.equal(
    cap.total.size,
    cap.nodes.reduce((s, n) => s + n.size, 0),
  );
  t.match((await sheepdog(nodes, ['node', 'info'])).stdout.toString(), /Total/);

  const env = await sheepdog(undefined, ['node', 'list', '--json'], { env: { SHEEPDOG_NODES: nodes.join(',') } });
  t.equal(env.code, 0, 'SHEEPDOG_NODES is honoured');
});

t.test('vdi lifecycle: create, list, info, snapshot, clone, rollback, resize, delete', async (t) => {
  const c = await sheepdog(nodes, ['vdi', 'create', 'cli-a', '64M', '--json']);
  t.equal(c.code, 0, c.stderr);
  const created = json<{
    name: string;
    size: number;
    copies: number;
    vdiId: number;
    snapshot: boolean;
    createdAt: string;
  }>(c.stdout);
  t.match(created, { name: 'cli-a', size: 64 * MiB, copies: 2, snapshot: false });
  t.type(created.vdiId, 'number');

  const quiet = await sheepdog(nodes, ['vdi', 'create', 'cli-b', '1G', '-c', '3', '-z', '21']);
  t.equal(quiet.code, 0);
  t.equal(quiet.stdout.length, 0, 'silent without --json');
  const exists = await sheepdog(nodes, ['vdi', 'create', 'cli-a', '1M']);
  t.equal(exists.code, 5, 'exists: 5');
  t.equal(exists.stderr, 'sheepdog: vdi create cli-a: VDI exists already (VDI_EXIST)\n');

  const snap = await sheepdog(nodes, ['vdi', 'snapshot', 'cli-a', '--tag', 'first', '--json']);
  t.equal(snap.code, 0, snap.stderr);
  t.match(json(snap.stdout), { name: 'cli-a', tag: 'first' });
  t.equal((await sheepdog(nodes, ['vdi', 'snapshot', 'cli-a'])).code, 64, 'snapshot needs --tag');

  const clone = await sheepdog(nodes, ['vdi', 'clone', 'cli-a', 'cli-c', '-s', 'first', '--json']);
  t.equal(clone.code, 0, clone.stderr);
  t.match(json(clone.stdout), { name: 'cli-c', clone: true, size: 64 * MiB });
  const noTag = await sheepdog(nodes, ['vdi', 'clone', 'cli-a', 'cli-d', '--snapshot', 'nope']);
  t.equal(noTag.code, 4, 'missing tag: 4');
  t.match(noTag.stderr, /^sheepdog: vdi clone cli-a: .*\(NO_TAG\)\n$/);

  const list = await sheepdog(nodes, ['vdi', 'list', '--json']);
  t.equal(list.code, 0);
  const vdis = json<{ name: string; snapshot: boolean; tag: string; snapId: number }[]>(list.stdout);
  const mine = vdis.filter((v) => v.name.startsWith('cli-'));
  t.same(
    mine.map((v) => `${v.name}${v.snapshot ? `@${v.tag}` : ''}`),
    ['cli-a@first', 'cli-a', 'cli-b', 'cli-c'],
    'sorted by name, snapshots first',
  );
  const table = (await sheepdog(nodes, ['vdi', 'list'])).stdout.toString();
  t.match(table, /Name +Id +Size +Used +Shared +Creation time +VDI id +Copies +Tag/);
  t.match(table, /^s cli-a +1 +64\.0 MiB/m, 'snapshot row marked s');
  t.match(table, /^c cli-c /m, 'clone row marked c');
  const one = json<unknown[]>((await sheepdog(nodes, ['vdi', 'list', 'cli-b', '--json'])).stdout);
  t.equal(one.length, 1, 'list NAME filters');

  const info = await sheepdog(nodes, ['vdi', 'info', 'cli-b', '--json']);
  t.match(json(info.stdout), { name: 'cli-b', size: 2 ** 30, copies: 3, blockSizeShift: 21 });
  t.match((await sheepdog(nodes, ['vdi', 'info', 'cli-a', '-s', 'first'])).stdout.toString(), /Type: +snapshot/);
  t.match(
    (await sheepdog(nodes, ['vdi', 'info', 'cli-a', '-s', '1', '--json'])).stdout.toString(),
    /"tag": "first"/,
    'snapshot by id',
  );

  t.equal((await sheepdog(nodes, ['vdi', 'resize', 'cli-a', '128M'])).code, 0);
  t.equal((await client.getVdi('cli-a')).size, 128 * MiB);
  const shrink = await sheepdog(nodes, ['vdi', 'resize', 'cli-a', '1M']);
  t.equal(shrink.code, 64, 'shrinking is a usage error');
  t.match(shrink.stderr, /shrinking/);

  const v = await client.openVdi('cli-a');
  await v.write(Buffer.alloc(4096, 1), 0);
  await v.close();
  const rb = await sheepdog(nodes, ['vdi', 'rollback', 'cli-a', '--snapshot', 'first', '--json']);
  t.equal(rb.code, 0, rb.stderr);
  t.match(json(rb.stdout), { name: 'cli-a', size: 64 * MiB });
  t.ok(
    await client.openVdi('cli-a').then(async (x) => (await x.read(0, 4096)).equals(Buffer.alloc(4096))),
    'rolled back',
  );

  t.equal((await sheepdog(nodes, ['vdi', 'delete', 'cli-a', '--snapshot', 'first'])).code, 0);
  for (const n of ['cli-a', 'cli-b', 'cli-c'])
    t.equal((await sheepdog(nodes, ['vdi', 'delete', n])).code, 0, `delete ${n}`);
  const gone = await sheepdog(nodes, ['vdi', 'delete', 'nosuch']);
  t.equal(gone.code, 4, 'not found: 4');
  t.equal(gone.stderr, 'sheepdog: vdi delete nosuch: No VDI found (NO_VDI)\n');
  t.same(json((await sheepdog(nodes, ['vdi', 'list', '--json'])).stdout), []);
});

t.test('vdi write / vdi read: a random 10 MiB file through stdin and stdout', async (t) => {
  t.equal((await sheepdog(nodes, ['vdi', 'create', 'rw', '16M'])).code, 0);
  const data = randomBytes(10 * MiB);
  const w = await sheepdog(nodes, ['vdi', 'write', 'rw'], { input: data });
  t.equal(w.code, 0, w.stderr);
  const r = await sheepdog(nodes, ['vdi', 'read', 'rw', '0', '10M']);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout.length, data.length);
  t.ok(r.stdout.equals(data), 'byte for byte');
  const all = await sheepdog(nodes, ['vdi', 'read', 'rw']);
  t.equal(all.stdout.length, 16 * MiB, 'no LEN: to the end');
  t.ok(all.stdout.subarray(10 * MiB).equals(Buffer.alloc(6 * MiB)), 'unwritten part reads zeros');

  // OFFSET and LEN: only LEN bytes of the input are written.
  t.equal((await sheepdog(nodes, ['vdi', 'write', 'rw', '1K', '5'], { input: 'hello, world' })).code, 0);
  t.equal(
    (await sheepdog(nodes, ['vdi', 'read', 'rw', '1024', '12'])).stdout.toString('latin1'),
    `hello${data.subarray(1029, 1036).toString('latin1')}`,
  );
  const past = await sheepdog(nodes, ['vdi', 'read', 'rw', '15M', '2M']);
  t.equal(past.code, 64, 'past the end');
  const tooMuch = await sheepdog(nodes, ['vdi', 'write', 'rw', '15M'], { input: Buffer.alloc(2 * MiB, 1) });
  t.equal(tooMuch.code, 64, 'input past the end');
  const missing = await sheepdog(nodes, ['vdi', 'read', 'nope']);
  t.equal(missing.code, 4);
  t.equal(missing.stdout.length, 0);
  await client.deleteVdi('rw');
});

t.test('vdi import / vdi export: sparse round trip', async (t) => {
  const src = join(dir, 'image.raw');
  const size = 24 * MiB + 12345;
  const fd = openSync(src, 'w');
  const pieces: [number, Buffer][] = [
    [0, randomBytes(MiB)],
    [5 * MiB + 77, randomBytes(3 * MiB)],
    [20 * MiB, randomBytes(64 * 1024)],
  ];
  for (const [off, b] of pieces) writeSync(fd, b, 0, b.length, off);
  closeSync(fd);
  writeFileSync(join(dir, 'pad'), '');
  const { truncateSync } = await import('node:fs');
  truncateSync(src, size);

  const imp = await sheepdog(nodes, ['vdi', 'import', 'img', src, '--json']);
  t.equal(imp.code, 0, imp.stderr);
  t.match(json(imp.stdout), { name: 'img', size, bytes: size, created: true });
  const info = await client.getVdi('img');
  t.equal(info.size, size, 'created with the file size');
  t.ok(info.used <= 7 * 4 * MiB, `zero blocks skipped (${info.used} bytes used)`);

  const dst = join(dir, 'export.raw');
  const exp = await sheepdog(nodes, ['vdi', 'export', 'img', dst, '--json']);
  t.equal(exp.code, 0, exp.stderr);
  const er = json<{ size: number; written: number }>(exp.stdout);
  t.equal(er.size, size);
  t.ok(er.written < 5 * MiB, `only data written (${er.written} bytes)`);
  const a = readFileSync(src);
  const b = readFileSync(dst);
  t.equal(b.length, size, 'file size set');
  t.ok(a.equals(b), 'round trip byte for byte');
  const st = statSync(dst);
  t.ok(st.blocks * 512 < size / 2, `export is sparse (${st.blocks * 512} bytes allocated of ${size})`);

  // Into an existing VDI; too large a file; export of a snapshot; stdout export.
  t.equal((await sheepdog(nodes, ['vdi', 'create', 'small', '1M'])).code, 0);
  const big = await sheepdog(nodes, ['vdi', 'import', 'small', src]);
  t.equal(big.code, 64, 'file larger than the VDI');
  t.match(big.stderr, /larger than VDI small/);
  t.equal((await client.getVdi('small')).size, MiB, 'existing VDI untouched');
  const missingFile = await sheepdog(nodes, ['vdi', 'import', 'x', join(dir, 'nope.raw')]);
  t.equal(missingFile.code, 4);
  t.same(json((await sheepdog(nodes, ['vdi', 'list', 'x', '--json'])).stdout), [], 'nothing created');

  await client.snapshotVdi('img', 'snap');
  const v = await client.openVdi('img');
  await v.write(Buffer.alloc(MiB, 0xff), 0);
  await v.close();
  const snapOut = join(dir, 'snap.raw');
  t.equal((await sheepdog(nodes, ['vdi', 'export', 'img', snapOut, '--snapshot', 'snap'])).code, 0);
  t.ok(readFileSync(snapOut).equals(a), 'snapshot export has the old data');
  const stdoutExport = await sheepdog(nodes, ['vdi', 'export', 'img', '-', '-s', 'snap']);
  t.ok(stdoutExport.stdout.equals(a), 'export to stdout');
  await client.deleteVdi('img', { snapshot: 'snap' });
  await client.deleteVdi('img');
  await client.deleteVdi('small');
});

t.test('vdi setattr / getattr', async (t) => {
  await client.createVdi('attrs', MiB);
  t.equal((await sheepdog(nodes, ['vdi', 'setattr', 'attrs', 'owner', 'alice'])).code, 0);
  const g = await sheepdog(nodes, ['vdi', 'getattr', 'attrs', 'owner']);
  t.equal(g.stdout.toString(), 'alice', 'raw value');
  t.same(json((await sheepdog(nodes, ['vdi', 'getattr', 'attrs', 'owner', '--json'])).stdout), {
    name: 'attrs',
    key: 'owner',
    value: 'alice',
  });
  t.equal((await sheepdog(nodes, ['vdi', 'setattr', 'attrs', 'blob'], { input: 'from stdin' })).code, 0);
  t.equal((await sheepdog(nodes, ['vdi', 'getattr', 'attrs', 'blob'])).stdout.toString(), 'from stdin');
  t.equal((await sheepdog(nodes, ['vdi', 'setattr', 'attrs', 'owner', 'bob', '-x'])).code, 5, 'exclusive: exists');
  t.equal((await sheepdog(nodes, ['vdi', 'setattr', 'attrs', 'owner', '--delete'])).code, 0);
  const gone = await sheepdog(nodes, ['vdi', 'getattr', 'attrs', 'owner']);
  t.equal(gone.code, 4, 'deleted attribute: not found');
  t.match(gone.stderr, /NO_OBJ/);
  t.equal((await sheepdog(nodes, ['vdi', 'getattr', 'nope', 'k'])).code, 4, 'missing VDI');
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
  t.same(json((await sheepdog(ln, ['vdi', 'lock', 'list', '--json'])).stdout), [], 'none held');
  const h = await lc.openVdi('locked', { lock: true });
  const held = json<{ name: string; state: string; owners: string[] }[]>(
    (await sheepdog(ln, ['vdi', 'lock', 'list', '--json'])).stdout,
  );
  t.equal(held.length, 1);
  t.match(held[0], { name: 'locked', state: 'locked' });
  t.match((await sheepdog(ln, ['vdi', 'lock', 'list'])).stdout.toString(), /locked +.* locked/);
  t.equal((await sheepdog(ln, ['vdi', 'lock', 'unlock', 'locked'])).code, 0);
  t.same(json((await sheepdog(ln, ['vdi', 'lock', 'list', '--json'])).stdout), [], 'released');
  await h.close();
});

t.test('serve: runs a cluster in the foreground until SIGTERM', async (t) => {
  const child = spawn(process.execPath, [CLI, 'serve', '--port', '0', '--nodes', '2', '--copies', '2', '--json'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
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
  t.equal((await sheepdog(addresses, ['vdi', 'create', 'served', '1G'])).code, 0);
  child.kill('SIGTERM');
  t.equal(await exited, 0, 'clean exit on SIGTERM');
  t.match(err, /serving 2 nodes/);
  t.match(err, /stopping/);
  const after = await sheepdog(addresses, ['cluster', 'info']);
  t.equal(after.code, 2, 'the cluster is gone');

  const bad = await sheepdog(undefined, ['serve', '--nodes', 'many']);
  t.equal(bad.code, 64);
});

t.test('bench is wired to lib/cli/bench (or says it is absent)', async (t) => {
  const r = await sheepdog(undefined, ['bench', '--help'], { timeout: 30_000 });
  if (r.code === 0) t.pass('bench module present');
  else {
    t.equal(r.code, 1);
    t.match(r.stderr, /not part of this build/);
  }
});
