// Hyper-volume B-tree writes (lib/vdi/vdi-index.ts HyperIndex): sorted nodes,
// batched writes, the depth-1 → depth-2 split and depth-2 inserts laid out as
// sheep 1.0's lib/sd_inode.c reads them. The split logic runs against a small
// in-memory IndexIO (fast); the embedded sheep checks that the server reads
// what we wrote (DISCARD_OBJ, DEL_VDI walk, reopen).
import t, { type Test } from 'tap';
import { SheepdogClient } from '../../lib/client/client.js';
import type { Transport } from '../../lib/transport/types.js';
import { BTREE_MAX_INDEX, HyperIndex, type IndexIO } from '../../lib/vdi/vdi-index.js';
import { Op, SD_INODE_HEADER_SIZE } from '../../protocol/constants.js';
import { isVdiBtreeObj, isVdiObj, vidToBtreeOid, vidToDataOid, vidToVdiOid } from '../../protocol/oid.js';
import {
  decodeBtreeHeader,
  decodeBtreeIndex,
  decodeBtreeIndirect,
  encodeBtreeHeader,
  encodeBtreeIndex,
  INODE_BTREE_MAGIC,
  INODE_OFF,
} from '../../protocol/records.js';
import { writeObject } from '../../lib/client/objects.js';
import { hyperFind, hyperWalk } from '../../testing/inode.js';
import type { EmbeddedSheep } from '../../testing/embedded.js';
import { MiB, TiB, pattern, withCluster } from '../helpers/cluster.js';

const VID = 0x1234;
const INODE = vidToVdiOid(VID);

/** Objects as growable byte arrays; every request logged. */
class FakeIO implements IndexIO {
  readonly objs = new Map<bigint, Uint8Array>();
  readonly log: { op: 'read' | 'write' | 'create'; oid: bigint; offset: number; length: number }[] = [];
  failNext: ((oid: bigint, offset: number) => boolean) | undefined;
  /** The inode as sheep makes it for a hyper volume: header, then a depth-1 root with no entries (or all zeros). */
  constructor(withRoot = true) {
    const b = new Uint8Array(SD_INODE_HEADER_SIZE + 8);
    if (withRoot) encodeBtreeHeader({ magic: INODE_BTREE_MAGIC, depth: 1, entries: 0 }, b, SD_INODE_HEADER_SIZE);
    this.objs.set(INODE, b);
  }
  private at(oid: bigint, end: number): Uint8Array {
    let o = this.objs.get(oid) ?? new Uint8Array(0);
    if (o.length < end) {
      const n = new Uint8Array(Math.max(end, o.length * 2));
      n.set(o);
      o = n;
      this.objs.set(oid, o);
    }
    return o;
  }
  read(oid: bigint, offset: number, length: number): Promise<Uint8Array> {
    this.log.push({ op: 'read', oid, offset, length });
    return Promise.resolve(this.at(oid, offset + length).slice(offset, offset + length));
  }
  write(oid: bigint, offset: number, data: Uint8Array): Promise<void> {
    return this.put('write', oid, offset, data);
  }
  create(oid: bigint, data: Uint8Array): Promise<void> {
    return this.put('create', oid, 0, data);
  }
  private put(op: 'write' | 'create', oid: bigint, offset: number, data: Uint8Array): Promise<void> {
    this.log.push({ op, oid, offset, length: data.length });
    if (this.failNext?.(oid, offset)) {
      this.failNext = undefined;
      return Promise.reject(new Error('injected write failure'));
    }
    if (op === 'create' && this.objs.has(oid)) return Promise.reject(new Error(`create of existing ${oid}`));
    if (op === 'write' && !this.objs.has(oid)) return Promise.reject(new Error(`write of missing ${oid}`));
    const o = this.at(oid, offset + data.length);
    o.set(data, offset);
    return Promise.resolve();
  }
}

