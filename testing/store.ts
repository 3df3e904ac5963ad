/**
 * The object store of the embedded sheep: every object is a sparse map of
 * 64 KiB chunks, so a 12 MiB inode or a preallocated 4 MiB data object costs
 * nothing until bytes are written into it, and ranges never written read as
 * zeros (like the sparse files of sheep's plain store). Chunks that would
 * hold only zeros are not allocated. One store holds the objects of the whole
 * cluster (no placement, no replicas: see docs/embedded-sheep.md).
 *
 * An optional `StoreBackend` sees every mutation (the directory persistence).
 */
import v8 from 'node:v8';
import vm from 'node:vm';
import { LEDGER_BIT } from '../protocol/oid.js';

export const CHUNK_SHIFT = 16;
export const CHUNK_SIZE = 1 << CHUNK_SHIFT;
const CHUNK_MASK = CHUNK_SIZE - 1;

const ZEROS = Buffer.alloc(CHUNK_SIZE);
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * Chunks come from 64 MiB slabs, not one allocation each: a 64 KiB
 * allocation lands in malloc's heap, which keeps the pages after free (a
 * server that stored 4 GiB kept 4 GiB of RSS after every VDI was deleted),
 * while a slab is above glibc's largest mmap threshold, so it is mmapped and
 * unmapped as a whole once every chunk in it is dead. A slot is reused only
 * after the garbage collector finalised the chunk that held it, so nothing
 * still referencing a chunk (a persistence write, a copy) can see it reused.
 * Large releases (objects removed, chunks zeroed) ask for a collection, so an
 * idle server gives the memory back too.
 */
const SLAB_CHUNKS = 1024;
interface Slab {
  buf: ArrayBuffer;
  free: number[];
  next: number;
  live: number;
}
const slabs = new Set<Slab>();
let current: Slab | undefined;
const finalizer = new FinalizationRegistry<{ slab: Slab; slot: number }>(({ slab, slot }) => {
  slab.live--;
  if (slab.live === 0 && slab !== current) slabs.delete(slab);
  else slab.free.push(slot);
});

function allocChunk(): Uint8Array {
  let slab = current;
  if (!slab || (slab.free.length === 0 && slab.next === SLAB_CHUNKS)) {
    slab = [...slabs].find((x) => x.free.length > 0);
    if (!slab) {
      slab = { buf: new ArrayBuffer(SLAB_CHUNKS * CHUNK_SIZE), free: [], next: 0, live: 0 };
      slabs.add(slab);
    }
    current = slab;
  }
  const reused = slab.free.pop();
  const slot = reused ?? slab.next++;
  const c = new Uint8Array(slab.buf, slot * CHUNK_SIZE, CHUNK_SIZE);
  if (reused !== undefined) c.fill(0);
  slab.live++;
  finalizer.register(c, { slab, slot });
  return c;
}

let released = 0;
let gcTimer: NodeJS.Timeout | undefined;
let gcFn: (() => void) | undefined | null;
/** A full collection soon after 256 MiB or more of chunks were dropped (see allocChunk). */
function releasedBytes(n: number): void {
  released += n;
  if (released < 256 * 2 ** 20 || gcTimer) return;
  gcTimer = setTimeout(() => {
    gcTimer = undefined;
    released = 0;
    if (gcFn === undefined) {
      try {
        // The documented way to reach gc() without --expose-gc on the command line.
        v8.setFlagsFromString('--expose-gc');
        gcFn = vm.runInNewContext('gc') as () => void;
      } catch {
        gcFn = null;
      }
    }
    gcFn?.();
    // The finalizers run after that collection; the slabs they drop go in the next.
    setTimeout(() => gcFn?.(), 100).unref();
  }, 200);
  gcTimer.unref();
}

/** True when every byte of `b` is zero (memcmp against a zero page, CHUNK_SIZE at a time). */
export function isZero(b: Uint8Array): boolean {
  for (let o = 0; o < b.length; o += CHUNK_SIZE) {
    const n = Math.min(CHUNK_SIZE, b.length - o);
    if (Buffer.compare(b.subarray(o, o + n), ZEROS.subarray(0, n)) !== 0) return false;
  }
  return true;
}

export class SparseObject {
  /** Logical size: the object size it was created with, grown by writes past it. */
  size: number;
  readonly chunks = new Map<number, Uint8Array>();

  constructor(size: number) {
    this.size = size;
  }

  get allocated(): number {
    return this.chunks.size * CHUNK_SIZE;
  }

