// A gateway that accepts connections and never answers: repeatable requests
// fail over to the next node after the liveness deadline (livenessTimeout,
// default min(5 s, timeout / 3)), well before their own deadline.
// Non-repeatable and untilReply requests are never moved at that deadline.
import diagnostics_channel from 'node:diagnostics_channel';
import t, { type Test } from 'tap';
import { Flag, Op } from '../../protocol/constants.js';
import { objRequest, vdiRequest } from '../../protocol/header.js';
import { ConnectionError, InvalidArgumentError, TimeoutError } from '../../lib/errors.js';
import { type PoolOptions, SheepdogPool } from '../../lib/transport/pool.js';
import type { RequestRetryMessage } from '../../lib/util/diagnostics.js';
import { FakeSheep, patternBody } from './fake-sheep.js';

t.setTimeout(60_000);

const read = (oid: bigint, len = 16) => objRequest(Op.READ_OBJ, { oid, dataLength: len });
const newVdi = () => vdiRequest(Op.NEW_VDI, { flags: Flag.CMD_WRITE, dataLength: 256, vdiSize: 1n << 30n });
const write = (oid: bigint, len = 64) =>
  objRequest(Op.WRITE_OBJ, { flags: Flag.CMD_WRITE, oid, offset: 0, dataLength: len });

async function silentAndHealthy(t: Test): Promise<[FakeSheep, FakeSheep]> {
  const silent = await FakeSheep.start({ hold: true }); // accepts, reads, never answers
  const healthy = await FakeSheep.start();
  t.teardown(async () => {
    await silent.close();
    await healthy.close();
  });
  return [silent, healthy];
}

function pool(t: Test, fakes: FakeSheep[], o: PoolOptions = {}): SheepdogPool {
  const p = new SheepdogPool({ nodes: fakes.map((f) => f.address), connectionsPerNode: 1, ...o });
  t.teardown(() => p.destroy());
  return p;
}

async function bothUp(p: SheepdogPool): Promise<void> {
  await p.connect();
  while (p.stats.ready < 2) await new Promise((r) => setImmediate(r));
}

function retries(t: Test): RequestRetryMessage[] {
  const seen: RequestRetryMessage[] = [];
  const fn = (m: unknown): void => {
    seen.push(m as RequestRetryMessage);
  };
  diagnostics_channel.subscribe('sheepdog:request:retry', fn);
  t.teardown(() => {
    diagnostics_channel.unsubscribe('sheepdog:request:retry', fn);
  });
  return seen;
}

t.test('reads on a silent gateway fail over to the next one at the liveness deadline', async (t) => {
  const [silent, healthy] = await silentAndHealthy(t);
  const seen = retries(t);
  // Default requestTimeout (30 s); the silent node is listed first.
  const p = pool(t, [silent, healthy], { livenessTimeout: 200 });
  await bothUp(p);
  const t0 = performance.now();
  const rs = await Promise.all([1n, 2n, 3n, 4n].map((o) => p.request(read(o, 8))));
  const took = performance.now() - t0;
  t.ok(took < 5000, `answered in ${Math.round(took)} ms, not after the 30 s timeout`);
  t.ok(
    rs.every((r) => r.node === healthy.address),
    'every read answered by the healthy node',
  );
  rs.forEach((r, i) => t.same(Buffer.from(r.body), patternBody(BigInt(i + 1), 0, 8)));
  t.ok(silent.held.length > 0, 'some reads had gone to the silent node first');
  const m = seen.find((x) => x.node === silent.address);
  t.equal(m?.reason, 'failover');
  t.ok(m?.error instanceof TimeoutError, 'the failover names the liveness deadline');
  t.match(m?.error?.message, /no reply from .* within 200 ms \(liveness\)/);
  t.ok(p.stats.orphans >= 1, 'the first copy stays an orphan on the silent connection');
  // The late reply of an orphan is dropped, and the pool keeps working.
  for (const r of silent.take()) r.auto();
  t.equal((await p.request(read(9n, 8))).header.result, 0);
});

