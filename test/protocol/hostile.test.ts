// What a broken or hostile peer can send: truncated frames, oversize
// data_length, garbage; and what a careless caller can pass: short buffers,
// bad offsets, out-of-range fields. Only typed errors may come out.
import t from 'tap';
import fc from 'fast-check';
import {
  Flag,
  FrameDecoder,
  type HeaderCommon,
  type FrameDirection,
  HEADER_SIZE,
  InvalidArgumentError,
  Op,
  ProtocolError,
  type Request,
  type Response,
  Result,
  SD_ATTR_OBJ_SIZE,
  SD_INODE_HEADER_SIZE,
  SheepdogError,
  addrToString,
  clusterRequest,
  decodeBtreeHeader,
  decodeBtreeIndex,
  decodeBtreeIndirect,
  decodeClusterInfo,
  decodeEpochLog,
  decodeEpochLogs,
  decodeIndexSlots,
  decodeInodeHeader,
  decodeNodeId,
  decodeNodeList,
  decodeRequest,
  decodeResponse,
  decodeSdNode,
  decodeVdiAttr,
  decodeVdiState,
  decodeVdiStates,
  encodeRequest,
  encodeResponse,
  encodeVdiNameBody,
  isKnownOpcode,
  objRequest,
  plainRequest,
  requestKind,
  responseFor,
  responseKind,
  u64n,
  vdiRequest,
  vdiStateRequest,
} from '../../protocol/index.js';

const MiB = 1024 * 1024;

function header(opcode: number, f: { flags?: number; dataLength?: number; id?: number } = {}): Uint8Array {
  const b = new Uint8Array(HEADER_SIZE);
  encodeRequest(plainRequest(opcode, f), b);
  return b;
}

/** The common header fields of a request with `opcode`, for building unions by hand. */
function common(opcode: number): HeaderCommon {
  const { kind: _k, raw: _r, ...c } = plainRequest(opcode);
  return c;
}

function isProtocolError(e: unknown): boolean {
  return e instanceof ProtocolError && e instanceof SheepdogError && e.code === 'SHEEPDOG_ERR_PROTOCOL';
}

t.test('a truncated frame stays buffered: no frame, not idle', async (t) => {
  const body = new Uint8Array(300).fill(9);
  const frame = new Uint8Array(HEADER_SIZE + body.length);
  encodeResponse(responseFor(objRequest(Op.READ_OBJ, { id: 3 }), Result.SUCCESS, { dataLength: 300 }), frame);
  frame.set(body, HEADER_SIZE);
  for (let cut = 1; cut < frame.length; cut++) {
    const dec = new FrameDecoder({ direction: 'response' });
    const got: Uint8Array[] = [];
    dec.push(frame.subarray(0, cut), (_h, b) => got.push(b));
    if (got.length !== 0 || dec.idle || dec.buffered !== cut) {
      t.fail(`cut at ${cut}: frames ${got.length}, idle ${dec.idle}, buffered ${dec.buffered}`);
      break;
    }
    dec.push(frame.subarray(cut), (_h, b) => got.push(b));
    const body = got.at(-1);
    if (got.length > 1 || body?.length !== 300 || !dec.idle || dec.buffered !== 0) {
      t.fail(`cut at ${cut}: completing it`);
    }
  }
  t.pass('every proper prefix is held, then completed');
  // A request stream cut inside a WRITE body, likewise.
  const dec = new FrameDecoder({ direction: 'request' });
  const w = header(Op.WRITE_OBJ, { flags: Flag.CMD_WRITE, dataLength: 10 });
  dec.push(w, () => t.fail('no frame yet'));
  dec.push(new Uint8Array(9), () => t.fail('no frame yet'));
  t.equal(dec.buffered, HEADER_SIZE + 9);
  t.notOk(dec.idle);
  dec.reset();
  t.ok(dec.idle, 'reset() drops the partial frame');
  t.equal(dec.buffered, 0);
});

