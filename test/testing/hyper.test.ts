// Hyper volumes (store_policy 1): the B-tree index of lib/sd_inode.c lives in
// data_vdi_id[] (depth 1) or in B-tree objects (depth 2). The client edits
// the tree; sheep initialises it, copies it on snapshot/clone, walks it on
// delete and edits it on DISCARD_OBJ.
import t, { type Test } from 'tap';
import { type EmbeddedSheep, startEmbeddedSheep } from '../../testing/embedded.js';
import {
  decodeBtreeHeader,
  decodeBtreeIndex,
  decodeBtreeIndirect,
  decodeInodeHeader,
  encodeBtreeHeader,
  encodeBtreeIndex,
  encodeBtreeIndirect,
  Flag,
  INODE_BTREE_MAGIC,
  objRequest,
  Op,
  Result,
  SD_INODE_DATA_INDEX_SIZE,
  SD_INODE_HEADER_SIZE,
  vdiRequest,
  vidToBtreeOid,
  vidToDataOid,
  vidToVdiOid,
} from '../../protocol/index.js';
import { createObj, getVdiInfo, nameBody, newVdi, RawClient, readObj, writeObj } from './raw.js';

const TiB = 2 ** 40;
const OBJ = 4 * 2 ** 20;

async function setup(t: Test): Promise<{ sheep: EmbeddedSheep; c: RawClient }> {
  const sheep = await startEmbeddedSheep({ nodes: 3, copies: 2 });
  const c = await RawClient.connect(sheep.addresses[0] as string);
  t.teardown(async () => {
    c.close();
    await sheep.close();
  });
  return { sheep, c };
}

function vidOf(f: { rsp: { kind: string; vdiId?: number } }): number {
  return f.rsp.vdiId ?? -1;
}

/** The vid mapped at `idx` by a depth-1 or depth-2 tree, read as a client does. */
async function lookup(c: RawClient, vid: number, idx: number): Promise<number> {
  const root = (await readObj(c, vidToVdiOid(vid), SD_INODE_HEADER_SIZE, SD_INODE_DATA_INDEX_SIZE)).body;
  const h = decodeBtreeHeader(root);
  if (h.depth === 1) {
    for (let i = 0; i < h.entries; i++) {
      const e = decodeBtreeIndex(root, 0, i);
      if (e.idx === idx) return e.vdiId;
    }
    return 0;
  }
  for (let i = 0; i < h.entries; i++) {
    const ind = decodeBtreeIndirect(root, 0, i);
    if (idx > ind.idx) continue;
    const leaf = (await readObj(c, ind.oid, 0, SD_INODE_DATA_INDEX_SIZE)).body;
    const lh = decodeBtreeHeader(leaf);
    for (let k = 0; k < lh.entries; k++) {
      const e = decodeBtreeIndex(leaf, 0, k);
      if (e.idx === idx) return e.vdiId;
    }
    return 0;
  }
  return 0;
}

t.test('a 5 TiB hyper volume: write and read above 4 TiB through a depth-1 tree', async (t) => {
  const { c, sheep } = await setup(t);
  const f = await newVdi(c, 'hyper', BigInt(5 * TiB), { storePolicy: 1, blockSizeShift: 22 });
  t.equal(f.rsp.result, Result.SUCCESS);
  const vid = vidOf(f);
  const inode = (await readObj(c, vidToVdiOid(vid), 0, SD_INODE_HEADER_SIZE + 8)).body;
  t.equal(decodeInodeHeader(inode).storePolicy, 1);
  t.same(decodeBtreeHeader(inode, SD_INODE_HEADER_SIZE), { magic: INODE_BTREE_MAGIC, depth: 1, entries: 0 });
  // write 'HYPER' at 4 TiB + 4 MiB + 7: object index 2^20 + 1, as dog does
  const idx = 2 ** 20 + 1;
  t.equal((await createObj(c, vidToDataOid(vid, idx), 7, Buffer.from('HYPER'))).rsp.result, Result.SUCCESS);
  const root = Buffer.alloc(16);
  encodeBtreeHeader({ magic: INODE_BTREE_MAGIC, depth: 1, entries: 1 }, root);
  encodeBtreeIndex({ idx, vdiId: vid }, root, 0, 0);
  t.equal((await writeObj(c, vidToVdiOid(vid), SD_INODE_HEADER_SIZE, root)).rsp.result, Result.SUCCESS);
  // and read it back at 4 TiB + 4 MiB + 7
  const off = 4 * TiB + OBJ + 7;
  const i = Math.floor(off / OBJ);
  const owner = await lookup(c, vid, i);
  t.equal(owner, vid);
  t.equal((await readObj(c, vidToDataOid(owner, i), off % OBJ, 5)).body.toString(), 'HYPER');
  t.equal(await lookup(c, vid, i + 1), 0, 'a hole');
  // DISCARD_OBJ edits the tree server-side and removes the object
  const objects = sheep.stats.objects;
  t.equal((await c.call(objRequest(Op.DISCARD_OBJ, { oid: vidToDataOid(vid, idx) }))).rsp.result, Result.SUCCESS);
  t.equal(await lookup(c, vid, idx), 0);
  t.equal(sheep.stats.objects, objects - 1);
  t.equal((await c.call(objRequest(Op.DISCARD_OBJ, { oid: vidToDataOid(vid, idx) }))).rsp.result, Result.SUCCESS);
});

