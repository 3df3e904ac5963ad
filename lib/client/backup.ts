/**
 * Backup and restore in dog 1.0's format (dog/vdi.c: vdi_backup,
 * vdi_restore), and the changed objects between two inodes.
 *
 * The format, little-endian throughout:
 *
 *   backup_hdr   u32 version (1), u32 magic (0x11921192)
 *   obj_backup*  u32 idx, u32 offset, u32 length, u32 reserved (0), then
 *                `length` bytes: object idx's bytes [offset, offset+length)
 *   end marker   u32 0xffffffff, then 12 zero bytes
 *
 * One record per object that differs between the `from` and `to` inodes,
 * ascending idx, trimmed to the sectors (512 bytes) that differ, as dog's
 * compact_obj_backup: whole leading and trailing sectors equal to the
 * `from` object (zeros where it has none) are left out; an object equal
 * throughout gets no record. The format has no checksum: the parser checks
 * everything the structure allows (header, ascending idx, reserved zero, the
 * range within the object, the end marker, the length) and names the byte
 * offset of what is wrong.
 */
import { Readable } from 'node:stream';
import { SD_INODE_DATA_INDEX } from '../../protocol/constants.js';
import { vidToDataOid } from '../../protocol/oid.js';
import { type InodeHeader, objectCount } from '../../protocol/records.js';
import { InvalidArgumentError, SheepdogError } from '../errors.js';
import type { Transport } from '../transport/types.js';
import { type IoOptions, abortedError } from '../util/signal.js';
import type { VdiIndex } from '../vdi/vdi-index.js';
import type { Vdi } from '../vdi/vdi.js';
import { type SnapshotRef, checkNewTag, checkNewVdiName, checkSnapshotRef, checkVdiName } from './names.js';
import { readObject } from './objects.js';

export const BACKUP_FORMAT_VERSION = 1;
export const BACKUP_MAGIC = 0x11921192;
export const BACKUP_HEADER_SIZE = 8;
export const BACKUP_RECORD_HEADER_SIZE = 16;
export const BACKUP_END_IDX = 0xffffffff;
const SECTOR = 512;
const ZERO_SECTOR = new Uint8Array(SECTOR);

/** A backup stream that is not dog's format, is corrupt, or ends early. `offset`: the byte where it went wrong. */
export class BackupFormatError extends SheepdogError {
  static override readonly brand: string = 'BackupFormatError';
  /** Byte offset in the backup stream of the bad or missing bytes. */
  readonly offset: number;
  /** 'truncated': the stream ended before the end marker; 'corrupt': bytes that cannot be dog's format. */
  readonly reason: 'truncated' | 'corrupt';
  constructor(message: string, offset: number, reason: 'truncated' | 'corrupt') {
    super(`backup stream ${reason} at byte ${offset}: ${message}`, 'SHEEPDOG_ERR_BACKUP_FORMAT');
    this.offset = offset;
    this.reason = reason;
  }
}

// ------------------------------------------------------------------ codec

export function encodeBackupHeader(): Buffer {
  const b = Buffer.alloc(BACKUP_HEADER_SIZE);
  b.writeUInt32LE(BACKUP_FORMAT_VERSION, 0);
  b.writeUInt32LE(BACKUP_MAGIC, 4);
  return b;
}

export function encodeRecordHeader(idx: number, offset: number, length: number): Buffer {
  const b = Buffer.alloc(BACKUP_RECORD_HEADER_SIZE);
  b.writeUInt32LE(idx >>> 0, 0);
  b.writeUInt32LE(offset, 4);
  b.writeUInt32LE(length, 8);
  return b;
}

/** The end marker: idx 0xffffffff, the rest zero. */
export function encodeEndMarker(): Buffer {
  return encodeRecordHeader(BACKUP_END_IDX, 0, 0);
}

function sectorEqual(a: Uint8Array, b: Uint8Array | undefined, off: number): boolean {
  const x = a.subarray(off, off + SECTOR);
  const y = b === undefined ? ZERO_SECTOR : b.subarray(off, off + SECTOR);
  return Buffer.compare(x, y) === 0;
}

/**
 * dog's compact_obj_backup: the part of object `to` that differs from
 * `from` (undefined: zeros), in whole sectors. Length 0: nothing differs.
 */
