/**
 * A scripted fake sheep for connection and pool tests, built on the codec
 * (FrameDecoder + encodeResponse): exact control over what comes back, in
 * which order and in how many pieces. By default it answers every request
 * with SUCCESS (READ_OBJ with a pattern derived from oid and offset,
 * GET_NODE_LIST with `nodeList`); `hold` keeps requests until the test
 * answers them; `onRequest` scripts anything else.
 */
import net from 'node:net';
import { Op, Result, SD_NODE_SIZE } from '../../protocol/constants.js';
import { FrameDecoder } from '../../protocol/decoder.js';
import { type Request, type Response, decodeRequest, encodeResponse, responseFor } from '../../protocol/header.js';
import { encodeSdNode } from '../../protocol/records.js';
import type { Fault, FaultHandle } from '../../testing/types.js';

export interface ReplyOptions {
  body?: Uint8Array;
  /** data_length to put in the header (default body length). */
  dataLength?: number;
  epoch?: number;
  /** Id to answer with (default: the request's). */
  id?: number;
  /** Opcode to answer with (default: the request's). */
  opcode?: number;
  /**
   * Write the frame in pieces of this many bytes, one piece per event-loop
   * turn (so they usually arrive as separate chunks; the test does not rely on it).
   */
  split?: number;
  /** Change the decoded header before it is encoded. */
  patch?: (r: Response) => void;
}

export class FakeRequest {
  readonly header: Request;
  readonly body: Uint8Array;
  readonly conn: FakeConn;
  answered = false;
  constructor(header: Request, body: Uint8Array, conn: FakeConn) {
    this.header = header;
    this.body = body;
    this.conn = conn;
  }
  get id(): number {
    return this.header.id;
  }
  get opcode(): number {
    return this.header.opcode;
  }
  /** Answer with `result` (default SUCCESS). */
  reply(result: number = Result.SUCCESS, o: ReplyOptions = {}): void {
    this.answered = true;
    this.conn.sheep.writeReply(this, result, o);
  }
  /** Answer as the default handler would. */
  auto(): void {
    this.conn.sheep.autoReply(this);
  }
}

export class FakeConn {
  readonly socket: net.Socket;
  readonly sheep: FakeSheep;
  readonly id: number;
  readonly decoder = new FrameDecoder({ direction: 'request', maxDataLength: 128 * 1024 * 1024 });
  requests = 0;
  constructor(socket: net.Socket, sheep: FakeSheep, id: number) {
    this.socket = socket;
    this.sheep = sheep;
    this.id = id;
  }
  private slow: Uint8Array[] = [];
  write(b: Uint8Array): void {
    if (this.slow.length > 0) this.slow.push(b);
    else if (!this.socket.destroyed) this.socket.write(b);
  }
  /** Write pieces one per event-loop turn; later writes queue behind them. */
  writeSlowly(pieces: Uint8Array[]): void {
    const idle = this.slow.length === 0;
    this.slow.push(...pieces);
    if (!idle) return;
    const next = (): void => {
      const p = this.slow.shift();
      if (p === undefined) return;
      if (!this.socket.destroyed) this.socket.write(p);
      if (this.slow.length > 0) setImmediate(next);
    };
    next();
  }
  destroy(): void {
    this.socket.destroy();
  }
  /** Stop reading: the client's writes back up (kernel buffers, then its socket). */
  pause(): void {
    this.socket.pause();
  }
  resume(): void {
    this.socket.resume();
  }
}

/** A deterministic byte for READ_OBJ replies: byte i of object `oid` at `offset`. */
export function patternByte(oid: bigint, offset: number, i: number): number {
  return (Number(oid & 0xffn) * 31 + offset + i) & 0xff;
}

export function patternBody(oid: bigint, offset: number, len: number): Buffer {
  const b = Buffer.allocUnsafe(len);
  for (let i = 0; i < len; i++) b[i] = patternByte(oid, offset, i);
  return b;
}

export interface FakeSheepOptions {
  /** Called for every request; default `r.auto()` (unless `hold`). */
  onRequest?: (r: FakeRequest) => void;
  hold?: boolean;
  epoch?: number;
  /** Addresses GET_NODE_LIST answers with (default: this sheep only). */
  nodeList?: string[];
  port?: number;
  /** Object store to use (share one between the fakes of a cluster). */
  objects?: Map<bigint, Buffer>;
  /** Accept connections without reading from them (`resumeAll()` starts reading). */
  paused?: boolean;
}

let connSerial = 0;

