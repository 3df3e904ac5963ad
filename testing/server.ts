/**
 * The network side of the embedded sheep: one TCP listener per node, any
 * number of connections, many requests in flight per connection answered as
 * they complete (optionally in a deliberately different order), bounded
 * memory per connection (outstanding-request cap, socket backpressure), and
 * per-node fault injection.
 */
import net from 'node:net';
import { HEADER_SIZE, Result } from '../protocol/constants.js';
import { DEFAULT_MAX_DATA_LENGTH, FrameDecoder } from '../protocol/decoder.js';
import { decodeRequest, encodeResponse, type Request, responseFor } from '../protocol/header.js';
import { formatAddress } from '../lib/util/address.js';
import type { NodeRecord, Reply, SheepCluster } from './cluster.js';
import { dispatch, type NodeCounters, type NodeCtx, newCounters } from './ops.js';
import type { Fault, InjectedFault } from './types.js';

/** Requests a connection may have in flight (received, not yet answered) before we stop reading it. */
export const MAX_OUTSTANDING = 256;
/** Reply bytes buffered in a socket before we stop reading from it. */
export const WRITE_HIGH_WATER = 16 * 2 ** 20;
/** Connections one node accepts at once. */
export const MAX_CONNECTIONS = 4096;

interface InstalledFault {
  fault: Fault;
  seen: number;
  /** Requests taken (the handle's `hits`). */
  applied: number;
  executed: number;
  replied: number;
  /** Taken requests not yet done with. */
  pending: number;
  waiters: { ready: () => boolean; resolve: () => void }[];
}

/** Wake the waiters of `taken()` / `settled()` whose condition now holds. */
function changed(f: InstalledFault): void {
  if (f.waiters.length === 0) return;
  f.waiters = f.waiters.filter((w) => {
    if (!w.ready()) return true;
    w.resolve();
    return false;
  });
}

/** A request the fault took is done with (executed or discarded, answered or not). */
function done(f: InstalledFault): void {
  f.pending--;
  changed(f);
}

interface Frame {
  h: Uint8Array;
  b: Uint8Array;
}

/** A request an `execute-late` fault holds on its node. */
interface Held {
  conn: Conn;
  req: Request;
  frame: Frame;
  /** Arrival number on the node. */
  seq: number;
  fault: InstalledFault;
  /** Later requests still to be applied before this one. */
  remaining: number;
  timeUp: boolean;
  timer: NodeJS.Timeout | undefined;
  gone: boolean;
}

type Parts = [Uint8Array, Uint8Array | undefined];
interface Out {
  parts: Parts;
  after: (() => void) | undefined;
  /** Called once: the reply was written (true) or dropped (false). */
  sent?: (written: boolean) => void;
}

export interface ServerEnv {
  cluster: SheepCluster;
  maxDataLength: number;
  nullMode: boolean;
  reorder(): boolean;
  countRequest(): void;
  onInternalError(e: unknown): void;
  /** A node asked to stop itself (KILL_NODE) or everything (SHUTDOWN). */
  killNode(i: number): void;
  shutdownAll(): void;
}

export class SheepNode implements NodeCtx {
  readonly index: number;
  readonly record: NodeRecord;
  readonly listenHost: string;
  /** Port asked for (0: any); after the first start, the port we got. */
  port: number;
  logLevel = 6;
  readonly counters: NodeCounters = newCounters();
  readonly conns = new Set<Conn>();
  faults: InstalledFault[] = [];
  /** Requests handled on this node so far (their arrival numbers). */
  seq = 0;
  /** Requests `execute-late` faults hold, in arrival order. */
  private held: Held[] = [];
  up = false;
  private server: net.Server | undefined;
  /** Every accepted socket until it closes (graceful closes may linger). */
  private readonly sockets = new Set<net.Socket>();
  private readonly closing: Promise<void>[] = [];
  readonly env: ServerEnv;

  constructor(env: ServerEnv, index: number, listenHost: string, addr: string, port: number, space: bigint) {
    this.env = env;
    this.index = index;
    this.listenHost = listenHost;
    this.port = port;
    this.record = { index, addr, port, zone: index, nrVnodes: 128, space };
  }

