/**
 * An open VDI: byte offsets to object I/O. Reads split per object and run in
 * parallel; holes read as zeros without a request. Writes, discards and
 * write-zeroes go through the write path (write-path.ts: per-object gates,
 * index confirmation, the snapshot fence), which every handle of the same
 * VDI in one client shares (core.ts). See docs/architecture.md, "the write
 * path".
 *
 * Buffers: the SDK never reads a caller's buffer after the call's promise
 * settled, and a write's promise does not settle while its bytes may still
 * be sent. A buffer given to `readInto` is not written after its promise
 * settled.
 */
import { Readable, Writable } from 'node:stream';
import { Op, Result, StorePolicy } from '../../protocol/constants.js';
import { objRequest } from '../../protocol/header.js';
import { vidToDataOid, vidToVdiOid } from '../../protocol/oid.js';
import type { InodeHeader } from '../../protocol/records.js';
import {
  InvalidArgumentError,
  NoObjError,
  PartialWriteError,
  ReadOnlyError,
  SheepdogError,
  responseError,
} from '../errors.js';
import { checkBytes } from '../client/names.js';
import type { RequestOptions } from '../transport/types.js';
import { runBounded } from '../util/bounded.js';
import { type IoOptions, NO_CALL_SIGNAL, abortedError, callSignal } from '../util/signal.js';
import type { VdiHost, VdiCore } from './core.js';
import { MAX_IO, discardRange, splitPieces, writeRange, writeZeroes } from './write-path.js';

export type { VdiHost } from './core.js';
export type { IoOptions } from '../util/signal.js';
/** Declared in lib/errors.ts; re-exported for importers of this module. */
export { PartialWriteError };

const ZERO_BLOCK = new Uint8Array(1 << 16);

export interface ReadStreamOptions {
  start?: number;
  /** Inclusive end offset, like fs.createReadStream. */
  end?: number;
  /** Bytes per read, default one object. */
  chunkSize?: number;
  highWaterMark?: number;
}

export interface WriteStreamOptions {
  start?: number;
  /** Skip writing blocks that are all zero where the VDI has nothing allocated. */
  skipZeroes?: boolean;
  /** Bytes per write, default one object. */
  chunkSize?: number;
  /** Writes in flight, default 4. */
  concurrency?: number;
}

export class Vdi {
  readonly name: string;
  /** True when opened as a snapshot (read-only). */
  readonly snapshot: boolean;
  readonly objectSize: number;
  readonly blockSizeShift: number;
  readonly storePolicy: number;
  private readonly state: VdiCore;
  private locked: boolean;
  /** The vid LOCK_VDI locked (a snapshot later moves the handle to a new vid; the lock stays on this one). */
  private readonly lockedVid: number;
  private closed = false;
  private readonly active = new Set<Promise<unknown>>();
  private flushSupported = true;

  /** @internal created by SheepdogClient.openVdi */
  constructor(state: VdiCore, o: { locked: boolean }) {
    const header = state.header;
    this.state = state;
    state.refs++;
    this.name = state.name;
    this.snapshot = state.snapshot;
    this.locked = o.locked;
    this.lockedVid = header.vdiId;
    this.blockSizeShift = header.blockSizeShift;
    this.objectSize = 2 ** header.blockSizeShift;
    this.storePolicy = header.storePolicy;
  }

  private get host(): VdiHost {
    return this.state.host;
  }

  /**
   * Size in bytes (as when opened or last refreshed). Exact up to 2^53 - 1
   * (8 PiB); a larger hyper volume's size is `inode.vdiSize` (bigint), and
   * I/O reaches its first 2^53 - 1 bytes (offsets are `number`s, see checkRange).
   */
  get size(): number {
    return Number(this.state.header.vdiSize);
  }
  /** The vid this handle reads and writes (changes when a snapshot moves the working VDI). */
  get vid(): number {
    return this.state.header.vdiId;
  }
  get copies(): number {
    return this.state.header.nrCopies;
  }
  get copyPolicy(): number {
    return this.state.header.copyPolicy;
  }
  get isHyper(): boolean {
    return this.storePolicy === StorePolicy.HYPER;
  }
  /** The inode header as last loaded. */
  get inode(): Readonly<InodeHeader> {
    return this.state.header;
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.active.add(p);
    const done = (): void => {
      this.active.delete(p);
    };
    p.then(done, done);
    return p;
  }