export class FakeSheep {
  readonly server: net.Server;
  port = 0;
  epoch: number;
  hold: boolean;
  onRequest: ((r: FakeRequest) => void) | undefined;
  nodeList: string[] | undefined;
  readonly conns = new Set<FakeConn>();
  /** Requests kept by `hold`, oldest first (answered ones are removed by take()). */
  held: FakeRequest[] = [];
  /** Every request seen (header only), in arrival order. */
  seen: Request[] = [];
  /** Number of connections ever accepted. */
  accepted = 0;
  /** Objects written (CREATE_AND_WRITE_OBJ / WRITE_OBJ), for reads back; may be shared by a cluster. */
  readonly objects: Map<bigint, Buffer>;
  /** Answer each tick's requests in reverse order. */
  reorder = false;
  /** New connections are not read from until `resumeAll()`. */
  paused: boolean;
  private faults: { f: Fault; seen: number; applied: number }[] = [];
  private reorderBatch: (() => void)[] = [];
  private nextVid = 0x100;
  private waiters: { n: number; resolve: () => void }[] = [];
  private connWaiters: { n: number; resolve: () => void }[] = [];

  private constructor(o: FakeSheepOptions) {
    this.epoch = o.epoch ?? 1;
    this.hold = o.hold ?? false;
    this.onRequest = o.onRequest;
    this.nodeList = o.nodeList;
    this.objects = o.objects ?? new Map();
    this.paused = o.paused ?? false;
    this.server = net.createServer((s) => this.accept(s));
  }

