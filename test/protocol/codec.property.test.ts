// Property tests of the pure codec: header encode → decode round trips for
// every union kind at random buffer offsets, record round trips, FNV-1a
// against a BigInt reference, oid and bitmap helpers, proto_ver rules and the
// opcode/result names.
import { isDeepStrictEqual } from 'node:util';
import t from 'tap';
import fc from 'fast-check';
import {
  BTREE_INDEX_HEADER_SIZE,
  CLUSTER_INFO_SIZE,
  EPOCH_LOG_HEADER_SIZE,
  FNV1A_64_INIT,
  FNV_64_PRIME,
  HEADER_SIZE,
  INODE_BTREE_MAGIC,
  INODE_OFF,
  InvalidArgumentError,
  LEDGER_BIT,
  NODE_ID_SIZE,
  Op,
  Result,
  SD_ATTR_OBJ_SIZE,
  SD_INODE_GREF_OFFSET,
  SD_INODE_HEADER_SIZE,
  SD_INODE_SIZE,
  SD_MAX_COPIES,
  SD_NODE_SIZE,
  SD_NR_VDIS,
  SD_PROTO_VER,
  SD_SHEEP_PROTO_VER,
  VDI_BITMAP_SIZE,
  VDI_BIT,
  VDI_STATE_SIZE,
  addrFromString,
  addrToString,
  bitmapClear,
  bitmapNextZero,
  bitmapSet,
  bitmapSetBits,
  bitmapTest,
  clusterRequest,
  dataOidToLedgerOid,
  dataVdiIdOffset,
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
  decodeVdiNameBody,
  decodeVdiState,
  decodeVdiStates,
  encodeBtreeHeader,
  encodeBtreeIndex,
  encodeBtreeIndirect,
  encodeClusterInfo,
  encodeEpochLog,
  encodeIndexSlots,
  encodeInodeHeader,
  encodeNodeId,
  encodeRequest,
  encodeResponse,
  encodeSdNode,
  encodeVdiAttr,
  encodeVdiNameBody,
  encodeVdiState,
  epochLogStride,
  fnv1a64,
  inodeMetaSize,
  isDataObj,
  isKnownOpcode,
  isKnownResult,
  isLedgerObj,
  isVdiAttrObj,
  isVdiBtreeObj,
  isVdiObj,
  isVmstateObj,
  ledgerOidToDataOid,
  objRequest,
  objectCount,
  oidHex,
  oidToIdx,
  oidToVid,
  oidType,
  opName,
  peekDataLength,
  peekEpoch,
  peekFlags,
  peekId,
  peekOpcode,
  peekProtoVer,
  peekResult,
  peekVdiId,
  plainRequest,
  protoVerAccepted,
  protoVerFor,
  requestKind,
  responseFor,
  responseKind,
  resultMessage,
  resultName,
  sdHashVdi,
  type ClusterInfo,
  type EpochLog,
  type InodeHeader,
  type NodeId,
  type Request,
  type RequestKind,
  type Response,
  type ResponseKind,
  type SdNode,
  type VdiAttr,
  type VdiState,
  vdiRequest,
  vdiStateRequest,
  vidToAttrOid,
  vidToBtreeOid,
  vidToDataOid,
  vidToVdiOid,
  vidToVmstateOid,
} from '../../protocol/index.js';

const RUNS = 300;
const opts = (seed: number, numRuns = RUNS): { seed: number; numRuns: number } => ({ seed, numRuns });

/** fc.record with ordinary (not null-prototype) objects, comparable with what the decoders return. */
const rec = <T extends object>(model: { [K in keyof T]: fc.Arbitrary<T[K]> }): fc.Arbitrary<T> =>
  fc.record(model, { noNullPrototype: true }) as fc.Arbitrary<T>;
const u8 = fc.integer({ min: 0, max: 0xff });
const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const vid = fc.integer({ min: 0, max: 0xffffff });
const enc = new TextEncoder();

/** Any Unicode text that fits a NUL-terminated field of `len` bytes. */
const cText = (len: number, maxChars = 40): fc.Arbitrary<string> =>
  fc.string({ unit: 'binary', maxLength: maxChars }).filter((s) => !s.includes('\0') && enc.encode(s).length < len);

/** A buffer with the record/header at a random offset and random bytes around it. */
function placed<T>(size: number, value: fc.Arbitrary<T>): fc.Arbitrary<{ v: T; buf: Uint8Array; off: number }> {
  return fc
    .tuple(value, fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0, max: 40 }), u8)
    .map(([v, off, tail, fill]) => ({ v, buf: new Uint8Array(off + size + tail).fill(fill), off }));
}

function untouchedOutside(before: Uint8Array, after: Uint8Array, off: number, size: number): boolean {
  for (let i = 0; i < before.length; i++) {
    if ((i < off || i >= off + size) && before[i] !== after[i]) return false;
  }
  return true;
}

// ------------------------------------------------------------ headers

const opcodesOf = (kind: RequestKind): number[] =>
  Array.from({ length: 256 }, (_, i) => i).filter((o) => requestKind(o) === kind);
const rspOpcodesOf = (kind: ResponseKind): number[] =>
  Array.from({ length: 256 }, (_, i) => i).filter((o) => responseKind(o) === kind);

const common = (opcodes: number[]) =>
  rec({
    protoVer: u8,
    opcode: fc.constantFrom(...opcodes),
    flags: u16,
    epoch: u32,
    id: u32,
    dataLength: u32,
  });

