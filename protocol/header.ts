/**
 * The 48-byte request and response headers (struct sd_req / struct sd_rsp),
 * little-endian. Encoders write into a caller-supplied buffer at an offset and
 * allocate nothing; decoders read from any offset of any Uint8Array.
 *
 * The 32-byte union after the common fields is chosen by opcode
 * (`requestKind` / `responseKind`, read from the opcode table of opcodes.ts);
 * opcodes without a union, or unknown ones, keep the union bytes verbatim as
 * `raw`, so decode → encode is lossless for them.
 */
import { HEADER_SIZE } from './constants.js';
import { opcodeInfo, protoVerFor } from './opcodes.js';
import { InvalidArgumentError } from './errors.js';
import { copyBytes, need, u8, u16, u32, u64, w8, w16, w32, w64 } from './bytes.js';

export interface HeaderCommon {
  protoVer: number;
  opcode: number;
  flags: number;
  epoch: number;
  id: number;
  dataLength: number;
}

export interface ObjRequest extends HeaderCommon {
  kind: 'obj';
  oid: bigint;
  cowOid: bigint;
  copies: number;
  copyPolicy: number;
  ecIndex: number;
  tgtEpoch: number;
  /** Byte offset inside the object (u32 on the wire). */
  offset: number;
}
export interface VdiRequest extends HeaderCommon {
  kind: 'vdi';
  vdiSize: bigint;
  baseVdiId: number;
  copies: number;
  copyPolicy: number;
  storePolicy: number;
  blockSizeShift: number;
  snapid: number;
  type: number;
}
export interface ClusterRequest extends HeaderCommon {
  kind: 'cluster';
  oid: bigint;
  ctime: bigint;
  copies: number;
  copyPolicy: number;
  /** cluster.flags (SD_CLUSTER_FLAG_*); distinct from the header's `flags`. */
  clusterFlags: number;
  tag: number;
  nodesNr: number;
  blockSizeShift: number;
}
export interface VdiStateRequest extends HeaderCommon {
  kind: 'vdi_state';
  oldVid: number;
  newVid: number;
  copies: number;
  setBitmap: number;
  copyPolicy: number;
  blockSizeShift: number;
}
export interface VdiStateCheckpointRequest extends HeaderCommon {
  kind: 'vdi_state_checkpoint';
  get: number;
  tgtEpoch: number;
  vid: number;
}
export interface InodeCoherenceRequest extends HeaderCommon {
  kind: 'inode_coherence';
  vid: number;
  validate: number;
}
export interface RawRequest extends HeaderCommon {
  kind: 'raw';
  /** The 32 union bytes (header offsets 16..47). */
  raw: Uint8Array;
}
export type Request =
  | ObjRequest
  | VdiRequest
  | ClusterRequest
  | VdiStateRequest
  | VdiStateCheckpointRequest
  | InodeCoherenceRequest
  | RawRequest;
export type RequestKind = Request['kind'];

export interface ResponseCommon extends HeaderCommon {
  result: number;
}
export interface ObjResponse extends ResponseCommon {
  kind: 'obj';
  copies: number;
  offset: bigint;
}
export interface VdiResponse extends ResponseCommon {
  kind: 'vdi';
  vdiId: number;
  attrId: number;
  copies: number;
  blockSizeShift: number;
}
export interface NodeResponse extends ResponseCommon {
  kind: 'node';
  nrNodes: number;
  storeSize: bigint;
  storeFree: bigint;
}
export interface HashResponse extends ResponseCommon {
  kind: 'hash';
  /** 20-byte SHA-1 digest. */
  digest: Uint8Array;
}
export interface ClusterDefaultResponse extends ResponseCommon {
  kind: 'cluster_default';
  nrCopies: number;
  copyPolicy: number;
  blockSizeShift: number;
}
export interface RawResponse extends ResponseCommon {
  kind: 'raw';
  /** The 28 union bytes after `result` (header offsets 20..47). */
  raw: Uint8Array;
}
export type Response = ObjResponse | VdiResponse | NodeResponse | HashResponse | ClusterDefaultResponse | RawResponse;
export type ResponseKind = Response['kind'];

/** Which request union an opcode uses (the opcode table's; unknown opcodes: raw). */
export function requestKind(opcode: number): RequestKind {
  return opcodeInfo(opcode)?.request ?? 'raw';
}

