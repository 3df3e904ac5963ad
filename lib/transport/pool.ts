/**
 * SheepdogPool: the cluster's gateways behind one `Transport`.
 *
 * - Several id-multiplexed connections per node (connection.ts); a
 *   request goes to the least-loaded connection with a free slot, spread over
 *   nodes (rotating start, so ties go round-robin).
 * - Nodes come from the configuration and, with `discover`, from
 *   GET_NODE_LIST; the list is refreshed when a reply carries a newer epoch.
 * - A node whose connections fail is marked down and reconnected by
 *   `reconnectStrategy(retries, cause)` (default exponential backoff with
 *   jitter); a strategy answering `false` or an Error gives the node up.
 * - Failover: a request whose connection died is sent again elsewhere when
 *   that is safe (never sent; or idempotent: reads, lookups, object writes at
 *   a fixed offset); otherwise the caller gets OutcomeUnknownError.
 * - Transient sheep results (WAIT_FOR_JOIN, HALT, KILLED, SHUTDOWN, AGAIN,
 *   OLD/NEW_NODE_VER, NETWORK_ERROR for idempotent requests...) are retried
 *   with backoff within the deadline; the last reply is returned when the
 *   budget runs out. Other results are returned as they are.
 * - Deadlines (`timeout`) and cancellation (`signal`) per request; a bounded
 *   queue (`maxQueued`, QueueFullError); `busy` / 'drain' for streaming
 *   callers; `close()` drains, `destroy()` fails everything.
 *
 * The pool composes: request.ts (one request: deadline, abort, resend
 * decisions), queue.ts (the bounded queue and 'drain'), node-health.ts (a
 * node's state and reconnect backoff), discovery.ts (GET_NODE_LIST), with
 * policy.ts's rules. What stays here places requests on connections and
 * handles the connections' events.
 */
import { EventEmitter } from 'node:events';
import { opName, resultName } from '../../protocol/constants.js';
import type { Request } from '../../protocol/header.js';
import { parseAddress } from '../util/address.js';
import { Connection, type ConnectionHooks, OpState, encodeRequestHeader } from './connection.js';
import {
  type RequestTraceContext,
  nodesChangedChannel,
  requestChannel,
  requestRetryChannel,
} from '../util/diagnostics.js';
import { ConnectionError, InvalidArgumentError, PoolClosedError, TimeoutError } from '../errors.js';
import { type ReconnectStrategy, defaultReconnectStrategy, isNodeResult } from './policy.js';
import { Discovery } from './discovery.js';
import { type NodeStats, PoolNode, findResolved } from './node-health.js';
import { RequestQueue } from './queue.js';
import { P_BACKOFF, P_NEW, P_QUEUED, P_SENT, PoolRequest, armLiveness, retryFired } from './request.js';
import type { Reply, RequestOptions, Transport } from './types.js';

export { isIdempotent, isTransientResult, defaultReconnectStrategy, type ReconnectStrategy } from './policy.js';
export type { NodeState, NodeStats } from './node-health.js';

export interface PoolOptions {
  /** Gateways: `host:port`, `host` (port 7000), `[v6]:port`. Default `127.0.0.1:7000`. */
  nodes?: string | readonly string[];
  /** Learn the other nodes with GET_NODE_LIST, and again whenever the epoch changes. Default false. */
  discover?: boolean;
  /** Connections opened to each node. Default 2. */
  connectionsPerNode?: number;
  /** Requests in flight on one connection (orphans included). Default 128. */
  maxInFlightPerConnection?: number;
  /** Requests allowed to wait for a connection; more reject with QueueFullError. Default 1024. */
  maxQueued?: number;
  /** Default per-request deadline in ms (retries included); 0 = none. Default 30000. */
  requestTimeout?: number;
  /** TCP connect timeout in ms. Default 10000. */
  connectTimeout?: number;
  /**
   * Liveness deadline of a repeatable request, in ms: written and unanswered
   * this long on a connection that received nothing meanwhile (a gateway
   * that accepts and never answers), it is sent again on another node (a
   * failover, counted in `maxRetries`; the first copy becomes an orphan).
   * Not for pinned, non-repeatable or `untilReply` requests, nor with one
   * node. 0 = off. Default min(5000, timeout / 3), from each request's
   * timeout (5000 when it has none).
   */
  livenessTimeout?: number;
  /**
   * Re-sends of an idempotent request at once after its connection died
   * (failover). Past them it is still sent again when its connection dies,
   * after a backoff (the transient schedule), while its deadline leaves
   * room, up to `maxTransientRetries` such re-sends: one connection's death
   * fails over every request it carried, so a burst of deaths must not end
   * calls the cluster can still serve. 0 = a written request is never sent
   * again. (An untilReply request whose own deadline destroyed its
   * connection is replayed up to this many times.) Default 3.
   */
  maxRetries?: number;
  /**
   * Placements again of a request whose connection died before it was
   * written (any opcode: the sheep never saw it). Default 32.
   */
  maxUnsentRetries?: number;
  /** Re-sends after transient sheep results (within the deadline); also the bound of failovers past `maxRetries`. Default 20. */
  maxTransientRetries?: number;
  /**
   * Delay before reconnecting a node: `(retries, cause) => ms | false | Error`,
   * a fixed number of ms, or `false` (never reconnect: a node that fails is
   * given up). Default: min(2^retries · 50, 2000) + rand(0..200) ms.
   */
  reconnectStrategy?: ReconnectStrategy | number | false;
  /** Timed-out requests a connection may still owe a reply for before it is retired. Default 64. */
  maxOrphansPerConnection?: number;
  /** Largest reply body accepted, bytes. Default 64 MiB. */
  maxDataLength?: number;
  /** TCP keep-alive. Default true. */
  keepAlive?: boolean;
  /** TCP_NODELAY. Default true. */
  noDelay?: boolean;
  /** @internal First request id of every connection (tests of the u32 wrap). */
  initialRequestId?: number;
}