/** Same entries, in the same order (t.same is slow on a million pairs). */
function sameEntries(a: Iterable<[number, number]>, b: Iterable<[number, number]>): boolean {
  const x = [...a];
  const y = [...b];
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) {
    const p = x[i] as [number, number];
    const q = y[i] as [number, number];
    if (p[0] !== q[0] || p[1] !== q[1]) return false;
  }
  return true;
}

/** Decode the tree as stored: root header, leaves (oid, indirect idx, entries). */
function decodeStored(io: FakeIO): {
  depth: number;
  counter: number;
  leaves: { oid: bigint; idx: number; keys: number[]; vids: number[] }[];
} {
  const inode = io.objs.get(INODE) as Uint8Array;
  const dv = new DataView(inode.buffer, inode.byteOffset);
  const counter = dv.getUint32(INODE_OFF.btreeCounter, true);
  const h = decodeBtreeHeader(inode, SD_INODE_HEADER_SIZE);
  if (h.depth === 1) {
    const keys: number[] = [];
    const vids: number[] = [];
    for (let i = 0; i < h.entries; i++) {
      const e = decodeBtreeIndex(inode, SD_INODE_HEADER_SIZE, i);
      keys.push(e.idx);
      vids.push(e.vdiId);
    }
    return { depth: 1, counter, leaves: [{ oid: INODE, idx: keys.at(-1) ?? 0, keys, vids }] };
  }
  const leaves = [];
  for (let i = 0; i < h.entries; i++) {
    const ind = decodeBtreeIndirect(inode, SD_INODE_HEADER_SIZE, i);
    const leaf = io.objs.get(ind.oid) as Uint8Array;
    const lh = decodeBtreeHeader(leaf);
    const keys: number[] = [];
    const vids: number[] = [];
    for (let k = 0; k < lh.entries; k++) {
      const e = decodeBtreeIndex(leaf, 0, k);
      keys.push(e.idx);
      vids.push(e.vdiId);
    }
    leaves.push({ oid: ind.oid, idx: ind.idx, keys, vids });
  }
  return { depth: h.depth, counter, leaves };
}

/** sheep's search_whole_btree() over the decoded tree: every key must be found where it is. */
function checkLayout(t: Test, s: ReturnType<typeof decodeStored>, expect: Map<number, number>): void {
  let prev = -1;
  let total = 0;
  for (const l of s.leaves) {
    t.ok(l.keys.length <= BTREE_MAX_INDEX, 'leaf within MAX_INDEX');
    for (const k of l.keys) {
      if (k <= prev || k > l.idx) {
        t.fail(`key ${k} out of order or past its indirect idx ${l.idx}`);
        return;
      }
      prev = k;
    }
    if (s.depth === 2) t.equal(l.keys.at(-1), l.idx, 'indirect idx is the largest idx of its leaf');
    total += l.keys.length;
  }
  const got = new Map<number, number>();
  for (const l of s.leaves) l.keys.forEach((k, i) => got.set(k, l.vids[i] as number));
  t.equal(total, expect.size, 'entry count');
  let same = true;
  for (const [k, v] of expect) if (got.get(k) !== v) same = false;
  t.ok(same, 'stored entries are the map written');
}

