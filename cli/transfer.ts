/**
 * `vdi import` / `vdi export`: raw images between a local file and a VDI,
 * sparse both ways. Export reads only the VDI's allocated objects, skips
 * all-zero blocks inside them too, writes the rest with positioned writes
 * and sets the file size, so holes stay holes. Import skips all-zero blocks
 * where the VDI has nothing allocated.
 */
import { type FileHandle, open, stat } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import { Transform, type Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { CreateVdiOptions, SheepdogClient } from '../lib/client/client.js';
import { NoVdiError } from '../lib/errors.js';
import type { SnapshotRef } from '../lib/client/names.js';
import type { Vdi } from '../lib/vdi/vdi.js';
import { CliError, ExitCode, errorText, exitCodeFor } from './exit.js';
import type { Progress } from './progress.js';

/** Granularity of zero detection (holes in the exported file). */
const ZERO_GRAIN = 64 * 1024;
const ZERO = new Uint8Array(ZERO_GRAIN);
/** Largest read per request of an export. */
const EXPORT_CHUNK = 4 * 2 ** 20;
const EXPORT_CONCURRENCY = 4;

function isZero(b: Uint8Array): boolean {
  for (let off = 0; off < b.length; off += ZERO_GRAIN) {
    const n = Math.min(ZERO_GRAIN, b.length - off);
    if (Buffer.compare(b.subarray(off, off + n), ZERO.subarray(0, n)) !== 0) return false;
  }
  return true;
}

/** Runs of `buf` that are not all zero, at ZERO_GRAIN granularity: [start, end). */
function dataRuns(buf: Uint8Array): [number, number][] {
  const runs: [number, number][] = [];
  for (let off = 0; off < buf.length; off += ZERO_GRAIN) {
    const end = Math.min(off + ZERO_GRAIN, buf.length);
    if (isZero(buf.subarray(off, end))) continue;
    const last = runs.at(-1);
    if (last && last[1] === off) last[1] = end;
    else runs.push([off, end]);
  }
  return runs;
}

export interface ExportResult {
  size: number;
  /** Bytes actually written to the file (the rest are holes). */
  written: number;
}

/** Copy a VDI (or a snapshot of it) into `file`, sparse. `-` writes to `stdout` (not sparse). */
export async function exportVdi(
  client: SheepdogClient,
  name: string,
  file: string,
  opts: { snapshot?: SnapshotRef; progress: (total: number) => Progress; stdout: Writable },
): Promise<ExportResult> {
  const vdi = await client.openVdi(name, opts.snapshot === undefined ? {} : { snapshot: opts.snapshot });
  const progress = opts.progress(vdi.size);
  let ok = false;
  try {
    const r = await exportTo(vdi, file, progress, opts.stdout);
    ok = true;
    return r;
  } finally {
    progress.stop(ok);
    await vdi.close();
  }
}

async function exportTo(vdi: Vdi, file: string, progress: Progress, stdout: Writable): Promise<ExportResult> {
  {
    if (file === '-') {
      let done = 0;
      const count = new Transform({
        transform(chunk: Buffer, _e, cb) {
          done += chunk.length;
          progress.update(done);
          cb(null, chunk);
        },
      });
      await pipeline(vdi.createReadStream(), count, stdout, { end: false });
      return { size: vdi.size, written: vdi.size };
    }
    let fh: FileHandle;
    try {
      fh = await open(file, 'w');
    } catch (e) {
      throw new CliError(`cannot create ${file}: ${(e as Error).message}`, ExitCode.FAILURE, { cause: e });
    }
    try {
      const written = await copyAllocated(vdi, fh, progress);
      if ((await fh.stat()).isFile()) await fh.truncate(vdi.size);
      return { size: vdi.size, written };
    } finally {
      await fh.close();
    }
  }
}

async function copyAllocated(vdi: Vdi, fh: FileHandle, progress: Progress): Promise<number> {
  const chunk = Math.min(vdi.objectSize, EXPORT_CHUNK);
  const jobs: { offset: number; length: number }[] = [];
  for (const r of vdi.allocatedRanges()) {
    for (let off = r.offset; off < r.offset + r.length; off += chunk) {
      jobs.push({ offset: off, length: Math.min(chunk, r.offset + r.length - off) });
    }
  }
  const allocated = jobs.reduce((s, j) => s + j.length, 0);
  // Progress counts the holes between allocated ranges as done at once.
  let done = vdi.size - allocated;
  let written = 0;
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let j = jobs[next++]; j !== undefined; j = jobs[next++]) {
      const buf = await vdi.read(j.offset, j.length);
      for (const [s, e] of dataRuns(buf)) {
        await fh.write(buf, s, e - s, j.offset + s);
        written += e - s;
      }
      done += j.length;
      progress.update(done);
    }
  };
  await Promise.all(Array.from({ length: Math.min(EXPORT_CONCURRENCY, jobs.length) }, worker));
  return written;
}

