// Fault injection of the embedded sheep, observed from a raw protocol client.
import t, { type Test } from 'tap';
import { type EmbeddedSheep, startEmbeddedSheep } from '../../testing/embedded.js';
import {
  encodeRequest,
  Flag,
  objRequest,
  Op,
  plainRequest,
  Result,
  VDI_BITMAP_SIZE,
  vidToDataOid,
} from '../../protocol/index.js';
import { createObj, newVdi, RawClient, readObj } from './raw.js';

async function setup(t: Test): Promise<{ sheep: EmbeddedSheep; c: RawClient }> {
  const sheep = await startEmbeddedSheep({ nodes: 2, copies: 2 });
  const c = await RawClient.connect(sheep.addresses[0] as string);
  t.teardown(async () => {
    c.close();
    await sheep.close();
  });
  return { sheep, c };
}

const readVdis = (id: number) => plainRequest(Op.READ_VDIS, { id, dataLength: VDI_BITMAP_SIZE });
const nodeList = (id: number) => plainRequest(Op.GET_NODE_LIST, { id, dataLength: 4096 });

t.test('delay: the reply comes after later ones', async (t) => {
  const { sheep, c } = await setup(t);
  sheep.inject(0, { kind: 'delay', ms: 100, opcode: Op.READ_VDIS });
  // one write: both requests are handled in the same turn, before any timer
  c.socket.cork();
  c.send(readVdis(1));
  c.send(nodeList(2));
  c.socket.uncork();
  const first = await c.next();
  const second = await c.next();
  t.equal(first.rsp.id, 2, 'the undelayed reply first');
  t.equal(second.rsp.id, 1);
  t.equal(second.rsp.result, Result.SUCCESS, 'the delayed one is a normal reply');
});

t.test('stall: never answered, the connection keeps working', async (t) => {
  const { sheep, c } = await setup(t);
  sheep.inject(0, { kind: 'stall', opcode: Op.READ_VDIS, times: 1 });
  c.send(readVdis(1));
  const r = await c.call(nodeList(2));
  t.equal(r.rsp.result, Result.SUCCESS);
  const r3 = await c.call(readVdis(3));
  t.equal(r3.rsp.result, Result.SUCCESS, 'times: 1 expired');
  t.equal(c.unread, 0, 'request 1 was never answered');
});

t.test('drop after N requests', async (t) => {
  const { sheep, c } = await setup(t);
  sheep.inject(0, { kind: 'drop', after: 2 });
  t.equal((await c.call(nodeList(1))).rsp.result, Result.SUCCESS);
  t.equal((await c.call(nodeList(2))).rsp.result, Result.SUCCESS);
  await t.rejects(c.call(nodeList(3)), 'the third closes the connection');
  await c.whenClosed;
  t.ok(c.closed);
  // the fault keeps applying to new connections (after is spent)
  const c2 = await RawClient.connect(sheep.addresses[0] as string);
  t.teardown(() => c2.close());
  await t.rejects(c2.call(nodeList(1)));
  sheep.clearFaults(0);
  const c3 = await RawClient.connect(sheep.addresses[0] as string);
  t.teardown(() => c3.close());
  t.equal((await c3.call(nodeList(1))).rsp.result, Result.SUCCESS, 'cleared');
});

t.test('dropMidFrame: part of the reply, then close', async (t) => {
  const { sheep, c } = await setup(t);
  sheep.inject(0, { kind: 'dropMidFrame', opcode: Op.READ_VDIS });
  c.send(readVdis(1));
  await c.whenClosed;
  t.equal(c.unread, 0, 'no complete frame');
  t.ok(c.buffered > 0, `half a frame arrived (${c.buffered} bytes)`);
});