export interface PoolStats {
  /** Open or opening connections. */
  connections: number;
  /** Connections ready for requests. */
  ready: number;
  /** Requests written or being written, awaiting replies (orphans excluded). */
  inFlight: number;
  /** Requests timed out/aborted after send whose ids are still reserved. */
  orphans: number;
  /** Requests waiting for a connection (global queue and pinned). */
  queued: number;
  /** Accepted requests not yet settled (queued, in flight, or waiting to retry). */
  active: number;
  /** Highest cluster epoch seen in a reply (0 before any). */
  epoch: number;
  closed: boolean;
  nodes: NodeStats[];
}

export interface PoolEvents {
  /** The pool was busy and can take requests without queueing again. */
  drain: [];
  nodeUp: [node: string];
  /** The node has no usable connection (`error` says why); retries follow unless it was given up. */
  nodeDown: [node: string, error: Error];
  /** Discovery changed the node list. */
  nodes: [nodes: readonly string[]];
  /** A reply carried a newer cluster epoch. */
  epoch: [epoch: number];
}

const EMPTY_OPTS: RequestOptions = Object.freeze({});

const CONNECT_CODES: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  EHOSTDOWN: 'host down',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'name lookup failed',
  ETIMEDOUT: 'connect timed out',
  EADDRNOTAVAIL: 'address not available',
};

/** Why a connection attempt failed, in a few words (`connection refused (ECONNREFUSED)`). */
function connectWhy(e: Error | undefined): string {
  if (e === undefined) return 'not reachable';
  if (e instanceof ConnectionError && e.reason === 'connect-timeout') return 'connect timed out';
  const code = (e.cause as { code?: unknown } | undefined)?.code ?? (e as { code?: unknown }).code;
  if (typeof code === 'string' && code !== 'SHEEPDOG_ERR_CONNECTION') {
    const text = CONNECT_CODES[code];
    return text === undefined ? code : `${text} (${code})`;
  }
  const c = e.cause;
  return c instanceof Error ? c.message : e.message;
}

/** The ConnectionError of a request whose every usable node is unreachable: each node and its cause. */
function unreachableError(pr: PoolRequest, nodes: readonly PoolNode[]): ConnectionError {
  const op = opName(pr.req.opcode);
  const errs = nodes.map((n) => n.lastError as Error);
  const parts = nodes.map((n) => `${n.key}: ${connectWhy(n.lastError)}`);
  const reasons = new Set(errs.map((e) => (e instanceof ConnectionError ? e.reason : 'connect')));
  const reason = reasons.size === 1 ? ([...reasons][0] as ConnectionError['reason']) : 'connect';
  if (nodes.length === 1) {
    const n = nodes[0] as PoolNode;
    return new ConnectionError(`${op}: cannot connect to ${parts[0]}`, n.key, {
      reason,
      sent: false,
      cause: errs[0],
    });
  }
  return new ConnectionError(`${op}: cannot connect to any node (${parts.join('; ')})`, undefined, {
    reason,
    sent: false,
    cause: new AggregateError(errs, `every node failed to connect`),
  });
}

function nonNegInt(v: number | undefined, def: number, name: string, min = 0): number {
  const x = v ?? def;
  if (typeof x !== 'number' || !Number.isInteger(x) || x < min) {
    throw new InvalidArgumentError(`${name} must be an integer >= ${min}, got ${String(v)}`);
  }
  return x;
}

export class SheepdogPool extends EventEmitter<PoolEvents> implements Transport {
  readonly connectionsPerNode: number;
  readonly maxInFlightPerConnection: number;
  readonly maxQueued: number;
  readonly requestTimeout: number;
  readonly connectTimeout: number;
  /** `livenessTimeout` as given (undefined: the default, per request). */
  readonly livenessTimeout: number | undefined;
  readonly maxRetries: number;
  readonly maxUnsentRetries: number;
  readonly maxTransientRetries: number;
  readonly discover: boolean;
  private readonly reconnectStrategy: ReconnectStrategy | number | false;
  private readonly maxOrphans: number;
  private readonly maxDataLength: number | undefined;
  private readonly keepAlive: boolean;
  private readonly noDelay: boolean;
  private readonly initialRequestId: number | undefined;

