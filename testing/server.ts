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
import type { Fault, FaultHandle } from './types.js';

/** Requests a connection may have in flight (received, not yet answered) before we stop reading it. */
export const MAX_OUTSTANDING = 256;
/** Reply bytes buffered in a socket before we stop reading from it. */
export const WRITE_HIGH_WATER = 16 * 2 ** 20;
/** Connections one node accepts at once. */
export const MAX_CONNECTIONS = 4096;

interface InstalledFault {
  fault: Fault;
  seen: number;
  applied: number;
}

interface Frame {
  h: Uint8Array;
  b: Uint8Array;
}

type Parts = [Uint8Array, Uint8Array | undefined];
interface Out {
  parts: Parts;
  after: (() => void) | undefined;
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
  async stop(graceful = false): Promise<void> {
    if (!this.up) return;
    this.up = false;
    const server = this.server;
    this.server = undefined;
    for (const c of [...this.conns]) c.close(graceful);
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

  inject(fault: Fault): FaultHandle {
    const f: InstalledFault = { fault: { ...fault }, seen: 0, applied: 0 };
    this.faults.push(f);
    return {
      remove: () => {
        this.faults = this.faults.filter((x) => x !== f);
      },
    };
  }

  /** The fault (if any) that applies to the next request with this opcode. */
  takeFault(opcode: number): Fault | undefined {
    let chosen: Fault | undefined;
    for (const f of this.faults) {
      if (f.fault.opcode !== undefined && f.fault.opcode !== opcode) continue;
      f.seen++;
      if (chosen) continue;
      if (f.seen <= (f.fault.after ?? 0)) continue;
      if (f.fault.times !== undefined && f.applied >= f.fault.times) continue;
      f.applied++;
      chosen = f.fault;
    }
    return chosen;
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
  private readonly timers = new Set<NodeJS.Timeout>();
  private pumping = false;
  private waitingDrain = false;
  dead = false;

  constructor(node: SheepNode, socket: net.Socket) {
    this.node = node;
    this.socket = socket;
    this.decoder = new FrameDecoder({
      direction: 'request',
      maxDataLength: node.env.maxDataLength ?? DEFAULT_MAX_DATA_LENGTH,
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
        this.queue.push({ h, b });
      });
    } catch {
      // garbage, truncated or oversize frames: drop this connection only
      this.close(false);
      return;
    }
    this.pump();
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
    const fault = this.node.takeFault(req.opcode);
    this.outstanding++;
    if (!fault) {
      this.send(this.compute(req, f));
      return;
    }
    switch (fault.kind) {
      case 'stall':
        return; // never answered; stays outstanding
      case 'drop':
        this.close(false);
        return;
      case 'result':
        this.send({ parts: this.encode(req, { result: fault.result >>> 0 }), after: undefined });
        return;
      case 'delay': {
        const reply = this.compute(req, f);
        const t = setTimeout(() => {
          this.timers.delete(t);
          this.send(reply);
        }, fault.ms);
        this.timers.add(t);
        return;
      }
      case 'dropMidFrame': {
        const [h, b] = this.compute(req, f).parts;
        const whole = b ? Buffer.concat([h, b]) : Buffer.from(h);
        this.socket.write(whole.subarray(0, Math.max(1, Math.floor(whole.length / 2))));
        this.close(true);
        return;
      }
      case 'unknownId': {
        const out = this.compute(req, f);
        const h = Buffer.from(out.parts[0]);
        h.writeUInt32LE((req.id + 0x80000000) >>> 0, 8);
        this.send({ parts: [h, out.parts[1]], after: out.after });
        return;
      }
      case 'corruptHeader': {
        const h = Buffer.alloc(HEADER_SIZE, 0xa5);
        h[0] = 0xff;
        h[1] = 0xff;
        h.writeUInt32LE((req.id ^ 0xffffffff) >>> 0, 8);
        h.writeUInt32LE(0xfffffff0, 12);
        this.send({ parts: [h, undefined], after: undefined });
        return;
      }
    }
  }

  private compute(req: Request, f: Frame): Out {
    const env = this.node.env;
    try {
      const reply: Reply = dispatch({ cluster: env.cluster, node: this.node, req, hdr: f.h, body: f.b });
      return { parts: this.encode(req, reply), after: reply.after };
    } catch (e) {
      env.onInternalError(e);
      return { parts: this.encode(req, { result: Result.SYSTEM_ERROR }), after: undefined };
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
      return;
    }
    const [h, b] = out.parts;
    this.socket.cork();
    this.socket.write(h);
    if (b) this.socket.write(b);
    this.socket.uncork();
    if (after) setImmediate(after);
    if (!this.pumping) this.pump();
  }

  /** Close this connection (graceful: after what is written has been flushed). */
  close(graceful: boolean): void {
    if (this.dead) return;
    this.dead = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.queue = [];
    this.qHead = 0;
    const held = this.batch;
    this.batch = [];
    for (const x of held) if (x.after) setImmediate(x.after);
    this.node.conns.delete(this);
    if (graceful) {
      this.socket.end();
      this.socket.resume();
    } else {
      this.socket.destroy();
    }
  }
}