/** Which response union an opcode uses (the opcode table's; unknown opcodes: raw). */
export function responseKind(opcode: number): ResponseKind {
  return opcodeInfo(opcode)?.response ?? 'raw';
}

function chk(v: number, bits: 8 | 16 | 32, field: string): void {
  const max = bits === 32 ? 0xffffffff : bits === 16 ? 0xffff : 0xff;
  if (!Number.isInteger(v) || v < 0 || v > max) {
    throw new InvalidArgumentError(`${field} must be an integer in 0..${max}, got ${v}`);
  }
}
function chk64(v: bigint, field: string): void {
  if (typeof v !== 'bigint' || v < 0n || v > 0xffffffffffffffffn) {
    throw new InvalidArgumentError(`${field} must be a bigint in 0..2^64-1, got ${String(v)}`);
  }
}

function encodeCommon(h: HeaderCommon, out: Uint8Array, o: number): void {
  chk(h.protoVer, 8, 'protoVer');
  chk(h.opcode, 8, 'opcode');
  chk(h.flags, 16, 'flags');
  chk(h.epoch, 32, 'epoch');
  chk(h.id, 32, 'id');
  chk(h.dataLength, 32, 'dataLength');
  w8(out, o, h.protoVer);
  w8(out, o + 1, h.opcode);
  w16(out, o + 2, h.flags);
  w32(out, o + 4, h.epoch);
  w32(out, o + 8, h.id);
  w32(out, o + 12, h.dataLength);
}

/** Write a 48-byte request header into `out` at `off`. Allocates nothing. */
export function encodeRequest(req: Request, out: Uint8Array, off = 0): void {
  need(out, off, HEADER_SIZE, 'encodeRequest');
  encodeCommon(req, out, off);
  const o = off;
  out.fill(0, o + 16, o + HEADER_SIZE);
  switch (req.kind) {
    case 'obj':
      chk64(req.oid, 'oid');
      chk64(req.cowOid, 'cowOid');
      chk(req.copies, 8, 'copies');
      chk(req.copyPolicy, 8, 'copyPolicy');
      chk(req.ecIndex, 8, 'ecIndex');
      chk(req.tgtEpoch, 32, 'tgtEpoch');
      chk(req.offset, 32, 'offset');
      w64(out, o + 16, req.oid);
      w64(out, o + 24, req.cowOid);
      w8(out, o + 32, req.copies);
      w8(out, o + 33, req.copyPolicy);
      w8(out, o + 34, req.ecIndex);
      w32(out, o + 36, req.tgtEpoch);
      w32(out, o + 40, req.offset);
      return;
    case 'vdi':
      chk64(req.vdiSize, 'vdiSize');
      chk(req.baseVdiId, 32, 'baseVdiId');
      chk(req.copies, 8, 'copies');
      chk(req.copyPolicy, 8, 'copyPolicy');
      chk(req.storePolicy, 8, 'storePolicy');
      chk(req.blockSizeShift, 8, 'blockSizeShift');
      chk(req.snapid, 32, 'snapid');
      chk(req.type, 32, 'type');
      w64(out, o + 16, req.vdiSize);
      w32(out, o + 24, req.baseVdiId);
      w8(out, o + 28, req.copies);
      w8(out, o + 29, req.copyPolicy);
      w8(out, o + 30, req.storePolicy);
      w8(out, o + 31, req.blockSizeShift);
      w32(out, o + 32, req.snapid);
      w32(out, o + 36, req.type);
      return;
    case 'cluster':
      chk64(req.oid, 'oid');
      chk64(req.ctime, 'ctime');
      chk(req.copies, 8, 'copies');
      chk(req.copyPolicy, 8, 'copyPolicy');
      chk(req.clusterFlags, 16, 'clusterFlags');
      chk(req.tag, 32, 'tag');
      chk(req.nodesNr, 32, 'nodesNr');
      chk(req.blockSizeShift, 8, 'blockSizeShift');
      w64(out, o + 16, req.oid);
      w64(out, o + 24, req.ctime);
      w8(out, o + 32, req.copies);
      w8(out, o + 33, req.copyPolicy);
      w16(out, o + 34, req.clusterFlags);
      w32(out, o + 36, req.tag);
      w32(out, o + 40, req.nodesNr);
      w8(out, o + 44, req.blockSizeShift);
      return;
    case 'vdi_state':
      chk(req.oldVid, 32, 'oldVid');
      chk(req.newVid, 32, 'newVid');
      chk(req.copies, 8, 'copies');
      chk(req.setBitmap, 8, 'setBitmap');
      chk(req.copyPolicy, 8, 'copyPolicy');
      chk(req.blockSizeShift, 8, 'blockSizeShift');
      w32(out, o + 16, req.oldVid);
      w32(out, o + 20, req.newVid);
      w8(out, o + 24, req.copies);
      w8(out, o + 25, req.setBitmap);
      w8(out, o + 26, req.copyPolicy);
      w8(out, o + 27, req.blockSizeShift);
      return;
    case 'vdi_state_checkpoint':
      chk(req.get, 32, 'get');
      chk(req.tgtEpoch, 32, 'tgtEpoch');
      chk(req.vid, 32, 'vid');
      w32(out, o + 16, req.get);
      w32(out, o + 20, req.tgtEpoch);
      w32(out, o + 24, req.vid);
      return;
    case 'inode_coherence':
      chk(req.vid, 32, 'vid');
      chk(req.validate, 32, 'validate');
      w32(out, o + 16, req.vid);
      w32(out, o + 20, req.validate);
      return;
    case 'raw':
      if (req.raw.length !== 32)
        throw new InvalidArgumentError(`raw request union must be 32 bytes, got ${req.raw.length}`);
      out.set(req.raw, o + 16);
      return;
  }
}