  private readonly nodeMap = new Map<string, PoolNode>();
  private nodeKeys: readonly string[] = [];
  private readonly owner = new Map<Connection, PoolNode>();
  private readyConns: Connection[] = [];
  private rr = 0;
  private readonly queue: RequestQueue;
  private active = 0;
  private readonly backoff = new Set<PoolRequest>();
  private started = false;
  private closing = false;
  private destroyed = false;
  private closePromise: Promise<void> | undefined;
  private closeResolve: (() => void) | undefined;
  private readonly discovery: Discovery;
  private connectWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private readonly hooks: ConnectionHooks;
  /** Sockets and reconnect timers keep the process alive (see holdProcess()). */
  private refed = false;
  /** Highest cluster epoch seen in a reply. */
  epoch = 0;

  constructor(opts: PoolOptions = {}) {
    super();
    const seeds =
      opts.nodes === undefined ? ['127.0.0.1:7000'] : typeof opts.nodes === 'string' ? [opts.nodes] : opts.nodes;
    if (!Array.isArray(seeds) || seeds.length === 0) {
      throw new InvalidArgumentError('nodes must name at least one "host:port"');
    }
    this.connectionsPerNode = nonNegInt(opts.connectionsPerNode, 2, 'connectionsPerNode', 1);
    this.maxInFlightPerConnection = nonNegInt(opts.maxInFlightPerConnection, 128, 'maxInFlightPerConnection', 1);
    this.maxQueued = nonNegInt(opts.maxQueued, 1024, 'maxQueued');
    this.queue = new RequestQueue(this.maxQueued);
    this.requestTimeout = nonNegInt(opts.requestTimeout, 30_000, 'requestTimeout');
    this.connectTimeout = nonNegInt(opts.connectTimeout, 10_000, 'connectTimeout');
    this.livenessTimeout =
      opts.livenessTimeout === undefined ? undefined : nonNegInt(opts.livenessTimeout, 0, 'livenessTimeout');
    this.maxRetries = nonNegInt(opts.maxRetries, 3, 'maxRetries');
    this.maxUnsentRetries = nonNegInt(opts.maxUnsentRetries, 32, 'maxUnsentRetries');
    this.maxTransientRetries = nonNegInt(opts.maxTransientRetries, 20, 'maxTransientRetries');
    this.maxOrphans = nonNegInt(opts.maxOrphansPerConnection, 64, 'maxOrphansPerConnection');
    if (opts.maxDataLength !== undefined) nonNegInt(opts.maxDataLength, 0, 'maxDataLength', 1);
    this.maxDataLength = opts.maxDataLength;
    const rs = opts.reconnectStrategy ?? defaultReconnectStrategy;
    if (rs !== false && typeof rs !== 'function' && (typeof rs !== 'number' || !(rs >= 0))) {
      throw new InvalidArgumentError('reconnectStrategy must be a function, a number of ms, or false');
    }
    this.reconnectStrategy = rs;
    this.discover = opts.discover ?? false;
    this.keepAlive = opts.keepAlive ?? true;
    this.noDelay = opts.noDelay ?? true;
    this.initialRequestId = opts.initialRequestId;
    for (const s of seeds) {
      const a = parseAddress(s);
      if (!this.nodeMap.has(a.key)) this.nodeMap.set(a.key, new PoolNode(a.key, a.host, a.port, true));
    }
    this.nodeKeys = Object.freeze([...this.nodeMap.keys()]);
    this.discovery = new Discovery(this, this.nodeMap);
    this.hooks = {
      onReady: (c) => this.connReady(c),
      onClose: (c, e) => this.connClosed(c, e),
      onRetire: (c) => this.connRetired(c),
      onCapacity: (c) => this.connCapacity(c),
    };
  }

  /** Gateways currently known (`host:port`): configured plus discovered. */
  get nodes(): readonly string[] {
    return this.nodeKeys;
  }

  /** True once close() or destroy() was called. */
  get closed(): boolean {
    return this.closing;
  }

  /**
   * True when a new request would have to wait in the queue (or the pool is
   * closed). Streaming callers stop issuing requests until 'drain'.
   */
  get busy(): boolean {
    if (this.closing) return true;
    if (this.queue.global === 0) {
      for (const c of this.readyConns) if (c.available > 0) return false;
    }
    this.queue.needDrain = true;
    if (!this.started) this.start();
    return true;
  }

