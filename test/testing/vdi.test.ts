// VDI semantics of the embedded sheep, checked against sheep 1.0's rules
// (sheep/vdi.c, sheep/ops.c, sheep/gateway.c) over the raw protocol.
import t, { type Test } from 'tap';
import { type EmbeddedSheep, startEmbeddedSheep } from '../../testing/embedded.js';
import {
  bitmapSetBits,
  bitmapTest,
  decodeVdiAttr,
  decodeVdiStates,
  encodeVdiAttr,
  Flag,
  LockState,
  objRequest,
  Op,
  plainRequest,
  Result,
  SD_ATTR_OBJ_SIZE,
  SD_NR_VDIS,
  sdHashVdi,
  VDI_BITMAP_SIZE,
  VDI_STATE_SIZE,
  vdiRequest,
  vidToAttrOid,
  vidToDataOid,
  vidToVdiOid,
} from '../../protocol/index.js';
import { MiniDog } from './dog.js';
import { createObj, getVdiInfo, nameBody, newVdi, RawClient, readObj, writeObj } from './raw.js';

const MiB = 2 ** 20;

async function cluster(
  t: Test,
  o: Parameters<typeof startEmbeddedSheep>[0] = {},
): Promise<{ sheep: EmbeddedSheep; c: RawClient; dog: MiniDog }> {
  const sheep = await startEmbeddedSheep({ nodes: 3, copies: 2, lock: true, ...o });
  const c = await RawClient.connect(sheep.addresses[0] as string);
  t.teardown(async () => {
    c.close();
    await sheep.close();
  });
  return { sheep, c, dog: new MiniDog(c) };
}

function vid(f: { rsp: { kind: string } & Partial<{ vdiId: number }> }): number {
  return f.rsp.vdiId ?? -1;
}

async function vdiStates(c: RawClient): Promise<ReturnType<typeof decodeVdiStates>> {
  const f = await c.call(plainRequest(Op.GET_VDI_COPIES, { dataLength: 512 * VDI_STATE_SIZE }));
  return decodeVdiStates(f.body);
}

t.test('NEW_VDI: ids from the name hash, VDI_EXIST, copies and bss defaults', async (t) => {
  const { c } = await cluster(t);
  const a = await newVdi(c, 'alpha', 100n * BigInt(MiB));
  t.equal(a.rsp.result, Result.SUCCESS);
  t.equal(vid(a), 0xed202b);
  t.equal(a.rsp.kind === 'vdi' && a.rsp.copies, 2, 'cluster copies');
  t.equal(a.rsp.kind === 'vdi' && a.rsp.blockSizeShift, 22, 'cluster bss');
  const b = await newVdi(c, 'beta', BigInt(2 ** 30), { copies: 3, blockSizeShift: 20 });
  t.equal(vid(b), sdHashVdi('beta'));
  t.equal(b.rsp.kind === 'vdi' && b.rsp.copies, 3);
  t.equal(b.rsp.kind === 'vdi' && b.rsp.blockSizeShift, 20);
  const again = await newVdi(c, 'alpha', 1n);
  t.equal(again.rsp.result, Result.VDI_EXIST);
  // the name body must be exactly 256 bytes
  const bad = await c.call(
    vdiRequest(Op.NEW_VDI, { flags: Flag.CMD_WRITE, dataLength: 512, vdiSize: 1n }),
    nameBody('x', ''),
  );
  t.equal(bad.rsp.result, Result.INVALID_PARMS);
  // EC: copies = d + p, policy kept
  const ec = await newVdi(c, 'ecvol', 64n * BigInt(MiB), { copies: 3, copyPolicy: 0x11 });
  t.equal(ec.rsp.result, Result.SUCCESS);
  t.equal(ec.rsp.kind === 'vdi' && ec.rsp.copies, 3);
  const ec42 = await newVdi(c, 'ec42', BigInt(MiB), { copies: 6, copyPolicy: 0x22 });
  t.equal(ec42.rsp.kind === 'vdi' && ec42.rsp.copies, 6);
  const badEc = await newVdi(c, 'badec', BigInt(MiB), { copies: 2, copyPolicy: 0x10 });
  t.equal(badEc.rsp.result, Result.INVALID_PARMS, 'p = 0 is no EC policy');
  const states = await vdiStates(c);
  const s = states.find((x) => x.vid === vid(ec));
  t.equal(s?.copyPolicy, 0x11);
  t.equal(s?.nrCopies, 3);
  // EC objects are stored and read back whole
  t.equal((await createObj(c, vidToDataOid(vid(ec), 0), 100, Buffer.from('erasure'))).rsp.result, Result.SUCCESS);
  t.equal((await readObj(c, vidToDataOid(vid(ec), 0), 100, 7)).body.toString(), 'erasure');
  // READ_VDIS has the bits, READ_DEL_VDIS none
  const inuse = (await c.call(plainRequest(Op.READ_VDIS, { dataLength: VDI_BITMAP_SIZE }))).body;
  t.ok(bitmapTest(inuse, 0xed202b) && bitmapTest(inuse, sdHashVdi('beta')));
  const wrong = await c.call(plainRequest(Op.READ_VDIS, { dataLength: 1024 }));
  t.equal(wrong.rsp.result, Result.INVALID_PARMS, 'READ_VDIS needs the exact bitmap size');
});