const requestArbs: Record<RequestKind, fc.Arbitrary<Request>> = {
  obj: fc
    .tuple(
      common(opcodesOf('obj')),
      rec({ oid: u64, cowOid: u64, copies: u8, copyPolicy: u8, ecIndex: u8, tgtEpoch: u32, offset: u32 }),
    )
    .map(([c, u]) => ({ ...c, kind: 'obj' as const, ...u })),
  vdi: fc
    .tuple(
      common(opcodesOf('vdi')),
      rec({
        vdiSize: u64,
        baseVdiId: u32,
        copies: u8,
        copyPolicy: u8,
        storePolicy: u8,
        blockSizeShift: u8,
        snapid: u32,
        type: u32,
      }),
    )
    .map(([c, u]) => ({ ...c, kind: 'vdi' as const, ...u })),
  cluster: fc
    .tuple(
      common(opcodesOf('cluster')),
      rec({
        oid: u64,
        ctime: u64,
        copies: u8,
        copyPolicy: u8,
        clusterFlags: u16,
        tag: u32,
        nodesNr: u32,
        blockSizeShift: u8,
      }),
    )
    .map(([c, u]) => ({ ...c, kind: 'cluster' as const, ...u })),
  vdi_state: fc
    .tuple(
      common(opcodesOf('vdi_state')),
      rec({ oldVid: u32, newVid: u32, copies: u8, setBitmap: u8, copyPolicy: u8, blockSizeShift: u8 }),
    )
    .map(([c, u]) => ({ ...c, kind: 'vdi_state' as const, ...u })),
  vdi_state_checkpoint: fc
    .tuple(common(opcodesOf('vdi_state_checkpoint')), rec({ get: u32, tgtEpoch: u32, vid: u32 }))
    .map(([c, u]) => ({ ...c, kind: 'vdi_state_checkpoint' as const, ...u })),
  inode_coherence: fc
    .tuple(common(opcodesOf('inode_coherence')), rec({ vid: u32, validate: u32 }))
    .map(([c, u]) => ({ ...c, kind: 'inode_coherence' as const, ...u })),
  raw: fc
    .tuple(common(opcodesOf('raw')), fc.uint8Array({ minLength: 32, maxLength: 32 }))
    .map(([c, raw]) => ({ ...c, kind: 'raw' as const, raw })),
};

const rspCommon = (opcodes: number[]) => fc.tuple(common(opcodes), u32).map(([c, result]) => ({ ...c, result }));

const responseArbs: Record<ResponseKind, fc.Arbitrary<Response>> = {
  obj: fc
    .tuple(rspCommon(rspOpcodesOf('obj')), rec({ copies: u8, offset: u64 }))
    .map(([c, u]) => ({ ...c, kind: 'obj' as const, ...u })),
  vdi: fc
    .tuple(rspCommon(rspOpcodesOf('vdi')), rec({ vdiId: u32, attrId: u32, copies: u8, blockSizeShift: u8 }))
    .map(([c, u]) => ({ ...c, kind: 'vdi' as const, ...u })),
  node: fc
    .tuple(rspCommon(rspOpcodesOf('node')), rec({ nrNodes: u32, storeSize: u64, storeFree: u64 }))
    .map(([c, u]) => ({ ...c, kind: 'node' as const, ...u })),
  hash: fc
    .tuple(rspCommon(rspOpcodesOf('hash')), fc.uint8Array({ minLength: 20, maxLength: 20 }))
    .map(([c, digest]) => ({ ...c, kind: 'hash' as const, digest })),
  cluster_default: fc
    .tuple(rspCommon(rspOpcodesOf('cluster_default')), rec({ nrCopies: u8, copyPolicy: u8, blockSizeShift: u8 }))
    .map(([c, u]) => ({ ...c, kind: 'cluster_default' as const, ...u })),
  raw: fc
    .tuple(rspCommon(rspOpcodesOf('raw')), fc.uint8Array({ minLength: 28, maxLength: 28 }))
    .map(([c, raw]) => ({ ...c, kind: 'raw' as const, raw })),
};

t.test('every opcode maps to one request and one response union', async (t) => {
  t.same(opcodesOf('vdi_state_checkpoint'), [Op.VDI_STATE_CHECKPOINT_CTL]);
  t.same(opcodesOf('inode_coherence'), [Op.INODE_COHERENCE]);
  t.same(
    opcodesOf('cluster'),
    [Op.MAKE_FS, Op.STAT_CLUSTER, Op.REWEIGHT, Op.ALTER_CLUSTER_COPY].sort((a, b) => a - b),
  );
  t.ok(opcodesOf('raw').includes(0x7f) && opcodesOf('raw').includes(Op.GET_NODE_LIST));
  t.same(rspOpcodesOf('node'), [Op.GET_NODE_LIST, Op.STAT_SHEEP]);
  t.same(rspOpcodesOf('hash'), [Op.GET_HASH]);
  t.same(rspOpcodesOf('cluster_default'), [Op.GET_CLUSTER_DEFAULT]);
  t.ok(rspOpcodesOf('obj').includes(Op.READ_OBJ) && rspOpcodesOf('vdi').includes(Op.NEW_VDI));
});

for (const [kind, arb] of Object.entries(requestArbs) as [RequestKind, fc.Arbitrary<Request>][]) {
  t.test(`request ${kind}: encode → decode round trip at random offsets`, async (t) => {
    fc.assert(
      fc.property(placed(HEADER_SIZE, arb), ({ v, buf, off }) => {
        const before = buf.slice();
        encodeRequest(v, buf, off);
        if (!untouchedOutside(before, buf, off, HEADER_SIZE)) return false;
        const d = decodeRequest(buf, off);
        if (d.kind !== kind || !isDeepStrictEqual(d, v)) return false;
        if (!isDeepStrictEqual(decodeRequest(buf, off, kind), v)) return false;
        // Decode → encode gives the same 48 bytes.
        const again = new Uint8Array(HEADER_SIZE);
        encodeRequest(d, again);
        if (!isDeepStrictEqual(again, buf.subarray(off, off + HEADER_SIZE).slice())) return false;
        // The peek accessors read the same fields.
        return (
          peekProtoVer(buf, off) === v.protoVer &&
          peekOpcode(buf, off) === v.opcode &&
          peekFlags(buf, off) === v.flags &&
          peekEpoch(buf, off) === v.epoch &&
          peekId(buf, off) === v.id &&
          peekDataLength(buf, off) === v.dataLength
        );
      }),
      opts(100 + kind.length),
    );
    t.pass(`${RUNS} round trips`);
  });
}

