// Replays every recorded real-sheep conversation (test/fixtures/sheep-transcripts)
// against ONE fresh embedded cluster formatted like the recording (3 nodes,
// copies 2, locking on), in file order, one socket per recorded connection,
// and compares every reply with what sheep 1.0 answered.
//
// Sending: frames are taken in recorded (file) order across connections; a
// request is written when its frame comes, and at a reply frame we wait for
// our reply with that id on that connection. dog waits for each reply before
// its next request, so it is replayed the same way; a client that pipelined
// (libsheepdog numbers its requests, file 16) would get its requests sent as
// recorded and its replies matched by id.
//
// Compared: the whole 48-byte reply header (proto_ver, opcode, flags, epoch,
// id, data_length, result and every union byte) and the body, byte for byte,
// or by sha256 where the recording kept only the hash (replies over 8 KiB).
//
// Not compared, because they legitimately differ between two clusters:
//  - create_time / snap_ctime of inodes (wall-clock times): an inode body is
//    compared with our times replaced by the real ones read from the
//    recording's own header reads of that VDI (so the rest, including the
//    12 MiB index and generation references, must still match exactly), and
//    snap_ctime must be non-zero exactly when the recorded one is;
//  - the ctime of an attribute object (the inode create_time it copies), the
//    same way;
//  - sd_node records (GET_NODE_LIST, STAT_CLUSTER): the 24-byte rb_node
//    prefix is sender memory, the port is ours, `space` is each host's disk;
//    and since sheep sorts nodes by address and port and our ports are
//    ephemeral, the records are compared in zone order (zone i = node i, as
//    the recorded cluster was started with -z 0/1/2);
//  - STAT_CLUSTER's ctime and time fields (format time, epoch time);
//  - CLUSTER_INFO's body (491,568 bytes embedding ctime and sd_nodes; only its
//    hash was recorded): its length is compared and its fields decoded;
//  - the vdi_id of a failed NEW_VDI: sheep leaves it uninitialised (stack
//    garbage, 0x7f4b in the recording).
import { createHash } from 'node:crypto';
import t, { type Test } from 'tap';
import { startEmbeddedSheep } from '../../testing/embedded.js';
import {
  ClusterStatus,
  decodeClusterInfo,
  decodeRequest,
  HEADER_SIZE,
  isVdiAttrObj,
  isVdiObj,
  Op,
  opName,
  oidToVid,
  Result,
  SD_NODE_SIZE,
} from '../../protocol/index.js';
import { loadAll, type RecordedFrame, type Transcript } from '../helpers/transcripts.js';
import { RawClient } from './raw.js';

const transcripts = loadAll();
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** create_time / snap_ctime values sheep wrote, per vid, from the recorded header reads. */
const facts = new Map<number, { ctimes: Set<bigint>; snaps: Set<bigint> }>();
for (const tr of transcripts) {
  const open = new Map<number, RecordedFrame[]>();
  for (const f of tr.frames) {
    const q = open.get(f.conn) ?? [];
    open.set(f.conn, q);
    if (f.dir === 'req') {
      q.push(f);
      continue;
    }
    const i = q.findIndex((r) => r.hdr.readUInt32LE(8) === f.hdr.readUInt32LE(8));
    const [req] = q.splice(Math.max(i, 0), 1);
    if (!req || req.hdr[1] !== Op.READ_OBJ || !f.body || f.body.length < 528) continue;
    const r = decodeRequest(req.hdr);
    if (r.kind !== 'obj' || !isVdiObj(r.oid) || r.offset !== 0) continue;
    const vid = oidToVid(r.oid);
    const e = facts.get(vid) ?? { ctimes: new Set(), snaps: new Set() };
    facts.set(vid, e);
    e.ctimes.add(f.body.readBigUInt64LE(512));
    const s = f.body.readBigUInt64LE(520);
    if (s !== 0n) e.snaps.add(s);
  }
}
const allCtimes = [...new Set([...facts.values()].flatMap((e) => [...e.ctimes]))];

