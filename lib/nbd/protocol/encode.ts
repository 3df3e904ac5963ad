/**
 * NBD encoders: server messages (greeting, option replies, transmission
 * replies) and, for tests and tools, the client's (flags, options, requests).
 * Every function returns fresh Buffers; payloads are never copied (callers
 * write a header and then the data).
 */
import {
  EXPORT_NAME_PADDING,
  IHAVEOPT,
  Info,
  NBDMAGIC,
  OPTION_HEADER,
  OPTION_REPLY_MAGIC,
  REQUEST_HEADER,
  REQUEST_MAGIC,
  Rep,
  ReplyFlag,
  ReplyType,
  SIMPLE_REPLY_HEADER,
  SIMPLE_REPLY_MAGIC,
  STRUCTURED_REPLY_HEADER,
  STRUCTURED_REPLY_MAGIC,
} from './constants.js';

const utf8 = (s: string): Buffer => Buffer.from(s, 'utf8');

/** NBDMAGIC, IHAVEOPT, handshake flags. */
export function encodeGreeting(handshakeFlags: number): Buffer {
  const b = Buffer.alloc(18);
  b.writeBigUInt64BE(NBDMAGIC, 0);
  b.writeBigUInt64BE(IHAVEOPT, 8);
  b.writeUInt16BE(handshakeFlags, 16);
  return b;
}

export function encodeOptionReply(option: number, type: number, data: Uint8Array = Buffer.alloc(0)): Buffer {
  const b = Buffer.allocUnsafe(20 + data.length);
  b.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0);
  b.writeUInt32BE(option >>> 0, 8);
  b.writeUInt32BE(type >>> 0, 12);
  b.writeUInt32BE(data.length, 16);
  b.set(data, 20);
  return b;
}

/** An error reply with a human-readable message (the spec allows UTF-8 text as data). */
export function encodeOptionError(option: number, type: number, message = ''): Buffer {
  return encodeOptionReply(option, type, utf8(message).subarray(0, 4096));
}

/** NBD_REP_SERVER for NBD_OPT_LIST. */
export function encodeRepServer(option: number, name: string, description = ''): Buffer {
  const n = utf8(name);
  const d = utf8(description);
  const data = Buffer.allocUnsafe(4 + n.length + d.length);
  data.writeUInt32BE(n.length, 0);
  n.copy(data, 4);
  d.copy(data, 4 + n.length);
  return encodeOptionReply(option, Rep.SERVER, data);
}

export function encodeInfoExport(option: number, size: number, transmissionFlags: number): Buffer {
  const data = Buffer.allocUnsafe(12);
  data.writeUInt16BE(Info.EXPORT, 0);
  data.writeBigUInt64BE(BigInt(size), 2);
  data.writeUInt16BE(transmissionFlags, 10);
  return encodeOptionReply(option, Rep.INFO, data);
}

export function encodeInfoString(option: number, info: typeof Info.NAME | typeof Info.DESCRIPTION, s: string): Buffer {
  const v = utf8(s);
  const data = Buffer.allocUnsafe(2 + v.length);
  data.writeUInt16BE(info, 0);
  v.copy(data, 2);
  return encodeOptionReply(option, Rep.INFO, data);
}

export function encodeInfoBlockSize(option: number, min: number, preferred: number, max: number): Buffer {
  const data = Buffer.allocUnsafe(14);
  data.writeUInt16BE(Info.BLOCK_SIZE, 0);
  data.writeUInt32BE(min, 2);
  data.writeUInt32BE(preferred, 6);
  data.writeUInt32BE(max, 10);
  return encodeOptionReply(option, Rep.INFO, data);
}

export function encodeMetaContext(option: number, id: number, name: string): Buffer {
  const n = utf8(name);
  const data = Buffer.allocUnsafe(4 + n.length);
  data.writeUInt32BE(id, 0);
  n.copy(data, 4);
  return encodeOptionReply(option, Rep.META_CONTEXT, data);
}

/** The reply to NBD_OPT_EXPORT_NAME: size, flags, and 124 zeros unless NO_ZEROES was negotiated. */
export function encodeExportNameReply(size: number, transmissionFlags: number, noZeroes: boolean): Buffer {
  const b = Buffer.alloc(10 + (noZeroes ? 0 : EXPORT_NAME_PADDING));
  b.writeBigUInt64BE(BigInt(size), 0);
  b.writeUInt16BE(transmissionFlags, 8);
  return b;
}

/** A simple reply's 16-byte header (READ data, if any, follows). */
export function encodeSimpleReply(cookie: bigint, error: number): Buffer {
  const b = Buffer.allocUnsafe(SIMPLE_REPLY_HEADER);
  b.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
  b.writeUInt32BE(error >>> 0, 4);
  b.writeBigUInt64BE(cookie, 8);
  return b;
}

/** A structured reply chunk's 20-byte header. */
export function encodeChunkHeader(cookie: bigint, flags: number, type: number, length: number): Buffer {
  const b = Buffer.allocUnsafe(STRUCTURED_REPLY_HEADER);
  writeChunkHeader(b, cookie, flags, type, length);
  return b;
}