/** Decode a request header at `off`; the union follows `kind` (default: by opcode). */
export function decodeRequest(b: Uint8Array, off = 0, kind?: RequestKind): Request {
  need(b, off, HEADER_SIZE, 'decodeRequest');
  const o = off;
  const opcode = u8(b, o + 1);
  // Flat object literals (no spread of a common part): a spread followed by
  // more properties is ~50x slower to build in V8 11 (Node 20), per header.
  switch (kind ?? requestKind(opcode)) {
    case 'obj':
      return {
        protoVer: u8(b, o),
        opcode,
        flags: u16(b, o + 2),
        epoch: u32(b, o + 4),
        id: u32(b, o + 8),
        dataLength: u32(b, o + 12),
        kind: 'obj',
        oid: u64(b, o + 16),
        cowOid: u64(b, o + 24),
        copies: u8(b, o + 32),
        copyPolicy: u8(b, o + 33),
        ecIndex: u8(b, o + 34),
        tgtEpoch: u32(b, o + 36),
        offset: u32(b, o + 40),
      };
    case 'vdi':
      return {
        protoVer: u8(b, o),
        opcode,
        flags: u16(b, o + 2),
        epoch: u32(b, o + 4),
        id: u32(b, o + 8),
        dataLength: u32(b, o + 12),
        kind: 'vdi',
        vdiSize: u64(b, o + 16),
        baseVdiId: u32(b, o + 24),
        copies: u8(b, o + 28),
        copyPolicy: u8(b, o + 29),
        storePolicy: u8(b, o + 30),
        blockSizeShift: u8(b, o + 31),
        snapid: u32(b, o + 32),
        type: u32(b, o + 36),
      };
    case 'cluster':
      return {
        protoVer: u8(b, o),
        opcode,
        flags: u16(b, o + 2),
        epoch: u32(b, o + 4),
        id: u32(b, o + 8),
        dataLength: u32(b, o + 12),
        kind: 'cluster',
        oid: u64(b, o + 16),
        ctime: u64(b, o + 24),
        copies: u8(b, o + 32),
        copyPolicy: u8(b, o + 33),
        clusterFlags: u16(b, o + 34),
        tag: u32(b, o + 36),
        nodesNr: u32(b, o + 40),
        blockSizeShift: u8(b, o + 44),
      };
    case 'vdi_state':
      return {
        protoVer: u8(b, o),
        opcode,
        flags: u16(b, o + 2),
        epoch: u32(b, o + 4),
        id: u32(b, o + 8),
        dataLength: u32(b, o + 12),
        kind: 'vdi_state',
        oldVid: u32(b, o + 16),
        newVid: u32(b, o + 20),
        copies: u8(b, o + 24),
        setBitmap: u8(b, o + 25),
        copyPolicy: u8(b, o + 26),
        blockSizeShift: u8(b, o + 27),
      };
    case 'vdi_state_checkpoint':
      return {
        protoVer: u8(b, o),
        opcode,
        flags: u16(b, o + 2),
        epoch: u32(b, o + 4),
        id: u32(b, o + 8),
        dataLength: u32(b, o + 12),
        kind: 'vdi_state_checkpoint',
        get: u32(b, o + 16),
        tgtEpoch: u32(b, o + 20),
        vid: u32(b, o + 24),
      };
    case 'inode_coherence':
      return {
        protoVer: u8(b, o),
        opcode,
        flags: u16(b, o + 2),
        epoch: u32(b, o + 4),
        id: u32(b, o + 8),
        dataLength: u32(b, o + 12),
        kind: 'inode_coherence',
        vid: u32(b, o + 16),
        validate: u32(b, o + 20),
      };
    case 'raw':
      return {
        protoVer: u8(b, o),
        opcode,
        flags: u16(b, o + 2),
        epoch: u32(b, o + 4),
        id: u32(b, o + 8),
        dataLength: u32(b, o + 12),
        kind: 'raw',
        raw: copyBytes(b, o + 16, o + HEADER_SIZE),
      };
  }
}

