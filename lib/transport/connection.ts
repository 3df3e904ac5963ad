/**
 * One TCP connection to a sheep, multiplexed by request id (Cassandra-driver
 * style): many requests in flight, replies matched by id in any order.
 *
 * - Ids are a per-connection u32 counter that wraps and skips ids still in
 *   use. A request that times out or is aborted after it was written becomes
 *   an *orphan*: its caller is rejected at once, but its id stays reserved
 *   until the late reply arrives (then the reply is dropped). Past
 *   `maxOrphans` orphans the connection is retired.
 * - Writes are batched once per tick (cork/uncork); headers of one batch are
 *   copied into one slab, and a payload is written as its own buffer right
 *   after its header (no concatenation). `write() === false` stops the batch
 *   until 'drain'. TCP_NODELAY is on unless `noDelay: false`.
 * - A payload is not copied, so an op with one is called back (reply,
 *   failure) only once the socket's write callback for it fired or the
 *   socket was destroyed (`flushingOn`): a caller reusing its buffer after
 *   the request settled never changes bytes still to be sent.
 * - The socket reads into one buffer per connection (`onread`: no new chunk
 *   and no stream machinery per read), decoded by the codec's FrameDecoder in
 *   `transient` mode; a reply body is received straight into a caller's
 *   buffer (`readInto`) or into a buffer of its own. While a long body is
 *   arriving, the socket reads straight into it (the onread buffer is chosen
 *   per read), skipping the copy out of the read buffer; an op whose
 *   `readInto` buffer holds the socket's next read settles only after it.
 * - A reply with an unknown id, a header that does not match its request or
 *   an oversize body destroys the socket; every request in flight fails with
 *   SheepProtocolError naming the node and the reason.
 * - At most `maxInFlight` ids are reserved at once (orphans included); more
 *   requests wait in the connection until a reply frees a slot.
 *
 * The hot path allocates no closure and no promise per request: a request is
 * an object (ConnectionOp) that the connection calls back.
 */
import net from 'node:net';
import { w32 } from '../../protocol/bytes.js';
import { Flag, HEADER_SIZE, opName } from '../../protocol/constants.js';
import { DEFAULT_MAX_DATA_LENGTH, FrameDecoder } from '../../protocol/decoder.js';
import { ProtocolError } from '../../protocol/errors.js';
import {
  type Request,
  decodeResponse,
  encodeRequest,
  peekDataLength,
  peekId,
  peekOpcode,
} from '../../protocol/header.js';
import { formatAddress } from '../util/address.js';
import {
  connectChannel,
  connectErrorChannel,
  connectionClosedChannel,
  connectionRetiredChannel,
  lateReplyChannel,
  protocolErrorChannel,
} from '../util/diagnostics.js';
import {
  AbortError,
  ConnectionError,
  type ConnectionErrorReason,
  InvalidArgumentError,
  SheepProtocolError,
  TimeoutError,
} from '../errors.js';
import { type Deadlined, armDeadline, disarmDeadline } from '../util/timers.js';
import type { Reply } from './types.js';

/** Where an op is on its connection. */
export const OpState = {
  /** Not on any connection. */
  IDLE: 0,
  /** Waiting for a free slot (maxInFlight reached). */
  WAITING: 1,
  /** Has an id; waiting for the next write batch. */
  QUEUED: 2,
  /** Written; waiting for its reply. */
  SENT: 3,
  /** Timed out / aborted after it was written: its id stays reserved until the reply. */
  ORPHAN: 4,
  /** Answered, failed or cancelled. */
  DONE: 5,
} as const;
export type OpStateValue = (typeof OpState)[keyof typeof OpState];

/**
 * A request as the connection sees it. Subclasses (the pool's requests,
 * `Connection.request()`) get their reply or failure through the two
 * callbacks, which the connection calls exactly once per send.
 */
export abstract class ConnectionOp {
  /** The encoded 48-byte request header; the connection writes its id into a copy. */
  header: Uint8Array;
  /** Request payload (SD_FLAG_CMD_WRITE), written after the header as its own buffer. */
  body: Uint8Array | undefined;
  /** Receive the reply body here, from byte 0. */
  readInto: Uint8Array | undefined;
  /** Id on the current connection (valid from QUEUED). */
  opId = 0;
  /** Connection the op is on (from WAITING to its reply). */
  conn: Connection | undefined = undefined;
  opState: OpStateValue = OpState.IDLE;
  /**
   * The connection whose socket holds this op's payload: handed to
   * `socket.write()`, whose callback has not fired yet. Until then the
   * socket may still read the caller's buffer (payloads are not copied), so
   * the op must not settle: the connection calls it back (`onReply`,
   * `onError`, `onBodyReleased`) only once this is cleared.
   */
  flushingOn: Connection | undefined = undefined;
  /** A reply that arrived while the payload was still in the socket, delivered once it is released. */
  heldHeader: Uint8Array | undefined = undefined;
  heldBody: Uint8Array | undefined = undefined;

  constructor(header: Uint8Array, body: Uint8Array | undefined, readInto: Uint8Array | undefined) {
    this.header = header;
    this.body = body;
    this.readInto = readInto;
  }

  /**
   * The reply arrived. `header` is valid only during the call (it may be a
   * view of the connection's read buffer); `body` is the readInto target or a
   * buffer of its own.
   */
  abstract onReply(header: Uint8Array, body: Uint8Array, conn: Connection): void;
  /** The connection failed before the reply. `sent`: the request had been written. */
  abstract onError(err: Error, conn: Connection, sent: boolean): void;
  /**
   * The payload left the socket (its write callback fired, or the socket was
   * destroyed: Node never reads it again) and no held reply is delivered
   * with it. An op that gave up while `flushingOn` was set settles here.
   */
  onBodyReleased(_conn: Connection): void {}
}

/**
 * Callbacks of the connection's owner (the pool), called synchronously in
 * the middle of the connection's bookkeeping. One that throws does not break
 * the connection: the error is rethrown on the next tick (an uncaught
 * exception).
 */