t.test('result: a chosen code for a chosen opcode, for a number of times', async (t) => {
  const { sheep, c } = await setup(t);
  const h = sheep.inject(0, { kind: 'result', result: Result.NETWORK_ERROR, opcode: Op.GET_NODE_LIST, times: 2 });
  t.equal((await c.call(nodeList(1))).rsp.result, Result.NETWORK_ERROR);
  const other = await c.call(readVdis(2));
  t.equal(other.rsp.result, Result.SUCCESS, 'other opcodes unaffected');
  const r = await c.call(nodeList(3));
  t.equal(r.rsp.result, Result.NETWORK_ERROR);
  t.equal(r.rsp.dataLength, 0);
  t.equal((await c.call(nodeList(4))).rsp.result, Result.SUCCESS, 'expired');
  h.remove();
  const h2 = sheep.inject(0, { kind: 'result', result: Result.HALT });
  t.equal((await c.call(readVdis(5))).rsp.result, Result.HALT);
  h2.remove();
  t.equal((await c.call(readVdis(6))).rsp.result, Result.SUCCESS, 'removed');
});

t.test('unknownId: the reply carries an id nobody sent', async (t) => {
  const { sheep, c } = await setup(t);
  sheep.inject(0, { kind: 'unknownId', times: 1 });
  c.send(nodeList(7));
  const f = await c.next();
  t.not(f.rsp.id, 7);
  t.equal(f.rsp.opcode, Op.GET_NODE_LIST);
  t.equal((await c.call(nodeList(8))).rsp.id, 8);
});

t.test('corruptHeader: a garbage header the decoder refuses', async (t) => {
  const { sheep, c } = await setup(t);
  sheep.inject(0, { kind: 'corruptHeader' });
  await t.rejects(c.call(nodeList(1)));
  t.ok(c.protocolError, `decoder error: ${c.protocolError?.message}`);
});

t.test('faults are per node, validated, and counted per match', async (t) => {
  const { sheep, c } = await setup(t);
  sheep.inject(1, { kind: 'result', result: Result.SHUTDOWN });
  t.equal((await c.call(nodeList(1))).rsp.result, Result.SUCCESS, 'node 0 unaffected');
  const c1 = await RawClient.connect(sheep.addresses[1] as string);
  t.teardown(() => c1.close());
  t.equal((await c1.call(nodeList(1))).rsp.result, Result.SHUTDOWN);
  sheep.clearFaults();
  t.equal((await c1.call(nodeList(2))).rsp.result, Result.SUCCESS);
  sheep.inject(1, { kind: 'result', result: Result.EIO, opcode: Op.READ_VDIS, after: 1, times: 1 });
  t.equal((await c1.call(readVdis(3))).rsp.result, Result.SUCCESS, 'after: 1 lets one through');
  t.equal((await c1.call(nodeList(4))).rsp.result, Result.SUCCESS, 'other opcodes do not count');
  t.equal((await c1.call(readVdis(5))).rsp.result, Result.EIO);
  t.equal((await c1.call(readVdis(6))).rsp.result, Result.SUCCESS);
  t.throws(() => sheep.inject(0, { kind: 'nope' } as never));
  t.throws(() => sheep.inject(0, { kind: 'delay', ms: -1 }));
  t.throws(() => sheep.inject(9, { kind: 'stall' }));
});

t.test('delayed replies of a closed cluster are dropped cleanly', async (t) => {
  const { sheep, c } = await setup(t);
  sheep.inject(0, { kind: 'delay', ms: 60_000 });
  c.send(nodeList(1));
  await new Promise((r) => setImmediate(r));
  await sheep.close();
  await c.whenClosed;
  t.ok(c.closed);
});

// ------------------------------------------------ faults around execution

/** A VDI with data object 0 holding 'old.'; returns that object's id. */
async function dataObject(t: Test, c: RawClient, name = 'v'): Promise<bigint> {
  const v = await newVdi(c, name, 16n * 2n ** 20n);
  t.equal(v.rsp.result, Result.SUCCESS);
  const oid = vidToDataOid(v.rsp.kind === 'vdi' ? v.rsp.vdiId : 0, 0);
  t.equal((await createObj(c, oid, 0, Buffer.from('old.'))).rsp.result, Result.SUCCESS);
  return oid;
}

const writeReq = (id: number, oid: bigint, data: string) =>
  [
    objRequest(Op.WRITE_OBJ, { id, flags: Flag.CMD_WRITE, oid, offset: 0, dataLength: data.length }),
    Buffer.from(data),
  ] as const;

async function content(t: Test, c: RawClient, oid: bigint): Promise<string> {
  const r = await readObj(c, oid, 0, 4);
  t.equal(r.rsp.result, Result.SUCCESS);
  return r.body.toString();
}

