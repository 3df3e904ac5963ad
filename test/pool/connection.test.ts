// One connection against the scripted fake sheep: id matching in any order,
// id wrap-around, partial frames, protocol errors, timeouts/aborts with late
// replies (orphans), readInto, retirement, and write backpressure.
import t, { type Test } from 'tap';
import { Flag, Op, Result } from '../../protocol/constants.js';
import { objRequest, plainRequest, vdiRequest } from '../../protocol/header.js';
import { Connection, type ConnectionOptions } from '../../lib/transport/connection.js';
import {
  AbortError,
  ConnectionError,
  InvalidArgumentError,
  ProtocolError,
  SheepProtocolError,
  TimeoutError,
} from '../../lib/errors.js';
import { FakeSheep, patternBody } from './fake-sheep.js';

async function setup(
  tt: Test,
  fakeOpts: Parameters<typeof FakeSheep.start>[0] = {},
  connOpts: Partial<ConnectionOptions> = {},
): Promise<{ fake: FakeSheep; conn: Connection }> {
  const fake = await FakeSheep.start(fakeOpts);
  const conn = await Connection.connect({ host: '127.0.0.1', port: fake.port, ...connOpts });
  tt.teardown(async () => {
    conn.destroy();
    await fake.close();
  });
  return { fake, conn };
}

t.setTimeout(30_000);

const read = (oid: bigint, len = 16, offset = 0) => objRequest(Op.READ_OBJ, { oid, offset, dataLength: len });

t.test('request and reply, body of the requested length', async (t) => {
  const { conn } = await setup(t);
  const r = await conn.request(read(0x1234n, 100, 8));
  t.equal(r.header.result, Result.SUCCESS);
  t.equal(r.node, conn.node);
  t.same(Buffer.from(r.body), patternBody(0x1234n, 8, 100));
  t.equal(conn.inFlight, 0);
});

t.test('replies in any order are matched by id', async (t) => {
  const { fake, conn } = await setup(t, { hold: true });
  const n = 64;
  const ps = Array.from({ length: n }, (_, i) => conn.request(read(BigInt(i), 8 + i)));
  await fake.waitFor(n);
  const held = fake.take();
  t.equal(new Set(held.map((r) => r.id)).size, n, 'ids are distinct');
  // Answer in a scrambled order.
  const order = held.map((r, i) => ({ r, k: (i * 37) % n })).sort((a, b) => a.k - b.k);
  for (const { r } of order) r.auto();
  const replies = await Promise.all(ps);
  replies.forEach((rep, i) => {
    t.equal(rep.body.length, 8 + i);
    t.same(Buffer.from(rep.body), patternBody(BigInt(i), 0, 8 + i), `reply ${i} is its own`);
  });
});

t.test('ids wrap around 2^32 and skip ids still in use', async (t) => {
  const { fake, conn } = await setup(t, { hold: true }, { initialId: 0xfffffffe });
  const ps = [0, 1, 2, 3].map((i) => conn.request(read(BigInt(i))));
  await fake.waitFor(4);
  t.same(
    fake.held.map((r) => r.id),
    [0xfffffffe, 0xffffffff, 0, 1],
  );
  // Force the counter back onto an id in use: it must be skipped.
  Reflect.set(conn, 'nextId', 0xffffffff);
  const p5 = conn.request(read(5n));
  await fake.waitFor(5);
  t.equal(fake.held[4]?.id, 2, 'ids 0xffffffff, 0 and 1 are in use: 2 is next');
  for (const r of fake.take()) r.auto();
  await Promise.all([...ps, p5]);
});

t.test('a reply split into small pieces is reassembled', async (t) => {
  const { conn } = await setup(t, {
    onRequest: (r) => {
      const h = r.header;
      if (h.kind === 'obj') r.reply(Result.SUCCESS, { body: patternBody(h.oid, 0, h.dataLength), split: 7 });
    },
  });
  const [a, b] = await Promise.all([conn.request(read(1n, 300)), conn.request(read(2n, 5))]);
  t.same(Buffer.from(a.body), patternBody(1n, 0, 300));
  t.same(Buffer.from(b.body), patternBody(2n, 0, 5));
});