  private checkOpen(): void {
    if (this.closed) throw new SheepdogError(`VDI ${this.name} is closed`, 'SHEEPDOG_ERR_CLOSED');
  }

  private checkRange(offset: number, length: number): void {
    checkBytes(offset, 'offset');
    checkBytes(length, 'length');
    // offset + length must be exact (past 2^53 doubles skip integers); below
    // that, comparing with Number(vdiSize) is exact too (a size over 2^53 - 1
    // converts to at least 2^53).
    if (offset + length > Number.MAX_SAFE_INTEGER) {
      throw new InvalidArgumentError(
        `range [${offset}, +${length}) ends past 2^53 - 1: VDI I/O addresses bytes below 2^53 (8 PiB)`,
      );
    }
    if (offset + length > this.size) {
      throw new InvalidArgumentError(
        `range [${offset}, ${offset + length}) is past the end of VDI ${this.name} (${this.size} bytes)`,
      );
    }
  }

  private checkWritable(): void {
    if (this.snapshot) throw new ReadOnlyError(`VDI ${this.name} is open as a snapshot`);
  }

  /** Run `fn` under the call's signal/timeout, tracked by close(). */
  private call<T>(
    o: IoOptions | undefined,
    what: string,
    fn: (signal: AbortSignal | undefined) => Promise<T>,
  ): Promise<T> {
    const cs = callSignal(o, what);
    if (cs.signal?.aborted) {
      cs.done();
      return Promise.reject(abortedError(cs.signal, what));
    }
    const p = fn(cs.signal);
    if (cs !== NO_CALL_SIGNAL) p.then(cs.done, cs.done);
    return this.track(p);
  }

  /**
   * Read `length` bytes at `offset`. Holes read as zeros.
   *
   * A range inside one object comes back as the reply's own buffer (received
   * straight from the socket, allocated when the reply arrives rather than
   * when the request leaves, so a deep queue holds no buffers waiting); a
   * longer range is assembled into one buffer.
   */
  async read(offset: number, length: number, o?: IoOptions): Promise<Buffer> {
    this.checkOpen();
    this.checkRange(offset, length);
    const os = this.objectSize;
    const idx = Math.floor(offset / os);
    const within = offset - idx * os;
    if (length > 0 && length <= MAX_IO && within + length <= os) {
      if (o === undefined) return this.track(this.readPiece(undefined, idx, within, length, undefined, undefined));
      return this.call(o, `read of ${this.name}`, (signal) =>
        this.readPiece(undefined, idx, within, length, undefined, signal),
      );
    }
    const out = Buffer.allocUnsafe(length);
    if (o === undefined) return this.track(this.readAt(out, offset, out, undefined));
    return this.call(o, `read of ${this.name}`, (signal) => this.readAt(out, offset, out, signal));
  }

  /** Read into `buf` (all of it) from `offset`. */
  async readInto(buf: Uint8Array, offset: number, o?: IoOptions): Promise<void> {
    this.checkOpen();
    this.checkRange(offset, buf.length);
    if (o === undefined) return this.track(this.readAt(buf, offset, undefined, undefined));
    return this.call(o, `read of ${this.name}`, (signal) => this.readAt(buf, offset, undefined, signal));
  }

  /**
   * Fill `buf` from `offset` (checked by the caller); resolves with `ret`.
   * A range inside one object is one request with no fan-out machinery (the
   * common case: this is the per-request hot path of small reads).
   */
  private readAt<T>(buf: Uint8Array, offset: number, ret: T, signal: AbortSignal | undefined): Promise<T> {
    const os = this.objectSize;
    const idx = Math.floor(offset / os);
    const within = offset - idx * os;
    if (buf.length > 0 && buf.length <= MAX_IO && within + buf.length <= os)
      return this.readPiece(buf, idx, within, buf.length, ret, signal);
    return runBounded(splitPieces(os, offset, buf.length, MAX_IO), this.host.maxConcurrency, (p) =>
      this.readPiece(buf.subarray(p.pos, p.pos + p.len), p.idx, p.within, p.len, undefined, signal),
    ).then(() => ret);
  }