/** Wait (by polling, not a fixed sleep) until the sheep has closed its side of all but `n` connections. */
async function connectionsDownTo(sheep: EmbeddedSheep, n: number): Promise<void> {
  while (sheep.stats.connections > n) await new Promise((r) => setTimeout(r, 2));
}

t.test('execute-drop-reply: the request is applied, its reply never comes', async (t) => {
  const { sheep, c } = await setup(t);
  const oid = await dataObject(t, c);
  const h = sheep.inject(0, { kind: 'execute-drop-reply', opcode: Op.WRITE_OBJ, oid, times: 1 });
  c.send(...writeReq(1000, oid, 'new!'));
  // handled after the write on the same connection
  t.equal(await content(t, c, oid), 'new!', 'the write landed');
  t.equal(h.hits, 1);
  t.equal(h.executed, 1);
  t.equal(h.replied, 0);
  await h.settled();
  t.equal((await c.call(nodeList(1001))).rsp.result, Result.SUCCESS, 'the connection still works');
  t.equal(c.unread, 0, 'no reply for request 1000 ever arrived');
  t.notOk(c.closed);
});

t.test('drop-before-execute: never applied, never answered, no slot held', async (t) => {
  const { sheep, c } = await setup(t);
  const oid = await dataObject(t, c);
  const other = await dataObject(t, c, 'w');
  const h = sheep.inject(0, { kind: 'drop-before-execute', opcode: Op.WRITE_OBJ, oid, times: 1 });
  c.send(...writeReq(1000, other, 'oth!')); // another object: not matched
  c.send(...writeReq(1001, oid, 'lost'));
  t.equal((await c.next((f) => f.rsp.id === 1000)).rsp.result, Result.SUCCESS);
  t.equal(await content(t, c, other), 'oth!');
  // the read is handled after the dropped write on the same connection
  t.equal(await content(t, c, oid), 'old.', 'the dropped write did not land');
  t.equal(h.hits, 1);
  t.equal(h.executed, 0, 'never executed');
  await h.settled();
  t.equal(h.executed, 0, 'nor later');
  c.send(...writeReq(1002, oid, 'next'));
  t.equal((await c.next((f) => f.rsp.id === 1002)).rsp.result, Result.SUCCESS, 'times: 1 expired');
  t.equal(await content(t, c, oid), 'next');
  t.equal(c.unread, 0, 'no reply for request 1001');

  // unlike stall, a dropped request does not count against the in-flight cap (256)
  sheep.inject(0, { kind: 'drop-before-execute', opcode: Op.READ_VDIS });
  c.socket.cork();
  for (let i = 0; i < 300; i++) c.send(readVdis(2000 + i));
  c.socket.uncork();
  t.equal((await c.call(nodeList(3000))).rsp.result, Result.SUCCESS, 'answered after 300 dropped requests');
});

t.test('execute-late: later requests to the same object run first, the held one after them', async (t) => {
  const { sheep, c } = await setup(t);
  const oid = await dataObject(t, c);
  const h = sheep.inject(0, { kind: 'execute-late', ms: 30, overtakenBy: 2, opcode: Op.WRITE_OBJ, oid, times: 1 });
  const t0 = Date.now();
  c.socket.cork();
  c.send(...writeReq(1000, oid, 'AAAA')); // held
  c.send(...writeReq(1001, oid, 'BBBB')); // later request 1
  c.send(objRequest(Op.READ_OBJ, { id: 1002, oid, offset: 0, dataLength: 4 })); // later request 2
  c.socket.uncork();
  const w2 = await c.next();
  const r = await c.next();
  const w1 = await c.next();
  t.same([w2.rsp.id, r.rsp.id, w1.rsp.id], [1001, 1002, 1000], 'the held write is answered last');
  t.equal(r.body.toString(), 'BBBB', 'the later write landed before the held one ran');
  t.equal(w1.rsp.result, Result.SUCCESS);
  t.ok(Date.now() - t0 >= 25, 'and not before its delay');
  t.equal(await content(t, c, oid), 'AAAA', 'the held write landed last');
  t.equal(h.executed, 1);
  t.equal(h.replied, 1);
});