t.test('snapshot, lookup by tag and snap id, clone, rollback (rebase)', async (t) => {
  const { c, dog } = await cluster(t);
  await dog.create('alpha', 100 * MiB);
  await dog.write('alpha', 0, Buffer.from('hello sheepdog'));
  t.equal((await getVdiInfo(c, 'alpha', 'snap1')).rsp.result, Result.NO_TAG, 'no snapshot yet');
  const [snap, work] = await dog.snapshot('alpha', 'snap1');
  t.equal(snap, 0xed202b, 'the snapshot keeps the old vid');
  t.equal(work, 0xed202c, 'the working VDI gets the next free one');
  const hs = await dog.header(snap);
  const hw = await dog.header(work);
  t.not(hs.snapCtime, 0n, 'snap_ctime set on the base');
  t.equal(hs.tag, 'snap1');
  t.equal(hw.snapCtime, 0n);
  t.equal(hw.parentVdiId, snap);
  t.equal(hw.snapId, hs.snapId + 1);
  t.equal(await dog.slot(work, 0), snap, 'the working VDI shares the index');
  t.equal(await dog.vid('alpha'), work, 'the name finds the working VDI');
  t.equal(await dog.vid('alpha', 'snap1'), snap, 'the tag finds the snapshot');
  t.equal(await dog.vid('alpha', '', 1), snap, 'snap id 1 finds it too');
  t.equal((await getVdiInfo(c, 'alpha', 'nosnap')).rsp.result, Result.NO_TAG);
  t.equal((await getVdiInfo(c, 'nosuch')).rsp.result, Result.NO_VDI);
  t.equal((await getVdiInfo(c, 'nosuch', 'x')).rsp.result, Result.NO_VDI);

  // a snapshot's data objects are read-only; its inode is not
  const ro = await writeObj(c, vidToDataOid(snap, 0), 0, Buffer.from('x'));
  t.equal(ro.rsp.result, Result.READONLY);
  t.equal((await createObj(c, vidToDataOid(snap, 1), 0, Buffer.from('x'))).rsp.result, Result.READONLY);
  t.equal((await writeObj(c, vidToVdiOid(snap), 256, Buffer.from('snap1'))).rsp.result, Result.SUCCESS);

  // copy-on-write into the working VDI
  await dog.write('alpha', 0, Buffer.from('AFTER'));
  t.equal((await dog.read(work, 0, 14)).toString(), 'AFTER sheepdog');
  t.equal((await dog.read(snap, 0, 14)).toString(), 'hello sheepdog');

  // clone from the snapshot
  const clone = await dog.clone('alpha', 'snap1', 'alpha-clone');
  t.equal(clone, sdHashVdi('alpha-clone'));
  t.equal((await dog.header(clone)).parentVdiId, snap);
  t.equal((await dog.read(clone, 0, 14)).toString(), 'hello sheepdog');

  // rollback via the rebase path of NEW_VDI: snapid != 0 with base != current
  const f = await c.call(
    vdiRequest(Op.NEW_VDI, {
      flags: Flag.CMD_WRITE,
      dataLength: 256,
      vdiSize: 100n * BigInt(MiB),
      baseVdiId: snap,
      snapid: 1,
      copies: 2,
    }),
    nameBody('alpha'),
  );
  t.equal(f.rsp.result, Result.SUCCESS);
  const rebased = vid(f);
  t.equal(rebased, 0xed202d, 'the next free vid after the run ed202b..ed202c');
  t.not((await dog.header(work)).snapCtime, 0n, 'the old working VDI became a snapshot');
  const hr = await dog.header(rebased);
  t.equal(hr.parentVdiId, snap, 'the new working VDI is based on the snapshot');
  t.equal(hr.snapId, hw.snapId + 1);
  t.equal((await dog.read(rebased, 0, 14)).toString(), 'hello sheepdog');
  t.equal(await dog.vid('alpha'), rebased);
  // the old working VDI's objects are read-only now
  t.equal((await writeObj(c, vidToDataOid(work, 0), 0, Buffer.from('x'))).rsp.result, Result.READONLY);
  const states = await vdiStates(c);
  const st = (v: number): (typeof states)[number] | undefined => states.find((s) => s.vid === v);
  t.equal(st(work)?.snapshot, 1);
  t.equal(st(rebased)?.parentVid, work, 'vdi_state parent is the previous working VDI (sheep quirk)');
  t.equal(st(clone)?.parentVid, snap);

  // snapshotting a name that does not exist
  const none = await c.call(
    vdiRequest(Op.NEW_VDI, { flags: Flag.CMD_WRITE, dataLength: 256, vdiSize: 1n, baseVdiId: 1, snapid: 1 }),
    nameBody('nosuch'),
  );
  t.equal(none.rsp.result, Result.NO_VDI);
});