for (const [kind, arb] of Object.entries(responseArbs) as [ResponseKind, fc.Arbitrary<Response>][]) {
  t.test(`response ${kind}: encode → decode round trip at random offsets`, async (t) => {
    fc.assert(
      fc.property(placed(HEADER_SIZE, arb), ({ v, buf, off }) => {
        const before = buf.slice();
        encodeResponse(v, buf, off);
        if (!untouchedOutside(before, buf, off, HEADER_SIZE)) return false;
        const d = decodeResponse(buf, off);
        if (d.kind !== kind || !isDeepStrictEqual(d, v)) return false;
        if (!isDeepStrictEqual(decodeResponse(buf, off, kind), v)) return false;
        if (peekResult(buf, off) !== v.result || peekId(buf, off) !== v.id) return false;
        return v.kind !== 'vdi' || peekVdiId(buf, off) === v.vdiId;
      }),
      opts(200 + kind.length),
    );
    t.pass(`${RUNS} round trips`);
  });
}

t.test('a header decoded with another union kind re-encodes to the fields that kind covers', async (t) => {
  // Any 48 bytes decoded as raw re-encode identically, whatever the opcode.
  fc.assert(
    fc.property(fc.uint8Array({ minLength: HEADER_SIZE, maxLength: HEADER_SIZE }), (b) => {
      const out = new Uint8Array(HEADER_SIZE);
      encodeRequest(decodeRequest(b, 0, 'raw'), out);
      const out2 = new Uint8Array(HEADER_SIZE);
      encodeResponse(decodeResponse(b, 0, 'raw'), out2);
      return isDeepStrictEqual(out, b) && isDeepStrictEqual(out2, b);
    }),
    opts(300),
  );
  t.pass();
});

t.test('decoded fields do not alias the input buffer', async (t) => {
  const b = Buffer.alloc(HEADER_SIZE, 0x11);
  b[1] = 0x7f; // unknown opcode: raw union
  const req = decodeRequest(b);
  const rsp = decodeResponse(b, 0, 'hash');
  b.fill(0);
  t.ok(req.kind === 'raw' && req.raw.every((x) => x === 0x11), 'raw request union is a copy');
  t.ok(rsp.kind === 'hash' && rsp.digest.every((x) => x === 0x11), 'digest is a copy');
  t.equal(req.kind === 'raw' && Object.getPrototypeOf(req.raw), Uint8Array.prototype, 'a plain Uint8Array');
});

t.test('builders: right proto_ver, zero defaults, responseFor echoes opcode and id', async (t) => {
  const o = objRequest(Op.READ_OBJ, { oid: 5n, dataLength: 10 });
  t.equal(o.protoVer, SD_PROTO_VER);
  t.same([o.kind, o.oid, o.cowOid, o.offset, o.flags, o.id, o.epoch], ['obj', 5n, 0n, 0, 0, 0, 0]);
  t.equal(objRequest(Op.READ_PEER).protoVer, SD_SHEEP_PROTO_VER);
  t.equal(vdiRequest(Op.GET_VDI_ATTR).protoVer, SD_SHEEP_PROTO_VER, 'GET_VDI_ATTR (0x89) is internal');
  t.equal(vdiRequest(Op.NEW_VDI, { protoVer: 0 }).protoVer, 0, 'explicit proto_ver wins');
  t.equal(clusterRequest(Op.STAT_CLUSTER, { nodesNr: 3 }).nodesNr, 3);
  t.equal(vdiStateRequest(Op.ALTER_VDI_COPY).protoVer, SD_SHEEP_PROTO_VER);
  const p = plainRequest(Op.GET_NODE_LIST, { dataLength: 6144 * 80 });
  t.same([p.kind, p.raw.length, p.protoVer], ['raw', 32, SD_SHEEP_PROTO_VER]);
  fc.assert(
    fc.property(u8, u32, u32, (opcode, id, result) => {
      const r = responseFor(plainRequest(opcode, { id }), result, { dataLength: 7 });
      const buf = new Uint8Array(HEADER_SIZE);
      encodeResponse(r, buf);
      const d = decodeResponse(buf);
      return (
        r.kind === responseKind(opcode) &&
        d.opcode === opcode &&
        d.id === id &&
        d.result === result &&
        d.dataLength === 7 &&
        isDeepStrictEqual(d, r)
      );
    }),
    opts(400),
  );
  // Every builder output encodes, and decodes back to itself.
  for (const r of [o, vdiRequest(Op.NEW_VDI), clusterRequest(Op.MAKE_FS), vdiStateRequest(Op.NOTIFY_VDI_ADD), p]) {
    const buf = new Uint8Array(HEADER_SIZE);
    encodeRequest(r, buf);
    t.same(decodeRequest(buf), r, `${opName(r.opcode)} builder round trip`);
  }
});

// ------------------------------------------------------------ records

const inodeArb: fc.Arbitrary<InodeHeader> = rec({
  name: cText(256),
  tag: cText(256),
  createTime: u64,
  snapCtime: u64,
  vmClockNsec: u64,
  vdiSize: u64,
  vmStateSize: u64,
  copyPolicy: u8,
  storePolicy: u8,
  nrCopies: u8,
  blockSizeShift: u8,
  snapId: u32,
  vdiId: u32,
  parentVdiId: u32,
  btreeCounter: u32,
});

/** Any 16-byte sheep address, as its text form (IPv4 when the first 12 bytes are zero). */
const addrBytesArb = fc.oneof(
  fc.uint8Array({ minLength: 4, maxLength: 4 }).map((v4) => {
    const b = new Uint8Array(16);
    b.set(v4, 12);
    return b;
  }),
  fc.uint8Array({ minLength: 16, maxLength: 16 }),
  // IPv6 with zero runs (exercises :: compression)
  fc.array(fc.oneof(fc.constant(0), u16), { minLength: 8, maxLength: 8 }).map((g) => {
    const b = new Uint8Array(16);
    g.forEach((x, i) => {
      b[2 * i] = x >> 8;
      b[2 * i + 1] = x & 0xff;
    });
    return b;
  }),
);
const addrArb = addrBytesArb.map((b) => addrToString(b));
const nodeIdArb: fc.Arbitrary<NodeId> = rec({ addr: addrArb, port: u16, ioAddr: addrArb, ioPort: u16 });
const sdNodeArb: fc.Arbitrary<SdNode> = rec({ nid: nodeIdArb, nrVnodes: u16, zone: u32, space: u64 });

