// The FrameDecoder against every recorded real-sheep byte stream, split every
// way: every offset of small streams (≤ 32 KiB); for large ones every offset
// within ±64 bytes of a frame boundary plus 40 pseudo-random others, once per
// distinct framing; random multi-way splits of all; plus the view/copy/target
// rules of body delivery. Unrecorded reply bodies (> 8192 bytes) are zeros of
// the recorded length, and only their length is compared.
import t from 'tap';
import fc from 'fast-check';
import {
  Flag,
  FrameDecoder,
  type FrameDirection,
  HEADER_SIZE,
  Op,
  ProtocolError,
  Result,
  SheepdogError,
  encodeRequest,
  encodeResponse,
  objRequest,
  responseFor,
  vdiRequest,
} from '../../protocol/index.js';
import { connsOf, loadAll, sha256, type Transcript } from '../helpers/transcripts.js';

// ------------------------------------------------------------ the streams

interface ExpectedFrame {
  hdr: Buffer;
  /** Offset of the header in the stream. */
  at: number;
  bodyLen: number;
  /** The recorded body (null: only its length and sha256 were kept). */
  known: boolean;
  sha: string;
}

interface Stream {
  label: string;
  direction: FrameDirection;
  /** Own ArrayBuffer, byteOffset 0; unrecorded bodies are zeros. */
  bytes: Uint8Array;
  frames: ExpectedFrame[];
  /**
   * The stream's framing: direction and body lengths. The decoder's state
   * machine depends on nothing else, so two large streams with one framing
   * are split at the same offsets only once.
   */
  framing: string;
}

const SMALL = 32 * 1024;
const transcripts = loadAll();

function buildStream(tr: Transcript, conn: number, dir: 'req' | 'rsp'): Stream | undefined {
  const recorded = tr.frames.filter((f) => f.conn === conn && f.dir === dir);
  if (recorded.length === 0) return undefined;
  const total = recorded.reduce((n, f) => n + HEADER_SIZE + f.bodyLen, 0);
  const bytes = new Uint8Array(total);
  const frames: ExpectedFrame[] = [];
  const framing: number[] = [];
  let at = 0;
  for (const f of recorded) {
    bytes.set(f.hdr, at);
    if (f.body) bytes.set(f.body, at + HEADER_SIZE);
    frames.push({ hdr: f.hdr, at, bodyLen: f.bodyLen, known: f.body !== null, sha: f.bodySha256 });
    framing.push(f.bodyLen);
    at += HEADER_SIZE + f.bodyLen;
  }
  return {
    label: `${tr.name} conn ${conn} ${dir}`,
    direction: dir === 'req' ? 'request' : 'response',
    bytes,
    frames,
    framing: `${dir} ${framing.join(',')}`,
  };
}

/** Every stream of every transcript, built one at a time (all of them together are ~440 MB). */
function* allStreams(): Generator<Stream> {
  for (const tr of transcripts) {
    for (const conn of connsOf(tr)) {
      for (const dir of ['req', 'rsp'] as const) {
        const s = buildStream(tr, conn, dir);
        if (s) yield s;
      }
    }
  }
}

// ------------------------------------------------------------- checking

interface Got {
  h: Uint8Array;
  b: Uint8Array;
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}

