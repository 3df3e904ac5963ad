/**
 * An open VDI: byte offsets to object I/O. Reads split per object and run in
 * parallel; holes read as zeros without a request. Writes go to the VDI's own
 * objects (WRITE_OBJ), allocate (CREATE_AND_WRITE_OBJ), or copy-on-write from
 * the parent's object; new allocations are persisted in the inode index with
 * one WRITE_OBJ per contiguous run. A write that races a snapshot taken by
 * someone else (READONLY, or the VDI's vid changed before our index landed)
 * reloads the working VDI and is re-issued against it, so no acknowledged
 * write is lost. See docs/architecture.md, "data path".
 */
import { Readable, Writable } from 'node:stream';
import { Op, Result, StorePolicy } from '../../protocol/constants.js';
import { objRequest } from '../../protocol/header.js';
import { vidToDataOid, vidToVdiOid } from '../../protocol/oid.js';
import type { InodeHeader } from '../../protocol/records.js';
import { InvalidArgumentError, PartialWriteError, ReadOnlyError, SheepdogError, responseError } from '../errors.js';
import { checkBytes } from '../client/names.js';
import { type ObjPolicy, readObject, writeObjectResult } from '../client/objects.js';
import { runBounded } from '../util/bounded.js';
import type { Transport } from '../transport/types.js';
import type { IndexIO, VdiIndex } from './vdi-index.js';

/** What an open VDI needs from the client that opened it. */
export interface VdiHost {
  readonly transport: Transport;
  readonly indexIO: IndexIO;
  /** The working vid of `name` now (GET_VDI_INFO: a cluster op, ordered with snapshots). */
  lookupWorking(name: string): Promise<number>;
  loadInode(vid: number): Promise<{ header: InodeHeader; index: VdiIndex }>;
  releaseLock(vid: number): Promise<void>;
  readonly maxConcurrency: number;
  readonly readonlyRetries: number;
}

/** Declared in lib/errors.ts; re-exported for importers of this module. */
export { PartialWriteError };

interface Piece {
  idx: number;
  /** Offset inside the object. */
  within: number;
  /** Offset inside the caller's buffer. */
  pos: number;
  len: number;
}

const ZERO_BLOCK = new Uint8Array(1 << 16);
/**
 * Largest body of one object request. Objects can be up to 2 GiB (bss 31),
 * far over what a gateway accepts in one frame (our pool and the embedded
 * sheep default to 64 MiB): larger pieces are split within the object.
 */