t.test('inode header round trip; layout offsets', async (t) => {
  fc.assert(
    fc.property(placed(SD_INODE_HEADER_SIZE, inodeArb), ({ v, buf, off }) => {
      const before = buf.slice();
      encodeInodeHeader(v, buf, off);
      return (
        untouchedOutside(before, buf, off, SD_INODE_HEADER_SIZE) && isDeepStrictEqual(decodeInodeHeader(buf, off), v)
      );
    }),
    opts(500, 100),
  );
  // A name starting with U+FEFF keeps it (a BOM-stripping decoder would not).
  const h: InodeHeader = {
    name: '\ufeffbom',
    tag: 'x'.repeat(255),
    createTime: 1n,
    snapCtime: 0n,
    vmClockNsec: 0n,
    vdiSize: 1n << 30n,
    vmStateSize: 0n,
    copyPolicy: 0x11,
    storePolicy: 1,
    nrCopies: 3,
    blockSizeShift: 22,
    snapId: 1,
    vdiId: 0xed202b,
    parentVdiId: 0,
    btreeCounter: 9,
  };
  const buf = new Uint8Array(SD_INODE_HEADER_SIZE);
  encodeInodeHeader(h, buf);
  t.same(decodeInodeHeader(buf), h);
  const dv = new DataView(buf.buffer);
  t.equal(dv.getUint32(INODE_OFF.vdiId, true), 0xed202b, 'vdi_id @560');
  t.equal(dv.getBigUint64(INODE_OFF.vdiSize, true), 1n << 30n, 'vdi_size @536');
  t.equal(buf[INODE_OFF.blockSizeShift], 22, 'block_size_shift @555');
  t.equal(dv.getUint32(INODE_OFF.btreeCounter, true), 9, 'btree_counter @568');
  t.throws(() => encodeInodeHeader({ ...h, name: 'n'.repeat(256) }, buf), InvalidArgumentError, '256-byte name');
  t.throws(() => encodeInodeHeader({ ...h, name: 'a\0b' }, buf), InvalidArgumentError, 'NUL in name');
  t.equal(dataVdiIdOffset(0), SD_INODE_HEADER_SIZE);
  t.equal(dataVdiIdOffset(3), 4676);
  t.equal(SD_INODE_GREF_OFFSET, 4_198_968);
  t.equal(SD_INODE_SIZE, 12_587_576);
  t.equal(objectCount(100n << 20n, 22), 25);
  t.equal(objectCount((10n << 20n) + 1n, 20), 11);
  t.equal(inodeMetaSize(12 << 20, 22), SD_INODE_HEADER_SIZE + 12, 'delta (12 MiB): 3 slots');
  t.equal(inodeMetaSize(1n << 30n, 22), SD_INODE_HEADER_SIZE + 1024);
});

t.test('index slots round trip', async (t) => {
  fc.assert(
    fc.property(fc.array(u32, { maxLength: 300 }), fc.integer({ min: 0, max: 9 }), (slots, off) => {
      const buf = new Uint8Array(off + slots.length * 4 + 3);
      encodeIndexSlots(slots, buf, off);
      return isDeepStrictEqual([...decodeIndexSlots(buf, off, slots.length)], slots);
    }),
    opts(600),
  );
  t.pass();
});

t.test('B-tree header, leaf and indirect entries round trip', async (t) => {
  fc.assert(
    fc.property(
      rec({ magic: u16, depth: u16, entries: u32 }),
      fc.array(rec({ idx: u32, vdiId: u32 }), { maxLength: 20 }),
      fc.array(rec({ idx: u32, oid: u64 }), { maxLength: 20 }),
      fc.integer({ min: 0, max: 16 }),
      (hdr, leaves, indirect, off) => {
        const a = new Uint8Array(off + BTREE_INDEX_HEADER_SIZE + 8 * leaves.length);
        encodeBtreeHeader(hdr, a, off);
        leaves.forEach((e, i) => encodeBtreeIndex(e, a, off, i));
        const b = new Uint8Array(off + BTREE_INDEX_HEADER_SIZE + 16 * indirect.length);
        encodeBtreeHeader(hdr, b, off);
        indirect.forEach((e, i) => encodeBtreeIndirect(e, b, off, i));
        return (
          isDeepStrictEqual(decodeBtreeHeader(a, off), hdr) &&
          leaves.every((e, i) => isDeepStrictEqual(decodeBtreeIndex(a, off, i), e)) &&
          indirect.every((e, i) => isDeepStrictEqual(decodeBtreeIndirect(b, off, i), e))
        );
      },
    ),
    opts(700),
  );
  const root = new Uint8Array(16);
  encodeBtreeHeader({ magic: INODE_BTREE_MAGIC, depth: 1, entries: 1 }, root);
  t.same([...root.subarray(0, 8)], [0x74, 0x62, 1, 0, 1, 0, 0, 0], 'magic 0x6274 little-endian');
});

t.test('addresses: every 16-byte form survives text and back; text is canonical', async (t) => {
  fc.assert(
    fc.property(addrBytesArb, (b) => {
      const s = addrToString(b);
      const out = new Uint8Array(16);
      addrFromString(s, out);
      if (!isDeepStrictEqual(out, b)) return false;
      const first12Zero = b.subarray(0, 12).every((x) => x === 0);
      if (first12Zero) return s === '' ? b.every((x) => x === 0) : /^\d+\.\d+\.\d+\.\d+$/.test(s);
      // RFC 5952 text, as the WHATWG URL parser serializes IPv6.
      return new URL(`http://[${s}]/`).hostname === `[${s}]`;
    }),
    opts(800, 1000),
  );
  fc.assert(
    fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), (s) => {
      const out = new Uint8Array(16);
      addrFromString(s, out);
      const back = addrToString(out);
      const again = new Uint8Array(16);
      addrFromString(back, again);
      return isDeepStrictEqual(out, again);
    }),
    opts(801, 1000),
  );
  const b = new Uint8Array(16);
  addrFromString('127.0.0.1', b);
  t.same([...b], [...new Array(12).fill(0), 127, 0, 0, 1], 'IPv4: 12 zero bytes, then the address');
  addrFromString('[fe80::1]', b);
  t.equal(addrToString(b), 'fe80::1', 'brackets accepted');
  addrFromString('::ffff:10.0.0.1', b);
  t.equal(addrToString(b), '::ffff:a00:1');
  t.equal(addrToString(new Uint8Array(16)), '', 'all zero: no address');
  for (const bad of ['1.2.3', '256.1.1.1', 'host', '1::2::3', '1:2:3:4:5:6:7:8:9', ':::'])
    t.throws(() => addrFromString(bad, b), InvalidArgumentError, bad);
});