  get stats(): PoolStats {
    const nodes: NodeStats[] = [];
    let connections = 0;
    let ready = 0;
    let inFlight = 0;
    let orphans = 0;
    for (const n of this.nodeMap.values()) nodes.push(n.stats);
    for (const c of this.owner.keys()) {
      if (c.state === 'closed') continue;
      connections++;
      if (c.state === 'ready') ready++;
      inFlight += c.inFlight - c.orphans;
      orphans += c.orphans;
    }
    return {
      connections,
      ready,
      inFlight,
      orphans,
      queued: this.queue.queued,
      active: this.active,
      epoch: this.epoch,
      closed: this.closing,
      nodes,
    };
  }

  /**
   * Emit an event from a microtask, never in the middle of a state change:
   * the reply, connection event or close that caused it is fully handled
   * (the request settled, the connection's other requests failed over)
   * before any listener runs, so a listener that throws surfaces as an
   * uncaught exception (as it would from any EventEmitter) without killing
   * a connection or stranding a request. Queued before the settling
   * request's promise is resolved, listeners still run before its caller
   * resumes.
   */
  private emitLater<K extends keyof PoolEvents>(name: K, ...args: PoolEvents[K]): void {
    queueMicrotask(() => {
      (this as EventEmitter).emit(name, ...args);
    });
  }

  // ------------------------------------------------------------ requests

  request(req: Request, body?: Uint8Array, opts: RequestOptions = EMPTY_OPTS): Promise<Reply> {
    if (this.closing) {
      return Promise.reject(
        new PoolClosedError(`pool is ${this.destroyed ? 'destroyed' : 'closed'}: ${opName(req.opcode)} not sent`),
      );
    }
    let header: Uint8Array;
    let pinned: PoolNode | undefined;
    try {
      header = encodeRequestHeader(req, body);
      if (opts.node !== undefined) pinned = this.pinnedNode(opts.node);
    } catch (e) {
      return Promise.reject(e);
    }
    const timeout = opts.timeout ?? this.requestTimeout;
    if (typeof timeout !== 'number' || !(timeout >= 0)) {
      return Promise.reject(new InvalidArgumentError(`timeout must be a number of ms >= 0, got ${String(timeout)}`));
    }
    const pr = new PoolRequest(this, req, header, body, opts, pinned, timeout);
    if (pinned === undefined && pr.idempotent && !pr.untilReply) pr.liveness = this.livenessFor(timeout);
    if (requestChannel.hasSubscribers) {
      const ctx: RequestTraceContext = { request: req, op: opName(req.opcode) };
      pr.trace = ctx;
      return requestChannel.tracePromise(this.admit, ctx, this, pr);
    }
    return this.admit(pr);
  }

  /** The liveness deadline of a repeatable request with this timeout (0: none). */
  private livenessFor(timeout: number): number {
    const lt = this.livenessTimeout ?? (timeout > 0 ? Math.min(5000, Math.floor(timeout / 3)) : 5000);
    if (lt <= 0 || (timeout > 0 && lt >= timeout)) return 0;
    return lt;
  }

  private pinnedNode(addr: string): PoolNode {
    const key = parseAddress(addr).key;
    const n = this.nodeMap.get(key) ?? findResolved(this.nodeMap, key);
    if (n === undefined) {
      throw new InvalidArgumentError(`node ${addr} is not in the pool (known: ${this.nodeKeys.join(', ')})`);
    }
    return n;
  }

  private admit(pr: PoolRequest): Promise<Reply> {
    const p = new Promise<Reply>((resolve, reject) => {
      pr.resolve = resolve;
      pr.reject = reject;
    });
    if (this.active++ === 0) this.updateRef();
    if (pr.arm()) this.dispatch(pr, false);
    return p;
  }

  /** Send `pr` now if a connection has a free slot, else queue it. */
  private dispatch(pr: PoolRequest, retry: boolean): void {
    const conn = this.pick(pr, retry);
    if (conn !== undefined) {
      pr.phase = P_SENT;
      pr.sends++;
      conn.send(pr);
      if (pr.liveness > 0) this._watchLiveness(pr, conn);
      return;
    }
    this.enqueue(pr, retry);
  }

  private pick(pr: PoolRequest, retry: boolean): Connection | undefined {
    const pinned = pr.pinned;
    if (pinned !== undefined) {
      if (pinned.pinnedCount > 0 && !retry) return undefined;
      let best: Connection | undefined;
      let bestLoad = Number.POSITIVE_INFINITY;
      for (const c of pinned.conns) {
        if (c.available <= 0) continue;
        if (c.pending < bestLoad) {
          best = c;
          bestLoad = c.pending;
        }
      }
      return best;
    }
    if (this.queue.global > 0 && !retry) return undefined; // first come, first served
    const list = this.readyConns;
    const n = list.length;
    if (n === 0) return undefined;
    const start = this.rr < n ? this.rr : 0;
    this.rr = start + 1 < n ? start + 1 : 0;
    const avoid = pr.avoid;
    let best: Connection | undefined;
    let bestLoad = Number.POSITIVE_INFINITY;
    for (let k = 0; k < n; k++) {
      let j = start + k;
      if (j >= n) j -= n;
      const c = list[j] as Connection;
      if (c.available <= 0) continue;
      // Orphans count too: a connection owing replies it never sent is slow or silent.
      let load = c.pending + c.orphans;
      if (avoid !== undefined && this.owner.get(c) === avoid) load += 0x100000000;
      if (load < bestLoad) {
        best = c;
        bestLoad = load;
        if (load === 0) break;
      }
    }
    return best;
  }

