// Bad input and bounds: fuzzed frames never crash the server and only cost
// the connection that sent them; sizes and memory stay bounded.
import fc from 'fast-check';
import t, { type Test } from 'tap';
import { type EmbeddedSheep, startEmbeddedSheep } from '../../testing/embedded.js';
import {
  encodeRequest,
  Flag,
  objRequest,
  Op,
  plainRequest,
  Result,
  SD_NODE_SIZE,
  vidToDataOid,
} from '../../protocol/index.js';
import { createObj, RawClient, readObj } from './raw.js';

const MiB = 2 ** 20;

async function setup(t: Test, o: Parameters<typeof startEmbeddedSheep>[0] = {}): Promise<EmbeddedSheep> {
  const sheep = await startEmbeddedSheep({ nodes: 2, copies: 2, lock: true, ...o });
  t.teardown(() => sheep.close());
  return sheep;
}

async function alive(t: Test, sheep: EmbeddedSheep, i = 0): Promise<void> {
  const c = await RawClient.connect(sheep.addresses[i] as string);
  try {
    const r = await c.call(plainRequest(Op.GET_NODE_LIST, { dataLength: 16 * SD_NODE_SIZE }));
    t.equal(r.rsp.result, Result.SUCCESS, 'another connection still works');
  } finally {
    c.close();
  }
}

const until = async (cond: () => boolean): Promise<void> => {
  while (!cond()) await new Promise((r) => setTimeout(r, 5));
};

t.test('fuzz: random bytes cost only their connection', async (t) => {
  const sheep = await setup(t, { maxDataLength: MiB });
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ minLength: 0, maxLength: 600 }), async (bytes) => {
      const c = await RawClient.connect(sheep.addresses[0] as string);
      c.writeRaw(bytes);
      // a complete frame here and there gets an answer; then go away mid-whatever
      await new Promise((r) => setImmediate(r));
      c.close();
      await c.whenClosed;
    }),
    { numRuns: 60 },
  );
  await alive(t, sheep);
  t.same(sheep.internalErrors, [], 'no op threw');
  await until(() => sheep.stats.connections === 0);
  t.equal(sheep.stats.connections, 0, 'every fuzz connection was cleaned up');
});

t.test('fuzz: random headers of real opcodes all get an answer', async (t) => {
  const sheep = await setup(t, { maxDataLength: 64 * 1024 });
  const ops = Object.values(Op).filter((o) => o !== Op.SHUTDOWN && o !== Op.KILL_NODE && o !== Op.MAKE_FS);
  const frame = fc.record({
    opcode: fc.oneof(fc.constantFrom(...ops), fc.integer({ min: 0, max: 255 })),
    protoVer: fc.constantFrom(0, 2, 0x0a, 0x0b),
    flags: fc.integer({ min: 0, max: 0xffff }),
    union: fc.uint8Array({ minLength: 32, maxLength: 32 }),
    dataLength: fc.integer({ min: 0, max: 5000 }),
  });
  const c = await RawClient.connect(sheep.addresses[1] as string);
  t.teardown(() => c.close());
  let id = 1;
  await fc.assert(
    fc.asyncProperty(frame, async (f) => {
      if (f.opcode === Op.SHUTDOWN || f.opcode === Op.KILL_NODE || f.opcode === Op.MAKE_FS) return;
      const h = Buffer.alloc(48);
      encodeRequest(
        plainRequest(f.opcode, {
          protoVer: f.protoVer,
          flags: f.flags,
          id: id++,
          dataLength: f.dataLength,
          raw: f.union,
        }),
        h,
      );
      const body = f.flags & Flag.CMD_WRITE ? Buffer.alloc(f.dataLength, 0x5a) : Buffer.alloc(0);
      c.writeRaw(Buffer.concat([h, body]));
      const r = await c.next((x) => x.rsp.id === id - 1);
      if (r.rsp.opcode !== f.opcode) throw new Error('opcode not echoed');
    }),
    { numRuns: 300 },
  );
  await alive(t, sheep);
  t.same(sheep.internalErrors, [], 'no op threw');
});