t.test('execute-late: later requests of other connections count, and a held request outlives its client', async (t) => {
  const { sheep, c } = await setup(t);
  const oid = await dataObject(t, c);
  const h = sheep.inject(0, { kind: 'execute-late', opcode: Op.WRITE_OBJ, oid, times: 1 }); // overtakenBy 1
  const c1 = await RawClient.connect(sheep.addresses[0] as string);
  c1.send(...writeReq(1, oid, 'AAAA'));
  await h.taken();
  c1.close();
  await connectionsDownTo(sheep, 1);
  t.equal(h.executed, 0, 'still held');
  const [req, body] = writeReq(5, oid, 'BBBB');
  t.equal((await c.call(req, body)).rsp.result, Result.SUCCESS);
  await h.settled();
  t.equal(h.executed, 1, 'run although its connection is gone (sheep finishes what it received)');
  t.equal(h.replied, 0, 'its reply was dropped');
  t.equal(await content(t, c, oid), 'AAAA');
});

t.test('execute-late: a stopped node drops what it holds', async (t) => {
  const { sheep, c } = await setup(t);
  const oid = await dataObject(t, c);
  const h = sheep.inject(1, { kind: 'execute-late', overtakenBy: 10, opcode: Op.WRITE_OBJ });
  const c1 = await RawClient.connect(sheep.addresses[1] as string);
  t.teardown(() => c1.close());
  c1.send(...writeReq(1, oid, 'AAAA'));
  await h.taken();
  await sheep.stopNode(1);
  await h.settled();
  t.equal(h.executed, 0);
  t.equal(await content(t, c, oid), 'old.');
});

t.test('close-mid-payload: closed while the payload arrives, never applied', async (t) => {
  const { sheep, c } = await setup(t);
  const oid = await dataObject(t, c);
  const h = sheep.inject(0, { kind: 'close-mid-payload', opcode: Op.WRITE_OBJ, oid, bytes: 100, times: 1 });
  // header + 200 of 4096 payload bytes; the rest is never sent
  const c1 = await RawClient.connect(sheep.addresses[0] as string);
  const hdr = Buffer.alloc(48);
  encodeRequest(objRequest(Op.WRITE_OBJ, { id: 1, flags: Flag.CMD_WRITE, oid, offset: 0, dataLength: 4096 }), hdr);
  c1.writeRaw(Buffer.concat([hdr, Buffer.alloc(200, 0x41)]));
  await c1.whenClosed;
  t.equal(c1.unread, 0, 'no reply');
  t.equal(h.hits, 1);
  t.equal(h.executed, 0);
  await h.settled();
  t.equal(await content(t, c, oid), 'old.', 'nothing applied');

  // the whole frame in one write: still cut; a complete request before it in the same chunk runs
  const h2 = sheep.inject(0, { kind: 'close-mid-payload', opcode: Op.WRITE_OBJ, oid, after: 1, times: 1 });
  const c2 = await RawClient.connect(sheep.addresses[0] as string);
  const frame = (id: number, data: string): Buffer => {
    const [req, body] = writeReq(id, oid, data);
    const b = Buffer.alloc(48);
    encodeRequest(req, b);
    return Buffer.concat([b, body]);
  };
  const tail = Buffer.alloc(48);
  encodeRequest(nodeList(3), tail);
  c2.writeRaw(Buffer.concat([frame(1, 'AAAA'), frame(2, 'BBBB'), tail]));
  await c2.whenClosed;
  await h2.settled();
  t.equal(h2.hits, 1);
  t.equal(h2.executed, 0);
  t.equal(await content(t, c, oid), 'AAAA', 'the first write ran, the cut one did not');
  t.notOk(c.closed, 'other connections unaffected');
});

t.test('new fault options are validated', async (t) => {
  const { sheep } = await setup(t);
  t.throws(() => sheep.inject(0, { kind: 'execute-late', ms: -1 }));
  t.throws(() => sheep.inject(0, { kind: 'execute-late', overtakenBy: 1.5 }));
  t.throws(() => sheep.inject(0, { kind: 'close-mid-payload', bytes: -1 }));
  t.throws(() => sheep.inject(0, { kind: 'stall', oid: 5 as unknown as bigint }));
  t.throws(() => sheep.inject(0, { kind: 'stall', oid: -1n }));
});