  private enqueue(pr: PoolRequest, retry: boolean): void {
    const target = pr.pinned;
    if (target !== undefined ? target.status === 'failed' || target.removed : this.allFailed()) {
      pr.fail(this.noNodeError(pr));
      return;
    }
    if (!this.queue.add(pr, retry)) return;
    if (!this.started) this.start();
  }

  private allFailed(): boolean {
    if (!this.started) return false;
    for (const n of this.nodeMap.values()) if (n.status !== 'failed') return false;
    return true;
  }

  private noNodeError(pr: PoolRequest): ConnectionError {
    const op = opName(pr.req.opcode);
    const t = pr.pinned;
    if (t !== undefined) {
      const why = t.removed ? 'left the cluster' : `was given up${t.lastError ? ` (${t.lastError.message})` : ''}`;
      return new ConnectionError(`${op}: node ${t.key} ${why}`, t.key, {
        reason: 'no-node',
        ...(t.lastError ? { cause: t.lastError } : {}),
      });
    }
    const parts = [...this.nodeMap.values()].map((n) => n.describe());
    return new ConnectionError(`${op}: no node can take requests (${parts.join('; ')})`, undefined, {
      reason: 'no-node',
    });
  }

  /** @internal Why a queued request still waits (timeout messages). */
  _waitReason(pr: PoolRequest): string {
    const nodes = pr.pinned ? [pr.pinned] : [...this.nodeMap.values()];
    const up = nodes.filter((n) => n.status === 'up').length;
    if (up > 0) return `all ${this.readyConns.length} connections busy, ${this.queue.queued} queued`;
    return nodes.map((n) => `${n.key} ${n.status}${n.lastError ? `: ${n.lastError.message}` : ''}`).join('; ');
  }

  /** @internal A request settled (any way). */
  _settled(pr: PoolRequest, was: number): void {
    if (was === P_QUEUED) this.queue.left(pr);
    else if (was === P_BACKOFF) this.backoff.delete(pr);
    if (--this.active === 0) this.updateRef();
    if (this.closing && this.active === 0 && !this.destroyed) this.finishClose();
  }

  /** @internal A reply carried a transient result: true when a retry was scheduled. */
  _retryTransient(pr: PoolRequest, result: number, conn: Connection): boolean {
    if (this.destroyed) return false;
    const delay = pr.transientDelay(result, this.maxTransientRetries);
    if (delay < 0) return false;
    pr.transients++;
    pr.lastResult = result;
    if (pr.pinned === undefined && isNodeResult(result)) pr.avoid = this.owner.get(conn);
    pr.phase = P_BACKOFF;
    this.backoff.add(pr);
    pr.retryTimer = setTimeout(retryFired, delay, this, pr);
    if (requestRetryChannel.hasSubscribers) {
      requestRetryChannel.publish({
        request: pr.req,
        op: opName(pr.req.opcode),
        reason: 'transient',
        node: conn.node,
        attempt: pr.transients,
        delay,
        result,
        resultName: resultName(result),
      });
    }
    return true;
  }

  /** @internal A backoff ended: send again (ahead of new requests). */
  _resend(pr: PoolRequest): void {
    this.backoff.delete(pr);
    if (this.destroyed) return;
    this.dispatch(pr, true);
  }

  /**
   * @internal `pr`'s liveness deadline passed. Written, unanswered, on a
   * connection that read nothing since: taken back from it (an orphan there)
   * and sent to another node, when one is up and `maxRetries` allows.
   * Otherwise (not written yet, payload still in the socket, the connection
   * is receiving, no other node) it is looked at again one period later.
   */
  _livenessExpired(pr: PoolRequest): void {
    const conn = pr.conn;
    if (this.destroyed || conn === undefined) return;
    const node = this.owner.get(conn);
    const quiet = conn.received === pr.liveMark && pr.opState === OpState.SENT;
    if (quiet && conn.readingInto(pr) && pr.failovers < this.maxRetries && this.otherNodeUp(node)) {
      // Silent in the middle of its reply, with the socket's next read set to
      // go into the caller's buffer: only closing the connection frees that
      // buffer. Its requests then fail over as after any connection loss.
      conn.destroy(
        new ConnectionError(
          `connection ${conn.id} to ${conn.node} destroyed: silent for ${pr.liveness} ms in the middle of a reply (liveness)`,
          conn.node,
          { reason: 'destroyed' },
        ),
      );
      return;
    }
    const silent = quiet && pr.flushingOn === undefined;
    if (!silent || pr.failovers >= this.maxRetries || !this.otherNodeUp(node)) {
      armLiveness(this, pr, conn);
      return;
    }
    if (!conn.abandon(pr)) return;
    pr.lastNode = conn.node;
    pr.lastResult = 0;
    pr.failovers++;
    pr.avoid = node;
    const op = opName(pr.req.opcode);
    if (requestRetryChannel.hasSubscribers) {
      requestRetryChannel.publish({
        request: pr.req,
        op,
        reason: 'failover',
        node: conn.node,
        attempt: pr.failovers,
        delay: 0,
        error: new TimeoutError(`${op} got no reply from ${conn.node} within ${pr.liveness} ms (liveness)`, {
          phase: 'sent',
          node: conn.node,
          timeout: pr.liveness,
        }),
      });
    }
    pr.phase = P_NEW;
    this.dispatch(pr, true);
  }

