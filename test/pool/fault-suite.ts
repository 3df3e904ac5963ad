/**
 * The pool's fault suite, run against any cluster that can inject the
 * embedded sheep's faults (lib/sheep/types.ts): the scripted fake
 * (faults.test.ts) and the embedded sheep (sheep.test.ts).
 *
 * Every fault must end in a typed error or a transparent recovery, never a
 * hang, and leave no request unsettled and no socket open after close().
 * Ordering comes from fault injection and events, not from timing.
 */
import diagnostics_channel from 'node:diagnostics_channel';
import { once } from 'node:events';
import type { Test } from 'tap';
import { Flag, Op, Result } from '../../protocol/constants.js';
import { type VdiResponse, objRequest, vdiRequest } from '../../protocol/header.js';
import { vidToDataOid } from '../../protocol/oid.js';
import { encodeVdiNameBody } from '../../protocol/records.js';
import {
  ConnectionError,
  OutcomeUnknownError,
  ProtocolError,
  SheepProtocolError,
  TimeoutError,
  responseError,
  EioError,
} from '../../lib/errors.js';
import { type PoolOptions, SheepdogPool } from '../../lib/transport/pool.js';
import type { Reply } from '../../lib/transport/types.js';
import type { Fault, FaultHandle } from '../../testing/types.js';

export interface Harness {
  readonly addresses: readonly string[];
  inject(i: number, f: Fault): FaultHandle;
  clearFaults(i?: number): void;
  stopNode(i: number): Promise<void>;
  startNode(i: number): Promise<void>;
  setReorder(on: boolean): void;
  /** Connections the cluster has open (server side). */
  connections(): number;
  close(): Promise<void>;
}

export type MakeHarness = () => Promise<Harness>;

const OBJ_LEN = 4096;
const OBJECTS = 24;

function data(i: number): Buffer {
  const b = Buffer.allocUnsafe(OBJ_LEN);
  for (let k = 0; k < OBJ_LEN; k++) b[k] = (i * 131 + k * 7) & 0xff;
  return b;
}

interface Env {
  h: Harness;
  pool: SheepdogPool;
  oids: bigint[];
  read(i: number, opts?: Parameters<SheepdogPool['request']>[2]): Promise<Reply>;
  /** Read object i and check its bytes. */
  check(t: Test, r: Reply, i: number): void;
}

async function settle<T>(p: Promise<T>): Promise<T | Error> {
  return p.catch((e: unknown) => e as Error);
}

/** Wait for a condition the test cannot get an event for (server-side counters). */
async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 5));
}

async function env(t: Test, make: MakeHarness, o: PoolOptions = {}): Promise<Env> {
  const h = await make();
  const pool = new SheepdogPool({
    nodes: [...h.addresses],
    connectionsPerNode: 1,
    reconnectStrategy: 5,
    requestTimeout: 20_000,
    ...o,
  });
  t.teardown(async () => {
    pool.destroy();
    await h.close();
  });
  await pool.connect();
  while (pool.stats.ready < h.addresses.length) await once(pool, 'nodeUp');
  const nv = await pool.request(
    vdiRequest(Op.NEW_VDI, { flags: Flag.CMD_WRITE, dataLength: 256, vdiSize: 1n << 30n }),
    encodeVdiNameBody(`faults-${Math.random().toString(36).slice(2)}`),
  );
  if (nv.header.result !== Result.SUCCESS) throw responseError(nv.header.result, 'create test VDI');
  const vid = (nv.header as VdiResponse).vdiId;
  const oids = Array.from({ length: OBJECTS }, (_, i) => vidToDataOid(vid, i));
  await Promise.all(
    oids.map(async (oid, i) => {
      const r = await pool.request(
        objRequest(Op.CREATE_AND_WRITE_OBJ, { flags: Flag.CMD_WRITE, oid, dataLength: OBJ_LEN }),
        data(i),
      );
      if (r.header.result !== Result.SUCCESS) throw responseError(r.header.result, 'write test object');
    }),
  );
  return {
    h,
    pool,
    oids,
    read: (i, opts) =>
      pool.request(objRequest(Op.READ_OBJ, { oid: oids[i % OBJECTS] as bigint, dataLength: OBJ_LEN }), undefined, opts),
    check(tt, r, i) {
      if (r.header.result !== Result.SUCCESS || !Buffer.from(r.body).equals(data(i % OBJECTS))) {
        tt.fail(`object ${i % OBJECTS}: result 0x${r.header.result.toString(16)}, ${r.body.length} bytes`);
      }
    },
  };
}