t.test('readInto receives the body in the caller buffer', async (t) => {
  const { conn } = await setup(t, {
    onRequest: (r) => {
      const h = r.header;
      if (h.kind === 'obj') r.reply(Result.SUCCESS, { body: patternBody(h.oid, 0, h.dataLength), split: 100 });
    },
  });
  const into = new Uint8Array(1000);
  const r = await conn.request(read(9n, 1000), undefined, { readInto: into });
  t.equal(r.body.buffer, into.buffer, 'body is a view of readInto');
  t.same(Buffer.from(into), patternBody(9n, 0, 1000));
});

t.test('writes: header and payload go out, payload validation', async (t) => {
  const { fake, conn } = await setup(t);
  const data = Buffer.alloc(4096, 0xab);
  const r = await conn.request(
    objRequest(Op.WRITE_OBJ, { flags: Flag.CMD_WRITE, oid: 7n, dataLength: data.length }),
    data,
  );
  t.equal(r.header.result, Result.SUCCESS);
  t.equal(fake.seen.at(-1)?.dataLength, 4096);
  await t.rejects(
    conn.request(objRequest(Op.WRITE_OBJ, { flags: Flag.CMD_WRITE, oid: 7n, dataLength: 10 }), data),
    InvalidArgumentError,
  );
  await t.rejects(
    conn.request(objRequest(Op.WRITE_OBJ, { oid: 7n, dataLength: data.length }), data),
    InvalidArgumentError,
  );
});

for (const [name, reply, reason] of [
  ['an unknown id', { id: 0xdeadbeef }, 'unknown-id'],
  ['an opcode that does not match', { opcode: Op.NEW_VDI }, 'bad-header'],
  ['a body larger than requested', { body: Buffer.alloc(64) }, 'oversize'],
] as const) {
  t.test(`${name} is a protocol error that fails every request in flight`, async (t) => {
    const { fake, conn } = await setup(t, { hold: true });
    const ps = [1n, 2n, 3n].map((o) => conn.request(read(o, 16)));
    await fake.waitFor(3);
    const [first] = fake.take();
    first?.reply(Result.SUCCESS, reply);
    for (const p of ps) {
      const e = await p.then(
        () => undefined,
        (x: unknown) => x,
      );
      t.ok(e instanceof SheepProtocolError, 'SheepProtocolError');
      t.ok(e instanceof ProtocolError, 'and a ProtocolError');
      t.equal((e as SheepProtocolError).reason, reason);
      t.equal((e as SheepProtocolError).node, conn.node);
      t.match((e as Error).message, conn.node);
    }
    t.equal(conn.state, 'closed');
    t.equal(conn.inFlight, 0);
    await fake.waitConns(0);
  });
}

t.test('a data_length above maxDataLength is a protocol error', async (t) => {
  const { fake, conn } = await setup(t, { hold: true }, { maxDataLength: 1024 });
  const p = conn.request(read(1n, 4096));
  await fake.waitFor(1);
  fake.take()[0]?.reply(Result.SUCCESS, { dataLength: 4096, body: new Uint8Array(0) });
  const e = await p.catch((x: unknown) => x);
  t.ok(e instanceof SheepProtocolError);
  t.equal((e as SheepProtocolError).reason, 'oversize');
});

t.test('timeout after send: caller rejected at once, id reserved, late reply dropped', async (t) => {
  const { fake, conn } = await setup(t, { hold: true });
  const p = conn.request(read(1n), undefined, { timeout: 20 });
  await fake.waitFor(1);
  const e = await p.catch((x: unknown) => x);
  t.ok(e instanceof TimeoutError);
  t.equal((e as TimeoutError).phase, 'sent');
  t.equal((e as TimeoutError).node, conn.node);
  t.equal(conn.inFlight, 1, 'the id stays reserved');
  t.equal(conn.orphans, 1);
  const [late] = fake.take();
  // Another request gets another id while the orphan is outstanding.
  const p2 = conn.request(read(2n));
  await fake.waitFor(1);
  const [second] = fake.take();
  t.not(second?.id, late?.id);
  late?.auto(); // the late reply: dropped, no protocol error
  second?.auto();
  const r2 = await p2;
  t.equal(r2.header.result, Result.SUCCESS);
  t.equal(conn.orphans, 0);
  t.equal(conn.inFlight, 0);
  t.equal(conn.state, 'ready');
  t.equal(conn.stats.lateReplies, 1);
});

