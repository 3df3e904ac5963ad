// FrameDecoder with `transient: true` (the connection reads every socket
// chunk into one reused buffer): after each push() the chunk's memory is
// overwritten, and every frame must still come out intact: bodies are copies
// (own ArrayBuffer), a header kept across chunks is a copy, and bodies with a
// target land in the target.
import t from 'tap';
import fc from 'fast-check';
import {
  FrameDecoder,
  HEADER_SIZE,
  Op,
  Result,
  encodeResponse,
  objRequest,
  responseFor,
} from '../../protocol/index.js';

interface Frame {
  id: number;
  body: Uint8Array;
}

function stream(lens: number[]): { bytes: Uint8Array; frames: Frame[] } {
  const frames: Frame[] = lens.map((len, i) => {
    const body = new Uint8Array(len);
    for (let k = 0; k < len; k++) body[k] = (i * 31 + k * 7 + 1) & 0xff;
    return { id: i + 1, body };
  });
  const total = frames.reduce((n, f) => n + HEADER_SIZE + f.body.length, 0);
  const bytes = new Uint8Array(total);
  let off = 0;
  for (const f of frames) {
    const req = objRequest(Op.READ_OBJ, { id: f.id, dataLength: f.body.length });
    encodeResponse(responseFor(req, Result.SUCCESS, { dataLength: f.body.length }), bytes, off);
    off += HEADER_SIZE;
    bytes.set(f.body, off);
    off += f.body.length;
  }
  return { bytes, frames };
}

t.test('transient chunks: bodies and kept headers survive the reuse of the chunk', async (t) => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 0, max: 3000 }), { minLength: 1, maxLength: 12 }),
      fc.array(fc.nat(), { maxLength: 40 }),
      fc.boolean(),
      (lens, cuts, withTarget) => {
        const { bytes, frames } = stream(lens);
        const scratch = new Uint8Array(bytes.length + 1);
        const targets = new Map<number, Uint8Array>();
        const d = new FrameDecoder({
          direction: 'response',
          transient: true,
          ...(withTarget && {
            bodyTarget: (h: Uint8Array, len: number): Uint8Array | undefined => {
              const id = new DataView(h.buffer, h.byteOffset).getUint32(8, true);
              const b = new Uint8Array(len + 5);
              targets.set(id, b);
              return id % 2 === 0 ? b : undefined;
            },
          }),
        });
        const got: { id: number; body: Uint8Array }[] = [];
        const onFrame = (h: Uint8Array, b: Uint8Array): void => {
          const id = new DataView(h.buffer, h.byteOffset).getUint32(8, true);
          // The body must not be a view of the reused chunk.
          if (b.length > 0 && b.buffer === scratch.buffer) throw new Error(`frame ${id}: body is a view of the chunk`);
          got.push({ id, body: b });
        };
        // Push each piece through the one scratch buffer, then trash it.
        const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
        let prev = 0;
        for (const p of [...points, bytes.length]) {
          if (p <= prev) continue;
          scratch.set(bytes.subarray(prev, p), 0);
          d.push(scratch.subarray(0, p - prev), onFrame);
          scratch.fill(0xee);
          prev = p;
        }
        if (got.length !== frames.length) throw new Error(`${got.length} frames of ${frames.length}`);
        for (let i = 0; i < frames.length; i++) {
          const want = frames[i] as Frame;
          const g = got[i] as { id: number; body: Uint8Array };
          if (g.id !== want.id) throw new Error(`frame ${i}: id ${g.id}, want ${want.id}`);
          if (
            Buffer.compare(g.body.subarray(0, want.body.length), want.body) !== 0 ||
            g.body.length !== want.body.length
          )
            throw new Error(`frame ${want.id}: body differs`);
          const tgt = targets.get(want.id);
          if (withTarget && want.body.length > 0 && want.id % 2 === 0 && tgt && g.body.buffer !== tgt.buffer)
            throw new Error(`frame ${want.id}: body not in its target`);
        }
        return true;
      },
    ),
    { numRuns: 300 },
  );
  t.pass('300 random streams and splits');
});

t.test('transient: a body whole in the chunk is a copy with its own ArrayBuffer', async (t) => {
  const { bytes } = stream([100]);
  const d = new FrameDecoder({ direction: 'response', transient: true });
  let body: Uint8Array | undefined;
  d.push(bytes, (_h, b) => (body = b));
  t.ok(body);
  t.not(body?.buffer, bytes.buffer);
  t.equal(body?.byteLength, 100);
  t.equal(body?.buffer.byteLength, 100, 'exactly sized');
});

t.test('not transient: a body whole in the chunk is still a view (the default is unchanged)', async (t) => {
  const { bytes } = stream([100]);
  const d = new FrameDecoder({ direction: 'response' });
  let body: Uint8Array | undefined;
  d.push(bytes, (_h, b) => (body = b));
  t.equal(body?.buffer, bytes.buffer);
});

