/**
 * Per-node state of the pool: a node's connections, its health (`idle`,
 * `connecting`, `up`, `down`, `failed`), its failure count and last error,
 * and the reconnect timer armed by `reconnectStrategy(retries, cause)` after
 * a connection fails. A node is up while it has a ready connection, down
 * while it has none and a reconnect is pending, failed once the strategy
 * gives it up. The pool reacts to the transitions (events, failing queued
 * requests).
 */
import { nodeDownChannel, nodeUpChannel } from '../util/diagnostics.js';
import type { Connection } from './connection.js';
import type { ReconnectStrategy } from './policy.js';
import type { SheepdogPool } from './pool.js';
import { Fifo } from './queue.js';
import type { PoolRequest } from './request.js';

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

export class PoolNode {
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
  /** Had a ready connection at least once in this pool (a node that never did and refuses is unreachable). */
  everUp = false;
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

  /** One of its connections is ready: the failure count starts again. */
  connReady(c: Connection): void {
    this.ready++;
    this.everUp = true;
    this.attempts = 0;
    this.lastError = undefined;
    this.resolved ??= c.remote;
  }

  /** Mark the node up (diagnostics channel); true when it was not up (the pool then emits 'nodeUp'). */
  markUp(): boolean {
    if (this.status === 'up') return false;
    this.status = 'up';
    if (nodeUpChannel.hasSubscribers) nodeUpChannel.publish({ node: this.key });
    return true;
  }

  /** Forget `c` (retired or closed). */
  dropConn(c: Connection): void {
    const i = this.conns.indexOf(c);
    if (i >= 0) this.conns.splice(i, 1);
  }

  /**
   * A connection of the node failed with `err`: unless a reconnect is
   * already pending, ask the strategy for the delay (counting the attempt)
   * and arm the reconnect timer (`unref`: while the pool holds nothing
   * pending; the pool refs it again when a request arrives).
   * Returns the transition the pool must report with 'nodeDown': 'down' (no
   * ready connection left, a reconnect pending), 'failed' (the strategy gave
   * the node up and nothing is still connecting; `lastError` is why), or
   * undefined.
   */
  reconnectLater(
    strategy: ReconnectStrategy | number | false,
    err: Error,
    pool: SheepdogPool,
    unref: boolean,
  ): 'down' | 'failed' | undefined {
    if (this.timer !== undefined) return undefined;
    let next: number | false | Error;
    if (strategy === false) next = false;
    else if (typeof strategy === 'number') next = strategy;
    else {
      try {
        next = strategy(this.attempts, err);
      } catch (e) {
        next = e instanceof Error ? e : new Error(String(e));
      }
    }
    this.attempts++;
    const down = this.ready === 0;
    if (typeof next === 'number' && next >= 0 && Number.isFinite(next)) {
      this.timer = setTimeout(reconnectFired, next, pool, this);
      if (unref) this.timer.unref();
      if (down && this.status !== 'down') {
        this.markDown('down', err, next);
        return 'down';
      }
      if (down && nodeDownChannel.hasSubscribers) {
        nodeDownChannel.publish({ node: this.key, error: err, retries: this.attempts, delay: next });
      }
      return undefined;
    }
    if (down && this.conns.length === 0) {
      const why = next instanceof Error ? next : err;
      this.lastError = why;
      this.markDown('failed', why, false);
      return 'failed';
    }
    return undefined;
  }

  private markDown(status: 'down' | 'failed', err: Error, delay: number | false): void {
    this.status = status;
    if (nodeDownChannel.hasSubscribers) {
      nodeDownChannel.publish({ node: this.key, error: err, retries: this.attempts, delay });
    }
  }

  /**
   * Never up, nothing connecting, and its last connection attempt failed:
   * requests waiting for it fail at once instead of waiting out their deadline.
   */
  get unreachable(): boolean {
    return !this.everUp && this.ready === 0 && this.conns.length === 0 && this.lastError !== undefined;
  }

  /** `key: why` (the last error, else the state), for error messages. */
  describe(): string {
    return `${this.key}: ${this.lastError?.message ?? this.status}`;
  }

  get stats(): NodeStats {
    let inFlight = 0;
    let orphans = 0;
    for (const c of this.conns) {
      inFlight += c.inFlight;
      orphans += c.orphans;
    }
    return {
      node: this.key,
      state: this.status,
      connections: this.conns.length,
      ready: this.ready,
      inFlight,
      orphans,
      queued: this.pinnedCount,
      retries: this.attempts,
      lastError: this.lastError?.message,
      seed: this.seed,
    };
  }
}

function reconnectFired(pool: SheepdogPool, node: PoolNode): void {
  node.timer = undefined;
  pool._fill(node);
}

/** The node of `nodes` that answered from `key` (`address:port`), if any. */
export function findResolved(nodes: ReadonlyMap<string, PoolNode>, key: string): PoolNode | undefined {
  for (const n of nodes.values()) if (n.resolved === key) return n;
  return undefined;
}