t.test('fake IndexIO: depth-1 fill, split to depth 2, append, new leaf, leaf split', async (t) => {
  const io = new FakeIO();
  const ix = await HyperIndex.load(io, INODE);
  const expect = new Map<number, number>();
  const put = (k: number, v = VID): void => {
    ix.set(k, v);
    expect.set(k, v);
  };
  // keys 0..262142 and 10^6.. : the root fills up at 524,287
  const lowN = Math.floor(BTREE_MAX_INDEX / 2);
  for (let k = 0; k < lowN; k++) put(k);
  for (let k = 0; k < BTREE_MAX_INDEX - lowN; k++) put(1e6 + k);
  await ix.persist(io, INODE, []);
  t.equal(ix.depth, 1);
  let s = decodeStored(io);
  t.equal(s.depth, 1, 'a full root stays depth 1');
  checkLayout(t, s, expect);

  // one more: transfer_to_idx_root() — halves to btree objects 0 and 1
  io.log.length = 0;
  put(2e6);
  await ix.persist(io, INODE, [2e6]);
  t.equal(ix.depth, 2);
  s = decodeStored(io);
  t.equal(s.depth, 2);
  t.same(
    s.leaves.map((l) => l.oid),
    [vidToBtreeOid(VID, 0), vidToBtreeOid(VID, 1)],
  );
  t.equal(s.counter, 2, 'btree_counter written');
  t.same(
    s.leaves.map((l) => l.keys.length),
    [lowN, BTREE_MAX_INDEX - lowN + 1],
    'left: entries/2, right: the rest plus the new key (appended past the last indirect idx)',
  );
  checkLayout(t, s, expect);
  const ops = io.log.filter((e) => e.op !== 'read').map((e) => `${e.op}:${isVdiBtreeObj(e.oid) ? 'btree' : e.offset}`);
  t.same(ops, [`write:${INODE_OFF.btreeCounter}`, 'create:btree', 'create:btree', `write:${SD_INODE_HEADER_SIZE - 4}`]);

  // fill the last leaf by appending, then one more: a new leaf (not a split)
  const last = s.leaves[1] as { keys: number[] };
  for (let k = 1; last.keys.length + k <= BTREE_MAX_INDEX; k++) put(2e6 + k);
  await ix.persist(io, INODE, []);
  s = decodeStored(io);
  t.equal(s.leaves.length, 2);
  t.equal(s.leaves[1]?.keys.length, BTREE_MAX_INDEX, 'last leaf full');
  put(5e6);
  await ix.persist(io, INODE, []);
  s = decodeStored(io);
  t.equal(s.leaves.length, 3, 'past a full last leaf: a new leaf');
  t.same(s.leaves[2]?.keys, [5e6]);
  t.equal(s.leaves[2]?.oid, vidToBtreeOid(VID, 2));
  checkLayout(t, s, expect);

  // a key inside the full second leaf's range: split_index_node(), first half to a new object before it
  io.log.length = 0;
  put(500_000);
  await ix.persist(io, INODE, []);
  s = decodeStored(io);
  t.equal(s.leaves.length, 4);
  t.equal(s.leaves[1]?.oid, vidToBtreeOid(VID, 3), 'the new first half sits before the old leaf');
  t.equal(s.counter, 4);
  checkLayout(t, s, expect);
  const seq = io.log.filter((e) => e.op !== 'read').map((e) => `${e.op}:${e.oid === INODE ? e.offset : e.oid}`);
  t.same(
    seq,
    [
      `write:${INODE_OFF.btreeCounter}`,
      `create:${vidToBtreeOid(VID, 3)}`,
      `write:${SD_INODE_HEADER_SIZE - 4}`,
      `write:${vidToBtreeOid(VID, 1)}`,
    ],
    'counter, new leaf, root, then the leaf that gave entries away',
  );
  // an update in place touches one leaf and not the root
  io.log.length = 0;
  put(7, 0x99);
  await ix.persist(io, INODE, [7]);
  t.same(
    io.log.map((e) => e.oid),
    [vidToBtreeOid(VID, 0)],
    'only the changed leaf is written',
  );

  // a fresh load returns the same map
  const back = await HyperIndex.load(io, INODE);
  t.equal(back.depth, 2);
  t.ok(sameEntries(back.entries(), ix.entries()), 'reload: same entries');
  t.equal(back.get(500_000), VID);
  t.equal(back.get(7), 0x99);
  t.equal(back.get(499_999), 0);
  // discard keeps the entry with vdi_id 0 (as DISCARD_OBJ leaves it)
  back.set(5e6, 0);
  await back.persist(io, INODE, [5e6]);
  t.equal(decodeStored(io).leaves[3]?.vids[0], 0);
  t.equal((await HyperIndex.load(io, INODE)).get(5e6), 0);
});