/** The sd_node records at `off`, sorted by zone. */
function byZone(b: Buffer, count: number, off: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < count; i++) out.push(b.subarray(off + i * SD_NODE_SIZE, off + (i + 1) * SD_NODE_SIZE));
  return out.sort((x, y) => x.readUInt32LE(68) - y.readUInt32LE(68));
}

function sdNodesDiffer(a: Buffer, b: Buffer, count: number, off: number): string | undefined {
  const na = byZone(a, count, off);
  const nb = byZone(b, count, off);
  for (let i = 0; i < count; i++) {
    const x = na[i] as Buffer;
    const y = nb[i] as Buffer;
    // node_id.addr [24,40), io_addr/io_port [42,64), nr_vnodes/zone [64,72); skip rb_node, port, space
    for (const [s, e] of [
      [24, 40],
      [42, 64],
      [64, 72],
    ] as const) {
      if (!x.subarray(s, e).equals(y.subarray(s, e))) return `sd_node ${i} bytes ${s}..${e}`;
    }
  }
  return undefined;
}

function withTimes(body: Buffer, ctime: bigint, snap: bigint): Buffer {
  const b = Buffer.from(body);
  b.writeBigUInt64LE(ctime, 512);
  b.writeBigUInt64LE(snap, 520);
  return b;
}

/** Why our reply differs from the recorded one, or undefined when it matches. */
function compare(req: RecordedFrame, rec: RecordedFrame, hdr: Buffer, body: Buffer): string | undefined {
  const r = decodeRequest(req.hdr);
  const want = Buffer.from(rec.hdr);
  const got = Buffer.from(hdr);
  if (r.opcode === Op.NEW_VDI && want.readUInt32LE(16) !== Result.SUCCESS) {
    want.writeUInt32LE(0, 24); // uninitialised vid in sheep
    got.writeUInt32LE(0, 24);
  }
  if (!got.equals(want)) {
    for (let i = 0; i < HEADER_SIZE; i++) if (got[i] !== want[i]) return `header byte ${i}: ${got[i]} != ${want[i]}`;
  }
  if (body.length !== rec.bodyLen) return `body length ${body.length} != ${rec.bodyLen}`;
  if (body.length === 0) return undefined;
  const isInodeRead = r.kind === 'obj' && r.opcode === Op.READ_OBJ && isVdiObj(r.oid) && r.offset === 0;
  if (r.opcode === Op.GET_NODE_LIST && rec.body) return sdNodesDiffer(body, rec.body, body.length / SD_NODE_SIZE, 0);
  if (r.opcode === Op.STAT_CLUSTER && rec.body) {
    const nodesNr = r.kind === 'cluster' ? r.nodesNr : 0;
    const stride = 48 + nodesNr * SD_NODE_SIZE;
    for (let o = 0; o < body.length; o += stride) {
      if (!body.subarray(o + 16, o + 48).equals(rec.body.subarray(o + 16, o + 48))) return `epoch_log at ${o}`;
      const d = sdNodesDiffer(body, rec.body, nodesNr, o + 48);
      if (d) return d;
    }
    return undefined;
  }
  if (r.opcode === Op.CLUSTER_INFO) {
    const ci = decodeClusterInfo(body);
    if (ci.nrNodes !== 3 || ci.nrCopies !== 2 || ci.flags !== 0x0c || ci.status !== ClusterStatus.OK) {
      return `cluster_info ${JSON.stringify({ ...ci, nodes: ci.nodes.length, ctime: String(ci.ctime) })}`;
    }
    if (ci.epoch !== 1 || ci.defaultStore !== 'plain' || ci.blockSizeShift !== 22) return 'cluster_info fields';
    return undefined;
  }
  if (isInodeRead && r.kind === 'obj' && body.length >= 528) {
    const vid = oidToVid(r.oid);
    const f = facts.get(vid);
    const ourSnap = body.readBigUInt64LE(520);
    if (rec.body) {
      const recSnap = rec.body.readBigUInt64LE(520);
      if ((ourSnap === 0n) !== (recSnap === 0n)) return `snap_ctime ${ourSnap} vs ${recSnap}`;
      const patched = withTimes(body, rec.body.readBigUInt64LE(512), recSnap);
      return patched.equals(rec.body) ? undefined : firstDiff(patched, rec.body);
    }
    if (!f) return `no recorded header of vid ${vid.toString(16)} to take times from`;
    for (const ct of f.ctimes) {
      for (const sn of ourSnap === 0n ? [0n] : [...f.snaps]) {
        if (sha(withTimes(body, ct, sn)) === rec.bodySha256) return undefined;
      }
    }
    return `inode ${vid.toString(16)} differs (sha256)`;
  }
  if (r.kind === 'obj' && r.opcode === Op.READ_OBJ && isVdiAttrObj(r.oid) && r.offset === 0 && body.length >= 520) {
    for (const ct of allCtimes) {
      const b = Buffer.from(body);
      b.writeBigUInt64LE(ct, 512);
      if (sha(b) === rec.bodySha256) return undefined;
    }
    return 'attr object differs (sha256)';
  }
  if (rec.body) return rec.body.equals(body) ? undefined : firstDiff(body, rec.body);
  return sha(body) === rec.bodySha256 ? undefined : `body sha256 differs (${body.length} bytes)`;
}