t.test('copy-on-write chain of depth 4: snapshot, clone, snapshot, clone', async (t) => {
  const { dog, sheep } = await cluster(t);
  const os = 4 * MiB;
  await dog.create('v0', 16 * MiB);
  const a = Buffer.alloc(os + 100, 'a');
  await dog.write('v0', os - 50, a); // spans objects 0, 1 and 2
  await dog.snapshot('v0', 's0');
  const v1 = await dog.clone('v0', 's0', 'v1');
  await dog.write('v1', os, Buffer.from('level1'));
  await dog.snapshot('v1', 's1');
  const v2 = await dog.clone('v1', 's1', 'v2');
  await dog.write('v2', 2 * os + 10, Buffer.from('level2'));
  await dog.snapshot('v2', 's2');
  const v3 = await dog.clone('v2', 's2', 'v3');
  await dog.write('v3', 10, Buffer.from('level3'));

  const s0 = await dog.vid('v0', 's0');
  const s1 = await dog.vid('v1', 's1');
  const s2 = await dog.vid('v2', 's2');
  const expect = (base: Buffer, edits: [number, string][]): Buffer => {
    const b = Buffer.from(base);
    for (const [off, s] of edits) b.write(s, off);
    return b;
  };
  const base = Buffer.alloc(3 * os);
  a.copy(base, os - 50);
  const e1: [number, string] = [os, 'level1'];
  const e2: [number, string] = [2 * os + 10, 'level2'];
  const e3: [number, string] = [10, 'level3'];
  t.ok((await dog.read(s0, 0, 3 * os)).equals(base), 'level 0 snapshot');
  t.ok((await dog.read(v1, 0, 3 * os)).equals(expect(base, [e1])), 'level 1 clone');
  t.ok((await dog.read(s1, 0, 3 * os)).equals(expect(base, [e1])), 'level 1 snapshot');
  t.ok((await dog.read(v2, 0, 3 * os)).equals(expect(base, [e1, e2])), 'level 2 clone');
  t.ok((await dog.read(s2, 0, 3 * os)).equals(expect(base, [e1, e2])), 'level 2 snapshot');
  t.ok((await dog.read(v3, 0, 3 * os)).equals(expect(base, [e1, e2, e3])), 'level 3 clone');
  t.equal(await dog.slot(v3, 0), v3, 'object 0 copied into v3');
  t.equal(await dog.slot(v3, 1), s1, 'object 1 still the one v1 wrote (now snapshot s1)');
  t.equal(await dog.slot(v3, 2), s2, 'object 2 still v2s');

  // delete everything, leaves first: every data object is reclaimed
  const before = sheep.stats.objects;
  for (const [name, tag] of [
    ['v3', ''],
    ['v2', ''],
    ['v2', 's2'],
    ['v1', ''],
    ['v1', 's1'],
    ['v0', ''],
    ['v0', 's0'],
  ] as const) {
    const r = await dog.delete(name, tag);
    t.equal(r.rsp.result, Result.SUCCESS, `delete ${name} ${tag}`);
  }
  const inodes = [...sheep.cluster.store.objects.keys()].filter((o) => o >> 63n === 1n).length;
  t.equal(sheep.stats.objects, inodes, `only inodes remain (${before} objects before)`);
  t.same(sheep.internalErrors, []);
});