export interface ConnectionHooks {
  /** The TCP connection is established. */
  onReady?(conn: Connection): void;
  /** The connection closed (`error` undefined for a graceful close); called before its requests are failed. */
  onClose?(conn: Connection, error: Error | undefined): void;
  /** The connection stopped taking requests (orphan threshold); it closes once its requests finish. */
  onRetire?(conn: Connection): void;
  /** A slot was freed (reply, cancel) on a ready connection. */
  onCapacity?(conn: Connection): void;
}

export interface ConnectionOptions {
  host: string;
  port: number;
  /** Name used in errors and diagnostics (default `host:port`). */
  node?: string;
  /** Milliseconds allowed for the TCP connect (default 10000; 0 = no limit). */
  connectTimeout?: number;
  /** Request ids reserved at once, orphans included (default 128). */
  maxInFlight?: number;
  /** Orphaned requests (timed out after send) tolerated before the connection is retired (default 64). */
  maxOrphans?: number;
  /** Largest reply body accepted (default 64 MiB). */
  maxDataLength?: number;
  /** TCP_NODELAY (default true). */
  noDelay?: boolean;
  /** TCP keep-alive (default true, first probe after 60 s). */
  keepAlive?: boolean;
  keepAliveInitialDelay?: number;
  hooks?: ConnectionHooks;
  /** @internal First request id (tests of the u32 wrap-around). */
  initialId?: number;
}

export type ConnectionState = 'connecting' | 'ready' | 'retiring' | 'closing' | 'closed';

/** Options of `Connection.request()`. */
export interface ConnectionRequestOptions {
  /** Milliseconds until TimeoutError (default: none). */
  timeout?: number;
  signal?: AbortSignal;
  readInto?: Uint8Array;
}

/** Counters of one connection. */
export interface ConnectionStats {
  node: string;
  id: number;
  state: ConnectionState;
  /** Reserved ids (requests queued for writing or awaiting replies, orphans included). */
  inFlight: number;
  orphans: number;
  /** Requests waiting for a free slot. */
  waiting: number;
  /** Requests with an id that are not written yet (waiting for the next batch or for 'drain'). */
  unsent: number;
  /** Bytes handed to the socket and not yet taken by the kernel. */
  writeBuffered: number;
  /** Requests written / replies received / late replies dropped, since the start. */
  sent: number;
  replies: number;
  lateReplies: number;
  /** Socket reads that went straight into a reply body instead of the read buffer. */
  directReads: number;
}

const SLAB_MIN = 16 * HEADER_SIZE * 16; // 12 KiB: 256 headers
const SLAB_KEEP_MAX = 1024 * 1024;
/** Bytes the socket reads at once into the connection's read buffer. */
const READ_BUFFER_SIZE = 256 * 1024;
/** A body with at least this much still to come is read straight into its own buffer. */
const DIRECT_READ_MIN = 64 * 1024;
/** Reply bodies up to this size are slices of a shared slab (as Node pools small Buffers); longer ones get memory of their own. */
const SMALL_BODY_MAX = 8 * 1024;
const BODY_SLAB_SIZE = 128 * 1024;

let connectionSerial = 0;