  /**
   * Read `len` bytes of object `idx` from `within` (zeros for a hole): into
   * all of `dst`, resolving with `ret`; or, without `dst`, into a new Buffer
   * (the reply's own body when it is exactly that), resolving with it.
   */
  private readPiece(
    dst: undefined,
    idx: number,
    within: number,
    len: number,
    ret: undefined,
    signal: AbortSignal | undefined,
  ): Promise<Buffer>;
  private readPiece<T>(
    dst: Uint8Array,
    idx: number,
    within: number,
    len: number,
    ret: T,
    signal: AbortSignal | undefined,
  ): Promise<T>;
  private async readPiece<T>(
    dst: Uint8Array | undefined,
    idx: number,
    within: number,
    len: number,
    ret: T,
    signal: AbortSignal | undefined,
  ): Promise<T | Buffer> {
    const st = this.state;
    for (let attempt = 0; ; attempt++) {
      const v = st.index.get(idx);
      if (v === 0) {
        if (dst === undefined) return Buffer.alloc(len);
        dst.fill(0);
        return ret;
      }
      const h = st.header;
      const gen = st.generation;
      const opts: RequestOptions =
        dst === undefined
          ? signal === undefined
            ? {}
            : { signal }
          : signal === undefined
            ? { readInto: dst }
            : { readInto: dst, signal };
      const r = await this.host.transport.request(
        objRequest(Op.READ_OBJ, {
          oid: vidToDataOid(v, idx),
          offset: within,
          dataLength: len,
          copies: h.nrCopies,
          copyPolicy: h.copyPolicy,
        }),
        undefined,
        opts,
      );
      const res = r.header.result;
      if (res === Result.SUCCESS) {
        const body = r.body;
        if (dst === undefined) return ownedBody(body, len);
        if (body.buffer !== dst.buffer || body.byteOffset !== dst.byteOffset) dst.set(body.subarray(0, len));
        if (body.length < len) dst.fill(0, body.length);
        return ret;
      }
      // NO_OBJ for an object the index names: it was unmapped meanwhile (a
      // discard, here or elsewhere), or the cluster is recovering it. Look
      // again at the index (reloaded), bounded.
      if (res !== Result.NO_OBJ || attempt >= this.host.transientRetries) {
        if (res === Result.NO_OBJ) throw new NoObjError(`read of ${this.name}: object ${idx} is indexed but missing`);
        throw responseError(res, `read of ${this.name}`, r.node);
      }
      if (st.index.get(idx) === v && st.generation === gen) {
        await new Promise((res2) => setTimeout(res2, Math.min(10 * 2 ** attempt, 1000)));
        if (this.snapshot) await st.refreshSnapshot(signal);
        else await st.reload(gen, signal);
      }
    }
  }

  /** Write all of `data` at `offset`. */
  async write(data: Uint8Array, offset: number, o?: IoOptions): Promise<void> {
    this.checkOpen();
    if (!(data instanceof Uint8Array)) throw new InvalidArgumentError('data must be a Buffer or Uint8Array');
    this.checkRange(offset, data.length);
    this.checkWritable();
    if (o === undefined) return this.track(writeRange(this.state, data, offset));
    return this.call(o, `write to ${this.name}`, (signal) => writeRange(this.state, data, offset, { signal }));
  }

  /** Reload the inode (size, vid, index) from the cluster. */
  async refresh(o?: IoOptions): Promise<void> {
    this.checkOpen();
    const st = this.state;
    return this.call(o, `refresh of ${this.name}`, (signal) =>
      this.snapshot ? st.refreshSnapshot(signal) : st.reload(st.generation, signal),
    );
  }

  /**
   * Discard a range: whole objects this VDI maps are unmapped (and reclaimed
   * by sheep); partial objects that are allocated get zeros written. The
   * range reads as zeros afterwards.
   */
  async discard(offset: number, length: number, o?: IoOptions): Promise<void> {
    this.checkOpen();
    this.checkRange(offset, length);
    this.checkWritable();
    return this.call(o, `discard of ${this.name}`, (signal) => discardRange(this.state, offset, length, { signal }));
  }