export function compactRange(to: Uint8Array, from: Uint8Array | undefined): { offset: number; length: number } {
  const size = to.length;
  let offset = 0;
  let length = size;
  while (length > 0 && sectorEqual(to, from, offset)) {
    offset += SECTOR;
    length -= SECTOR;
  }
  let p = size - SECTOR;
  while (length > 0 && sectorEqual(to, from, p)) {
    p -= SECTOR;
    length -= SECTOR;
  }
  return { offset, length };
}

/** One record of a backup stream. `at`: its byte offset in the stream. */
export interface BackupRecord {
  idx: number;
  offset: number;
  data: Buffer;
  at: number;
}

export interface ParseOptions {
  /** Object size of the VDI (records must fit in one object). Default: 2^31, sheep's largest. */
  objectSize?: number;
  /** Objects in the VDI (idx must be below). Default: unchecked. */
  objects?: number;
}

/** Exact reads over a byte stream, counting the offset. */
class ByteReader {
  offset = 0;
  private readonly it: AsyncIterator<unknown>;
  private buf: Buffer = Buffer.alloc(0);
  private eof = false;
  constructor(source: AsyncIterable<unknown>) {
    this.it = source[Symbol.asyncIterator]();
  }
  /** Up to `n` bytes: fewer only at the end of the stream. */
  async read(n: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    let have = 0;
    while (have < n) {
      if (this.buf.length === 0) {
        if (this.eof) break;
        const r = await this.it.next();
        if (r.done) {
          this.eof = true;
          break;
        }
        const v = r.value;
        this.buf = typeof v === 'string' ? Buffer.from(v) : Buffer.from(v as Uint8Array);
        continue;
      }
      const take = Math.min(n - have, this.buf.length);
      parts.push(this.buf.subarray(0, take));
      this.buf = this.buf.subarray(take);
      have += take;
    }
    this.offset += have;
    return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, have);
  }
  async close(): Promise<void> {
    await this.it.return?.();
  }
}

async function readHeader(r: ByteReader): Promise<void> {
  const h = await r.read(BACKUP_HEADER_SIZE);
  if (h.length < BACKUP_HEADER_SIZE) {
    throw new BackupFormatError(`header is ${h.length} of ${BACKUP_HEADER_SIZE} bytes`, h.length, 'truncated');
  }
  const version = h.readUInt32LE(0);
  const magic = h.readUInt32LE(4);
  if (magic !== BACKUP_MAGIC) {
    throw new BackupFormatError(`magic is 0x${magic.toString(16)}, not 0x11921192 (not a dog backup)`, 4, 'corrupt');
  }
  if (version !== BACKUP_FORMAT_VERSION) {
    throw new BackupFormatError(`format version ${version}, only 1 is known`, 0, 'corrupt');
  }
}

async function* records(r: ByteReader, o: ParseOptions): AsyncGenerator<BackupRecord> {
  const objectSize = o.objectSize ?? 2 ** 31;
  let last = -1;
  for (;;) {
    const at = r.offset;
    const h = await r.read(BACKUP_RECORD_HEADER_SIZE);
    if (h.length === 0) throw new BackupFormatError('no end marker', at, 'truncated');
    if (h.length < BACKUP_RECORD_HEADER_SIZE) {
      throw new BackupFormatError(
        `record header is ${h.length} of ${BACKUP_RECORD_HEADER_SIZE} bytes`,
        at + h.length,
        'truncated',
      );
    }
    const idx = h.readUInt32LE(0);
    const offset = h.readUInt32LE(4);
    const length = h.readUInt32LE(8);
    const reserved = h.readUInt32LE(12);
    if (idx === BACKUP_END_IDX) {
      if (offset !== 0 || length !== 0 || reserved !== 0) {
        throw new BackupFormatError('end marker has non-zero fields', at + 4, 'corrupt');
      }
      return;
    }
    if (reserved !== 0) throw new BackupFormatError(`record reserved field is ${reserved}, not 0`, at + 12, 'corrupt');
    if (idx <= last)
      throw new BackupFormatError(`object ${idx} after object ${last} (dog writes ascending)`, at, 'corrupt');
    if (o.objects !== undefined && idx >= o.objects) {
      throw new BackupFormatError(`object ${idx} is past the VDI's ${o.objects} objects`, at, 'corrupt');
    }
    if (length === 0 || offset + length > objectSize) {
      throw new BackupFormatError(
        `record range [${offset}, +${length}) of object ${idx} is not within an object of ${objectSize} bytes`,
        at + 4,
        'corrupt',
      );
    }
    const data = await r.read(length);
    if (data.length < length) {
      throw new BackupFormatError(
        `object ${idx}: ${data.length} of ${length} data bytes`,
        at + BACKUP_RECORD_HEADER_SIZE + data.length,
        'truncated',
      );
    }
    last = idx;
    yield { idx, offset, data, at };
  }
}