  /** @internal `pr` (with a liveness deadline) was handed to `conn`: arm its liveness timer. */
  _watchLiveness(pr: PoolRequest, conn: Connection): void {
    if (pr.phase === P_SENT && pr.conn === conn && this.nodeMap.size > 1) armLiveness(this, pr, conn);
  }

  /** Whether a node other than `node` has a connection with a free slot. */
  private otherNodeUp(node: PoolNode | undefined): boolean {
    for (const c of this.readyConns) if (c.available > 0 && this.owner.get(c) !== node) return true;
    return false;
  }

  /** @internal The connection carrying `pr` failed. */
  _requestFailed(pr: PoolRequest, err: Error, conn: Connection, sent: boolean): void {
    pr.lastNode = conn.node;
    pr.lastResult = 0;
    if (this.destroyed) {
      pr.fail(err);
      return;
    }
    const reason = pr.resendReason(err, conn, sent, this.maxRetries, this.maxUnsentRetries, this.maxTransientRetries);
    if (reason === undefined) return; // failed
    if (pr.pinned === undefined) pr.avoid = this.owner.get(conn);
    const delay = pr.failoverDelay;
    if (requestRetryChannel.hasSubscribers) {
      requestRetryChannel.publish({
        request: pr.req,
        op: opName(pr.req.opcode),
        reason,
        node: conn.node,
        attempt: reason === 'unsent' ? pr.unsentBounces : pr.failovers,
        delay,
        error: err,
      });
    }
    if (delay > 0) {
      pr.phase = P_BACKOFF;
      this.backoff.add(pr);
      pr.retryTimer = setTimeout(retryFired, delay, this, pr);
      return;
    }
    pr.phase = P_NEW;
    this.dispatch(pr, true);
  }

  // ------------------------------------------------------------ keeping the process alive

  /**
   * Whether the pool must keep the process alive: a request is pending, a
   * connect() is waited for, or a close() is under way. Otherwise its
   * sockets and reconnect timers are unref'd, so a process whose only
   * handle is an idle open pool exits.
   */
  private holdProcess(): boolean {
    return this.active > 0 || this.connectWaiters.length > 0 || this.closeResolve !== undefined;
  }

  /** Ref or unref every socket and reconnect timer when holdProcess() changed. */
  private updateRef(): void {
    const want = this.holdProcess();
    if (want === this.refed) return;
    this.refed = want;
    for (const c of this.owner.keys()) {
      if (want) c.ref();
      else c.unref();
    }
    for (const n of this.nodeMap.values()) {
      const tm = n.timer;
      if (tm === undefined) continue;
      if (want) tm.ref();
      else tm.unref();
    }
  }

  // ------------------------------------------------------------ connections and nodes

  private start(): void {
    this.started = true;
    for (const n of this.nodeMap.values()) this._fill(n);
  }

  /** @internal Open connections up to connectionsPerNode (unless in backoff, failed or closing). */
  _fill(node: PoolNode): void {
    if (node.removed || this.destroyed || node.timer !== undefined || node.status === 'failed') return;
    if (this.closing && this.active === 0) return;
    while (node.conns.length < this.connectionsPerNode) {
      const c = new Connection({
        host: node.host,
        port: node.port,
        node: node.key,
        connectTimeout: this.connectTimeout,
        maxInFlight: this.maxInFlightPerConnection,
        maxOrphans: this.maxOrphans,
        ...(this.maxDataLength === undefined ? {} : { maxDataLength: this.maxDataLength }),
        keepAlive: this.keepAlive,
        noDelay: this.noDelay,
        hooks: this.hooks,
        ...(this.initialRequestId === undefined ? {} : { initialId: this.initialRequestId }),
      });
      if (!this.refed) c.unref();
      this.owner.set(c, node);
      node.conns.push(c);
    }
    if (node.ready === 0 && node.status === 'idle') node.status = 'connecting';
  }