function firstDiff(a: Buffer, b: Buffer): string {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (a[i] !== b[i]) return `body byte ${i}: ${a[i]} != ${b[i]}`;
  }
  return 'body length';
}

async function replay(
  t: Test,
  tr: Transcript,
  address: string,
): Promise<{ pairs: number; matched: number; problems: string[] }> {
  const conns = new Map<number, RawClient>();
  const open = new Map<number, RecordedFrame[]>();
  const problems: string[] = [];
  let pairs = 0;
  let matched = 0;
  try {
    for (const [n, f] of tr.frames.entries()) {
      let c = conns.get(f.conn);
      if (!c) {
        c = await RawClient.connect(address);
        conns.set(f.conn, c);
      }
      const q = open.get(f.conn) ?? [];
      open.set(f.conn, q);
      if (f.dir === 'req') {
        q.push(f);
        c.writeRaw(f.body && f.bodyLen > 0 ? Buffer.concat([f.hdr, f.body]) : f.hdr);
        continue;
      }
      const id = f.hdr.readUInt32LE(8);
      const i = q.findIndex((r) => r.hdr.readUInt32LE(8) === id);
      const [req] = q.splice(Math.max(i, 0), 1);
      if (!req) throw new Error(`${tr.name}: reply without request at frame ${n}`);
      const got = await c.next((x) => x.rsp.id === id);
      pairs++;
      const why = compare(req, f, got.hdr, got.body);
      if (why) problems.push(`${tr.name} frame ${n} conn ${f.conn} ${opName(req.hdr[1] ?? 0)}: ${why}`);
      else matched++;
    }
  } finally {
    for (const c of conns.values()) c.close();
  }
  t.same(problems, [], `${tr.name}: every reply as sheep 1.0 answered`);
  return { pairs, matched, problems };
}

t.test('replay all transcripts on one cluster (3 nodes, copies 2, lock)', async (t) => {
  const sheep = await startEmbeddedSheep({ nodes: 3, copies: 2, lock: true });
  t.teardown(() => sheep.close());
  const address = sheep.addresses[0] as string;
  let pairs = 0;
  let matched = 0;
  for (const tr of transcripts) {
    await t.test(tr.name, async (t) => {
      const r = await replay(t, tr, address);
      pairs += r.pairs;
      matched += r.matched;
    });
  }
  t.equal(pairs, 305, 'every recorded pair was replayed');
  t.equal(matched, 305, `${matched}/${pairs} pairs match`);
  t.same(sheep.internalErrors, [], 'no op threw');
});
