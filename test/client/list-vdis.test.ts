// listVdis' bitmap scan (liveVids) against the plain bit-by-bit reading of
// the READ_VDIS / READ_DEL_VDIS bitmaps, and the listing itself: the same
// VDIs, used and shared as getVdi, with deleted ones left out.
import fc from 'fast-check';
import t from 'tap';
import { VDI_BITMAP_SIZE } from '../../protocol/constants.js';
import { bitmapSet, bitmapTest } from '../../protocol/records/bitmap.js';
import { SheepdogClient, liveVids } from '../../lib/client/client.js';
import { startMemorySheep } from '../../testing/index.js';

function reference(inuse: Uint8Array, deleted: Uint8Array): number[] {
  const out: number[] = [];
  for (let v = 1; v < inuse.length * 8; v++) if (bitmapTest(inuse, v) && !bitmapTest(deleted, v)) out.push(v);
  return out;
}

t.test('liveVids: every set bit not deleted, ascending, never vid 0', async (t) => {
  const inuse = new Uint8Array(VDI_BITMAP_SIZE);
  const deleted = new Uint8Array(VDI_BITMAP_SIZE);
  for (const v of [0, 1, 7, 8, 31, 32, 0xabcdef, 0xfffffe, 0xffffff]) bitmapSet(inuse, v);
  bitmapSet(deleted, 8);
  bitmapSet(deleted, 0xabcdef);
  t.same(liveVids(inuse, deleted), [1, 7, 31, 32, 0xfffffe, 0xffffff]);
  t.same(liveVids(inuse, new Uint8Array(0)), [1, 7, 8, 31, 32, 0xabcdef, 0xfffffe, 0xffffff], 'no deleted bitmap');
  t.same(liveVids(new Uint8Array(VDI_BITMAP_SIZE), deleted), [], 'empty');
});

t.test('liveVids matches the bit-by-bit reading (any offset, a short deleted bitmap)', async (t) => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 0, maxLength: 64 }),
      fc.uint8Array({ minLength: 0, maxLength: 64 }),
      fc.integer({ min: 0, max: 7 }),
      (a, d, off) => {
        // A view at an odd offset of a larger buffer, as a reply body can be.
        const big = new Uint8Array(a.length + off);
        big.set(a, off);
        const inuse = big.subarray(off);
        return JSON.stringify(liveVids(inuse, d)) === JSON.stringify(reference(inuse, d));
      },
    ),
  );
  t.pass('matches');
});

t.test('liveVids across its 4 KiB scan blocks: sparse bits, near every block edge', async (t) => {
  let runs = 0;
  fc.assert(
    fc.property(
      // Bytes set at random places, and on both sides of each block edge.
      fc.array(fc.tuple(fc.integer({ min: 0, max: 3 * 4096 + 16 }), fc.integer({ min: 1, max: 255 })), {
        maxLength: 40,
      }),
      fc.subarray([4095, 4096, 8191, 8192, 12287, 12288, 3 * 4096 + 16]),
      fc.integer({ min: 0, max: 7 }),
      fc.boolean(),
      (set, edges, off, withDeleted) => {
        const big = new Uint8Array(3 * 4096 + 17 + off);
        const inuse = big.subarray(off);
        for (const [i, v] of set) inuse[i] = v;
        for (const i of edges) inuse[i] = 0x81;
        const d = withDeleted ? inuse.map((x, i) => (i % 3 === 0 ? x & 0x0f : 0)) : new Uint8Array(0);
        runs++;
        return JSON.stringify(liveVids(inuse, d)) === JSON.stringify(reference(inuse, d));
      },
    ),
  );
  t.equal(runs, 100, 'fast-check ran its 100 cases, all matching');
});

t.test('listVdis: every VDI once, used and shared as getVdi, deleted ones gone', async (t) => {
  const sheep = await startMemorySheep({ nodes: 1, copies: 1 });
  const c = new SheepdogClient({ nodes: [...sheep.addresses] });
  t.teardown(async () => {
    await c.close();
    await sheep.close();
  });
  const names = Array.from({ length: 150 }, (_, i) => `list-${i}`);
  await Promise.all(names.map((n) => c.createVdi(n, 64 * 2 ** 20)));
  for (const n of ['list-3', 'list-77']) {
    const v = await c.openVdi(n);
    await v.write(Buffer.alloc(4096, 1), 0);
    await v.write(Buffer.alloc(4096, 1), 9 * 4 * 2 ** 20);
    await v.close();
  }
  await c.createVdi('list-hyper', 64 * 2 ** 20, { hyper: true });
  const hv = await c.openVdi('list-hyper');
  await hv.write(Buffer.alloc(4096, 1), 5 * 4 * 2 ** 20);
  await hv.close();
  await c.snapshotVdi('list-3', 's1');
  await c.cloneVdi('list-3', 's1', 'list-3-clone');
  await c.deleteVdi('list-5');
  const list = await c.listVdis();
  const seen = list.map((v) => `${v.name}@${v.snapId}`);
  t.equal(new Set(seen).size, seen.length, 'no VDI twice');
  t.notOk(
    list.some((v) => v.name === 'list-5'),
    'the deleted VDI is not listed',
  );
  t.equal(
    list.filter((v) => v.name.startsWith('list-')).length,
    150 - 1 + 3,
    'the others, the snapshot, the clone, the hyper volume',
  );
  for (const v of list.filter((x) => ['list-3', 'list-77', 'list-3-clone', 'list-0', 'list-hyper'].includes(x.name))) {
    const g = await c.getVdi(v.name, v.snapshot ? { snapshot: v.snapId } : {});
    t.equal(v.used, g.used, `${v.name}@${v.snapId} used`);
    t.equal(v.shared, g.shared, `${v.name}@${v.snapId} shared`);
  }
  t.equal(list.find((v) => v.name === 'list-77')?.used, 2 * 4 * 2 ** 20, 'two objects written');
  t.equal(list.find((v) => v.name === 'list-hyper')?.used, 4 * 2 ** 20, 'the hyper volume: its B-tree walked');
  t.equal(list.find((v) => v.name === 'list-3-clone')?.shared, 2 * 4 * 2 ** 20, 'the clone shares them');
});