  private connReady(c: Connection): void {
    const node = this.owner.get(c);
    if (node === undefined || node.removed || this.destroyed) {
      c.close();
      return;
    }
    node.connReady(c);
    this.readyConns.push(c);
    if (node.markUp()) this.emitLater('nodeUp', node.key);
    const d = this.discovery;
    const waiters = this.connectWaiters;
    if (waiters.length > 0 && !(this.discover && !d.learned)) {
      this.connectWaiters = [];
      this.updateRef();
      for (const w of waiters) w.resolve();
    }
    if (this.discover && !d.learned && d.running === undefined && !this.closing) {
      void this.refreshNodes();
    }
    this.connCapacity(c);
  }

  private connCapacity(c: Connection): void {
    const q = this.queue;
    if (q.queued > 0) q.drainOnto(c, this.owner.get(c));
    if (q.needDrain && q.global === 0 && c.available > 0 && !this.closing) {
      q.needDrain = false;
      this.emitLater('drain');
    }
  }

  private dropReady(c: Connection, node: PoolNode | undefined): void {
    const i = this.readyConns.indexOf(c);
    if (i >= 0) {
      this.readyConns.splice(i, 1);
      if (node !== undefined) node.ready--;
    }
  }

  private connRetired(c: Connection): void {
    const node = this.owner.get(c);
    this.dropReady(c, node);
    if (node === undefined) return;
    node.dropConn(c);
    this._fill(node);
  }

  private connClosed(c: Connection, err: Error | undefined): void {
    const node = this.owner.get(c);
    this.owner.delete(c);
    this.dropReady(c, node);
    if (node === undefined) return;
    node.dropConn(c);
    if (this.destroyed || node.removed) return;
    if (err === undefined) {
      this._fill(node); // a retired connection finished: keep the count
      return;
    }
    node.lastError = err;
    if (this.closing && this.active === 0) return;
    this.scheduleReconnect(node, err);
    if (node.unreachable) this.failUnreachable(node);
  }

  /**
   * `node` failed a connection attempt and was never up: its pinned requests
   * fail now, and so does the global queue when every node is in that state
   * (a refused or unreachable cluster is reported at once, with each node's
   * cause, not after the request's deadline). Nodes that were up once are
   * waited for within the deadline (a sheep restarting).
   */
  private failUnreachable(node: PoolNode): void {
    for (const pr of node.pinned.drain()) {
      if (pr.phase === P_QUEUED) pr.fail(unreachableError(pr, [node]));
    }
    if (this.queue.global === 0) return;
    const nodes = [...this.nodeMap.values()];
    for (const n of nodes) if (!n.unreachable) return;
    for (const pr of this.queue.takeAll()) {
      if (pr.phase === P_QUEUED) pr.fail(unreachableError(pr, nodes));
    }
  }

  /** @internal Why a queued request still waits, as an error (the TimeoutError's cause): the nodes' last connection errors. */
  _waitCause(pr: PoolRequest): Error | undefined {
    const nodes = pr.pinned ? [pr.pinned] : [...this.nodeMap.values()];
    const errs: Error[] = [];
    for (const n of nodes) {
      if (n.status === 'up') return undefined;
      if (n.lastError !== undefined) errs.push(n.lastError);
    }
    if (errs.length === 0) return undefined;
    if (errs.length === 1) return errs[0];
    return new AggregateError(errs, 'no node can be reached');
  }

  /** Reconnect `node` after the strategy's delay; report it down, or given up (then its requests fail). */
  private scheduleReconnect(node: PoolNode, err: Error): void {
    const change = node.reconnectLater(this.reconnectStrategy, err, this, !this.refed);
    if (change === 'down') this.emitLater('nodeDown', node.key, err);
    else if (change === 'failed') {
      this.emitLater('nodeDown', node.key, node.lastError as Error);
      this.failPinned(node);
      if (this.allFailed()) this.failGlobalQueue();
    }
    this.checkConnectWaiters();
  }

  private failPinned(node: PoolNode): void {
    for (const pr of node.pinned.drain()) {
      if (pr.phase === P_QUEUED) pr.fail(this.noNodeError(pr));
    }
  }

  private failGlobalQueue(): void {
    for (const pr of this.queue.takeAll()) {
      if (pr.phase === P_QUEUED) pr.fail(this.noNodeError(pr));
    }
  }

  /** Reject connect() waiters once no node is up and none is still connecting. */
  private checkConnectWaiters(): void {
    if (this.connectWaiters.length === 0) return;
    for (const n of this.nodeMap.values()) if (n.ready > 0 || n.conns.length > 0) return;
    const waiters = this.connectWaiters;
    this.connectWaiters = [];
    this.updateRef();
    const parts = [...this.nodeMap.values()].map((n) => n.describe());
    const e = new ConnectionError(`could not connect to any node (${parts.join('; ')})`, undefined, {
      reason: 'no-node',
    });
    for (const w of waiters) w.reject(e);
  }

