/**
 * One request of the pool, from `request()` to its settlement: the
 * connection's callback target (ConnectionOp), its deadline and AbortSignal
 * listener (the object itself: no closure per request), its phase, and the
 * decisions on sending it again (failover after a connection died, retry
 * after a transient sheep result). The pool places it on connections.
 */
import { Result, opName } from '../../protocol/constants.js';
import { type Request, decodeResponse, peekEpoch, peekResult } from '../../protocol/header.js';
import {
  AbortError,
  ConnectionError,
  OutcomeUnknownError,
  type RequestPhase,
  SheepProtocolError,
  TimeoutError,
} from '../errors.js';
import type { RequestTraceContext } from '../util/diagnostics.js';
import { type Deadlined, armDeadline, disarmDeadline } from '../util/timers.js';
import { type Connection, ConnectionOp, OpState, stuckPayloadError } from './connection.js';
import type { PoolNode } from './node-health.js';
import { defaultBackoff, isIdempotent, isTransientResult, mayRetryResult } from './policy.js';
import type { SheepdogPool } from './pool.js';
import type { Reply, RequestOptions } from './types.js';

// Request phases (PoolRequest.phase).
/** Accepted, not placed yet (or being placed again after its connection died). */
export const P_NEW = 0;
/** Waiting in the pool's queue (global or its node's). */
export const P_QUEUED = 1;
/** Handed to a connection. */
export const P_SENT = 2;
/** Waiting for a retry timer after a transient result. */
export const P_BACKOFF = 3;
/** Settled. */
export const P_DONE = 4;

function phaseName(p: number): RequestPhase {
  return p === P_SENT ? 'sent' : p === P_BACKOFF ? 'backoff' : 'queued';
}

/** Why a request whose connection died may be placed again. */
export type ResendReason = 'failover' | 'unsent';

export class PoolRequest extends ConnectionOp implements Deadlined {
  readonly pool: SheepdogPool;
  readonly req: Request;
  readonly idempotent: boolean;
  readonly pinned: PoolNode | undefined;
  readonly signal: AbortSignal | undefined;
  readonly timeout: number;
  resolve: (r: Reply) => void = noop;
  reject: (e: Error) => void = noop;
  deadline = 0;
  timer: NodeJS.Timeout | undefined = undefined;
  phase = P_NEW;
  /** Times written to a connection. */
  sends = 0;
  failovers = 0;
  /** Set by resendReason: ms to wait before this failover (0: at once). */
  failoverDelay = 0;
  /** untilReply: its own deadline destroyed its connection (read and cleared by resendReason). */
  diedAtDeadline = false;
  /** untilReply: failovers after its own deadline destroyed its connection (bounded by maxRetries). */
  deadlineReplays = 0;
  /** Failovers past maxRetries, each after a backoff (bounded by maxTransientRetries and the deadline). */
  lateFailovers = 0;
  /** Times its connection died before it was written (placed again each time, up to `maxUnsentRetries`). */
  unsentBounces = 0;
  transients = 0;
  lastNode: string | undefined = undefined;
  lastResult = 0;
  avoid: PoolNode | undefined = undefined;
  retryTimer: NodeJS.Timeout | undefined = undefined;
  trace: RequestTraceContext | undefined = undefined;
  /**
   * The caller gave up (deadline, abort) while the payload was still in a
   * socket (`flushingOn`): the request settles with this error once the
   * socket no longer holds the caller's buffer.
   */
  parting: Error | undefined = undefined;
  /** `RequestOptions.untilReply`: once written, only its reply or the loss of its connection settles it. */
  readonly untilReply: boolean;
  /**
   * untilReply: the signal fired while the request was on the wire. It
   * settles with AbortError once its reply came (the sheep is done with it)
   * or its connection is gone; it is not retried nor sent again.
   */
  abortedOnWire = false;
  /**
   * Liveness deadline in ms (0 = none): written and unanswered for this long
   * on a connection that read nothing meanwhile, a repeatable request is
   * sent again elsewhere (SheepdogPool `livenessTimeout`).
   */
  liveness = 0;
  liveTimer: NodeJS.Timeout | undefined = undefined;
  /** The connection's `received` count when the liveness timer was armed. */
  liveMark = 0;

  constructor(
    pool: SheepdogPool,
    req: Request,
    header: Uint8Array,
    body: Uint8Array | undefined,
    opts: RequestOptions,
    pinned: PoolNode | undefined,
    timeout: number,
  ) {
    super(header, body, opts.readInto);
    this.pool = pool;
    this.req = req;
    this.idempotent = opts.idempotent ?? isIdempotent(req.opcode, req.flags);
    this.pinned = pinned;
    this.signal = opts.signal;
    this.timeout = timeout;
    this.untilReply = opts.untilReply === true;
  }