t.test('oversize data_length is a ProtocolError on the header alone, before any allocation', async (t) => {
  const allocated: number[] = [];
  const origSlow = Buffer.allocUnsafeSlow;
  const orig = Buffer.allocUnsafe;
  Buffer.allocUnsafeSlow = (n: number) => {
    allocated.push(n);
    return origSlow(n);
  };
  Buffer.allocUnsafe = (n: number) => {
    allocated.push(n);
    return orig(n);
  };
  try {
    let targetAsked = false;
    const dec = new FrameDecoder({
      direction: 'response',
      maxDataLength: MiB,
      bodyTarget: () => {
        targetAsked = true;
        return undefined;
      },
    });
    const h = new Uint8Array(HEADER_SIZE);
    encodeResponse(responseFor(objRequest(Op.READ_OBJ), Result.SUCCESS, { dataLength: 0xffffffff }), h);
    let err: unknown;
    try {
      dec.push(h, () => t.fail('no frame'));
    } catch (e) {
      err = e;
    }
    t.ok(isProtocolError(err), 'ProtocolError, a SheepdogError, code SHEEPDOG_ERR_PROTOCOL');
    t.match((err as Error).message, /4294967295/);
    t.notOk(targetAsked, 'bodyTarget never asked');
    t.same(allocated, [], 'nothing allocated');
    t.equal(dec.buffered, 0);
    // The header arriving a byte at a time: thrown on its 48th byte.
    const dec2 = new FrameDecoder({ direction: 'response', maxDataLength: MiB });
    for (let i = 0; i < HEADER_SIZE - 1; i++) dec2.push(h.subarray(i, i + 1), () => {});
    t.throws(() => dec2.push(h.subarray(HEADER_SIZE - 1), () => {}), ProtocolError);
  } finally {
    Buffer.allocUnsafeSlow = origSlow;
    Buffer.allocUnsafe = orig;
  }
  // The bound is inclusive.
  const at = new FrameDecoder({ direction: 'response', maxDataLength: 100 });
  const h = new Uint8Array(HEADER_SIZE);
  encodeResponse(responseFor(objRequest(Op.READ_OBJ), 0, { dataLength: 100 }), h);
  t.doesNotThrow(() => at.push(h, () => {}), 'data_length == maxDataLength is accepted');
  encodeResponse(responseFor(objRequest(Op.READ_OBJ), 0, { dataLength: 101 }), h);
  t.throws(() => new FrameDecoder({ direction: 'response', maxDataLength: 100 }).push(h, () => {}), ProtocolError);
  // Requests: only WRITE frames carry a body, so only they are bounded.
  const req = new FrameDecoder({ direction: 'request', maxDataLength: 100 });
  t.doesNotThrow(() => req.push(header(Op.READ_OBJ, { dataLength: 0xffffffff }), () => {}), 'READ_OBJ: no body');
  t.throws(() => req.push(header(Op.WRITE_OBJ, { flags: Flag.CMD_WRITE, dataLength: 101 }), () => {}), ProtocolError);
});

t.test('after an error the decoder refuses input until reset()', async (t) => {
  const dec = new FrameDecoder({ direction: 'response', maxDataLength: 10 });
  const bad = new Uint8Array(HEADER_SIZE);
  encodeResponse(responseFor(objRequest(Op.READ_OBJ), 0, { dataLength: 11 }), bad);
  const good = new Uint8Array(HEADER_SIZE);
  encodeResponse(responseFor(objRequest(Op.READ_OBJ, { id: 7 }), 0), good);
  const first = t.throws(() => dec.push(bad, () => {}));
  const again = t.throws(() => dec.push(good, () => t.fail('refused input must not decode')));
  t.equal(again, first, 'the same error again');
  t.throws(() => dec.push(new Uint8Array(0), () => {}), ProtocolError, 'even an empty chunk');
  t.equal(dec.buffered, 0);
  dec.reset();
  const ids: number[] = [];
  dec.push(good, (h) => ids.push(h[8] as number));
  t.same(ids, [7], 'decodes again after reset()');
});