  /** Copy `len` bytes from `off` into `out` at `outOff`; holes are zeros. */
  readInto(off: number, len: number, out: Uint8Array, outOff = 0): void {
    let done = 0;
    while (done < len) {
      const pos = off + done;
      const ci = Math.floor(pos / CHUNK_SIZE);
      const within = pos & CHUNK_MASK;
      const n = Math.min(CHUNK_SIZE - within, len - done);
      const c = this.chunks.get(ci);
      if (c) out.set(c.subarray(within, within + n), outOff + done);
      else out.fill(0, outOff + done, outOff + done + n);
      done += n;
    }
  }

  read(off: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    // Fresh arrays are zeroed: only copy the chunks that exist.
    let done = 0;
    while (done < len) {
      const pos = off + done;
      const ci = Math.floor(pos / CHUNK_SIZE);
      const within = pos & CHUNK_MASK;
      const n = Math.min(CHUNK_SIZE - within, len - done);
      const c = this.chunks.get(ci);
      if (c) out.set(c.subarray(within, within + n), done);
      done += n;
    }
    return out;
  }

  /** Chunks `write(off, data)` would newly allocate. */
  newChunks(off: number, data: Uint8Array): number {
    let count = 0;
    let done = 0;
    while (done < data.length) {
      const pos = off + done;
      const ci = Math.floor(pos / CHUNK_SIZE);
      const n = Math.min(CHUNK_SIZE - (pos & CHUNK_MASK), data.length - done);
      if (!this.chunks.has(ci) && !isZero(data.subarray(done, done + n))) count++;
      done += n;
    }
    return count;
  }

  /** Write `data` at `off`; returns the change in allocated bytes. */
  write(off: number, data: Uint8Array): number {
    const before = this.chunks.size;
    let done = 0;
    while (done < data.length) {
      const pos = off + done;
      const ci = Math.floor(pos / CHUNK_SIZE);
      const within = pos & CHUNK_MASK;
      const n = Math.min(CHUNK_SIZE - within, data.length - done);
      const src = data.subarray(done, done + n);
      let c = this.chunks.get(ci);
      if (c === undefined) {
        if (!isZero(src)) {
          c = allocChunk();
          c.set(src, within);
          this.chunks.set(ci, c);
        }
      } else {
        c.set(src, within);
        if (isZero(src) && isZero(c)) this.chunks.delete(ci);
      }
      done += n;
    }
    if (off + data.length > this.size) this.size = off + data.length;
    return (this.chunks.size - before) * CHUNK_SIZE;
  }

  /** Little-endian u32 at `off` (0 in a hole). */
  u32(off: number): number {
    const within = off & CHUNK_MASK;
    if (within + 4 <= CHUNK_SIZE) {
      const c = this.chunks.get(Math.floor(off / CHUNK_SIZE));
      if (!c) return 0;
      return (
        ((c[within] as number) | ((c[within + 1] as number) << 8) | ((c[within + 2] as number) << 16)) +
        (c[within + 3] as number) * 0x1000000
      );
    }
    const b = this.read(off, 4);
    return ((b[0] as number) | ((b[1] as number) << 8) | ((b[2] as number) << 16)) + (b[3] as number) * 0x1000000;
  }

  /**
   * Call `fn(i, v)` for every non-zero little-endian u32 word `v` = word `i`
   * of the region [start, start + 4 * words); `start` must be 4-aligned.
   * Only allocated chunks are visited, in ascending order.
   */
  forEachNonZeroU32(start: number, words: number, fn: (i: number, v: number) => void): void {
    const end = start + 4 * words;
    for (const ci of this.sortedChunks()) {
      const cStart = ci * CHUNK_SIZE;
      const lo = Math.max(cStart, start);
      const hi = Math.min(cStart + CHUNK_SIZE, end);
      if (lo >= hi) continue;
      const c = this.chunks.get(ci) as Uint8Array;
      if (LITTLE_ENDIAN && c.byteOffset % 4 === 0 && (lo - cStart) % 4 === 0) {
        const w32 = new Uint32Array(c.buffer, c.byteOffset + (lo - cStart), (hi - lo) >>> 2);
        const base = (lo - start) / 4;
        for (let k = 0; k < w32.length; k++) {
          const v = w32[k] as number;
          if (v !== 0) fn(base + k, v);
        }
        continue;
      }
      for (let p = lo; p < hi; p += 4) {
        const w = p - cStart;
        const v =
          ((c[w] as number) | ((c[w + 1] as number) << 8) | ((c[w + 2] as number) << 16)) +
          (c[w + 3] as number) * 0x1000000;
        if (v !== 0) fn((p - start) / 4, v);
      }
    }
  }

  /** True when the region [off, off + len) holds only zeros. */
  isZeroRange(off: number, len: number): boolean {
    const end = off + len;
    for (const [ci, c] of this.chunks) {
      const cStart = ci * CHUNK_SIZE;
      const lo = Math.max(cStart, off);
      const hi = Math.min(cStart + CHUNK_SIZE, end);
      if (lo < hi && !isZero(c.subarray(lo - cStart, hi - cStart))) return false;
    }
    return true;
  }