  /**
   * Listen to the AbortSignal and arm the deadline. False when the signal
   * had already fired: the request was failed with AbortError.
   */
  arm(): boolean {
    const signal = this.signal;
    if (signal !== undefined) {
      if (signal.aborted) {
        this.fail(
          new AbortError(`${opName(this.req.opcode)} aborted before it was sent`, {
            phase: 'queued',
            cause: signal.reason,
          }),
        );
        return false;
      }
      signal.addEventListener('abort', this, { once: true });
    }
    if (this.timeout > 0) armDeadline(this, this.timeout);
    return true;
  }

  onReply(header: Uint8Array, body: Uint8Array, conn: Connection): void {
    if (this.phase === P_DONE) return;
    if (this.parting !== undefined) {
      this.fail(this.parting); // a reply held until the payload was released
      return;
    }
    const pool = this.pool;
    const epoch = peekEpoch(header);
    if (epoch > pool.epoch) pool._epochSeen(epoch);
    this.lastNode = conn.node;
    if (this.abortedOnWire) {
      this.fail(this.abortedError('its reply came'));
      return;
    }
    const result = peekResult(header);
    if (result !== Result.SUCCESS && isTransientResult(result) && pool._retryTransient(this, result, conn)) return;
    this.settle();
    const resolve = this.resolve;
    this.forget();
    resolve({ header: decodeResponse(header), body, node: conn.node });
  }

  /**
   * Drop the promise's resolvers once settled: they reference the promise,
   * and so its reply and body, and something may still hold this request
   * for a while (a cancelled deadline awaiting its sweep).
   */
  private forget(): void {
    this.resolve = noop;
    this.reject = noop;
  }

  onError(err: Error, conn: Connection, sent: boolean): void {
    if (this.phase === P_DONE) return;
    if (this.parting !== undefined) {
      this.fail(this.parting);
      return;
    }
    if (this.abortedOnWire) {
      this.lastNode = conn.node;
      this.fail(this.abortedError(`its connection failed first (${err.message})`));
      return;
    }
    this.pool._requestFailed(this, err, conn, sent);
  }

  /** The payload left the socket that held it after the caller gave up: settle now. */
  override onBodyReleased(): void {
    if (this.phase !== P_DONE && this.parting !== undefined) this.fail(this.parting);
  }

  /**
   * Settle with `err` (deadline, abort), unless the payload is still in a
   * socket: then the request becomes an orphan on its connection (a reply
   * is dropped) and settles once the socket has released the caller's
   * buffer. At a deadline that socket is destroyed (the peer did not take
   * the bytes for the whole timeout); after an abort the deadline, if any,
   * still bounds the wait.
   */
  private giveUp(err: Error, deadline: boolean): void {
    const holder = this.flushingOn;
    if (holder === undefined) {
      this.fail(err);
      return;
    }
    this.parting = err;
    this.signal?.removeEventListener('abort', this);
    this.conn?.cancel(this);
    if (deadline) this.destroyStuck(holder);
  }

  private destroyStuck(holder: Connection): void {
    holder.destroy(stuckPayloadError(holder, opName(this.req.opcode), this.body?.length ?? 0, this.timeout));
  }

  /** Deadline passed. */
  onDeadline(): void {
    if (this.phase === P_DONE) return;
    if (this.parting !== undefined) {
      // Aborted with the payload still in the socket, which took none of it since.
      const holder = this.flushingOn;
      if (holder !== undefined) this.destroyStuck(holder);
      return;
    }
    const op = opName(this.req.opcode);
    if (this.untilReply && this.onWire()) {
      this.noReplyInTime(op);
      return;
    }
    const phase = this.wirePhase();
    const node = this.conn?.node ?? this.flushingOn?.node ?? this.lastNode;
    let where: string;
    if (phase === 'sent') where = `sent to ${node}, no reply yet`;
    else if (phase === 'backoff') where = `waiting to retry after ${this.lastResultText()} from ${node}`;
    else where = `never sent: waiting for a connection (${this.pool._waitReason(this)})`;
    const cause = phase === 'queued' ? this.pool._waitCause(this) : undefined;
    this.giveUp(
      new TimeoutError(`${op} timed out after ${this.timeout} ms (${where})`, {
        phase,
        node,
        timeout: this.timeout,
        ...(cause === undefined ? {} : { cause }),
      }),
      true,
    );
  }