t.test('an error mid-chunk: frames before it were delivered, nothing after', async (t) => {
  const ok = new Uint8Array(HEADER_SIZE);
  encodeResponse(responseFor(objRequest(Op.READ_OBJ, { id: 1 }), 0), ok);
  const bad = new Uint8Array(HEADER_SIZE);
  encodeResponse(responseFor(objRequest(Op.READ_OBJ, { id: 2 }), 0, { dataLength: 1 << 30 }), bad);
  const chunk = new Uint8Array(3 * HEADER_SIZE);
  chunk.set(ok);
  chunk.set(bad, HEADER_SIZE);
  chunk.set(ok, 2 * HEADER_SIZE);
  const ids: number[] = [];
  const dec = new FrameDecoder({ direction: 'response', maxDataLength: MiB });
  t.throws(() => dec.push(chunk, (h) => ids.push(h[8] as number)), ProtocolError);
  t.same(ids, [1]);
});

// ------------------------------------------------ decoders on bad input

type Decoder = [name: string, fn: (b: Uint8Array, off: number) => unknown, size: number];
const decoders: Decoder[] = [
  ['decodeRequest', (b, o) => decodeRequest(b, o), HEADER_SIZE],
  ['decodeRequest raw', (b, o) => decodeRequest(b, o, 'raw'), HEADER_SIZE],
  ['decodeResponse', (b, o) => decodeResponse(b, o), HEADER_SIZE],
  ['decodeResponse hash', (b, o) => decodeResponse(b, o, 'hash'), HEADER_SIZE],
  ['decodeInodeHeader', (b, o) => decodeInodeHeader(b, o), SD_INODE_HEADER_SIZE],
  ['decodeIndexSlots(3)', (b, o) => decodeIndexSlots(b, o, 3), 12],
  ['decodeBtreeHeader', (b, o) => decodeBtreeHeader(b, o), 8],
  ['decodeBtreeIndex(0)', (b, o) => decodeBtreeIndex(b, o, 0), 16],
  ['decodeBtreeIndirect(1)', (b, o) => decodeBtreeIndirect(b, o, 1), 40],
  ['addrToString', (b, o) => addrToString(b, o), 16],
  ['decodeNodeId', (b, o) => decodeNodeId(b, o), 40],
  ['decodeSdNode', (b, o) => decodeSdNode(b, o), 80],
  ['decodeNodeList(2)', (b, o) => decodeNodeList(b, 2, o), 160],
  ['decodeEpochLog', (b, o) => decodeEpochLog(b, o), 48],
  ['decodeClusterInfo', (b, o) => decodeClusterInfo(b, o), 48],
  ['decodeVdiState', (b, o) => decodeVdiState(b, o), 1428],
  ['decodeVdiAttr', (b, o) => decodeVdiAttr(b, o), 784],
  ['u64n', (b, o) => u64n(b, o), 8],
  ['FrameDecoder.bodyLength', (b, o) => new FrameDecoder({ direction: 'response' }).bodyLength(b, o), HEADER_SIZE],
];

function outcome(fn: () => unknown): 'ok' | 'protocol' | string {
  try {
    fn();
    return 'ok';
  } catch (e) {
    return isProtocolError(e) ? 'protocol' : `${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`;
  }
}

t.test('decoders on short buffers and bad offsets throw ProtocolError, never RangeError', async (t) => {
  for (const [name, fn, size] of decoders) {
    const b = new Uint8Array(size + 8);
    const bad = [-1, -0.5, 0.5, 9, size + 8, Number.NaN, Number.POSITIVE_INFINITY, Number.MAX_SAFE_INTEGER];
    const results = bad.map((o) => outcome(() => fn(b, o)));
    t.same(
      results,
      bad.map(() => 'protocol'),
      `${name}: offsets ${bad.join(', ')}`,
    );
    t.equal(
      outcome(() => fn(new Uint8Array(size - 1), 0)),
      'protocol',
      `${name}: ${size - 1}-byte buffer`,
    );
    t.equal(
      outcome(() => fn(new Uint8Array(0), 0)),
      'protocol',
      `${name}: empty buffer`,
    );
    t.equal(
      outcome(() => fn(new Uint8Array(size), 0)),
      'ok',
      `${name}: exactly ${size} bytes is enough`,
    );
  }
  // Any buffer, any offset: a value or a ProtocolError.
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 200 }),
      fc.oneof(fc.integer({ min: -5, max: 210 }), fc.double()),
      fc.constantFrom(...decoders),
      (b, off, [, fn]) => ['ok', 'protocol'].includes(outcome(() => fn(b, off))),
    ),
    { seed: 42, numRuns: 2000 },
  );
  t.pass('fuzzed offsets');
});