t.test('node_id and sd_node round trip; the rb_node prefix is ignored', async (t) => {
  fc.assert(
    fc.property(
      placed(NODE_ID_SIZE, nodeIdArb),
      placed(SD_NODE_SIZE, sdNodeArb),
      fc.uint8Array({ minLength: 24, maxLength: 24 }),
      (n, s, garbage) => {
        encodeNodeId(n.v, n.buf, n.off);
        const beforeNode = s.buf.slice();
        encodeSdNode(s.v, s.buf, s.off);
        if (!untouchedOutside(beforeNode, s.buf, s.off, SD_NODE_SIZE)) return false;
        if (!s.buf.subarray(s.off, s.off + 24).every((x) => x === 0)) return false; // written as zeros
        s.buf.set(garbage, s.off); // what a real sheep sends: pointers
        return isDeepStrictEqual(decodeNodeId(n.buf, n.off), n.v) && isDeepStrictEqual(decodeSdNode(s.buf, s.off), s.v);
      },
    ),
    opts(900),
  );
  // Fixed layout: node_id @24, nr_vnodes @64, zone @68, space @72.
  const buf = new Uint8Array(SD_NODE_SIZE);
  encodeSdNode(
    { nid: { addr: '::1', port: 7000, ioAddr: '10.0.0.2', ioPort: 7001 }, nrVnodes: 128, zone: 5, space: 9n },
    buf,
  );
  const dv = new DataView(buf.buffer);
  t.equal(buf[24 + 15], 1, 'addr @24');
  t.equal(dv.getUint16(24 + 16, true), 7000, 'port @40');
  t.equal(buf[24 + 18 + 12], 10, 'io_addr @42');
  t.equal(dv.getUint16(24 + 34, true), 7001, 'io_port @58');
  t.equal(dv.getUint16(64, true), 128);
  t.equal(dv.getUint32(68, true), 5);
  t.equal(dv.getBigUint64(72, true), 9n);
  fc.assert(
    fc.property(fc.array(sdNodeArb, { maxLength: 8 }), (nodes) => {
      const b = new Uint8Array(nodes.length * SD_NODE_SIZE);
      nodes.forEach((n, i) => encodeSdNode(n, b, i * SD_NODE_SIZE));
      return isDeepStrictEqual(decodeNodeList(b, nodes.length), nodes);
    }),
    opts(901, 100),
  );
});

const epochLogArb = (maxNodes: number): fc.Arbitrary<EpochLog> =>
  fc.array(sdNodeArb, { maxLength: maxNodes }).chain((nodes) =>
    rec({
      ctime: u64,
      time: u64,
      epoch: u32,
      nrNodes: fc.constant(nodes.length),
      disableRecovery: u8,
      nrCopies: u8,
      copyPolicy: u8,
      flags: u16,
      drvName: fc.string({ unit: 'grapheme-ascii', maxLength: 16 }).filter((s) => !s.includes('\0')),
      nodes: fc.constant(nodes),
    }),
  );

t.test('epoch_log round trip, fixed stride in a STAT_CLUSTER body', async (t) => {
  const arb = fc
    .integer({ min: 0, max: 5 })
    .chain((nodesNr) =>
      fc.tuple(fc.constant(nodesNr), fc.array(epochLogArb(nodesNr), { minLength: 1, maxLength: 4 }), u8),
    );
  fc.assert(
    fc.property(arb, ([nodesNr, logs, fill]) => {
      const stride = epochLogStride(nodesNr);
      const body = new Uint8Array(stride * logs.length).fill(fill);
      // Encode back to front: no entry may write into its neighbour.
      for (let i = logs.length - 1; i >= 0; i--) encodeEpochLog(logs[i] as EpochLog, body, i * stride, stride);
      return isDeepStrictEqual(decodeEpochLogs(body, nodesNr), logs);
    }),
    opts(1000, 200),
  );
  t.equal(epochLogStride(0), EPOCH_LOG_HEADER_SIZE);
  t.equal(epochLogStride(3), 288);
  // A 16-character driver name fills drv_name[16] exactly and writes nothing past it.
  const e: EpochLog = {
    ctime: 1n,
    time: 2n,
    epoch: 3,
    nrNodes: 0,
    disableRecovery: 0,
    nrCopies: 2,
    copyPolicy: 0,
    flags: 0xc,
    drvName: 'abcdefghijklmnop',
    nodes: [],
  };
  const buf = new Uint8Array(EPOCH_LOG_HEADER_SIZE + 1).fill(0x5a);
  encodeEpochLog(e, buf, 0, EPOCH_LOG_HEADER_SIZE);
  t.equal(buf[EPOCH_LOG_HEADER_SIZE], 0x5a, 'byte 48 (the next entry) untouched');
  t.equal(decodeEpochLog(buf).drvName, 'abcdefghijklmnop');
  t.throws(() => encodeEpochLog({ ...e, drvName: 'ééééééééé' }, buf, 0, 48), InvalidArgumentError, '18 bytes');
  // nr_nodes above the request's nodes_nr: only nodes_nr nodes are read.
  const two = new Uint8Array(epochLogStride(1));
  encodeEpochLog({ ...e, nrNodes: 3, nodes: [] }, two, 0, two.length);
  t.same(decodeEpochLog(two, 0, 1).nodes.length, 1);
  t.equal(decodeEpochLog(two, 0, 1).nrNodes, 3);
});