  /**
   * Connect now (connections are otherwise opened by the first request) and
   * resolve once a node is up (and, with `discover`, the node list is known).
   * Nodes that were given up are tried again. Rejects with ConnectionError
   * when no node can be reached on this round.
   */
  connect(): Promise<void> {
    if (this.closing) return Promise.reject(new PoolClosedError('pool is closed'));
    for (const n of this.nodeMap.values()) {
      if (n.status === 'failed') {
        n.status = 'idle';
        n.attempts = 0;
      }
    }
    this.started = true;
    for (const n of this.nodeMap.values()) this._fill(n);
    const d = this.discovery;
    if (this.readyConns.length > 0 && !(this.discover && !d.learned)) return Promise.resolve();
    if (this.readyConns.length > 0 && d.running) return d.running;
    return new Promise((resolve, reject) => {
      this.connectWaiters.push({ resolve, reject });
      if (this.connectWaiters.length === 1) this.updateRef();
    });
  }

  // ------------------------------------------------------------ discovery

  /** @internal A reply carried a newer epoch. */
  _epochSeen(epoch: number): void {
    const first = this.epoch === 0;
    this.epoch = epoch;
    this.emitLater('epoch', epoch);
    if (this.discover && !first && !this.closing) void this.refreshNodes();
  }

  /**
   * Ask the cluster for its node list (GET_NODE_LIST) and update the pool:
   * new nodes are added and connected, nodes that left are closed (seeds
   * are kept). Runs at most once at a time; called automatically with
   * `discover` on the first connection and on every epoch change.
   */
  refreshNodes(): Promise<void> {
    return this.discovery.refresh();
  }

  /** @internal A refresh ended: connect() waiters resolve once a node is up. */
  _discoveryEnded(): void {
    const waiters = this.connectWaiters;
    if (waiters.length > 0 && this.readyConns.length > 0) {
      this.connectWaiters = [];
      this.updateRef();
      for (const w of waiters) w.resolve();
    }
  }

  /** @internal Discovery added and removed nodes (the node map is updated). */
  _nodesChanged(epoch: number, added: readonly string[], removed: readonly string[]): void {
    this.nodeKeys = Object.freeze([...this.nodeMap.keys()]);
    if (this.started) for (const k of added) this._fill(this.nodeMap.get(k) as PoolNode);
    if (nodesChangedChannel.hasSubscribers) {
      nodesChangedChannel.publish({ epoch, nodes: this.nodeKeys, added, removed });
    }
    this.emitLater('nodes', this.nodeKeys);
  }

  /** @internal Drop a node that left the cluster: close its connections, fail its pinned requests. */
  _removeNode(n: PoolNode): void {
    n.removed = true;
    this.nodeMap.delete(n.key);
    if (n.timer !== undefined) clearTimeout(n.timer);
    n.timer = undefined;
    for (const c of n.conns) {
      this.dropReady(c, n);
      void c.close();
    }
    n.conns = [];
    this.failPinned(n);
  }

  // ------------------------------------------------------------ shutdown

  /**
   * Stop taking requests (new ones reject with PoolClosedError), let every
   * accepted request finish (queued ones included), then close the
   * connections. Resolves when every socket is closed.
   */
  close(): Promise<void> {
    if (this.closePromise !== undefined) return this.closePromise;
    this.closing = true;
    this.closePromise = new Promise<void>((resolve) => {
      this.closeResolve = resolve;
    });
    this.updateRef(); // the sockets must stay ref'd until they are closed
    this.rejectConnectWaiters(new PoolClosedError('pool was closed'));
    if (this.active === 0) this.finishClose();
    return this.closePromise;
  }

  private finishClose(): void {
    for (const n of this.nodeMap.values()) {
      if (n.timer !== undefined) clearTimeout(n.timer);
      n.timer = undefined;
    }
    const conns = [...this.owner.keys()];
    // Nothing was sent on a connection still connecting: do not wait for it.
    for (const c of conns) if (c.state === 'connecting') c.destroy();
    void Promise.all(conns.map((c) => c.close())).then(() => {
      const r = this.closeResolve;
      this.closeResolve = undefined;
      this.updateRef();
      r?.();
    });
  }

  /**
   * Close at once: every queued, waiting and in-flight request fails with
   * `err` (default PoolClosedError), every socket is destroyed.
   */
  destroy(err?: Error): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.closing = true;
    const e = err ?? new PoolClosedError('pool was destroyed');
    this.rejectConnectWaiters(e);
    for (const n of this.nodeMap.values()) {
      if (n.timer !== undefined) clearTimeout(n.timer);
      n.timer = undefined;
      for (const pr of n.pinned.drain()) pr.fail(e);
    }
    for (const pr of this.queue.takeAll()) pr.fail(e);
    for (const pr of [...this.backoff]) pr.fail(e);
    const conns = [...this.owner.keys()];
    this.readyConns = [];
    for (const c of conns) c.destroy(e);
    if (this.closePromise === undefined) this.closePromise = Promise.resolve();
    const r = this.closeResolve;
    this.closeResolve = undefined;
    r?.();
  }

  private rejectConnectWaiters(e: Error): void {
    const w = this.connectWaiters;
    this.connectWaiters = [];
    this.updateRef();
    for (const x of w) x.reject(e);
  }
}