t.test('counts from the wire or the caller are checked too', async (t) => {
  const b = new Uint8Array(4096).fill(0xff);
  t.equal(
    outcome(() => decodeIndexSlots(b, 0, -1)),
    'protocol',
    'negative slot count',
  );
  t.equal(
    outcome(() => decodeIndexSlots(b, 0, 1.5)),
    'protocol',
    'fractional slot count',
  );
  t.equal(
    outcome(() => decodeIndexSlots(b, 0, 2000)),
    'protocol',
    'more slots than bytes',
  );
  t.equal(
    outcome(() => decodeNodeList(b, 7000)),
    'protocol',
    'more than SD_MAX_NODES',
  );
  t.equal(
    outcome(() => decodeNodeList(b, Number.NaN)),
    'protocol',
    'NaN count',
  );
  t.equal(
    outcome(() => decodeNodeList(b, 100)),
    'protocol',
    'more nodes than bytes',
  );
  // epoch_log with nr_nodes 0xffffffff in a 48-byte entry: capped by the stride's node count.
  const e = new Uint8Array(48).fill(0xff);
  t.equal(
    outcome(() => decodeEpochLog(e, 0, 0)),
    'ok',
    'nr_nodes beyond the entry: no nodes read',
  );
  t.equal(
    outcome(() => decodeEpochLog(e)),
    'protocol',
    'uncapped: more nodes than bytes',
  );
  t.equal(
    outcome(() => decodeEpochLogs(e, -0.6)),
    'protocol',
    'a zero stride does not loop forever',
  );
  t.same(decodeEpochLogs(new Uint8Array(47), 0), [], 'a partial entry is not an entry');
  // cluster_info nr_nodes larger than the buffer holds: only whole nodes present are read.
  const ci = new Uint8Array(48 + 80 + 10);
  ci[2] = 0xff;
  ci[3] = 0x7f; // 32767
  t.equal(decodeClusterInfo(ci).nodes.length, 1);
  // vdi_state with nr_participants 0xffffffff: at most SD_MAX_COPIES read.
  const vs = new Uint8Array(1428);
  vs.fill(0xff, 60, 64);
  t.equal(decodeVdiState(vs).participants.length, 31);
  t.same(decodeVdiStates(new Uint8Array(1427)), []);
  // attr value_len above 65536.
  const attr = new Uint8Array(SD_ATTR_OBJ_SIZE);
  new DataView(attr.buffer).setUint32(524, 65537, true);
  t.equal(
    outcome(() => decodeVdiAttr(attr)),
    'protocol',
    'value_len > 65536',
  );
  // u64 above 2^53 as a number.
  const big = new Uint8Array(8).fill(0xff);
  t.equal(
    outcome(() => u64n(big, 0)),
    'protocol',
  );
  big[6] = 0x1f;
  big[7] = 0;
  t.equal(u64n(big, 0), Number.MAX_SAFE_INTEGER);
});

// ------------------------------------------------ encoders on bad input