/** Parse a whole backup stream (header, records, end marker), checking dog's format; throws BackupFormatError. */
export async function* parseBackup(source: AsyncIterable<unknown>, o: ParseOptions = {}): AsyncGenerator<BackupRecord> {
  const r = new ByteReader(source);
  try {
    await readHeader(r);
    yield* records(r, o);
  } finally {
    await r.close();
  }
}

// ------------------------------------------------------------ the client side

/** What backup.ts needs from SheepdogClient (its internals, bound). */
export interface BackupHost {
  readonly io: Transport;
  readonly maxConcurrency: number;
  lookup(name: string, snapshot?: SnapshotRef): Promise<number>;
  loadInode(vid: number): Promise<{ header: InodeHeader; index: VdiIndex }>;
  readHeader(vid: number): Promise<InodeHeader>;
  /** The header of snapshot `snapshot` of `name`; InvalidArgumentError if it is not one. */
  snapshotHeader(name: string, snapshot: SnapshotRef): Promise<InodeHeader>;
  /** NEW_VDI `name` based on snapshot `h` (its size and policy); the new vid. */
  newVdiFrom(name: string, h: InodeHeader): Promise<number>;
  /** NEW_VDI with snapid 1 and base `base`: the working VDI of `name` becomes a snapshot, a new one is made from `base`. */
  snapshotOnto(name: string, base: InodeHeader): Promise<number>;
  createVdi(
    name: string,
    size: number | bigint,
    o: { copies?: number | string; blockSizeShift?: number },
  ): Promise<number>;
  openVdi(name: string): Promise<Vdi>;
  deleteVdi(name: string, o: { force?: boolean }): Promise<void>;
  /** Write a snapshot tag into inode `vid` (before it is made a snapshot). */
  writeTag(vid: number, tag: string): Promise<void>;
  /** Run `fn` outside the call's signal (clean-up after an abort). */
  unscoped<T>(fn: () => Promise<T>): Promise<T>;
}

export interface BackupOptions extends IoOptions {
  /** The older snapshot (tag or id): only what changed since it is backed up. Default: none (every allocated object, against zeros). */
  from?: SnapshotRef;
  /** The newer snapshot (tag or id). Default: the working VDI (back up a snapshot for a consistent image). */
  to?: SnapshotRef;
  /** Objects read ahead, default the client's maxConcurrency (16) capped at 8. */
  concurrency?: number;
  /** Called after each object examined. */
  onProgress?: (p: BackupProgress) => void;
}

export interface BackupProgress {
  /** Objects examined / to examine (those whose index entries differ). */
  scanned: number;
  total: number;
  /** Records written and stream bytes so far. */
  objects: number;
  bytes: number;
}

export interface BackupStats {
  /** Records in the stream (objects that differ). */
  objects: number;
  /** Bytes of the stream (header, records, end marker). */
  bytes: number;
  /** Object data bytes in the records. */
  dataBytes: number;
  /** Seconds from the first read to the end marker (0 until done). */
  seconds: number;
}

/** The Readable backupVdi returns: dog's format; `stats` filled in as it goes. */
export interface BackupStream extends Readable {
  readonly stats: BackupStats;
  /** Objects to examine (index entries that differ) and the object size. */
  readonly plan: { objects: number; objectSize: number; size: number; fromVdiId: number; toVdiId: number };
}

interface Sides {
  to: { header: InodeHeader; index: VdiIndex };
  from: { header: InodeHeader; index: VdiIndex } | undefined;
  objectSize: number;
  count: number;
  changed: number[];
}