  /**
   * Make a range read as zeros. By default whole objects are unmapped, as
   * discard does; with `{ unmap: false }` zeros are written (allocating the
   * range: NBD's NO_HOLE).
   */
  async writeZeroes(offset: number, length: number, o: IoOptions & { unmap?: boolean } = {}): Promise<void> {
    this.checkOpen();
    this.checkRange(offset, length);
    this.checkWritable();
    const unmap = o.unmap ?? true;
    return this.call(o, `write-zeroes of ${this.name}`, (signal) =>
      unmap ? discardRange(this.state, offset, length, { signal }) : writeZeroes(this.state, offset, length, signal),
    );
  }

  /**
   * Flush. Sheep 1.0 has no object cache: an acknowledged write is already on
   * all replicas, and FLUSH_VDI answers INVALID_PARMS. We send it once; on
   * INVALID_PARMS flush only waits for this handle's writes in flight.
   */
  async flush(o?: IoOptions): Promise<void> {
    this.checkOpen();
    return this.call(o, `flush of ${this.name}`, async (signal) => {
      await Promise.allSettled([...this.active]);
      if (!this.flushSupported) return;
      const r = await this.host.transport.request(
        objRequest(Op.FLUSH_VDI, { oid: vidToVdiOid(this.vid), flags: 0 }),
        undefined,
        signal === undefined ? {} : { signal },
      );
      if (r.header.result === Result.INVALID_PARMS) this.flushSupported = false;
      else if (r.header.result !== Result.SUCCESS)
        throw responseError(r.header.result, `flush of ${this.name}`, r.node);
    });
  }

  /** Allocated objects: [object index, owning vid], ascending. */
  *allocation(): Iterable<[number, number]> {
    yield* this.state.index.entries();
  }

  /** The vid owning object `idx` (its own vid, a parent snapshot's, or 0 for a hole): one index lookup. */
  objectOwner(idx: number): number {
    return this.state.index.get(idx);
  }

  /** Byte ranges that hold data (allocated objects), clipped to the VDI size. */
  allocatedRanges(): { offset: number; length: number }[] {
    const out: { offset: number; length: number }[] = [];
    for (const [idx] of this.state.index.entries()) {
      // exact: idx < 2^32 and a power-of-two object size (2^54 at most)
      const off = idx * this.objectSize;
      const left = this.state.header.vdiSize - BigInt(off);
      if (left <= 0n) continue;
      const len = left < BigInt(this.objectSize) ? Number(left) : this.objectSize;
      const last = out.at(-1);
      if (last && last.offset + last.length === off) last.length += len;
      else out.push({ offset: off, length: len });
    }
    return out;
  }

  /** Wait for this handle's operations, release its lock (if it took one), and close it. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.active]);
    if (--this.state.refs === 0) this.host.forget?.(this.state);
    if (this.locked) {
      this.locked = false;
      await this.host.releaseLock(this.lockedVid);
    }
  }

  /**
   * A Readable of the VDI's bytes from `start` to `end` (inclusive). Reads
   * run ahead (`concurrency` chunks in flight) and are pushed in order;
   * memory stays bounded by the stream's highWaterMark plus the read-ahead.
   */
  createReadStream(o: ReadStreamOptions & { concurrency?: number } = {}): Readable {
    this.checkOpen();
    const start = o.start ?? 0;
    const end = o.end ?? this.size - 1;
    checkBytes(start, 'start');
    if (end >= this.size || end < start - 1) throw new InvalidArgumentError(`end ${end} is outside VDI ${this.name}`);
    const chunk = o.chunkSize ?? Math.min(this.objectSize, MAX_IO);
    checkBytes(chunk, 'chunkSize', { min: 1 });
    const depth = o.concurrency ?? 4;
    let next = start;
    const queue: Promise<Buffer>[] = [];
    let pumping = false;
    const fill = (): void => {
      while (queue.length < depth && next <= end) {
        const n = Math.min(chunk - (next % chunk), end + 1 - next);
        const p = this.read(next, n);
        p.catch(() => {});
        queue.push(p);
        next += n;
      }
    };
    const stream = new Readable({
      highWaterMark: o.highWaterMark ?? chunk,
      read: () => {
        if (pumping) return;
        fill();
        const head = queue.shift();
        if (!head) {
          stream.push(null);
          return;
        }
        pumping = true;
        head.then(
          (b) => {
            pumping = false;
            const more = stream.push(b);
            if (queue.length === 0 && next > end) stream.push(null);
            else if (more) stream.read(0);
          },
          (e: unknown) => {
            pumping = false;
            stream.destroy(e as Error);
          },
        );
      },
    });
    return stream;
  }

