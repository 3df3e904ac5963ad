/**
 * Directory persistence of the embedded sheep. Layout (format 1):
 *
 *   DIR/sheep.json        cluster configuration and epoch log (ClusterConfig)
 *   DIR/obj/<oid>         one sparse file per object, named by 16 hex digits
 *
 * Every mutation is written through synchronously (write, then the next
 * request), so a crash loses nothing acknowledged. At start the objects are
 * loaded back and the VDI bitmaps and vdi_state are rebuilt from the inodes,
 * as sheep does after a restart (locks are not persisted, like sheep's).
 */
import {
  closeSync,
  existsSync,
  ftruncateSync,
  fstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import type { ClusterConfig } from './cluster.js';
import { CHUNK_SIZE, isZero, type ObjectStore, SparseObject, type StoreBackend } from './store.js';

const CONFIG = 'sheep.json';
const OBJ = 'obj';
const MAX_FDS = 64;

export function oidFileName(oid: bigint): string {
  return oid.toString(16).padStart(16, '0');
}

export class DirBackend implements StoreBackend {
  readonly dir: string;
  private readonly objDir: string;
  /** Chunks of each file that may hold non-zero bytes (so zeroing one writes zeros there). */
  private readonly onDisk = new Map<bigint, Set<number>>();
  private readonly sizes = new Map<bigint, number>();
  private readonly fds = new Map<bigint, number>();

  constructor(dir: string) {
    this.dir = dir;
    this.objDir = join(dir, OBJ);
    mkdirSync(this.objDir, { recursive: true });
  }

  private path(oid: bigint): string {
    return join(this.objDir, oidFileName(oid));
  }

  private fd(oid: bigint): number {
    let fd = this.fds.get(oid);
    if (fd !== undefined) {
      // most recently used last
      this.fds.delete(oid);
      this.fds.set(oid, fd);
      return fd;
    }
    if (this.fds.size >= MAX_FDS) {
      const [old, ofd] = this.fds.entries().next().value as [bigint, number];
      closeSync(ofd);
      this.fds.delete(old);
    }
    fd = openSync(this.path(oid), 'r+');
    this.fds.set(oid, fd);
    return fd;
  }

  private dropFd(oid: bigint): void {
    const fd = this.fds.get(oid);
    if (fd !== undefined) {
      closeSync(fd);
      this.fds.delete(oid);
    }
  }

  readConfig(): ClusterConfig | undefined {
    const p = join(this.dir, CONFIG);
    if (!existsSync(p)) return undefined;
    return JSON.parse(readFileSync(p, 'utf8')) as ClusterConfig;
  }

  saveConfig(c: ClusterConfig): void {
    const p = join(this.dir, CONFIG);
    writeFileSync(`${p}.tmp`, `${JSON.stringify(c, null, 1)}\n`);
    renameSync(`${p}.tmp`, p);
  }

  /** Load every object file into `store` (without writing anything back). */
  loadObjects(store: ObjectStore): void {
    const buf = Buffer.allocUnsafe(CHUNK_SIZE);
    for (const name of readdirSync(this.objDir)) {
      if (!/^[0-9a-f]{16}$/.test(name)) continue;
      const oid = BigInt(`0x${name}`);
      const fd = openSync(join(this.objDir, name), 'r');
      try {
        const size = fstatSync(fd).size;
        const obj = new SparseObject(size);
        const chunks = new Set<number>();
        for (let off = 0; off < size; off += CHUNK_SIZE) {
          const n = readSync(fd, buf, 0, Math.min(CHUNK_SIZE, size - off), off);
          const piece = buf.subarray(0, n);
          if (!isZero(piece)) {
            obj.write(off, piece);
            chunks.add(off / CHUNK_SIZE);
          }
        }
        obj.size = size;
        store.load(oid, obj);
        this.onDisk.set(oid, chunks);
        this.sizes.set(oid, size);
      } finally {
        closeSync(fd);
      }
    }
  }

  created(oid: bigint, obj: SparseObject): void {
    this.dropFd(oid);
    const p = this.path(oid);
    const fd = openSync(`${p}.tmp`, 'w');
    try {
      ftruncateSync(fd, obj.size);
      for (const [ci, c] of obj.chunks) {
        const n = Math.min(c.length, obj.size - ci * CHUNK_SIZE);
        if (n > 0) writeSync(fd, c, 0, n, ci * CHUNK_SIZE);
      }
    } finally {
      closeSync(fd);
    }
    renameSync(`${p}.tmp`, p);
    this.onDisk.set(oid, new Set(obj.chunks.keys()));
    this.sizes.set(oid, obj.size);
  }

  written(oid: bigint, obj: SparseObject, off: number, len: number): void {
    const fd = this.fd(oid);
    const disk = this.onDisk.get(oid) ?? new Set<number>();
    this.onDisk.set(oid, disk);
    const end = off + len;
    const zeros = new Uint8Array(CHUNK_SIZE);
    for (let ci = Math.floor(off / CHUNK_SIZE); ci * CHUNK_SIZE < end; ci++) {
      const cStart = ci * CHUNK_SIZE;
      const lo = Math.max(cStart, off);
      const hi = Math.min(cStart + CHUNK_SIZE, end);
      const c = obj.chunks.get(ci);
      if (c) {
        writeSync(fd, c, lo - cStart, hi - lo, lo);
        disk.add(ci);
      } else if (disk.has(ci)) {
        // the object no longer has this chunk: it is all zeros now, so is the file once this range is
        writeSync(fd, zeros, 0, hi - lo, lo);
        disk.delete(ci);
      }
    }
    if ((this.sizes.get(oid) ?? 0) < obj.size) {
      ftruncateSync(fd, obj.size);
      this.sizes.set(oid, obj.size);
    }
  }

  removed(oid: bigint): void {
    this.dropFd(oid);
    try {
      unlinkSync(this.path(oid));
    } catch {
      // already gone
    }
    this.onDisk.delete(oid);
    this.sizes.delete(oid);
  }

  cleared(): void {
    this.close();
    rmSync(this.objDir, { recursive: true, force: true });
    mkdirSync(this.objDir, { recursive: true });
    this.onDisk.clear();
    this.sizes.clear();
  }

  close(): void {
    for (const fd of this.fds.values()) closeSync(fd);
    this.fds.clear();
  }
}