t.test('timeout before send: never written', async (t) => {
  const { fake, conn } = await setup(t, { hold: true }, { maxInFlight: 1 });
  const p1 = conn.request(read(1n));
  const p2 = conn.request(read(2n), undefined, { timeout: 20 });
  t.equal(conn.stats.waiting, 1);
  const e = await p2.catch((x: unknown) => x);
  t.ok(e instanceof TimeoutError);
  t.equal((e as TimeoutError).phase, 'queued');
  t.equal(conn.stats.waiting, 0);
  await fake.waitFor(1);
  fake.take()[0]?.auto();
  await p1;
  t.equal(fake.seen.length, 1, 'the timed-out request never reached the sheep');
});

t.test('abort before and after send', async (t) => {
  const { fake, conn } = await setup(t, { hold: true });
  const ac = new AbortController();
  ac.abort(new Error('already'));
  const e1 = await conn.request(read(1n), undefined, { signal: ac.signal }).catch((x: unknown) => x);
  t.ok(e1 instanceof AbortError);
  t.equal((e1 as AbortError).phase, 'queued');
  t.equal(((e1 as Error).cause as Error).message, 'already');

  const ac2 = new AbortController();
  const p = conn.request(read(2n), undefined, { signal: ac2.signal });
  await fake.waitFor(1);
  ac2.abort();
  const e2 = await p.catch((x: unknown) => x);
  t.ok(e2 instanceof AbortError);
  t.equal((e2 as AbortError).phase, 'sent');
  t.equal(conn.orphans, 1);
  fake.take()[0]?.auto();
  // A request after the late reply proves the stream is still in sync.
  const p3 = conn.request(read(3n, 4));
  await fake.waitFor(1);
  fake.take()[0]?.auto();
  const r = await p3;
  t.same(Buffer.from(r.body), patternBody(3n, 0, 4));
  t.equal(conn.orphans, 0);
  t.equal(fake.seen.length, 2, 'the pre-aborted request was never sent');
});

t.test('timeout while the body is arriving into readInto: the rest is discarded', async (t) => {
  let sendRest: (() => void) | undefined;
  const { fake, conn } = await setup(t, {
    onRequest: (r) => {
      const h = r.header;
      if (h.kind !== 'obj') return;
      if (h.oid !== 1n) {
        r.auto();
        return;
      }
      // Header and half the body now; the other half when the test says.
      const body = Buffer.alloc(h.dataLength, 0xee);
      r.reply(Result.SUCCESS, { body: new Uint8Array(0), dataLength: h.dataLength });
      r.conn.write(body.subarray(0, h.dataLength / 2));
      sendRest = () => {
        // The rest in three pieces: the discarding spans several chunks.
        const rest = body.subarray(h.dataLength / 2);
        r.conn.writeSlowly([rest.subarray(0, 100), rest.subarray(100, 700), rest.subarray(700)]);
      };
    },
  });
  const into = new Uint8Array(4096);
  const ac = new AbortController();
  const p = conn.request(read(1n, 4096), undefined, { readInto: into, signal: ac.signal });
  await fake.waitFor(1);
  // Wait until the first half landed in the caller's buffer.
  while (into[2047] !== 0xee) await new Promise((r) => setImmediate(r));
  ac.abort();
  t.ok((await p.catch((x: unknown) => x)) instanceof AbortError);
  into.fill(0);
  sendRest?.();
  const r2 = await conn.request(read(2n, 32));
  t.same(Buffer.from(r2.body), patternBody(2n, 0, 32), 'the stream stays in sync');
  t.ok(
    into.every((b) => b === 0),
    'the caller buffer is not written after the abort',
  );
  t.equal(conn.orphans, 0);
  t.equal(conn.stats.lateReplies, 1);
});