t.test('fake IndexIO: a failed write is redone whole by the next one', async (t) => {
  const io = new FakeIO(false);
  const ix = HyperIndex.empty();
  for (let k = 0; k <= BTREE_MAX_INDEX; k++) ix.set(k * 3, VID);
  io.failNext = (oid, off) => oid === INODE && off === SD_INODE_HEADER_SIZE - 4;
  await t.rejects(ix.persist(io, INODE, []), /injected/);
  t.equal(decodeStored(io).depth, 0, 'root not written: the inode still reads as before');
  ix.set(1, VID);
  await ix.persist(io, INODE, [1]);
  const back = await HyperIndex.load(io, INODE);
  t.ok(sameEntries(back.entries(), ix.entries()), 'reload: same entries');
});

t.test('fake IndexIO: persists queued behind a write share the next one', async (t) => {
  const io = new FakeIO();
  const ix = HyperIndex.empty();
  io.log.length = 0;
  const ps: Promise<void>[] = [];
  for (let k = 0; k < 100; k++) {
    ix.set(k, VID);
    ps.push(ix.persist(io, INODE, [k]));
  }
  await Promise.all(ps);
  t.ok(io.log.length <= 2, `100 allocations, ${io.log.length} root writes`);
  t.equal(decodeStored(io).leaves[0]?.keys.length, 100);
});

async function embedded(t: Test): Promise<{ sheep: EmbeddedSheep; client: SheepdogClient }> {
  const c = await withCluster(t, { nodes: 3, copies: 2 });
  return { sheep: c.sheep as EmbeddedSheep, client: c.client };
}

