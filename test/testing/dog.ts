/**
 * A tiny dog for the embedded-sheep tests: the request sequences of
 * dog/vdi.c (create, snapshot, clone, read/write with copy-on-write, delete)
 * over RawClient, with every reply checked. Flat (store_policy 0) VDIs only.
 */
import {
  decodeInodeHeader,
  Flag,
  type InodeHeader,
  objRequest,
  Op,
  Result,
  resultName,
  SD_INODE_HEADER_SIZE,
  vdiRequest,
  vidToDataOid,
  vidToVdiOid,
} from '../../protocol/index.js';
import { createObj, type Frame, nameBody, type RawClient, readObj, writeObj } from './raw.js';

export class SheepError extends Error {
  readonly result: number;
  constructor(what: string, result: number) {
    super(`${what}: ${resultName(result)}`);
    this.result = result;
  }
}

function vidOf(f: Frame): number {
  return f.rsp.kind === 'vdi' ? f.rsp.vdiId : -1;
}

function check(f: Frame, what: string): Frame {
  if (f.rsp.result !== Result.SUCCESS) throw new SheepError(what, f.rsp.result);
  return f;
}

export class MiniDog {
  readonly c: RawClient;
  constructor(c: RawClient) {
    this.c = c;
  }

  /** GET_VDI_INFO: the vid, or a SheepError. */
  async vid(name: string, tag = '', snapid = 0): Promise<number> {
    const f = await this.c.call(
      vdiRequest(Op.GET_VDI_INFO, { flags: Flag.CMD_WRITE, dataLength: 512, snapid }),
      nameBody(name, tag),
    );
    return vidOf(check(f, `lookup ${name}`));
  }

  async header(vid: number): Promise<InodeHeader> {
    return decodeInodeHeader(check(await readObj(this.c, vidToVdiOid(vid), 0, SD_INODE_HEADER_SIZE), 'header').body);
  }

  async slot(vid: number, idx: number): Promise<number> {
    const f = check(await readObj(this.c, vidToVdiOid(vid), SD_INODE_HEADER_SIZE + 4 * idx, 4), 'slot');
    return f.body.readUInt32LE(0);
  }

  async setSlot(vid: number, idx: number, value: number): Promise<void> {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(value, 0);
    check(await writeObj(this.c, vidToVdiOid(vid), SD_INODE_HEADER_SIZE + 4 * idx, b), 'inode write');
  }

  async create(
    name: string,
    size: number,
    o: { copies?: number; copyPolicy?: number; blockSizeShift?: number; storePolicy?: number } = {},
  ): Promise<number> {
    const f = await this.c.call(
      vdiRequest(Op.NEW_VDI, { flags: Flag.CMD_WRITE, dataLength: 256, vdiSize: BigInt(size), ...o }),
      nameBody(name),
    );
    return vidOf(check(f, `create ${name}`));
  }

  /** dog vdi snapshot: tag the working inode, then NEW_VDI snapid=1. Returns [snapshot vid, new working vid]. */
  async snapshot(name: string, tag: string): Promise<[number, number]> {
    const vid = await this.vid(name);
    const h = await this.header(vid);
    const t = Buffer.alloc(256);
    t.write(tag);
    check(await writeObj(this.c, vidToVdiOid(vid), 256, t), 'write tag');
    const f = await this.c.call(
      vdiRequest(Op.NEW_VDI, {
        flags: Flag.CMD_WRITE,
        dataLength: 256,
        vdiSize: h.vdiSize,
        baseVdiId: vid,
        snapid: 1,
        copies: h.nrCopies,
        copyPolicy: h.copyPolicy,
        storePolicy: h.storePolicy,
        blockSizeShift: h.blockSizeShift,
      }),
      nameBody(name),
    );
    return [vid, vidOf(check(f, `snapshot ${name}`))];
  }

  /** dog vdi clone -s tag src dst. */
  async clone(src: string, tag: string, dst: string): Promise<number> {
    const base = await this.vid(src, tag);
    const h = await this.header(base);
    const f = await this.c.call(
      vdiRequest(Op.NEW_VDI, {
        flags: Flag.CMD_WRITE,
        dataLength: 256,
        vdiSize: h.vdiSize,
        baseVdiId: base,
        copies: h.nrCopies,
        copyPolicy: h.copyPolicy,
        storePolicy: h.storePolicy,
        blockSizeShift: h.blockSizeShift,
      }),
      nameBody(dst),
    );
    return vidOf(check(f, `clone ${dst}`));
  }

  /** dog vdi write: per object, write / create / copy-on-write create, then point the index at it. */
  async write(name: string, off: number, data: Uint8Array): Promise<void> {
    const vid = await this.vid(name);
    const h = await this.header(vid);
    const os = 2 ** h.blockSizeShift;
    let done = 0;
    while (done < data.length) {
      const pos = off + done;
      const idx = Math.floor(pos / os);
      const within = pos % os;
      const n = Math.min(os - within, data.length - done);
      const piece = data.subarray(done, done + n);
      const cur = await this.slot(vid, idx);
      const oid = vidToDataOid(vid, idx);
      if (cur === vid) check(await writeObj(this.c, oid, within, piece), 'write');
      else {
        check(await createObj(this.c, oid, within, piece, cur ? vidToDataOid(cur, idx) : undefined), 'create');
        await this.setSlot(vid, idx, vid);
      }
      done += n;
    }
  }

  /** Read through the index of inode `vid` (a snapshot or a working VDI): holes are zeros. */
  async read(vid: number, off: number, len: number): Promise<Buffer> {
    const h = await this.header(vid);
    const os = 2 ** h.blockSizeShift;
    const out = Buffer.alloc(len);
    let done = 0;
    while (done < len) {
      const pos = off + done;
      const idx = Math.floor(pos / os);
      const within = pos % os;
      const n = Math.min(os - within, len - done);
      const v = await this.slot(vid, idx);
      if (v) out.set(check(await readObj(this.c, vidToDataOid(v, idx), within, n), 'read').body, done);
      done += n;
    }
    return out;
  }

  /** dog vdi delete: zero the index (sheep drops the references), then DEL_VDI. Returns DEL_VDI's reply. */
  async delete(name: string, tag = '', zeroIndex = true): Promise<Frame> {
    const vid = await this.vid(name, tag);
    if (zeroIndex) {
      const h = await this.header(vid);
      const nr = Math.ceil(Number(h.vdiSize) / 2 ** h.blockSizeShift);
      const idx = check(await readObj(this.c, vidToVdiOid(vid), SD_INODE_HEADER_SIZE, 4 * nr), 'index').body;
      for (let i = 0; i < nr; i++) if (idx.readUInt32LE(4 * i)) await this.setSlot(vid, i, 0);
    }
    return this.c.call(vdiRequest(Op.DEL_VDI, { flags: Flag.CMD_WRITE, dataLength: 512 }), nameBody(name, tag));
  }

  /** CREATE_AND_WRITE + index entry for every object (dog vdi create -P). */
  async preallocate(vid: number, objects: number): Promise<void> {
    for (let i = 0; i < objects; i++) {
      check(
        await this.c.call(
          objRequest(Op.CREATE_AND_WRITE_OBJ, { flags: Flag.CMD_WRITE, oid: vidToDataOid(vid, i), dataLength: 0 }),
        ),
        'prealloc',
      );
      await this.setSlot(vid, i, vid);
    }
  }
}