/** Every accepted request settled, then close() leaves no socket behind. */
async function noLeak(t: Test, e: Env): Promise<void> {
  t.equal(e.pool.stats.active, 0, 'no request left pending');
  t.equal(e.pool.stats.queued, 0, 'nothing queued');
  await e.pool.close();
  t.equal(e.pool.stats.connections, 0, 'every pool connection closed');
  await until(() => e.h.connections() === 0);
  t.pass('the cluster sees no connection left');
}

async function burst(t: Test, e: Env, n: number): Promise<Reply[]> {
  const rs = await Promise.all(Array.from({ length: n }, (_, i) => e.read(i)));
  let bad = 0;
  rs.forEach((r, i) => {
    if (r.header.result !== Result.SUCCESS || !Buffer.from(r.body).equals(data(i % OBJECTS))) bad++;
  });
  t.equal(bad, 0, `${n} reads returned the right bytes`);
  return rs;
}

export function faultSuite(t: Test, make: MakeHarness): void {
  for (const kind of ['drop', 'dropMidFrame'] as const) {
    t.test(`${kind}: pinned reads get ConnectionError, others fail over, NEW_VDI is OutcomeUnknown`, async (t) => {
      const e = await env(t, make);
      const a0 = e.h.addresses[0] as string;
      e.h.inject(0, { kind, opcode: Op.READ_OBJ, times: 1 });
      const pinned = await settle(e.read(0, { node: a0 }));
      t.ok(pinned instanceof ConnectionError, `${kind}: ConnectionError`);
      t.equal((pinned as ConnectionError).node, a0);
      t.equal((pinned as ConnectionError).sent, true);
      // One drop per node: a read meets at most three dead connections (maxRetries).
      for (let i = 0; i < e.h.addresses.length; i++) e.h.inject(i, { kind, opcode: Op.READ_OBJ, times: 1 });
      await burst(t, e, 60);
      for (let i = 0; i < e.h.addresses.length; i++) e.h.inject(i, { kind, opcode: Op.NEW_VDI, times: 1 });
      const nv = await settle(
        e.pool.request(
          vdiRequest(Op.NEW_VDI, { flags: Flag.CMD_WRITE, dataLength: 256, vdiSize: 1n << 20n }),
          encodeVdiNameBody('never-sure'),
        ),
      );
      t.ok(nv instanceof OutcomeUnknownError, 'NEW_VDI: OutcomeUnknownError');
      t.equal((nv as OutcomeUnknownError).opcode, Op.NEW_VDI);
      t.ok((nv as Error).cause instanceof ConnectionError);
      await noLeak(t, e);
    });
  }

  t.test('stall: TimeoutError after send, the id stays reserved, no hang', async (t) => {
    const e = await env(t, make);
    const a0 = e.h.addresses[0] as string;
    e.h.inject(0, { kind: 'stall', opcode: Op.READ_OBJ, times: 1 });
    const r = await settle(e.read(1, { node: a0, timeout: 50 }));
    t.ok(r instanceof TimeoutError);
    t.equal((r as TimeoutError).phase, 'sent');
    t.equal((r as TimeoutError).node, a0);
    t.equal(e.pool.stats.orphans, 1);
    // The node keeps serving on the same connection.
    e.check(t, await e.read(2, { node: a0 }), 2);
    await burst(t, e, 30);
    await noLeak(t, e);
  });

  t.test('delay: a timeout before the reply, then the late reply is dropped quietly', async (t) => {
    const e = await env(t, make);
    const a0 = e.h.addresses[0] as string;
    const late = diagnostics_channel.channel('sheepdog:reply:late');
    let lateCount = 0;
    let onLate: () => void = () => {};
    const sub = (): void => {
      lateCount++;
      onLate();
    };
    late.subscribe(sub);
    t.teardown(() => late.unsubscribe(sub));
    const lateSeen = new Promise<void>((r) => {
      onLate = r;
    });
    e.h.inject(0, { kind: 'delay', ms: 300, opcode: Op.READ_OBJ, times: 1 });
    const r = await settle(e.read(3, { node: a0, timeout: 20 }));
    t.ok(r instanceof TimeoutError);
    await lateSeen;
    t.equal(lateCount, 1);
    t.equal(e.pool.stats.orphans, 0, 'the id is free again');
    t.equal(e.pool.stats.nodes.find((n) => n.node === a0)?.state, 'up', 'no protocol error, no reconnect');
    e.check(t, await e.read(4, { node: a0 }), 4);
    e.h.inject(0, { kind: 'delay', ms: 20, opcode: Op.READ_OBJ, times: 3 });
    await burst(t, e, 30);
    await noLeak(t, e);
  });

  t.test('result: terminal results come back, transient ones are retried', async (t) => {
    const e = await env(t, make, { maxTransientRetries: 5 });
    for (let i = 0; i < e.h.addresses.length; i++)
      e.h.inject(i, { kind: 'result', result: Result.EIO, opcode: Op.READ_OBJ, times: 1 });
    const rs = await Promise.all([0, 1, 2].map((i) => e.read(i, { node: e.h.addresses[i] as string })));
    for (const r of rs) {
      t.equal(r.header.result, Result.EIO, 'EIO is returned to the caller');
      t.ok(responseError(r.header.result) instanceof EioError, 'and maps to EioError');
    }
    e.h.clearFaults();
    for (let i = 0; i < e.h.addresses.length; i++) {
      e.h.inject(i, { kind: 'result', result: Result.WAIT_FOR_JOIN, opcode: Op.READ_OBJ, times: 1 });
    }
    e.check(t, await e.read(5), 5);
    await noLeak(t, e);
  });

  for (const kind of ['unknownId', 'corruptHeader'] as const) {
    t.test(`${kind}: a protocol error naming the node; reads elsewhere recover`, async (t) => {
      const e = await env(t, make);
      const a0 = e.h.addresses[0] as string;
      e.h.inject(0, { kind, opcode: Op.READ_OBJ, times: 1 });
      const r = await settle(e.read(6, { node: a0 }));
      t.ok(r instanceof ProtocolError, 'a ProtocolError');
      t.ok(r instanceof SheepProtocolError, 'naming the node');
      t.equal((r as SheepProtocolError).node, a0);
      t.match((r as Error).message, a0);
      if (kind === 'unknownId') t.equal((r as SheepProtocolError).reason, 'unknown-id');
      for (let i = 0; i < e.h.addresses.length; i++) e.h.inject(i, { kind, opcode: Op.READ_OBJ, times: 1 });
      await burst(t, e, 60);
      await noLeak(t, e);
    });
  }

  t.test('stopNode during a burst of READ_OBJ: every read completes through failover', async (t) => {
    const e = await env(t, make);
    // Reads stall on node 1, so some are surely in flight there when it stops.
    e.h.inject(1, { kind: 'stall', opcode: Op.READ_OBJ, times: 5 });
    const down = once(e.pool, 'nodeDown');
    const all = Promise.all(Array.from({ length: 300 }, (_, i) => e.read(i)));
    await until(() => (e.pool.stats.nodes[1]?.inFlight ?? 0) >= 5);
    await e.h.stopNode(1);
    const [node] = (await down) as [string];
    t.equal(node, e.h.addresses[1]);
    const rs = await all;
    rs.forEach((r, i) => e.check(t, r, i));
    t.pass('300 reads completed');
    await e.h.startNode(1);
    await noLeak(t, e);
  });

  t.test('reconnect after stopNode / startNode', async (t) => {
    const e = await env(t, make);
    const a2 = e.h.addresses[2] as string;
    const down = once(e.pool, 'nodeDown');
    await e.h.stopNode(2);
    t.same((await down)[0], a2);
    await burst(t, e, 30);
    const up = new Promise<void>((resolve) => {
      const f = (n: string): void => {
        if (n !== a2) return;
        e.pool.off('nodeUp', f);
        resolve();
      };
      e.pool.on('nodeUp', f);
    });
    await e.h.startNode(2);
    await up;
    e.check(t, await e.read(7, { node: a2 }), 7);
    await noLeak(t, e);
  });

  t.test('reordered replies are matched by id', async (t) => {
    const e = await env(t, make, { connectionsPerNode: 2, maxQueued: 4096 });
    e.h.setReorder(true);
    await burst(t, e, 2000);
    e.h.setReorder(false);
    await noLeak(t, e);
  });

  t.test('DEL_VDI and NEW_VDI dropped after send: OutcomeUnknownError, never re-sent', async (t) => {
    const e = await env(t, make);
    for (let i = 0; i < e.h.addresses.length; i++) {
      e.h.inject(i, { kind: 'drop', opcode: Op.DEL_VDI, times: 1 });
    }
    const r = await settle(
      e.pool.request(
        vdiRequest(Op.DEL_VDI, { flags: Flag.CMD_WRITE, dataLength: 512 }),
        encodeVdiNameBody('whatever', ''),
      ),
    );
    t.ok(r instanceof OutcomeUnknownError);
    await noLeak(t, e);
  });
}