/** Index of the chunk holding stream byte `pos` (cuts are the chunk starts after the first). */
function chunkOf(cuts: readonly number[], pos: number): number {
  let lo = 0;
  let hi = cuts.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((cuts[mid] as number) <= pos) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Feed `s` cut at `cuts` (strictly increasing, inside (0, length)) and check
 * every frame: header bytes, body length, body bytes where recorded, and the
 * delivery rule (a header or body inside one chunk is a view of it; one that
 * spans chunks is a copy, the body into its own exactly sized buffer).
 * Returns a description of the first problem, or undefined.
 */
function check(s: Stream, cuts: readonly number[]): string | undefined {
  const got: Got[] = [];
  const dec = new FrameDecoder({ direction: s.direction });
  let prev = 0;
  for (const c of [...cuts, s.bytes.length]) {
    dec.push(s.bytes.subarray(prev, c), (h, b) => got.push({ h, b }));
    prev = c;
  }
  if (!dec.idle || dec.buffered !== 0) return `decoder not idle at the end (buffered ${dec.buffered})`;
  if (got.length !== s.frames.length) return `${got.length} frames, expected ${s.frames.length}`;
  for (let i = 0; i < got.length; i++) {
    const g = got[i] as Got;
    const e = s.frames[i] as ExpectedFrame;
    const where = `frame ${i}`;
    if (g.h.length !== HEADER_SIZE || !bytesEqual(g.h, e.hdr)) return `${where}: header differs`;
    const hdrWhole = chunkOf(cuts, e.at) === chunkOf(cuts, e.at + HEADER_SIZE - 1);
    if (hdrWhole !== (g.h.buffer === s.bytes.buffer)) return `${where}: header view/copy rule`;
    if (hdrWhole && g.h.byteOffset !== e.at) return `${where}: header view at the wrong offset`;
    if (g.b.length !== e.bodyLen) return `${where}: body ${g.b.length} bytes, expected ${e.bodyLen}`;
    if (e.bodyLen === 0) continue;
    const a = e.at + HEADER_SIZE;
    const bodyWhole = chunkOf(cuts, a) === chunkOf(cuts, a + e.bodyLen - 1);
    if (bodyWhole) {
      if (g.b.buffer !== s.bytes.buffer || g.b.byteOffset !== a) return `${where}: whole body is not a view`;
      continue; // the very bytes of the stream
    }
    if (g.b.buffer === s.bytes.buffer) return `${where}: split body is a view of the stream`;
    if (g.b.byteOffset !== 0 || g.b.buffer.byteLength !== e.bodyLen)
      return `${where}: split body not in its own buffer`;
    if (e.known && !bytesEqual(g.b, s.bytes.subarray(a, a + e.bodyLen))) return `${where}: body bytes differ`;
  }
  return undefined;
}

/** Deterministic PRNG for the "other offsets" of large streams. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const NEAR = 64;
const OTHER_OFFSETS = 40;

/** Split offsets for a large stream: ±64 around every frame start and the end, plus pseudo-random others. */
function largeOffsets(s: Stream, seed: number): number[] {
  const set = new Set<number>();
  const len = s.bytes.length;
  for (const at of [...s.frames.map((f) => f.at), len]) {
    for (let d = -NEAR; d <= NEAR; d++) {
      const p = at + d;
      if (p > 0 && p < len) set.add(p);
    }
  }
  const rnd = mulberry32(seed);
  for (let i = 0; i < OTHER_OFFSETS; i++) set.add(1 + Math.floor(rnd() * (len - 1)));
  return [...set].sort((a, b) => a - b);
}

/** Random multi-way cuts: anywhere, near frame boundaries, and bursts of 1-byte chunks. */
function cutsArb(s: Stream): fc.Arbitrary<number[]> {
  const len = s.bytes.length;
  const bounds = [...s.frames.map((f) => f.at), ...s.frames.map((f) => f.at + HEADER_SIZE), len];
  const anywhere = fc.integer({ min: 1, max: len - 1 });
  const nearBoundary = fc.tuple(fc.constantFrom(...bounds), fc.integer({ min: -70, max: 70 })).map(([b, d]) => [b + d]);
  const burst = fc
    .tuple(fc.integer({ min: 1, max: len - 1 }), fc.integer({ min: 1, max: 120 }))
    .map(([p, k]) => Array.from({ length: k }, (_, i) => p + i));
  return fc
    .array(
      fc.oneof(
        anywhere.map((p) => [p]),
        nearBoundary,
        burst,
      ),
      { maxLength: 30 },
    )
    .map((groups) => [...new Set(groups.flat().filter((p) => p > 0 && p < len))].sort((a, b) => a - b));
}

// ------------------------------------------------------------------ tests

t.test('every recorded stream, split every way, yields the recorded frames', async (t) => {
  const seen = new Set<string>();
  let streams = 0;
  let splits = 0;
  let seed = 1;
  for (const s of allStreams()) {
    streams++;
    seed++;
    const problems: string[] = [];
    // One chunk: every body is a view; known bodies hash to the recorded sha256.
    const whole = check(s, []);
    if (whole) problems.push(`one chunk: ${whole}`);
    let p = 0;
    const dec = new FrameDecoder({ direction: s.direction });
    dec.push(s.bytes, (_h, b) => {
      const e = s.frames[p++];
      if (e?.known && sha256(b) !== e.sha) problems.push(`frame ${p - 1}: body sha256 differs from the recording`);
    });

    const len = s.bytes.length;
    const distinct = !seen.has(s.framing);
    seen.add(s.framing);
    if (len <= SMALL) {
      // Every offset, and every byte its own chunk.
      for (let cut = 1; cut < len && problems.length < 5; cut++) {
        const r = check(s, [cut]);
        if (r) problems.push(`split at ${cut}: ${r}`);
      }
      splits += len - 1;
      const ones = Array.from({ length: len - 1 }, (_, i) => i + 1);
      const r = check(s, ones);
      if (r) problems.push(`1-byte chunks: ${r}`);
    } else if (distinct) {
      // (A stream with the same framing was already split at these offsets.)
      for (const cut of largeOffsets(s, seed)) {
        const r = check(s, [cut]);
        if (r) problems.push(`split at ${cut}: ${r}`);
        splits++;
        if (problems.length >= 5) break;
      }
    }
    // Random multi-way splits (1-byte bursts included) for every stream.
    if (len > 1) {
      try {
        fc.assert(
          fc.property(cutsArb(s), (cuts) => check(s, cuts) === undefined),
          { seed, numRuns: len <= SMALL ? 40 : 6 },
        );
      } catch (e) {
        problems.push(`random splits: ${String(e).slice(0, 400)}`);
      }
    }
    t.same(problems, [], `${s.label}: ${s.frames.length} frames, ${len} bytes`);
  }
  t.equal(streams, 118, 'all 118 streams (conn × direction) of the 18 transcripts');
  t.ok(splits > 90_000, `${splits} two-way splits checked`);
});

// --------------------------------------------------------- unit behaviour

function frameBytes(hdr: Uint8Array, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(hdr.length + body.length);
  out.set(hdr);
  out.set(body, hdr.length);
  return out;
}

function readReply(id: number, body: Uint8Array): Uint8Array {
  const rsp = responseFor(objRequest(Op.READ_OBJ, { id }), Result.SUCCESS, { dataLength: body.length });
  const h = new Uint8Array(HEADER_SIZE);
  encodeResponse(rsp, h);
  return frameBytes(h, body);
}

function pattern(n: number, seed = 7): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

function collect(dec: FrameDecoder, chunks: Uint8Array[]): Got[] {
  const got: Got[] = [];
  for (const c of chunks) dec.push(c, (h, b) => got.push({ h, b }));
  return got;
}

t.test('a body lying whole in one chunk is a view of that chunk', async (t) => {
  const body = pattern(1000);
  const f = readReply(5, body);
  // Header and body in one chunk, at an offset inside a larger buffer.
  const big = new Uint8Array(f.length + 20);
  big.set(f, 7);
  const chunk = big.subarray(7, 7 + f.length);
  let [g] = collect(new FrameDecoder({ direction: 'response' }), [chunk]);
  t.equal(g?.b.buffer, big.buffer, 'same ArrayBuffer');
  t.equal(g?.b.byteOffset, 7 + HEADER_SIZE);
  t.equal(g?.h.buffer, big.buffer, 'header too');
  // Header at the end of one chunk, the body whole in the next.
  const c2 = f.slice(HEADER_SIZE);
  [g] = collect(new FrameDecoder({ direction: 'response' }), [f.slice(0, HEADER_SIZE), c2]);
  t.equal(g?.b.buffer, c2.buffer, 'body whole in the next chunk: view of that chunk');
  t.equal(g?.b.byteOffset, 0);
  // Body whole in a chunk that also ends the previous frame and starts the next.
  const f2 = readReply(6, pattern(300, 3));
  const stream = frameBytes(f, f2);
  const mid = stream.slice(40, HEADER_SIZE + 1000 + 10);
  const got = collect(new FrameDecoder({ direction: 'response' }), [
    stream.slice(0, 40),
    mid,
    stream.slice(HEADER_SIZE + 1000 + 10),
  ]);
  t.equal(got.length, 2);
  t.equal(got[0]?.b.buffer, mid.buffer, 'first body: view of the middle chunk');
  t.not(got[0]?.h.buffer, mid.buffer, 'its split header is assembled');
  t.ok(got[0] && bytesEqual(got[0].b, body));
  t.ok(got[1] && bytesEqual(got[1].b, pattern(300, 3)));
});

t.test('a split body is copied once into its own exactly sized buffer', async (t) => {
  for (const n of [1, 10, 4000, 70_000]) {
    const body = pattern(n, n);
    const f = readReply(1, body);
    // Cut the body into up to three pieces (1-byte pieces for tiny bodies).
    const cuts = [HEADER_SIZE + Math.floor(n / 3), HEADER_SIZE + Math.floor((2 * n) / 3)].filter(
      (c, i, a) => c > HEADER_SIZE && a.indexOf(c) === i,
    );
    const bounds = [0, HEADER_SIZE, ...cuts, f.length];
    const chunks = bounds.slice(1).map((e, i) => f.slice(bounds[i], e));
    const got = collect(new FrameDecoder({ direction: 'response' }), chunks);
    const b = got[0]?.b;
    t.ok(b && bytesEqual(b, body), `${n}: bytes`);
    if (n === 1) {
      t.equal(b?.buffer, chunks[1]?.buffer, '1-byte body lies whole in its chunk: a view');
      continue;
    }
    t.ok(
      chunks.every((c) => c.buffer !== b?.buffer),
      `${n}: not a view of any chunk`,
    );
    t.equal(b?.byteOffset, 0, `${n}: own buffer`);
    t.equal(b?.buffer.byteLength, n, `${n}: buffer exactly the body (no shared pool slab)`);
    for (const c of chunks) c.fill(0xee);
    t.ok(b && bytesEqual(b, body), `${n}: independent of the chunks afterwards`);
  }
});

t.test('headers: a view when whole, a fresh copy each time when split', async (t) => {
  const a = readReply(1, new Uint8Array(0));
  const b = readReply(2, new Uint8Array(0));
  const s = frameBytes(a, b);
  const got = collect(new FrameDecoder({ direction: 'response' }), [s.slice(0, 20), s.slice(20, 70), s.slice(70)]);
  t.equal(got.length, 2);
  t.not(got[0]?.h, got[1]?.h, 'distinct header buffers');
  t.ok(got[0] && bytesEqual(got[0].h, a), 'first header intact after the second was assembled');
  t.ok(got[1] && bytesEqual(got[1].h, b));
  t.equal(got[0]?.b.length, 0);
  const whole = s.slice();
  const w = collect(new FrameDecoder({ direction: 'response' }), [whole]);
  t.equal(w[1]?.h.buffer, whole.buffer);
  t.equal(w[1]?.h.byteOffset, HEADER_SIZE);
});

t.test('bodyTarget delivers the body into the caller buffer', async (t) => {
  const bodies = [pattern(100, 1), new Uint8Array(0), pattern(5000, 2), pattern(64, 3)];
  const stream = bodies.reduce<Uint8Array>((acc, b, i) => frameBytes(acc, readReply(i + 1, b)), new Uint8Array(0));
  for (const chunking of [[stream.length], [7, 100, 160, 1000, 3000], [1]]) {
    const store = new Uint8Array(20_000);
    const calls: { id: number; length: number }[] = [];
    let next = 0;
    const dec = new FrameDecoder({
      direction: 'response',
      bodyTarget: (h, length) => {
        const id = h[8] as number;
        calls.push({ id, length });
        if (id === 4) return undefined; // let the decoder choose for this one
        const target = store.subarray(next, next + length + 16); // larger than needed
        next += length + 16;
        return target;
      },
    });
    const chunks: Uint8Array[] = [];
    for (let i = 0, k = 0; i < stream.length; k++) {
      const n = chunking[k % chunking.length] as number;
      chunks.push(stream.slice(i, i + n));
      i += n;
    }
    const got = collect(dec, chunks);
    const label = `chunks of ${chunking.join('/')}`;
    t.same(
      calls,
      [
        { id: 1, length: 100 },
        { id: 3, length: 5000 },
        { id: 4, length: 64 },
      ],
      `${label}: called once per non-empty body, with its header and length`,
    );
    t.equal(got.length, 4);
    t.equal(got[0]?.b.buffer, store.buffer, `${label}: body 1 is a view of the target`);
    t.equal(got[0]?.b.byteOffset, 0);
    t.equal(got[0]?.b.length, 100, 'exactly the body, not the whole target');
    t.equal(got[2]?.b.buffer, store.buffer);
    t.equal(got[2]?.b.byteOffset, 116);
    t.equal(got[1]?.b.length, 0);
    t.not(got[3]?.b.buffer, store.buffer, 'undefined from bodyTarget: decoder-chosen buffer');
    bodies.forEach((b, i) => {
      const g = got[i];
      t.ok(g && bytesEqual(g.b, b), `${label}: body ${i + 1} bytes`);
    });
  }
});

t.test('a too-small bodyTarget is a ProtocolError; the decoder then refuses input until reset()', async (t) => {
  const f = readReply(9, pattern(200));
  const dec = new FrameDecoder({ direction: 'response', bodyTarget: (_h, n) => new Uint8Array(n - 1) });
  const err = t.throws(() => dec.push(f, () => t.fail('no frame')));
  t.ok(err instanceof ProtocolError && err instanceof SheepdogError);
  t.equal((err as ProtocolError).code, 'SHEEPDOG_ERR_PROTOCOL');
  t.throws(() => dec.push(new Uint8Array(0), () => {}), ProtocolError, 'refuses further input');
  t.equal(dec.buffered, 0, 'partial frame dropped');
  dec.reset();
  t.ok(dec.idle);
  const ok = new FrameDecoder({ direction: 'response', bodyTarget: () => new Uint8Array(200) });
  t.same(
    collect(ok, [f]).map((g) => g.b.length),
    [200],
    'a target of exactly the body length is fine',
  );
  t.same(
    collect(dec, [readReply(1, new Uint8Array(0))]).map((g) => g.b.length),
    [0],
    'after reset() a frame without a body (no target asked) decodes',
  );
});

t.test('request stream: a body follows only with the WRITE flag', async (t) => {
  const h = (req: Parameters<typeof encodeRequest>[0]): Uint8Array => {
    const b = new Uint8Array(HEADER_SIZE);
    encodeRequest(req, b);
    return b;
  };
  const read = h(objRequest(Op.READ_OBJ, { id: 1, dataLength: 4096, oid: 1n }));
  const huge = h(objRequest(Op.READ_OBJ, { id: 2, dataLength: 0xffffffff, oid: 2n }));
  const name = new Uint8Array(256);
  name.set(Buffer.from('alpha'));
  const create = h(vdiRequest(Op.NEW_VDI, { id: 3, flags: Flag.CMD_WRITE, dataLength: 256, vdiSize: 1n << 30n }));
  const cow = h(
    objRequest(Op.CREATE_AND_WRITE_OBJ, { id: 4, flags: Flag.CMD_WRITE | Flag.CMD_COW, dataLength: 3, oid: 4n }),
  );
  const stream = [read, huge, create, name, cow, Uint8Array.of(1, 2, 3)].reduce((a, b) => frameBytes(a, b));
  const dec = new FrameDecoder({ direction: 'request', maxDataLength: 1 << 20 });
  const got = collect(dec, [stream]);
  t.same(
    got.map((g) => [g.h[8], g.b.length]),
    [
      [1, 0],
      [2, 0],
      [3, 256],
      [4, 3],
    ],
    'READ_OBJ data_length is the reply size, not a body; data_length 0xffffffff without WRITE is no error',
  );
  t.equal(dec.bodyLength(read), 0);
  t.equal(dec.bodyLength(create), 256);
  // The same READ_OBJ header read as a response does carry its data_length.
  const rdec = new FrameDecoder({ direction: 'response' });
  t.equal(rdec.bodyLength(read), 4096);
  t.ok(dec.idle);
});

t.test('recorded request streams: READ_OBJ carries no body, WRITE frames do', async (t) => {
  const tr = transcripts.find((x) => x.name === '05-vdi-write-read');
  const s = tr && buildStream(tr, 8, 'req');
  if (!s) throw new Error('05-vdi-write-read conn 8');
  const got = collect(new FrameDecoder({ direction: 'request' }), [s.bytes]);
  const reads = got.filter((g) => g.h[1] === Op.READ_OBJ);
  t.ok(reads.length >= 3);
  t.ok(
    reads.every((g) => g.b.length === 0 && Buffer.from(g.h).readUInt32LE(12) > 0),
    'READ_OBJ: data_length > 0, no body',
  );
  const info = got.find((g) => g.h[1] === Op.GET_VDI_INFO);
  t.equal(info?.b.length, 512, 'GET_VDI_INFO (WRITE) carries name + tag');
});

t.test('bodyLength and the direction option', async (t) => {
  t.throws(() => new FrameDecoder({ direction: 'sideways' as FrameDirection }), TypeError);
  const dec = new FrameDecoder({ direction: 'response' });
  t.equal(dec.maxDataLength, 64 * 1024 * 1024, 'default bound 64 MiB');
  t.throws(() => dec.bodyLength(new Uint8Array(47)), ProtocolError, 'short header');
  t.throws(() => dec.bodyLength(new Uint8Array(48), 1), ProtocolError, 'header past the end');
});