  /**
   * A Writable that writes the bytes it is given at `start` onwards, in
   * object-aligned chunks with `concurrency` writes in flight (backpressure:
   * the stream's callback waits when that many are in flight). With
   * `skipZeroes`, all-zero chunks over unallocated objects are skipped
   * (sparse import).
   */
  createWriteStream(o: WriteStreamOptions = {}): Writable {
    this.checkOpen();
    if (this.snapshot) throw new ReadOnlyError(`VDI ${this.name} is open as a snapshot`);
    const start = o.start ?? 0;
    checkBytes(start, 'start');
    const chunk = o.chunkSize ?? Math.min(this.objectSize, MAX_IO);
    checkBytes(chunk, 'chunkSize', { min: 1 });
    if (chunk > 2 ** 30) throw new InvalidArgumentError(`chunkSize must be at most 1 GiB, got ${chunk}`);
    const depth = o.concurrency ?? 4;
    let pos = start; // offset of buf[0]
    let buf = Buffer.allocUnsafe(chunk);
    let fill = 0;
    const inflight = new Set<Promise<void>>();
    let failure: Error | undefined;
    const dispatch = (data: Buffer, at: number): void => {
      if (o.skipZeroes && isZero(data) && this.unallocated(at, data.length)) return;
      const p = this.write(data, at).then(
        () => {
          inflight.delete(p);
        },
        (e: unknown) => {
          inflight.delete(p);
          failure ??= e as Error;
        },
      );
      inflight.add(p);
    };
    const room = async (): Promise<void> => {
      while (inflight.size >= depth) await Promise.race(inflight);
      if (failure) throw failure;
    };
    return new Writable({
      highWaterMark: chunk,
      write: (data: Buffer, _enc, cb) => {
        (async () => {
          let off = 0;
          while (off < data.length) {
            if (failure) throw failure;
            const limit = chunk - (pos % chunk); // keep chunks object-aligned
            const n = Math.min(limit - fill, data.length - off);
            if (pos + fill + n > this.size) {
              throw new InvalidArgumentError(`write stream passes the end of VDI ${this.name} (${this.size} bytes)`);
            }
            data.copy(buf, fill, off, off + n);
            fill += n;
            off += n;
            if (fill === limit) {
              await room();
              dispatch(buf.subarray(0, fill), pos);
              pos += fill;
              buf = Buffer.allocUnsafe(chunk);
              fill = 0;
            }
          }
        })().then(() => cb(), cb);
      },
      final: (cb) => {
        (async () => {
          if (fill > 0) {
            await room();
            dispatch(buf.subarray(0, fill), pos);
            pos += fill;
            fill = 0;
          }
          await Promise.all(inflight);
          if (failure) throw failure;
        })().then(() => cb(), cb);
      },
    });
  }

  private unallocated(offset: number, length: number): boolean {
    for (const p of splitPieces(this.objectSize, offset, length)) if (this.state.index.get(p.idx) !== 0) return false;
    return true;
  }
}

function isZero(b: Uint8Array): boolean {
  for (let off = 0; off < b.length; off += ZERO_BLOCK.length) {
    const n = Math.min(ZERO_BLOCK.length, b.length - off);
    if (Buffer.compare(b.subarray(off, off + n), ZERO_BLOCK.subarray(0, n)) !== 0) return false;
  }
  return true;
}

/**
 * A reply body as the Buffer `read()` returns: the body itself when it is
 * exactly `len` bytes (the transport gives each reply body memory of its
 * own: a long one an ArrayBuffer of its own, a short one a slice of a slab
 * that no other body shares), else a copy padded with zeros.
 */
function ownedBody(body: Uint8Array, len: number): Buffer {
  if (body.length === len) return Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, len);
  const out = Buffer.alloc(len);
  out.set(body.subarray(0, Math.min(len, body.length)));
  return out;
}