function checkInt(v: number, name: string, min: number): number {
  if (!Number.isInteger(v) || v < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}, got ${v}`);
  return v;
}

/**
 * Validate `req` against `body` and encode its header. Throws
 * InvalidArgumentError for a payload without SD_FLAG_CMD_WRITE (sheep would
 * not read it and the stream would desynchronise), a payload whose length is
 * not `dataLength`, or a write without its payload.
 */
export function encodeRequestHeader(req: Request, body: Uint8Array | undefined): Uint8Array {
  const write = (req.flags & Flag.CMD_WRITE) !== 0;
  const blen = body === undefined ? 0 : body.length;
  if (blen > 0 && !write) {
    throw new InvalidArgumentError(`${opName(req.opcode)}: a body needs SD_FLAG_CMD_WRITE (sheep would not read it)`);
  }
  if (write && blen !== req.dataLength) {
    throw new InvalidArgumentError(
      `${opName(req.opcode)}: dataLength is ${req.dataLength} but the body has ${blen} bytes (SD_FLAG_CMD_WRITE sends exactly dataLength)`,
    );
  }
  const h = Buffer.allocUnsafe(HEADER_SIZE);
  encodeRequest(req, h, 0);
  return h;
}

function rethrow(e: unknown): never {
  throw e;
}

/**
 * A hook threw: the connection finishes what it was doing (a reply, a close
 * failing its requests), and the error surfaces on the next tick as an
 * uncaught exception, as from an EventEmitter listener.
 */
function hookThrew(e: unknown): void {
  process.nextTick(rethrow, e);
}

function flushTick(c: Connection): void {
  c.flushNow();
}

export class Connection {
  readonly node: string;
  /** Serial number of this connection (diagnostics). */
  readonly id: number;
  readonly host: string;
  readonly port: number;
  readonly maxInFlight: number;
  readonly maxOrphans: number;
  private _state: ConnectionState = 'connecting';
  private readonly socket: net.Socket;
  private readonly decoder: FrameDecoder;
  private readonly hooks: ConnectionHooks;
  private readonly noDelay: boolean;
  private readonly inflight = new Map<number, ConnectionOp>();
  private nextId: number;
  private orphanCount = 0;
  private waiting: ConnectionOp[] = [];
  private waitHead = 0;
  private waitLive = 0;
  private out: ConnectionOp[] = [];
  private outHead = 0;
  /** Ops whose payload was handed to the socket, in write order (write callbacks fire in that order). */
  private flushQ: (ConnectionOp | undefined)[] = [];
  private flushHead = 0;
  private flushScheduled = false;
  private writable = true;
  private slab: Buffer | undefined;
  /** The op whose body the decoder is writing into its readInto right now. */
  private receiving: ConnectionOp | undefined;
  private receivingLen = 0;
  /** Bytes of an orphan's frame still to discard by hand (see cancel()). */
  private skip = 0;
  /** The socket's read buffer (see nextReadBuffer). */
  private readonly readBuf = Buffer.allocUnsafeSlow(READ_BUFFER_SIZE);
  private skipOp: ConnectionOp | undefined;
  private socketError: Error | undefined;
  private protocolFailure: Error | undefined;
  private destroyError: Error | undefined;
  private connectTimer: NodeJS.Timeout | undefined;
  private ending = false;
  private readyWaiters: { resolve: () => void; reject: (e: Error) => void }[] | undefined;
  private closeWaiters: (() => void)[] | undefined;
  private sentCount = 0;
  private replyCount = 0;
  /** Reads from the socket since the start (liveness: a connection that reads nothing is silent). */
  received = 0;
  private directReads = 0;
  /** The slab small reply bodies are cut from (never reused: each slice stays its body's alone). */
  private bodySlab: Buffer | undefined;
  private bodySlabOff = 0;
  /** The op whose readInto buffer the socket's next read goes into (see nextReadBuffer). */
  private windowOp: ConnectionOp | undefined;
  /** The first bytes the peer sent, kept until its first valid reply (to tell a non-sheep peer). */
  private sniff: Uint8Array | undefined;
  private sniffLen = 0;
  private lateCount = 0;
  /** The error the connection closed with (undefined while open or after a graceful close). */
  closeError: Error | undefined;

  constructor(opts: ConnectionOptions) {
    this.host = opts.host;
    this.port = opts.port;
    this.node = opts.node ?? formatAddress(opts.host, opts.port);
    this.id = ++connectionSerial;
    this.maxInFlight = checkInt(opts.maxInFlight ?? 128, 'maxInFlight', 1);
    this.maxOrphans = checkInt(opts.maxOrphans ?? 64, 'maxOrphans', 0);
    const initial = opts.initialId ?? 1;
    if (!Number.isInteger(initial) || initial < 0 || initial > 0xffffffff) {
      throw new InvalidArgumentError(`initialId must be a u32, got ${initial}`);
    }
    this.nextId = initial;
    this.hooks = opts.hooks ?? {};
    this.decoder = new FrameDecoder({
      direction: 'response',
      maxDataLength: opts.maxDataLength ?? DEFAULT_MAX_DATA_LENGTH,
      bodyTarget: this.bodyTarget,
      allocBody: this.allocBody,
      // The socket reads into one buffer of ours, reused read after read.
      transient: true,
    });
    const connectTimeout = opts.connectTimeout ?? 10_000;
    const keepAlive = opts.keepAlive ?? true;
    this.noDelay = opts.noDelay ?? true;
    this.socket = net.connect({
      host: opts.host,
      port: opts.port,
      noDelay: this.noDelay,
      keepAlive,
      keepAliveInitialDelay: opts.keepAliveInitialDelay ?? 60_000,
      // Read into one buffer per connection instead of a new chunk per read
      // (and no stream machinery per chunk): replies are decoded straight
      // out of it, bodies land in their readInto target or in a copy.
      // The buffer is chosen per read: the rest of a long body is read
      // straight into that body (see nextReadBuffer).
      onread: { buffer: this.nextReadBuffer, callback: this.onRead },
    });
    this.socket.on('connect', this.onConnect);
    this.socket.on('drain', this.onDrain);
    this.socket.on('error', this.onSocketError);
    this.socket.on('close', this.onSocketClose);
    if (connectTimeout > 0) {
      this.connectTimer = setTimeout(this.onConnectTimeout, connectTimeout);
      this.connectTimer.unref();
    }
  }

  /** Connect, resolving once the connection is ready (rejects with ConnectionError). */
  static async connect(opts: ConnectionOptions): Promise<Connection> {
    const c = new Connection(opts);
    await c.ready();
    return c;
  }

  get state(): ConnectionState {
    return this._state;
  }
  /** Reserved ids: requests queued for writing, awaiting replies, and orphans. */
  get inFlight(): number {
    return this.inflight.size;
  }
  /** Requests written whose caller gave up, ids still reserved. */
  get orphans(): number {
    return this.orphanCount;
  }
  /** Requests the owner is still waiting for (in flight minus orphans, plus waiting). */
  get pending(): number {
    return this.inflight.size - this.orphanCount + this.waitLive;
  }
  /** Requests that could be sent now without waiting (0 unless ready). */
  get available(): number {
    if (this._state !== 'ready') return 0;
    return this.maxInFlight - this.inflight.size - this.waitLive;
  }
  /** Local port once connected (diagnostics, tests). */
  get localPort(): number | undefined {
    return this.socket.localPort;
  }
  /** `address:port` of the peer once connected. */
  get remote(): string | undefined {
    const a = this.socket.remoteAddress;
    const p = this.socket.remotePort;
    return a === undefined || p === undefined ? undefined : formatAddress(a, p);
  }

  get stats(): ConnectionStats {
    return {
      node: this.node,
      id: this.id,
      state: this._state,
      inFlight: this.inflight.size,
      orphans: this.orphanCount,
      waiting: this.waitLive,
      unsent: this.unsentCount(),
      writeBuffered: this.socket.writableLength,
      sent: this.sentCount,
      replies: this.replyCount,
      lateReplies: this.lateCount,
      directReads: this.directReads,
    };
  }

  private unsentCount(): number {
    let n = 0;
    for (let i = this.outHead; i < this.out.length; i++) {
      const op = this.out[i] as ConnectionOp;
      if (op.opState === OpState.QUEUED && op.conn === this) n++;
    }
    return n;
  }

  /**
   * Let the socket keep the process alive (the default), or not: an owner
   * with nothing pending unrefs its idle connections so that a process with
   * an open pool can exit.
   */
  ref(): void {
    this.socket.ref();
  }
  unref(): void {
    this.socket.unref();
  }

  /** Resolves once connected; rejects if the connection fails first. */
  ready(): Promise<void> {
    if (this._state !== 'connecting') {
      if (this._state === 'closed') return Promise.reject(this.closeError ?? this.closedError(false));
      return Promise.resolve();
    }
    this.readyWaiters ??= [];
    const w = this.readyWaiters;
    return new Promise((resolve, reject) => {
      w.push({ resolve, reject });
    });
  }

  /** Resolves once the socket is closed. */
  closed(): Promise<void> {
    if (this._state === 'closed') return Promise.resolve();
    this.closeWaiters ??= [];
    const w = this.closeWaiters;
    return new Promise((resolve) => {
      w.push(resolve);
    });
  }

  // ------------------------------------------------------------ sending

  /**
   * Send `op`. Never throws: when the connection cannot take it, `op.onError`
   * is called (synchronously) with an unsent ConnectionError.
   */
  send(op: ConnectionOp): void {
    const s = this._state;
    if (s !== 'ready' && s !== 'connecting') {
      op.onError(
        new ConnectionError(`connection ${this.id} to ${this.node} is ${s}`, this.node, {
          reason: s === 'closed' ? 'closed' : 'destroyed',
          sent: false,
        }),
        this,
        false,
      );
      return;
    }
    op.conn = this;
    if (this.inflight.size >= this.maxInFlight || this.waitLive > 0) {
      op.opState = OpState.WAITING;
      this.waiting.push(op);
      this.waitLive++;
      return;
    }
    this.assign(op);
  }

  private assign(op: ConnectionOp): void {
    const map = this.inflight;
    let id = this.nextId;
    while (map.has(id)) id = (id + 1) >>> 0;
    this.nextId = (id + 1) >>> 0;
    op.opId = id;
    op.opState = OpState.QUEUED;
    map.set(id, op);
    this.out.push(op);
    if (!this.flushScheduled && this.writable && this._state !== 'connecting') {
      this.flushScheduled = true;
      process.nextTick(flushTick, this);
    }
  }

  /** @internal Write every queued request (the per-tick batch). */
  flushNow(): void {
    this.flushScheduled = false;
    if (!this.writable || this._state === 'connecting' || this._state === 'closed') return;
    const out = this.out;
    const n = out.length;
    let i = this.outHead;
    if (i >= n) return;
    const need = (n - i) * HEADER_SIZE;
    let slab = this.slab;
    if (slab === undefined || slab.length < need) slab = Buffer.allocUnsafeSlow(Math.max(need, SLAB_MIN));
    this.slab = undefined;
    const sock = this.socket;
    let off = 0;
    let runStart = 0;
    let ok = true;
    // Corked only when the batch has more than one write (a payload): a
    // batch of headers alone is one plain write, which Node hands to the
    // kernel at once, without its buffering of corked chunks.
    let corked = false;
    while (i < n) {
      const op = out[i++] as ConnectionOp;
      if (op.opState !== OpState.QUEUED || op.conn !== this) continue; // cancelled while queued
      slab.set(op.header, off);
      w32(slab, off + 8, op.opId);
      off += HEADER_SIZE;
      op.opState = OpState.SENT;
      this.sentCount++;
      const body = op.body;
      if (body !== undefined && body.length > 0) {
        if (!corked) {
          sock.cork();
          corked = true;
        }
        ok = sock.write(slab.subarray(runStart, off));
        op.flushingOn = this;
        this.flushQ.push(op);
        ok = sock.write(body, this.onPayloadWritten) && ok;
        runStart = off;
        if (!ok) break;
      }
    }
    if (off > runStart) ok = sock.write(slab.subarray(runStart, off)) && ok;
    if (corked) sock.uncork();
    if (i >= n) {
      out.length = 0;
      this.outHead = 0;
    } else {
      this.outHead = i;
      if (i > 1024 && i * 2 > n) {
        this.out = out.slice(i);
        this.outHead = 0;
      }
    }
    if (!ok) this.writable = false;
    // Everything reached the kernel: nothing references the slab any more.
    if (sock.writableLength === 0 && slab.length <= SLAB_KEEP_MAX) this.slab = slab;
  }

  /**
   * The write callback of the oldest payload in the socket. Callbacks fire in
   * write order (one writev per cork batch calls each chunk's in turn); an
   * error means the socket is destroyed, which releases every payload.
   */
  private readonly onPayloadWritten = (err?: Error | null): void => {
    if (this.flushHead >= this.flushQ.length) return; // released when the socket was destroyed
    if (err || this.socket.destroyed) {
      this.releaseAll();
      return;
    }
    const q = this.flushQ;
    const op = q[this.flushHead] as ConnectionOp;
    q[this.flushHead++] = undefined;
    if (this.flushHead === q.length) {
      q.length = 0;
      this.flushHead = 0;
    } else if (this.flushHead > 1024 && this.flushHead * 2 > q.length) {
      this.flushQ = q.slice(this.flushHead);
      this.flushHead = 0;
    }
    this.release(op);
  };

  /** `op`'s payload left the socket: deliver its held reply, or tell it. */
  private release(op: ConnectionOp): void {
    if (op.flushingOn !== this) return;
    op.flushingOn = undefined;
    const h = op.heldHeader;
    if (h !== undefined) {
      const b = op.heldBody as Uint8Array;
      op.heldHeader = undefined;
      op.heldBody = undefined;
      op.onReply(h, b, this);
    } else op.onBodyReleased(this);
  }

  /** The socket is destroyed: Node never reads a payload it still held. */
  private releaseAll(): void {
    const q = this.flushQ;
    const head = this.flushHead;
    if (head >= q.length) return;
    this.flushQ = [];
    this.flushHead = 0;
    for (let i = head; i < q.length; i++) this.release(q[i] as ConnectionOp);
  }

  /**
   * Take `op` back (its caller timed out or aborted). Not yet written: it is
   * dropped and its id freed. Written: it becomes an orphan (the id stays
   * reserved until the late reply, which is then dropped) and true is
   * returned. Does not call the op back, except `onBodyReleased` later if
   * its payload is still in the socket (`op.flushingOn`).
   */
  cancel(op: ConnectionOp): boolean {
    if (op.conn !== this) return false;
    switch (op.opState) {
      case OpState.WAITING:
        op.opState = OpState.DONE;
        op.conn = undefined;
        this.waitLive--;
        this.maybeEnd();
        return false;
      case OpState.QUEUED:
        this.inflight.delete(op.opId);
        op.opState = OpState.DONE;
        op.conn = undefined;
        this.slotFreed();
        return false;
      case OpState.SENT: {
        op.opState = OpState.ORPHAN;
        this.orphanCount++;
        if (this.receiving === op) {
          // Its body is arriving into the caller's buffer, which the caller
          // may reuse from now on: discard the rest of the frame by hand.
          const remaining = HEADER_SIZE + this.receivingLen - this.decoder.buffered;
          this.decoder.reset();
          this.receiving = undefined;
          this.skipOp = op;
          this.skip = remaining;
          if (remaining <= 0) this.endSkip();
        }
        if (this._state === 'ready' && this.orphanCount > this.maxOrphans) this.retire();
        else this.maybeEnd();
        return true;
      }
      default:
        return false;
    }
  }

  /**
   * Take back a written `op` to send it elsewhere (the pool's liveness
   * failover): a stand-in orphan keeps its id reserved, so its late reply is
   * dropped (never delivered to `op`, never written into its `readInto`),
   * and `op` is free to be sent on another connection. False (nothing done)
   * unless `op` is written here, unanswered, and its payload left the socket.
   */
  abandon(op: ConnectionOp): boolean {
    if (op.conn !== this || op.opState !== OpState.SENT || op.flushingOn !== undefined) return false;
    const stand = new StandInOp(op.header);
    stand.opId = op.opId;
    stand.conn = this;
    stand.opState = OpState.SENT;
    this.inflight.set(op.opId, stand);
    if (this.receiving === op) this.receiving = stand;
    op.conn = undefined;
    op.opState = OpState.IDLE;
    this.cancel(stand);
    return true;
  }

  // ------------------------------------------------------------ receiving

  private readonly bodyTarget = (header: Uint8Array, length: number): Uint8Array | undefined => {
    const op = this.check(header);
    const asked = peekDataLength(op.header);
    if (length > asked) {
      throw new SheepProtocolError(
        `${this.node} sent a ${length}-byte reply body to ${opName(peekOpcode(op.header))} (id ${op.opId}), which asked for at most ${asked}`,
        this.node,
        'oversize',
      );
    }
    if (op.opState !== OpState.SENT) return undefined;
    const into = op.readInto;
    if (into === undefined || into.length < length) return undefined;
    this.receiving = op;
    this.receivingLen = length;
    return into;
  };

  /** The op a reply header belongs to, or a protocol error. */
  private check(header: Uint8Array): ConnectionOp {
    const id = peekId(header);
    const op = this.inflight.get(id);
    if (op === undefined) {
      throw new SheepProtocolError(
        `${this.node} sent a reply with id ${id} (opcode ${opName(peekOpcode(header))}) that matches no request in flight on connection ${this.id}`,
        this.node,
        'unknown-id',
      );
    }
    if (op.opState === OpState.QUEUED) {
      throw new SheepProtocolError(
        `${this.node} answered request id ${id} before it was sent`,
        this.node,
        'unknown-id',
      );
    }
    const want = peekOpcode(op.header);
    const got = peekOpcode(header);
    if (got !== want) {
      throw new SheepProtocolError(
        `${this.node} answered request id ${id} (${opName(want)}) with a ${opName(got)} header`,
        this.node,
        'bad-header',
      );
    }
    return op;
  }

  private readonly onFrame = (header: Uint8Array, body: Uint8Array): void => {
    if (this._state === 'closed') return;
    const op = this.check(header);
    this.receiving = undefined;
    this.inflight.delete(op.opId);
    this.replyCount++;
    if (op.opState === OpState.ORPHAN) {
      this.orphanCount--;
      this.late(op);
    } else {
      op.opState = OpState.DONE;
      op.conn = undefined;
      if (op.flushingOn !== undefined) {
        // Answered before the socket's write callback for its payload fired:
        // hold the reply until then (the header is a view of the read buffer).
        op.heldHeader = new Uint8Array(header);
        op.heldBody = body;
      } else op.onReply(header, body, this);
    }
    this.slotFreed();
  };

  private late(op: ConnectionOp): void {
    op.opState = OpState.DONE;
    op.conn = undefined;
    this.lateCount++;
    if (lateReplyChannel.hasSubscribers) {
      lateReplyChannel.publish({ node: this.node, connection: this.id, id: op.opId, opcode: peekOpcode(op.header) });
    }
  }

  private endSkip(): void {
    const op = this.skipOp as ConnectionOp;
    this.skipOp = undefined;
    this.skip = 0;
    this.inflight.delete(op.opId);
    this.orphanCount--;
    this.replyCount++;
    this.late(op);
    this.slotFreed();
  }

  /**
   * Memory for a reply body that is not received into a readInto buffer: a
   * small one is the next free slice of a slab (one allocation for many
   * bodies, the way Node's own pool serves small Buffers; a slice is never
   * handed out twice), a long one a buffer of its own.
   */
  private readonly allocBody = (len: number): Uint8Array => {
    if (len > SMALL_BODY_MAX) return Buffer.allocUnsafeSlow(len);
    let slab = this.bodySlab;
    let off = this.bodySlabOff;
    if (slab === undefined || off + len > slab.length) {
      slab = this.bodySlab = Buffer.allocUnsafeSlow(BODY_SLAB_SIZE);
      off = 0;
    }
    this.bodySlabOff = (off + len + 7) & ~7; // 8-byte aligned, as Node's pool
    return slab.subarray(off, off + len);
  };

  /**
   * Where the socket's next read goes: the rest of a long body in progress
   * (the connection's own buffer, or a readInto target), or the read buffer.
   * Node fixes the next read's buffer here, before anything can cancel the
   * op; so while a target holds the next read, its op is marked as held by
   * this socket (`flushingOn`, as for a payload not yet written): an op that
   * gives up meanwhile settles only once that read is done or the socket is
   * destroyed, never while the kernel may still write its buffer.
   */
  private readonly nextReadBuffer = (): Uint8Array => {
    if (this.skip === 0 && this._state !== 'closed') {
      const r = this.receiving;
      const w = this.decoder.bodyWindow(DIRECT_READ_MIN, r !== undefined && r.flushingOn === undefined);
      if (w !== undefined) {
        if (r !== undefined) {
          r.flushingOn = this;
          this.windowOp = r;
        }
        return w;
      }
    }
    return this.readBuf;
  };

  private readonly onRead = (nread: number, buf: Uint8Array): boolean => {
    this.received++;
    if (buf === this.readBuf) {
      this.onData(buf.subarray(0, nread));
      return true;
    }
    this.directReads++;
    const held = this.windowOp;
    this.windowOp = undefined;
    try {
      // The rest of a body whose op was cancelled after this read was set up is skipped.
      if (this.skip > 0) this.onData(buf.subarray(0, nread));
      else this.decoder.bodyReceived(nread, this.onFrame);
    } catch (e) {
      this.onProtocolError(e);
    }
    // The read into the caller's buffer is done: deliver a reply held meanwhile, or settle an op that gave up.
    if (held !== undefined) this.release(held);
    return true;
  };

  /** @internal Whether the socket's next read goes into `op`'s readInto buffer (the pool's liveness check). */
  readingInto(op: ConnectionOp): boolean {
    return this.windowOp === op;
  }

  private readonly onData = (chunk: Uint8Array): void => {
    if (this.replyCount === 0 && this.sniffLen < HEADER_SIZE) this.keepFirstBytes(chunk);
    let c: Uint8Array = chunk;
    if (this.skip > 0) {
      if (c.length < this.skip) {
        this.skip -= c.length;
        return;
      }
      c = c.subarray(this.skip);
      this.endSkip();
      if (c.length === 0 || this._state === 'closed') return;
    }
    try {
      this.decoder.push(c, this.onFrame);
    } catch (e) {
      this.onProtocolError(e);
    }
  };

  private keepFirstBytes(chunk: Uint8Array): void {
    const b = (this.sniff ??= new Uint8Array(HEADER_SIZE));
    const n = Math.min(HEADER_SIZE - this.sniffLen, chunk.length);
    b.set(chunk.subarray(0, n), this.sniffLen);
    this.sniffLen += n;
  }

  /**
   * Whether the peer is not a sheep: it sent bytes before any valid reply,
   * and they cannot start a reply to anything in flight here (neither the
   * opcode byte of a request in flight nor, once there, one of their ids).
   * A sheep with a bug (a wrong id, a wrong opcode, a long body) still gets
   * the specific reason.
   */
  private notASheep(): boolean {
    if (this.replyCount > 0 || this.sniffLen === 0) return false;
    const b = this.sniff as Uint8Array;
    if (this.sniffLen >= 12 && this.inflight.has(peekId(b))) return false;
    if (this.sniffLen >= 2) {
      const opcode = peekOpcode(b);
      for (const op of this.inflight.values()) if (peekOpcode(op.header) === opcode) return false;
    }
    return true;
  }

  /** The error for a peer that is not a sheep (no internal numbers: they mean nothing to the user). */
  private notASheepError(cause: unknown): SheepProtocolError {
    const b = this.sniff as Uint8Array;
    const text = Buffer.from(b.subarray(0, this.sniffLen)).toString('latin1');
    const hint = text.startsWith('HTTP/') ? '; it answered like an HTTP server' : '';
    return new SheepProtocolError(
      `not a sheep (no valid reply header from ${this.node}${hint})`,
      this.node,
      'not-a-sheep',
      cause === undefined ? undefined : { cause },
    );
  }

  private onProtocolError(e: unknown): void {
    if (this._state === 'closed') return;
    let err: Error;
    if ((e instanceof ProtocolError || e instanceof SheepProtocolError) && this.notASheep()) {
      err = this.notASheepError(e);
    } else if (e instanceof SheepProtocolError) err = e;
    else if (e instanceof ProtocolError) {
      const reason = /exceeds the limit|does not fit/.test(e.message) ? 'oversize' : 'frame';
      err = new SheepProtocolError(`protocol error from ${this.node}: ${e.message}`, this.node, reason, { cause: e });
    } else {
      const m = e instanceof Error ? e.message : String(e);
      err = new ConnectionError(`connection ${this.id} to ${this.node}: error handling a reply: ${m}`, this.node, {
        reason: 'destroyed',
        sent: true,
        cause: e,
      });
    }
    if (protocolErrorChannel.hasSubscribers) {
      protocolErrorChannel.publish({ node: this.node, connection: this.id, error: err });
    }
    this.protocolFailure = err;
    this.socket.destroy();
    this.finish(err);
  }

  /** A reserved id was released: move waiting requests in, tell the owner, or finish a close. */
  private slotFreed(): void {
    const s = this._state;
    if (this.waitLive > 0 && s !== 'retiring' && s !== 'closed') {
      const w = this.waiting;
      while (this.waitLive > 0 && this.inflight.size < this.maxInFlight && this.waitHead < w.length) {
        const op = w[this.waitHead++] as ConnectionOp;
        if (op.opState !== OpState.WAITING || op.conn !== this) continue;
        this.waitLive--;
        this.assign(op);
      }
      if (this.waitHead >= w.length) {
        w.length = 0;
        this.waitHead = 0;
      }
    }
    if (s === 'ready') {
      const h = this.hooks.onCapacity;
      if (h !== undefined) {
        try {
          h(this);
        } catch (e) {
          hookThrew(e);
        }
      }
    } else this.maybeEnd();
  }

  // ------------------------------------------------------------ lifecycle

  private readonly onConnect = (): void => {
    if (this.connectTimer !== undefined) clearTimeout(this.connectTimer);
    this.connectTimer = undefined;
    if (this._state !== 'connecting' && this._state !== 'closing') return;
    if (this._state === 'connecting') this._state = 'ready';
    this.socket.setNoDelay(this.noDelay);
    if (connectChannel.hasSubscribers) {
      connectChannel.publish({
        node: this.node,
        connection: this.id,
        localAddress: this.socket.localAddress,
        localPort: this.socket.localPort,
      });
    }
    const w = this.readyWaiters;
    this.readyWaiters = undefined;
    if (w) for (const x of w) x.resolve();
    if (this._state === 'ready') {
      try {
        this.hooks.onReady?.(this);
      } catch (e) {
        hookThrew(e);
      }
    }
    if (this.out.length > this.outHead) this.flushNow();
    this.maybeEnd();
  };

  private readonly onConnectTimeout = (): void => {
    this.connectTimer = undefined;
    if (this._state !== 'connecting') return;
    this.destroyError = new ConnectionError(`connect to ${this.node} timed out`, this.node, {
      reason: 'connect-timeout',
    });
    this.socket.destroy();
    this.finish(this.destroyError);
  };

  private readonly onDrain = (): void => {
    this.writable = true;
    this.flushNow();
  };

  private readonly onSocketError = (err: Error): void => {
    this.socketError ??= err;
  };

  private readonly onSocketClose = (): void => {
    if (this._state === 'closed') return;
    this.finish(this.closedError(true));
  };

  /** The error for a close we did not ask for. */
  private closedError(wasOpen: boolean): Error {
    if (this.destroyError) return this.destroyError;
    const se = this.socketError;
    if (this._state === 'connecting' || !wasOpen) {
      return new ConnectionError(
        `connect to ${this.node} failed${se ? `: ${se.message}` : ''}`,
        this.node,
        se ? { reason: 'connect', cause: se } : { reason: 'connect' },
      );
    }
    if (this.notASheep()) return this.notASheepError(se);
    const mid = this.decoder.idle && this.skip === 0 ? '' : ' in the middle of a reply';
    const why = se ? `failed: ${se.message}` : `was closed by the peer${mid}`;
    return new ConnectionError(
      `connection to ${this.node} ${why}`,
      this.node,
      se ? { reason: 'socket', cause: se } : { reason: 'closed' },
    );
  }

  /**
   * Stop taking requests and close once the ones in flight are answered
   * (orphans are not waited for). Requests waiting for a slot are failed
   * as unsent so their owner can place them elsewhere.
   */
  retire(): void {
    if (this._state !== 'ready' && this._state !== 'connecting') return;
    this._state = 'retiring';
    if (connectionRetiredChannel.hasSubscribers) {
      connectionRetiredChannel.publish({ node: this.node, connection: this.id, orphans: this.orphanCount });
    }
    try {
      this.hooks.onRetire?.(this);
    } catch (e) {
      hookThrew(e);
    }
    const w = this.waiting;
    const ops: ConnectionOp[] = [];
    for (let i = this.waitHead; i < w.length; i++) {
      const op = w[i] as ConnectionOp;
      if (op.opState === OpState.WAITING && op.conn === this) ops.push(op);
    }
    this.waiting = [];
    this.waitHead = 0;
    this.waitLive = 0;
    if (ops.length > 0) {
      const err = new ConnectionError(`connection ${this.id} to ${this.node} was retired`, this.node, {
        reason: 'destroyed',
        sent: false,
      });
      for (const op of ops) {
        op.opState = OpState.DONE;
        op.conn = undefined;
        op.onError(err, this, false);
      }
    }
    this.maybeEnd();
  }

  /** Stop taking requests; resolves once every pending request is answered and the socket is closed. */
  close(): Promise<void> {
    if (this._state === 'closed') return Promise.resolve();
    const p = this.closed();
    if (this._state === 'ready' || this._state === 'connecting') this._state = 'closing';
    this.maybeEnd();
    return p;
  }

  /** Close at once: every pending request fails with `err` (default: ConnectionError 'destroyed'). */
  destroy(err?: Error): void {
    if (this._state === 'closed') return;
    this.destroyError =
      err ??
      new ConnectionError(`connection ${this.id} to ${this.node} was destroyed`, this.node, { reason: 'destroyed' });
    this.socket.destroy();
    this.finish(this.destroyError);
  }

  private maybeEnd(): void {
    const s = this._state;
    if (s !== 'retiring' && s !== 'closing') return;
    if (this.ending || this.inflight.size - this.orphanCount > 0 || this.waitLive > 0) return;
    if (this.socket.connecting) {
      if (s === 'retiring') this.socket.destroy();
      return; // 'closing' while connecting: wait for onConnect
    }
    this.ending = true;
    // Our side is done: flush what is queued, then close.
    this.socket.end(() => this.socket.destroy());
  }

  /** Close bookkeeping; `err` undefined = graceful. Fails what is still pending. */
  private finish(err: Error | undefined): void {
    if (this._state === 'closed') return;
    // Every caller destroyed the socket already (or it closed); make sure,
    // since releasing the payloads below relies on it.
    if (!this.socket.destroyed) this.socket.destroy();
    const wasOpen = this._state !== 'connecting';
    const graceful = this.ending && err instanceof ConnectionError && err.reason === 'closed';
    const error = graceful ? undefined : (this.protocolFailure ?? err);
    this._state = 'closed';
    this.closeError = error;
    if (this.connectTimer !== undefined) clearTimeout(this.connectTimer);
    this.connectTimer = undefined;
    this.slab = undefined;
    this.receiving = undefined;
    this.skipOp = undefined;
    this.skip = 0;
    const failed: ConnectionOp[] = [];
    const sentFlags: boolean[] = [];
    for (const op of this.inflight.values()) {
      if (op.opState === OpState.SENT || op.opState === OpState.QUEUED) {
        failed.push(op);
        sentFlags.push(op.opState === OpState.SENT);
      }
      op.opState = OpState.DONE;
      op.conn = undefined;
    }
    this.inflight.clear();
    this.orphanCount = 0;
    for (let i = this.waitHead; i < this.waiting.length; i++) {
      const op = this.waiting[i] as ConnectionOp;
      if (op.opState === OpState.WAITING && op.conn === this) {
        failed.push(op);
        sentFlags.push(false);
        op.opState = OpState.DONE;
        op.conn = undefined;
      }
    }
    this.waiting = [];
    this.waitHead = 0;
    this.waitLive = 0;
    this.out = [];
    this.outHead = 0;
    if (!wasOpen && connectErrorChannel.hasSubscribers && error) {
      connectErrorChannel.publish({ node: this.node, connection: this.id, error });
    }
    if (connectionClosedChannel.hasSubscribers) {
      connectionClosedChannel.publish({ node: this.node, connection: this.id, error, failed: failed.length });
    }
    const rw = this.readyWaiters;
    this.readyWaiters = undefined;
    if (rw) for (const w of rw) w.reject(error ?? this.closedError(wasOpen));
    try {
      this.hooks.onClose?.(this, error);
    } catch (e) {
      hookThrew(e);
    }
    // The socket is destroyed: payloads and read buffers it still held are
    // released before their ops are failed (and perhaps sent again elsewhere).
    this.releaseAll();
    const held = this.windowOp;
    this.windowOp = undefined;
    if (held !== undefined) this.release(held);
    if (failed.length > 0) {
      const base = error ?? this.closedError(wasOpen);
      let sentErr: Error | undefined;
      let unsentErr: Error | undefined;
      for (let i = 0; i < failed.length; i++) {
        const sent = sentFlags[i] as boolean;
        let e: Error;
        if (base instanceof ConnectionError) {
          if (sent) e = sentErr ??= this.withSent(base, true);
          else e = unsentErr ??= this.withSent(base, false);
        } else e = base;
        (failed[i] as ConnectionOp).onError(e, this, sent);
      }
    }
    const cw = this.closeWaiters;
    this.closeWaiters = undefined;
    if (cw) for (const r of cw) r();
  }

  private withSent(base: ConnectionError, sent: boolean): ConnectionError {
    if (base.sent === sent) return base;
    return new ConnectionError(base.message, base.node, {
      reason: base.reason as ConnectionErrorReason,
      sent,
      ...(base.cause === undefined ? {} : { cause: base.cause }),
    });
  }

  // ------------------------------------------------------------ standalone use

  /**
   * Send one request on this connection and wait for its reply (any result).
   * The pool does not use this; it is for tools and tests.
   */
  request(req: Request, body?: Uint8Array, opts: ConnectionRequestOptions = {}): Promise<Reply> {
    let header: Uint8Array;
    try {
      header = encodeRequestHeader(req, body);
    } catch (e) {
      return Promise.reject(e);
    }
    const op = new DirectRequest(header, body, opts.readInto, opts.signal);
    const p = new Promise<Reply>((resolve, reject) => {
      op.resolve = resolve;
      op.reject = reject;
    });
    const signal = opts.signal;
    if (signal?.aborted) {
      op.fail(
        new AbortError(`${opName(req.opcode)} aborted before it was sent`, { phase: 'queued', cause: signal.reason }),
      );
      return p;
    }
    signal?.addEventListener('abort', op, { once: true });
    if (opts.timeout !== undefined && opts.timeout > 0) {
      op.timeout = opts.timeout;
      armDeadline(op, opts.timeout);
    }
    this.send(op);
    return p;
  }
}

/**
 * The error a connection is destroyed with when a payload is still in its
 * socket at a deadline: the peer did not take our bytes for the whole
 * timeout (liveness), and the caller's buffer can only be released once
 * Node no longer reads it.
 */
export function stuckPayloadError(conn: Connection, op: string, bytes: number, timeout: number): ConnectionError {
  const what =
    bytes === 0
      ? `the reply to ${op} was still arriving into the caller's buffer`
      : `the ${bytes}-byte payload of ${op} was still in the socket`;
  return new ConnectionError(
    `connection ${conn.id} to ${conn.node} destroyed: ${what} after ${timeout} ms`,
    conn.node,
    { reason: 'destroyed' },
  );
}

