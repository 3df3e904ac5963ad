// SheepdogPool against scripted fake sheep: spreading, 10,000 concurrent
// requests answered out of order, queue bound, busy/drain, timeouts and
// aborts, failover and OutcomeUnknownError, transient results, reconnect,
// discovery, pinned requests, close() and destroy().
import diagnostics_channel from 'node:diagnostics_channel';
import { once } from 'node:events';
import t, { type Test } from 'tap';
import { Flag, Op, Result } from '../../protocol/constants.js';
import { type NodeResponse, objRequest, plainRequest, vdiRequest } from '../../protocol/header.js';
import {
  AbortError,
  ConnectionError,
  InvalidArgumentError,
  OutcomeUnknownError,
  PoolClosedError,
  QueueFullError,
  SheepProtocolError,
  TimeoutError,
} from '../../lib/errors.js';
import { Connection, type ConnectionOp } from '../../lib/transport/connection.js';
import { type PoolOptions, SheepdogPool } from '../../lib/transport/pool.js';
import { PoolRequest } from '../../lib/transport/request.js';
import { FakeSheep, type FakeRequest, fakeCluster, patternBody } from './fake-sheep.js';

t.setTimeout(60_000);

type T = Test;

function pool(tt: T, fakes: FakeSheep[], o: PoolOptions = {}): SheepdogPool {
  const p = new SheepdogPool({ nodes: fakes.map((f) => f.address), reconnectStrategy: 5, ...o });
  tt.teardown(() => p.destroy());
  return p;
}

/** Resolve once `n` connections are ready (event-driven). */
async function ready(p: SheepdogPool, n: number): Promise<void> {
  await p.connect();
  while (p.stats.ready < n) await once(p, 'nodeUp');
}

const read = (oid: bigint, len = 16) => objRequest(Op.READ_OBJ, { oid, dataLength: len });
const newVdi = () => vdiRequest(Op.NEW_VDI, { flags: Flag.CMD_WRITE, dataLength: 256, vdiSize: 1n << 30n });
const NAME = Buffer.alloc(256);

/**
 * Keep the process alive for the rest of the test: an idle pool (nothing
 * pending) unrefs its sockets and timers, so a test awaiting an event of an
 * idle pool with every sheep stopped would otherwise let the process exit.
 */
function keepAlive(tt: T): void {
  const h = setInterval(() => {}, 60_000);
  tt.teardown(() => clearInterval(h));
}

async function settle<T>(p: Promise<T>): Promise<T | Error> {
  return p.catch((e: unknown) => e as Error);
}

t.test('requests spread over nodes, least loaded first', async (t) => {
  const fakes = await fakeCluster(t, 3, { hold: true });
  const p = pool(t, fakes, { connectionsPerNode: 1 });
  await ready(p, 3);
  const ps = Array.from({ length: 6 }, (_, i) => p.request(read(BigInt(i))));
  for (const f of fakes) await f.waitFor(2);
  t.same(
    fakes.map((f) => f.held.length),
    [2, 2, 2],
  );
  for (const f of fakes) for (const r of f.take()) r.auto();
  const rs = await Promise.all(ps);
  t.same(new Set(rs.map((r) => r.node)).size, 3);
  t.equal(p.stats.inFlight, 0);
});

t.test('10,000 concurrent requests answered out of order', async (t) => {
  const N = 10_000;
  // Each sheep answers in shuffled batches of up to 64.
  const fakes = await fakeCluster(t, 3);
  for (const f of fakes) {
    const batch: FakeRequest[] = [];
    let scheduled = false;
    f.onRequest = (r) => {
      batch.push(r);
      if (scheduled) return;
      scheduled = true;
      setImmediate(() => {
        scheduled = false;
        const list = batch.splice(0);
        for (let i = list.length - 1; i > 0; i--) {
          const j = (i * 7919) % (i + 1);
          [list[i], list[j]] = [list[j] as FakeRequest, list[i] as FakeRequest];
        }
        for (const x of list) x.auto();
      });
    };
  }
  const p = pool(t, fakes, { maxQueued: N, connectionsPerNode: 2, maxInFlightPerConnection: 256 });
  const ps = Array.from({ length: N }, (_, i) => p.request(read(BigInt(i), 8)));
  t.ok(p.stats.queued > 0, 'more than the in-flight capacity waits in the queue');
  const rs = await Promise.all(ps);
  let ok = 0;
  rs.forEach((r, i) => {
    if (Buffer.from(r.body).equals(patternBody(BigInt(i), 0, 8))) ok++;
  });
  t.equal(ok, N, 'every reply matched its request');
  t.same([p.stats.inFlight, p.stats.queued, p.stats.active], [0, 0, 0]);
  t.equal(
    fakes.reduce((n, f) => n + f.seen.length, 0),
    N,
  );
});

