/**
 * The pool's bounded request queue: requests waiting for a connection slot,
 * in one FIFO for the whole pool plus one per node for requests pinned to it
 * (`RequestOptions.node`), so pinned requests never block the others.
 *
 * - New requests queue at the back, retries at the front; `maxQueued` bounds
 *   the new ones (QueueFullError beyond it).
 * - A request settled while queued (deadline, abort) stays in its FIFO as a
 *   dead entry, skipped when the queue is drained and compacted away in bulk.
 * - `needDrain` is the backpressure flag: set when a caller saw the pool busy
 *   or a request had to queue, it tells the pool to emit 'drain' once a
 *   request can be sent without queueing.
 */
import { opName } from '../../protocol/constants.js';
import { QueueFullError } from '../errors.js';
import type { Connection } from './connection.js';
import type { PoolNode } from './node-health.js';
import { P_QUEUED, P_SENT, type PoolRequest } from './request.js';

/** A FIFO with O(1) shift/unshift (head index into an array, compacted now and then). */
export class Fifo<T> {
  private a: T[] = [];
  private head = 0;
  get size(): number {
    return this.a.length - this.head;
  }
  push(x: T): void {
    this.a.push(x);
  }
  unshift(x: T): void {
    if (this.head > 0) this.a[--this.head] = x;
    else this.a.unshift(x);
  }
  shift(): T | undefined {
    if (this.head >= this.a.length) return undefined;
    const x = this.a[this.head] as T;
    (this.a as (T | undefined)[])[this.head] = undefined;
    this.head++;
    if (this.head === this.a.length) {
      this.a.length = 0;
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.a.length) {
      this.a = this.a.slice(this.head);
      this.head = 0;
    }
    return x;
  }
  drain(): T[] {
    const r = this.a.slice(this.head);
    this.a = [];
    this.head = 0;
    this.dead = 0;
    return r;
  }
  /** Entries that left the queue in place (settled while queued); dropped in bulk. */
  dead = 0;
  /** Note one dead entry; compact when they are the majority (bounded memory for long waits). */
  died(live: (x: T) => boolean): void {
    if (++this.dead < 1024 || this.dead * 2 < this.size) return;
    this.a = this.a.slice(this.head).filter(live);
    this.head = 0;
    this.dead = 0;
  }
}

const isQueued = (pr: PoolRequest): boolean => pr.phase === P_QUEUED;

/** Requests waiting for a connection: the global FIFO, and the counts of every node's pinned FIFO. */
export class RequestQueue {
  /** `maxQueued`: new requests allowed to wait (retries are not counted against it). */
  readonly max: number;
  /** Live requests waiting for a connection (global queue and pinned). */
  queued = 0;
  /** Live requests in the global queue (`queued` minus the pinned ones). */
  global = 0;
  /** A caller saw the pool busy, or a request had to wait: 'drain' is owed. */
  needDrain = false;
  private readonly fifo = new Fifo<PoolRequest>();

  constructor(max: number) {
    this.max = max;
  }

  /**
   * Queue `pr`: in its node's FIFO when pinned, else in the global one; a
   * retry goes to the front. False when the queue is full (only new requests
   * are refused): `pr` was failed with QueueFullError.
   */
  add(pr: PoolRequest, retry: boolean): boolean {
    if (!retry && this.queued >= this.max) {
      pr.fail(
        new QueueFullError(
          `${opName(pr.req.opcode)} rejected: ${this.queued} requests are already waiting for a connection (maxQueued ${this.max})`,
        ),
      );
      return false;
    }
    const target = pr.pinned;
    pr.phase = P_QUEUED;
    const q = target !== undefined ? target.pinned : this.fifo;
    if (retry) q.unshift(pr);
    else q.push(pr);
    this.queued++;
    if (target !== undefined) target.pinnedCount++;
    else this.global++;
    this.needDrain = true;
    return true;
  }

  /** Move queued requests onto `conn` while it has free slots: those pinned to its `node` first, then the global queue. */
  drainOnto(conn: Connection, node: PoolNode | undefined): void {
    if (node !== undefined && node.pinnedCount > 0) this.take(node.pinned, conn, node);
    if (this.global > 0) this.take(this.fifo, conn, undefined);
  }

  private take(q: Fifo<PoolRequest>, conn: Connection, node: PoolNode | undefined): void {
    while (q.size > 0 && conn.available > 0) {
      const pr = q.shift() as PoolRequest;
      if (pr.phase !== P_QUEUED) continue; // settled while queued (already uncounted)
      this.queued--;
      if (node !== undefined) node.pinnedCount--;
      else this.global--;
      pr.phase = P_SENT;
      pr.sends++;
      conn.send(pr);
      if (pr.liveness > 0) pr.pool._watchLiveness(pr, conn);
    }
  }

  /** `pr` settled while queued: uncount it (its entry is dropped later, in bulk). */
  left(pr: PoolRequest): void {
    this.queued--;
    if (pr.pinned !== undefined) {
      pr.pinned.pinnedCount--;
      pr.pinned.pinned.died(isQueued);
    } else {
      this.global--;
      this.fifo.died(isQueued);
    }
  }

  /** Empty the global queue; the caller fails the entries still queued. */
  takeAll(): PoolRequest[] {
    return this.fifo.drain();
  }
}