/** Holds the id of an op taken back with `abandon()` until its late reply. */
class StandInOp extends ConnectionOp {
  constructor(header: Uint8Array) {
    super(header, undefined, undefined);
  }
  onReply(): void {}
  onError(): void {}
}

/** A request made with `Connection.request()`. */
class DirectRequest extends ConnectionOp implements Deadlined {
  resolve: (r: Reply) => void = noop;
  reject: (e: Error) => void = noop;
  deadline = 0;
  timer: NodeJS.Timeout | undefined = undefined;
  timeout = 0;
  settled = false;
  /** Gave up (timeout, abort) while the payload was in the socket: settles with this once it is released. */
  parting: Error | undefined = undefined;
  readonly signal: AbortSignal | undefined;

  constructor(
    header: Uint8Array,
    body: Uint8Array | undefined,
    readInto: Uint8Array | undefined,
    signal: AbortSignal | undefined,
  ) {
    super(header, body, readInto);
    this.signal = signal;
  }

  /** Settled: leave the timers, and drop the resolvers (they reference the promise, its reply and body). */
  private cleanup(): void {
    this.settled = true;
    disarmDeadline(this);
    this.signal?.removeEventListener('abort', this);
    this.resolve = noop;
    this.reject = noop;
  }

  fail(e: Error): void {
    if (this.settled) return;
    const reject = this.reject;
    this.cleanup();
    reject(e);
  }