const MAX_IO = 32 * 2 ** 20;

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
  private header: InodeHeader;
  private index: VdiIndex;
  private readonly host: VdiHost;
  private generation = 0;
  private reloading: Promise<void> | undefined;
  private readonly gates = new Map<number, Promise<void>>();
  /** Objects created but whose index update has not been confirmed: resolves true when it held. */
  private readonly unconfirmed = new Map<number, Promise<boolean>>();
  /** Objects we created (slot = our vid in memory) whose index update failed: the next write re-persists them. */
  private readonly unpersisted = new Set<number>();
  private locked: boolean;
  /** The vid LOCK_VDI locked (a snapshot later moves the handle to a new vid; the lock stays on this one). */
  private readonly lockedVid: number;
  private closed = false;
  private readonly active = new Set<Promise<unknown>>();
  private flushSupported = true;

  /** @internal created by SheepdogClient.openVdi */
  constructor(
    host: VdiHost,
    name: string,
    header: InodeHeader,
    index: VdiIndex,
    o: { snapshot: boolean; locked: boolean },
  ) {
    this.host = host;
    this.name = name;
    this.header = header;
    this.index = index;
    this.snapshot = o.snapshot;
    this.locked = o.locked;
    this.lockedVid = header.vdiId;
    this.blockSizeShift = header.blockSizeShift;
    this.objectSize = 2 ** header.blockSizeShift;
    this.storePolicy = header.storePolicy;
  }

  /** Size in bytes (as when opened or last refreshed). */
  get size(): number {
    return Number(this.header.vdiSize);
  }
  /** The vid this handle reads and writes (changes when a snapshot moves the working VDI). */
  get vid(): number {
    return this.header.vdiId;
  }
  get copies(): number {
    return this.header.nrCopies;
  }
  get copyPolicy(): number {
    return this.header.copyPolicy;
  }
  get isHyper(): boolean {
    return this.storePolicy === StorePolicy.HYPER;
  }
  /** The inode header as last loaded. */
  get inode(): Readonly<InodeHeader> {
    return this.header;
  }

  private get policy(): ObjPolicy {
    return { copies: this.header.nrCopies, copyPolicy: this.header.copyPolicy };
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
    if (offset + length > this.size) {
      throw new InvalidArgumentError(
        `range [${offset}, ${offset + length}) is past the end of VDI ${this.name} (${this.size} bytes)`,
      );
    }
  }

  /** Split a range per object, and large objects (bss > 25) into requests of at most `maxLen` bytes. */
  private pieces(offset: number, length: number, maxLen = Infinity): Piece[] {
    const out: Piece[] = [];
    const os = this.objectSize;
    let pos = 0;
    while (pos < length) {
      const abs = offset + pos;
      const idx = Math.floor(abs / os);
      const within = abs - idx * os;
      const len = Math.min(os - within, length - pos, maxLen);
      out.push({ idx, within, pos, len });
      pos += len;
    }
    return out;
  }

  /** Read `length` bytes at `offset`. Holes read as zeros. */
  async read(offset: number, length: number): Promise<Buffer> {
    this.checkOpen();
    this.checkRange(offset, length);
    const out = Buffer.allocUnsafe(length);
    return this.track(this.readAt(out, offset, out));
  }

  /** Read into `buf` (all of it) from `offset`. */
  async readInto(buf: Uint8Array, offset: number): Promise<void> {
    this.checkOpen();
    this.checkRange(offset, buf.length);
    await this.readAt(buf, offset, undefined);
  }

  /**
   * Fill `buf` from `offset` (checked by the caller); resolves with `ret`.
   * A range inside one object is one request with no fan-out machinery (the
   * common case: this is the per-request hot path of small reads).
   */
  private readAt<T>(buf: Uint8Array, offset: number, ret: T): Promise<T> {
    const os = this.objectSize;
    const idx = Math.floor(offset / os);
    const within = offset - idx * os;
    if (buf.length > 0 && buf.length <= MAX_IO && within + buf.length <= os)
      return this.readPiece(buf, idx, within, ret);
    return runBounded(this.pieces(offset, buf.length, MAX_IO), this.host.maxConcurrency, (p) =>
      this.readPiece(buf.subarray(p.pos, p.pos + p.len), p.idx, p.within, undefined),
    ).then(() => ret);
  }

  /** Read object `idx` from `within` into all of `dst` (zeros for a hole); resolves with `ret`. */
  private async readPiece<T>(dst: Uint8Array, idx: number, within: number, ret: T): Promise<T> {
    const v = this.index.get(idx);
    if (v === 0) {
      dst.fill(0);
      return ret;
    }
    const len = dst.length;
    const h = this.header;
    const body = await readObject(
      this.host.transport,
      vidToDataOid(v, idx),
      within,
      len,
      { readInto: dst },
      { copies: h.nrCopies, copyPolicy: h.copyPolicy },
    );
    if (body.buffer !== dst.buffer || body.byteOffset !== dst.byteOffset) dst.set(body.subarray(0, len));
    if (body.length < len) dst.fill(0, body.length);
    return ret;
  }

  /** Write all of `data` at `offset`. */
  async write(data: Uint8Array, offset: number): Promise<void> {
    this.checkOpen();
    if (!(data instanceof Uint8Array)) throw new InvalidArgumentError('data must be a Buffer or Uint8Array');
    this.checkRange(offset, data.length);
    if (this.snapshot) throw new ReadOnlyError(`VDI ${this.name} is open as a snapshot`);
    return this.track(this.writeAt(data, offset));
  }

  private writeAt(data: Uint8Array, offset: number): Promise<void> {
    // Fast path: a range inside one object this VDI already owns, with no
    // allocation of it in progress (no gate) and none awaiting confirmation:
    // a plain WRITE_OBJ, as the general path below would send, without its
    // bookkeeping (arrays, a confirmation promise, the fan-out).
    const os = this.objectSize;
    const idx = Math.floor(offset / os);
    const within = offset - idx * os;
    if (
      data.length > 0 &&
      data.length <= MAX_IO &&
      within + data.length <= os &&
      this.index.get(idx) === this.header.vdiId &&
      !this.gates.has(idx) &&
      !this.unconfirmed.has(idx) &&
      !this.unpersisted.has(idx)
    ) {
      return this.overwrite(data, offset, idx, within);
    }
    return this.writeGeneral(data, offset, 0);
  }

  /** The fast path of writeAt; a READONLY answer continues in the general path, as its first attempt would. */
  private async overwrite(data: Uint8Array, offset: number, idx: number, within: number): Promise<void> {
    const h = this.header;
    const gen = this.generation;
    const r = await writeObjectResult(this.host.transport, vidToDataOid(h.vdiId, idx), within, data, {
      policy: { copies: h.nrCopies, copyPolicy: h.copyPolicy },
    });
    if (r === Result.SUCCESS) return;
    if (r !== Result.READONLY) throw responseError(r, `write to ${this.name}`);
    if (this.host.readonlyRetries <= 0) {
      throw new ReadOnlyError(`write to ${this.name}: the VDI kept being snapshotted (1 attempts)`);
    }
    await this.reload(gen);
    return this.writeGeneral(data, offset, 1);
  }

  private async writeGeneral(data: Uint8Array, offset: number, firstAttempt: number): Promise<void> {
    const pieces = this.pieces(offset, data.length, MAX_IO);
    for (let attempt = firstAttempt; ; attempt++) {
      const vid = this.header.vdiId;
      const gen = this.generation;
      const created: number[] = [];
      const waits: Promise<boolean>[] = [];
      const failed: Piece[] = [];
      let stale = false;
      let firstError: unknown;
      let settle: (ok: boolean) => void = () => {};
      const confirmed = new Promise<boolean>((r) => {
        settle = r;
      });
      confirmed.catch(() => {});
      try {
        await runBounded(pieces, this.host.maxConcurrency, async (p) => {
          try {
            const r = await this.writePiece(p, data, vid, created, waits, confirmed);
            if (r === Result.READONLY) stale = true;
            else if (r !== Result.SUCCESS) throw responseError(r, `write to ${this.name}`);
          } catch (e) {
            failed.push(p);
            firstError ??= e;
          }
        });
        if (created.length > 0 && !stale) {
          try {
            await this.index.persist(this.host.indexIO, vidToVdiOid(vid), created);
            for (const idx of created) this.unpersisted.delete(idx);
          } catch (e) {
            // Our memory names these objects but the inode may not: later
            // writes to them must persist the slots again (not the fast path).
            for (const idx of created) this.unpersisted.add(idx);
            for (const p of pieces) if (created.includes(p.idx)) failed.push(p);
            firstError ??= e;
          }
          if (firstError === undefined) {
            // Fence: a snapshot taken after our objects were created but before
            // our index landed copied the old index. GET_VDI_INFO is a cluster
            // op, ordered after any such snapshot.
            try {
              if ((await this.host.lookupWorking(this.name)) !== vid) stale = true;
            } catch (e) {
              // Unconfirmed: nobody may count on these objects being indexed.
              for (const p of pieces) if (created.includes(p.idx)) failed.push(p);
              firstError = e;
            }
          }
        }
        if (!stale) {
          for (const w of await Promise.all(waits)) if (!w) stale = true;
        }
      } catch (e) {
        firstError ??= e;
      } finally {
        settle(!stale && firstError === undefined);
        for (const idx of created) if (this.unconfirmed.get(idx) === confirmed) this.unconfirmed.delete(idx);
      }
      if (firstError !== undefined) {
        if (pieces.length === 1) throw firstError;
        throw new PartialWriteError(
          failed.map((p) => ({ offset: offset + p.pos, length: p.len })).sort((a, b) => a.offset - b.offset),
          firstError,
        );
      }
      if (!stale) return;
      if (attempt >= this.host.readonlyRetries) {
        throw new ReadOnlyError(`write to ${this.name}: the VDI kept being snapshotted (${attempt + 1} attempts)`);
      }
      await this.reload(gen);
    }
  }

  private async writePiece(
    p: Piece,
    data: Uint8Array,
    vid: number,
    created: number[],
    waits: Promise<boolean>[],
    confirmed: Promise<boolean>,
  ): Promise<number> {
    const t = this.host.transport;
    const chunk = data.subarray(p.pos, p.pos + p.len);
    for (;;) {
      const gate = this.gates.get(p.idx);
      if (gate) {
        await gate;
        continue;
      }
      if (this.header.vdiId !== vid) return Result.READONLY; // reloaded meanwhile: redo against the new vid
      const slot = this.index.get(p.idx);
      const oid = vidToDataOid(vid, p.idx);
      if (slot === vid) {
        const pending = this.unconfirmed.get(p.idx);
        const r = await writeObjectResult(t, oid, p.within, chunk, { policy: this.policy });
        if (pending) waits.push(pending);
        if (r === Result.SUCCESS && this.unpersisted.has(p.idx) && this.header.vdiId === vid) created.push(p.idx);
        return r;
      }
      let open: () => void = () => {};
      this.gates.set(
        p.idx,
        new Promise<void>((r) => {
          open = r;
        }),
      );
      try {
        const r = await writeObjectResult(t, oid, p.within, chunk, {
          create: true,
          cowOid: slot === 0 ? 0n : vidToDataOid(slot, p.idx),
          policy: this.policy,
        });
        if (r !== Result.SUCCESS) return r;
        // Reloaded while we created: the object is in the old vid, which the
        // new working VDI's index may not name. Redo the write against it.
        if (this.header.vdiId !== vid) return Result.READONLY;
        this.index.set(p.idx, vid);
        created.push(p.idx);
        this.unconfirmed.set(p.idx, confirmed);
        return r;
      } finally {
        this.gates.delete(p.idx);
        open();
      }
    }
  }

  /** Re-read the working VDI (after a snapshot moved it), once per generation. */
  private async reload(gen: number): Promise<void> {
    if (this.generation !== gen) return;
    if (!this.reloading) {
      this.reloading = (async () => {
        try {
          const vid = await this.host.lookupWorking(this.name);
          const { header, index } = await this.host.loadInode(vid);
          if (vid === this.header.vdiId) {
            // Same working VDI (a refresh): objects this handle created may
            // not be in the inode yet (index update in flight, or failed):
            // keep them, or a later write would create them over again.
            for (const [idx, v] of this.index.entries()) if (v === vid && index.get(idx) !== vid) index.set(idx, vid);
          } else {
            this.unpersisted.clear();
          }
          this.header = header;
          this.index = index;
          this.generation++;
        } finally {
          this.reloading = undefined;
        }
      })();
    }
    await this.reloading;
  }

  /** Reload the inode (size, vid, index) from the cluster. */
  async refresh(): Promise<void> {
    this.checkOpen();
    if (this.snapshot) {
      const { header, index } = await this.host.loadInode(this.header.vdiId);
      this.header = header;
      this.index = index;
      this.generation++;
      return;
    }
    await this.reload(this.generation);
  }

  /**
   * Discard a range: whole objects this VDI maps are unmapped (and reclaimed
   * by sheep); partial objects that are allocated get zeros written. The
   * range reads as zeros afterwards.
   */
  async discard(offset: number, length: number): Promise<void> {
    this.checkOpen();
    this.checkRange(offset, length);
    if (this.snapshot) throw new ReadOnlyError(`VDI ${this.name} is open as a snapshot`);
    return this.track(this.discardAt(offset, length));
  }

  private async discardAt(offset: number, length: number): Promise<void> {
    const pieces = this.pieces(offset, length);
    const whole = pieces.filter(
      (p) => p.len === this.objectSize || (p.within === 0 && offset + p.pos + p.len === this.size),
    );
    const partial = pieces.filter((p) => !whole.includes(p));
    for (const p of partial) {
      if (this.index.get(p.idx) !== 0) await this.writeAt(new Uint8Array(p.len), offset + p.pos);
    }
    const unmap = whole.filter((p) => this.index.get(p.idx) !== 0).map((p) => p.idx);
    if (unmap.length === 0) return;
    if (this.isHyper) {
      // Hyper volumes have no refcounts: DISCARD_OBJ removes own objects and
      // clears the entry server-side (hyper-aware); others just lose the entry.
      const vid = this.header.vdiId;
      const own = unmap.filter((i) => this.index.get(i) === vid);
      await runBounded(own, this.host.maxConcurrency, async (idx) => {
        const r = await this.host.transport.request(objRequest(Op.DISCARD_OBJ, { oid: vidToDataOid(vid, idx) }));
        if (r.header.result !== Result.SUCCESS && r.header.result !== Result.NO_OBJ) {
          throw responseError(r.header.result, `discard of ${this.name}`, r.node);
        }
      });
      for (const i of unmap) this.index.set(i, 0);
      const others = unmap.filter((i) => !own.includes(i));
      if (others.length > 0) await this.index.persist(this.host.indexIO, vidToVdiOid(vid), others);
      return;
    }
    for (const i of unmap) this.index.set(i, 0);
    await this.index.persist(this.host.indexIO, vidToVdiOid(this.header.vdiId), unmap);
  }

  /**
   * Flush. Sheep 1.0 has no object cache: an acknowledged write is already on
   * all replicas, and FLUSH_VDI answers INVALID_PARMS. We send it once; on
   * INVALID_PARMS flush only waits for this handle's writes in flight.
   */
  async flush(): Promise<void> {
    this.checkOpen();
    await Promise.allSettled([...this.active]);
    if (!this.flushSupported) return;
    const r = await this.host.transport.request(
      objRequest(Op.FLUSH_VDI, { oid: vidToVdiOid(this.header.vdiId), flags: 0 }),
    );
    if (r.header.result === Result.INVALID_PARMS) this.flushSupported = false;
    else if (r.header.result !== Result.SUCCESS) throw responseError(r.header.result, `flush of ${this.name}`, r.node);
  }

  /** Allocated objects: [object index, owning vid], ascending. */
  *allocation(): Iterable<[number, number]> {
    yield* this.index.entries();
  }

  /** Byte ranges that hold data (allocated objects), clipped to the VDI size. */
  allocatedRanges(): { offset: number; length: number }[] {
    const out: { offset: number; length: number }[] = [];
    for (const [idx] of this.index.entries()) {
      const off = idx * this.objectSize;
      if (off >= this.size) continue;
      const len = Math.min(this.objectSize, this.size - off);
      const last = out.at(-1);
      if (last && last.offset + last.length === off) last.length += len;
      else out.push({ offset: off, length: len });
    }
    return out;
  }

  /** Wait for this handle's operations, release its lock (if it took one), and close it. */
  async close(): Promise<void> {
    if (this.closed) return;
    await Promise.allSettled([...this.active]);
    this.closed = true;
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
    for (const p of this.pieces(offset, length)) if (this.index.get(p.idx) !== 0) return false;
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