t.test('encoding an out-of-range field is an InvalidArgumentError', async (t) => {
  const badNumbers = [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY];
  const cases: [string, Request | Response, 'req' | 'rsp'][] = [];
  const req = (name: string, r: Request): void => void cases.push([name, r, 'req']);
  const rsp = (name: string, r: Response): void => void cases.push([name, r, 'rsp']);
  const o = objRequest(Op.READ_OBJ);
  const v = vdiRequest(Op.NEW_VDI);
  const c = clusterRequest(Op.MAKE_FS);
  const s = vdiStateRequest(Op.ALTER_VDI_COPY);
  for (const x of badNumbers) {
    req(`protoVer ${x}`, { ...o, protoVer: x });
    req(`id ${x}`, { ...o, id: x });
    req(`obj.offset ${x}`, { ...o, offset: x });
    req(`vdi.snapid ${x}`, { ...v, snapid: x });
    req(`cluster.tag ${x}`, { ...c, tag: x });
    req(`vdi_state.newVid ${x}`, { ...s, newVid: x });
  }
  req('protoVer 256', { ...o, protoVer: 256 });
  req('opcode 256', { ...o, opcode: 256 });
  req('flags 0x10000', { ...o, flags: 0x10000 });
  req('epoch 2^32', { ...o, epoch: 2 ** 32 });
  req('dataLength 2^32', { ...o, dataLength: 2 ** 32 });
  req('obj.copies 256', { ...o, copies: 256 });
  req('obj.copyPolicy 256', { ...o, copyPolicy: 256 });
  req('obj.ecIndex 256', { ...o, ecIndex: 256 });
  req('obj.tgtEpoch 2^32', { ...o, tgtEpoch: 2 ** 32 });
  req('obj.offset 2^32 (sheep reads a u32)', { ...o, offset: 2 ** 32 });
  req('obj.oid 2^64', { ...o, oid: 1n << 64n });
  req('obj.oid -1n', { ...o, oid: -1n });
  req('obj.cowOid 2^64', { ...o, cowOid: 1n << 64n });
  req('obj.oid as a number', { ...o, oid: 5 as unknown as bigint });
  req('vdi.vdiSize as a number', { ...v, vdiSize: 1024 as unknown as bigint });
  req('vdi.baseVdiId -1', { ...v, baseVdiId: -1 });
  req('vdi.copies as a bigint', { ...v, copies: 2n as unknown as number });
  req('vdi.blockSizeShift 256', { ...v, blockSizeShift: 256 });
  req('vdi.storePolicy 256', { ...v, storePolicy: 256 });
  req('vdi.type 2^32', { ...v, type: 2 ** 32 });
  req('cluster.clusterFlags 0x10000', { ...c, clusterFlags: 0x10000 });
  req('cluster.ctime 2^64', { ...c, ctime: 1n << 64n });
  req('cluster.nodesNr -1', { ...c, nodesNr: -1 });
  req('vdi_state.setBitmap 256', { ...s, setBitmap: 256 });
  req('checkpoint.vid 2^32', { ...common(0xc7), kind: 'vdi_state_checkpoint', get: 0, tgtEpoch: 0, vid: 2 ** 32 });
  req('inode_coherence.validate -1', { ...common(0xc8), kind: 'inode_coherence', vid: 1, validate: -1 });
  req('raw of 31 bytes', plainRequest(0x7f, { raw: new Uint8Array(31) }));
  req('raw of 33 bytes', plainRequest(0x7f, { raw: new Uint8Array(33) }));
  const r = (op: number) => responseFor(plainRequest(op), 0);
  rsp('result 2^32', { ...r(Op.READ_OBJ), result: 2 ** 32 });
  rsp('result -1', { ...r(Op.READ_OBJ), result: -1 });
  rsp('obj.offset 2^64', { ...(r(Op.READ_OBJ) as Extract<Response, { kind: 'obj' }>), offset: 1n << 64n });
  rsp('vdi.vdiId 2^32', { ...(r(Op.NEW_VDI) as Extract<Response, { kind: 'vdi' }>), vdiId: 2 ** 32 });
  rsp('vdi.copies 256', { ...(r(Op.NEW_VDI) as Extract<Response, { kind: 'vdi' }>), copies: 256 });
  rsp('node.storeFree -1n', { ...(r(Op.STAT_SHEEP) as Extract<Response, { kind: 'node' }>), storeFree: -1n });
  rsp('node.nrNodes 1.5', { ...(r(Op.GET_NODE_LIST) as Extract<Response, { kind: 'node' }>), nrNodes: 1.5 });
  rsp('hash digest of 19 bytes', {
    ...(r(Op.GET_HASH) as Extract<Response, { kind: 'hash' }>),
    digest: new Uint8Array(19),
  });
  rsp('cluster_default.nrCopies 256', {
    ...(r(Op.GET_CLUSTER_DEFAULT) as Extract<Response, { kind: 'cluster_default' }>),
    nrCopies: 256,
  });
  rsp('raw of 27 bytes', { ...(r(0x7f) as Extract<Response, { kind: 'raw' }>), raw: new Uint8Array(27) });
  rsp('protoVer -1', { ...r(Op.READ_OBJ), protoVer: -1 });
  const wrong: string[] = [];
  for (const [name, value, dir] of cases) {
    const out = new Uint8Array(HEADER_SIZE);
    try {
      if (dir === 'req') encodeRequest(value as Request, out);
      else encodeResponse(value as Response, out);
      wrong.push(`${name}: encoded`);
    } catch (e) {
      if (!(e instanceof InvalidArgumentError && e instanceof SheepdogError)) wrong.push(`${name}: ${String(e)}`);
      else if (e.code !== 'SHEEPDOG_ERR_INVALID_ARGUMENT') wrong.push(`${name}: code ${e.code}`);
    }
  }
  t.same(wrong, [], `${cases.length} out-of-range fields refused`);
  // The largest in-range values encode.
  const max = new Uint8Array(HEADER_SIZE);
  t.doesNotThrow(() =>
    encodeRequest(
      {
        ...o,
        protoVer: 255,
        opcode: 255,
        flags: 0xffff,
        epoch: 2 ** 32 - 1,
        id: 2 ** 32 - 1,
        dataLength: 2 ** 32 - 1,
        oid: (1n << 64n) - 1n,
        offset: 2 ** 32 - 1,
      },
      max,
    ),
  );
  // Names and tags that do not fit their 256-byte fields.
  t.throws(() => encodeVdiNameBody('x'.repeat(256)), InvalidArgumentError, '256-byte name');
  t.throws(() => encodeVdiNameBody('é'.repeat(128)), InvalidArgumentError, '256 bytes of UTF-8');
  t.throws(() => encodeVdiNameBody('ok', 't'.repeat(300)), InvalidArgumentError, 'long tag');
  t.throws(() => encodeVdiNameBody('a\0b'), InvalidArgumentError, 'NUL inside');
  t.equal(encodeVdiNameBody('x'.repeat(255)).length, 256, '255 bytes + NUL fits');
  // An output buffer too small for the header: a typed error, nothing written.
  for (const [buf, off] of [
    [new Uint8Array(47), 0],
    [new Uint8Array(48), 1],
    [new Uint8Array(48), -1],
  ] as const) {
    let err: unknown;
    try {
      encodeRequest(o, buf, off);
    } catch (e) {
      err = e;
    }
    t.ok(err instanceof SheepdogError, `${buf.length}-byte buffer at ${off}: ${String(err)}`);
    t.ok(
      buf.every((x) => x === 0),
      'untouched',
    );
  }
});

