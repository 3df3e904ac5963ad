/** Object-level requests over a Transport, shared by the client and the VDI layer. */
import { Flag, Op, Result } from '../../protocol/constants.js';
import { objRequest } from '../../protocol/header.js';
import { oidHex } from '../../protocol/oid.js';
import { responseError } from '../errors.js';
import type { RequestOptions, Transport } from '../transport/types.js';

export interface ObjPolicy {
  copies: number;
  copyPolicy: number;
}

const NONE: ObjPolicy = { copies: 0, copyPolicy: 0 };

/** READ_OBJ; throws a typed error unless SUCCESS. With `into`, the data lands there. */
export async function readObject(
  t: Transport,
  oid: bigint,
  offset: number,
  length: number,
  opts: RequestOptions = {},
  policy: ObjPolicy = NONE,
): Promise<Uint8Array> {
  const r = await t.request(
    objRequest(Op.READ_OBJ, { oid, offset, dataLength: length, copies: policy.copies, copyPolicy: policy.copyPolicy }),
    undefined,
    opts,
  );
  if (r.header.result !== Result.SUCCESS) {
    throw responseError(r.header.result, `read of object ${oidHex(oid)}`, r.node);
  }
  return r.body;
}

/** WRITE_OBJ or CREATE_AND_WRITE_OBJ (optionally COW from `cowOid`); returns the result code. */
export async function writeObjectResult(
  t: Transport,
  oid: bigint,
  offset: number,
  data: Uint8Array,
  o: { create?: boolean; cowOid?: bigint; policy?: ObjPolicy; opts?: RequestOptions } = {},
): Promise<number> {
  const cow = o.cowOid !== undefined && o.cowOid !== 0n;
  const policy = o.policy ?? NONE;
  const r = await t.request(
    objRequest(o.create ? Op.CREATE_AND_WRITE_OBJ : Op.WRITE_OBJ, {
      flags: Flag.CMD_WRITE | (cow ? Flag.CMD_COW : 0),
      oid,
      cowOid: cow ? (o.cowOid ?? 0n) : 0n,
      offset,
      dataLength: data.length,
      copies: policy.copies,
      copyPolicy: policy.copyPolicy,
    }),
    data,
    o.opts ?? {},
  );
  return r.header.result;
}

/** Like writeObjectResult, but throws a typed error unless SUCCESS. */
export async function writeObject(
  t: Transport,
  oid: bigint,
  offset: number,
  data: Uint8Array,
  o: { create?: boolean; cowOid?: bigint; policy?: ObjPolicy; opts?: RequestOptions } = {},
): Promise<void> {
  const res = await writeObjectResult(t, oid, offset, data, o);
  if (res !== Result.SUCCESS) throw responseError(res, `write of object ${oidHex(oid)}`);
}