t.test('a long body without readInto is read straight into its own buffer, split any way', async (t) => {
  const LEN = 3 * 1024 * 1024 + 17;
  const { conn } = await setup(t, {
    onRequest: (r) => {
      const h = r.header;
      if (h.kind !== 'obj') return;
      if (h.oid === 5n) {
        // Header with the first bytes, then uneven pieces: reads land at odd offsets.
        const body = patternBody(h.oid, 0, h.dataLength);
        r.reply(Result.SUCCESS, { body: new Uint8Array(0), dataLength: h.dataLength });
        const cuts = [1, 70_000, 70_001, 1_500_000, 1_500_003, h.dataLength];
        const pieces: Uint8Array[] = [];
        let prev = 0;
        for (const c of cuts) {
          pieces.push(body.subarray(prev, c));
          prev = c;
        }
        r.conn.writeSlowly(pieces);
      } else r.auto();
    },
  });
  const before = conn.received;
  const direct = conn.stats.directReads;
  const [big, small] = await Promise.all([conn.request(read(5n, LEN)), conn.request(read(6n, 64))]);
  t.equal(big.body.length, LEN);
  t.equal(big.body.buffer.byteLength, LEN, 'the body has memory of its own');
  t.ok(Buffer.from(big.body).equals(patternBody(5n, 0, LEN)), 'every byte in place');
  t.same(Buffer.from(small.body), patternBody(6n, 0, 64), 'the reply after it is intact');
  t.ok(conn.received - before >= 2, 'it took several reads');
  t.ok(conn.stats.directReads - direct >= 1, 'some went straight into the body');
  const again = await conn.request(read(7n, 100));
  t.same(Buffer.from(again.body), patternBody(7n, 0, 100), 'the stream stays in sync');
});

t.test('abort while a long body is read straight into its own buffer: dropped, stream in sync', async (t) => {
  const LEN = 1024 * 1024;
  const { conn, sendRest } = await stalledReply(t, 300_000);
  const ac = new AbortController();
  const p = conn.request(read(1n, LEN), undefined, { signal: ac.signal });
  const lateBefore = conn.stats.lateReplies;
  while (conn.stats.directReads < 1) await new Promise((r) => setImmediate(r));
  ac.abort();
  t.ok((await p.catch((x: unknown) => x)) instanceof AbortError);
  sendRest();
  const r2 = await conn.request(read(2n, 32));
  t.same(Buffer.from(r2.body), patternBody(2n, 0, 32), 'the stream stays in sync');
  t.equal(conn.stats.lateReplies, lateBefore + 1, 'the late body was dropped');
  t.equal(conn.orphans, 0);
});

/** A fake sheep that sends the header and `first` body bytes of oid 1's reply at once, the rest when told. */
async function stalledReply(
  t: Test,
  first: number,
): Promise<{ conn: Connection; sendRest: () => void; restSent: () => boolean }> {
  let rest: (() => void) | undefined;
  let sent = false;
  const { conn } = await setup(t, {
    onRequest: (r) => {
      const h = r.header;
      if (h.kind !== 'obj') return;
      if (h.oid !== 1n) {
        r.auto();
        return;
      }
      const body = Buffer.alloc(h.dataLength, 0xee);
      r.reply(Result.SUCCESS, { body: new Uint8Array(0), dataLength: h.dataLength });
      r.conn.write(body.subarray(0, first));
      rest = () => {
        sent = true;
        r.conn.writeSlowly([body.subarray(first, first + 100_000), body.subarray(first + 100_000)]);
      };
    },
  });
  return {
    conn,
    sendRest: () => rest?.(),
    restSent: () => sent,
  };
}