// ------------------------------------------------ unknown opcodes

t.test('unknown opcodes decode with a raw union and re-encode losslessly', async (t) => {
  const unknown = Array.from({ length: 256 }, (_, i) => i).filter((op) => !isKnownOpcode(op));
  t.ok(unknown.length > 150);
  t.ok(
    unknown.every((op) => requestKind(op) === 'raw' && responseKind(op) === 'raw'),
    'raw union for every unknown opcode',
  );
  fc.assert(
    fc.property(
      fc.constantFrom(...unknown),
      fc.uint8Array({ minLength: HEADER_SIZE, maxLength: HEADER_SIZE }),
      fc.integer({ min: 0, max: 16 }),
      (op, bytes, off) => {
        const buf = new Uint8Array(off + HEADER_SIZE);
        buf.set(bytes, off);
        buf[off + 1] = op;
        const frame = buf.subarray(off);
        const req = decodeRequest(buf, off);
        const rsp = decodeResponse(buf, off);
        if (req.kind !== 'raw' || rsp.kind !== 'raw') return false;
        if (!Buffer.from(req.raw).equals(frame.subarray(16))) return false;
        if (!Buffer.from(rsp.raw).equals(frame.subarray(20)) || rsp.result !== Buffer.from(frame).readUInt32LE(16))
          return false;
        const a = new Uint8Array(HEADER_SIZE);
        const b = new Uint8Array(HEADER_SIZE);
        encodeRequest(req, a);
        encodeResponse(rsp, b);
        return Buffer.from(a).equals(frame) && Buffer.from(b).equals(frame);
      },
    ),
    { seed: 7, numRuns: 1000 },
  );
  t.pass('1000 random unknown-opcode headers round-trip byte for byte');
});

