/**
 * Micro benchmarks of the wire codec (tinybench): what the client pays per
 * request for building, encoding and decoding headers, and the frame
 * decoder's throughput on replies as they come off a socket.
 *
 *   node dist/bench/micro-codec.js [--time MS] [--markdown]
 */
import { Bench } from 'tinybench';
import { HEADER_SIZE, Op, Result } from '../protocol/constants.js';
import { FrameDecoder } from '../protocol/decoder.js';
import { sdHashVdi } from '../protocol/hash.js';
import {
  decodeResponse,
  encodeRequest,
  encodeResponse,
  objRequest,
  peekDataLength,
  peekId,
  peekResult,
  responseFor,
} from '../protocol/header.js';
import { vidToDataOid } from '../protocol/oid.js';
import { fmt, isMain, machine, markdownTable, parseFlags, saveResult, table } from './common.js';

/** `n` READ_OBJ replies with `bodyLen`-byte bodies, back to back, as one byte stream. */
function replyStream(n: number, bodyLen: number): Buffer {
  const req = objRequest(Op.READ_OBJ, { oid: vidToDataOid(0x7c2b25, 3), dataLength: bodyLen, offset: 0 });
  const one = Buffer.alloc(HEADER_SIZE + bodyLen, 0x5a);
  const rsp = responseFor(req, Result.SUCCESS, { dataLength: bodyLen, epoch: 1 });
  encodeResponse(rsp, one, 0);
  const out = Buffer.allocUnsafe(n * one.length);
  for (let i = 0; i < n; i++) {
    one.copy(out, i * one.length);
    out.writeUInt32LE(i + 1, i * one.length + 8);
  }
  return out;
}

/** Split `b` into socket-sized chunks. */
function chunks(b: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let off = 0; off < b.length; off += size) out.push(b.subarray(off, Math.min(b.length, off + size)));
  return out;
}

export interface MicroRow {
  task: string;
  /** Operations per second (median throughput). */
  ops: number;
  /** Mean nanoseconds per operation. */
  ns: number;
  /** Relative margin of error of the mean, %. */
  rme: number;
  /** What one operation is. */
  unit: string;
}

export async function runMicro(timeMs: number): Promise<MicroRow[]> {
  const bench = new Bench({ time: timeMs, warmupTime: Math.min(200, timeMs / 2) });
  const units = new Map<string, { unit: string; per: number }>();
  const add = (name: string, unit: string, per: number, fn: () => void): void => {
    units.set(name, { unit, per });
    bench.add(name, fn);
  };

  let sink = 0;
  const oid = vidToDataOid(0x7c2b25, 1234);
  const hdr = Buffer.allocUnsafe(HEADER_SIZE);
  const prebuilt = objRequest(Op.READ_OBJ, { oid, offset: 8192, dataLength: 4096, copies: 3 });

  add('objRequest + encodeRequest (READ_OBJ)', 'request header', 1, () => {
    encodeRequest(objRequest(Op.READ_OBJ, { oid, offset: 8192, dataLength: 4096, copies: 3 }), hdr, 0);
  });
  add('encodeRequest (prebuilt READ_OBJ)', 'request header', 1, () => {
    encodeRequest(prebuilt, hdr, 0);
  });

  const rspHdr = replyStream(1, 0).subarray(0, HEADER_SIZE);
  add('decodeResponse (obj)', 'response header', 1, () => {
    sink ^= decodeResponse(rspHdr).result;
  });
  add('peekId + peekResult + peekDataLength', 'response header', 1, () => {
    sink ^= peekId(rspHdr) ^ peekResult(rspHdr) ^ peekDataLength(rspHdr);
  });

  // 4 KiB replies, 256 per 64 KiB-ish socket chunks (headers straddle chunk edges).
  const small = chunks(replyStream(256, 4096), 65536);
  add('FrameDecoder: 256 x 4 KiB replies in 64 KiB chunks', 'reply', 256, () => {
    const d = new FrameDecoder({ direction: 'response' });
    for (const c of small) d.push(c, (h, b) => (sink ^= (h[8] ?? 0) ^ b.length));
  });
  const target = Buffer.allocUnsafe(4 * 2 ** 20);
  const big = chunks(replyStream(1, 4 * 2 ** 20), 65536);
  add('FrameDecoder: one 4 MiB reply in 64 KiB chunks, into a target', 'reply', 1, () => {
    const d = new FrameDecoder({ direction: 'response', bodyTarget: () => target });
    for (const c of big) d.push(c, (_h, b) => (sink ^= b.length));
  });
  add('FrameDecoder: one 4 MiB reply in 64 KiB chunks, decoder allocates', 'reply', 1, () => {
    const d = new FrameDecoder({ direction: 'response' });
    for (const c of big) d.push(c, (_h, b) => (sink ^= b.length));
  });

  add('vidToDataOid', 'oid', 1, () => {
    sink ^= Number(vidToDataOid(0x7c2b25, sink & 0xffff) & 0xffn);
  });
  add('sdHashVdi (16-char name)', 'name', 1, () => {
    sink ^= sdHashVdi('volume-0123456789');
  });

  await bench.run();
  if (sink === 0.5) process.stdout.write(''); // keep `sink` alive
  const rows: MicroRow[] = [];
  for (const t of bench.tasks) {
    const r = t.result;
    if (r.state !== 'completed') throw new Error(`${t.name}: ${r.state}`);
    const u = units.get(t.name) ?? { unit: 'op', per: 1 };
    rows.push({
      task: t.name,
      ops: r.throughput.p50 * u.per,
      ns: (r.latency.mean * 1e6) / u.per,
      rme: r.latency.rme,
      unit: u.unit,
    });
  }
  return rows;
}

async function main(): Promise<void> {
  const { flags, values } = parseFlags(process.argv.slice(2), { flags: ['markdown'], values: ['time'] });
  const m = await machine();
  const rows = await runMicro(Number(values.get('time') ?? 500));
  const header = ['task', 'per second', 'ns each', '±%', 'unit'];
  const cells = rows.map((r) => [r.task, fmt(r.ops), fmt(r.ns, 1), fmt(r.rme, 1), r.unit]);
  process.stdout.write(
    `codec micro benchmarks (tinybench)\n${m.cpu}, node ${m.node}, ${Math.round(m.busyBefore * 100)}% busy before the run\n\n`,
  );
  process.stdout.write(flags.has('markdown') ? markdownTable(header, cells) : table(header, cells));
  process.stdout.write(
    `\nresults in ${saveResult('micro-codec', { kind: 'micro-codec', date: new Date().toISOString(), machine: m, rows })}\n`,
  );
}

if (isMain(import.meta.url)) {
  main().catch((e: unknown) => {
    process.stderr.write(`micro-codec: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exitCode = 1;
  });
}