  static async start(o: FakeSheepOptions = {}): Promise<FakeSheep> {
    const f = new FakeSheep(o);
    await f.listen(o.port ?? 0);
    return f;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  private listen(port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, '127.0.0.1', () => {
        this.server.off('error', reject);
        this.port = (this.server.address() as net.AddressInfo).port;
        resolve();
      });
    });
  }

  private accept(s: net.Socket): void {
    const c = new FakeConn(s, this, ++connSerial);
    this.conns.add(c);
    this.accepted++;
    s.setNoDelay(true);
    s.on('data', (chunk: Buffer) => {
      try {
        c.decoder.push(chunk, (h, b) => {
          const req = decodeRequest(h);
          c.requests++;
          this.seen.push(req);
          const r = new FakeRequest(req, new Uint8Array(b), c);
          if (!this.applyFault(r)) {
            if (this.onRequest) this.onRequest(r);
            else if (this.hold) this.held.push(r);
            else r.auto();
          }
          this.wake();
        });
      } catch {
        s.destroy();
      }
    });
    if (this.paused) s.pause();
    s.on('error', () => {});
    s.on('close', () => {
      this.conns.delete(c);
      this.wakeConns();
    });
    this.wakeConns();
  }

  private wake(): void {
    const count = this.onRequest || !this.hold ? this.seen.length : this.held.length;
    this.waiters = this.waiters.filter((w) => {
      if (count >= w.n) {
        w.resolve();
        return false;
      }
      return true;
    });
  }

  private wakeConns(): void {
    this.connWaiters = this.connWaiters.filter((w) => {
      if (this.conns.size === w.n) {
        w.resolve();
        return false;
      }
      return true;
    });
  }

  /** Resolves once `n` requests are held (with `hold`) or seen (otherwise). */
  waitFor(n: number): Promise<void> {
    return new Promise((resolve) => {
      this.waiters.push({ n, resolve });
      this.wake();
    });
  }

  /** Resolves once exactly `n` connections are open. */
  waitConns(n: number): Promise<void> {
    return new Promise((resolve) => {
      this.connWaiters.push({ n, resolve });
      this.wakeConns();
    });
  }

  /** Start reading from every connection (and from new ones). */
  resumeAll(): void {
    this.paused = false;
    for (const c of this.conns) c.resume();
  }

  /** Remove and return the held requests. */
  take(): FakeRequest[] {
    const h = this.held;
    this.held = [];
    return h;
  }

  writeReply(r: FakeRequest, result: number, o: ReplyOptions): void {
    const body = o.body ?? new Uint8Array(0);
    const rsp = responseFor(r.header, result, {
      epoch: o.epoch ?? this.epoch,
      dataLength: o.dataLength ?? body.length,
    });
    if (o.id !== undefined) rsp.id = o.id;
    if (o.opcode !== undefined) rsp.opcode = o.opcode;
    o.patch?.(rsp);
    const h = Buffer.alloc(48);
    encodeResponse(rsp, h);
    const frame = Buffer.concat([h, body]);
    const split = o.split;
    if (split !== undefined && split > 0) {
      const pieces: Uint8Array[] = [];
      for (let i = 0; i < frame.length; i += split) pieces.push(frame.subarray(i, i + split));
      r.conn.writeSlowly(pieces);
    } else r.conn.write(frame);
  }

  /** Install a fault (same semantics as the embedded sheep's `inject`). */
  inject(f: Fault): FaultHandle {
    const entry = { f, seen: 0, applied: 0 };
    this.faults.push(entry);
    return { remove: () => this.faults.splice(this.faults.indexOf(entry) >>> 0, 1) };
  }

  clearFaults(): void {
    this.faults = [];
  }

  /** True when a fault took the request. */
  private applyFault(r: FakeRequest): boolean {
    for (const e of this.faults) {
      const f = e.f;
      if (f.opcode !== undefined && f.opcode !== r.opcode) continue;
      e.seen++;
      if (e.seen <= (f.after ?? 0)) continue;
      if (f.times !== undefined && e.applied >= f.times) continue;
      e.applied++;
      switch (f.kind) {
        case 'delay':
          setTimeout(() => r.auto(), f.ms);
          return true;
        case 'stall':
          return true;
        case 'drop':
          r.conn.destroy();
          return true;
        case 'dropMidFrame': {
          const h = Buffer.alloc(48);
          encodeResponse(
            responseFor(r.header, Result.SUCCESS, { epoch: this.epoch, dataLength: r.header.dataLength }),
            h,
          );
          r.conn.write(r.header.dataLength > 0 ? h : h.subarray(0, 20));
          if (r.header.dataLength > 1) r.conn.write(Buffer.alloc(r.header.dataLength >> 1));
          r.conn.socket.end();
          return true;
        }
        case 'result':
          r.reply(f.result);
          return true;
        case 'unknownId':
          r.reply(Result.SUCCESS, { id: (r.id ^ 0x80000000) >>> 0 });
          return true;
        case 'corruptHeader':
          r.conn.write(Buffer.alloc(48, 0xff));
          return true;
      }
    }
    return false;
  }

  autoReply(r: FakeRequest): void {
    if (this.reorder) {
      const first = this.reorderBatch.length === 0;
      this.reorderBatch.push(() => this.answer(r));
      if (first) {
        setImmediate(() => {
          const batch = this.reorderBatch.reverse();
          this.reorderBatch = [];
          for (const fn of batch) fn();
        });
      }
      return;
    }
    this.answer(r);
  }

  private answer(r: FakeRequest): void {
    const h = r.header;
    if (h.kind === 'obj' && (h.opcode === Op.CREATE_AND_WRITE_OBJ || h.opcode === Op.WRITE_OBJ)) {
      let o = this.objects.get(h.oid);
      if (o === undefined || h.opcode === Op.CREATE_AND_WRITE_OBJ)
        o = Buffer.alloc(Math.max(h.offset + r.body.length, o?.length ?? 0));
      if (o.length < h.offset + r.body.length)
        o = Buffer.concat([o, Buffer.alloc(h.offset + r.body.length - o.length)]);
      o.set(r.body, h.offset);
      this.objects.set(h.oid, o);
      r.reply(Result.SUCCESS);
    } else if (h.opcode === Op.READ_OBJ && h.kind === 'obj') {
      const o = this.objects.get(h.oid);
      const body = o ? o.subarray(h.offset, h.offset + h.dataLength) : patternBody(h.oid, h.offset, h.dataLength);
      r.reply(Result.SUCCESS, { body });
    } else if (h.opcode === Op.NEW_VDI) {
      const vid = this.nextVid++;
      r.reply(Result.SUCCESS, {
        patch: (rsp) => {
          if (rsp.kind === 'vdi') rsp.vdiId = vid;
        },
      });
    } else if (h.opcode === Op.GET_NODE_LIST) {
      const list = this.nodeList ?? [this.address];
      const body = Buffer.alloc(list.length * SD_NODE_SIZE);
      list.forEach((a, i) => {
        const colon = a.lastIndexOf(':');
        const addr = a.slice(0, colon).replace(/^\[|\]$/g, '');
        const port = Number(a.slice(colon + 1));
        encodeSdNode(
          { nid: { addr, port, ioAddr: '', ioPort: 0 }, nrVnodes: 128, zone: i, space: 0n },
          body,
          i * SD_NODE_SIZE,
        );
      });
      r.reply(Result.SUCCESS, {
        body,
        patch: (rsp) => {
          if (rsp.kind === 'node') rsp.nrNodes = list.length;
        },
      });
    } else r.reply(Result.SUCCESS);
  }

  /** Close the listener and every connection (a node going away); `start()` brings it back on the same port. */
  async stop(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const c of this.conns) c.destroy();
    await closed;
  }

  async start(): Promise<void> {
    await this.listen(this.port);
  }

  async close(): Promise<void> {
    for (const c of this.conns) c.destroy();
    if (this.server.listening) await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** Start `n` fake sheep; `t.teardown` closes them. */
export async function fakeCluster(
  t: { teardown: (fn: () => Promise<void> | void) => void },
  n: number,
  o: FakeSheepOptions = {},
): Promise<FakeSheep[]> {
  const list: FakeSheep[] = [];
  for (let i = 0; i < n; i++) list.push(await FakeSheep.start(o));
  t.teardown(async () => {
    for (const f of list) await f.close();
  });
  return list;
}
