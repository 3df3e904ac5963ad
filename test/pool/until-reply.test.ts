// RequestOptions.untilReply: once a request is on the wire, neither its
// signal nor its deadline settles it early. An abort waits for the reply
// (then AbortError); a deadline destroys the connection, and the request
// fails over or fails as after any connection loss. Requests not yet sent
// are cancelled at once.
import diagnostics_channel from 'node:diagnostics_channel';
import t, { type Test } from 'tap';
import { Flag, Op, Result } from '../../protocol/constants.js';
import { objRequest, vdiRequest } from '../../protocol/header.js';
import { AbortError, ConnectionError, OutcomeUnknownError, TimeoutError } from '../../lib/errors.js';
import { type PoolOptions, SheepdogPool } from '../../lib/transport/pool.js';
import type { RequestRetryMessage } from '../../lib/util/diagnostics.js';
import { FakeSheep, fakeCluster } from './fake-sheep.js';

t.setTimeout(60_000);

function pool(tt: Test, fakes: FakeSheep[], o: PoolOptions = {}): SheepdogPool {
  const p = new SheepdogPool({ nodes: fakes.map((f) => f.address), reconnectStrategy: 10_000, ...o });
  tt.teardown(() => p.destroy());
  return p;
}

const UNTIL = { untilReply: true } as const;
const write = (oid: bigint, len = 64) =>
  objRequest(Op.WRITE_OBJ, { flags: Flag.CMD_WRITE, oid, offset: 0, dataLength: len });
const newVdi = () => vdiRequest(Op.NEW_VDI, { flags: Flag.CMD_WRITE, dataLength: 256, vdiSize: 1n << 30n });
const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Settle state of a promise, observable without awaiting it. */
function track<T>(p: Promise<T>): { settled: boolean; result: Promise<T | Error> } {
  const s = { settled: false, result: undefined as unknown as Promise<T | Error> };
  s.result = p.then(
    (r) => {
      s.settled = true;
      return r;
    },
    (e: unknown) => {
      s.settled = true;
      return e as Error;
    },
  );
  return s;
}

function retries(tt: Test): RequestRetryMessage[] {
  const seen: RequestRetryMessage[] = [];
  const fn = (m: unknown): void => {
    seen.push(m as RequestRetryMessage);
  };
  diagnostics_channel.subscribe('sheepdog:request:retry', fn);
  tt.teardown(() => {
    diagnostics_channel.unsubscribe('sheepdog:request:retry', fn);
  });
  return seen;
}

t.test('abort after send: waits for the reply, then AbortError', async (t) => {
  const [a] = (await fakeCluster(t, 1, { hold: true })) as [FakeSheep];
  const p = pool(t, [a], { connectionsPerNode: 1 });
  const ac = new AbortController();
  const w = track(p.request(write(1n), Buffer.alloc(64, 1), { ...UNTIL, signal: ac.signal }));
  await a.waitFor(1);
  ac.abort('stop');
  await turn();
  t.equal(w.settled, false, 'still waiting: the sheep may be acting on it');
  t.equal(p.stats.active, 1);
  t.equal(p.stats.orphans, 0, 'not orphaned: its reply is awaited');
  for (const r of a.take()) r.auto();
  const e = await w.result;
  t.ok(e instanceof AbortError, 'AbortError once the reply came');
  t.equal((e as AbortError).phase, 'sent');
  t.equal((e as AbortError).node, a.address);
  t.equal((e as Error).cause, 'stop');
  t.match((e as Error).message, /settled once its reply came/);
  t.equal(a.seen.length, 1, 'not sent again');
  t.same(p.stats.active, 0);
});

t.test('abort after send with a transient reply: AbortError, no retry', async (t) => {
  const [a] = (await fakeCluster(t, 1, { hold: true })) as [FakeSheep];
  const p = pool(t, [a], { connectionsPerNode: 1 });
  const ac = new AbortController();
  const w = track(p.request(write(1n), Buffer.alloc(64, 1), { ...UNTIL, signal: ac.signal }));
  await a.waitFor(1);
  ac.abort();
  for (const r of a.take()) r.reply(Result.NODE_IN_RECOVERY);
  t.ok((await w.result) instanceof AbortError);
  t.equal(a.seen.length, 1);
});

t.test('abort before send: cancelled at once, never written', async (t) => {
  const [a] = (await fakeCluster(t, 1, { hold: true })) as [FakeSheep];
  const p = pool(t, [a], { connectionsPerNode: 1, maxInFlightPerConnection: 1 });
  const first = p.request(write(1n), Buffer.alloc(64, 1), UNTIL);
  const ac = new AbortController();
  const queued = track(p.request(write(2n), Buffer.alloc(64, 2), { ...UNTIL, signal: ac.signal }));
  await a.waitFor(1);
  ac.abort();
  const e = await queued.result;
  t.ok(e instanceof AbortError);
  t.equal((e as AbortError).phase, 'queued');
  for (const r of a.take()) r.auto();
  await first;
  t.equal(a.seen.length, 1, 'the aborted one was never written');
});

t.test('abort after send, then the connection dies: AbortError, not replayed', async (t) => {
  const [a] = (await fakeCluster(t, 1, { hold: true })) as [FakeSheep];
  const p = pool(t, [a], { connectionsPerNode: 1, reconnectStrategy: 1 });
  const ac = new AbortController();
  const w = track(p.request(write(1n), Buffer.alloc(64, 1), { ...UNTIL, signal: ac.signal }));
  await a.waitFor(1);
  ac.abort();
  for (const r of a.take()) r.conn.destroy();
  const e = await w.result;
  t.ok(e instanceof AbortError, 'AbortError, though a write is repeatable');
  t.match((e as Error).message, /its connection failed first/);
  t.equal(a.seen.length, 1, 'settled without a replay');
});