t.test(
  'a gateway silent in the middle of a long readInto reply: its connection is closed and the read fails over',
  async (t) => {
    const LEN = 1024 * 1024;
    // Sends the reply header and 300,000 body bytes, then nothing.
    const stalling = await FakeSheep.start({
      onRequest: (r) => {
        const h = r.header;
        if (h.kind !== 'obj') return;
        r.reply(0, { body: new Uint8Array(0), dataLength: h.dataLength });
        r.conn.write(Buffer.alloc(300_000, 0xee));
      },
    });
    const healthy = await FakeSheep.start();
    t.teardown(async () => {
      await stalling.close();
      await healthy.close();
    });
    const seen = retries(t);
    const p = pool(t, [stalling, healthy], { livenessTimeout: 200 });
    await bothUp(p);
    const into = new Uint8Array(LEN);
    const t0 = performance.now();
    const r = await p.request(read(5n, LEN), undefined, { readInto: into });
    t.ok(performance.now() - t0 < 10_000, 'well before the 30 s timeout');
    t.equal(r.node, healthy.address, 'answered by the healthy node');
    t.ok(Buffer.from(into).equals(patternBody(5n, 0, LEN)), 'the caller buffer holds the healthy reply');
    t.ok(
      seen.some((m) => m.node === stalling.address),
      'the move away from the silent gateway was reported',
    );
  },
);

t.test('the default liveness deadline is a third of the request timeout (at most 5 s)', async (t) => {
  const [silent, healthy] = await silentAndHealthy(t);
  const p = pool(t, [silent, healthy], { requestTimeout: 3000 });
  await bothUp(p);
  // Two reads: one of them lands on the silent node first.
  const rs = await Promise.all([1n, 2n].map((o) => p.request(read(o, 8))));
  t.ok(
    rs.every((r) => r.node === healthy.address),
    'failed over within the 3 s timeout',
  );
  t.ok(silent.held.length > 0);
  t.throws(() => new SheepdogPool({ livenessTimeout: -1 }), InvalidArgumentError);
});

t.test('non-repeatable requests are not replayed at the liveness deadline', async (t) => {
  const a = await FakeSheep.start({ hold: true });
  const b = await FakeSheep.start({ hold: true });
  t.teardown(async () => {
    await a.close();
    await b.close();
  });
  const p = pool(t, [a, b], { livenessTimeout: 50 });
  await bothUp(p);
  const e = await p.request(newVdi(), Buffer.alloc(256), { timeout: 600 }).catch((x: unknown) => x);
  t.ok(e instanceof TimeoutError, 'its own deadline, as before');
  t.equal((e as TimeoutError).phase, 'sent');
  t.equal(a.seen.length + b.seen.length, 1, 'sent once, never replayed');
});

t.test('untilReply writes keep their deadline semantics (no move at the liveness deadline)', async (t) => {
  const a = await FakeSheep.start({ hold: true });
  const b = await FakeSheep.start({ hold: true });
  t.teardown(async () => {
    await a.close();
    await b.close();
  });
  const seen = retries(t);
  const p = pool(t, [a, b], { livenessTimeout: 50, maxRetries: 1, reconnectStrategy: 10_000 });
  await bothUp(p);
  const e = await p
    .request(write(1n), Buffer.alloc(64, 7), { untilReply: true, timeout: 400 })
    .catch((x: unknown) => x);
  t.ok(e instanceof ConnectionError, 'the deadline destroyed the connections, as before');
  t.equal((e as ConnectionError).reason, 'destroyed');
  const moves = seen.filter((x) => x.op === 'WRITE_OBJ');
  t.equal(moves.length, 1, 'one replay, after the first deadline');
  t.ok(moves[0]?.error instanceof ConnectionError, 'caused by the connection destroyed at the deadline');
  t.equal(((moves[0]?.error as Error).cause as TimeoutError).timeout, 400);
});

t.test('a single node: the liveness deadline does not apply', async (t) => {
  const a = await FakeSheep.start({ hold: true });
  t.teardown(() => a.close());
  const seen = retries(t);
  const p = pool(t, [a], { livenessTimeout: 20 });
  const e = await p.request(read(1n), undefined, { timeout: 300 }).catch((x: unknown) => x);
  t.ok(e instanceof TimeoutError);
  t.equal(a.seen.length, 1);
  t.equal(seen.length, 0);
});