async function sides(
  host: BackupHost,
  name: string,
  from: SnapshotRef | undefined,
  to: SnapshotRef | undefined,
): Promise<Sides> {
  checkVdiName(name);
  const toVid = await host.lookup(name, to === undefined ? undefined : checkSnapshotRef(to));
  const toInode = await host.loadInode(toVid);
  let fromInode: Sides['from'];
  if (from !== undefined) {
    fromInode = await host.loadInode(await host.lookup(name, checkSnapshotRef(from)));
    if (fromInode.header.blockSizeShift !== toInode.header.blockSizeShift) {
      throw new InvalidArgumentError(
        `snapshots ${String(from)} and ${to === undefined ? 'the working VDI' : String(to)} of ${name} have different object sizes`,
      );
    }
  }
  const bss = toInode.header.blockSizeShift;
  const count = Math.min(
    objectCount(toInode.header.vdiSize, bss),
    toInode.index.kind === 'flat' ? SD_INODE_DATA_INDEX : Infinity,
  );
  // An index entry equal on both sides is the same (immutable or shared)
  // object: dog reads both and writes nothing for it; we skip the reads.
  const set = new Set<number>();
  for (const [i] of toInode.index.entries()) if (i < count) set.add(i);
  if (fromInode) for (const [i] of fromInode.index.entries()) if (i < count) set.add(i);
  const changed = [...set].filter((i) => toInode.index.get(i) !== (fromInode?.index.get(i) ?? 0)).sort((a, b) => a - b);
  return { to: toInode, from: fromInode, objectSize: 2 ** bss, count, changed };
}

