/**
 * Parsers of option request data. Every malformed input becomes an
 * NbdOptionError carrying the reply type to answer with; nothing here throws
 * anything else.
 */
import { MAX_STRING, Rep } from './constants.js';
import { NbdOptionError } from './errors.js';

const decoder = new TextDecoder('utf-8', { fatal: true });

class Reader {
  private o = 0;
  private readonly b: Buffer;
  private readonly what: string;
  constructor(b: Buffer, what: string) {
    this.b = b;
    this.what = what;
  }
  need(n: number): void {
    if (this.b.length - this.o < n) {
      throw new NbdOptionError(`${this.what}: truncated (${this.b.length} bytes)`, Rep.ERR_INVALID);
    }
  }
  u16(): number {
    this.need(2);
    const v = this.b.readUInt16BE(this.o);
    this.o += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.b.readUInt32BE(this.o);
    this.o += 4;
    return v;
  }
  string(len: number, field: string): string {
    if (len > MAX_STRING) {
      throw new NbdOptionError(`${this.what}: ${field} of ${len} bytes (at most ${MAX_STRING})`, Rep.ERR_TOO_BIG);
    }
    this.need(len);
    const s = this.b.subarray(this.o, this.o + len);
    this.o += len;
    return utf8(s, `${this.what}: ${field}`);
  }
  end(): void {
    if (this.o !== this.b.length) {
      throw new NbdOptionError(`${this.what}: ${this.b.length - this.o} trailing bytes`, Rep.ERR_INVALID);
    }
  }
}

function utf8(b: Uint8Array, what: string): string {
  try {
    return decoder.decode(b);
  } catch {
    throw new NbdOptionError(`${what} is not UTF-8`, Rep.ERR_INVALID);
  }
}

/** NBD_OPT_EXPORT_NAME's data: the name itself. */
export function parseExportName(data: Buffer): string {
  if (data.length > MAX_STRING) {
    throw new NbdOptionError(`export name of ${data.length} bytes (at most ${MAX_STRING})`, Rep.ERR_TOO_BIG);
  }
  return utf8(data, 'export name');
}

export interface InfoRequest {
  name: string;
  infos: number[];
}

/** NBD_OPT_INFO / NBD_OPT_GO: u32 name length, name, u16 count, count × u16 info type. */
export function parseInfoRequest(data: Buffer): InfoRequest {
  const r = new Reader(data, 'NBD_OPT_INFO/GO');
  const name = r.string(r.u32(), 'export name');
  const n = r.u16();
  const infos: number[] = [];
  for (let i = 0; i < n; i++) infos.push(r.u16());
  r.end();
  return { name, infos };
}

export interface MetaContextRequest {
  name: string;
  queries: string[];
}

/** NBD_OPT_LIST/SET_META_CONTEXT: u32 name length, name, u32 count, count × (u32 length, query). */
export function parseMetaContextRequest(data: Buffer): MetaContextRequest {
  const r = new Reader(data, 'NBD_OPT_*_META_CONTEXT');
  const name = r.string(r.u32(), 'export name');
  const n = r.u32();
  // Each query takes at least 4 bytes: a count larger than the data is malformed.
  if (n > data.length / 4)
    throw new NbdOptionError(`meta context request: ${n} queries in ${data.length} bytes`, Rep.ERR_INVALID);
  const queries: string[] = [];
  for (let i = 0; i < n; i++) queries.push(r.string(r.u32(), 'query'));
  r.end();
  return { name, queries };
}

/** Options that carry no data (LIST, STRUCTURED_REPLY, ABORT). */
export function parseEmpty(data: Buffer, what: string): void {
  if (data.length !== 0) throw new NbdOptionError(`${what} with ${data.length} bytes of data`, Rep.ERR_INVALID);
}