t.test('DEL_VDI refuses an index with objects (name kept), deletes once it is zeroed', async (t) => {
  const { c, dog, sheep } = await cluster(t);
  const v = await dog.create('gamma', 10 * MiB, { blockSizeShift: 20 });
  await dog.write('gamma', MiB + 5, Buffer.from('data'));
  const objects = sheep.stats.objects;
  const r = await dog.delete('gamma', '', false);
  t.equal(r.rsp.result, Result.SUCCESS, 'sheep answers SUCCESS anyway');
  t.equal(vid(r), v);
  t.equal((await dog.header(v)).name, 'gamma', 'but the inode keeps its name: still has objects');
  t.equal(await dog.vid('gamma'), v, 'and it is still found');
  const del = (await c.call(plainRequest(Op.READ_DEL_VDIS, { dataLength: VDI_BITMAP_SIZE }))).body;
  t.ok(bitmapTest(del, v), 'its deleted bit is set nonetheless');
  t.equal(sheep.stats.objects, objects);

  const r2 = await dog.delete('gamma');
  t.equal(r2.rsp.result, Result.SUCCESS);
  const h = await dog.header(v);
  t.equal(h.name, '', 'name cleared');
  t.equal(h.vdiSize, 0n);
  t.equal(sheep.stats.objects, objects - 1, 'the data object was reclaimed when the index was zeroed');
  t.equal((await getVdiInfo(c, 'gamma')).rsp.result, Result.NO_VDI);
  const states = await vdiStates(c);
  t.equal(states.find((s) => s.vid === v)?.deleted, 1);
  // a new VDI of the same name gets a new id (deleted ids are not reused without RECYCLE_VID)
  const again = await dog.create('gamma', MiB);
  t.equal(again, v + 1);
  // DEL_VDI of a missing VDI
  const missing = await c.call(vdiRequest(Op.DEL_VDI, { flags: Flag.CMD_WRITE, dataLength: 256 }), nameBody('nosuch'));
  t.equal(missing.rsp.result, Result.NO_VDI);
});

t.test('DEL_VDI with objects still indexed, as sheep 1.0 answers it', async (t) => {
  // delete_vdi_work() finds a non-zero data_vdi_id[] slot: "still has objects", the inode is
  // left as it is, and vdi_delete() still answers SUCCESS with the vid; post_cluster_del_vdi()
  // then sets the deleted bit and marks the vdi_state entry deleted (it checks only the result).
  const { c, dog } = await cluster(t);
  const v = await dog.create('eps', 8 * MiB);
  await dog.write('eps', 0, Buffer.from('kept'));
  await dog.create('other', MiB);
  const bitmaps = async (): Promise<{ inuse: Buffer; del: Buffer }> => ({
    inuse: (await c.call(plainRequest(Op.READ_VDIS, { dataLength: VDI_BITMAP_SIZE }))).body,
    del: (await c.call(plainRequest(Op.READ_DEL_VDIS, { dataLength: VDI_BITMAP_SIZE }))).body,
  });
  const r = await c.call(vdiRequest(Op.DEL_VDI, { flags: Flag.CMD_WRITE, dataLength: 256 }), nameBody('eps'));
  t.equal(r.rsp.result, Result.SUCCESS);
  t.equal(vid(r), v);
  const h = await dog.header(v);
  t.equal(h.name, 'eps', 'name kept');
  t.equal(h.vdiSize, BigInt(8 * MiB), 'size kept');
  t.equal(await dog.slot(v, 0), v, 'index kept');
  const { inuse, del } = await bitmaps();
  t.ok(bitmapTest(inuse, v), 'still in the in-use bitmap');
  t.ok(bitmapTest(del, v), 'and in the deleted bitmap');
  // dog vdi list (parse_vdi): every in-use vid without the deleted bit, by its inode's name
  const listed: string[] = [];
  for (const x of bitmapSetBits(inuse, SD_NR_VDIS)) {
    if (!bitmapTest(del, x)) listed.push((await dog.header(x)).name);
  }
  t.notOk(listed.includes('eps'), '`dog vdi list` does not show it');
  t.ok(listed.includes('other'), 'but shows the others');
  // while the lookup (fill_vdi_info_range scans in-use | deleted bits by name) still finds it
  const info = await getVdiInfo(c, 'eps');
  t.equal(info.rsp.result, Result.SUCCESS, 'GET_VDI_INFO finds it');
  t.equal(vid(info), v);
  t.equal((await newVdi(c, 'eps', BigInt(MiB))).rsp.result, Result.VDI_EXIST, 'NEW_VDI of the name: VDI_EXIST');
  t.equal((await vdiStates(c)).find((s) => s.vid === v)?.deleted, 1, 'vdi_state says deleted');
  t.equal((await dog.read(v, 0, 4)).toString(), 'kept', 'its data is still there');
  // a second DEL_VDI is the same again
  const r2 = await c.call(vdiRequest(Op.DEL_VDI, { flags: Flag.CMD_WRITE, dataLength: 256 }), nameBody('eps'));
  t.equal(r2.rsp.result, Result.SUCCESS);
  t.equal((await dog.header(v)).name, 'eps');
});