t.test(
  'embedded sheep: split to depth 2 through the API, concurrent allocations, discard, reopen, delete',
  async (t) => {
    const { sheep, client } = await embedded(t);
    const info = await client.createVdi('big', 8 * TiB);
    t.equal(info.storePolicy, 1);
    const vid = info.vdiId;
    const inode = vidToVdiOid(vid);
    // A full depth-1 root written directly (524,287 entries of even idx,
    // objects that do not exist: never read here), so the next allocation splits.
    const root = new Uint8Array(4 + 8 + 8 * BTREE_MAX_INDEX);
    encodeBtreeHeader({ magic: INODE_BTREE_MAGIC, depth: 1, entries: BTREE_MAX_INDEX }, root, 4);
    for (let i = 0; i < BTREE_MAX_INDEX; i++) encodeBtreeIndex({ idx: 2 * i, vdiId: vid }, root, 4, i);
    await writeObject(client.transport, inode, SD_INODE_HEADER_SIZE - 4, root);

    // count index writes
    let indexWrites = 0;
    const inner = client.transport;
    const transport: Transport = {
      get nodes() {
        return inner.nodes;
      },
      request(req, body, opts) {
        if (
          req.kind === 'obj' &&
          (req.opcode === Op.WRITE_OBJ || req.opcode === Op.CREATE_AND_WRITE_OBJ) &&
          (isVdiObj(req.oid) || isVdiBtreeObj(req.oid))
        )
          indexWrites++;
        return inner.request(req, body, opts);
      },
      close: async () => {},
      destroy: () => {},
    };
    const c2 = new SheepdogClient({ transport });
    const OBJ = 4 * MiB;
    const v = await c2.openVdi('big');
    const a = pattern(4096, 1);
    await v.write(a, 1 * OBJ + 100); // odd idx inside the full root: split
    const store = sheep.cluster.store;
    const inodeObj = store.get(inode);
    if (!inodeObj) throw new Error('no inode');
    const rootHdr = decodeBtreeHeader(inodeObj.read(SD_INODE_HEADER_SIZE, 8));
    t.equal(rootHdr.depth, 2, 'the root split to depth 2');
    t.equal(rootHdr.entries, 2);
    t.equal(inodeObj.u32(INODE_OFF.btreeCounter), 2);
    t.equal(hyperFind(inodeObj, 1, (o) => store.get(o))?.vid, vid, "sheep's lookup finds the new object");
    t.equal(hyperFind(inodeObj, 2 * 300_000, (o) => store.get(o))?.vid, vid, '… and an old one');

    // concurrent allocations at depth 2: 64 writes, batched index writes
    indexWrites = 0;
    const idxs = Array.from({ length: 64 }, (_, i) => 2 * 600_000 + 2 * i + 1);
    await Promise.all(idxs.map((idx, i) => v.write(pattern(512, 100 + i), idx * OBJ)));
    t.ok(indexWrites < 64, `64 allocating writes, ${indexWrites} index writes`);
    t.comment(`64 concurrent allocations at depth 2: ${indexWrites} index writes`);
    let walked = 0;
    hyperWalk(
      inodeObj,
      (o) => store.get(o),
      () => walked++,
    );
    t.equal(walked, BTREE_MAX_INDEX + 1 + 64, 'sheep walks every entry');

    // discard at depth 2: DISCARD_OBJ edits the leaf in place
    await v.discard(1 * OBJ, OBJ);
    t.equal(hyperFind(inodeObj, 1, (o) => store.get(o))?.vid, 0, 'DISCARD_OBJ cleared the entry in the leaf');
    t.notOk(store.get(vidToDataOid(vid, 1)), 'object removed');
    t.ok((await v.read(1 * OBJ + 100, 4096)).equals(Buffer.alloc(4096)), 'discarded range reads zeros');
    await v.close();

    // reopen: the index reads back from the depth-2 tree
    const r = await client.openVdi('big');
    t.equal(r.objectOwner(1), 0);
    for (const [i, idx] of idxs.entries()) {
      if (!(await r.read(idx * OBJ, 512)).equals(pattern(512, 100 + i))) t.fail(`object ${idx} reads back`);
    }
    t.equal(r.objectOwner(2 * 300_000), vid);
    t.equal([...r.allocation()].length, BTREE_MAX_INDEX + 64);
    await r.close();
    await c2.close();

    // DEL_VDI walks the depth-2 tree and removes the objects
    await client.deleteVdi('big');
    t.notOk(store.get(vidToDataOid(vid, idxs[0] as number)), 'deleted with the VDI');
  },
);

t.test('a 16 PiB volume: sizes as bigint, objects up to 2^32, I/O below 2^53', async (t) => {
  const { client } = await embedded(t);
  const size = 2n ** 54n;
  const info = await client.createVdi('huge', size);
  t.equal(info.storePolicy, 1);
  const v = await client.openVdi('huge');
  t.equal(v.inode.vdiSize, size, 'exact size in the inode header');
  const top = Number.MAX_SAFE_INTEGER - 4096; // the last 4 KiB that ends at or below 2^53 - 1
  const d = pattern(4096, 7);
  await v.write(d, top);
  const idx = Math.floor(top / v.objectSize);
  t.equal(idx, 2 ** 31 - 1);
  t.equal(v.objectOwner(idx), v.vid);
  t.same(v.allocatedRanges(), [{ offset: idx * v.objectSize, length: v.objectSize }], 'offset 2^53 - 4 MiB, exact');
  await t.rejects(
    v.write(d, top + 4096),
    { code: 'SHEEPDOG_ERR_INVALID_ARGUMENT' },
    'past 2^53 - 1: refused, not rounded',
  );
  await v.close();
  const r = await client.openVdi('huge');
  t.ok((await r.read(top, 4096)).equals(d), 'reads back after reopen');
  await r.close();
  await client.resizeVdi('huge', size); // same size: no-op
  await t.rejects(client.resizeVdi('huge', size + 1n), /cannot grow|past sheep/);
});