// The connection's socket reads straight into bodyWindow() while a long body
// is in progress (and into its read buffer otherwise). Simulate that reader:
// random read sizes, each read going where the decoder says, and check every
// frame against the plain decode.
t.test('direct body windows: a reader filling bodyWindow() gets the same frames', async (t) => {
  let windows = 0;
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 0, max: 5000 }), { minLength: 1, maxLength: 10 }),
      fc.array(fc.integer({ min: 1, max: 4000 }), { minLength: 1, maxLength: 60 }),
      fc.integer({ min: 1, max: 2000 }),
      fc.boolean(),
      fc.boolean(),
      (lens, reads, min, withTarget, intoTargets) => {
        const { bytes, frames } = stream(lens);
        const readBuf = new Uint8Array(4096);
        const targets = new Map<number, Uint8Array>();
        const d = new FrameDecoder({
          direction: 'response',
          transient: true,
          ...(withTarget && {
            bodyTarget: (h: Uint8Array, len: number): Uint8Array | undefined => {
              const id = new DataView(h.buffer, h.byteOffset).getUint32(8, true);
              if (id % 2 !== 0) return undefined;
              const b = new Uint8Array(len);
              targets.set(id, b);
              return b;
            },
          }),
        });
        const got: { id: number; body: Uint8Array }[] = [];
        const onFrame = (h: Uint8Array, b: Uint8Array): void => {
          got.push({ id: new DataView(h.buffer, h.byteOffset).getUint32(8, true), body: b });
        };
        let off = 0;
        let r = 0;
        while (off < bytes.length) {
          const want = reads[r++ % reads.length] as number;
          const w = d.bodyWindow(min, intoTargets);
          if (w !== undefined) {
            // A caller's target only when asked: those stay under the caller's control.
            if (!intoTargets)
              for (const tg of targets.values()) if (tg.buffer === w.buffer) throw new Error('window into a target');
            windows++;
            const n = Math.min(want, w.length, bytes.length - off);
            w.set(bytes.subarray(off, off + n));
            off += n;
            d.bodyReceived(n, onFrame);
          } else {
            const n = Math.min(want, readBuf.length, bytes.length - off);
            readBuf.set(bytes.subarray(off, off + n));
            off += n;
            d.push(readBuf.subarray(0, n), onFrame);
            readBuf.fill(0xee);
          }
        }
        if (!d.idle) throw new Error('decoder not idle at the end');
        if (got.length !== frames.length) throw new Error(`${got.length} frames of ${frames.length}`);
        for (let i = 0; i < frames.length; i++) {
          const f = frames[i] as Frame;
          const g = got[i] as { id: number; body: Uint8Array };
          if (g.id !== f.id || Buffer.compare(g.body, f.body) !== 0) throw new Error(`frame ${f.id} differs`);
          const tg = targets.get(f.id);
          if (tg !== undefined && f.body.length > 0 && g.body.buffer !== tg.buffer)
            throw new Error(`frame ${f.id}: body not in its target`);
        }
        return true;
      },
    ),
    { numRuns: 400 },
  );
  t.ok(windows > 100, `the runs used direct windows (${windows} reads)`);
});

t.test(
  'bodyWindow: none between frames, for a short rest, or after an error; bodyReceived checks its count',
  async (t) => {
    const { bytes } = stream([10_000]);
    const d = new FrameDecoder({ direction: 'response', transient: true });
    t.equal(d.bodyWindow(1), undefined, 'nothing in progress');
    const frames: Uint8Array[] = [];
    d.push(bytes.subarray(0, HEADER_SIZE + 100), (_h, b) => frames.push(b));
    t.equal(d.bodyWindow(9_901), undefined, 'fewer than min bytes to come');
    const w = d.bodyWindow(9_900);
    t.equal(w?.length, 9_900, 'the rest of the body');
    t.throws(() => d.bodyReceived(9_901, () => undefined), RangeError, 'more than the window');
    w?.set(bytes.subarray(HEADER_SIZE + 100));
    d.bodyReceived(9_900, (_h, b) => frames.push(b));
    t.equal(frames.length, 1);
    t.same(Buffer.from(frames[0] as Uint8Array), Buffer.from(bytes.subarray(HEADER_SIZE)));
    t.equal(d.bodyWindow(1), undefined, 'frame done');
    t.throws(() => d.bodyReceived(1, () => undefined), RangeError, 'no window');
  },
);

t.test('allocBody: copied bodies take their memory from the caller, each its own bytes', async (t) => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 1, max: 3000 }), { minLength: 1, maxLength: 12 }),
      fc.array(fc.nat(), { maxLength: 30 }),
      (lens, cuts) => {
        const { bytes, frames } = stream(lens);
        const slab = new Uint8Array(64 * 1024);
        let used = 0;
        const given: [number, number][] = [];
        const d = new FrameDecoder({
          direction: 'response',
          transient: true,
          allocBody: (len) => {
            if (used + len > slab.length) throw new Error('slab exhausted');
            given.push([used, len]);
            const b = slab.subarray(used, used + len);
            used += len;
            return b;
          },
        });
        const got: Uint8Array[] = [];
        const scratch = new Uint8Array(bytes.length);
        const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
        let prev = 0;
        for (const p of [...points, bytes.length]) {
          if (p <= prev) continue;
          scratch.set(bytes.subarray(prev, p), 0);
          d.push(scratch.subarray(0, p - prev), (_h, b) => got.push(b));
          scratch.fill(0xee);
          prev = p;
        }
        if (got.length !== frames.length) throw new Error('frames missing');
        got.forEach((b, i) => {
          if (b.buffer !== slab.buffer) throw new Error(`frame ${i}: not from allocBody`);
          if (Buffer.compare(b, (frames[i] as Frame).body) !== 0) throw new Error(`frame ${i} differs`);
        });
        if (given.length !== frames.length) throw new Error(`${given.length} allocations for ${frames.length} bodies`);
        return true;
      },
    ),
    { numRuns: 200 },
  );
  t.pass('200 random streams: every body from allocBody, intact');
});