  get address(): string {
    return formatAddress(this.listenHost, this.port);
  }

  async start(): Promise<void> {
    if (this.up) return;
    const server = net.createServer({ noDelay: true }, (s) => this.accept(s));
    server.maxConnections = MAX_CONNECTIONS;
    await new Promise<void>((resolve, reject) => {
      const onError = (e: Error): void => reject(e);
      server.once('error', onError);
      server.listen({ port: this.port, host: this.listenHost, exclusive: true }, () => {
        server.off('error', onError);
        resolve();
      });
    });
    server.on('error', () => {});
    const a = server.address();
    if (a && typeof a === 'object') this.port = a.port;
    this.record.port = this.port;
    this.server = server;
    this.up = true;
  }

  /**
   * Stop listening (the port is free at once) and drop every connection:
   * abruptly, or with `graceful` after what was written has been flushed.
   */
  async stop(graceful = false, reset = false): Promise<void> {
    if (!this.up) return;
    this.up = false;
    const server = this.server;
    this.server = undefined;
    for (const c of [...this.conns]) c.close(graceful, reset);
    this.discardHeld();
    if (server) this.closing.push(new Promise<void>((resolve) => server.close(() => resolve())));
    if (!graceful) await Promise.all(this.closing);
  }

  /** Stop and destroy whatever still lingers. */
  async dispose(): Promise<void> {
    await this.stop(false);
    for (const s of this.sockets) s.destroy();
    await Promise.all(this.closing);
  }

  private accept(s: net.Socket): void {
    this.sockets.add(s);
    s.on('close', () => this.sockets.delete(s));
    if (!this.up) {
      s.destroy();
      return;
    }
    const c = new Conn(this, s);
    this.conns.add(c);
  }

  kill(): void {
    this.env.killNode(this.index);
  }

  shutdown(): void {
    this.env.shutdownAll();
  }

  inject(fault: Fault): InjectedFault {
    const f: InstalledFault = {
      fault: { ...fault },
      seen: 0,
      applied: 0,
      executed: 0,
      replied: 0,
      pending: 0,
      waiters: [],
    };
    this.faults.push(f);
    const wait = (ready: () => boolean): Promise<void> =>
      ready() ? Promise.resolve() : new Promise((resolve) => f.waiters.push({ ready, resolve }));
    return {
      remove: () => {
        this.faults = this.faults.filter((x) => x !== f);
      },
      get hits() {
        return f.applied;
      },
      get executed() {
        return f.executed;
      },
      get replied() {
        return f.replied;
      },
      taken: (n = 1) => wait(() => f.applied >= n),
      settled: () => wait(() => f.pending === 0),
    };
  }

  /**
   * The fault (if any) that takes this request. `atHeader`: only the faults
   * decided when a request's header arrives (`close-mid-payload`), which see
   * only requests carrying a payload; otherwise every other kind.
   */
  takeFault(req: Request, atHeader = false): InstalledFault | undefined {
    let chosen: InstalledFault | undefined;
    for (const f of this.faults) {
      if ((f.fault.kind === 'close-mid-payload') !== atHeader) continue;
      if (f.fault.opcode !== undefined && f.fault.opcode !== req.opcode) continue;
      if (f.fault.oid !== undefined && (req.kind !== 'obj' || req.oid !== f.fault.oid)) continue;
      f.seen++;
      if (chosen) continue;
      if (f.seen <= (f.fault.after ?? 0)) continue;
      if (f.fault.times !== undefined && f.applied >= f.fault.times) continue;
      f.applied++;
      f.pending++;
      chosen = f;
    }
    if (chosen) changed(chosen);
    return chosen;
  }

