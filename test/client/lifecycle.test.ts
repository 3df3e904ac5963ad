// SheepdogClient lifecycle operations against the embedded sheep.
import t from 'tap';
import {
  InvalidArgumentError,
  NoObjError,
  NoTagError,
  NoVdiError,
  ReadOnlyError,
  VdiExistsError,
  VdiInUseError,
  VdiLockedError,
  WaitForFormatError,
} from '../../lib/errors.js';
import { GiB, MiB, TiB, pattern, withCluster } from '../helpers/cluster.js';

t.test('create, info, list, resize, delete', async (t) => {
  const { client } = await withCluster(t);
  const info = await client.createVdi('alpha', 100 * MiB);
  t.equal(info.vdiId, 0xed202b, 'vid is the FNV hash of the name, as real sheep gives');
  t.equal(info.size, 100 * MiB);
  t.equal(info.blockSizeShift, 22);
  t.equal(info.copies, 2, 'cluster default copies');
  t.equal(info.snapshot, false);
  await t.rejects(client.createVdi('alpha', MiB), VdiExistsError);

  const beta = await client.createVdi('beta', GiB, { copies: 3 });
  t.equal(beta.copies, 3);
  const ec = await client.createVdi('ecvol', 64 * MiB, { copies: '2:1' });
  t.equal(ec.redundancy, '2:1');
  t.equal(ec.copies, 3);
  const gamma = await client.createVdi('gamma', 10 * MiB, { blockSizeShift: 20 });
  t.equal(gamma.blockSizeShift, 20);
  const delta = await client.createVdi('delta', 12 * MiB, { preallocate: true });
  t.equal(delta.used, 12 * MiB, 'preallocated objects are owned');

  const list = await client.listVdis();
  t.same(list.map((v) => v.name).sort(), ['alpha', 'beta', 'delta', 'ecvol', 'gamma']);

  await client.resizeVdi('alpha', 200 * MiB);
  t.equal((await client.getVdi('alpha')).size, 200 * MiB);
  await t.rejects(client.resizeVdi('alpha', 50 * MiB), InvalidArgumentError, 'shrink refused');
  await t.rejects(client.resizeVdi('gamma', 2 * TiB), InvalidArgumentError, 'past the flat index limit');

  await client.deleteVdi('gamma');
  await t.rejects(client.getVdi('gamma'), NoVdiError);
  await t.rejects(client.deleteVdi('gamma'), NoVdiError);
  t.notOk((await client.listVdis()).some((v) => v.name === 'gamma'));
});

t.test('input validation happens before anything is sent', async (t) => {
  const { client, sheep } = await withCluster(t);
  const before = sheep.stats.requests;
  await t.rejects(client.createVdi('', MiB), InvalidArgumentError);
  await t.rejects(client.createVdi('x'.repeat(256), MiB), InvalidArgumentError, 'name over 255 bytes');
  await t.rejects(client.createVdi('é'.repeat(128), MiB), InvalidArgumentError, '256 bytes of UTF-8');
  await t.rejects(client.createVdi('a\0b', MiB), InvalidArgumentError, 'NUL');
  await t.rejects(client.createVdi('ok', 0), InvalidArgumentError, 'size 0');
  await t.rejects(client.createVdi('ok', 1.5), InvalidArgumentError, 'fractional size');
  await t.rejects(client.createVdi('ok', MiB, { copies: '3:1' }), InvalidArgumentError, 'bad EC data count');
  await t.rejects(client.createVdi('ok', MiB, { copies: 40 }), InvalidArgumentError);
  await t.rejects(client.createVdi('ok', MiB, { blockSizeShift: 19 }), InvalidArgumentError);
  await t.rejects(client.snapshotVdi('ok', 't'.repeat(300)), InvalidArgumentError);
  t.equal(sheep.stats.requests, before, 'no request reached sheep');
  await t.resolves(client.createVdi('x'.repeat(255), MiB), '255 bytes is fine');
});