function writeChunkHeader(b: Buffer, cookie: bigint, flags: number, type: number, length: number): void {
  b.writeUInt32BE(STRUCTURED_REPLY_MAGIC, 0);
  b.writeUInt16BE(flags, 4);
  b.writeUInt16BE(type, 6);
  b.writeBigUInt64BE(cookie, 8);
  b.writeUInt32BE(length >>> 0, 16);
}

/** NBD_REPLY_TYPE_NONE with DONE: the end of a reply that had chunks, or a bare success. */
export function encodeChunkNone(cookie: bigint): Buffer {
  return encodeChunkHeader(cookie, ReplyFlag.DONE, ReplyType.NONE, 0);
}

/** Header and offset of NBD_REPLY_TYPE_OFFSET_DATA; `dataLength` bytes of data must follow. */
export function encodeOffsetDataHeader(cookie: bigint, flags: number, offset: number, dataLength: number): Buffer {
  const b = Buffer.allocUnsafe(STRUCTURED_REPLY_HEADER + 8);
  writeChunkHeader(b, cookie, flags, ReplyType.OFFSET_DATA, 8 + dataLength);
  b.writeBigUInt64BE(BigInt(offset), 20);
  return b;
}

export function encodeOffsetHole(cookie: bigint, flags: number, offset: number, length: number): Buffer {
  const b = Buffer.allocUnsafe(STRUCTURED_REPLY_HEADER + 12);
  writeChunkHeader(b, cookie, flags, ReplyType.OFFSET_HOLE, 12);
  b.writeBigUInt64BE(BigInt(offset), 20);
  b.writeUInt32BE(length, 28);
  return b;
}

export interface Extent {
  length: number;
  flags: number;
}

export function encodeBlockStatus(
  cookie: bigint,
  flags: number,
  contextId: number,
  extents: readonly Extent[],
): Buffer {
  const len = 4 + 8 * extents.length;
  const b = Buffer.allocUnsafe(STRUCTURED_REPLY_HEADER + len);
  writeChunkHeader(b, cookie, flags, ReplyType.BLOCK_STATUS, len);
  b.writeUInt32BE(contextId, 20);
  let o = 24;
  for (const e of extents) {
    b.writeUInt32BE(e.length, o);
    b.writeUInt32BE(e.flags >>> 0, o + 4);
    o += 8;
  }
  return b;
}

/** NBD_REPLY_TYPE_ERROR (with DONE unless told otherwise). */
export function encodeChunkError(cookie: bigint, error: number, message = '', flags: number = ReplyFlag.DONE): Buffer {
  const m = utf8(message).subarray(0, 4096);
  const len = 6 + m.length;
  const b = Buffer.allocUnsafe(STRUCTURED_REPLY_HEADER + len);
  writeChunkHeader(b, cookie, flags, ReplyType.ERROR, len);
  b.writeUInt32BE(error >>> 0, 20);
  b.writeUInt16BE(m.length, 24);
  m.copy(b, 26);
  return b;
}

// ---- client side ----------------------------------------------------------

export function encodeClientFlags(flags: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(flags >>> 0, 0);
  return b;
}

export function encodeOption(option: number, data: Uint8Array = Buffer.alloc(0)): Buffer {
  const b = Buffer.allocUnsafe(OPTION_HEADER + data.length);
  b.writeBigUInt64BE(IHAVEOPT, 0);
  b.writeUInt32BE(option >>> 0, 8);
  b.writeUInt32BE(data.length, 12);
  b.set(data, OPTION_HEADER);
  return b;
}

/** The data of NBD_OPT_INFO / NBD_OPT_GO. */
export function encodeInfoRequestData(name: string, infos: readonly number[] = []): Buffer {
  const n = utf8(name);
  const b = Buffer.allocUnsafe(4 + n.length + 2 + 2 * infos.length);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  b.writeUInt16BE(infos.length, 4 + n.length);
  infos.forEach((v, i) => b.writeUInt16BE(v, 6 + n.length + 2 * i));
  return b;
}

/** The data of NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT. */
export function encodeMetaContextRequestData(name: string, queries: readonly string[]): Buffer {
  const parts: Buffer[] = [];
  const n = utf8(name);
  const h = Buffer.allocUnsafe(4);
  h.writeUInt32BE(n.length, 0);
  parts.push(h, n);
  const c = Buffer.allocUnsafe(4);
  c.writeUInt32BE(queries.length, 0);
  parts.push(c);
  for (const q of queries) {
    const v = utf8(q);
    const l = Buffer.allocUnsafe(4);
    l.writeUInt32BE(v.length, 0);
    parts.push(l, v);
  }
  return Buffer.concat(parts);
}

export interface RequestHeader {
  flags: number;
  type: number;
  cookie: bigint;
  offset: number;
  length: number;
}

/** A request's 28-byte header (a WRITE's payload follows). */
export function encodeRequest(r: RequestHeader): Buffer {
  const b = Buffer.allocUnsafe(REQUEST_HEADER);
  b.writeUInt32BE(REQUEST_MAGIC, 0);
  b.writeUInt16BE(r.flags, 4);
  b.writeUInt16BE(r.type, 6);
  b.writeBigUInt64BE(r.cookie, 8);
  b.writeBigUInt64BE(BigInt(r.offset), 16);
  b.writeUInt32BE(r.length >>> 0, 24);
  return b;
}