  /**
   * untilReply, deadline passed with the request on the wire: no reply
   * within the timeout is a liveness failure of its connection, which is
   * destroyed. The request then fails over or fails like after any
   * connection loss (ConnectionError, OutcomeUnknownError when not
   * repeatable); a replay gets a fresh deadline of its own.
   */
  private noReplyInTime(op: string): void {
    const c = (this.conn ?? this.flushingOn) as Connection;
    const node = c.node;
    const timeout = this.timeout;
    if (timeout > 0 && !this.abortedOnWire) armDeadline(this, timeout);
    // Read by resendReason while destroy() fails the connection's requests
    // (synchronously); cleared after, so that a reply settling it instead
    // leaves nothing behind for a later connection loss.
    this.diedAtDeadline = true;
    c.destroy(
      new ConnectionError(
        `connection ${c.id} to ${node} destroyed: ${op} (id ${this.opId}) got no reply within ${timeout} ms`,
        node,
        {
          reason: 'destroyed',
          sent: true,
          cause: new TimeoutError(`${op} timed out after ${timeout} ms (sent to ${node}, no reply yet)`, {
            phase: 'sent',
            node,
            timeout,
          }),
        },
      ),
    );
    this.diedAtDeadline = false;
  }

  /** The AbortError of an untilReply request aborted on the wire, once it settles. */
  private abortedError(when: string): AbortError {
    const node = this.lastNode;
    return new AbortError(
      `${opName(this.req.opcode)} aborted after it was sent to ${node}; settled once ${when} (untilReply)`,
      { phase: 'sent', node, cause: this.signal?.reason },
    );
  }

  /** Written on a connection and not answered yet, or answered with the reply held until its payload left the socket. */
  private onWire(): boolean {
    return this.phase === P_SENT && (this.opState === OpState.SENT || this.flushingOn !== undefined);
  }

  /** The AbortSignal fired (EventTarget listener object: no closure). */
  handleEvent(): void {
    if (this.phase === P_DONE || this.parting !== undefined || this.abortedOnWire) return;
    if (this.untilReply && this.onWire()) {
      // The sheep may be acting on it: wait for its reply (or the end of
      // its connection); the deadline still runs.
      this.abortedOnWire = true;
      return;
    }
    const phase = this.wirePhase();
    const node = this.conn?.node ?? this.flushingOn?.node ?? this.lastNode;
    const where =
      phase === 'sent'
        ? `after it was sent to ${node}`
        : phase === 'backoff'
          ? 'while waiting to retry'
          : 'before it was sent';
    this.giveUp(
      new AbortError(`${opName(this.req.opcode)} aborted ${where}`, { phase, node, cause: this.signal?.reason }),
      false,
    );
  }

  /** Pool phase, except that a request still waiting on its connection for a slot or a write is 'queued'. */
  private wirePhase(): RequestPhase {
    if (this.phase === P_SENT && this.opState !== OpState.SENT && this.flushingOn === undefined) return 'queued';
    return phaseName(this.phase);
  }

  private lastResultText(): string {
    return this.lastResult === 0 ? 'a connection failure' : `result 0x${this.lastResult.toString(16)}`;
  }