t.test('CREATE_AND_WRITE_OBJ to a deleted VDI creates the object; a deleted snapshot stays read-only', async (t) => {
  // gateway_create_and_write_obj() refuses only oid_is_readonly(): the vdi_state entry's
  // snapshot flag. Deleting does not remove the entry (without RECYCLE_VID), nor check it.
  const { c, dog, sheep } = await cluster(t);
  const v = await dog.create('zeta', 8 * MiB);
  await dog.write('zeta', 0, Buffer.from('x'));
  t.equal((await dog.delete('zeta')).rsp.result, Result.SUCCESS);
  t.equal((await dog.header(v)).name, '', 'fully deleted');
  t.equal((await getVdiInfo(c, 'zeta')).rsp.result, Result.NO_VDI);
  const objects = sheep.stats.objects;
  const oid = vidToDataOid(v, 1);
  t.equal((await createObj(c, oid, 10, Buffer.from('orphan'))).rsp.result, Result.SUCCESS, 'created');
  t.equal(sheep.stats.objects, objects + 1);
  const back = await readObj(c, oid, 0, 16);
  t.equal(back.rsp.result, Result.SUCCESS);
  t.same([...back.body.subarray(0, 10)], new Array(10).fill(0), 'zeros around the data');
  t.equal(back.body.subarray(10).toString(), 'orphan');
  t.equal((await writeObj(c, oid, 0, Buffer.from('w'))).rsp.result, Result.SUCCESS, 'and WRITE_OBJ to it works');
  t.equal(await dog.slot(v, 1), 0, 'the (cleared) inode does not index it');

  // a deleted snapshot: its entry keeps the snapshot flag, so its data objects stay READONLY
  await dog.create('eta', 8 * MiB);
  await dog.write('eta', 0, Buffer.from('y'));
  const [snap] = await dog.snapshot('eta', 'old');
  t.equal((await dog.delete('eta', 'old')).rsp.result, Result.SUCCESS);
  t.equal((await vdiStates(c)).find((s) => s.vid === snap)?.deleted, 1);
  t.equal((await createObj(c, vidToDataOid(snap, 3), 0, Buffer.from('z'))).rsp.result, Result.READONLY);
  t.same(sheep.internalErrors, []);
});

t.test('reclaim: zeroing index entries drops references, ledgers keep shared objects', async (t) => {
  const { dog, sheep, c } = await cluster(t);
  const v = await dog.create('delta', 12 * MiB);
  await dog.preallocate(v, 3);
  t.equal(sheep.stats.objects, 4, 'inode + 3 preallocated objects');
  await dog.snapshot('delta', 's');
  const work = await dog.vid('delta');
  await dog.write('delta', 0, Buffer.from('Z'));
  t.equal(sheep.stats.objects, 6, 'copy-on-write made one object');
  // zeroing the working VDI's own object removes it (generation 0, count 0)
  await dog.setSlot(work, 0, 0);
  t.equal(sheep.stats.objects, 5);
  // the snapshot's objects are shared: dropping the working VDI's references leaves them
  await dog.setSlot(work, 1, 0);
  await dog.setSlot(work, 2, 0);
  t.equal(sheep.stats.objects, 5, 'still referenced by the snapshot');
  // ... until the snapshot drops them too
  await dog.setSlot(v, 1, 0);
  t.equal(sheep.stats.objects, 4, 'last reference gone: reclaimed');
  // DISCARD_OBJ: zero the slot and remove the object, server side
  const d = await c.call(objRequest(Op.DISCARD_OBJ, { oid: vidToDataOid(v, 2) }));
  t.equal(d.rsp.result, Result.SUCCESS);
  t.equal(await dog.slot(v, 2), 0);
  t.equal(sheep.stats.objects, 3);
  t.equal((await readObj(c, vidToDataOid(v, 2), 0, 1)).rsp.result, Result.NO_OBJ);
  // REMOVE_OBJ: raw removal
  t.equal((await c.call(objRequest(Op.REMOVE_OBJ, { oid: vidToDataOid(v, 0) }))).rsp.result, Result.SUCCESS);
  t.equal((await c.call(objRequest(Op.REMOVE_OBJ, { oid: vidToDataOid(v, 0) }))).rsp.result, Result.NO_OBJ);
  t.equal(sheep.stats.objects, 2);
});

