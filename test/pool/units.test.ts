// Small units of the connection/pool layer: address parsing, the retry
// policy tables, branded errors across two copies of the module, the
// diagnostics channels and the deadline timers.
import diagnostics_channel from 'node:diagnostics_channel';
import t from 'tap';
import { Flag, Op, Result } from '../../protocol/constants.js';
import { objRequest } from '../../protocol/header.js';
import { formatAddress, parseAddress } from '../../lib/util/address.js';
import * as errors from '../../lib/errors.js';
import { SheepdogPool } from '../../lib/transport/pool.js';
import {
  defaultBackoff,
  defaultReconnectStrategy,
  isIdempotent,
  isTransientResult,
  mayRetryResult,
} from '../../lib/transport/policy.js';
import { armDeadline, disarmDeadline, listedDeadlines, pendingDeadlines, sweepNow } from '../../lib/util/timers.js';
import type { RequestTraceContext } from '../../lib/util/diagnostics.js';
import { FakeSheep } from './fake-sheep.js';

t.setTimeout(30_000);

t.test('parseAddress', async (t) => {
  t.match(parseAddress('10.0.0.1:7001'), { host: '10.0.0.1', port: 7001, key: '10.0.0.1:7001' });
  t.match(parseAddress('10.0.0.1'), { host: '10.0.0.1', port: 7000 });
  t.match(parseAddress('[::1]:7002'), { host: '::1', port: 7002, key: '[::1]:7002' });
  t.match(parseAddress('[fe80::1]'), { host: 'fe80::1', port: 7000 });
  t.match(parseAddress('::1'), { host: '::1', port: 7000, key: '[::1]:7000' });
  t.match(parseAddress('Sheep-1.example:7000'), { host: 'Sheep-1.example', key: 'sheep-1.example:7000' });
  t.match(parseAddress(' localhost '), { host: 'localhost', port: 7000 });
  for (const bad of ['', ':7000', 'h:0', 'h:70000', 'h:x', '[::1', '[nothex]:1', '[::1]x', '1:2:3', 'a b:1']) {
    t.throws(() => parseAddress(bad), errors.InvalidArgumentError, JSON.stringify(bad));
  }
  t.equal(formatAddress('::1', 7000), '[::1]:7000');
  t.equal(formatAddress('1.2.3.4', 7000), '1.2.3.4:7000');
});

t.test('idempotency table', async (t) => {
  for (const op of [
    Op.READ_OBJ,
    Op.WRITE_OBJ,
    Op.CREATE_AND_WRITE_OBJ,
    Op.GET_VDI_INFO,
    Op.READ_VDIS,
    Op.GET_NODE_LIST,
    Op.STAT_SHEEP,
    Op.CLUSTER_INFO,
    Op.GET_VDI_COPIES,
    Op.FLUSH_VDI,
  ]) {
    t.ok(isIdempotent(op), `op 0x${op.toString(16)} repeatable`);
  }
  for (const op of [
    Op.NEW_VDI,
    Op.DEL_VDI,
    Op.LOCK_VDI,
    Op.RELEASE_VDI,
    Op.REMOVE_OBJ,
    Op.DISCARD_OBJ,
    Op.MAKE_FS,
    Op.SHUTDOWN,
    Op.SNAPSHOT,
    Op.ALTER_VDI_COPY,
    0xee,
  ]) {
    t.notOk(isIdempotent(op), `op 0x${op.toString(16)} not repeatable`);
  }
  t.ok(isIdempotent(Op.GET_VDI_ATTR, Flag.CMD_WRITE), 'attr lookup');
  t.ok(isIdempotent(Op.GET_VDI_ATTR, Flag.CMD_WRITE | Flag.CMD_CREAT), 'attr create-or-get');
  t.notOk(isIdempotent(Op.GET_VDI_ATTR, Flag.CMD_WRITE | Flag.CMD_CREAT | Flag.CMD_EXCL), 'exclusive create');
  t.notOk(isIdempotent(Op.GET_VDI_ATTR, Flag.CMD_WRITE | Flag.CMD_DEL), 'attr delete');
});

t.test('transient results', async (t) => {
  for (const r of [
    Result.WAIT_FOR_JOIN,
    Result.KILLED,
    Result.SHUTDOWN,
    Result.HALT,
    Result.AGAIN,
    Result.OLD_NODE_VER,
    Result.NEW_NODE_VER,
    Result.NETWORK_ERROR,
    Result.COLLECTING_CINFO,
    Result.STARTUP,
  ]) {
    t.ok(isTransientResult(r), `0x${r.toString(16)} transient`);
  }
  for (const r of [
    Result.SUCCESS,
    Result.NO_OBJ,
    Result.NO_VDI,
    Result.EIO,
    Result.VDI_EXIST,
    Result.WAIT_FOR_FORMAT,
    Result.READONLY,
    Result.INVALID_PARMS,
  ]) {
    t.notOk(isTransientResult(r), `0x${r.toString(16)} terminal`);
  }
  t.ok(mayRetryResult(Result.NETWORK_ERROR, true));
  t.notOk(mayRetryResult(Result.NETWORK_ERROR, false), 'NETWORK_ERROR only for idempotent requests');
  t.ok(mayRetryResult(Result.WAIT_FOR_JOIN, false), 'rejected before execution: always');
});