/** Write a 48-byte response header into `out` at `off`. Allocates nothing. */
export function encodeResponse(rsp: Response, out: Uint8Array, off = 0): void {
  need(out, off, HEADER_SIZE, 'encodeResponse');
  encodeCommon(rsp, out, off);
  chk(rsp.result, 32, 'result');
  const o = off;
  out.fill(0, o + 16, o + HEADER_SIZE);
  w32(out, o + 16, rsp.result);
  switch (rsp.kind) {
    case 'obj':
      chk(rsp.copies, 8, 'copies');
      chk64(rsp.offset, 'offset');
      w8(out, o + 20, rsp.copies);
      w64(out, o + 24, rsp.offset);
      return;
    case 'vdi':
      chk(rsp.vdiId, 32, 'vdiId');
      chk(rsp.attrId, 32, 'attrId');
      chk(rsp.copies, 8, 'copies');
      chk(rsp.blockSizeShift, 8, 'blockSizeShift');
      w32(out, o + 24, rsp.vdiId);
      w32(out, o + 28, rsp.attrId);
      w8(out, o + 32, rsp.copies);
      w8(out, o + 33, rsp.blockSizeShift);
      return;
    case 'node':
      chk(rsp.nrNodes, 32, 'nrNodes');
      chk64(rsp.storeSize, 'storeSize');
      chk64(rsp.storeFree, 'storeFree');
      w32(out, o + 20, rsp.nrNodes);
      w64(out, o + 32, rsp.storeSize);
      w64(out, o + 40, rsp.storeFree);
      return;
    case 'hash':
      if (rsp.digest.length !== 20) throw new InvalidArgumentError(`digest must be 20 bytes, got ${rsp.digest.length}`);
      out.set(rsp.digest, o + 24);
      return;
    case 'cluster_default':
      chk(rsp.nrCopies, 8, 'nrCopies');
      chk(rsp.copyPolicy, 8, 'copyPolicy');
      chk(rsp.blockSizeShift, 8, 'blockSizeShift');
      w8(out, o + 20, rsp.nrCopies);
      w8(out, o + 21, rsp.copyPolicy);
      w8(out, o + 22, rsp.blockSizeShift);
      return;
    case 'raw':
      if (rsp.raw.length !== 28)
        throw new InvalidArgumentError(`raw response union must be 28 bytes, got ${rsp.raw.length}`);
      out.set(rsp.raw, o + 20);
      return;
  }
}