// ------------------------------------------------ garbage into the decoder

t.test('garbage in random chunks: only ProtocolError, bounded memory, bytes accounted for', async (t) => {
  const arb = fc.record({
    direction: fc.constantFrom<FrameDirection>('request', 'response'),
    maxDataLength: fc.oneof(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 0, max: 4096 })),
    // Garbage, sometimes with plausible small headers spliced in.
    data: fc.oneof(
      fc.uint8Array({ maxLength: 3000 }),
      fc
        .array(
          fc.oneof(
            fc.uint8Array({ maxLength: 200 }),
            fc
              .tuple(fc.integer({ min: 0, max: 300 }), fc.boolean(), fc.uint8Array({ minLength: 48, maxLength: 48 }))
              .map(([len, write, h]) => {
                const b = h.slice();
                new DataView(b.buffer).setUint32(12, len, true);
                b[2] = write ? (b[2] as number) | 1 : (b[2] as number) & ~1;
                return b;
              }),
          ),
          { maxLength: 20 },
        )
        .map((parts) => Uint8Array.from(parts.flatMap((p) => [...p]))),
    ),
    chunkSizes: fc.array(fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 97 }), fc.integer({ min: 1, max: 5000 })), {
      minLength: 1,
      maxLength: 30,
    }),
    useTarget: fc.constantFrom('none', 'fit', 'small'),
    resetAfterError: fc.boolean(),
  });
  fc.assert(
    fc.property(arb, ({ direction, maxDataLength, data, chunkSizes, useTarget, resetAfterError }) => {
      const dec = new FrameDecoder({
        direction,
        maxDataLength,
        ...(useTarget === 'none'
          ? {}
          : { bodyTarget: (_h: Uint8Array, n: number) => new Uint8Array(useTarget === 'fit' ? n : n - 1) }),
      });
      let consumed = 0; // bytes handed out as frames
      let accepted = 0; // bytes pushed without error since the last reset
      let off = 0;
      for (let k = 0; off < data.length; k++) {
        const n = chunkSizes[k % chunkSizes.length] as number;
        const chunk = data.subarray(off, off + n);
        off += n;
        try {
          dec.push(chunk, (h, b) => {
            if (h.length !== HEADER_SIZE || b.length > maxDataLength) throw new Error('bad frame');
            if (b.length !== dec.bodyLength(h)) throw new Error('body length');
            consumed += HEADER_SIZE + b.length;
          });
          accepted += chunk.length;
          if (dec.buffered > maxDataLength + HEADER_SIZE) return false;
          if (consumed + dec.buffered !== accepted) return false;
          if (dec.idle !== (dec.buffered === 0)) return false;
        } catch (e) {
          if (!isProtocolError(e)) throw e;
          if (dec.buffered !== 0) return false;
          // Refuses until reset.
          try {
            dec.push(new Uint8Array(1), () => {});
            return false;
          } catch (e2) {
            if (e2 !== e) return false;
          }
          if (!resetAfterError) return true;
          dec.reset();
          consumed = 0;
          accepted = 0;
        }
      }
      return true;
    }),
    { seed: 2024, numRuns: 1500 },
  );
  t.pass('1500 garbage streams');
});