t.test('cluster_info round trip', async (t) => {
  const arb: fc.Arbitrary<ClusterInfo> = fc.array(sdNodeArb, { maxLength: 6 }).chain((nodes) =>
    rec({
      protoVer: u8,
      disableRecovery: u8,
      nrNodes: fc.constant(nodes.length),
      epoch: u32,
      ctime: u64,
      flags: u16,
      nrCopies: u8,
      copyPolicy: u8,
      status: u8,
      blockSizeShift: u8,
      defaultStore: fc.string({ unit: 'grapheme-ascii', maxLength: 16 }).filter((s) => !s.includes('\0')),
      nodes: fc.constant(nodes),
    }),
  );
  fc.assert(
    fc.property(arb, fc.integer({ min: 0, max: 9 }), (c, off) => {
      const buf = new Uint8Array(off + 48 + c.nodes.length * SD_NODE_SIZE);
      encodeClusterInfo(c, buf, off);
      return isDeepStrictEqual(decodeClusterInfo(buf, off), c);
    }),
    opts(1100),
  );
  const full = new Uint8Array(CLUSTER_INFO_SIZE);
  encodeClusterInfo(
    {
      protoVer: SD_SHEEP_PROTO_VER,
      disableRecovery: 0,
      nrNodes: -1,
      epoch: 1,
      ctime: 5n,
      flags: 0,
      nrCopies: 2,
      copyPolicy: 0,
      status: 1,
      blockSizeShift: 22,
      defaultStore: 'plain',
      nodes: [],
    },
    full,
  );
  const d = decodeClusterInfo(full);
  t.equal(d.nrNodes, -1, 'nr_nodes is a signed 16-bit field');
  t.same(d.nodes, [], 'a negative count reads no nodes');
  t.equal(d.defaultStore, 'plain');
});

t.test('vdi_state round trip', async (t) => {
  const arb: fc.Arbitrary<VdiState> = fc.array(fc.tuple(u32, nodeIdArb), { maxLength: SD_MAX_COPIES }).chain((ps) =>
    rec({
      vid,
      nrCopies: u8,
      snapshot: u8,
      deleted: u8,
      copyPolicy: u8,
      blockSizeShift: u8,
      parentVid: u32,
      lockState: u32,
      lockOwner: nodeIdArb,
      nrParticipants: fc.constant(ps.length),
      participantsState: fc.constant(ps.map((p) => p[0])),
      participants: fc.constant(ps.map((p) => p[1])),
    }),
  );
  fc.assert(
    fc.property(fc.array(arb, { minLength: 1, maxLength: 3 }), (states) => {
      const body = new Uint8Array(states.length * VDI_STATE_SIZE + 100); // trailing partial record ignored
      states.forEach((s, i) => encodeVdiState(s, body, i * VDI_STATE_SIZE));
      return isDeepStrictEqual(decodeVdiStates(body), states) && isDeepStrictEqual(decodeVdiState(body, 0), states[0]);
    }),
    opts(1200, 100),
  );
  t.pass();
});

t.test('sheepdog_vdi_attr round trip', async (t) => {
  const arb: fc.Arbitrary<VdiAttr> = rec({
    name: cText(256),
    tag: cText(256),
    ctime: u64,
    snapId: u32,
    key: cText(256),
    value: fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.constant(new Uint8Array(65536).fill(7))),
  });
  fc.assert(
    fc.property(arb, fc.integer({ min: 0, max: 9 }), (a, off) => {
      const buf = new Uint8Array(off + SD_ATTR_OBJ_SIZE);
      encodeVdiAttr(a, buf, off);
      const whole = decodeVdiAttr(buf, off);
      // A reader may ask only for header + key + value_len bytes.
      const short = decodeVdiAttr(buf.subarray(0, off + 784 + a.value.length), off);
      return isDeepStrictEqual(whole, a) && isDeepStrictEqual(short, a);
    }),
    opts(1300, 100),
  );
  const buf = new Uint8Array(SD_ATTR_OBJ_SIZE);
  t.throws(
    () => encodeVdiAttr({ name: 'a', tag: '', ctime: 0n, snapId: 0, key: 'k', value: new Uint8Array(65537) }, buf),
    InvalidArgumentError,
  );
});

t.test('VDI name / name+tag bodies', async (t) => {
  fc.assert(
    fc.property(cText(256), fc.option(cText(256), { nil: undefined }), (name, tag) => {
      const b = encodeVdiNameBody(name, tag);
      return (
        b.length === (tag === undefined ? 256 : 512) &&
        isDeepStrictEqual(decodeVdiNameBody(b), { name, tag: tag ?? '' })
      );
    }),
    opts(1400),
  );
  t.pass();
});

// ------------------------------------------------------------ hashing

function fnvReference(bytes: Uint8Array, h0 = 0xcbf29ce484222325n): bigint {
  let h = h0;
  for (const b of bytes) {
    h ^= BigInt(b);
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return h;
}

t.test('fnv1a64 equals a straightforward BigInt FNV-1a', async (t) => {
  t.equal(FNV1A_64_INIT, 0xcbf29ce484222325n);
  t.equal(FNV_64_PRIME, 0x100000001b3n);
  t.equal(fnv1a64(new Uint8Array(0)), FNV1A_64_INIT);
  t.equal(fnv1a64(enc.encode('a')), 0xaf63dc4c8601ec8cn, 'published FNV-1a 64 test vector for "a"');
  t.equal(fnv1a64(enc.encode('foobar')), 0x85944171f73967e8n, 'published vector for "foobar"');
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), u64, (bytes, h) => {
      return fnv1a64(bytes) === fnvReference(bytes) && fnv1a64(bytes, h) === fnvReference(bytes, h);
    }),
    opts(1500, 500),
  );
  // Continuing from a hash is hashing the concatenation.
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 100 }), fc.uint8Array({ maxLength: 100 }), (a, b) => {
      const ab = new Uint8Array(a.length + b.length);
      ab.set(a);
      ab.set(b, a.length);
      return fnv1a64(b, fnv1a64(a)) === fnv1a64(ab);
    }),
    opts(1501),
  );
});

t.test('sdHashVdi gives the vids sheep assigned in the transcripts', async (t) => {
  const vids: [string, number][] = [
    ['alpha', 0xed202b],
    ['beta', 0x4620a7],
    ['gamma', 0x6ba96a],
    ['delta', 0x13a0c1],
    ['alpha-clone', 0xc29457],
    ['ecvol', 0x320a4e],
    ['hyper', 0x5b5b59],
    ['delta-clone', 0xe43279],
  ];
  for (const [name, v] of vids) {
    t.equal(sdHashVdi(name), v, `${name} → 0x${v.toString(16)}`);
    t.equal(sdHashVdi(enc.encode(name)), v, `${name} as bytes`);
  }
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 64 }), (s) => {
      const h = sdHashVdi(s);
      return Number.isInteger(h) && h >= 0 && h < SD_NR_VDIS && BigInt(h) === (fnvReference(enc.encode(s)) & 0xffffffn);
    }),
    opts(1600),
  );
});