  /**
   * The connection carrying this request failed with `err`: whether it may
   * be placed again. Never written ('unsent'): the sheep never saw it, so
   * whatever the opcode, within `maxUnsent` such bounces (a separate,
   * generous bound: without a deadline nothing else would stop a request
   * bouncing between connections that keep dying). Written: only when
   * idempotent and not pinned ('failover', counted): at once for the first
   * `maxRetries`; past them after a backoff (`failoverDelay`, set here), up
   * to `maxTransient` times and only while the deadline leaves room (none
   * with `maxRetries` 0): a connection that dies takes every request it carried with it,
   * so a burst of deaths charges requests that caused none of them, and a
   * repeatable request is given up when its time is, not after a count.
   * (An untilReply request's deadline is how long one send may go
   * unanswered: each of its replays gets a deadline of its own, so for it
   * the counts bound the call.) Apart from those, an untilReply request
   * whose own deadline destroyed its connection is replayed at once, up to
   * `maxRetries` such replays.
   * Otherwise undefined, and the request was failed: with
   * OutcomeUnknownError when it was written and is not idempotent, else
   * with the connection's error.
   */
  resendReason(
    err: Error,
    conn: Connection,
    sent: boolean,
    maxRetries: number,
    maxUnsent: number,
    maxTransient: number,
  ): ResendReason | undefined {
    this.failoverDelay = 0;
    if (!sent) {
      if (this.unsentBounces >= maxUnsent) {
        const n = this.unsentBounces + 1;
        this.fail(
          err instanceof ConnectionError
            ? new ConnectionError(
                `${opName(this.req.opcode)} was never sent: ${n} connections failed before writing it (last: ${err.message})`,
                conn.node,
                { reason: err.reason, sent: false, cause: err },
              )
            : err,
        );
        return undefined;
      }
      this.unsentBounces++;
      return 'unsent';
    }
    if (!this.idempotent) {
      if (err instanceof SheepProtocolError && err.reason === 'not-a-sheep') {
        this.fail(err); // the peer is no sheep: nothing took effect
        return undefined;
      }
      this.fail(
        new OutcomeUnknownError(
          `${opName(this.req.opcode)} was sent to ${conn.node} but the connection failed before the reply (${err.message}); it may or may not have taken effect`,
          this.req.opcode,
          conn.node,
          { cause: err },
        ),
      );
      return undefined;
    }
    if (this.pinned !== undefined) {
      this.fail(err);
      return undefined;
    }
    if (this.diedAtDeadline) {
      // An untilReply request whose own deadline destroyed the connection:
      // its replays each get a deadline of their own, so a count of these
      // is what bounds the call ((maxRetries + 1) × timeout).
      this.diedAtDeadline = false;
      if (this.deadlineReplays >= maxRetries) {
        this.fail(err);
        return undefined;
      }
      this.deadlineReplays++;
    } else if (this.failovers - this.deadlineReplays >= maxRetries) {
      // maxRetries 0: a written request is never sent again.
      const delay = maxRetries > 0 && this.lateFailovers < maxTransient ? defaultBackoff(this.lateFailovers) : -1;
      const room = this.untilReply || this.deadline === 0 || performance.now() + delay < this.deadline;
      if (delay < 0 || !room) {
        this.fail(err);
        return undefined;
      }
      this.lateFailovers++;
      this.failoverDelay = delay;
    }
    // untilReply: every replay gets a deadline of its own (the deadline is
    // how long one send may go unanswered), from when it is sent again.
    if (this.untilReply && this.timeout > 0) armDeadline(this, this.timeout + this.failoverDelay);
    this.failovers++;
    return 'failover';
  }

  /**
   * A reply carried the transient `result`: the backoff in ms before sending
   * again, or -1 when the reply stands (the result is not retryable for this
   * request, `maxTransientRetries` are used up, or the deadline would pass
   * first).
   */
  transientDelay(result: number, maxTransientRetries: number): number {
    if (!mayRetryResult(result, this.idempotent)) return -1;
    if (this.transients >= maxTransientRetries) return -1;
    const delay = defaultBackoff(this.transients);
    if (this.deadline !== 0 && performance.now() + delay >= this.deadline) return -1;
    return delay;
  }

  fail(e: Error): void {
    if (this.phase === P_DONE) return;
    this.settle();
    const reject = this.reject;
    this.forget();
    reject(e);
  }

  /** Leave every queue, timer and connection; the caller then resolves or rejects. */
  settle(): void {
    const was = this.phase;
    this.phase = P_DONE;
    disarmDeadline(this);
    this.signal?.removeEventListener('abort', this);
    if (this.retryTimer !== undefined) {
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
    }
    if (this.liveTimer !== undefined) {
      clearTimeout(this.liveTimer);
      this.liveTimer = undefined;
    }
    const c = this.conn;
    if (c !== undefined) c.cancel(this);
    this.pool._settled(this, was);
    this.body = undefined;
    this.readInto = undefined;
    const t = this.trace;
    if (t !== undefined) {
      t.node = this.lastNode;
      t.attempts = this.sends;
    }
  }
}

function noop(): void {}

/** (Re)arm `pr`'s liveness timer on `conn`. */
export function armLiveness(pool: SheepdogPool, pr: PoolRequest, conn: Connection): void {
  if (pr.liveTimer !== undefined) clearTimeout(pr.liveTimer);
  pr.liveMark = conn.received;
  pr.liveTimer = setTimeout(livenessFired, pr.liveness, pool, pr);
}

function livenessFired(pool: SheepdogPool, pr: PoolRequest): void {
  pr.liveTimer = undefined;
  if (pr.phase !== P_SENT) return;
  pool._livenessExpired(pr);
}

/** The retry timer of a request in backoff fired. */
export function retryFired(pool: SheepdogPool, pr: PoolRequest): void {
  pr.retryTimer = undefined;
  if (pr.phase !== P_BACKOFF) return;
  pool._resend(pr);
}