t.test('ids wrap around 2^32 through the pool', async (t) => {
  const fakes = await fakeCluster(t, 1);
  const p = pool(t, fakes, { connectionsPerNode: 1, initialRequestId: 0xfffffffd });
  await Promise.all(Array.from({ length: 6 }, (_, i) => p.request(read(BigInt(i)))));
  t.same(
    fakes[0]?.seen.map((r) => r.id),
    [0xfffffffd, 0xfffffffe, 0xffffffff, 0, 1, 2],
  );
});

t.test('queue bound: QueueFullError, and memory does not grow with a stalled sheep', async (t) => {
  const fakes = await fakeCluster(t, 1, { hold: true }); // never answers on its own
  const p = pool(t, fakes, { connectionsPerNode: 1, maxInFlightPerConnection: 4, maxQueued: 8, requestTimeout: 0 });
  await ready(p, 1);
  const ps = Array.from({ length: 12 }, (_, i) => settle(p.request(read(BigInt(i)))));
  const extra = await settle(p.request(read(99n)));
  t.ok(extra instanceof QueueFullError, 'the 13th is refused');
  t.equal((extra as QueueFullError).code, 'SHEEPDOG_ERR_QUEUE_FULL');
  await fakes[0]?.waitFor(4);
  t.equal(p.stats.inFlight, 4, 'in-flight cap holds');
  t.equal(p.stats.queued, 8, 'queue bound holds');
  t.ok(p.busy);
  const drained = once(p, 'drain');
  // Answer everything as it comes.
  const f = fakes[0] as FakeSheep;
  f.onRequest = (r) => r.auto();
  for (const r of f.take()) r.auto();
  await drained;
  t.notOk(p.busy);
  const rs = await Promise.all(ps);
  t.ok(rs.every((r) => !(r instanceof Error)));
});