  /** Hold a request until `ms` have passed and `overtakenBy` later requests were applied on this node. */
  hold(
    conn: Conn,
    req: Request,
    frame: Frame,
    seq: number,
    fault: InstalledFault,
    ms: number,
    overtakenBy: number,
  ): void {
    const h: Held = {
      conn,
      req,
      frame,
      seq,
      fault,
      remaining: overtakenBy,
      timeUp: false,
      timer: undefined,
      gone: false,
    };
    this.held.push(h);
    h.timer = setTimeout(() => {
      h.timer = undefined;
      h.timeUp = true;
      if (h.remaining <= 0) this.release(h);
    }, ms);
  }

  /** The request that arrived as number `seq` was applied: it overtakes the held requests that came before it. */
  noteApplied(seq: number): void {
    if (this.held.length === 0) return;
    for (const h of this.held) {
      if (h.seq >= seq || h.remaining <= 0) continue;
      h.remaining--;
      if (h.remaining === 0 && h.timeUp) setImmediate(() => this.release(h));
    }
  }

  private release(h: Held): void {
    if (h.gone) return;
    h.gone = true;
    this.held = this.held.filter((x) => x !== h);
    // sheep runs a request it has fully received even when its client is gone (the reply is dropped)
    h.conn.runHeld(h);
  }

  /** The node stops: the requests it holds die with it. */
  private discardHeld(): void {
    const held = this.held;
    this.held = [];
    for (const h of held) {
      h.gone = true;
      if (h.timer) clearTimeout(h.timer);
      done(h.fault);
    }
  }
}

export class Conn {
  private readonly node: SheepNode;
  private readonly socket: net.Socket;
  private readonly decoder: FrameDecoder;
  private queue: Frame[] = [];
  private qHead = 0;
  private outstanding = 0;
  private batch: Out[] = [];
  private flushScheduled = false;
  /** Pending reply timers, each with what to do when the connection closes first. */
  private readonly timers = new Map<NodeJS.Timeout, () => void>();
  /** Requests stalled on this connection, done with when it closes. */
  private stalled: InstalledFault[] = [];
  /** A `close-mid-payload` fault took the request whose payload is arriving. */
  private cut: { fault: InstalledFault; at: number; complete: boolean } | undefined;
  private pumping = false;
  private waitingDrain = false;
  dead = false;