const COPY_IN_CONCURRENCY = 4;

/** `[start, start + n)` as text: "offset 1048576..1049600". */
function span(start: number, n: number): string {
  return `offset ${start}..${start + n}`;
}

/**
 * Copy `source` into `vdi` from `start`: at most `limit` bytes when given
 * (the rest of the input is left unread), else until the input ends. Input
 * that continues past the end of the VDI is detected by reading, before
 * anything beyond the VDI is written: the bytes that fit are written, then a
 * usage error (exit 64) says how many landed. A failed write waits for the
 * writes in flight and reports the bytes that landed (the contiguous run
 * acknowledged from `start`), with the exit code of its cause.
 * All-zero chunks over objects unallocated at the start are skipped when
 * `skipZeroes`. Resolves with the number of bytes taken from the input.
 */
export async function copyIn(
  vdi: Vdi,
  source: AsyncIterable<Buffer | Uint8Array | string>,
  o: { start: number; limit?: number; progress: Progress; skipZeroes?: boolean; what?: string },
): Promise<number> {
  const what = o.what ?? `VDI ${vdi.name}`;
  const room = vdi.size - o.start;
  const max = o.limit ?? room;
  const chunk = Math.min(vdi.objectSize, EXPORT_CHUNK);
  const allocated = new Set<number>();
  if (o.skipZeroes) for (const [idx] of vdi.allocation()) allocated.add(idx);
  /** Acknowledged chunks: offset → length. */
  const acked = new Map<number, number>();
  const inflight = new Set<Promise<void>>();
  let failure: unknown;
  let taken = 0;
  let pos = o.start;
  let buf = Buffer.allocUnsafe(Math.min(chunk, Math.max(max, 1)));
  let fill = 0;
  let acknowledged = 0;
  const landed = (): number => {
    let n = 0;
    for (let l = acked.get(o.start + n); l !== undefined; l = acked.get(o.start + n)) n += l;
    return n;
  };
  const dispatch = (data: Buffer, at: number): void => {
    const done = (): void => {
      acked.set(at, data.length);
      acknowledged += data.length;
      o.progress.update(acknowledged);
    };
    if (o.skipZeroes && !allocated.has(Math.floor(at / vdi.objectSize)) && isZero(data)) {
      done();
      return;
    }
    const p = vdi.write(data, at).then(
      () => {
        inflight.delete(p);
        done();
      },
      (e: unknown) => {
        inflight.delete(p);
        failure ??= e;
      },
    );
    inflight.add(p);
  };
  const flushBuf = async (): Promise<void> => {
    while (inflight.size >= COPY_IN_CONCURRENCY) await Promise.race(inflight);
    if (failure !== undefined) return;
    if (fill === 0) return;
    dispatch(buf.subarray(0, fill), pos);
    pos += fill;
    fill = 0;
    buf = Buffer.allocUnsafe(chunk);
  };
  let past = false;
  // One iterator, driven by hand: breaking out of `for await` would destroy
  // stdin before the check for input past the end.
  const it = source[Symbol.asyncIterator]();
  const toBuf = (c: Buffer | Uint8Array | string): Buffer =>
    typeof c === 'string' ? Buffer.from(c) : Buffer.isBuffer(c) ? c : Buffer.from(c);
  try {
    while (taken < max && failure === undefined) {
      const r = await it.next();
      if (r.done) break;
      let b = toBuf(r.value);
      if (taken + b.length > max) {
        past = o.limit === undefined;
        b = b.subarray(0, max - taken);
      }
      let off = 0;
      while (off < b.length && failure === undefined) {
        const limit = Math.min(chunk - (pos % chunk), buf.length); // object-aligned chunks
        const n = Math.min(limit - fill, b.length - off);
        b.copy(buf, fill, off, off + n);
        fill += n;
        off += n;
        if (fill === limit) await flushBuf();
      }
      taken += off;
    }
    if (failure === undefined) await flushBuf();
    // At the end of the room, one more byte of input means it runs past the end.
    while (!past && o.limit === undefined && taken === max && failure === undefined) {
      const r = await it.next();
      if (r.done) break;
      if (toBuf(r.value).length > 0) past = true;
    }
  } catch (e) {
    failure ??= e;
  } finally {
    await Promise.resolve(it.return?.()).catch(() => {});
  }
  while (inflight.size > 0) await Promise.allSettled(inflight);
  if (failure !== undefined) {
    const n = landed();
    throw new CliError(
      `${errorText(failure)}; ${n} byte${n === 1 ? '' : 's'} landed in ${what} (${span(o.start, n)})` +
        `${taken > n ? `, ${taken - n} read but not written` : ''}`,
      exitCodeFor(failure),
      { cause: failure },
    );
  }
  if (past) {
    throw new CliError(
      `input continues past the end of ${what} (${vdi.size} bytes): the ${taken} bytes that fit ` +
        `were written (${span(o.start, taken)}), the rest was not`,
      ExitCode.USAGE,
    );
  }
  return taken;
}

