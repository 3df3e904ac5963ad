/**
 * The contract between the request layers: what the pool offers to the
 * client above it. Implemented by `SheepdogPool` (lib/pool.ts).
 */
import type { Request, Response } from '../../protocol/header.js';

export interface RequestOptions {
  /** Milliseconds until the request fails with TimeoutError (default: the pool's `requestTimeout`). */
  timeout?: number;
  signal?: AbortSignal;
  /**
   * Whether the request may be sent again after its connection died. Default:
   * decided by opcode (reads, lookups, object writes at fixed offsets are
   * safe; NEW_VDI, DEL_VDI, attr creation with EXCL, snapshot steps are not).
   */
  idempotent?: boolean;
  /** Send to this node (`host:port`) only: no failover (e.g. STAT_SHEEP of one node). */
  node?: string;
  /**
   * Receive the reply body into this buffer (from its byte 0) instead of a
   * new one. The reply's `body` is then a view of it.
   */
  readInto?: Uint8Array;
  /**
   * Data-path semantics: once the request is on the wire, neither `signal`
   * nor the deadline settles it early. It settles when the reply arrives,
   * or when its connection is gone (a deadline passed with the request sent
   * destroys the connection, and the pool replays or fails it as after any
   * connection loss). The caller can then hold a per-object gate for exactly
   * as long as the sheep may still act on the request. Requests not yet sent
   * are still cancelled at once.
   *
   * Aborted on the wire, the request rejects with AbortError (`phase:
   * 'sent'`) once its reply came (whatever its result; it is not retried)
   * or its connection is gone (it is not sent again). A replay after a
   * deadline gets a deadline of its own; replays are bounded by the pool's
   * `maxRetries`.
   */
  untilReply?: boolean;
}

export interface Reply {
  /** The decoded response header; `result` is not checked here. */
  header: Response;
  /** The reply body (`data_length` bytes; empty when none). */
  body: Uint8Array;
  /** `host:port` of the sheep that answered. */
  node: string;
}

export interface Transport {
  /**
   * Send one request (the header's `id` is assigned by the connection;
   * `dataLength` must match `body` for writes, or say how much to read).
   * Resolves with the reply whatever its `result`; rejects with a typed error
   * for transport failures (ConnectionError, TimeoutError, AbortError,
   * QueueFullError, PoolClosedError, OutcomeUnknownError, ProtocolError).
   */
  request(req: Request, body?: Uint8Array, opts?: RequestOptions): Promise<Reply>;
  /** Gateways currently known (`host:port`). */
  readonly nodes: readonly string[];
  close(): Promise<void>;
  destroy(err?: Error): void;
}