// ------------------------------------------------------------ oids

t.test('oid helpers match the bit layout', async (t) => {
  fc.assert(
    fc.property(vid, u32, (v, idx) => {
      const V = BigInt(v) << 32n;
      const I = BigInt(idx);
      const data = vidToDataOid(v, idx);
      const inode = vidToVdiOid(v);
      const vmstate = vidToVmstateOid(v, idx);
      const attr = vidToAttrOid(v, idx);
      const btree = vidToBtreeOid(v, idx);
      const ledger = dataOidToLedgerOid(data);
      return (
        data === (V | I) &&
        inode === ((1n << 63n) | V) &&
        vmstate === ((1n << 62n) | V | I) &&
        attr === ((1n << 61n) | V | I) &&
        btree === ((1n << 60n) | V | I) &&
        ledger === ((1n << 59n) | V | I) &&
        ledgerOidToDataOid(ledger) === data &&
        [data, inode, vmstate, attr, btree, ledger].every((o) => oidToVid(o) === v) &&
        [data, vmstate, attr, btree, ledger].every((o) => oidToIdx(o) === idx) &&
        oidToIdx(inode) === 0 &&
        oidType(data) === 'data' &&
        oidType(inode) === 'vdi' &&
        oidType(vmstate) === 'vmstate' &&
        oidType(attr) === 'attr' &&
        oidType(btree) === 'btree' &&
        oidType(ledger) === 'ledger' &&
        isDataObj(data) &&
        !isDataObj(ledger) &&
        isVdiObj(inode) &&
        !isVdiObj(data) &&
        isVmstateObj(vmstate) &&
        isVdiAttrObj(attr) &&
        isVdiBtreeObj(btree) &&
        isLedgerObj(ledger) &&
        oidHex(data).length === 16 &&
        BigInt(`0x${oidHex(inode)}`) === inode
      );
    }),
    opts(1700, 1000),
  );
  t.equal(VDI_BIT, 1n << 63n);
  t.equal(LEDGER_BIT, 1n << 59n);
  // Transcript oids: inode of alpha, data object 2^20 of hyper, clone data with cow_oid.
  t.equal(vidToVdiOid(0xed202b), 0x80ed202b00000000n);
  t.equal(vidToDataOid(0x5b5b59, 0x100000), 0x5b5b5900100000n);
  t.equal(oidHex(vidToDataOid(0xed202b, 0)), '00ed202b00000000');
  t.equal(oidType(1n << 63n), 'vdi', 'vdi bit wins (sheep tests it first)');
  for (const bad of [-1, 0x1000000, 1.5, Number.NaN]) {
    t.throws(() => vidToVdiOid(bad), InvalidArgumentError, `vid ${bad}`);
    t.throws(() => vidToDataOid(bad, 0), InvalidArgumentError);
  }
  for (const bad of [-1, 2 ** 32, 0.5]) {
    t.throws(() => vidToDataOid(1, bad), InvalidArgumentError, `idx ${bad}`);
    t.throws(() => vidToAttrOid(1, bad), InvalidArgumentError);
    t.throws(() => vidToBtreeOid(1, bad), InvalidArgumentError);
    t.throws(() => vidToVmstateOid(1, bad), InvalidArgumentError);
  }
});

// ------------------------------------------------------------ bitmaps

/** Reference: a C `unsigned long` bitmap (64-bit words, little-endian), bit i in word i/64. */
function referenceBitmap(bits: number[], nbytes: number): Uint8Array {
  const words = new BigUint64Array(Math.ceil(nbytes / 8));
  for (const i of bits) words[i >> 6] = (words[i >> 6] as bigint) | (1n << BigInt(i & 63));
  const out = new Uint8Array(words.length * 8);
  const dv = new DataView(out.buffer);
  words.forEach((w, k) => dv.setBigUint64(8 * k, w, true));
  return out.subarray(0, nbytes);
}

t.test('bitmap helpers are LSB-first, as a little-endian unsigned long bitmap', async (t) => {
  fc.assert(
    fc.property(
      fc
        .integer({ min: 1, max: 64 })
        .chain((nbytes) =>
          fc.tuple(
            fc.constant(nbytes),
            fc.uniqueArray(fc.integer({ min: 0, max: nbytes * 8 - 1 }), { maxLength: nbytes * 8 }),
            fc.integer({ min: 0, max: nbytes * 8 }),
          ),
        ),
      ([nbytes, bits, start]) => {
        const b = new Uint8Array(nbytes);
        for (const i of bits) bitmapSet(b, i);
        if (!isDeepStrictEqual(b, referenceBitmap(bits, nbytes))) return false;
        const sorted = [...bits].sort((x, y) => x - y);
        if (!isDeepStrictEqual([...bitmapSetBits(b)], sorted)) return false;
        for (let i = 0; i < nbytes * 8; i++) if (bitmapTest(b, i) !== bits.includes(i)) return false;
        let expect = start;
        while (expect < nbytes * 8 && bits.includes(expect)) expect++;
        if (bitmapNextZero(b, start, nbytes * 8) !== expect) return false;
        const limit = Math.floor((nbytes * 8) / 2);
        if (
          !isDeepStrictEqual(
            [...bitmapSetBits(b, limit)],
            sorted.filter((i) => i < limit),
          )
        )
          return false;
        for (const i of bits) bitmapClear(b, i);
        return b.every((x) => x === 0);
      },
    ),
    opts(1800, 500),
  );
  const bm = new Uint8Array(VDI_BITMAP_SIZE);
  t.equal(VDI_BITMAP_SIZE, 2_097_152);
  bitmapSet(bm, 0xed202b);
  t.equal(bm[0xed202b >> 3], 1 << (0xed202b & 7), 'vid 0xed202b: byte 0x1da405, bit 3');
  t.same([...bitmapSetBits(bm)], [0xed202b]);
  bm.fill(0xff, 0, 100);
  t.equal(bitmapNextZero(bm, 0), 800, 'skips full bytes');
  t.equal(bitmapNextZero(bm.fill(0xff), 5), SD_NR_VDIS, 'none free: nbits');
});

