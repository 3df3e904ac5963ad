/**
 * SheepdogPool: the cluster's gateways behind one `Transport`.
 *
 * - Several id-multiplexed connections per node (lib/connection.ts); a
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
 */
import { EventEmitter } from 'node:events';
import { Op, Result, SD_MAX_NODES, SD_NODE_SIZE, opName } from '../../protocol/constants.js';
import {
  type NodeResponse,
  type Request,
  decodeResponse,
  peekEpoch,
  peekResult,
  plainRequest,
} from '../../protocol/header.js';
import { decodeNodeList } from '../../protocol/records.js';
import { formatAddress, parseAddress } from '../util/address.js';
import { Connection, type ConnectionHooks, ConnectionOp, OpState, encodeRequestHeader } from './connection.js';
import {
  type RequestTraceContext,
  nodeDownChannel,
  nodeUpChannel,
  nodesChangedChannel,
  requestChannel,
  requestRetryChannel,
} from '../util/diagnostics.js';
import {
  AbortError,
  ConnectionError,
  InvalidArgumentError,
  OutcomeUnknownError,
  PoolClosedError,
  QueueFullError,
  type RequestPhase,
  TimeoutError,
} from '../errors.js';
import {
  type ReconnectStrategy,
  defaultBackoff,
  defaultReconnectStrategy,
  isIdempotent,
  isNodeResult,
  isTransientResult,
  mayRetryResult,
} from './policy.js';
import { type Deadlined, armDeadline, disarmDeadline } from '../util/timers.js';
import type { Reply, RequestOptions, Transport } from './types.js';

export { isIdempotent, isTransientResult, defaultReconnectStrategy, type ReconnectStrategy } from './policy.js';

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
  /** Re-sends of an idempotent request after its connection died (failover). Default 3. */
  maxRetries?: number;
  /** Re-sends after transient sheep results (within the deadline). Default 20. */
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

export type NodeState = 'idle' | 'connecting' | 'up' | 'down' | 'failed';

export interface NodeStats {
  node: string;
  state: NodeState;
  /** Open or opening connections (retiring ones excluded). */
  connections: number;
  /** Connections ready for requests. */
  ready: number;
  /** Requests in flight on its connections (orphans included). */
  inFlight: number;
  orphans: number;
  /** Requests pinned to this node (`RequestOptions.node`) waiting for it. */
  queued: number;
  /** Consecutive failed connection attempts. */
  retries: number;
  /** Why it last failed. */
  lastError: string | undefined;
  /** Came from the configuration (true) or from discovery (false). */
  seed: boolean;
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

// Request phases (PoolRequest.phase).
const P_NEW = 0;
const P_QUEUED = 1;
const P_SENT = 2;
const P_BACKOFF = 3;
const P_DONE = 4;

function phaseName(p: number): RequestPhase {
  return p === P_SENT ? 'sent' : p === P_BACKOFF ? 'backoff' : 'queued';
}

/** A FIFO with O(1) shift/unshift (head index into an array, compacted now and then). */
class Fifo<T> {
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

class PoolNode {
  readonly key: string;
  readonly host: string;
  readonly port: number;
  readonly seed: boolean;
  /** Connections opening or ready (retiring ones are dropped from here). */
  conns: Connection[] = [];
  ready = 0;
  attempts = 0;
  timer: NodeJS.Timeout | undefined = undefined;
  status: NodeState = 'idle';
  lastError: Error | undefined = undefined;
  removed = false;
  readonly pinned = new Fifo<PoolRequest>();
  pinnedCount = 0;
  /** `address:port` the node answered from (matches discovered addresses to seeds given by name). */
  resolved: string | undefined = undefined;

  constructor(key: string, host: string, port: number, seed: boolean) {
    this.key = key;
    this.host = host;
    this.port = port;
    this.seed = seed;
  }
}

class PoolRequest extends ConnectionOp implements Deadlined {
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
  transients = 0;
  lastNode: string | undefined = undefined;
  lastResult = 0;
  avoid: PoolNode | undefined = undefined;
  retryTimer: NodeJS.Timeout | undefined = undefined;
  trace: RequestTraceContext | undefined = undefined;

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
  }

