// Transient sheep results are retried with backoff, bounded by
// maxTransientRetries (and the deadline), each retry published on
// sheepdog:request:retry with its reason and the result that caused it.
import diagnostics_channel from 'node:diagnostics_channel';
import t, { type Test } from 'tap';
import { Flag, Op, Result, resultName } from '../../protocol/constants.js';
import { objRequest, vdiRequest } from '../../protocol/header.js';
import { type PoolOptions, SheepdogPool } from '../../lib/transport/pool.js';
import type { RequestRetryMessage } from '../../lib/util/diagnostics.js';
import { FakeSheep, type FakeRequest, fakeCluster } from './fake-sheep.js';

t.setTimeout(60_000);

function pool(tt: Test, fakes: FakeSheep[], o: PoolOptions = {}): SheepdogPool {
  const p = new SheepdogPool({ nodes: fakes.map((f) => f.address), connectionsPerNode: 1, ...o });
  tt.teardown(() => p.destroy());
  return p;
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

const write = (oid: bigint) => objRequest(Op.WRITE_OBJ, { flags: Flag.CMD_WRITE, oid, dataLength: 16 });
const read = (oid: bigint) => objRequest(Op.READ_OBJ, { oid, dataLength: 16 });

/** Answer the first `n` requests of each oid with `result`, then as usual. */
function failFirst(f: FakeSheep, n: number, result: number): void {
  const count = new Map<bigint, number>();
  f.onRequest = (r: FakeRequest) => {
    const h = r.header;
    const key = h.kind === 'obj' ? h.oid : -1n;
    const k = count.get(key) ?? 0;
    count.set(key, k + 1);
    if (k < n) r.reply(result);
    else r.auto();
  };
}

for (const [name, result, req] of [
  ['NETWORK_ERROR, idempotent write', Result.NETWORK_ERROR, write(1n)],
  ['OLD_NODE_VER', Result.OLD_NODE_VER, write(2n)],
  ['NEW_NODE_VER', Result.NEW_NODE_VER, read(3n)],
  ['WAIT_FOR_JOIN', Result.WAIT_FOR_JOIN, read(4n)],
  ['AGAIN', Result.AGAIN, write(5n)],
  ['NODE_IN_RECOVERY', Result.NODE_IN_RECOVERY, write(6n)],
  ['HALT', Result.HALT, read(7n)],
] as const) {
  t.test(`${name}: retried, the reason on sheepdog:request:retry`, async (t) => {
    const [a] = (await fakeCluster(t, 1)) as [FakeSheep];
    failFirst(a, 2, result);
    const seen = retries(t);
    const p = pool(t, [a]);
    const body = req.opcode === Op.WRITE_OBJ ? Buffer.alloc(16, 1) : undefined;
    const r = await p.request(req, body, { untilReply: true });
    t.equal(r.header.result, Result.SUCCESS, 'succeeds after two transient results');
    t.equal(a.seen.length, 3);
    const mine = seen.filter((m) => m.request === req);
    t.equal(mine.length, 2);
    for (const [i, m] of mine.entries()) {
      t.equal(m.reason, 'transient');
      t.equal(m.result, result);
      t.equal(m.resultName, resultName(result));
      t.equal(m.attempt, i + 1);
      t.equal(m.node, a.address);
      t.ok(m.delay >= 0);
    }
  });
}

t.test('transient retries are bounded by maxTransientRetries, without a deadline too', async (t) => {
  const [a] = (await fakeCluster(t, 1)) as [FakeSheep];
  a.onRequest = (r) => r.reply(Result.NODE_IN_RECOVERY); // forever
  const seen = retries(t);
  const p = pool(t, [a], { maxTransientRetries: 3, requestTimeout: 0 });
  const r = await p.request(write(1n), Buffer.alloc(16));
  t.equal(r.header.result, Result.NODE_IN_RECOVERY, 'the last reply once the budget is spent');
  t.equal(a.seen.length, 4, '1 + maxTransientRetries sends');
  t.same(
    seen.map((m) => m.attempt),
    [1, 2, 3],
  );
});

t.test('not retried: NETWORK_ERROR of a non-repeatable request, terminal results', async (t) => {
  const [a] = (await fakeCluster(t, 1)) as [FakeSheep];
  const seen = retries(t);
  a.onRequest = (r) => {
    if (r.opcode === Op.NEW_VDI) r.reply(Result.NETWORK_ERROR);
    else if (r.opcode === Op.READ_OBJ) r.reply(Result.WAIT_FOR_FORMAT);
    else r.reply(Result.EIO);
  };
  const p = pool(t, [a]);
  const nv = await p.request(
    vdiRequest(Op.NEW_VDI, { flags: Flag.CMD_WRITE, dataLength: 256, vdiSize: 1n << 30n }),
    Buffer.alloc(256),
  );
  t.equal(nv.header.result, Result.NETWORK_ERROR, 'may have been partly done: returned');
  t.equal((await p.request(read(1n))).header.result, Result.WAIT_FOR_FORMAT, 'only a format ends it');
  t.equal((await p.request(write(1n), Buffer.alloc(16))).header.result, Result.EIO);
  t.equal(a.seen.length, 3);
  t.equal(seen.length, 0, 'no retry published');
});