t.test('objects: NO_OBJ, sparse reads, partial COW, CREATE replaces', async (t) => {
  const { c } = await cluster(t);
  const oid = vidToDataOid(0x123, 7);
  t.equal((await readObj(c, oid, 0, 10)).rsp.result, Result.NO_OBJ);
  t.equal((await writeObj(c, oid, 0, Buffer.from('x'))).rsp.result, Result.NO_OBJ, 'WRITE needs an existing object');
  t.equal((await createObj(c, oid, 4096, Buffer.from('abc'))).rsp.result, Result.SUCCESS);
  const r = await readObj(c, oid, 4094, 7);
  t.same([...r.body], [0, 0, 97, 98, 99, 0, 0], 'never-written ranges read as zeros');
  t.equal(r.rsp.dataLength, 7);
  const whole = await readObj(c, oid, 0, 4 * MiB);
  t.equal(whole.body.length, 4 * MiB);
  // COW from a missing object fails, a full-object COW write does not need it
  const cowMissing = await createObj(c, vidToDataOid(0x124, 0), 0, Buffer.from('x'), vidToDataOid(0x999, 0));
  t.equal(cowMissing.rsp.result, Result.NO_OBJ);
  const full = Buffer.alloc(4 * MiB, 1);
  t.equal((await createObj(c, vidToDataOid(0x124, 0), 0, full, vidToDataOid(0x999, 0))).rsp.result, Result.SUCCESS);
  // partial COW copies the rest of the object
  t.equal((await createObj(c, vidToDataOid(0x125, 7), 4095, Buffer.from('Z'), oid)).rsp.result, Result.SUCCESS);
  t.same([...(await readObj(c, vidToDataOid(0x125, 7), 4094, 4)).body], [0, 90, 97, 98]);
  // CREATE_AND_WRITE of an existing object replaces it (sheep renames a new file over it)
  await createObj(c, oid, 0, Buffer.from('new'));
  t.same([...(await readObj(c, oid, 4096, 3)).body], [0, 0, 0]);
});

t.test('attributes: CREAT, EXCL, DEL and the attr object', async (t) => {
  const { c, dog } = await cluster(t);
  await dog.create('alpha', MiB);
  const attr = (key: string, value: string, flags: number, name = 'alpha'): Promise<import('./raw.js').Frame> => {
    const b = Buffer.alloc(SD_ATTR_OBJ_SIZE);
    encodeVdiAttr({ name, tag: '', ctime: 0n, snapId: 0, key, value: Buffer.from(value) }, b);
    return c.call(vdiRequest(Op.GET_VDI_ATTR, { flags: Flag.CMD_WRITE | flags, dataLength: SD_ATTR_OBJ_SIZE }), b);
  };
  const set = await attr('owner', 'ceo', Flag.CMD_CREAT);
  t.equal(set.rsp.result, Result.SUCCESS);
  t.equal(vid(set), sdHashVdi('alpha'), 'vdi_id is the name hash');
  t.equal(set.rsp.kind === 'vdi' && set.rsp.attrId, 1830934208, 'attr id as sheep computes it');
  const get = await attr('owner', '', 0);
  t.equal(get.rsp.result, Result.SUCCESS);
  const attrOid = vidToAttrOid(vid(get), get.rsp.kind === 'vdi' ? get.rsp.attrId : 0);
  const obj = await readObj(c, attrOid, 0, SD_ATTR_OBJ_SIZE);
  const a = decodeVdiAttr(obj.body);
  t.equal(Buffer.from(a.value).toString(), 'ceo');
  t.not(a.ctime, 0n, 'ctime is the VDI create time');
  t.equal(a.ctime, (await dog.header(await dog.vid('alpha'))).createTime);
  t.equal((await attr('missing', '', 0)).rsp.result, Result.NO_OBJ);
  t.equal((await attr('owner', 'cfo', Flag.CMD_CREAT | Flag.CMD_EXCL)).rsp.result, Result.VDI_EXIST);
  t.equal((await attr('owner', 'cfo', Flag.CMD_CREAT)).rsp.result, Result.SUCCESS, 'overwrite');
  t.equal(Buffer.from(decodeVdiAttr((await readObj(c, attrOid, 0, SD_ATTR_OBJ_SIZE)).body).value).toString(), 'cfo');
  t.equal((await attr('owner', '', Flag.CMD_DEL)).rsp.result, Result.SUCCESS, 'delete');
  t.equal((await attr('owner', '', 0)).rsp.result, Result.NO_OBJ, 'gone');
  t.equal((await attr('x', '', 0, 'nosuch')).rsp.result, Result.NO_VDI);
  t.equal(
    (await attr('other', 'v', Flag.CMD_CREAT | Flag.CMD_EXCL)).rsp.result,
    Result.SUCCESS,
    'EXCL creates a missing one',
  );
});