  onReply(header: Uint8Array, body: Uint8Array, conn: Connection): void {
    if (this.phase === P_DONE) return;
    const pool = this.pool;
    const epoch = peekEpoch(header);
    if (epoch > pool.epoch) pool._epochSeen(epoch);
    this.lastNode = conn.node;
    const result = peekResult(header);
    if (result !== Result.SUCCESS && isTransientResult(result) && pool._retryTransient(this, result, conn)) return;
    this.settle();
    this.resolve({ header: decodeResponse(header), body, node: conn.node });
  }

  onError(err: Error, conn: Connection, sent: boolean): void {
    if (this.phase === P_DONE) return;
    this.pool._requestFailed(this, err, conn, sent);
  }

  /** Deadline passed. */
  onDeadline(): void {
    if (this.phase === P_DONE) return;
    const op = opName(this.req.opcode);
    const phase = this.wirePhase();
    const node = this.conn?.node ?? this.lastNode;
    let where: string;
    if (phase === 'sent') where = `sent to ${node}, no reply yet`;
    else if (phase === 'backoff') where = `waiting to retry after ${this.lastResultText()} from ${node}`;
    else where = `never sent: waiting for a connection (${this.pool._waitReason(this)})`;
    this.fail(
      new TimeoutError(`${op} timed out after ${this.timeout} ms (${where})`, { phase, node, timeout: this.timeout }),
    );
  }

  /** The AbortSignal fired (EventTarget listener object: no closure). */
  handleEvent(): void {
    if (this.phase === P_DONE) return;
    const phase = this.wirePhase();
    const node = this.conn?.node ?? this.lastNode;
    const where =
      phase === 'sent'
        ? `after it was sent to ${node}`
        : phase === 'backoff'
          ? 'while waiting to retry'
          : 'before it was sent';
    this.fail(
      new AbortError(`${opName(this.req.opcode)} aborted ${where}`, { phase, node, cause: this.signal?.reason }),
    );
  }

  /** Pool phase, except that a request still waiting on its connection for a slot or a write is 'queued'. */
  private wirePhase(): RequestPhase {
    if (this.phase === P_SENT && this.opState !== OpState.SENT) return 'queued';
    return phaseName(this.phase);
  }

  private lastResultText(): string {
    return this.lastResult === 0 ? 'a connection failure' : `result 0x${this.lastResult.toString(16)}`;
  }

  fail(e: Error): void {
    if (this.phase === P_DONE) return;
    this.settle();
    this.reject(e);
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

function retryFired(pool: SheepdogPool, pr: PoolRequest): void {
  pr.retryTimer = undefined;
  if (pr.phase !== P_BACKOFF) return;
  pool._resend(pr);
}

function reconnectFired(pool: SheepdogPool, node: PoolNode): void {
  node.timer = undefined;
  pool._fill(node);
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
  readonly maxRetries: number;
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
  private readonly queue = new Fifo<PoolRequest>();
  private queued = 0;
  /** Live requests in the global queue (`queued` minus the pinned ones). */
  private globalQueued = 0;
  private active = 0;
  private readonly backoff = new Set<PoolRequest>();
  private started = false;
  private closing = false;
  private destroyed = false;
  private closePromise: Promise<void> | undefined;
  private closeResolve: (() => void) | undefined;
  private needDrain = false;
  private discovering: Promise<void> | undefined;
  private rediscover = false;
  private discovered = false;
  private connectWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private readonly hooks: ConnectionHooks;
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
    this.requestTimeout = nonNegInt(opts.requestTimeout, 30_000, 'requestTimeout');
    this.connectTimeout = nonNegInt(opts.connectTimeout, 10_000, 'connectTimeout');
    this.maxRetries = nonNegInt(opts.maxRetries, 3, 'maxRetries');
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
    if (this.globalQueued === 0) {
      for (const c of this.readyConns) if (c.available > 0) return false;
    }
    this.needDrain = true;
    if (!this.started) this.start();
    return true;
  }

  get stats(): PoolStats {
    const nodes: NodeStats[] = [];
    let connections = 0;
    let ready = 0;
    let inFlight = 0;
    let orphans = 0;
    for (const n of this.nodeMap.values()) {
      let nin = 0;
      let norph = 0;
      for (const c of n.conns) {
        nin += c.inFlight;
        norph += c.orphans;
      }
      nodes.push({
        node: n.key,
        state: n.status,
        connections: n.conns.length,
        ready: n.ready,
        inFlight: nin,
        orphans: norph,
        queued: n.pinnedCount,
        retries: n.attempts,
        lastError: n.lastError?.message,
        seed: n.seed,
      });
    }
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
      queued: this.queued,
      active: this.active,
      epoch: this.epoch,
      closed: this.closing,
      nodes,
    };
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
    if (requestChannel.hasSubscribers) {
      const ctx: RequestTraceContext = { request: req, op: opName(req.opcode) };
      pr.trace = ctx;
      return requestChannel.tracePromise(this.admit, ctx, this, pr);
    }
    return this.admit(pr);
  }