t.test('readInto of a long body: the socket reads straight into the caller buffer', async (t) => {
  const LEN = 2 * 1024 * 1024;
  const { conn, sendRest } = await stalledReply(t, 300_000);
  const into = new Uint8Array(LEN);
  const p = conn.request(read(1n, LEN), undefined, { readInto: into });
  while (conn.stats.directReads < 1) await new Promise((r) => setImmediate(r));
  sendRest();
  const r = await p;
  t.equal(r.body.buffer, into.buffer, 'the body is the caller buffer');
  t.ok(
    into.every((b) => b === 0xee),
    'every byte landed',
  );
  t.ok(conn.stats.directReads >= 2, `${conn.stats.directReads} reads went straight into it`);
  const r2 = await conn.request(read(2n, 32));
  t.same(Buffer.from(r2.body), patternBody(2n, 0, 32), 'the stream stays in sync');
});

t.test('abort while the next socket read goes into the readInto buffer: settles only after that read', async (t) => {
  const LEN = 1024 * 1024;
  const { conn, sendRest, restSent } = await stalledReply(t, 300_000);
  const into = new Uint8Array(LEN);
  const ac = new AbortController();
  const p = conn.request(read(1n, LEN), undefined, { readInto: into, signal: ac.signal });
  while (conn.stats.directReads < 1) await new Promise((r) => setImmediate(r));
  ac.abort();
  let restWasSent: boolean | undefined;
  const settled = p.then(
    () => undefined,
    (e: unknown) => {
      restWasSent = restSent();
      return e;
    },
  );
  // Let the abort propagate, then let the peer send the rest.
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  sendRest();
  t.ok((await settled) instanceof AbortError, 'AbortError');
  t.equal(restWasSent, true, 'it settled only once the read set up before the abort had happened');
  into.fill(0);
  const r2 = await conn.request(read(2n, 32));
  t.same(Buffer.from(r2.body), patternBody(2n, 0, 32), 'the stream stays in sync');
  t.ok(
    into.every((b) => b === 0),
    'the caller buffer is not written after the request settled',
  );
  t.equal(conn.state, 'ready', 'the connection goes on');
  t.equal(conn.orphans, 0);
});