/** Decode a response header at `off`; the union follows `kind` (default: by opcode). */
export function decodeResponse(b: Uint8Array, off = 0, kind?: ResponseKind): Response {
  need(b, off, HEADER_SIZE, 'decodeResponse');
  const o = off;
  const opcode = u8(b, o + 1);
  // Flat literals, as in decodeRequest.
  switch (kind ?? responseKind(opcode)) {
    case 'obj':
      return {
        protoVer: u8(b, o),
        opcode,
        flags: u16(b, o + 2),
        epoch: u32(b, o + 4),
        id: u32(b, o + 8),
        dataLength: u32(b, o + 12),
        result: u32(b, o + 16),
        kind: 'obj',
        copies: u8(b, o + 20),
        offset: u64(b, o + 24),
      };
    case 'vdi':
      return {
        protoVer: u8(b, o),
        opcode,
        flags: u16(b, o + 2),
        epoch: u32(b, o + 4),
        id: u32(b, o + 8),
        dataLength: u32(b, o + 12),
        result: u32(b, o + 16),
        kind: 'vdi',
        vdiId: u32(b, o + 24),
        attrId: u32(b, o + 28),
        copies: u8(b, o + 32),
        blockSizeShift: u8(b, o + 33),
      };
    case 'node':
      return {
        protoVer: u8(b, o),
        opcode,
        flags: u16(b, o + 2),
        epoch: u32(b, o + 4),
        id: u32(b, o + 8),
        dataLength: u32(b, o + 12),
        result: u32(b, o + 16),
        kind: 'node',
        nrNodes: u32(b, o + 20),
        storeSize: u64(b, o + 32),
        storeFree: u64(b, o + 40),
      };
    case 'hash':
      return {
        protoVer: u8(b, o),
        opcode,
        flags: u16(b, o + 2),
        epoch: u32(b, o + 4),
        id: u32(b, o + 8),
        dataLength: u32(b, o + 12),
        result: u32(b, o + 16),
        kind: 'hash',
        digest: copyBytes(b, o + 24, o + 44),
      };
    case 'cluster_default':
      return {
        protoVer: u8(b, o),
        opcode,
        flags: u16(b, o + 2),
        epoch: u32(b, o + 4),
        id: u32(b, o + 8),
        dataLength: u32(b, o + 12),
        result: u32(b, o + 16),
        kind: 'cluster_default',
        nrCopies: u8(b, o + 20),
        copyPolicy: u8(b, o + 21),
        blockSizeShift: u8(b, o + 22),
      };
    case 'raw':
      return {
        protoVer: u8(b, o),
        opcode,
        flags: u16(b, o + 2),
        epoch: u32(b, o + 4),
        id: u32(b, o + 8),
        dataLength: u32(b, o + 12),
        result: u32(b, o + 16),
        kind: 'raw',
        raw: copyBytes(b, o + 20, o + HEADER_SIZE),
      };
  }
}

// Hot-path field accessors: read one field of a header without decoding it.
export const peekProtoVer = (b: Uint8Array, off = 0): number => u8(b, off);
export const peekOpcode = (b: Uint8Array, off = 0): number => u8(b, off + 1);
export const peekFlags = (b: Uint8Array, off = 0): number => u16(b, off + 2);
export const peekEpoch = (b: Uint8Array, off = 0): number => u32(b, off + 4);
export const peekId = (b: Uint8Array, off = 0): number => u32(b, off + 8);
export const peekDataLength = (b: Uint8Array, off = 0): number => u32(b, off + 12);
/** Response result (offset 16). */
export const peekResult = (b: Uint8Array, off = 0): number => u32(b, off + 16);
/** Response vdi.vdi_id (offset 24). */
export const peekVdiId = (b: Uint8Array, off = 0): number => u32(b, off + 24);

type Fields<T extends HeaderCommon> = Partial<Omit<T, 'kind' | 'opcode'>>;

/** An obj-union request with the right proto_ver and zeroed defaults. */
export function objRequest(opcode: number, f: Fields<ObjRequest> = {}): ObjRequest {
  return {
    protoVer: f.protoVer ?? protoVerFor(opcode),
    opcode,
    flags: f.flags ?? 0,
    epoch: f.epoch ?? 0,
    id: f.id ?? 0,
    dataLength: f.dataLength ?? 0,
    kind: 'obj',
    oid: f.oid ?? 0n,
    cowOid: f.cowOid ?? 0n,
    copies: f.copies ?? 0,
    copyPolicy: f.copyPolicy ?? 0,
    ecIndex: f.ecIndex ?? 0,
    tgtEpoch: f.tgtEpoch ?? 0,
    offset: f.offset ?? 0,
  };
}

/** A vdi-union request with the right proto_ver and zeroed defaults. */
export function vdiRequest(opcode: number, f: Fields<VdiRequest> = {}): VdiRequest {
  return {
    protoVer: f.protoVer ?? protoVerFor(opcode),
    opcode,
    flags: f.flags ?? 0,
    epoch: f.epoch ?? 0,
    id: f.id ?? 0,
    dataLength: f.dataLength ?? 0,
    kind: 'vdi',
    vdiSize: f.vdiSize ?? 0n,
    baseVdiId: f.baseVdiId ?? 0,
    copies: f.copies ?? 0,
    copyPolicy: f.copyPolicy ?? 0,
    storePolicy: f.storePolicy ?? 0,
    blockSizeShift: f.blockSizeShift ?? 0,
    snapid: f.snapid ?? 0,
    type: f.type ?? 0,
  };
}