t.test('locking: conflicts between nodes, release, shared locks, lock off', async (t) => {
  const { sheep, dog } = await cluster(t);
  const v = await dog.create('beta', MiB);
  const n0 = dog.c;
  const n1 = await RawClient.connect(sheep.addresses[1] as string);
  t.teardown(() => n1.close());
  const lock = (c: RawClient, type = 0, name = 'beta'): Promise<import('./raw.js').Frame> =>
    c.call(vdiRequest(Op.LOCK_VDI, { flags: Flag.CMD_WRITE, dataLength: 256, type }), nameBody(name));
  const release = (c: RawClient, type = 0): Promise<import('./raw.js').Frame> =>
    c.call(vdiRequest(Op.RELEASE_VDI, { baseVdiId: v, type }));
  const l0 = await lock(n0);
  t.equal(l0.rsp.result, Result.SUCCESS);
  t.equal(vid(l0), v);
  const l1 = await lock(n1);
  t.equal(l1.rsp.result, Result.VDI_LOCKED, 'another node cannot take it');
  t.equal(vid(l1), v, 'the reply still names the VDI');
  t.equal((await lock(n0)).rsp.result, Result.VDI_LOCKED, 'nor the same node twice');
  const st = (await vdiStates(n0)).find((s) => s.vid === v);
  t.equal(st?.lockState, LockState.LOCKED);
  t.equal(`${st?.lockOwner.addr}:${st?.lockOwner.port}`, sheep.addresses[0], 'owner is the gateway node');
  t.equal((await lock(n0, 0, 'nosuch')).rsp.result, Result.NO_VDI);
  t.equal((await release(n0)).rsp.result, Result.SUCCESS);
  t.equal((await lock(n1)).rsp.result, Result.SUCCESS, 'free again');
  t.equal((await release(n1)).rsp.result, Result.SUCCESS);
  // shared: several nodes, but no normal lock meanwhile
  t.equal((await lock(n0, 1)).rsp.result, Result.SUCCESS);
  t.equal((await lock(n1, 1)).rsp.result, Result.SUCCESS);
  t.equal((await lock(n1, 1)).rsp.result, Result.VDI_LOCKED, 'a node participates once');
  t.equal((await lock(n0, 0)).rsp.result, Result.VDI_LOCKED);
  const sh = (await vdiStates(n0)).find((s) => s.vid === v);
  t.equal(sh?.lockState, LockState.SHARED);
  t.equal(sh?.nrParticipants, 2);
  t.same(sh?.participantsState, [1, 3], 'first modified, second invalidated');
  await release(n0, 1);
  await release(n1, 1);
  t.equal((await vdiStates(n0)).find((s) => s.vid === v)?.lockState, LockState.UNLOCKED);
  // a node leaving drops its shared participation, not normal locks
  t.equal((await lock(n1)).rsp.result, Result.SUCCESS);
  await sheep.stopNode(1);
  await sheep.startNode(1);
  t.equal((await vdiStates(n0)).find((s) => s.vid === v)?.lockState, LockState.LOCKED, 'normal lock survives');
});

t.test('lock off: LOCK_VDI is a lookup', async (t) => {
  const { dog } = await cluster(t, { lock: false });
  await dog.create('beta', MiB);
  const lock = (): Promise<import('./raw.js').Frame> =>
    dog.c.call(vdiRequest(Op.LOCK_VDI, { flags: Flag.CMD_WRITE, dataLength: 256 }), nameBody('beta'));
  t.equal((await lock()).rsp.result, Result.SUCCESS);
  t.equal((await lock()).rsp.result, Result.SUCCESS, 'no lock taken');
});