  /** Chunk indices in ascending order. */
  sortedChunks(): number[] {
    return [...this.chunks.keys()].sort((a, b) => a - b);
  }
}

/** Sees every mutation of the store (directory persistence). */
export interface StoreBackend {
  created(oid: bigint, obj: SparseObject): void;
  /** [off, off + len) of `obj` changed. */
  written(oid: bigint, obj: SparseObject, off: number, len: number): void;
  removed(oid: bigint): void;
  cleared(): void;
}

export type StoreResult = 'ok' | 'no_obj' | 'no_space';

export class ObjectStore {
  readonly objects = new Map<bigint, SparseObject>();
  bytes = 0;
  maxBytes: number;
  backend: StoreBackend | undefined;

  constructor(maxBytes: number) {
    this.maxBytes = maxBytes;
  }

  /** Objects stored, ledgers (refcount bookkeeping) excepted. */
  get count(): number {
    let n = 0;
    for (const oid of this.objects.keys()) if ((oid & LEDGER_BIT) === 0n) n++;
    return n;
  }

  has(oid: bigint): boolean {
    return this.objects.has(oid);
  }

  get(oid: bigint): SparseObject | undefined {
    return this.objects.get(oid);
  }

  /** Create (or replace, as sheep's rename does) an object of `size` bytes holding `data` at `off`. */
  create(oid: bigint, size: number, off: number, data: Uint8Array): StoreResult {
    const obj = new SparseObject(size);
    obj.write(off, data);
    return this.put(oid, obj);
  }

  /** Put an object as is (loading from disk); no backend call. */
  load(oid: bigint, obj: SparseObject): void {
    const old = this.objects.get(oid);
    if (old) this.bytes -= old.allocated;
    this.objects.set(oid, obj);
    this.bytes += obj.allocated;
  }

  write(oid: bigint, off: number, data: Uint8Array): StoreResult {
    const obj = this.objects.get(oid);
    if (!obj) return 'no_obj';
    // cheap bound first (chunks not allocated yet), exact count only near the limit
    const first = Math.floor(off / CHUNK_SIZE);
    const last = Math.floor((off + Math.max(data.length, 1) - 1) / CHUNK_SIZE);
    let absent = 0;
    for (let ci = first; ci <= last && data.length > 0; ci++) if (!obj.chunks.has(ci)) absent++;
    if (absent > 0 && this.bytes + absent * CHUNK_SIZE > this.maxBytes) {
      const need = obj.newChunks(off, data) * CHUNK_SIZE;
      if (need > 0 && this.bytes + need > this.maxBytes) return 'no_space';
    }
    this.bytes += obj.write(off, data);
    this.backend?.written(oid, obj, off, data.length);
    return 'ok';
  }

  /** Zero [off, off + len) of an existing object without materialising the zeros. */
  zero(oid: bigint, off: number, len: number): StoreResult {
    const obj = this.objects.get(oid);
    if (!obj) return 'no_obj';
    const before = obj.allocated;
    const end = off + len;
    for (const ci of obj.sortedChunks()) {
      const cStart = ci * CHUNK_SIZE;
      const lo = Math.max(cStart, off);
      const hi = Math.min(cStart + CHUNK_SIZE, end);
      if (lo >= hi) continue;
      const c = obj.chunks.get(ci) as Uint8Array;
      c.fill(0, lo - cStart, hi - cStart);
      if (isZero(c)) obj.chunks.delete(ci);
    }
    if (end > obj.size) obj.size = end;
    this.bytes += obj.allocated - before;
    this.backend?.written(oid, obj, off, len);
    return 'ok';
  }

  /** Store a prepared object, replacing any old one. */
  put(oid: bigint, obj: SparseObject): StoreResult {
    const old = this.objects.get(oid);
    const need = obj.allocated - (old?.allocated ?? 0);
    if (need > 0 && this.bytes + need > this.maxBytes) return 'no_space';
    this.bytes += need;
    this.objects.set(oid, obj);
    this.backend?.created(oid, obj);
    return 'ok';
  }

  read(oid: bigint, off: number, len: number): Uint8Array | undefined {
    return this.objects.get(oid)?.read(off, len);
  }

  remove(oid: bigint): boolean {
    const obj = this.objects.get(oid);
    if (!obj) return false;
    this.bytes -= obj.allocated;
    releasedBytes(obj.allocated);
    this.objects.delete(oid);
    this.backend?.removed(oid);
    return true;
  }

  clear(): void {
    releasedBytes(this.bytes);
    this.objects.clear();
    this.bytes = 0;
    this.backend?.cleared();
  }
}