/** Resolves once one of `fakes` holds a request; returns it. */
async function heldBy(fakes: FakeSheep[]): Promise<FakeSheep> {
  for (;;) {
    const f = fakes.find((x) => x.held.length > 0);
    if (f !== undefined) return f;
    await Promise.race(fakes.map((x) => x.waitFor(1)));
  }
}

t.test('deadline after send: the connection is destroyed, an idempotent write fails over', async (t) => {
  const fakes = await fakeCluster(t, 2, { hold: true });
  const seen = retries(t);
  const p = pool(t, fakes, { connectionsPerNode: 1 });
  await p.connect();
  while (p.stats.ready < 2) await turn();
  const w = track(p.request(write(1n), Buffer.alloc(64, 7), { ...UNTIL, timeout: 100 }));
  const first = await heldBy(fakes);
  const other = fakes.find((f) => f !== first) as FakeSheep;
  await other.waitFor(1); // the deadline destroyed first's connection; the replay went to the other node
  for (const r of other.take()) r.auto();
  const r = await w.result;
  t.notOk(r instanceof Error, 'the replay succeeded');
  t.equal((r as { node: string }).node, other.address);
  t.equal(first.seen.length, 1);
  await first.waitConns(0);
  t.pass("the first node's connection was destroyed");
  const m = seen.find((x) => x.op === 'WRITE_OBJ');
  t.equal(m?.reason, 'failover');
  t.equal(m?.node, first.address);
  t.ok(m?.error instanceof ConnectionError);
  t.equal((m?.error as ConnectionError).reason, 'destroyed');
  t.equal((m?.error as ConnectionError).sent, true);
  t.ok((m?.error as Error).cause instanceof TimeoutError, 'caused by the deadline');
  t.match(m?.error?.message, /got no reply within 100 ms/);
});

t.test('deadline after send: each replay gets its own deadline, bounded by maxRetries', async (t) => {
  const [a] = (await fakeCluster(t, 1, { hold: true })) as [FakeSheep];
  const p = pool(t, [a], { connectionsPerNode: 1, maxRetries: 2, reconnectStrategy: 1 });
  const e = await p
    .request(write(1n), Buffer.alloc(64, 7), { ...UNTIL, timeout: 100 })
    .catch((x: unknown) => x as Error);
  t.ok(e instanceof ConnectionError, 'the connection error once the retries are spent');
  t.equal((e as ConnectionError).reason, 'destroyed');
  t.ok((e as Error).cause instanceof TimeoutError);
  t.equal(a.seen.length, 3, 'sent 1 + maxRetries times, each on a new connection');
  t.equal(a.accepted, 3);
});

t.test('connections that die under it (not its deadline): backoff failovers past maxRetries', async (t) => {
  const [a, b] = (await fakeCluster(t, 2)) as [FakeSheep, FakeSheep];
  let drops = 5;
  for (const f of [a, b]) {
    f.onRequest = (r) => {
      if (drops > 0) {
        drops--;
        r.conn.destroy();
      } else r.auto();
    };
  }
  const p = pool(t, [a, b], { connectionsPerNode: 1, maxRetries: 1, reconnectStrategy: 1 });
  const r = await p.request(write(1n), Buffer.alloc(64, 7), { ...UNTIL, timeout: 20_000 });
  t.equal(r.header.result, Result.SUCCESS, 'written after the fifth connection died under it');
  t.equal(a.seen.length + b.seen.length, 6, 'sent 1 + 5 times');
});

t.test('deadline after send, not repeatable: OutcomeUnknownError', async (t) => {
  const [a] = (await fakeCluster(t, 1, { hold: true })) as [FakeSheep];
  const p = pool(t, [a], { connectionsPerNode: 1 });
  const e = await p.request(newVdi(), Buffer.alloc(256), { ...UNTIL, timeout: 100 }).catch((x: unknown) => x as Error);
  t.ok(e instanceof OutcomeUnknownError);
  t.ok((e as Error).cause instanceof ConnectionError);
  t.equal(a.seen.length, 1);
});

t.test('deadline before send: TimeoutError at once, never written', async (t) => {
  const [a] = (await fakeCluster(t, 1, { hold: true })) as [FakeSheep];
  const p = pool(t, [a], { connectionsPerNode: 1, maxInFlightPerConnection: 1 });
  const first = p.request(write(1n), Buffer.alloc(64, 1), UNTIL);
  const e = await p.request(write(2n), Buffer.alloc(64, 2), { ...UNTIL, timeout: 50 }).catch((x: unknown) => x);
  t.ok(e instanceof TimeoutError);
  t.equal((e as TimeoutError).phase, 'queued');
  await a.waitFor(1);
  for (const r of a.take()) r.auto();
  await first;
  t.equal(a.seen.length, 1);
  t.equal(a.accepted, 1, 'the connection was not touched');
});

t.test('without untilReply a sent request still times out at once (orphan)', async (t) => {
  const [a] = (await fakeCluster(t, 1, { hold: true })) as [FakeSheep];
  const p = pool(t, [a], { connectionsPerNode: 1 });
  const e = await p.request(write(1n), Buffer.alloc(64, 1), { timeout: 50 }).catch((x: unknown) => x);
  t.ok(e instanceof TimeoutError);
  t.equal(p.stats.orphans, 1);
  t.equal(a.accepted, 1);
  await a.waitFor(1);
  for (const r of a.take()) r.auto();
});