// ------------------------------------------------- proto_ver and names

t.test('protoVerFor / protoVerAccepted follow sheep 1.0', async (t) => {
  let bad = 0;
  for (let op = 0; op < 256; op++) {
    if (protoVerFor(op) !== (op >= 0x80 ? 0x0a : 0x02)) bad++;
    for (let v = 0; v < 256; v++) {
      const expect = op >= 0x80 ? v === 0x0a : v <= 0x02; // queue_request(): 0 is accepted for public ops
      if (protoVerAccepted(op, v) !== expect) bad++;
      if (protoVerAccepted(op, protoVerFor(op)) !== true) bad++;
    }
  }
  t.equal(bad, 0, 'all 256 × 256 combinations');
  t.equal(protoVerFor(Op.READ_VDIS), SD_PROTO_VER, 'READ_VDIS (0x15) is public');
  t.equal(protoVerFor(Op.READ_DEL_VDIS), SD_SHEEP_PROTO_VER, 'READ_DEL_VDIS (0xc9) is internal');
  t.notOk(protoVerAccepted(Op.GET_NODE_LIST, SD_PROTO_VER), 'an internal op with 0x02: VER_MISMATCH');
  t.ok(protoVerAccepted(Op.LOCK_VDI, 0), 'libsheepdog sends 0 for public ops');
});

/** sd_strerror() texts, from include/sheep.h of sheepdog 1.0. */
const SHEEP_MESSAGES: Record<number, string> = {
  0: 'Success',
  1: 'Unknown error',
  2: 'No object found',
  3: 'I/O error',
  4: 'VDI exists already',
  5: 'Invalid parameters',
  6: 'System error',
  7: 'VDI is already locked',
  8: 'No VDI found',
  9: 'No base VDI found',
  10: 'Failed to read from requested VDI',
  11: 'Failed to write to requested VDI',
  12: 'Failed to read from base VDI',
  13: 'Failed to write to base VDI',
  14: 'Failed to find requested tag',
  15: 'System is still booting',
  16: 'VDI is not locked',
  17: 'System is shutting down',
  18: 'Out of memory on server',
  19: 'Maximum number of VDIs reached',
  20: 'Protocol version mismatch',
  21: 'Server has no space for new objects',
  22: 'Waiting for cluster to be formatted',
  23: 'Waiting for other nodes to join cluster',
  24: 'Node has failed to join cluster',
  25: 'IO has halted as there are not enough living nodes',
  26: 'Object is read-only',
  29: 'Inode object is invalidated',
  152: 'Invalid cluster vnodes strategy',
  151: 'Targeted node is gateway mode',
  129: 'Request has an old epoch',
  130: 'Request has a new epoch',
  131: 'Cluster has not been formatted',
  132: 'Creation times differ',
  133: 'Invalid epoch',
  134: 'Network error between sheep',
  135: 'No cache object found',
  136: 'The buffer is too small',
  137: 'Cluster is running/halted and cannot be force recovered',
  138: 'Targeted backend store is not found',
  139: 'Operation is not supported',
  140: 'Targeted node is in recovery',
  141: 'Node is killed',
  142: 'Object ID exists already',
  143: 'Ask to try again',
  144: 'Object may be stale',
  145: 'Cluster driver error',
};

t.test('resultName / resultMessage / opName for every code, known or not', async (t) => {
  for (const [name, code] of Object.entries(Result)) {
    t.equal(resultName(code), name);
    t.ok(isKnownResult(code));
    t.equal(resultMessage(code), SHEEP_MESSAGES[code] ?? `Invalid error code ${code.toString(16)}`, `${name} message`);
  }
  // Known to sheep but without a text in sd_strerror: its fallback.
  t.equal(resultMessage(Result.VDI_NOT_EMPTY), 'Invalid error code 92');
  t.equal(resultMessage(Result.NO_CHECKPOINT_ENTRY), 'Invalid error code 99');
  for (const [name, code] of Object.entries(Op)) {
    t.equal(opName(code), name);
    t.ok(isKnownOpcode(code));
  }
  t.equal(resultName(0x7f), 'UNKNOWN_0x7f');
  t.equal(resultMessage(0x7f), 'Invalid error code 7f');
  t.equal(opName(0x7f), 'UNKNOWN_0x7f');
  t.equal(opName(0x0a), 'UNKNOWN_0x0a', 'two hex digits');
  t.equal(resultMessage(0x1234), 'Invalid error code 1234');
  t.notOk(isKnownOpcode(0x7f));
  t.notOk(isKnownResult(0x1b));
  // Never throws, for any number at all.
  fc.assert(
    fc.property(fc.oneof(u32, fc.integer(), fc.double()), (x) => {
      const n = resultName(x);
      const m = resultMessage(x);
      const o = opName(x);
      const knownR = isKnownResult(x);
      const knownO = isKnownOpcode(x);
      return (
        typeof n === 'string' &&
        typeof m === 'string' &&
        typeof o === 'string' &&
        (knownR || (n.startsWith('UNKNOWN_0x') && m.startsWith('Invalid error code '))) &&
        (knownO || o.startsWith('UNKNOWN_0x'))
      );
    }),
    opts(1900, 1000),
  );
  let unknown = 0;
  for (let c = 0; c < 256; c++) {
    if (!isKnownResult(c)) {
      unknown++;
      const hex = c.toString(16).padStart(2, '0');
      if (resultName(c) !== `UNKNOWN_0x${hex}`) t.fail(`resultName(${c})`);
      if (resultMessage(c) !== `Invalid error code ${c.toString(16)}`) t.fail(`resultMessage(${c})`);
    }
    if (!isKnownOpcode(c) && opName(c) !== `UNKNOWN_0x${c.toString(16).padStart(2, '0')}`) t.fail(`opName(${c})`);
  }
  t.ok(unknown > 150, `${unknown} unknown result codes below 256 checked`);
});