/** A cluster-union request with the right proto_ver and zeroed defaults. */
export function clusterRequest(opcode: number, f: Fields<ClusterRequest> = {}): ClusterRequest {
  return {
    protoVer: f.protoVer ?? protoVerFor(opcode),
    opcode,
    flags: f.flags ?? 0,
    epoch: f.epoch ?? 0,
    id: f.id ?? 0,
    dataLength: f.dataLength ?? 0,
    kind: 'cluster',
    oid: f.oid ?? 0n,
    ctime: f.ctime ?? 0n,
    copies: f.copies ?? 0,
    copyPolicy: f.copyPolicy ?? 0,
    clusterFlags: f.clusterFlags ?? 0,
    tag: f.tag ?? 0,
    nodesNr: f.nodesNr ?? 0,
    blockSizeShift: f.blockSizeShift ?? 0,
  };
}

/** A vdi_state-union request with the right proto_ver and zeroed defaults. */
export function vdiStateRequest(opcode: number, f: Fields<VdiStateRequest> = {}): VdiStateRequest {
  return {
    protoVer: f.protoVer ?? protoVerFor(opcode),
    opcode,
    flags: f.flags ?? 0,
    epoch: f.epoch ?? 0,
    id: f.id ?? 0,
    dataLength: f.dataLength ?? 0,
    kind: 'vdi_state',
    oldVid: f.oldVid ?? 0,
    newVid: f.newVid ?? 0,
    copies: f.copies ?? 0,
    setBitmap: f.setBitmap ?? 0,
    copyPolicy: f.copyPolicy ?? 0,
    blockSizeShift: f.blockSizeShift ?? 0,
  };
}

/** A request whose opcode has no union (all 32 union bytes zero unless given). */
export function plainRequest(opcode: number, f: Fields<RawRequest> = {}): RawRequest {
  return {
    protoVer: f.protoVer ?? protoVerFor(opcode),
    opcode,
    flags: f.flags ?? 0,
    epoch: f.epoch ?? 0,
    id: f.id ?? 0,
    dataLength: f.dataLength ?? 0,
    kind: 'raw',
    raw: f.raw ?? new Uint8Array(32),
  };
}

/** A response of the kind the opcode uses, echoing `req`'s opcode and id, with zeroed union fields. */
export function responseFor(req: HeaderCommon, result: number, f: Partial<HeaderCommon> = {}): Response {
  const protoVer = f.protoVer ?? 0;
  const opcode = req.opcode;
  const flags = f.flags ?? 0;
  const epoch = f.epoch ?? 0;
  const id = req.id;
  const dataLength = f.dataLength ?? 0;
  // Flat literals (see decodeRequest).
  switch (responseKind(opcode)) {
    case 'obj':
      return { protoVer, opcode, flags, epoch, id, dataLength, result, kind: 'obj', copies: 0, offset: 0n };
    case 'vdi':
      return {
        protoVer,
        opcode,
        flags,
        epoch,
        id,
        dataLength,
        result,
        kind: 'vdi',
        vdiId: 0,
        attrId: 0,
        copies: 0,
        blockSizeShift: 0,
      };
    case 'node':
      return {
        protoVer,
        opcode,
        flags,
        epoch,
        id,
        dataLength,
        result,
        kind: 'node',
        nrNodes: 0,
        storeSize: 0n,
        storeFree: 0n,
      };
    case 'hash':
      return { protoVer, opcode, flags, epoch, id, dataLength, result, kind: 'hash', digest: new Uint8Array(20) };
    case 'cluster_default':
      return {
        protoVer,
        opcode,
        flags,
        epoch,
        id,
        dataLength,
        result,
        kind: 'cluster_default',
        nrCopies: 0,
        copyPolicy: 0,
        blockSizeShift: 0,
      };
    case 'raw':
      return { protoVer, opcode, flags, epoch, id, dataLength, result, kind: 'raw', raw: new Uint8Array(28) };
  }
}