  constructor(node: SheepNode, socket: net.Socket) {
    this.node = node;
    this.socket = socket;
    this.decoder = new FrameDecoder({
      direction: 'request',
      maxDataLength: node.env.maxDataLength ?? DEFAULT_MAX_DATA_LENGTH,
      bodyTarget: (h, len) => {
        this.onPayloadHeader(h, len);
        return undefined;
      },
    });
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => this.close(false));
    socket.on('close', () => this.close(false));
  }

  private pending(): number {
    return this.queue.length - this.qHead;
  }

  private onData(chunk: Buffer): void {
    if (this.dead) return;
    try {
      this.decoder.push(chunk, (h, b) => {
        // the cut request and whatever follows it are never received
        if (this.cut) this.cut.complete = true;
        else this.queue.push({ h, b });
      });
    } catch {
      // garbage, truncated or oversize frames: drop this connection only
      this.close(false);
      return;
    }
    this.pump();
    const cut = this.cut;
    if (cut && !this.dead && (cut.complete || this.decoder.buffered - HEADER_SIZE >= cut.at)) this.close(false);
  }

  /** A request header announcing a payload arrived: a `close-mid-payload` fault may take it. */
  private onPayloadHeader(h: Uint8Array, len: number): void {
    if (this.cut || this.node.faults.length === 0) return;
    const f = this.node.takeFault(decodeRequest(h), true);
    if (!f || f.fault.kind !== 'close-mid-payload') return;
    this.cut = { fault: f, at: Math.max(0, Math.min(f.fault.bytes ?? Math.floor(len / 2), len - 1)), complete: false };
  }

  private blocked(): boolean {
    return this.outstanding >= MAX_OUTSTANDING || this.socket.writableLength >= WRITE_HIGH_WATER;
  }

  private pump(): void {
    if (this.pumping || this.dead) return;
    this.pumping = true;
    try {
      while (!this.dead && this.pending() > 0 && !this.blocked()) {
        const f = this.queue[this.qHead] as Frame;
        this.queue[this.qHead] = undefined as unknown as Frame;
        this.qHead++;
        if (this.qHead > 1024 && this.qHead * 2 > this.queue.length) {
          this.queue = this.queue.slice(this.qHead);
          this.qHead = 0;
        }
        this.handle(f);
      }
    } finally {
      this.pumping = false;
    }
    if (this.dead) return;
    if (this.pending() > 0 || this.blocked()) {
      this.socket.pause();
      if (this.socket.writableLength >= WRITE_HIGH_WATER && !this.waitingDrain) {
        this.waitingDrain = true;
        this.socket.once('drain', () => {
          this.waitingDrain = false;
          this.pump();
        });
      }
    } else {
      this.socket.resume();
    }
  }

  private handle(f: Frame): void {
    const env = this.node.env;
    env.countRequest();
    const req = decodeRequest(f.h);
    if (req.dataLength > env.maxDataLength) {
      // sheep allocates data_length bytes for every request; when it cannot, the connection dies
      this.close(false);
      return;
    }
    const seq = ++this.node.seq;
    const inst = this.node.faults.length === 0 ? undefined : this.node.takeFault(req);
    this.outstanding++;
    if (!inst) {
      this.send(this.compute(req, f, seq));
      return;
    }
    const fault = inst.fault;
    switch (fault.kind) {
      case 'stall':
        this.stalled.push(inst);
        return; // never answered; stays outstanding
      case 'drop':
        this.close(false);
        done(inst);
        return;
      case 'result':
        this.send(this.track({ parts: this.encode(req, { result: fault.result >>> 0 }), after: undefined }, inst));
        return;
      case 'delay': {
        const reply = this.track(this.execute(req, f, seq, inst), inst);
        const t = setTimeout(() => {
          this.timers.delete(t);
          this.send(reply);
        }, fault.ms);
        this.timers.set(t, () => done(inst));
        return;
      }
      case 'dropMidFrame': {
        const [h, b] = this.execute(req, f, seq, inst).parts;
        const whole = b ? Buffer.concat([h, b]) : Buffer.from(h);
        this.socket.write(whole.subarray(0, Math.max(1, Math.floor(whole.length / 2))));
        this.close(true);
        done(inst);
        return;
      }
      case 'unknownId': {
        const out = this.execute(req, f, seq, inst);
        const h = Buffer.from(out.parts[0]);
        h.writeUInt32LE((req.id + 0x80000000) >>> 0, 8);
        this.send(this.track({ parts: [h, out.parts[1]], after: out.after }, inst));
        return;
      }
      case 'corruptHeader': {
        const h = Buffer.alloc(HEADER_SIZE, 0xa5);
        h[0] = 0xff;
        h[1] = 0xff;
        h.writeUInt32LE((req.id ^ 0xffffffff) >>> 0, 8);
        h.writeUInt32LE(0xfffffff0, 12);
        this.send(this.track({ parts: [h, undefined], after: undefined }, inst));
        return;
      }
      case 'execute-drop-reply': {
        const out = this.execute(req, f, seq, inst);
        this.outstanding--; // done in the sheep; the reply is lost
        if (out.after) setImmediate(out.after);
        done(inst);
        return;
      }
      case 'drop-before-execute':
        this.outstanding--; // the request is gone without a trace
        done(inst);
        return;
      case 'execute-late':
        this.node.hold(this, req, f, seq, inst, fault.ms ?? 0, fault.overtakenBy ?? 1);
        return; // stays outstanding until it runs
      case 'close-mid-payload':
        return; // taken when its header arrived (onPayloadHeader), never here
    }
  }

  /** Run a request an `execute-late` fault held; its reply is dropped if this connection is gone. */
  runHeld(h: Held): void {
    this.send(this.track(this.execute(h.req, h.frame, h.seq, h.fault), h.fault));
  }

  private execute(req: Request, f: Frame, seq: number, inst: InstalledFault): Out {
    const out = this.compute(req, f, seq);
    inst.executed++;
    return out;
  }

  /** The reply of a request a fault took: count it and mark the request done once it is written or dropped. */
  private track(out: Out, inst: InstalledFault): Out {
    return {
      ...out,
      sent: (written) => {
        if (written) inst.replied++;
        done(inst);
      },
    };
  }

  private compute(req: Request, f: Frame, seq: number): Out {
    const env = this.node.env;
    try {
      const reply: Reply = dispatch({ cluster: env.cluster, node: this.node, req, hdr: f.h, body: f.b });
      return { parts: this.encode(req, reply), after: reply.after };
    } catch (e) {
      env.onInternalError(e);
      return { parts: this.encode(req, { result: Result.SYSTEM_ERROR }), after: undefined };
    } finally {
      this.node.noteApplied(seq);
    }
  }

  private encode(req: Request, r: Reply): Parts {
    const body = r.body && r.body.length > 0 ? r.body : undefined;
    const rsp = responseFor(req, r.result >>> 0, {
      epoch: this.node.env.cluster.epoch,
      dataLength: body?.length ?? 0,
    });
    switch (rsp.kind) {
      case 'vdi':
        rsp.vdiId = (r.vdiId ?? 0) >>> 0;
        rsp.attrId = (r.attrId ?? 0) >>> 0;
        rsp.copies = (r.copies ?? 0) & 0xff;
        rsp.blockSizeShift = (r.blockSizeShift ?? 0) & 0xff;
        break;
      case 'node':
        rsp.nrNodes = r.nrNodes ?? 0;
        rsp.storeSize = r.storeSize ?? 0n;
        rsp.storeFree = r.storeFree ?? 0n;
        break;
      case 'hash':
        if (r.digest) rsp.digest = r.digest;
        break;
      case 'cluster_default':
        if (r.defaults) {
          rsp.nrCopies = r.defaults.nrCopies & 0xff;
          rsp.copyPolicy = r.defaults.copyPolicy & 0xff;
          rsp.blockSizeShift = r.defaults.blockSizeShift & 0xff;
        }
        break;
      default:
        break;
    }
    const h = Buffer.allocUnsafe(HEADER_SIZE);
    encodeResponse(rsp, h);
    return [h, body];
  }

  private send(out: Out): void {
    if (this.dead) {
      this.outstanding--;
      out.after?.();
      out.sent?.(false);
      return;
    }
    if (this.node.env.reorder() && !this.node.env.nullMode) {
      this.batch.push(out);
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
      return;
    }
    this.write(out);
  }

  /** Emit the replies gathered this turn in reverse order. */
  private flush(): void {
    this.flushScheduled = false;
    const b = this.batch.reverse();
    this.batch = [];
    for (const x of b) this.write(x);
  }

  private write(out: Out): void {
    this.outstanding--;
    const after = out.after;
    if (this.dead) {
      after?.();
      out.sent?.(false);
      return;
    }
    const [h, b] = out.parts;
    this.socket.cork();
    this.socket.write(h);
    if (b) this.socket.write(b);
    this.socket.uncork();
    out.sent?.(true);
    if (after) setImmediate(after);
    if (!this.pumping) this.pump();
  }

  /** Close this connection (graceful: after what is written has been flushed; reset: with a TCP RST). */
  close(graceful: boolean, reset = false): void {
    if (this.dead) return;
    this.dead = true;
    for (const [t, cancel] of this.timers) {
      clearTimeout(t);
      cancel();
    }
    this.timers.clear();
    this.queue = [];
    this.qHead = 0;
    const held = this.batch;
    this.batch = [];
    for (const x of held) {
      if (x.after) setImmediate(x.after);
      x.sent?.(false);
    }
    for (const f of this.stalled) done(f);
    this.stalled = [];
    if (this.cut) done(this.cut.fault); // never applied: sheep drops a partially received request
    this.node.conns.delete(this);
    if (graceful) {
      this.socket.end();
      this.socket.resume();
    } else if (reset && !this.socket.destroyed) {
      this.socket.resetAndDestroy();
    } else {
      this.socket.destroy();
    }
  }
}