t.test('default backoff: min(2^n·50, 2000) + rand(0..200)', async (t) => {
  for (let n = 0; n < 40; n++) {
    const d = defaultBackoff(n);
    const base = Math.min(2 ** n * 50, 2000);
    t.ok(d >= base && d < base + 200, `retry ${n}: ${d}`);
  }
  t.type(defaultReconnectStrategy(3, new Error('x')), 'number');
});

t.test('errors: codes, node, and instanceof across two copies of the module', async (t) => {
  const spec = '../../lib/errors.js?second-copy';
  const other = (await import(spec)) as typeof errors;
  t.not(other.TimeoutError, errors.TimeoutError, 'really a second copy');
  const cases: [Error, new (...a: never[]) => Error, string][] = [
    [new other.ConnectionError('x', 'n:1'), errors.ConnectionError, 'SHEEPDOG_ERR_CONNECTION'],
    [new other.SheepProtocolError('x', 'n:1', 'unknown-id'), errors.ProtocolError, 'SHEEPDOG_ERR_PROTOCOL'],
    [new other.TimeoutError(), errors.TimeoutError, 'SHEEPDOG_ERR_TIMEOUT'],
    [new other.AbortError(), errors.AbortError, 'SHEEPDOG_ERR_ABORTED'],
    [new other.QueueFullError(), errors.QueueFullError, 'SHEEPDOG_ERR_QUEUE_FULL'],
    [new other.PoolClosedError(), errors.PoolClosedError, 'SHEEPDOG_ERR_POOL_CLOSED'],
    [new other.OutcomeUnknownError('x', Op.NEW_VDI), errors.OutcomeUnknownError, 'SHEEPDOG_ERR_OUTCOME_UNKNOWN'],
    [other.responseError(Result.NO_VDI), errors.NoVdiError, 'SHEEPDOG_ERR_NO_VDI'],
    [other.responseError(Result.HALT), errors.HaltError, 'SHEEPDOG_ERR_HALT'],
  ];
  for (const [e, C, code] of cases) {
    t.ok(e instanceof C, `${e.name} instanceof ${C.name}`);
    t.ok(e instanceof errors.SheepdogError);
    t.equal((e as errors.SheepdogError).code, code);
  }
  t.notOk(new other.TimeoutError() instanceof errors.AbortError);
  t.ok(errors.responseError(Result.NO_VDI, 'ctx', 'n:1') instanceof errors.SheepdogResponseError);
  const sp = new errors.SheepProtocolError('m', 'n:1', 'oversize');
  t.match(sp, { node: 'n:1', reason: 'oversize', name: 'SheepProtocolError' });
  t.equal(new errors.ConnectionError('m').reason, 'closed');
});

t.test('deadline timers: short ones native, long ones swept', async (t) => {
  const fired: string[] = [];
  const mk = (name: string) => ({
    deadline: 0,
    timer: undefined as NodeJS.Timeout | undefined,
    onDeadline: () => fired.push(name),
  });
  const short = mk('short');
  const long = mk('long');
  const cancelled = mk('cancelled');
  armDeadline(short, 5);
  armDeadline(long, 1000);
  armDeadline(cancelled, 1000);
  t.ok(short.timer !== undefined && long.timer === undefined);
  t.equal(pendingDeadlines(), 2);
  disarmDeadline(cancelled);
  t.equal(pendingDeadlines(), 1);
  while (fired.length < 2) await new Promise((r) => setTimeout(r, 50));
  t.same(fired, ['short', 'long']);
  t.equal(pendingDeadlines(), 0);
});

t.test('cancelled deadlines do not pile up in the sweep list between sweeps', async (t) => {
  const mk = () => ({ deadline: 0, timer: undefined as NodeJS.Timeout | undefined, onDeadline: () => undefined });
  // A few long-lived deadlines (requests in flight) and many short-lived ones
  // (requests answered well within their timeout), as under load.
  const inFlight = Array.from({ length: 32 }, mk);
  for (const d of inFlight) armDeadline(d, 60_000);
  let maxListed = 0;
  for (let i = 0; i < 10_000; i++) {
    const d = mk();
    armDeadline(d, 60_000);
    disarmDeadline(d);
    maxListed = Math.max(maxListed, listedDeadlines());
  }
  t.equal(pendingDeadlines(), 32, 'the armed ones are all kept');
  t.ok(maxListed <= 32 + 64 + 1, `the list stays short (at most ${maxListed} entries for 32 armed)`);
  for (const d of inFlight) disarmDeadline(d);
  t.equal(listedDeadlines(), 0, 'empty once nothing is armed');
});