t.test('snapshot, clone, rollback, delete snapshot', async (t) => {
  const { client } = await withCluster(t);
  await client.createVdi('alpha', 100 * MiB);
  const v = await client.openVdi('alpha');
  await v.write(Buffer.from('hello sheepdog'), 0);
  const s = await client.snapshotVdi('alpha', 'snap1');
  t.equal(s.snapshotVdiId, 0xed202b, 'the snapshot keeps the old vid');
  t.equal(s.workingVdiId, 0xed202c, 'the working VDI moves to the next vid');
  await t.rejects(client.snapshotVdi('alpha', 'snap1'), VdiExistsError, 'tag exists');

  // The open handle keeps writing: READONLY → reload → COW against ed202c.
  await v.write(Buffer.from('AFTER'), 0);
  t.equal(v.vid, 0xed202c);
  t.equal((await v.read(0, 14)).toString(), 'AFTER sheepdog');
  const snap = await client.openVdi('alpha', { snapshot: 'snap1' });
  t.equal((await snap.read(0, 14)).toString(), 'hello sheepdog', 'snapshot unchanged');
  t.ok(snap.snapshot);
  await t.rejects(snap.write(Buffer.from('x'), 0), ReadOnlyError);
  await snap.close();
  const byId = await client.openVdi('alpha', { snapshot: 1 });
  t.equal((await byId.read(0, 5)).toString(), 'hello', 'snapshot by id');
  await byId.close();

  const clone = await client.cloneVdi('alpha', 'snap1', 'alpha-clone');
  t.equal(clone.vdiId, 0xc29457);
  t.equal(clone.parentVdiId, 0xed202b);
  t.ok(clone.clone);
  await t.rejects(client.cloneVdi('alpha', 'nosnap', 'x'), NoTagError);
  await t.rejects(client.cloneVdi('nosuch', 'snap1', 'x'), NoVdiError);
  await t.rejects(client.cloneVdi('alpha', 'snap1', 'alpha-clone'), VdiExistsError);

  const info = await client.getVdi('alpha', { snapshot: 'snap1' });
  t.ok(info.snapshot);
  t.equal(info.tag, 'snap1');

  await t.rejects(client.rollbackVdi('alpha', 'snap1'), VdiInUseError, 'refused while a handle is open');
  await v.close();
  const rb = await client.rollbackVdi('alpha', 'snap1');
  t.equal(rb.vdiId, 0xed202d);
  const after = await client.openVdi('alpha');
  t.equal((await after.read(0, 14)).toString(), 'hello sheepdog', 'rolled back');
  await after.close();

  await client.deleteVdi('alpha', { snapshot: 'snap1' });
  await t.rejects(client.getVdi('alpha', { snapshot: 'snap1' }), NoTagError);
  t.equal((await client.getVdi('alpha')).vdiId, 0xed202d, 'working VDI survives');
  const c = await client.openVdi('alpha-clone');
  t.equal((await c.read(0, 14)).toString(), 'hello sheepdog', 'clone still reads the deleted snapshot objects');
  await c.close();
});

t.test('clone needs a snapshot', async (t) => {
  const { client } = await withCluster(t);
  await client.createVdi('a', MiB);
  await t.rejects(client.rollbackVdi('a', 'none'), NoTagError);
});

t.test('attributes', async (t) => {
  const { client } = await withCluster(t);
  await client.createVdi('alpha', MiB);
  await client.setVdiAttr('alpha', 'owner', 'ceo');
  t.equal(await client.getVdiAttr('alpha', 'owner'), 'ceo');
  await client.setVdiAttr('alpha', 'owner', 'cto');
  t.equal(await client.getVdiAttr('alpha', 'owner'), 'cto', 'overwrite');
  await t.rejects(client.setVdiAttr('alpha', 'owner', 'x', { exclusive: true }), VdiExistsError);
  await t.rejects(client.getVdiAttr('alpha', 'missing'), NoObjError);
  await client.setVdiAttr('alpha', 'bin', Buffer.from([0, 1, 2, 255]));
  t.same([...(await client.getVdiAttrBuffer('alpha', 'bin'))], [0, 1, 2, 255]);
  await client.deleteVdiAttr('alpha', 'owner');
  await t.rejects(client.getVdiAttr('alpha', 'owner'), NoObjError);
  await t.rejects(client.setVdiAttr('nosuch', 'k', 'v'), NoVdiError);
  await t.rejects(client.setVdiAttr('alpha', 'k', Buffer.alloc(65537)), InvalidArgumentError);
});