/** backupVdi: dog's backup stream of `name` from `from` to `to`. */
export async function openBackup(host: BackupHost, name: string, o: BackupOptions = {}): Promise<BackupStream> {
  const s = await sides(host, name, o.from, o.to);
  const signal = o.signal;
  const conc = Math.max(1, Math.min(o.concurrency ?? Math.min(host.maxConcurrency, 8), 64));
  const os = s.objectSize;
  const policy = (h: InodeHeader) => ({ copies: h.nrCopies, copyPolicy: h.copyPolicy });
  const stats: BackupStats = { objects: 0, bytes: 0, dataBytes: 0, seconds: 0 };
  const read = async (vid: number, idx: number, h: InodeHeader): Promise<Uint8Array | undefined> =>
    vid === 0 ? undefined : readObject(host.io, vidToDataOid(vid, idx), 0, os, signal ? { signal } : {}, policy(h));
  const produce = async (idx: number): Promise<Buffer[] | null> => {
    const [to, from] = await Promise.all([
      read(s.to.index.get(idx), idx, s.to.header),
      s.from ? read(s.from.index.get(idx), idx, s.from.header) : Promise.resolve(undefined),
    ]);
    const data = to === undefined ? new Uint8Array(os) : to;
    const { offset, length } = compactRange(data, from);
    if (length === 0) return null;
    return [encodeRecordHeader(idx, offset, length), Buffer.from(data.buffer, data.byteOffset + offset, length)];
  };
  async function* gen(): AsyncGenerator<Buffer> {
    const t0 = performance.now();
    const head = encodeBackupHeader();
    stats.bytes += head.length;
    yield head;
    const window: Promise<Buffer[] | null>[] = [];
    let next = 0;
    let scanned = 0;
    while (next < s.changed.length || window.length > 0) {
      while (window.length < conc && next < s.changed.length) {
        const p = produce(s.changed[next++] as number);
        p.catch(() => {});
        window.push(p);
      }
      const rec = await (window.shift() as Promise<Buffer[] | null>);
      scanned++;
      if (rec !== null) {
        const [h, d] = rec as [Buffer, Buffer];
        stats.objects++;
        stats.dataBytes += d.length;
        stats.bytes += h.length + d.length;
        yield h;
        yield d;
      }
      o.onProgress?.({ scanned, total: s.changed.length, objects: stats.objects, bytes: stats.bytes });
    }
    const end = encodeEndMarker();
    stats.bytes += end.length;
    stats.seconds = (performance.now() - t0) / 1000;
    yield end;
  }
  const stream = Readable.from(gen(), { objectMode: false }) as BackupStream;
  Object.defineProperty(stream, 'stats', { value: stats, enumerable: true });
  Object.defineProperty(stream, 'plan', {
    value: {
      objects: s.changed.length,
      objectSize: os,
      size: Number(s.to.header.vdiSize),
      fromVdiId: s.from?.header.vdiId ?? 0,
      toVdiId: s.to.header.vdiId,
    },
    enumerable: true,
  });
  if (signal) {
    const onAbort = (): void => {
      stream.destroy(abortedError(signal, 'backupVdi'));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    stream.once('close', () => signal.removeEventListener('abort', onAbort));
  }
  return stream;
}

export interface DiffRange {
  /** First object index and how many in a row changed. */
  index: number;
  count: number;
  /** The same in bytes of the VDI (the last range ends at the VDI's size). */
  offset: number;
  length: number;
}

export interface VdiDiff {
  name: string;
  fromVdiId: number;
  toVdiId: number;
  objectSize: number;
  size: number;
  /** Objects whose index entries differ (allocated, rewritten, or freed since `from`). */
  objects: number;
  ranges: DiffRange[];
}

/** diffVdi: the objects whose index entries differ between two inodes (no data read). */
export async function diffInodes(
  host: BackupHost,
  name: string,
  from: SnapshotRef,
  to?: SnapshotRef,
): Promise<VdiDiff> {
  const s = await sides(host, name, from, to);
  const size = Number(s.to.header.vdiSize);
  const ranges: DiffRange[] = [];
  for (const i of s.changed) {
    const last = ranges[ranges.length - 1];
    if (last && last.index + last.count === i) last.count++;
    else ranges.push({ index: i, count: 1, offset: 0, length: 0 });
  }
  for (const r of ranges) {
    r.offset = r.index * s.objectSize;
    r.length = Math.min((r.index + r.count) * s.objectSize, size) - r.offset;
  }
  return {
    name,
    fromVdiId: s.from?.header.vdiId ?? 0,
    toVdiId: s.to.header.vdiId,
    objectSize: s.objectSize,
    size,
    objects: s.changed.length,
    ranges,
  };
}

export interface RestoreOptions extends IoOptions {
  /**
   * The snapshot of `name` (tag or id) the backup was taken from (its
   * `from`, dog's -s). Omit only for a backup without `from`, with `size`.
   */
  snapshot?: SnapshotRef;
  /**
   * Restore into this new VDI (a clone of the snapshot, or with `size` a
   * fresh one): nothing else changes. Without it, restore as dog does (see
   * docs/backup.md): the result becomes a new snapshot of `name`, and its
   * working VDI is re-made from its parent.
   */
  into?: string;
  /** Size of a fresh VDI for a backup without `from` (no `snapshot`), and its copies / block size shift. */
  size?: number | bigint;
  copies?: number | string;
  blockSizeShift?: number;
  /** Keep the partly restored VDI when the restore fails (default: it is deleted). */
  keep?: boolean;
  /** dog mode: delete the working VDI even if open here or locked (as rollbackVdi's force). */
  force?: boolean;
  /** Tag of the snapshot dog mode makes (default: none, as dog). */
  tag?: string;
  /** Object writes in flight, default 8. */
  concurrency?: number;
  /** Called after each record written. */
  onProgress?: (p: { objects: number; bytes: number }) => void;
}

export interface RestoreResult {
  /** The VDI holding the restored data. */
  name: string;
  vdiId: number;
  /** True in dog mode: the restored VDI is a snapshot of `name`; `workingVdiId` is the re-made working VDI. */
  snapshot: boolean;
  workingVdiId?: number;
  /** Records applied, stream bytes read, object bytes written, seconds. */
  objects: number;
  bytes: number;
  dataBytes: number;
  seconds: number;
}

/** restoreVdi: apply a backup stream to a fresh VDI; on any failure that VDI is deleted (unless `keep`). */
export async function restoreBackup(
  host: BackupHost,
  name: string,
  source: AsyncIterable<unknown>,
  o: RestoreOptions = {},
): Promise<RestoreResult> {
  checkVdiName(name);
  const t0 = performance.now();
  const r = new ByteReader(source);
  const signal = o.signal;
  try {
    // The header is checked before anything is created or deleted.
    await readHeader(r);
    let target: string;
    let vid: number;
    let base: InodeHeader | undefined;
    let working: InodeHeader | undefined;
    if (o.snapshot === undefined) {
      if (o.size === undefined) {
        throw new InvalidArgumentError(
          'restore needs the snapshot the backup was made from (dog -s), or a size for a backup made without one',
        );
      }
      target = checkNewVdiName(o.into ?? name);
      vid = await host.createVdi(target, o.size, {
        ...(o.copies === undefined ? {} : { copies: o.copies }),
        ...(o.blockSizeShift === undefined ? {} : { blockSizeShift: o.blockSizeShift }),
      });
    } else {
      base = await host.snapshotHeader(name, o.snapshot);
      if (o.into !== undefined) {
        target = checkNewVdiName(o.into, 'target VDI name');
        vid = await host.newVdiFrom(target, base);
      } else {
        // dog: the working VDI is deleted ("to avoid making the current state
        // become snapshot"), NAME re-made from the snapshot and restored, then
        // snapshotted with the old working VDI's parent as the new base.
        target = name;
        working = await host.readHeader(await host.lookup(name));
        await host.deleteVdi(name, { force: o.force === true });
        vid = await host.newVdiFrom(name, base);
      }
    }
    let applied: { objects: number; dataBytes: number };
    try {
      applied = await apply(host, target, r, o, signal);
    } catch (e) {
      await host.unscoped(async () => {
        if (!o.keep) await host.deleteVdi(target, { force: true }).catch(() => {});
        // dog mode: NAME gets a working VDI again, made from the old one's parent.
        if (working !== undefined && !o.keep)
          await host.newVdiFrom(name, await host.readHeader(working.parentVdiId)).catch(() => {});
      });
      throw e;
    }
    let workingVdiId: number | undefined;
    if (working !== undefined) {
      if (o.tag !== undefined) await host.writeTag(vid, checkNewTag(o.tag));
      workingVdiId = await host.snapshotOnto(name, await host.readHeader(working.parentVdiId));
    }
    return {
      name: target,
      vdiId: vid,
      snapshot: working !== undefined,
      ...(workingVdiId === undefined ? {} : { workingVdiId }),
      objects: applied.objects,
      bytes: r.offset,
      dataBytes: applied.dataBytes,
      seconds: (performance.now() - t0) / 1000,
    };
  } finally {
    await r.close();
  }
}

async function apply(
  host: BackupHost,
  target: string,
  r: ByteReader,
  o: RestoreOptions,
  signal: AbortSignal | undefined,
): Promise<{ objects: number; dataBytes: number }> {
  const vdi = await host.openVdi(target);
  const os = vdi.objectSize;
  const size = vdi.size;
  const conc = Math.max(1, Math.min(o.concurrency ?? 8, 64));
  const inflight = new Set<Promise<void>>();
  let failed: unknown;
  let objects = 0;
  let dataBytes = 0;
  try {
    for await (const rec of records(r, { objectSize: os, objects: Math.ceil(size / os) })) {
      if (failed !== undefined) break;
      let data = rec.data;
      const at = rec.idx * os + rec.offset;
      if (at + data.length > size) {
        // The last object past the VDI's end reads as zeros: only zeros may be there.
        const keep = Math.max(0, size - at);
        if (data.subarray(keep).some((b) => b !== 0)) {
          throw new BackupFormatError(
            `object ${rec.idx} has data past the VDI's end (${size} bytes)`,
            rec.at,
            'corrupt',
          );
        }
        data = data.subarray(0, keep);
      }
      objects++;
      dataBytes += rec.data.length;
      if (data.length > 0) {
        const p: Promise<void> = vdi.write(data, at, signal ? { signal } : undefined).then(
          () => {
            inflight.delete(p);
          },
          (e: unknown) => {
            inflight.delete(p);
            failed ??= e;
          },
        );
        inflight.add(p);
        if (inflight.size >= conc) await Promise.race(inflight);
      }
      o.onProgress?.({ objects, bytes: r.offset });
    }
    await Promise.all(inflight);
    if (failed !== undefined) throw failed;
    if (signal?.aborted) throw abortedError(signal, 'restoreVdi');
    return { objects, dataBytes };
  } finally {
    await Promise.allSettled(inflight);
    await vdi.close();
  }
}
