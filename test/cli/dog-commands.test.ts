// Issue 14, "Missing": the dog commands this CLI lacked, against the embedded
// sheep (port 0) and the outputs of a real sheep 1.0.1 cluster
// (test/fixtures/dog-outputs/). The embedded sheep gives VDIs the vids sheep
// gives them (FNV-1a of the name), so where the data has the same shape the
// outputs are compared line for line; node addresses and times differ.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import t from 'tap';
import { Flag, Result } from '../../protocol/constants.js';
import { objRequest } from '../../protocol/header.js';
import { Op } from '../../protocol/opcodes.js';
import { vidToDataOid, vidToVdiOid } from '../../protocol/oid.js';
import { buildRing, oidToNodes } from '../../protocol/placement.js';
import { type CliIO, runCli } from '../../cli/run.js';
import { ExitCode } from '../../cli/exit.js';
import { drawForest, vdiForest } from '../../cli/commands/vdi.js';
import type { SheepdogClient, VdiInfo } from '../../lib/client/client.js';
import type { MemorySheep } from '../../testing/types.js';
import { MiB, TiB, withCluster } from '../helpers/cluster.js';
import { ROOT } from './helpers.js';

interface Run {
  code: number;
  out: string;
  err: string;
}

async function run(args: string[]): Promise<Run> {
  let out = '';
  let err = '';
  const stdout = new PassThrough();
  stdout.on('data', (b: Buffer) => (out += b.toString()));
  const stderr = new PassThrough();
  stderr.on('data', (b: Buffer) => (err += b.toString()));
  const io: CliIO = { stdin: Readable.from([]), stdout, stderr, env: {} };
  const code = await runCli(args, io);
  await new Promise((r) => setImmediate(r));
  return { code, out, err };
}