t.test('depth-2 trees: snapshot copies the leaf nodes; delete walks the tree', async (t) => {
  const { c, sheep } = await setup(t);
  const vid = vidOf(await newVdi(c, 'deep', BigInt(16 * TiB), { storePolicy: 1 }));
  const idxs = [3, 2 ** 20 + 9, 2 ** 21];
  for (const i of idxs) await createObj(c, vidToDataOid(vid, i), 0, Buffer.from(`obj${i}`));
  // one leaf node with every entry, and a depth-2 root pointing at it
  const leaf = Buffer.alloc(8 + 8 * idxs.length);
  encodeBtreeHeader({ magic: INODE_BTREE_MAGIC, depth: 1, entries: idxs.length }, leaf);
  idxs.forEach((idx, k) => encodeBtreeIndex({ idx, vdiId: vid }, leaf, 0, k));
  const leafOid = vidToBtreeOid(vid, 0);
  t.equal(
    (
      await c.call(
        objRequest(Op.CREATE_AND_WRITE_OBJ, { flags: Flag.CMD_WRITE, oid: leafOid, dataLength: leaf.length }),
        leaf,
      )
    ).rsp.result,
    Result.SUCCESS,
  );
  const root = Buffer.alloc(8 + 16);
  encodeBtreeHeader({ magic: INODE_BTREE_MAGIC, depth: 2, entries: 1 }, root);
  encodeBtreeIndirect({ idx: 2 ** 21, oid: leafOid }, root, 0, 0);
  await writeObj(c, vidToVdiOid(vid), SD_INODE_HEADER_SIZE, root);
  const counter = Buffer.alloc(4);
  counter.writeUInt32LE(1, 0);
  await writeObj(c, vidToVdiOid(vid), 568, counter);
  for (const i of idxs) t.equal(await lookup(c, vid, i), vid);

  // snapshot: the new working inode gets its own copy of the leaf
  const snap = await c.call(
    vdiRequest(Op.NEW_VDI, {
      flags: Flag.CMD_WRITE,
      dataLength: 256,
      vdiSize: BigInt(16 * TiB),
      baseVdiId: vid,
      snapid: 1,
      copies: 2,
      storePolicy: 1,
    }),
    nameBody('deep'),
  );
  t.equal(snap.rsp.result, Result.SUCCESS);
  const work = vidOf(snap);
  const wroot = (await readObj(c, vidToVdiOid(work), SD_INODE_HEADER_SIZE, 24)).body;
  const ind = decodeBtreeIndirect(wroot, 0, 0);
  t.equal(ind.oid, vidToBtreeOid(work, 0), 'the leaf was copied to a B-tree object of the new VDI');
  t.equal(decodeInodeHeader((await readObj(c, vidToVdiOid(work), 0, SD_INODE_HEADER_SIZE)).body).btreeCounter, 1);
  for (const i of idxs) t.equal(await lookup(c, work, i), vid, 'the copy maps the same objects');
  const name1 = `obj${idxs[1]}`;
  t.equal((await readObj(c, vidToDataOid(vid, idxs[1] as number), 0, name1.length)).body.toString(), name1);
  // DISCARD_OBJ in a depth-2 tree edits the leaf
  t.equal((await c.call(objRequest(Op.DISCARD_OBJ, { oid: vidToDataOid(vid, 3) }))).rsp.result, Result.SUCCESS);
  t.equal(await lookup(c, vid, 3), 0);
  t.equal(await lookup(c, work, 3), vid, "the working VDI's copy is untouched");

  // deleting a hyper volume: sheep walks the tree and removes the objects of that VDI
  const before = sheep.stats.objects;
  const del = await c.call(vdiRequest(Op.DEL_VDI, { flags: Flag.CMD_WRITE, dataLength: 512 }), nameBody('deep', ''));
  t.equal(del.rsp.result, Result.SUCCESS);
  t.equal(vidOf(del), work);
  t.equal(sheep.stats.objects, before, 'the working VDI owns no data objects (they are the snapshot’s)');
  t.equal((await getVdiInfo(c, 'deep')).rsp.result, Result.NO_VDI);
  const delSnap = await c.call(
    vdiRequest(Op.DEL_VDI, { flags: Flag.CMD_WRITE, dataLength: 256, snapid: 1 }),
    nameBody('deep'),
  );
  t.equal(delSnap.rsp.result, Result.SUCCESS);
  t.equal(sheep.stats.objects, before - 2, 'the two remaining objects of the snapshot are gone');
  const h = decodeInodeHeader((await readObj(c, vidToVdiOid(vid), 0, SD_INODE_HEADER_SIZE + 8)).body);
  t.equal(h.name, '');
  t.same(sheep.internalErrors, []);
});