  onReply(header: Uint8Array, body: Uint8Array, conn: Connection): void {
    if (this.settled) return;
    if (this.parting !== undefined) {
      this.fail(this.parting);
      return;
    }
    const resolve = this.resolve;
    this.cleanup();
    resolve({ header: decodeResponse(header), body, node: conn.node });
  }

  onError(err: Error): void {
    this.fail(this.parting ?? err);
  }

  override onBodyReleased(): void {
    if (this.parting !== undefined) this.fail(this.parting);
  }

  private giveUp(make: (phase: 'queued' | 'sent', node: string | undefined) => Error, timedOut: boolean): void {
    if (this.settled || this.parting !== undefined) return;
    const conn = this.conn;
    const phase = this.opState === OpState.SENT || this.flushingOn !== undefined ? 'sent' : 'queued';
    const e = make(phase, conn?.node ?? this.flushingOn?.node);
    const holder = this.flushingOn;
    if (holder !== undefined) {
      // The socket may still read the caller's buffer: settle once it no
      // longer can. A timeout means the peer did not take the bytes in time.
      this.parting = e;
      this.signal?.removeEventListener('abort', this);
      conn?.cancel(this);
      if (timedOut)
        holder.destroy(
          stuckPayloadError(holder, opName(peekOpcode(this.header)), this.body?.length ?? 0, this.timeout),
        );
      return;
    }
    const reject = this.reject;
    this.cleanup();
    conn?.cancel(this);
    reject(e);
  }

  onDeadline(): void {
    if (this.settled) return;
    const op = opName(peekOpcode(this.header));
    if (this.parting !== undefined) {
      // Aborted with the payload still in the socket, which took none of it since.
      const holder = this.flushingOn;
      if (holder !== undefined) holder.destroy(stuckPayloadError(holder, op, this.body?.length ?? 0, this.timeout));
      return;
    }
    this.giveUp(
      (phase, node) =>
        new TimeoutError(
          `${op} timed out after ${this.timeout} ms (${phase === 'sent' ? `sent to ${node}, no reply` : 'not sent'})`,
          { phase, node, timeout: this.timeout },
        ),
      true,
    );
  }

  handleEvent(): void {
    const op = opName(peekOpcode(this.header));
    this.giveUp(
      (phase, node) =>
        new AbortError(`${op} aborted (${phase === 'sent' ? `sent to ${node}` : 'not sent'})`, {
          phase,
          node,
          cause: this.signal?.reason,
        }),
      false,
    );
  }
}

function noop(): void {}