t.test('timeout while the next socket read goes into the readInto buffer: the connection is closed', async (t) => {
  const LEN = 1024 * 1024;
  const { conn } = await stalledReply(t, 300_000);
  const into = new Uint8Array(LEN);
  const e = await conn.request(read(1n, LEN), undefined, { readInto: into, timeout: 300 }).catch((x: unknown) => x);
  t.ok(e instanceof TimeoutError, 'TimeoutError');
  t.equal(conn.state, 'closed', 'closing the socket was the only way to stop the read');
  t.match(conn.closeError?.message ?? '', /arriving into the caller's buffer/);
});

t.test('past maxOrphans the connection is retired and closes once idle', async (t) => {
  const retired: Connection[] = [];
  const fake = await FakeSheep.start({ hold: true });
  const conn = await Connection.connect({
    host: '127.0.0.1',
    port: fake.port,
    maxOrphans: 1,
    hooks: { onRetire: (c) => retired.push(c) },
  });
  t.teardown(async () => {
    conn.destroy();
    await fake.close();
  });
  const live = conn.request(read(9n));
  const ps = [1n, 2n].map((o) => conn.request(read(o), undefined, { timeout: 10 }));
  for (const p of ps) t.ok((await p.catch((x: unknown) => x)) instanceof TimeoutError);
  t.equal(retired.length, 1);
  t.equal(conn.state, 'retiring');
  t.equal(conn.available, 0, 'takes no new requests');
  await fake.waitFor(3);
  const held = fake.take();
  held.find((r) => r.header.kind === 'obj' && r.header.oid === 9n)?.auto();
  t.equal((await live).header.result, Result.SUCCESS, 'the live request still completes');
  await conn.closed();
  t.equal(conn.state, 'closed');
  t.equal(conn.closeError, undefined, 'a graceful close');
});

t.test('a connection closed by the peer fails pending requests with ConnectionError', async (t) => {
  const { fake, conn } = await setup(t, { hold: true });
  const p = conn.request(read(1n));
  await fake.waitFor(1);
  for (const c of fake.conns) c.destroy();
  const e = await p.catch((x: unknown) => x);
  t.ok(e instanceof ConnectionError);
  t.equal((e as ConnectionError).sent, true);
  t.equal((e as ConnectionError).node, conn.node);
  t.match((e as Error).message, /closed by the peer/);
  const after = await conn.request(read(2n)).catch((x: unknown) => x);
  t.ok(after instanceof ConnectionError);
  t.equal((after as ConnectionError).sent, false);
});

t.test('connect refused is a ConnectionError naming the node', async (t) => {
  const fake = await FakeSheep.start();
  const port = fake.port;
  await fake.close();
  const e = await Connection.connect({ host: '127.0.0.1', port }).catch((x: unknown) => x);
  t.ok(e instanceof ConnectionError);
  t.equal((e as ConnectionError).reason, 'connect');
  t.match((e as Error).message, `127.0.0.1:${port}`);
});

t.test('backpressure: write() returning false stops the batch until drain', async (t) => {
  const { fake, conn } = await setup(t);
  // Loopback kernel buffers absorb megabytes, so make the socket report a
  // full buffer: write() answers false until the test emits 'drain'.
  const sock = Reflect.get(conn, 'socket') as import('node:net').Socket;
  const write = sock.write;
  const held: [Uint8Array, ((e?: Error | null) => void) | undefined][] = [];
  let writes = 0;
  sock.write = ((b: Uint8Array, cb?: (e?: Error | null) => void) => {
    writes++;
    held.push([b, cb]);
    return false;
  }) as typeof write;
  const big = Buffer.alloc(1 << 16, 1);
  const n = 16;
  const ps = Array.from({ length: n }, (_, i) =>
    conn.request(objRequest(Op.WRITE_OBJ, { flags: Flag.CMD_WRITE, oid: BigInt(i), dataLength: big.length }), big),
  );
  await new Promise((r) => process.nextTick(r));
  t.equal(writes, 2, 'one header and its payload, then the batch stops');
  t.equal(conn.stats.unsent, n - 1, 'the rest waits for drain');
  sock.write = write;
  for (const [b, cb] of held) sock.write(b, cb); // the payload's write callback releases it
  sock.emit('drain');
  const rs = await Promise.all(ps);
  t.ok(rs.every((r) => r.header.result === Result.SUCCESS));
  t.equal(conn.stats.unsent, 0);
  t.equal(fake.seen.length, n);
});

t.test('in-flight cap: requests beyond maxInFlight wait in the connection', async (t) => {
  const { fake, conn } = await setup(t, { hold: true }, { maxInFlight: 4 });
  const ps = Array.from({ length: 10 }, (_, i) => conn.request(read(BigInt(i), 4)));
  await fake.waitFor(4);
  t.equal(conn.inFlight, 4);
  t.equal(conn.stats.waiting, 6);
  let answered = 0;
  while (answered < 10) {
    const h = fake.take();
    for (const r of h) r.auto();
    answered += h.length;
    if (answered < 10) await fake.waitFor(Math.min(4, 10 - answered));
  }
  await Promise.all(ps);
  t.equal(fake.seen.length, 10);
});

t.test('close() waits for pending requests; destroy() fails them', async (t) => {
  const { fake, conn } = await setup(t, { hold: true });
  const p = conn.request(read(1n));
  await fake.waitFor(1);
  const closing = conn.close();
  t.equal(conn.state, 'closing');
  const refused = await conn.request(read(2n)).catch((x: unknown) => x);
  t.ok(refused instanceof ConnectionError);
  fake.take()[0]?.auto();
  t.equal((await p).header.result, Result.SUCCESS);
  await closing;
  t.equal(conn.state, 'closed');

  const c2 = await Connection.connect({ host: '127.0.0.1', port: fake.port });
  const q = c2.request(vdiRequest(Op.GET_VDI_INFO, { flags: Flag.CMD_WRITE, dataLength: 4 }), Buffer.alloc(4));
  await fake.waitFor(1);
  c2.destroy();
  const e = await q.catch((x: unknown) => x);
  t.ok(e instanceof ConnectionError);
  t.equal((e as ConnectionError).reason, 'destroyed');
});

t.test('plain requests without a body or reply body', async (t) => {
  const { conn } = await setup(t);
  const r = await conn.request(plainRequest(Op.GET_CLUSTER_DEFAULT));
  t.equal(r.body.length, 0);
});

t.test('abort in the same tick: the request is dropped before it is written', async (t) => {
  const { fake, conn } = await setup(t);
  const ac = new AbortController();
  const p = conn.request(read(1n), undefined, { signal: ac.signal });
  t.equal(conn.stats.unsent, 1);
  ac.abort();
  const e = await p.catch((x: unknown) => x);
  t.equal((e as AbortError).phase, 'queued');
  t.equal(conn.inFlight, 0, 'its id is free at once');
  await conn.request(read(2n));
  t.equal(fake.seen.length, 1, 'only the second request reached the sheep');
});

t.test('retiring fails requests waiting for a slot as unsent', async (t) => {
  const { fake, conn } = await setup(t, { hold: true }, { maxInFlight: 1, maxOrphans: 0 });
  const a = conn.request(read(1n), undefined, { timeout: 10 });
  const b = conn.request(read(2n));
  t.equal(conn.stats.waiting, 1);
  t.ok((await a.catch((x: unknown) => x)) instanceof TimeoutError);
  const e = await b.catch((x: unknown) => x);
  t.ok(e instanceof ConnectionError);
  t.equal((e as ConnectionError).sent, false);
  t.match((e as Error).message, /retired/);
  await conn.closed();
  t.equal(fake.seen.length, 1);
});

t.test('destroy fails waiting requests as unsent and written ones as sent', async (t) => {
  const { fake, conn } = await setup(t, { hold: true }, { maxInFlight: 1 });
  const a = conn.request(read(1n));
  const b = conn.request(read(2n));
  await fake.waitFor(1);
  conn.destroy(new ConnectionError('bye', conn.node, { reason: 'destroyed' }));
  const [ea, eb] = [await a.catch((x: unknown) => x), await b.catch((x: unknown) => x)];
  t.equal((ea as ConnectionError).sent, true);
  t.equal((eb as ConnectionError).sent, false);
  t.ok((await conn.ready().catch((x: unknown) => x)) instanceof ConnectionError, 'ready() rejects once closed');
});

t.test('connect timeout', async (t) => {
  const fake = await FakeSheep.start();
  t.teardown(() => fake.close());
  const c = new Connection({ host: '127.0.0.1', port: fake.port, connectTimeout: 60_000 });
  const ready = c.ready();
  // Fire the connect timer now (deterministic): the connect is still in progress.
  (Reflect.get(c, 'onConnectTimeout') as () => void)();
  const e = await ready.catch((x: unknown) => x);
  t.ok(e instanceof ConnectionError);
  t.equal((e as ConnectionError).reason, 'connect-timeout');
  t.match((e as Error).message, /timed out/);
});

t.test('bad options', async (t) => {
  t.throws(() => new Connection({ host: '127.0.0.1', port: 1, initialId: -1 }), InvalidArgumentError);
  t.throws(() => new Connection({ host: '127.0.0.1', port: 1, maxInFlight: 0 }), InvalidArgumentError);
});

/** The socket's TCP_NODELAY setting as net.Socket records it (its kSetNoDelay slot). */
function noDelayOf(conn: Connection): boolean | undefined {
  const sock = Reflect.get(conn, 'socket') as import('node:net').Socket;
  const k = Object.getOwnPropertySymbols(sock).find((s) => s.description === 'kSetNoDelay');
  return k === undefined ? undefined : (Reflect.get(sock, k) as boolean);
}

t.test('noDelay: on by default, off when asked', async (t) => {
  const on = await setup(t);
  t.equal(noDelayOf(on.conn), true, 'TCP_NODELAY on by default');
  const off = await setup(t, {}, { noDelay: false });
  t.equal(noDelayOf(off.conn), false, 'noDelay: false is honoured after connect');
  const r = await off.conn.request(read(1n, 4));
  t.same(Buffer.from(r.body), patternBody(1n, 0, 4), 'and the connection works');
});