  private pinnedNode(addr: string): PoolNode {
    const key = parseAddress(addr).key;
    const n = this.nodeMap.get(key) ?? this.findResolved(key);
    if (n === undefined) {
      throw new InvalidArgumentError(`node ${addr} is not in the pool (known: ${this.nodeKeys.join(', ')})`);
    }
    return n;
  }

  private findResolved(key: string): PoolNode | undefined {
    for (const n of this.nodeMap.values()) if (n.resolved === key) return n;
    return undefined;
  }

  private admit(pr: PoolRequest): Promise<Reply> {
    const p = new Promise<Reply>((resolve, reject) => {
      pr.resolve = resolve;
      pr.reject = reject;
    });
    this.active++;
    const signal = pr.signal;
    if (signal !== undefined) {
      if (signal.aborted) {
        pr.fail(
          new AbortError(`${opName(pr.req.opcode)} aborted before it was sent`, {
            phase: 'queued',
            cause: signal.reason,
          }),
        );
        return p;
      }
      signal.addEventListener('abort', pr, { once: true });
    }
    if (pr.timeout > 0) armDeadline(pr, pr.timeout);
    this.dispatch(pr, false);
    return p;
  }

  /** Send `pr` now if a connection has a free slot, else queue it. */
  private dispatch(pr: PoolRequest, retry: boolean): void {
    const conn = this.pick(pr, retry);
    if (conn !== undefined) {
      pr.phase = P_SENT;
      pr.sends++;
      conn.send(pr);
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
    if (this.globalQueued > 0 && !retry) return undefined; // first come, first served
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
      let load = c.pending;
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
    if (!retry && this.queued >= this.maxQueued) {
      pr.fail(
        new QueueFullError(
          `${opName(pr.req.opcode)} rejected: ${this.queued} requests are already waiting for a connection (maxQueued ${this.maxQueued})`,
        ),
      );
      return;
    }
    pr.phase = P_QUEUED;
    const q = target !== undefined ? target.pinned : this.queue;
    if (retry) q.unshift(pr);
    else q.push(pr);
    this.queued++;
    if (target !== undefined) target.pinnedCount++;
    else this.globalQueued++;
    this.needDrain = true;
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
    const parts = [...this.nodeMap.values()].map((n) => `${n.key}: ${n.lastError?.message ?? n.status}`);
    return new ConnectionError(`${op}: no node can take requests (${parts.join('; ')})`, undefined, {
      reason: 'no-node',
    });
  }

  /** @internal Why a queued request still waits (timeout messages). */
  _waitReason(pr: PoolRequest): string {
    const nodes = pr.pinned ? [pr.pinned] : [...this.nodeMap.values()];
    const up = nodes.filter((n) => n.status === 'up').length;
    if (up > 0) return `all ${this.readyConns.length} connections busy, ${this.queued} queued`;
    return nodes.map((n) => `${n.key} ${n.status}${n.lastError ? `: ${n.lastError.message}` : ''}`).join('; ');
  }

  /** Move queued requests onto `conn` while it has free slots. */
  private drainOnto(q: Fifo<PoolRequest>, conn: Connection, node: PoolNode | undefined): void {
    while (q.size > 0 && conn.available > 0) {
      const pr = q.shift() as PoolRequest;
      if (pr.phase !== P_QUEUED) continue; // settled while queued (already uncounted)
      this.queued--;
      if (node !== undefined) node.pinnedCount--;
      else this.globalQueued--;
      pr.phase = P_SENT;
      pr.sends++;
      conn.send(pr);
    }
  }

  /** @internal A request settled (any way). */
  _settled(pr: PoolRequest, was: number): void {
    if (was === P_QUEUED) {
      this.queued--;
      if (pr.pinned !== undefined) {
        pr.pinned.pinnedCount--;
        pr.pinned.pinned.died(isQueued);
      } else {
        this.globalQueued--;
        this.queue.died(isQueued);
      }
    } else if (was === P_BACKOFF) {
      this.backoff.delete(pr);
    }
    this.active--;
    if (this.closing && this.active === 0 && !this.destroyed) this.finishClose();
  }

  /** @internal A reply carried a transient result: true when a retry was scheduled. */
  _retryTransient(pr: PoolRequest, result: number, conn: Connection): boolean {
    if (this.destroyed || !mayRetryResult(result, pr.idempotent)) return false;
    if (pr.transients >= this.maxTransientRetries) return false;
    const delay = defaultBackoff(pr.transients);
    if (pr.deadline !== 0 && performance.now() + delay >= pr.deadline) return false;
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

  /** @internal The connection carrying `pr` failed. */
  _requestFailed(pr: PoolRequest, err: Error, conn: Connection, sent: boolean): void {
    pr.lastNode = conn.node;
    pr.lastResult = 0;
    if (this.destroyed) {
      pr.fail(err);
      return;
    }
    const op = opName(pr.req.opcode);
    let reason: 'failover' | 'unsent';
    if (!sent) {
      // Never reached the sheep: always safe to place elsewhere.
      reason = 'unsent';
    } else if (!pr.idempotent) {
      pr.fail(
        new OutcomeUnknownError(
          `${op} was sent to ${conn.node} but the connection failed before the reply (${err.message}); it may or may not have taken effect`,
          pr.req.opcode,
          conn.node,
          { cause: err },
        ),
      );
      return;
    } else if (pr.pinned !== undefined || pr.failovers >= this.maxRetries) {
      pr.fail(err);
      return;
    } else {
      pr.failovers++;
      reason = 'failover';
    }
    if (pr.pinned === undefined) pr.avoid = this.owner.get(conn);
    if (requestRetryChannel.hasSubscribers) {
      requestRetryChannel.publish({
        request: pr.req,
        op,
        reason,
        node: conn.node,
        attempt: pr.failovers,
        delay: 0,
        error: err,
      });
    }
    pr.phase = P_NEW;
    this.dispatch(pr, true);
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
    node.ready++;
    node.attempts = 0;
    node.lastError = undefined;
    node.resolved ??= c.remote;
    this.readyConns.push(c);
    if (node.status !== 'up') {
      node.status = 'up';
      if (nodeUpChannel.hasSubscribers) nodeUpChannel.publish({ node: node.key });
      this.emit('nodeUp', node.key);
    }
    const waiters = this.connectWaiters;
    if (waiters.length > 0 && !(this.discover && !this.discovered)) {
      this.connectWaiters = [];
      for (const w of waiters) w.resolve();
    }
    if (this.discover && !this.discovered && this.discovering === undefined && !this.closing) {
      void this.refreshNodes();
    }
    this.connCapacity(c);
  }

  private connCapacity(c: Connection): void {
    if (this.queued > 0) {
      const node = this.owner.get(c);
      if (node !== undefined && node.pinnedCount > 0) this.drainOnto(node.pinned, c, node);
      if (this.globalQueued > 0) this.drainOnto(this.queue, c, undefined);
    }
    if (this.needDrain && this.globalQueued === 0 && c.available > 0 && !this.closing) {
      this.needDrain = false;
      this.emit('drain');
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
    const i = node.conns.indexOf(c);
    if (i >= 0) node.conns.splice(i, 1);
    this._fill(node);
  }

  private connClosed(c: Connection, err: Error | undefined): void {
    const node = this.owner.get(c);
    this.owner.delete(c);
    this.dropReady(c, node);
    if (node === undefined) return;
    const i = node.conns.indexOf(c);
    if (i >= 0) node.conns.splice(i, 1);
    if (this.destroyed || node.removed) return;
    if (err === undefined) {
      this._fill(node); // a retired connection finished: keep the count
      return;
    }
    node.lastError = err;
    if (this.closing && this.active === 0) return;
    this.scheduleReconnect(node, err);
  }

  private scheduleReconnect(node: PoolNode, err: Error): void {
    if (node.timer !== undefined) {
      this.checkConnectWaiters();
      return;
    }
    let next: number | false | Error;
    const s = this.reconnectStrategy;
    if (s === false) next = false;
    else if (typeof s === 'number') next = s;
    else {
      try {
        next = s(node.attempts, err);
      } catch (e) {
        next = e instanceof Error ? e : new Error(String(e));
      }
    }
    node.attempts++;
    const down = node.ready === 0;
    if (typeof next === 'number' && next >= 0 && Number.isFinite(next)) {
      node.timer = setTimeout(reconnectFired, next, this, node);
      if (this.active === 0) node.timer.unref();
      if (down && node.status !== 'down') this.setDown(node, 'down', err, next);
      else if (down && nodeDownChannel.hasSubscribers) {
        nodeDownChannel.publish({ node: node.key, error: err, retries: node.attempts, delay: next });
      }
    } else if (down && node.conns.length === 0) {
      const why = next instanceof Error ? next : err;
      node.lastError = why;
      this.setDown(node, 'failed', why, false);
      this.failPinned(node);
      if (this.allFailed()) this.failGlobalQueue();
    }
    this.checkConnectWaiters();
  }

  private setDown(node: PoolNode, status: 'down' | 'failed', err: Error, delay: number | false): void {
    node.status = status;
    if (nodeDownChannel.hasSubscribers) {
      nodeDownChannel.publish({ node: node.key, error: err, retries: node.attempts, delay });
    }
    this.emit('nodeDown', node.key, err);
  }

  private failPinned(node: PoolNode): void {
    for (const pr of node.pinned.drain()) {
      if (pr.phase === P_QUEUED) pr.fail(this.noNodeError(pr));
    }
  }

  private failGlobalQueue(): void {
    for (const pr of this.queue.drain()) {
      if (pr.phase === P_QUEUED) pr.fail(this.noNodeError(pr));
    }
  }

  /** Reject connect() waiters once no node is up and none is still connecting. */
  private checkConnectWaiters(): void {
    if (this.connectWaiters.length === 0) return;
    for (const n of this.nodeMap.values()) if (n.ready > 0 || n.conns.length > 0) return;
    const waiters = this.connectWaiters;
    this.connectWaiters = [];
    const parts = [...this.nodeMap.values()].map((n) => `${n.key}: ${n.lastError?.message ?? n.status}`);
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
    if (this.readyConns.length > 0 && !(this.discover && !this.discovered)) return Promise.resolve();
    if (this.readyConns.length > 0 && this.discovering) return this.discovering;
    return new Promise((resolve, reject) => {
      this.connectWaiters.push({ resolve, reject });
    });
  }

  // ------------------------------------------------------------ discovery

  /** @internal A reply carried a newer epoch. */
  _epochSeen(epoch: number): void {
    const first = this.epoch === 0;
    this.epoch = epoch;
    this.emit('epoch', epoch);
    if (this.discover && !first && !this.closing) void this.refreshNodes();
  }

  /**
   * Ask the cluster for its node list (GET_NODE_LIST) and update the pool:
   * new nodes are added and connected, nodes that left are closed (seeds
   * are kept). Runs at most once at a time; called automatically with
   * `discover` on the first connection and on every epoch change.
   */
  refreshNodes(): Promise<void> {
    if (this.discovering !== undefined) {
      this.rediscover = true;
      return this.discovering;
    }
    const run = async (): Promise<void> => {
      do {
        this.rediscover = false;
        await this.discoverOnce();
      } while (this.rediscover && !this.closing);
    };
    const p = run().finally(() => {
      this.discovering = undefined;
      const waiters = this.connectWaiters;
      if (waiters.length > 0 && this.readyConns.length > 0) {
        this.connectWaiters = [];
        for (const w of waiters) w.resolve();
      }
    });
    this.discovering = p;
    return p;
  }

  private async discoverOnce(): Promise<void> {
    if (this.closing) return;
    let r: Reply;
    try {
      r = await this.request(plainRequest(Op.GET_NODE_LIST, { dataLength: SD_MAX_NODES * SD_NODE_SIZE }));
    } catch {
      return; // no node answered: the next connection or epoch change tries again
    }
    const h = r.header as NodeResponse;
    if (h.result !== Result.SUCCESS || h.kind !== 'node') return;
    const count = Math.min(h.nrNodes, Math.floor(r.body.length / SD_NODE_SIZE));
    let addrs: string[];
    try {
      addrs = decodeNodeList(r.body, count)
        .filter((n) => n.nid.addr !== '' && n.nid.port !== 0)
        .map((n) => formatAddress(n.nid.addr, n.nid.port));
    } catch {
      return;
    }
    this.discovered = true;
    this.applyNodeList(addrs, h.epoch);
  }

  private applyNodeList(addrs: readonly string[], epoch: number): void {
    if (this.closing || addrs.length === 0) return;
    const keys = new Set<string>();
    for (const a of addrs) keys.add(parseAddress(a).key);
    const added: string[] = [];
    const removed: string[] = [];
    for (const k of keys) {
      if (this.nodeMap.has(k) || this.findResolved(k) !== undefined) continue;
      const a = parseAddress(k);
      this.nodeMap.set(k, new PoolNode(k, a.host, a.port, false));
      added.push(k);
    }
    for (const n of [...this.nodeMap.values()]) {
      if (n.seed || keys.has(n.key) || (n.resolved !== undefined && keys.has(n.resolved))) continue;
      this.removeNode(n);
      removed.push(n.key);
    }
    if (added.length === 0 && removed.length === 0) return;
    this.nodeKeys = Object.freeze([...this.nodeMap.keys()]);
    if (this.started) for (const k of added) this._fill(this.nodeMap.get(k) as PoolNode);
    if (nodesChangedChannel.hasSubscribers) {
      nodesChangedChannel.publish({ epoch, nodes: this.nodeKeys, added, removed });
    }
    this.emit('nodes', this.nodeKeys);
  }

  private removeNode(n: PoolNode): void {
    n.removed = true;
    this.nodeMap.delete(n.key);
    if (n.timer !== undefined) clearTimeout(n.timer);
    n.timer = undefined;
    for (const c of n.conns) {
      this.dropReady(c, n);
      void c.close();
    }
    n.conns = [];
    for (const pr of n.pinned.drain()) {
      if (pr.phase === P_QUEUED) pr.fail(this.noNodeError(pr));
    }
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
    for (const pr of this.queue.drain()) pr.fail(e);
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
    for (const x of w) x.reject(e);
  }
}