export interface ImportResult {
  size: number;
  /** Bytes read from the file. */
  bytes: number;
  /** True when the VDI was created by the import. */
  created: boolean;
}

/**
 * Write `file` into VDI `name` from offset 0. A missing VDI is created with
 * the file's size (and `create` options) and deleted again if the import
 * fails; an existing one must be large enough. `-` reads stdin (the VDI must
 * exist then).
 */
export async function importVdi(
  client: SheepdogClient,
  name: string,
  file: string,
  opts: { create: CreateVdiOptions; progress: (total: number | undefined) => Progress; stdin: () => Readable },
): Promise<ImportResult> {
  let fileSize: number | undefined;
  if (file !== '-') {
    try {
      const st = await stat(file);
      if (!st.isFile()) throw new CliError(`${file} is not a regular file`, ExitCode.USAGE);
      fileSize = st.size;
    } catch (e) {
      if (e instanceof CliError) throw e;
      throw new CliError(`cannot read ${file}: ${(e as Error).message}`, ExitCode.NOT_FOUND, { cause: e });
    }
  }
  let size: number;
  let created = false;
  try {
    size = (await client.getVdi(name)).size;
    if (fileSize !== undefined && fileSize > size) {
      throw new CliError(
        `${file} (${fileSize} bytes) is larger than VDI ${name} (${size} bytes); resize the VDI first`,
        ExitCode.USAGE,
      );
    }
  } catch (e) {
    if (!(e instanceof NoVdiError)) throw e;
    if (fileSize === undefined)
      throw new CliError(`VDI ${name} does not exist: create it before importing from stdin`, ExitCode.NOT_FOUND);
    if (fileSize === 0) throw new CliError(`${file} is empty: nothing to import`, ExitCode.USAGE);
    size = (await client.createVdi(name, fileSize, opts.create)).size;
    created = true;
  }
  const progress = opts.progress(fileSize);
  let vdi: Vdi | undefined;
  try {
    vdi = await client.openVdi(name);
    const source =
      file === '-' ? opts.stdin() : createReadStream(file, { highWaterMark: Math.min(vdi.objectSize, EXPORT_CHUNK) });
    const bytes = await copyIn(vdi, source, { start: 0, progress, skipZeroes: true });
    await vdi.flush();
    await vdi.close();
    vdi = undefined;
    progress.stop(true);
    return { size, bytes, created };
  } catch (e) {
    progress.stop(false);
    if (vdi) await vdi.close().catch(() => {});
    if (created) {
      const gone = await client.deleteVdi(name).then(
        () => true,
        () => false,
      );
      const msg = `${e instanceof CliError ? e.message : errorText(e)}; VDI ${name} was created by this import and ${gone ? 'has been deleted again' : 'could not be deleted'}`;
      throw new CliError(msg, exitCodeFor(e), { cause: e });
    }
    throw e;
  }
}