t.test('a deadline armed again right after the list went idle still fires', async (t) => {
  const fired: string[] = [];
  const mk = (name: string) => ({
    deadline: 0,
    timer: undefined as NodeJS.Timeout | undefined,
    onDeadline: () => fired.push(name),
  });
  // One request at a time: armed, cancelled (the list goes idle), the next one armed.
  for (let i = 0; i < 100; i++) {
    const d = mk(`r${i}`);
    armDeadline(d, 60_000);
    disarmDeadline(d);
  }
  t.equal(listedDeadlines(), 0, 'idle: nothing listed');
  const last = mk('last');
  armDeadline(last, 1000);
  t.equal(pendingDeadlines(), 1);
  while (fired.length === 0) await new Promise((r) => setTimeout(r, 50));
  t.same(fired, ['last'], 'only the one still armed fired');
});

t.test('a swept deadline callback may cancel the other deadlines, or arm new ones', async (t) => {
  const fired: string[] = [];
  const mk = (name: string, then?: () => void) => ({
    deadline: 0,
    timer: undefined as NodeJS.Timeout | undefined,
    onDeadline: () => {
      fired.push(name);
      then?.();
    },
  });
  // `first` is due; its callback cancels the only other live deadline (the
  // sweep's count drops to 0 in the middle of the loop), then `third` is
  // cancelled too and `fresh` armed from inside the callback.
  const second = mk('second');
  const third = mk('third');
  const fresh = mk('fresh');
  const first = mk('first', () => {
    disarmDeadline(second);
    disarmDeadline(third);
    armDeadline(fresh, 60_000);
  });
  armDeadline(first, 60_000);
  armDeadline(second, 60_000);
  armDeadline(third, 60_000);
  first.deadline = performance.now() - 1; // due now, without waiting for it
  t.doesNotThrow(() => sweepNow());
  t.same(fired, ['first']);
  t.equal(pendingDeadlines(), 1, 'the deadline armed while firing is kept');
  // Cancelling it empties the sweep; a callback cancelling the last one stops it.
  const last = mk('last', () => disarmDeadline(fresh));
  armDeadline(last, 60_000);
  last.deadline = performance.now() - 1;
  t.doesNotThrow(() => sweepNow());
  t.same(fired, ['first', 'last']);
  t.equal(pendingDeadlines(), 0);
  // A throwing callback is rethrown, and the deadlines after it stay armed.
  const boom = mk('boom', () => {
    throw new Error('boom');
  });
  const after = mk('after');
  armDeadline(boom, 60_000);
  armDeadline(after, 60_000);
  boom.deadline = performance.now() - 1;
  t.throws(() => sweepNow(), /boom/);
  t.equal(pendingDeadlines(), 1);
  disarmDeadline(after);
  t.equal(pendingDeadlines(), 0);
});

t.test('diagnostics channels and the request tracing channel', async (t) => {
  const fake = await FakeSheep.start();
  const seen: string[] = [];
  const subs: [string, (m: unknown) => void][] = [];
  for (const name of ['sheepdog:connect', 'sheepdog:connection:closed', 'sheepdog:node:up', 'sheepdog:node:down']) {
    const fn = (): void => {
      seen.push(name);
    };
    diagnostics_channel.subscribe(name, fn);
    subs.push([name, fn]);
  }
  const traced: RequestTraceContext[] = [];
  const tc = diagnostics_channel.tracingChannel<RequestTraceContext, RequestTraceContext>('sheepdog:request');
  const handlers = {
    start: (ctx: RequestTraceContext) => traced.push(ctx),
    end: () => {},
    asyncStart: () => {},
    asyncEnd: () => {},
    error: () => {},
  };
  tc.subscribe(handlers);
  t.teardown(async () => {
    for (const [n, fn] of subs) diagnostics_channel.unsubscribe(n, fn);
    tc.unsubscribe(handlers);
    await fake.close();
  });
  const p = new SheepdogPool({ nodes: [fake.address], connectionsPerNode: 1, reconnectStrategy: false });
  const r = await p.request(objRequest(Op.READ_OBJ, { oid: 1n, dataLength: 8 }));
  t.equal(traced.length, 1);
  t.equal(traced[0]?.op, 'READ_OBJ');
  t.equal(traced[0]?.node, fake.address);
  t.equal(traced[0]?.attempts, 1);
  t.equal(traced[0]?.result, r);
  await fake.stop();
  // The idle pool holds the process no more: keep it alive while waiting.
  const keep = setInterval(() => {}, 60_000);
  await new Promise<void>((resolve) => p.once('nodeDown', () => resolve()));
  clearInterval(keep);
  await p.close();
  t.ok(seen.includes('sheepdog:connect'));
  t.ok(seen.includes('sheepdog:node:up'));
  t.ok(seen.includes('sheepdog:connection:closed'));
  t.ok(seen.includes('sheepdog:node:down'));
});
