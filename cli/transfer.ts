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
import { CliError, ExitCode } from './exit.js';
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
  opts: { create: CreateVdiOptions; progress: (total: number) => Progress; stdin: Readable },
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
  const progress = opts.progress(fileSize ?? size);
  let vdi: Vdi | undefined;
  let bytes = 0;
  try {
    vdi = await client.openVdi(name);
    const v = vdi;
    const source =
      file === '-' ? opts.stdin : createReadStream(file, { highWaterMark: Math.min(v.objectSize, EXPORT_CHUNK) });
    const count = new Transform({
      transform(chunk: Buffer, _e, cb) {
        bytes += chunk.length;
        if (bytes > v.size) {
          cb(new CliError(`input is larger than VDI ${name} (${v.size} bytes)`, ExitCode.USAGE));
          return;
        }
        progress.update(bytes);
        cb(null, chunk);
      },
    });
    await pipeline(source, count, v.createWriteStream({ skipZeroes: true }));
    await v.flush();
    await v.close();
    vdi = undefined;
    progress.stop(true);
    return { size, bytes, created };
  } catch (e) {
    progress.stop(false);
    if (vdi) await vdi.close().catch(() => {});
    if (created) await client.deleteVdi(name).catch(() => {});
    throw e;
  }
}