t.test('locks', async (t) => {
  const { client, sheep } = await withCluster(t, { lock: true });
  await client.createVdi('vol', MiB);
  const a = await client.openVdi('vol', { lock: true });
  await t.rejects(client.openVdi('vol', { lock: true }), VdiLockedError);
  const locks = await client.listLocks();
  t.equal(locks.length, 1);
  t.equal(locks[0]?.name, 'vol');
  t.equal(locks[0]?.state, 'locked');
  t.ok(sheep.addresses.includes(locks[0]?.owners[0] ?? ''), 'owner is a gateway node');
  await a.close();
  t.same(await client.listLocks(), []);
  const b = await client.openVdi('vol', { lock: true });
  await client.unlockVdi('vol');
  t.same(await client.listLocks(), [], 'forced unlock');
  await b.close(); // releasing an unlocked VDI is tolerated
  const c = await client.openVdi('vol', { lock: true });
  await c.close();
});

t.test('cluster info and nodes', async (t) => {
  const { client, sheep } = await withCluster(t, { lock: true });
  const ci = await client.clusterInfo();
  t.equal(ci.status, 'running');
  t.equal(ci.formatted, true);
  t.equal(ci.copies, 2);
  t.equal(ci.locking, true);
  const nodes = await client.listNodes();
  t.same(nodes.map((n) => n.address).sort(), [...sheep.addresses].sort());
  const cap = await client.nodeCapacity();
  t.equal(cap.length, 3);
  for (const c of cap) t.ok(c.size > 0 && c.free <= c.size);
});

t.test('unformatted cluster', async (t) => {
  const { client } = await withCluster(t, { unformatted: true });
  const ci = await client.clusterInfo();
  t.equal(ci.status, 'waiting-for-format');
  t.equal(ci.formatted, false);
  await t.rejects(client.createVdi('x', MiB), WaitForFormatError);
});

t.test('delete reclaims objects', async (t) => {
  const { client, sheep } = await withCluster(t);
  await client.createVdi('r', 64 * MiB);
  const base = sheep.stats.objects;
  const v = await client.openVdi('r');
  await v.write(pattern(20 * MiB, 1), 3 * MiB);
  await v.close();
  t.ok(sheep.stats.objects >= base + 6, 'objects were created');
  await client.snapshotVdi('r', 's');
  const c = await client.cloneVdi('r', 's', 'r2');
  const v2 = await client.openVdi('r2');
  await v2.write(pattern(MiB, 2), 0);
  await v2.close();
  await client.deleteVdi('r2');
  await client.deleteVdi('r', { snapshot: 's' });
  await client.deleteVdi('r');
  // Deleted inodes stay behind with their name cleared (as in sheep); every data object is gone.
  t.ok(
    sheep.stats.objects <= base + 2,
    `data objects reclaimed (clone ${c.vdiId.toString(16)}): ${sheep.stats.objects} <= ${base + 2}`,
  );
});

t.test('hyper volume: create, write and read above 4 TiB, delete', async (t) => {
  const { client, sheep } = await withCluster(t);
  const objects0 = sheep.stats.objects;
  const h = await client.createVdi('hyper', 5 * TiB);
  t.equal(h.storePolicy, 1, 'hyper layout chosen by size');
  await t.rejects(client.createVdi('h2', 5 * TiB, { blockSizeShift: 20 }), InvalidArgumentError);
  const v = await client.openVdi('hyper');
  await v.write(Buffer.from('HYPER'), 4 * TiB);
  const data = pattern(9 * MiB, 7);
  await v.write(data, 4 * TiB + 3 * MiB);
  await v.close();
  const r = await client.openVdi('hyper');
  t.equal((await r.read(4 * TiB, 5)).toString(), 'HYPER');
  t.ok((await r.read(4 * TiB + 3 * MiB, data.length)).equals(data));
  t.ok((await r.read(TiB, 16)).equals(Buffer.alloc(16)), 'hole reads zeros');
  await r.close();
  t.equal((await client.getVdi('hyper')).used, 3 * 4 * MiB, 'three objects: [4T, 4T+12M)');
  await t.rejects(client.snapshotVdi('hyper', 's'), InvalidArgumentError, 'sheep cannot snapshot hyper volumes');
  await client.deleteVdi('hyper');
  await t.rejects(client.getVdi('hyper'), NoVdiError);
  t.ok(sheep.stats.objects <= objects0 + 1, 'data objects reclaimed; the cluster is still up');
  t.equal((await client.clusterInfo()).status, 'running');
});
