// A cluster that cannot be reached: every node refuses (or cannot be
// routed to). The first request fails at once with a ConnectionError naming
// each node and its cause, not after its deadline with a bare TimeoutError.
// Nodes that were up once are still waited for (see pool.test.ts,
// "requests wait for a node that is reconnecting").
import t from 'tap';
import { Op } from '../../protocol/constants.js';
import { objRequest } from '../../protocol/header.js';
import { ConnectionError, TimeoutError } from '../../lib/errors.js';
import { SheepdogPool } from '../../lib/transport/pool.js';
import { FakeSheep } from './fake-sheep.js';

t.setTimeout(60_000);

const read = (oid: bigint, len = 16) => objRequest(Op.READ_OBJ, { oid, dataLength: len });

/** An address nothing listens on: a port the kernel gave us (port 0), closed again. */
async function deadAddress(): Promise<string> {
  const f = await FakeSheep.start();
  const a = f.address;
  await f.close();
  return a;
}

async function settle<T>(p: Promise<T>): Promise<T | Error> {
  return p.catch((e: unknown) => e as Error);
}

t.test('every node refuses: ConnectionError at once, naming each node and its cause', async (t) => {
  const dead = [await deadAddress(), await deadAddress()];
  // Default requestTimeout (30 s) and reconnect strategy.
  const p = new SheepdogPool({ nodes: dead });
  t.teardown(() => p.destroy());
  const t0 = performance.now();
  const e = await settle(p.request(read(1n)));
  const took = performance.now() - t0;
  t.ok(e instanceof ConnectionError, 'a ConnectionError, not a TimeoutError');
  t.notOk(e instanceof TimeoutError);
  t.ok(took < 5000, `failed within seconds (${Math.round(took)} ms), not after requestTimeout`);
  const ce = e as ConnectionError;
  t.equal(ce.reason, 'connect');
  t.equal(ce.sent, false);
  for (const a of dead) t.match(ce.message, `${a}: connection refused (ECONNREFUSED)`);
  t.ok(ce.cause instanceof AggregateError, 'cause: every node’s error');
  const causes = (ce.cause as AggregateError).errors as Error[];
  t.equal(causes.length, 2);
  t.ok(causes.every((c) => c instanceof ConnectionError));
  t.same(causes.map((c) => (c as ConnectionError).node).sort(), [...dead].sort());

  // A request made while the nodes are in reconnect backoff fails at their next attempt.
  const t1 = performance.now();
  const e2 = await settle(p.request(read(2n)));
  t.ok(e2 instanceof ConnectionError);
  t.ok(performance.now() - t1 < 5000);
});

t.test('one node refusing: the error names it, cause is its connect error', async (t) => {
  const dead = await deadAddress();
  const p = new SheepdogPool({ nodes: dead });
  t.teardown(() => p.destroy());
  const e = await settle(p.request(read(1n)));
  t.ok(e instanceof ConnectionError);
  t.equal((e as ConnectionError).node, dead);
  t.match((e as Error).message, `READ_OBJ: cannot connect to ${dead}: connection refused (ECONNREFUSED)`);
  const c = (e as Error).cause as ConnectionError;
  t.ok(c instanceof ConnectionError);
  t.equal((c.cause as { code?: string }).code, 'ECONNREFUSED');
});

t.test('a pinned request to a node that refuses fails at once; the others are served', async (t) => {
  const dead = await deadAddress();
  const live = await FakeSheep.start();
  t.teardown(() => live.close());
  const p = new SheepdogPool({ nodes: [dead, live.address] });
  t.teardown(() => p.destroy());
  const e = await settle(p.request(read(1n), undefined, { node: dead }));
  t.ok(e instanceof ConnectionError);
  t.equal((e as ConnectionError).node, dead);
  const r = await p.request(read(2n));
  t.equal(r.node, live.address);
});

t.test('a short deadline while the nodes are unreachable: TimeoutError with the cause', async (t) => {
  const dead = await deadAddress();
  // The next attempt is far off: the deadline passes first.
  const p = new SheepdogPool({ nodes: dead, reconnectStrategy: 60_000 });
  t.teardown(() => p.destroy());
  t.ok((await settle(p.request(read(1n)))) instanceof ConnectionError, 'the first attempt fails');
  const e = await settle(p.request(read(2n), undefined, { timeout: 50 }));
  t.ok(e instanceof TimeoutError);
  t.equal((e as TimeoutError).phase, 'queued');
  t.ok((e as Error).cause instanceof ConnectionError, 'the node’s connect error is the cause');
  t.match((e as Error).message, dead);
});
