// Many requests in flight per connection, several connections and nodes on
// one cluster state, deliberate reordering, serialized cluster operations,
// and null mode.
import t from 'tap';
import { startEmbeddedSheep } from '../../testing/embedded.js';
import { Flag, objRequest, Op, Result, vdiRequest, vidToDataOid, vidToVdiOid } from '../../protocol/index.js';
import { MiniDog } from './dog.js';
import { createObj, type Frame, nameBody, newVdi, RawClient, readObj } from './raw.js';

t.test('pipelined requests on one connection, answered by id', async (t) => {
  const sheep = await startEmbeddedSheep({ nodes: 3, copies: 2 });
  t.teardown(() => sheep.close());
  const c = await RawClient.connect(sheep.addresses[0] as string);
  t.teardown(() => c.close());
  const n = 200;
  for (let i = 0; i < n; i++) {
    const body = Buffer.from(`object ${i}`);
    c.send(
      objRequest(Op.CREATE_AND_WRITE_OBJ, {
        id: i + 1,
        flags: Flag.CMD_WRITE,
        oid: vidToDataOid(7, i),
        dataLength: body.length,
      }),
      body,
    );
  }
  for (let i = 0; i < n; i++)
    c.send(objRequest(Op.READ_OBJ, { id: 1000 + i, oid: vidToDataOid(7, i), dataLength: 12 }));
  const writes = await Promise.all(Array.from({ length: n }, (_, i) => c.next((f) => f.rsp.id === i + 1)));
  t.ok(writes.every((f) => f.rsp.result === Result.SUCCESS));
  const reads = await Promise.all(Array.from({ length: n }, (_, i) => c.next((f) => f.rsp.id === 1000 + i)));
  t.ok(reads.every((f, i) => f.body.subarray(0, `object ${i}`.length).toString() === `object ${i}`));
});

t.test('several nodes share one cluster state', async (t) => {
  const sheep = await startEmbeddedSheep({ nodes: 3, copies: 2 });
  t.teardown(() => sheep.close());
  const cs = await Promise.all(sheep.addresses.map((a) => RawClient.connect(a)));
  t.teardown(() => {
    for (const c of cs) c.close();
  });
  const [c0, c1, c2] = cs as [RawClient, RawClient, RawClient];
  const v = await new MiniDog(c0).create('shared', 2 ** 22);
  await new MiniDog(c1).write('shared', 100, Buffer.from('via node 1'));
  t.equal((await new MiniDog(c2).read(v, 100, 10)).toString(), 'via node 1');
  t.equal(sheep.stats.connections, 3);
  // cluster operations are totally ordered: the same NEW_VDI from three nodes at once
  for (const c of cs)
    c.send(vdiRequest(Op.NEW_VDI, { id: 9, flags: Flag.CMD_WRITE, dataLength: 256, vdiSize: 1n }), nameBody('race'));
  const results = await Promise.all(cs.map((c) => c.next((f) => f.rsp.id === 9)));
  t.same(results.map((f) => f.rsp.result).sort(), [Result.SUCCESS, Result.VDI_EXIST, Result.VDI_EXIST]);
});

t.test('reorder: replies of one batch leave in reverse order', async (t) => {
  const sheep = await startEmbeddedSheep({ nodes: 1, copies: 1, reorder: true });
  t.teardown(() => sheep.close());
  const c = await RawClient.connect(sheep.addresses[0] as string);
  t.teardown(() => c.close());
  await createObj(c, vidToDataOid(1, 0), 0, Buffer.from('0123456789'));
  const ids = [1, 2, 3, 4, 5, 6, 7, 8];
  c.socket.cork();
  for (const id of ids) c.send(objRequest(Op.READ_OBJ, { id, oid: vidToDataOid(1, 0), offset: id, dataLength: 1 }));
  c.socket.uncork();
  const got: Frame[] = [];
  for (const _ of ids) got.push(await c.next());
  const order = got.map((f) => f.rsp.id);
  t.not(order.join(), ids.join(), `out of order: ${order.join()}`);
  t.ok(
    got.every((f) => f.body.toString() === String(f.rsp.id)),
    'each reply still carries its own data',
  );
  sheep.setReorder(false);
  c.socket.cork();
  for (const id of ids)
    c.send(objRequest(Op.READ_OBJ, { id: 100 + id, oid: vidToDataOid(1, 0), offset: id, dataLength: 1 }));
  c.socket.uncork();
  const inOrder: number[] = [];
  for (const _ of ids) inOrder.push((await c.next()).rsp.id);
  t.same(
    inOrder,
    ids.map((i) => 100 + i),
    'in order again',
  );
});

t.test('null mode: inodes kept, data dropped, reads are zeros', async (t) => {
  const sheep = await startEmbeddedSheep({ nodes: 1, copies: 1, nullMode: true });
  t.teardown(() => sheep.close());
  const c = await RawClient.connect(sheep.addresses[0] as string);
  t.teardown(() => c.close());
  const f = await newVdi(c, 'bench', 1n << 30n);
  t.equal(f.rsp.result, Result.SUCCESS);
  const vid = f.rsp.kind === 'vdi' ? f.rsp.vdiId : 0;
  const dog = new MiniDog(c);
  t.equal(await dog.vid('bench'), vid);
  t.equal((await createObj(c, vidToDataOid(vid, 0), 0, Buffer.alloc(2 ** 22, 9))).rsp.result, Result.SUCCESS);
  const r = await readObj(c, vidToDataOid(vid, 5), 100, 4096);
  t.equal(r.rsp.result, Result.SUCCESS);
  t.ok(r.body.length === 4096 && r.body.every((b) => b === 0));
  t.equal(sheep.stats.objects, 1, 'only the inode');
  t.equal((await readObj(c, vidToVdiOid(vid), 0, 5)).body.toString(), 'bench');
});