t.test('GET_VDI_COPIES: states in vid order and BUFFER_SMALL', async (t) => {
  const { c, dog } = await cluster(t);
  await dog.create('alpha', MiB);
  await dog.create('beta', MiB);
  const small = await c.call(plainRequest(Op.GET_VDI_COPIES, { dataLength: VDI_STATE_SIZE }));
  t.equal(small.rsp.result, Result.BUFFER_SMALL);
  const states = await vdiStates(c);
  t.same(
    states.map((s) => s.vid),
    [sdHashVdi('beta'), sdHashVdi('alpha')],
  );
  t.same(
    states.map((s) => [s.nrCopies, s.snapshot, s.deleted, s.lockState]),
    [
      [2, 0, 0, 1],
      [2, 0, 0, 1],
    ],
  );
});

t.test('RECYCLE_VID clusters scan the whole bitmap', async (t) => {
  const { c, dog } = await cluster(t, { unformatted: true });
  const fs = Buffer.from('plain\0');
  const mk = await c.call(
    (await import('../../protocol/index.js')).clusterRequest(Op.MAKE_FS, {
      flags: Flag.CMD_WRITE,
      dataLength: fs.length,
      copies: 1,
      clusterFlags: 0x10,
      ctime: 1n << 32n,
    }),
    fs,
  );
  t.equal(mk.rsp.result, Result.SUCCESS);
  const v = await dog.create('alpha', MiB);
  t.equal(v, 1, 'the first free vid, not the hash');
  t.equal(await dog.vid('alpha'), 1);
  t.equal(await dog.create('beta', MiB), 2);
});

t.test('shared locks: inode coherence and INODE_INVALIDATED for TGT requests', async (t) => {
  const { sheep, dog } = await cluster(t);
  const v = await dog.create('mp', 8 * MiB);
  await dog.write('mp', 0, Buffer.from('x'));
  const n0 = dog.c;
  const n1 = await RawClient.connect(sheep.addresses[1] as string);
  t.teardown(() => n1.close());
  const lock = (c: RawClient): Promise<import('./raw.js').Frame> =>
    c.call(vdiRequest(Op.LOCK_VDI, { flags: Flag.CMD_WRITE, dataLength: 256, type: 1 }), nameBody('mp'));
  const states = async (): Promise<number[]> => (await vdiStates(n0)).find((s) => s.vid === v)?.participantsState ?? [];
  t.equal((await lock(n0)).rsp.result, Result.SUCCESS);
  t.equal((await lock(n1)).rsp.result, Result.SUCCESS);
  t.same(await states(), [1, 3], 'n0 modified, n1 invalidated');
  const tgtRead = (c: RawClient, oid: bigint, offset: number, len: number): Promise<import('./raw.js').Frame> =>
    c.call(objRequest(Op.READ_OBJ, { flags: Flag.CMD_TGT, oid, offset, dataLength: len }));
  t.equal((await tgtRead(n1, vidToDataOid(v, 0), 0, 1)).rsp.result, Result.INODE_INVALIDATED);
  t.equal((await tgtRead(n0, vidToDataOid(v, 0), 0, 1)).rsp.result, Result.SUCCESS);
  // an inode refresh (whole header + index) validates the reader
  const refresh = await tgtRead(n1, vidToVdiOid(v), 0, 4664 + 4 * 2 ** 20);
  t.equal(refresh.rsp.result, Result.SUCCESS);
  t.same(await states(), [2, 2], 'both shared');
  // an index update from n1 invalidates the others
  const b = Buffer.alloc(4);
  const w = await n1.call(
    objRequest(Op.WRITE_OBJ, {
      flags: Flag.CMD_WRITE | Flag.CMD_TGT,
      oid: vidToVdiOid(v),
      offset: 4664 + 4,
      dataLength: 4,
    }),
    b,
  );
  t.equal(w.rsp.result, Result.SUCCESS);
  t.same(await states(), [3, 1], 'n0 invalidated, n1 modified');
  const w0 = await n0.call(
    objRequest(Op.WRITE_OBJ, { flags: Flag.CMD_WRITE | Flag.CMD_TGT, oid: vidToDataOid(v, 0), dataLength: 1 }),
    Buffer.from('y'),
  );
  t.equal(w0.rsp.result, Result.INODE_INVALIDATED);
  const ic = await n0.call(
    (await import('../../protocol/index.js')).plainRequest(Op.INODE_COHERENCE, {
      raw: (() => {
        const r = new Uint8Array(32);
        new DataView(r.buffer).setUint32(0, 0x999, true);
        return r;
      })(),
    }),
  );
  t.equal(ic.rsp.result, Result.NO_VDI, 'coherence of an unknown vid');
});