/** The sections of a fixture file: command → stdout. */
function fixture(file: string): Map<string, { out: string; err: string; exit: number }> {
  const text = readFileSync(join(ROOT, 'test', 'fixtures', 'dog-outputs', file), 'utf8');
  const m = new Map<string, { out: string; err: string; exit: number }>();
  for (const sec of text.split(/\n(?=# (?!stderr:|exit:|\|))/)) {
    const lines = sec.split('\n');
    const cmd = (lines[0] ?? '').replace(/^# /, '');
    const out: string[] = [];
    const err: string[] = [];
    let exit = -1;
    let inErr = false;
    for (const l of lines.slice(1)) {
      if (l === '# stderr:') inErr = true;
      else if (l.startsWith('# exit: ')) exit = Number(l.slice(8));
      else if (inErr && l.startsWith('# | ')) err.push(l.slice(4));
      else if (!inErr && exit < 0) out.push(l);
    }
    if (!m.has(cmd)) m.set(cmd, { out: out.join('\n') + (out.length ? '\n' : ''), err: err.join('\n'), exit });
  }
  return m;
}

function dog(file: string, cmd: string): { out: string; err: string; exit: number } {
  const s = fixture(file).get(cmd);
  if (!s) throw new Error(`no section "${cmd}" in ${file}`);
  return s;
}

/** The fixture's VDIs: alpha 100M with 21 objects, snapshot snap1, COW writes to 0 and 1, a clone of snap1 with idx 3 written, beta 1G, hyper 5T with idx 0 and 1179648. */
async function fixtureVdis(client: SheepdogClient): Promise<void> {
  await client.createVdi('alpha', 100 * MiB);
  await client.createVdi('beta', 1024 * MiB);
  await client.createVdi('hyper', 5 * TiB, { hyper: true });
  let v = await client.openVdi('alpha');
  await v.write(Buffer.alloc(84 * MiB, 'sheepdog-fixture-alpha\n'), 0);
  await v.close();
  await client.snapshotVdi('alpha', 'snap1');
  v = await client.openVdi('alpha');
  await v.write(Buffer.from('alpha after snap1\n'), 0);
  await v.write(Buffer.from('alpha idx 1\n'), 4 * MiB);
  await v.close();
  await client.cloneVdi('alpha', 'snap1', 'alpha-clone');
  v = await client.openVdi('alpha-clone');
  await v.write(Buffer.from('clone idx 3\n'), 12 * MiB);
  await v.close();
  v = await client.openVdi('hyper');
  await v.write(Buffer.from('hyper 0\n'), 0);
  await v.write(Buffer.from('hyper far\n'), 1179648 * 4 * MiB);
  await v.close();
}

/** Byte equality (tap's deep compare of 4 MiB arrays is slow). */
const same = (x: Uint8Array | undefined, y: Uint8Array | undefined): boolean =>
  x !== undefined && y !== undefined && Buffer.from(x).equals(y);

/** Replace the ctime column of `vdi list -r` lines. */
const maskCtime = (s: string): string => s.replace(/^(\S+ \S+ \d+ \d+ \d+ \d+) \d+ /gm, '$1 CTIME ');

/** Send a peer op to node i (the test's client has every node as a gateway). */
async function peer(
  client: SheepdogClient,
  sheep: MemorySheep,
  i: number,
  opcode: number,
  oid: bigint,
  data?: Uint8Array,
): Promise<number> {
  const epoch = (await client.clusterInfo()).epoch;
  const r = await client.transport.request(
    objRequest(opcode, { oid, epoch, dataLength: data?.length ?? 0, flags: data ? Flag.CMD_WRITE : 0 }),
    data,
    { node: sheep.addresses[i] as string },
  );
  return r.header.result;
}

t.test('cluster format on an unformatted cluster; refused when formatted, unless --force', async (t) => {
  const { sheep } = await withCluster(t, { unformatted: true });
  const a = ['-a', sheep.addresses.join(',')];
  t.equal((await run([...a, 'cluster', 'info'])).code, ExitCode.UNAVAILABLE);
  t.equal((await run([...a, 'vdi', 'create', 'x', '1M'])).code, ExitCode.UNAVAILABLE, 'not formatted: no VDIs');
  const f = await run([...a, 'cluster', 'format', '-c', '2', '-l', '--strict', '-z', '21']);
  t.equal(f.code, 0, f.err);
  t.equal(f.out, '');
  t.equal(f.err, 'using backend plain store\n', "dog's line, on stderr");
  const ci = JSON.parse((await run([...a, 'cluster', 'info', '--json'])).out) as Record<string, unknown>;
  t.match(ci, { status: 'running', copies: 2, locking: true, blockSizeShift: 21, store: 'plain', epoch: 1 });
  t.equal((ci['flags'] as number) & 0x1, 0x1, 'strict');
  t.equal((ci['flags'] as number) & 0x4, 0x4, 'auto vnodes');
  t.equal((await run([...a, 'vdi', 'create', 'x', '1M'])).code, 0);
  const again = await run([...a, 'cluster', 'format']);
  t.equal(again.code, ExitCode.EXISTS);
  t.match(again.err, /formatted already.*--force/);
  t.equal((await run([...a, 'vdi', 'list', '-r'])).out.split('\n').length, 2, 'x is still there');
  const forced = await run([...a, 'cluster', 'format', '--force', '-c', '4:2', '-V']);
  t.equal(forced.code, 0, forced.err);
  const ci2 = JSON.parse((await run([...a, 'cluster', 'info', '--json'])).out) as Record<string, unknown>;
  t.match(ci2, { redundancy: '4:2', locking: false, blockSizeShift: 22 });
  t.equal((ci2['flags'] as number) & 0x4, 0, 'fixed vnodes');
  t.equal((await run([...a, 'vdi', 'list', '-r'])).out, '', 'the reformat dropped every VDI');
  const ns = await run([...a, 'cluster', 'format', '--force', '-b', 'nosuch']);
  t.equal(ns.code, ExitCode.FAILURE);
  t.match(ns.err, /NO_STORE/);
  t.equal((await run([...a, 'cluster', 'format', '--force', '-c', 'x'])).code, ExitCode.USAGE);
});

t.test("the fixture's VDIs: -r outputs, object map, tree, cluster check as dog prints them", async (t) => {
  const { sheep, client } = await withCluster(t, { copies: 2 });
  await fixtureVdis(client);
  const a = ['-a', sheep.addresses[0] as string];

  // vdi list -r: every column but ctime equals dog's, in dog's (vid) order
  const vl = await run([...a, 'vdi', 'list', '-r']);
  t.equal(vl.code, 0, vl.err);
  t.equal(maskCtime(vl.out), maskCtime(dog('07-vdi-list.txt', 'dog vdi list -r').out));
  t.equal(
    maskCtime((await run([...a, 'vdi', 'list', '-r', 'alpha'])).out),
    maskCtime(dog('07-vdi-list.txt', 'dog vdi list -r alpha').out),
  );
  const ct = vl.out.split('\n')[0]?.split(' ')[6];
  t.ok(Math.abs(Number(ct) - Date.now() / 1000) < 60, 'ctime is unix seconds');
  t.equal((await run([...a, 'vdi', 'list', '-r', '--json'])).code, ExitCode.USAGE);

  // vdi object map: identical
  for (const cmd of ['alpha', '-s snap1 alpha', 'alpha-clone', 'hyper', '-i 3 alpha-clone']) {
    const r = await run([...a, 'vdi', 'object', 'map', ...cmd.split(' ')]);
    t.equal(r.out, dog('09-vdi-object-map.txt', `dog vdi object map ${cmd}`).out, `object map ${cmd}`);
  }
  t.equal((await run([...a, 'vdi', 'object', 'map', '-i', '25', 'alpha'])).code, ExitCode.USAGE, 'past the end');

  // node info -r: dog's columns; the total virtual size counts every VDI but snapshots, as dog's
  const ni = await run([...a, 'node', 'info', '-r']);
  const ours = ni.out.trimEnd().split('\n');
  const theirs = dog('02-node-info.txt', 'dog node info -r').out.trimEnd().split('\n');
  t.equal(ours.length, theirs.length);
  ours.slice(0, -1).forEach((l, i) => t.match(l, new RegExp(`^${i} \\d+ \\d+ \\d+ \\d+%$`)));
  t.match(ours.at(-1), /^Total \d+ \d+ \d+ \d+% \d+$/);
  const dogAfter = dog('20-kill-node1.txt', 'dog node info -r').out.trimEnd().split('\n').at(-1) ?? '';
  t.equal(ours.at(-1)?.split(' ')[5], dogAfter.split(' ')[5], 'total virtual image size = dog\u2019s (same VDIs)');
  for (const l of ours) {
    const [, size, used, avail] = l.split(' ').map(Number);
    t.equal((size as number) - (used as number), avail, 'avail = size - used');
  }

  // vdi tree: beta and hyper as dog; alpha's chain as dog, with the clone under snap1
  const tree = (await run([...a, 'vdi', 'tree'])).out.replace(/\[\d{4}-\d\d-\d\d \d\d:\d\d\]/g, '[DATE]');
  const dogTree = dog('08-vdi-tree.txt', 'dog vdi tree').out.replace(/\[\d{4}-\d\d-\d\d \d\d:\d\d\]/g, '[DATE]');
  t.equal(
    tree,
    'beta---(you are here)\nhyper---(you are here)\nalpha---[DATE]-+-(you are here)\n                           `-alpha-clone---(you are here)\n',
  );
  for (const l of ['beta---(you are here)', 'hyper---(you are here)', 'alpha---[DATE]---(you are here)'])
    t.ok(dogTree.includes(`${l}\n`), `dog's tree has ${l}`);
  const tj = JSON.parse((await run([...a, 'vdi', 'tree', '--json'])).out) as { name: string; children: unknown[] }[];
  t.equal(tj.length, 3);

  // cluster check --repair: dog's lines, in dog's order
  const cc = await run([...a, 'cluster', 'check', '--repair']);
  t.equal(cc.code, 0, cc.err);
  t.equal(cc.out, dog('15-cluster-check.txt', 'dog cluster check').out);
  for (const name of ['alpha', 'alpha-clone', 'beta', 'hyper']) {
    const r = await run([...a, 'vdi', 'check', name, '--repair']);
    t.equal(r.out, dog('12-vdi-check.txt', `dog vdi check ${name}`).out);
  }
  t.equal(
    (await run([...a, 'vdi', 'check', '-e', 'alpha'])).out,
    dog('12-vdi-check.txt', 'dog vdi check -e alpha').out,
  );
  t.equal((await run([...a, 'vdi', 'check', '-s', 'snap1', 'alpha', '--repair'])).out, 'finish check&repair alpha\n');
  const plain = await run([...a, 'vdi', 'check', 'alpha']);
  t.equal(plain.code, 0);
  t.equal(plain.out, 'alpha is fine: 22 object(s), every replica matches.\n');
});

t.test('object location: the nodes that have it and placement, as dog prints them', async (t) => {
  // placement over the fixture's node set gives the fixture's expected nodes
  const real = ['127.0.0.1:7000', '127.0.0.1:7001', '127.0.0.1:7002'];
  const ring = buildRing(real.map((r, i) => ({ nid: { addr: '127.0.0.1', port: 7000 + i }, nrVnodes: 128, zone: i })));
  const f11 = fixture('11-object-location-alpha-0-20.txt');
  let n = 0;
  for (const [cmd, s] of f11) {
    const m = /Looking for the (?:inode )?object 0x([0-9a-f]+)/.exec(s.out);
    if (!m) continue;
    let oid = BigInt(`0x${m[1]}`);
    if (/inode object/.test(s.out)) oid = vidToVdiOid(Number(oid));
    const expected = s.out.trimEnd().split('\n').at(-1);
    t.equal(
      oidToNodes(ring, oid, 2)
        .map((i) => real[i])
        .join(' '),
      expected,
      cmd,
    );
    n++;
  }
  t.ok(n >= 21);

  const { sheep, client } = await withCluster(t, { copies: 2 });
  await client.createVdi('alpha', 100 * MiB);
  const v = await client.openVdi('alpha');
  await v.write(Buffer.alloc(3 * 4 * MiB, 1), 0);
  await v.close();
  const a = ['-a', sheep.addresses[1] as string];
  const nodes = await client.listNodes();
  const ourRing = buildRing(
    nodes.map((x) => ({ nid: { addr: x.host, port: x.port }, nrVnodes: x.vnodes, zone: x.zone })),
  );
  for (const idx of [0, 1, 2]) {
    const oid = vidToDataOid(0xed202b, idx);
    const r = await run([...a, 'vdi', 'object', 'location', '-i', String(idx), 'alpha']);
    t.equal(r.code, 0, r.err);
    const want = oidToNodes(ourRing, oid, 2).map((i) => nodes[i]?.address);
    const holders = new Set(sheep.placement(oid).map((i) => sheep.addresses[i]));
    const dogShape = dog('10-vdi-object-location.txt', 'dog vdi object location -i 0 alpha').out.split('\n');
    const lines = r.out.split('\n');
    t.equal(lines.length, dogShape.length, 'as many lines as dog');
    t.equal(lines[0], `Looking for the object 0x${oid.toString(16)} (vid 0xed202b idx ${idx}, 2 copies) with 3 nodes`);
    t.same(
      lines.slice(2, 5),
      nodes.map((x) => `${x.address} ${holders.has(x.address) ? 'has' : "doesn't have"} the object`),
    );
    t.equal(lines[6], dogShape[6]);
    t.equal(lines[7], want.join(' '));
  }
  const ino = await run([...a, 'vdi', 'object', 'location', 'alpha']);
  t.match(ino.out, /^Looking for the inode object 0xed202b with 3 nodes\n\n/);
  const un = await run([...a, 'vdi', 'object', 'location', '-i', '22', 'alpha']);
  t.equal(un.out, 'The inode object 0xed202b idx 22 is not allocated\n');
  t.equal(un.code, dog('10-vdi-object-location.txt', 'dog vdi object location -i 22 alpha').exit);
  const j = JSON.parse((await run([...a, 'vdi', 'object', 'location', '-i', '0', 'alpha', '--json'])).out) as {
    oid: string;
    expected: string[];
  };
  t.equal(j.oid, '00ed202b00000000');
  t.equal(j.expected.length, 2);
});

t.test('vdi check: a missing replica, a differing one with 2 copies (no majority) and with 3 (repaired)', async (t) => {
  const { sheep, client } = await withCluster(t, { copies: 2 });
  const a = ['-a', sheep.addresses[0] as string];
  await client.createVdi('alpha', 100 * MiB);
  let v = await client.openVdi('alpha');
  await v.write(Buffer.alloc(6 * 4 * MiB, 'sheepdog-fixture-alpha\n'), 0);
  await v.close();
  await client.snapshotVdi('alpha', 'snap1');
  v = await client.openVdi('alpha');
  await v.write(Buffer.from('alpha after snap1\n'), 0);
  await v.close();

  // a replica deleted (fixture 16: rm of one node's copy)
  const o5 = vidToDataOid(0xed202b, 5);
  const [keep, lose] = sheep.placement(o5) as [number, number];
  t.equal(await peer(client, sheep, lose, Op.REMOVE_PEER, o5), Result.SUCCESS);
  const e = await run([...a, 'vdi', 'check', '-e', 'alpha']);
  t.equal(e.code, ExitCode.FAILURE);
  t.equal(e.out, `[${sheep.addresses[lose]}] oid 00ed202b00000005 is missing.\nalpha lost 1 object(s).\n`);
  t.equal(e.code, dog('16-vdi-check-repair.txt', 'dog vdi check -e alpha').exit);
  const c = await run([...a, 'vdi', 'check', 'alpha']);
  t.equal(c.code, ExitCode.FAILURE, 'reported, exit 1');
  t.match(c.out, /oid 00ed202b00000005 is missing\.\nalpha: 1 of 7 object\(s\) inconsistent/);
  const fix = await run([...a, 'vdi', 'check', 'alpha', '--repair']);
  t.equal(fix.code, 0, fix.err);
  t.equal(fix.out, dog('16-vdi-check-repair.txt', 'dog vdi check alpha').out, "dog's lines");
  t.ok(same(sheep.readNodeObject(lose, o5), sheep.readNodeObject(keep, o5)), 'the replica is back, equal');
  t.equal((await run([...a, 'vdi', 'check', 'alpha'])).code, 0);

  // a writable replica corrupted, two copies: no majority, never repaired
  const o0 = vidToDataOid(0xed202c, 0);
  const [n0, n1] = sheep.placement(o0) as [number, number];
  t.equal(await peer(client, sheep, n1, Op.WRITE_PEER, o0, Buffer.from('CORRUPT')), Result.SUCCESS);
  const before = [sheep.readNodeObject(n0, o0), sheep.readNodeObject(n1, o0)];
  t.notOk(same(before[0], before[1]));
  const nm = await run([...a, 'vdi', 'check', 'alpha', '--repair']);
  t.equal(nm.code, ExitCode.FAILURE, 'unlike dog (exit 0), an object left inconsistent fails');
  t.equal(nm.out, 'finish check&repair alpha\n');
  t.match(nm.err, /^no majority of ed202c00000000 \(not repaired\): /);
  t.equal(
    dog('16-vdi-check-repair.txt', 'dog vdi check alpha').out,
    'fixed missing ed202b00000005\nfinish check&repair alpha\n',
  );
  t.ok(
    same(sheep.readNodeObject(n0, o0), before[0]) && same(sheep.readNodeObject(n1, o0), before[1]),
    'neither replica touched',
  );
  const js = JSON.parse((await run([...a, 'vdi', 'check', 'alpha', '--json'])).out) as {
    problems: { oid: string; kind: string }[];
  };
  t.same(
    js.problems.map((p) => [p.oid, p.kind]),
    [['00ed202c00000000', 'no-majority']],
  );
  const cc = await run([...a, 'cluster', 'check']);
  t.equal(cc.code, ExitCode.FAILURE);
  t.match(cc.out, /^check snapshot alpha \(id: 1, tag: "snap1"\)\nalpha is fine: 7 object\(s\)/);

  // three copies: the odd one out is rewritten from the majority
  await client.createVdi('gamma', 8 * MiB, { copies: 3 });
  v = await client.openVdi('gamma');
  await v.write(Buffer.alloc(4 * MiB, 'gamma'), 0);
  await v.close();
  const g = (await client.getVdi('gamma')).vdiId;
  const og = vidToDataOid(g, 0);
  const at = sheep.placement(og);
  t.equal(at.length, 3);
  t.equal(await peer(client, sheep, at[2] as number, Op.WRITE_PEER, og, Buffer.from('CORRUPT')), Result.SUCCESS);
  const m3 = await run([...a, 'vdi', 'check', 'gamma']);
  t.equal(m3.code, ExitCode.FAILURE);
  t.match(
    m3.out,
    `[${sheep.addresses[at[2] as number]}] oid ${og.toString(16).padStart(16, '0')} differs from the majority`,
  );
  const r3 = await run([...a, 'vdi', 'check', 'gamma', '--repair']);
  t.equal(r3.code, 0, r3.err);
  t.equal(r3.out, `fixed replica ${og.toString(16)}\nfinish check&repair gamma\n`);
  t.ok(same(sheep.readNodeObject(at[2] as number, og), sheep.readNodeObject(at[0] as number, og)));
  t.equal((await run([...a, 'vdi', 'check', 'gamma'])).code, 0);
});

t.test('node kill, node recovery (-r), cluster info -r epochs, cluster recover, cluster shutdown', async (t) => {
  const { sheep, client } = await withCluster(t, { copies: 2 });
  await client.createVdi('alpha', 100 * MiB);
  const v = await client.openVdi('alpha');
  await v.write(Buffer.alloc(5 * 4 * MiB, 7), 0);
  const firstObject = vidToDataOid(v.vid, 0);
  await v.close();
  const a = ['-a', sheep.addresses[0] as string];
  const before = await client.listNodes();

  // node list -r: dog's columns, ids in node-list order
  const nl = await run([...a, 'node', 'list', '-r']);
  t.equal(nl.out, before.map((n, i) => `${i} ${n.address} ${n.vnodes} ${n.zone}\n`).join(''));
  t.equal(nl.out.split('\n').length, dog('01-node-list.txt', 'dog node list -r').out.split('\n').length);

  // nothing in recovery: dog prints nothing with -r, the header without
  t.equal((await run([...a, 'node', 'recovery', '-r'])).out, dog('14-node-recovery.txt', 'dog node recovery -r').out);
  t.equal((await run([...a, 'node', 'recovery'])).out, dog('14-node-recovery.txt', 'dog node recovery').out);
  t.equal(
    (await run([...a, 'node', 'recovery', 'info'])).out,
    dog('14-node-recovery.txt', 'dog node recovery info').out,
  );

  // cluster info -r at epoch 1
  const ci1 = (await run([...a, 'cluster', 'info', '-r'])).out.split('\n');
  const dci = dog('03-cluster-info.txt', 'dog cluster info -r').out.split('\n');
  t.equal(ci1.length, dci.length);
  t.same(ci1.slice(0, 2), dci.slice(0, 2));
  const list = before.map((n) => `${n.address}:128`).join(', ');
  t.match(ci1[2], new RegExp(`^\\d{10} 1 \\[${list.replace(/[.[\]]/g, '\\$&')}\\]$`));
  const civ = (await run([...a, 'cluster', 'info', '-r', '-v'])).out.split('\n');
  t.same(civ.slice(0, 4), dog('03-cluster-info.txt', 'dog cluster info -v -r').out.split('\n').slice(0, 4));

  // recovery held back, then a node killed (by dog's id): the survivors are in recovery
  t.equal((await run([...a, 'cluster', 'recover', 'disable'])).code, 0);
  t.equal((await run([...a, 'cluster', 'info', '-r'])).out.split('\n')[0], 'running, auto-recovery disabled');
  // The victim holds a copy of the first object (placement follows the
  // nodes' ephemeral ports), so a survivor has something left to recover.
  const holder = sheep.placement(firstObject).find((j) => j !== 0) as number;
  const victim = before.findIndex((n) => n.address === sheep.addresses[holder]);
  t.ok(victim >= 0, 'a node other than the gateway holds the first object');
  const k = await run([...a, 'node', 'kill', String(victim)]);
  t.equal(k.code, 0, k.err);
  const after = await run([...a, 'node', 'list', '-r']);
  t.equal(after.out.split('\n').length - 1, 2);
  t.notMatch(after.out, before[victim]?.address ?? 'x');
  t.match(after.out, /^0 \S+ 128 \d+\n1 \S+ 128 \d+\n$/, 'ids renumbered, as dog after a kill');
  const rr = await run([...a, 'node', 'recovery', '-r']);
  const rl = rr.out.trimEnd().split('\n');
  t.ok(rl.length >= 1, rr.out);
  for (const l of rl) t.match(l, /^\d \S+ 128 \d+ \d+ \d+$/, "dog's -r recovery columns");
  // A survivor that already holds every object it should is done at once;
  // the one that lacks the victim's copies is held back.
  t.ok(
    rl.some((l) => {
      const [, , , , fin, tot] = l.split(' ').map(Number);
      return (fin as number) < (tot as number);
    }),
    'held back: a survivor has not finished',
  );
  for (const l of dog('20-kill-node1.txt', 'dog node recovery -r').out.trimEnd().split('\n'))
    t.match(l, /^\d \S+ 128 \d+ \d+ \d+$/, 'the same pattern fits dog');
  const rp = await run([...a, 'node', 'recovery']);
  t.match(
    rp.out,
    /^Nodes In Recovery:\n {2}Id {3}Host:Port {9}V-Nodes {7}Zone {7}Progress\n( {3}\d {3}\S+ +128 +\d +\d+\.\d%\n)+$/,
  );
  const ci2 = (await run([...a, 'cluster', 'info', '-r'])).out.split('\n');
  t.match(ci2[2], /^\d{10} 2 \[\S+:128, \S+:128\]$/);
  t.match(ci2[3], /^\d{10} 1 \[/, 'newest first, as dog');
  t.equal((await run([...a, 'cluster', 'recover', 'enable'])).code, 0);
  await sheep.recovered();
  t.equal((await run([...a, 'node', 'recovery', '-r'])).out, '');
  const f = await run([...a, 'cluster', 'recover', 'force']);
  t.equal(f.code, ExitCode.FAILURE, 'a running cluster has nothing to force');
  t.match(f.err, /nothing to force recover/);
  t.equal((await run([...a, 'cluster', 'recover', 'sideways'])).code, ExitCode.USAGE);
  t.equal((await run([...a, 'node', 'kill', '7'])).code, ExitCode.USAGE);

  const sd = await run([...a, 'cluster', 'shutdown']);
  t.equal(sd.code, 0, sd.err);
  t.equal((await run([...a, 'cluster', 'info'])).code, ExitCode.UNAVAILABLE, 'gone');
});

t.test("dog's -a HOST -p PORT form", async (t) => {
  const { sheep } = await withCluster(t, { nodes: 2 });
  const [host, port] = (sheep.addresses[1] as string).split(':') as [string, string];
  const r = await run(['-a', host, '-p', port, 'node', 'list', '-r']);
  t.equal(r.code, 0, r.err);
  t.equal(r.out.split('\n').length - 1, 2);
  t.equal((await run(['node', 'list', '-r', '-p', port])).code, 0, '-p alone: 127.0.0.1:PORT, after the command too');
  t.equal((await run(['-p', port, 'node', 'info', '-r'])).code, 0, 'per-node ops reach the node that is not a gateway');
  t.equal(
    (await run(['-a', `${host}:1`, '-p', port, 'node', 'list', '--timeout', '2000'])).code,
    ExitCode.UNAVAILABLE,
    'an explicit port wins',
  );
  t.equal((await run(['-p', 'x', 'node', 'list'])).code, ExitCode.USAGE);
});

t.test('vdi tree draws branches as dog (pure)', async (t) => {
  const mk = (name: string, vdiId: number, parentVdiId: number, snapshot: boolean): VdiInfo =>
    ({ name, vdiId, parentVdiId, snapshot, createdAt: new Date(2026, 11, 1, 19, 16), tag: '' }) as VdiInfo;
  const s = drawForest(
    vdiForest([
      mk('a', 1, 0, true),
      mk('a', 2, 1, true),
      mk('a', 3, 2, false),
      mk('a', 4, 1, false),
      mk('b', 5, 0, false),
    ]),
  );
  t.equal(
    s,
    'a---[2026-12-01 19:16]-+-[2026-12-01 19:16]---(you are here)\n' +
      '                       `-(you are here)\n' +
      'b---(you are here)\n',
  );
});