t.test('data_length over the limit closes that connection only', async (t) => {
  const sheep = await setup(t, { maxDataLength: MiB });
  const c = await RawClient.connect(sheep.addresses[0] as string);
  c.send(objRequest(Op.WRITE_OBJ, { flags: Flag.CMD_WRITE, oid: 1n, dataLength: MiB + 1 }));
  await c.whenClosed;
  t.ok(c.closed, 'a body over the limit: closed before anything is allocated');
  const r = await RawClient.connect(sheep.addresses[0] as string);
  r.send(objRequest(Op.READ_OBJ, { oid: 1n, dataLength: 0xffffffff }));
  await r.whenClosed;
  t.ok(r.closed, 'a read reply over the limit: closed');
  await alive(t, sheep);
  // at the limit is fine
  const ok = await RawClient.connect(sheep.addresses[0] as string);
  t.teardown(() => ok.close());
  const w = await createObj(ok, vidToDataOid(1, 0), 0, Buffer.alloc(MiB, 1));
  t.equal(w.rsp.result, Result.SUCCESS);
});

t.test('truncated frames', async (t) => {
  const sheep = await setup(t);
  const c = await RawClient.connect(sheep.addresses[0] as string);
  const h = Buffer.alloc(48);
  encodeRequest(objRequest(Op.WRITE_OBJ, { flags: Flag.CMD_WRITE, oid: 1n, dataLength: 4096 }), h);
  c.writeRaw(h.subarray(0, 30));
  await new Promise((r) => setImmediate(r));
  c.writeRaw(h.subarray(30));
  c.writeRaw(Buffer.alloc(100));
  c.close();
  await c.whenClosed;
  await alive(t, sheep);
  t.same(sheep.internalErrors, []);
});

t.test('maxMemory: NO_SPACE beyond it', async (t) => {
  const sheep = await setup(t, { maxMemory: 2 * MiB });
  const c = await RawClient.connect(sheep.addresses[0] as string);
  t.teardown(() => c.close());
  t.equal((await createObj(c, vidToDataOid(1, 0), 0, Buffer.alloc(MiB, 1))).rsp.result, Result.SUCCESS);
  t.equal((await createObj(c, vidToDataOid(1, 1), 0, Buffer.alloc(2 * MiB, 1))).rsp.result, Result.NO_SPACE);
  t.equal(
    (await createObj(c, vidToDataOid(1, 2), 0, Buffer.alloc(2 * MiB))).rsp.result,
    Result.SUCCESS,
    'zeros are free',
  );
  t.ok(sheep.stats.bytes <= 2 * MiB);
  t.equal((await readObj(c, vidToDataOid(1, 1), 0, 1)).rsp.result, Result.NO_OBJ, 'nothing half-written');
});

t.test('backpressure: a client that does not read stops the server reading it', async (t) => {
  const sheep = await setup(t);
  const c = await RawClient.connect(sheep.addresses[0] as string);
  t.teardown(() => c.close());
  await createObj(c, vidToDataOid(1, 0), 0, Buffer.alloc(4 * MiB, 7));
  const base = sheep.stats.requests;
  c.pause();
  const n = 24;
  for (let i = 0; i < n; i++)
    c.send(objRequest(Op.READ_OBJ, { id: 1000 + i, oid: vidToDataOid(1, 0), dataLength: 4 * MiB }));
  await new Promise((r) => setTimeout(r, 200));
  const served = sheep.stats.requests - base;
  t.ok(served < n, `the server stopped after ${served} of ${n} 4 MiB replies`);
  c.resume();
  for (let i = 0; i < n; i++) {
    const f = await c.next((x) => x.rsp.id === 1000 + i);
    if (f.body.length !== 4 * MiB || f.body[4 * MiB - 1] !== 7) t.fail('reply body');
  }
  t.equal(sheep.stats.requests - base, n, 'all answered once the client reads');
});

t.test('outstanding cap: stalled requests stop the reading at 256', async (t) => {
  const sheep = await setup(t);
  sheep.inject(0, { kind: 'stall' });
  const c = await RawClient.connect(sheep.addresses[0] as string);
  t.teardown(() => c.close());
  const base = sheep.stats.requests;
  for (let i = 0; i < 400; i++) c.send(plainRequest(Op.GET_NODE_LIST, { id: i + 1 }));
  await until(() => sheep.stats.requests - base >= 256);
  await new Promise((r) => setTimeout(r, 100));
  t.equal(sheep.stats.requests - base, 256, 'no more than 256 in flight');
  await alive(t, sheep, 1);
});
