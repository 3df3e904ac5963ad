// Fault injection of the embedded sheep, observed from a raw protocol client.
import t, { type Test } from 'tap';
import { type EmbeddedSheep, startEmbeddedSheep } from '../../testing/embedded.js';
import { Op, plainRequest, Result, VDI_BITMAP_SIZE } from '../../protocol/index.js';
import { RawClient } from './raw.js';

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