t.test('timeout while queued, after send, and the late reply', async (t) => {
  const fakes = await fakeCluster(t, 1, { hold: true });
  const p = pool(t, fakes, { connectionsPerNode: 1, maxInFlightPerConnection: 1 });
  const sent = p.request(read(1n), undefined, { timeout: 30 });
  const queued = p.request(read(2n), undefined, { timeout: 30 });
  const e1 = await settle(sent);
  const e2 = await settle(queued);
  t.ok(e1 instanceof TimeoutError);
  t.equal((e1 as TimeoutError).phase, 'sent');
  t.equal((e1 as TimeoutError).node, fakes[0]?.address);
  t.match((e1 as Error).message, /READ_OBJ timed out after 30 ms \(sent to/);
  t.ok(e2 instanceof TimeoutError);
  t.equal((e2 as TimeoutError).phase, 'queued');
  t.equal(p.stats.orphans, 1, 'the id stays reserved');
  await fakes[0]?.waitFor(1);
  const lateOne = fakes[0]?.take()[0];
  // The late reply is dropped without a protocol error; the slot frees.
  const next = p.request(read(3n, 4));
  lateOne?.auto();
  await fakes[0]?.waitFor(1);
  for (const r of fakes[0]?.take() ?? []) r.auto();
  const r3 = await next;
  t.same(Buffer.from(r3.body), patternBody(3n, 0, 4));
  t.equal(p.stats.orphans, 0);
  t.equal(p.stats.connections, 1, 'same connection, no reconnect');
  t.equal(fakes[0]?.accepted, 1);
});

t.test('abort before send, while queued and after send', async (t) => {
  const fakes = await fakeCluster(t, 1, { hold: true });
  const p = pool(t, fakes, { connectionsPerNode: 1, maxInFlightPerConnection: 1 });
  const e0 = await settle(p.request(read(1n), undefined, { signal: AbortSignal.abort('no') }));
  t.ok(e0 instanceof AbortError);
  t.equal((e0 as Error).cause, 'no');
  const a1 = new AbortController();
  const a2 = new AbortController();
  const s1 = p.request(read(2n), undefined, { signal: a1.signal });
  const s2 = p.request(read(3n), undefined, { signal: a2.signal });
  await fakes[0]?.waitFor(1);
  a2.abort();
  a1.abort();
  const [e1, e2] = [await settle(s1), await settle(s2)];
  t.equal((e1 as AbortError).phase, 'sent');
  t.equal((e2 as AbortError).phase, 'queued');
  t.equal(p.stats.queued, 0);
  t.equal(p.stats.active, 0);
  for (const r of fakes[0]?.take() ?? []) r.auto();
});

t.test('failover: reads move to another node when their connection dies', async (t) => {
  const [a, b] = (await fakeCluster(t, 2)) as [FakeSheep, FakeSheep];
  a.onRequest = (r) => r.conn.destroy(); // node a drops every connection that sends a request
  const p = pool(t, [a, b], { connectionsPerNode: 1, reconnectStrategy: 10_000 });
  await ready(p, 2);
  const rs = await Promise.all(Array.from({ length: 20 }, (_, i) => p.request(read(BigInt(i), 8))));
  t.ok(rs.every((r) => r.node === b.address));
  rs.forEach((r, i) => t.same(Buffer.from(r.body), patternBody(BigInt(i), 0, 8)));
});

t.test('a burst of connection deaths past maxRetries: backoff failovers within the deadline', async (t) => {
  const [a, b] = (await fakeCluster(t, 2)) as [FakeSheep, FakeSheep];
  // Seven connections in a row die under the request, alternating nodes;
  // both nodes stay healthy (they accept the reconnects).
  let drops = 7;
  const onRequest = (r: FakeRequest): void => {
    if (drops > 0) {
      drops--;
      r.conn.destroy();
    } else r.auto();
  };
  a.onRequest = onRequest;
  b.onRequest = onRequest;
  const retries: { attempt: number; delay: number }[] = [];
  const ch = diagnostics_channel.channel('sheepdog:request:retry');
  const sub = (m: unknown): void => {
    const x = m as { reason: string; attempt: number; delay: number };
    if (x.reason === 'failover') retries.push({ attempt: x.attempt, delay: x.delay });
  };
  ch.subscribe(sub);
  t.teardown(() => ch.unsubscribe(sub));
  const p = pool(t, [a, b], { connectionsPerNode: 1, maxRetries: 2, reconnectStrategy: 1 });
  await ready(p, 2);
  const r = await p.request(read(5n, 8), undefined, { timeout: 20_000 });
  t.same(Buffer.from(r.body), patternBody(5n, 0, 8), 'the read succeeded after the seventh death');
  t.same(
    retries.map((x) => x.attempt),
    [1, 2, 3, 4, 5, 6, 7],
    'seven failovers',
  );
  t.same(
    retries.map((x) => x.delay > 0),
    [false, false, true, true, true, true, true],
    'the first maxRetries at once, the rest after a backoff',
  );
  t.equal(p.stats.active, 0);

  // The deadline ends it: the connection's error when it leaves no room for
  // the next backoff, or TimeoutError if it passes between two deaths;
  // either way long before maxTransientRetries.
  drops = 100;
  retries.length = 0;
  const e = await settle(p.request(read(6n, 8), undefined, { timeout: 300 }));
  t.ok(e instanceof ConnectionError || e instanceof TimeoutError, `the deadline ended it (${String(e)})`);
  t.ok(retries.length < 2 + 20, `after ${retries.length} failovers`);
  // maxTransientRetries bounds the backoff failovers too.
  const q = pool(t, [a, b], { connectionsPerNode: 1, maxRetries: 1, maxTransientRetries: 2, reconnectStrategy: 1 });
  await ready(q, 2);
  retries.length = 0;
  const e2 = await settle(q.request(read(7n, 8), undefined, { timeout: 20_000 }));
  t.ok(e2 instanceof ConnectionError, 'after 1 + 2 failovers, the connection error');
  t.equal(retries.length, 3);
  // maxRetries 0: a written request is never sent again.
  const z = pool(t, [a, b], { connectionsPerNode: 1, maxRetries: 0, reconnectStrategy: 1 });
  await ready(z, 2);
  retries.length = 0;
  const e3 = await settle(z.request(read(8n, 8), undefined, { timeout: 20_000 }));
  t.ok(e3 instanceof ConnectionError, 'maxRetries 0: the first death ends it');
  t.equal(retries.length, 0, 'no failover');
});

t.test('non-repeatable ops give OutcomeUnknownError; idempotent overrides it', async (t) => {
  const [a] = (await fakeCluster(t, 1)) as [FakeSheep];
  a.onRequest = (r) => r.conn.destroy();
  const p = pool(t, [a], { connectionsPerNode: 1 });
  const e = await settle(p.request(newVdi(), NAME));
  t.ok(e instanceof OutcomeUnknownError);
  t.equal((e as OutcomeUnknownError).opcode, Op.NEW_VDI);
  t.equal((e as OutcomeUnknownError).node, a.address);
  t.match((e as Error).message, /may or may not have taken effect/);
  t.ok((e as Error).cause instanceof ConnectionError);
  const e2 = await settle(p.request(read(1n), undefined, { idempotent: false }));
  t.ok(e2 instanceof OutcomeUnknownError, 'a read declared non-idempotent is not re-sent');
  const e3 = await settle(p.request(read(1n), undefined, { timeout: 2000 }));
  t.ok(
    e3 instanceof ConnectionError || e3 instanceof TimeoutError,
    `a read gives up once its deadline leaves no room to try again (${String(e3)})`,
  );
});

t.test('a protocol error: pinned requests see it, others fail over', async (t) => {
  const [a, b] = (await fakeCluster(t, 2)) as [FakeSheep, FakeSheep];
  a.onRequest = (r) => r.reply(Result.SUCCESS, { id: r.id ^ 0x55 });
  const p = pool(t, [a, b], { connectionsPerNode: 1, reconnectStrategy: 10_000 });
  await ready(p, 2);
  const e = await settle(p.request(read(1n), undefined, { node: a.address }));
  t.ok(e instanceof SheepProtocolError);
  t.equal((e as SheepProtocolError).reason, 'unknown-id');
  t.equal((e as SheepProtocolError).node, a.address);
  const ok = await p.request(read(2n), undefined, { node: b.address });
  t.equal(ok.node, b.address);
  const r = await p.request(read(3n));
  t.equal(r.node, b.address);
});

t.test('transient results are retried, terminal ones returned', async (t) => {
  const [a] = (await fakeCluster(t, 1)) as [FakeSheep];
  let n = 0;
  a.onRequest = (r) => {
    if (r.opcode === Op.READ_OBJ && n++ < 2) r.reply(Result.WAIT_FOR_JOIN);
    else if (r.opcode === Op.GET_VDI_INFO) r.reply(Result.NO_VDI);
    else if (r.opcode === Op.NEW_VDI) r.reply(Result.NETWORK_ERROR);
    else if (r.opcode === Op.LOCK_VDI) r.reply(Result.HALT);
    else r.auto();
  };
  const p = pool(t, [a], { maxTransientRetries: 2 });
  const r = await p.request(read(5n, 4));
  t.equal(r.header.result, Result.SUCCESS, 'WAIT_FOR_JOIN twice, then success');
  t.equal(a.seen.filter((x) => x.opcode === Op.READ_OBJ).length, 3);
  const nv = await p.request(vdiRequest(Op.GET_VDI_INFO, { flags: Flag.CMD_WRITE, dataLength: 256 }), NAME);
  t.equal(nv.header.result, Result.NO_VDI, 'terminal results come back as replies');
  t.equal(a.seen.filter((x) => x.opcode === Op.GET_VDI_INFO).length, 1);
  const ne = await p.request(newVdi(), NAME);
  t.equal(ne.header.result, Result.NETWORK_ERROR, 'NETWORK_ERROR is not retried for NEW_VDI');
  t.equal(a.seen.filter((x) => x.opcode === Op.NEW_VDI).length, 1);
  const halt = await p.request(vdiRequest(Op.LOCK_VDI, { flags: Flag.CMD_WRITE, dataLength: 256 }), NAME);
  t.equal(halt.header.result, Result.HALT, 'the last reply once the retry budget is spent');
  t.equal(a.seen.filter((x) => x.opcode === Op.LOCK_VDI).length, 3);
});

t.test('KILLED sends the retry to another node', async (t) => {
  const [a, b] = (await fakeCluster(t, 2)) as [FakeSheep, FakeSheep];
  a.onRequest = (r) => r.reply(Result.KILLED);
  const p = pool(t, [a, b], { connectionsPerNode: 1 });
  await ready(p, 2);
  const rs = await Promise.all([1n, 2n, 3n, 4n].map((o) => p.request(read(o))));
  t.ok(rs.every((r) => r.node === b.address && r.header.result === Result.SUCCESS));
});

t.test('a dead node is marked down, retried, and comes back', async (t) => {
  const [a, b] = (await fakeCluster(t, 2)) as [FakeSheep, FakeSheep];
  const p = pool(t, [a, b], { connectionsPerNode: 1, reconnectStrategy: () => 5 });
  await ready(p, 2);
  const down = once(p, 'nodeDown');
  await a.stop();
  const [node, err] = (await down) as [string, Error];
  t.equal(node, a.address);
  t.ok(err instanceof ConnectionError);
  // Requests keep working on b.
  const r = await p.request(read(1n));
  t.equal(r.node, b.address);
  t.equal(p.stats.nodes.find((n) => n.node === a.address)?.state, 'down');
  const up = once(p, 'nodeUp');
  await a.start();
  t.same(await up, [a.address]);
  const pinned = await p.request(read(2n), undefined, { node: a.address });
  t.equal(pinned.node, a.address);
});

t.test('reconnectStrategy false / Error gives a node up', async (t) => {
  const dead = await FakeSheep.start();
  const addr = dead.address;
  await dead.close();
  const p1 = new SheepdogPool({ nodes: [addr], reconnectStrategy: false });
  t.teardown(() => p1.destroy());
  const e = await settle(p1.request(read(1n)));
  t.ok(e instanceof ConnectionError);
  t.equal((e as ConnectionError).reason, 'no-node');
  t.match((e as Error).message, addr);
  t.equal(p1.stats.nodes[0]?.state, 'failed');
  const e2 = await settle(p1.request(read(1n)));
  t.ok(e2 instanceof ConnectionError, 'fails fast once every node is given up');

  const p2 = new SheepdogPool({ nodes: [addr], reconnectStrategy: (n) => (n >= 1 ? new Error('enough') : 1) });
  t.teardown(() => p2.destroy());
  const e3 = await settle(p2.connect());
  t.ok(e3 instanceof ConnectionError, 'connect() rejects once every node failed a round');
  const e4 = await settle(p2.request(read(1n)));
  t.ok(e4 instanceof ConnectionError, 'the request fails when the strategy gives up');
  t.equal(p2.stats.nodes[0]?.state, 'failed');
  t.match(p2.stats.nodes[0]?.lastError ?? '', /enough/);
});

t.test('requests wait for a node that is reconnecting (within their deadline)', async (t) => {
  keepAlive(t); // waits for 'nodeDown' of an idle pool, which holds the process no more
  const [a] = (await fakeCluster(t, 1)) as [FakeSheep];
  const p = pool(t, [a], { connectionsPerNode: 1, reconnectStrategy: () => 5 });
  await p.connect();
  const down = once(p, 'nodeDown');
  await a.stop();
  await down;
  const pending = p.request(read(7n, 4), undefined, { timeout: 30_000 });
  t.equal(p.stats.queued, 1);
  await a.start();
  const r = await pending;
  t.same(Buffer.from(r.body), patternBody(7n, 0, 4));
});

t.test('discovery with GET_NODE_LIST, refreshed on epoch change', async (t) => {
  const fakes = await fakeCluster(t, 4);
  const [a, b, c, d] = fakes as [FakeSheep, FakeSheep, FakeSheep, FakeSheep];
  for (const f of [a, b, c]) f.nodeList = [a.address, b.address, c.address];
  const p = pool(t, [a], { discover: true, connectionsPerNode: 1 });
  await p.connect();
  t.same([...p.nodes].sort(), [a.address, b.address, c.address].sort());
  // The cluster changes: c leaves, d joins, epoch 1 -> 2.
  for (const f of fakes) {
    f.nodeList = [a.address, b.address, d.address];
    f.epoch = 2;
  }
  const changed = once(p, 'nodes');
  await p.request(read(1n), undefined, { node: a.address }); // carries epoch 2
  const [list] = (await changed) as [readonly string[]];
  t.same([...list].sort(), [a.address, b.address, d.address].sort());
  t.equal(p.epoch, 2);
  const e = await settle(p.request(read(1n), undefined, { node: c.address }));
  t.ok(e instanceof InvalidArgumentError, 'c is no longer in the pool');
  const r = await p.request(read(2n), undefined, { node: d.address });
  t.equal(r.node, d.address);
});

t.test('pinned requests go to their node only', async (t) => {
  const fakes = await fakeCluster(t, 3);
  const p = pool(t, fakes, { connectionsPerNode: 1 });
  const target = fakes[2] as FakeSheep;
  const rs = await Promise.all(
    Array.from({ length: 10 }, () => p.request(plainRequest(Op.STAT_SHEEP), undefined, { node: target.address })),
  );
  t.ok(rs.every((r) => r.node === target.address));
  t.equal(target.seen.length, 10);
  t.equal((rs[0] as { header: NodeResponse }).header.kind, 'node');
  const e = await settle(p.request(read(1n), undefined, { node: '10.9.9.9:7000' }));
  t.ok(e instanceof InvalidArgumentError);
});

t.test('close() waits for in-flight and queued requests, then closes sockets', async (t) => {
  const fakes = await fakeCluster(t, 1, { hold: true });
  const f = fakes[0] as FakeSheep;
  const p = pool(t, fakes, { connectionsPerNode: 1, maxInFlightPerConnection: 1 });
  const r1 = p.request(read(1n));
  const r2 = p.request(read(2n));
  await f.waitFor(1);
  let closed = false;
  const closing = p.close().then(() => {
    closed = true;
  });
  t.ok(p.closed);
  const e = await settle(p.request(read(3n)));
  t.ok(e instanceof PoolClosedError);
  f.hold = false;
  f.onRequest = (r) => r.auto();
  for (const r of f.take()) r.auto();
  await Promise.all([r1, r2]);
  await closing;
  t.ok(closed);
  await f.waitConns(0);
  t.equal(p.stats.connections, 0);
});

t.test('destroy() fails in-flight, queued and retrying requests', async (t) => {
  const fakes = await fakeCluster(t, 1, { hold: true });
  const f = fakes[0] as FakeSheep;
  const p = pool(t, fakes, { connectionsPerNode: 1, maxInFlightPerConnection: 1 });
  const r1 = settle(p.request(read(1n)));
  const r2 = settle(p.request(read(2n)));
  await f.waitFor(1);
  p.destroy();
  const [e1, e2] = await Promise.all([r1, r2]);
  t.ok(e1 instanceof PoolClosedError);
  t.ok(e2 instanceof PoolClosedError);
  await f.waitConns(0);
  t.equal(p.stats.active, 0);
  const e3 = await settle(p.request(read(3n)));
  t.ok(e3 instanceof PoolClosedError);
  await p.close();
});

t.test('bad arguments reject without sending', async (t) => {
  const fakes = await fakeCluster(t, 1);
  const p = pool(t, fakes);
  t.ok((await settle(p.request(newVdi(), Buffer.alloc(3)))) instanceof InvalidArgumentError);
  t.ok((await settle(p.request(read(1n), undefined, { timeout: -1 }))) instanceof InvalidArgumentError);
  t.throws(() => new SheepdogPool({ nodes: [] }), InvalidArgumentError);
  t.throws(() => new SheepdogPool({ nodes: 'a:b:c' }), InvalidArgumentError);
  t.throws(() => new SheepdogPool({ connectionsPerNode: 0 }), InvalidArgumentError);
  t.equal(fakes[0]?.seen.length, 0);
});

t.test('stats shape', async (t) => {
  const fakes = await fakeCluster(t, 2);
  const p = pool(t, fakes, { connectionsPerNode: 2 });
  await p.connect();
  while (p.stats.ready < 4) await new Promise((r) => setImmediate(r));
  const s = p.stats;
  t.equal(s.connections, 4);
  t.equal(s.nodes.length, 2);
  t.match(s.nodes[0], { state: 'up', connections: 2, ready: 2, inFlight: 0, queued: 0, seed: true });
  t.same(
    p.nodes,
    fakes.map((f) => f.address),
  );
});

t.test('a connection past its orphan limit is retired and replaced', async (t) => {
  const fakes = await fakeCluster(t, 1, { hold: true });
  const f = fakes[0] as FakeSheep;
  const p = pool(t, fakes, { connectionsPerNode: 1, maxOrphansPerConnection: 1 });
  await ready(p, 1);
  const ps = [1n, 2n].map((o) => settle(p.request(read(o), undefined, { timeout: 10 })));
  for (const e of await Promise.all(ps)) t.ok(e instanceof TimeoutError);
  await f.waitConns(2); // the replacement connected while the old one drains
  const r = p.request(read(3n, 4));
  await f.waitFor(3);
  const held = f.take();
  for (const x of held) x.auto(); // two late replies (dropped) and the new request
  t.same(Buffer.from((await r).body), patternBody(3n, 0, 4));
  await f.waitConns(1);
  t.equal(p.stats.orphans, 0);
  t.equal(p.stats.connections, 1);
});

t.test('requests on a connection that fails before the batch is written go elsewhere', async (t) => {
  const fakes = await fakeCluster(t, 2);
  const p = pool(t, fakes, { connectionsPerNode: 1, reconnectStrategy: 10_000 });
  await ready(p, 2);
  const ps = Array.from({ length: 8 }, (_, i) => p.request(read(BigInt(i), 4), undefined, { idempotent: false }));
  // Same tick: nothing is written yet. Kill one connection.
  const conns = Reflect.get(p, 'readyConns') as { destroy(): void; stats: { unsent: number } }[];
  const victim = conns.find((c) => c.stats.unsent > 0);
  victim?.destroy();
  const rs = await Promise.all(ps);
  t.equal(rs.length, 8, 'even non-idempotent requests are re-sent when they were never written');
  t.equal(
    fakes.reduce((n, f) => n + f.seen.length, 0),
    8,
    'each request reached a sheep once',
  );
});

t.test('pinned requests to a node given up, and connect() reviving it', async (t) => {
  const [a, b] = (await fakeCluster(t, 2)) as [FakeSheep, FakeSheep];
  const p = pool(t, [a, b], { connectionsPerNode: 1, reconnectStrategy: false });
  await ready(p, 2);
  const down = once(p, 'nodeDown');
  await a.stop();
  await down;
  t.equal(p.stats.nodes[0]?.state, 'failed');
  const e = await settle(p.request(read(1n), undefined, { node: a.address }));
  t.ok(e instanceof ConnectionError);
  t.equal((e as ConnectionError).reason, 'no-node');
  t.match((e as Error).message, /given up/);
  t.equal((await p.request(read(2n))).node, b.address, 'the others keep working');
  await a.start();
  await p.connect();
  while (p.stats.nodes[0]?.state !== 'up') await once(p, 'nodeUp');
  t.equal((await p.request(read(3n), undefined, { node: a.address })).node, a.address);
});

t.test('refreshNodes runs once at a time', async (t) => {
  const fakes = await fakeCluster(t, 2);
  for (const f of fakes) f.nodeList = fakes.map((x) => x.address);
  const p = pool(t, fakes.slice(0, 1), { connectionsPerNode: 1, discover: true });
  await p.connect();
  const before = fakes[0]?.seen.filter((r) => r.opcode === Op.GET_NODE_LIST).length ?? 0;
  await Promise.all([p.refreshNodes(), p.refreshNodes(), p.refreshNodes()]);
  const after = fakes.reduce((n, f) => n + f.seen.filter((r) => r.opcode === Op.GET_NODE_LIST).length, 0);
  t.ok(after - before <= 2, `at most one run plus one re-run (${after - before})`);
  t.equal(p.nodes.length, 2);
});

t.test('busy before connecting starts the pool; drain follows', async (t) => {
  const fakes = await fakeCluster(t, 1);
  const p = pool(t, fakes);
  const drained = once(p, 'drain');
  t.ok(p.busy, 'no connection yet');
  await drained;
  t.notOk(p.busy);
});

t.test('requests that time out while queued do not pile up in the queue', async (t) => {
  const dead = await FakeSheep.start();
  const addr = dead.address;
  const port = dead.port;
  await dead.close();
  const p = new SheepdogPool({ nodes: [addr], reconnectStrategy: 20, maxQueued: 5000, connectionsPerNode: 1 });
  t.teardown(() => p.destroy());
  const n = 3000;
  const rs = await Promise.all(
    Array.from({ length: n }, (_, i) => settle(p.request(read(BigInt(i)), undefined, { timeout: 5 }))),
  );
  t.ok(rs.every((e) => e instanceof TimeoutError && e.phase === 'queued'));
  t.equal(p.stats.queued, 0);
  const q = Reflect.get(Reflect.get(p, 'queue') as object, 'fifo') as { size: number };
  t.ok(q.size < n / 2, `settled entries were compacted away (${q.size} left of ${n})`);
  // The node comes back: a new request is not stuck behind settled entries.
  const back = await FakeSheep.start({ port });
  t.teardown(() => back.close());
  await once(p, 'nodeUp');
  const r = await p.request(read(1n, 4), undefined, { timeout: 10_000 });
  t.same(Buffer.from(r.body), patternBody(1n, 0, 4));
});

t.test('noDelay: false reaches every connection of the pool', async (t) => {
  const fakes = await fakeCluster(t, 2);
  const p = pool(t, fakes, { connectionsPerNode: 1, noDelay: false });
  await ready(p, 2);
  const conns = [...(Reflect.get(p, 'owner') as Map<object, unknown>).keys()];
  t.equal(conns.length, 2);
  for (const c of conns) {
    const sock = Reflect.get(c, 'socket') as object;
    const k = Object.getOwnPropertySymbols(sock).find((s) => s.description === 'kSetNoDelay');
    t.equal(k === undefined ? undefined : Reflect.get(sock, k), false);
  }
});

/** Collect uncaught exceptions (a throwing event listener surfaces as one) for the rest of the test. */
function uncaught(tt: T): Error[] {
  const errs: Error[] = [];
  const h = (e: Error): void => {
    errs.push(e);
  };
  process.on('uncaughtException', h);
  tt.teardown(() => {
    process.off('uncaughtException', h);
  });
  return errs;
}

/** Resolves once `errs` has `n` entries (the deferred emit has run). */
async function untilErrors(errs: Error[], n: number): Promise<void> {
  while (errs.length < n) await new Promise((r) => setImmediate(r));
}

t.test('a throwing event listener neither strands a request nor kills its connection', async (t) => {
  t.test("'epoch' thrown by the reply that carried the new epoch", async (t) => {
    t.setTimeout(10_000);
    const errs = uncaught(t);
    const [a] = (await fakeCluster(t, 1, { epoch: 5 })) as [FakeSheep];
    const p = pool(t, [a], { connectionsPerNode: 1 });
    p.on('epoch', (e) => {
      throw new Error(`epoch listener ${e}`);
    });
    const r = await p.request(read(1n, 4));
    t.same(Buffer.from(r.body), patternBody(1n, 0, 4), 'the request settles');
    await untilErrors(errs, 1);
    t.match(errs[0]?.message, 'epoch listener 5', 'the listener error is an uncaught exception');
    a.epoch = 6;
    const r2 = await p.request(read(2n, 4));
    t.same(Buffer.from(r2.body), patternBody(2n, 0, 4));
    await untilErrors(errs, 2);
    t.equal(p.epoch, 6);
    t.equal(a.accepted, 1, 'the same connection carried both');
    t.equal(p.stats.ready, 1);
  });

  t.test("'drain' thrown while the reply frees a slot", async (t) => {
    t.setTimeout(10_000);
    const errs = uncaught(t);
    const [a] = (await fakeCluster(t, 1, { hold: true })) as [FakeSheep];
    const p = pool(t, [a], { connectionsPerNode: 1, maxInFlightPerConnection: 1 });
    await ready(p, 1);
    p.on('drain', () => {
      throw new Error('drain listener');
    });
    const first = p.request(read(1n, 4));
    const second = p.request(read(2n, 4)); // queued: the only slot is taken
    t.ok(p.busy);
    await a.waitFor(1);
    a.hold = false;
    for (const r of a.take()) r.auto();
    const [r1, r2] = await Promise.all([first, second]);
    t.same(Buffer.from(r1.body), patternBody(1n, 0, 4));
    t.same(Buffer.from(r2.body), patternBody(2n, 0, 4));
    await untilErrors(errs, 1);
    t.match(errs[0]?.message, 'drain listener');
    t.equal(a.accepted, 1, 'no reconnect');
    t.equal(p.stats.active, 0);
  });

  t.test("'nodeDown' thrown while a connection fails its requests", async (t) => {
    t.setTimeout(10_000);
    const errs = uncaught(t);
    const [a, b] = (await fakeCluster(t, 2)) as [FakeSheep, FakeSheep];
    a.hold = true;
    const p = pool(t, [a, b], { connectionsPerNode: 1, reconnectStrategy: 10_000 });
    await ready(p, 2);
    p.on('nodeDown', () => {
      throw new Error('nodeDown listener');
    });
    const ps = [1n, 2n, 3n, 4n].map((o) => p.request(read(o, 4)));
    await a.waitFor(1);
    for (const r of a.take()) r.conn.destroy(); // a drops the connection carrying the request
    const rs = await Promise.all(ps);
    rs.forEach((r, i) => t.same(Buffer.from(r.body), patternBody(BigInt(i + 1), 0, 4)));
    await untilErrors(errs, 1);
    t.match(errs[0]?.message, 'nodeDown listener');
    t.equal(p.stats.nodes.find((n) => n.node === a.address)?.state, 'down');
  });

  t.test("'nodeUp' thrown when the first connection is ready", async (t) => {
    t.setTimeout(10_000);
    const errs = uncaught(t);
    const [a] = (await fakeCluster(t, 1)) as [FakeSheep];
    const p = pool(t, [a], { connectionsPerNode: 1 });
    p.on('nodeUp', () => {
      throw new Error('nodeUp listener');
    });
    const r = await p.request(read(1n, 4)); // queued until the connection is ready
    t.same(Buffer.from(r.body), patternBody(1n, 0, 4));
    await untilErrors(errs, 1);
    t.match(errs[0]?.message, 'nodeUp listener');
  });
});

t.test('a request whose connections keep dying before it is written is bounded (maxUnsentRetries)', async (t) => {
  const fakes = await fakeCluster(t, 2);
  const victim = newVdi(); // not repeatable: only unsent bounces may place it again
  // Every connection the victim is placed on dies in the same tick, before
  // the write batch: 100 times, then it would go through.
  const send = Connection.prototype.send;
  let killed = 0;
  Connection.prototype.send = function (this: Connection, op: ConnectionOp): void {
    send.call(this, op);
    if (op instanceof PoolRequest && op.req === victim && killed < 100) {
      killed++;
      this.destroy();
    }
  };
  t.teardown(() => {
    Connection.prototype.send = send;
  });
  const retried: string[] = [];
  const fn = (m: unknown): void => {
    retried.push((m as { reason: string }).reason);
  };
  diagnostics_channel.subscribe('sheepdog:request:retry', fn);
  t.teardown(() => {
    diagnostics_channel.unsubscribe('sheepdog:request:retry', fn);
  });
  const p = pool(t, fakes, { connectionsPerNode: 1, reconnectStrategy: 0, requestTimeout: 0, maxUnsentRetries: 5 });
  await ready(p, 2);
  const e = await settle(p.request(victim, NAME));
  t.ok(e instanceof ConnectionError, 'fails with the connection error');
  t.equal((e as ConnectionError).sent, false);
  t.match((e as Error).message, /NEW_VDI was never sent: 6 connections failed before writing it/);
  t.equal(killed, 6, 'placed 1 + maxUnsentRetries times');
  t.same(retried, ['unsent', 'unsent', 'unsent', 'unsent', 'unsent']);
  t.equal(
    fakes.reduce((n, f) => n + f.seen.filter((r) => r.opcode === Op.NEW_VDI).length, 0),
    0,
    'never reached a sheep',
  );
  const ok = await p.request(read(1n, 4));
  t.equal(ok.header.result, Result.SUCCESS, 'the pool still works');
});
