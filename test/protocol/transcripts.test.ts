// Every frame of every recorded real-sheep conversation decodes, re-encodes to
// the identical 48 bytes, obeys the framing rules, and carries the values the
// scenario table says sheep answered.
import t from 'tap';
import {
  BTREE_INDEX_HEADER_SIZE,
  CLUSTER_INFO_SIZE,
  ClusterFlag,
  HEADER_SIZE,
  Flag,
  INODE_BTREE_MAGIC,
  Op,
  Result,
  SD_ATTR_OBJ_SIZE,
  SD_INODE_HEADER_SIZE,
  SD_INODE_SIZE,
  SD_PROTO_VER,
  SD_SHEEP_PROTO_VER,
  VDI_BITMAP_SIZE,
  VDI_STATE_SIZE,
  bitmapSet,
  bitmapSetBits,
  bitmapTest,
  dataVdiIdOffset,
  decodeBtreeHeader,
  decodeBtreeIndex,
  decodeIndexSlots,
  decodeEpochLogs,
  inodeMetaSize,
  isVdiObj,
  oidToVid,
  protoVerFor,
  vidToAttrOid,
  vidToDataOid,
  vidToVdiOid,
  decodeInodeHeader,
  decodeNodeList,
  decodeRequest,
  decodeResponse,
  decodeVdiAttr,
  decodeVdiNameBody,
  encodeRequest,
  encodeResponse,
  opName,
  resultName,
  sdHashVdi,
  type Response,
  type Request,
} from '../../protocol/index.js';
import { loadAll, sha256, type RecordedFrame, type Transcript } from '../helpers/transcripts.js';

const transcripts = loadAll();

/** Pairs each request with its reply (same conn; replies to a conn come in order for dog, by id for libsheepdog). */
function pairs(tr: Transcript): { req: RecordedFrame; rsp: RecordedFrame }[] {
  const open = new Map<number, RecordedFrame[]>();
  const out: { req: RecordedFrame; rsp: RecordedFrame }[] = [];
  for (const f of tr.frames) {
    const q = open.get(f.conn) ?? [];
    open.set(f.conn, q);
    if (f.dir === 'req') q.push(f);
    else {
      const id = f.hdr.readUInt32LE(8);
      const i = q.findIndex((r) => r.hdr.readUInt32LE(8) === id);
      const [req] = q.splice(Math.max(i, 0), 1);
      if (req) out.push({ req, rsp: f });
    }
  }
  return out;
}

t.test('there are 18 transcripts with 305 request/reply pairs', async (t) => {
  t.equal(transcripts.length, 18);
  t.equal(
    transcripts.reduce((n, tr) => n + pairs(tr).length, 0),
    305,
  );
});

for (const tr of transcripts) {
  t.test(tr.name, async (t) => {
    let n = 0;
    for (const f of tr.frames) {
      const where = `${tr.name} frame ${n++} (${f.dir} ${opName(f.hdr[1] ?? 0)})`;
      const out = Buffer.alloc(HEADER_SIZE);
      if (f.dir === 'req') {
        const req = decodeRequest(f.hdr);
        encodeRequest(req, out);
        if (!out.equals(f.hdr)) t.fail(`${where}: re-encoded request differs`);
        // proto_ver rule
        if (req.opcode >= 0x80) t.equal(req.protoVer, SD_SHEEP_PROTO_VER, `${where}: internal op carries 0x0a`);
        else if (req.protoVer > SD_PROTO_VER) t.fail(`${where}: public op above 0x02`);
        // WRITE-flag body rule
        const expect = req.flags & Flag.CMD_WRITE ? req.dataLength : 0;
        if (f.bodyLen !== expect) t.fail(`${where}: body ${f.bodyLen}, rule says ${expect}`);
      } else {
        const rsp = decodeResponse(f.hdr);
        encodeResponse(rsp, out);
        if (!out.equals(f.hdr)) t.fail(`${where}: re-encoded response differs`);
        if (f.bodyLen !== rsp.dataLength) t.fail(`${where}: reply body is not data_length`);
        if (resultName(rsp.result).startsWith('UNKNOWN')) t.fail(`${where}: unknown result ${rsp.result}`);
      }
      if (f.body) {
        if (f.body.length !== f.bodyLen) t.fail(`${where}: body length`);
        if (sha256(f.body) !== f.bodySha256) t.fail(`${where}: body sha256`);
      }
    }
    t.pass(`${n} frames decode and re-encode identically`);
    // Every reply echoes its request's opcode and id.
    for (const { req, rsp } of pairs(tr)) {
      if (req.hdr[1] !== rsp.hdr[1]) t.fail('opcode echo');
      if (req.hdr.readUInt32LE(8) !== rsp.hdr.readUInt32LE(8)) t.fail('id echo');
    }
  });
}

function find(name: string): Transcript {
  const tr = transcripts.find((x) => x.name === name);
  if (!tr) throw new Error(`no transcript ${name}`);
  return tr;
}

function vdiOps(tr: Transcript, opcode: number): { req: Request; name: string; tag: string; rsp: Response }[] {
  return pairs(tr)
    .filter((p) => p.req.hdr[1] === opcode)
    .map((p) => ({
      req: decodeRequest(p.req.hdr),
      ...decodeVdiNameBody(p.req.body ?? Buffer.alloc(0)),
      rsp: decodeResponse(p.rsp.hdr),
    }));
}

t.test('scenario facts', async (t) => {
  // 02: NEW_VDI answers ids that are the FNV hash of the name (all were free).
  const created = vdiOps(find('02-vdi-create'), Op.NEW_VDI);
  t.same(
    created.map((c) => [c.name, c.rsp.kind === 'vdi' ? c.rsp.vdiId : -1]),
    [
      ['alpha', 0xed202b],
      ['beta', 0x4620a7],
      ['gamma', 0x6ba96a],
      ['delta', 0x13a0c1],
    ],
  );
  for (const c of created) {
    t.equal(c.rsp.kind === 'vdi' && c.rsp.vdiId, sdHashVdi(c.name), `sd_hash_vdi(${c.name}) is where sheep started`);
  }
  const beta = created[1]?.req;
  t.ok(beta?.kind === 'vdi' && beta.copies === 3 && beta.vdiSize === 1n << 30n, 'beta: 3 copies, 1 GiB');
  const gamma = created[2]?.req;
  t.ok(gamma?.kind === 'vdi' && gamma.blockSizeShift === 20, 'gamma: bss 20');

  // 03: creating alpha again is VDI_EXIST.
  t.equal(vdiOps(find('03-vdi-create-exists'), Op.NEW_VDI)[0]?.rsp.result, Result.VDI_EXIST);

  // 06: the snapshot keeps ed202b, the working VDI moves to ed202c; same tag again is refused.
  const snap = vdiOps(find('06-vdi-snapshot'), Op.NEW_VDI)[0];
  t.ok(
    snap?.req.kind === 'vdi' && snap.req.snapid === 1 && snap.req.baseVdiId === 0xed202b,
    'NEW_VDI snapid=1 base=ed202b',
  );
  t.equal(snap?.rsp.kind === 'vdi' && snap.rsp.vdiId, 0xed202c);
  const lookups = vdiOps(find('06-vdi-snapshot'), Op.GET_VDI_INFO);
  t.equal(lookups[0]?.rsp.result, Result.NO_TAG, 'tag unused before the snapshot');
  t.equal(lookups.at(-1)?.rsp.result, Result.SUCCESS, 'tag found after');

  // 10: attr ops reply with sd_hash_vdi(name) as vdi_id, not the current vid.
  const attrs = pairs(find('10-vdi-attr')).filter((p) => p.req.hdr[1] === Op.GET_VDI_ATTR);
  t.equal(attrs.length, 3);
  const first = attrs[0];
  if (first?.req.body) {
    const a = decodeVdiAttr(first.req.body);
    t.equal(a.name, 'alpha');
    t.equal(a.key, 'owner');
    t.equal(Buffer.from(a.value).toString(), 'ceo');
    t.equal(decodeRequest(first.req.hdr).flags, Flag.CMD_WRITE | Flag.CMD_CREAT);
  }
  const r0 = first && decodeResponse(first.rsp.hdr);
  t.ok(r0?.kind === 'vdi' && r0.vdiId === sdHashVdi('alpha'));
  t.equal(attrs[2] && decodeResponse(attrs[2].rsp.hdr).result, Result.NO_OBJ, 'missing key: NO_OBJ');

  // 13/14: missing VDIs and tags.
  t.equal(vdiOps(find('13-vdi-delete'), Op.GET_VDI_INFO).at(-1)?.rsp.result, Result.NO_VDI);
  const errs = vdiOps(find('14-errors'), Op.GET_VDI_INFO).map((x) => x.rsp.result);
  t.same(errs.slice(0, 3), [Result.NO_VDI, Result.NO_VDI, Result.NO_TAG]);

  // 12: rollback deletes the working VDI and makes a new one from the snapshot.
  const rb = vdiOps(find('12-vdi-rollback'), Op.NEW_VDI)[0];
  t.ok(rb?.req.kind === 'vdi' && rb.req.baseVdiId === 0xed202b && rb.req.snapid === 0);
  t.equal(rb?.rsp.kind === 'vdi' && rb.rsp.vdiId, 0xed202d);

  // 16: libsheepdog numbers its requests; LOCK_VDI answers the vid.
  const lib = find('16-libsheepdog-lock-io');
  const ids = lib.frames.filter((f) => f.dir === 'req').map((f) => f.hdr.readUInt32LE(8));
  t.ok(new Set(ids).size > 1, 'libsheepdog uses several ids');
  const lock = vdiOps(lib, Op.LOCK_VDI)[0];
  t.equal(lock?.rsp.kind === 'vdi' && lock.rsp.vdiId, 0x4620a7);
});

t.test('records in recorded bodies', async (t) => {
  const tr = find('01-cluster-info');
  const nl = pairs(tr).find((p) => p.req.hdr[1] === Op.GET_NODE_LIST);
  t.ok(nl?.rsp.body);
  if (nl?.rsp.body) {
    const rsp = decodeResponse(nl.rsp.hdr);
    t.ok(rsp.kind === 'node' && rsp.nrNodes === 3);
    const nodes = decodeNodeList(nl.rsp.body, 3);
    t.same(
      nodes.map((n) => `${n.nid.addr}:${n.nid.port}/${n.nrVnodes}/${n.zone}`),
      ['127.0.0.1:7000/128/0', '127.0.0.1:7001/128/1', '127.0.0.1:7002/128/2'],
    );
  }
  const sc = pairs(tr).filter((p) => p.req.hdr[1] === Op.STAT_CLUSTER);
  const big = sc.find((p) => decodeRequest(p.req.hdr).kind === 'cluster' && p.req.hdr.readUInt32LE(40) === 3);
  if (big?.rsp.body) {
    const logs = decodeEpochLogs(big.rsp.body, 3);
    t.equal(logs.length, 1);
    t.equal(logs[0]?.epoch, 1);
    t.equal(logs[0]?.nrNodes, 3);
    t.equal(logs[0]?.nrCopies, 2);
    t.equal(logs[0]?.drvName, 'plain');
    t.equal(logs[0]?.nodes[2]?.nid.port, 7002);
  } else t.fail('STAT_CLUSTER with nodes_nr=3 recorded');
  // The first STAT_CLUSTER asks with nodes_nr 0: one 48-byte entry that fits.
  t.equal(sc[0]?.rsp.bodyLen, 48);

  // Inode header reads (READ_OBJ of an inode at offset 0) decode to the VDI they name.
  const reads = pairs(find('04-vdi-list')).filter((p) => p.req.hdr[1] === Op.READ_OBJ && p.rsp.body);
  const names = new Set<string>();
  for (const p of reads) {
    const req = decodeRequest(p.req.hdr);
    if (req.kind !== 'obj' || req.oid >> 63n !== 1n || req.offset !== 0 || !p.rsp.body) continue;
    const h = decodeInodeHeader(p.rsp.body);
    t.equal(h.vdiId, Number((req.oid >> 32n) & 0xffffffn), `inode ${h.name} names its own vid`);
    names.add(h.name);
  }
  t.same([...names].sort(), ['alpha', 'beta', 'delta', 'gamma']);
});

// ---------------------------------------------------------------------------
// Facts docs/protocol.md cites from the recordings.

function decodedPairs(tr: Transcript): { req: Request; rsp: Response; reqF: RecordedFrame; rspF: RecordedFrame }[] {
  return pairs(tr).map((p) => ({
    req: decodeRequest(p.req.hdr),
    rsp: decodeResponse(p.rsp.hdr),
    reqF: p.req,
    rspF: p.rsp,
  }));
}

t.test('docs: frame-level facts across all recordings', async (t) => {
  const all = transcripts.flatMap((tr) => tr.frames);
  t.equal(all.length, 610, '610 recorded headers');
  const reqs = all.filter((f) => f.dir === 'req').map((f) => decodeRequest(f.hdr));
  const rsps = all.filter((f) => f.dir === 'rsp').map((f) => decodeResponse(f.hdr));
  t.same([...new Set(reqs.map((r) => r.epoch))], [0], 'requests carry epoch 0');
  t.same([...new Set(rsps.map((r) => r.epoch))], [1], 'replies carry the cluster epoch, 1');
  t.same([...new Set(rsps.map((r) => r.protoVer))], [0], 'replies carry proto_ver 0');
  t.same([...new Set(rsps.map((r) => r.flags))], [0], 'replies carry flags 0');
  // Reply body: never more than a non-WRITE request offered; nothing for a plain write.
  for (const tr of transcripts) {
    for (const { req, rsp } of decodedPairs(tr)) {
      if (req.flags & Flag.CMD_WRITE) {
        if (rsp.dataLength !== 0) t.fail(`${tr.name}: reply to a write with a body`);
      } else if (rsp.dataLength > req.dataLength) t.fail(`${tr.name}: reply longer than offered`);
    }
  }
  // proto_ver by client: dog 0x02 / 0x0a by opcode, libsheepdog 0.
  const lib = find('16-libsheepdog-lock-io');
  const libConns = new Set([1, 2]);
  for (const tr of transcripts) {
    for (const f of tr.frames) {
      if (f.dir !== 'req') continue;
      const r = decodeRequest(f.hdr);
      const expect = tr === lib && libConns.has(f.conn) ? 0 : protoVerFor(r.opcode);
      if (r.protoVer !== expect) t.fail(`${tr.name} ${opName(r.opcode)}: proto_ver ${r.protoVer}`);
    }
  }
  t.same(
    lib.frames.filter((f) => f.dir === 'req' && libConns.has(f.conn)).map((f) => opName(f.hdr[1] ?? 0)),
    [
      ...['LOCK_VDI', 'READ_OBJ', 'CREATE_AND_WRITE_OBJ', 'WRITE_OBJ', 'WRITE_OBJ', 'WRITE_OBJ', 'WRITE_OBJ'],
      'RELEASE_VDI',
      ...['LOCK_VDI', 'READ_OBJ', 'READ_OBJ', 'READ_OBJ', 'READ_OBJ', 'READ_OBJ', 'RELEASE_VDI'],
    ],
    'libsheepdog sends these with proto_ver 0 and is served',
  );
  // Ids: dog always 0; libsheepdog 1, 2, 3, ... per connection, one request at a time.
  for (const tr of transcripts) {
    for (const f of tr.frames) {
      if (!(tr === lib && libConns.has(f.conn)) && f.hdr.readUInt32LE(8) !== 0) t.fail(`${tr.name}: dog id not 0`);
    }
  }
  for (const [conn, n] of [
    [1, 8],
    [2, 7],
  ] as const) {
    const fs = lib.frames.filter((f) => f.conn === conn);
    t.same(
      fs.filter((f) => f.dir === 'req').map((f) => f.hdr.readUInt32LE(8)),
      Array.from({ length: n }, (_, i) => i + 1),
      `libsheepdog conn ${conn}: ids 1..${n}`,
    );
    t.ok(
      fs.every((f, i) => f.dir === (i % 2 === 0 ? 'req' : 'rsp')),
      'each reply came before the next request',
    );
  }
  // A WRITE request with data_length 0 (13: zeroing gamma's empty index range).
  const empty = decodedPairs(find('13-vdi-delete')).find(
    (p) => p.req.opcode === Op.WRITE_OBJ && p.req.flags & Flag.CMD_WRITE && p.req.dataLength === 0,
  );
  t.ok(empty && empty.reqF.bodyLen === 0 && empty.req.kind === 'obj' && oidToVid(empty.req.oid) === 0x6ba96a);
  // A VDI_EXIST reply's vdi_id is junk.
  const exists = decodedPairs(find('03-vdi-create-exists')).find((p) => p.req.opcode === Op.NEW_VDI);
  t.ok(exists?.rsp.kind === 'vdi' && exists.rsp.result === Result.VDI_EXIST && exists.rsp.vdiId === 0x7f4b);
});

t.test('docs: records and sizes', async (t) => {
  // GET_NODE_LIST offers 6144 x 80; sd_node starts with 24 bytes of sender memory.
  const ci = decodedPairs(find('01-cluster-info'));
  const nl = ci.find((p) => p.req.opcode === Op.GET_NODE_LIST);
  t.equal(nl?.req.dataLength, 6144 * 80);
  t.equal(nl?.rspF.bodyLen, 240);
  t.equal(nl?.rspF.body?.subarray(0, 8).toString('hex'), '9071dd3e3c560000', 'node 0 starts with a heap pointer');
  t.equal(nl?.rspF.body?.subarray(24, 40).toString('hex'), `${'00'.repeat(12)}7f000001`, 'IPv4 as 12 zeros + 4 bytes');
  // STAT_CLUSTER: nodes_nr 0 -> 48 bytes; nodes_nr 3 -> 288 = 48 + 3 x 80.
  const sc = ci.filter((p) => p.req.opcode === Op.STAT_CLUSTER);
  t.same(
    sc.map((p) => [p.req.kind === 'cluster' && p.req.nodesNr, p.req.dataLength, p.rspF.bodyLen]),
    [
      [0, 48, 48],
      [3, 288, 288],
      [0, 48, 48],
    ],
  );
  const [hdrOnly] = decodeEpochLogs(sc[0]?.rspF.body ?? Buffer.alloc(0), 0);
  t.same([hdrOnly?.epoch, hdrOnly?.nrCopies, hdrOnly?.flags, hdrOnly?.drvName], [1, 2, 0x0c, 'plain']);
  t.equal(hdrOnly?.flags, ClusterFlag.AUTO_VNODES | ClusterFlag.USE_LOCK);
  const [full] = decodeEpochLogs(sc[1]?.rspF.body ?? Buffer.alloc(0), 3);
  t.equal(full?.time, (full?.ctime ?? 0n) >> 32n, "the entry's time is the seconds of ctime");
  t.equal(full?.time, 1_795_463_569n);
  // CLUSTER_INFO: 48 + 6144 x 80 both ways.
  const info = decodedPairs(find('02-vdi-create')).find((p) => p.req.opcode === Op.CLUSTER_INFO);
  t.same([info?.req.dataLength, info?.rspF.bodyLen], [CLUSTER_INFO_SIZE, CLUSTER_INFO_SIZE]);
  t.equal(CLUSTER_INFO_SIZE, 491_568);
  // GET_VDI_COPIES: 512 x 1428 offered; whole vdi_state records back.
  for (const [name, n] of [
    ['11-vdi-lock', 6],
    ['16-libsheepdog-lock-io', 9],
  ] as const) {
    const p = decodedPairs(find(name)).find((x) => x.req.opcode === Op.GET_VDI_COPIES);
    t.same([p?.req.dataLength, p?.rspF.bodyLen], [512 * VDI_STATE_SIZE, n * VDI_STATE_SIZE], `${name}: ${n} records`);
  }
  // GET_VDI_ATTR then READ_OBJ of vid_to_attr_oid(reply vdi_id, attr_id).
  const at = decodedPairs(find('10-vdi-attr'));
  const get = at.find((p) => p.req.opcode === Op.GET_VDI_ATTR && p.req.flags === Flag.CMD_WRITE);
  const read = at.find((p) => p.req.opcode === Op.READ_OBJ);
  t.ok(
    get?.rsp.kind === 'vdi' && read?.req.kind === 'obj' && read.req.oid === vidToAttrOid(get.rsp.vdiId, get.rsp.attrId),
  );
  t.equal(read?.req.kind === 'obj' && read.req.oid, 0x20ed202b6d21d6c0n);
  t.equal(read?.req.dataLength, SD_ATTR_OBJ_SIZE);
  // Name bodies: 256 for NEW_VDI and libsheepdog's LOCK_VDI, 512 for GET_VDI_INFO and DEL_VDI.
  const bodyLen = (name: string, op: number): number[] => [
    ...new Set(
      pairs(find(name))
        .filter((p) => p.req.hdr[1] === op)
        .map((p) => p.req.bodyLen),
    ),
  ];
  t.same(bodyLen('02-vdi-create', Op.NEW_VDI), [256]);
  t.same(bodyLen('16-libsheepdog-lock-io', Op.LOCK_VDI), [256]);
  t.same(bodyLen('05-vdi-write-read', Op.GET_VDI_INFO), [512]);
  t.same(bodyLen('12-vdi-rollback', Op.DEL_VDI), [512]);
});

t.test('docs: inode reads and writes', async (t) => {
  // 04: header + sd_index_header (4672), then exactly the index slots the size spans.
  const list = decodedPairs(find('04-vdi-list')).filter((p) => p.req.opcode === Op.READ_OBJ);
  const sizes = new Map<number, number>();
  for (const p of list) {
    if (p.req.kind !== 'obj' || !isVdiObj(p.req.oid)) continue;
    const v = oidToVid(p.req.oid);
    if (p.req.offset === 0) {
      t.equal(p.req.dataLength, SD_INODE_HEADER_SIZE + BTREE_INDEX_HEADER_SIZE);
      t.equal(p.req.flags, Flag.CMD_DIRECT);
      const h = decodeInodeHeader(p.rspF.body ?? Buffer.alloc(0));
      sizes.set(v, inodeMetaSize(h.vdiSize, h.blockSizeShift) - SD_INODE_HEADER_SIZE);
    } else {
      t.equal(p.req.offset, SD_INODE_HEADER_SIZE);
      t.equal(p.req.dataLength, sizes.get(v), `vid ${v.toString(16)}: index bytes the size spans`);
      if (v === 0x13a0c1)
        t.same([...decodeIndexSlots(p.rspF.body ?? Buffer.alloc(0), 0, 3)], [0x13a0c1, 0x13a0c1, 0x13a0c1]);
    }
  }
  t.same(
    [...sizes].sort((a, b) => a[0] - b[0]),
    [
      [0x13a0c1, 12],
      [0x4620a7, 1024],
      [0x6ba96a, 40],
      [0xed202b, 100],
    ],
  );
  // 05: whole-inode read for I/O; index slot writes of the owning vid.
  const io = decodedPairs(find('05-vdi-write-read'));
  t.ok(io.some((p) => p.req.opcode === Op.READ_OBJ && p.req.dataLength === SD_INODE_SIZE));
  const slots = io.filter((p) => p.req.opcode === Op.WRITE_OBJ && p.reqF.bodyLen === 4);
  t.same(
    slots.map((p) => [p.req.kind === 'obj' && p.req.offset, p.reqF.body?.readUInt32LE(0)]),
    [0, 1, 2].map((i) => [dataVdiIdOffset(i), 0xed202b]),
  );
  const big = io.find((p) => p.req.opcode === Op.WRITE_OBJ && p.reqF.bodyLen === 4304);
  t.ok(big?.req.kind === 'obj' && big.req.offset === 4_190_000 && big.req.oid === vidToDataOid(0xed202b, 0));
  // 07: copy-on-write from the snapshot's object.
  const cow = decodedPairs(find('07-vdi-clone')).find((p) => p.req.opcode === Op.CREATE_AND_WRITE_OBJ);
  t.ok(
    cow?.req.kind === 'obj' &&
      cow.req.flags === (Flag.CMD_WRITE | Flag.CMD_COW) &&
      cow.req.oid === vidToDataOid(0xc29457, 0) &&
      cow.req.cowOid === vidToDataOid(0xed202b, 0),
  );
  // 06 / 17: the tag is written into the current inode at 256, then NEW_VDI snapid 1.
  for (const [name, vid, tag] of [
    ['06-vdi-snapshot', 0xed202b, 'snap1'],
    ['17-clone-cow-across-objects', 0x13a0c1, 's2'],
  ] as const) {
    const ps = decodedPairs(find(name));
    const w = ps.findIndex((p) => p.req.opcode === Op.WRITE_OBJ && p.req.kind === 'obj' && p.req.offset === 256);
    const wr = ps[w];
    t.ok(wr?.req.kind === 'obj' && wr.req.oid === vidToVdiOid(vid) && wr.reqF.bodyLen === 256, `${name}: tag write`);
    t.equal(decodeVdiNameBody(wr?.reqF.body ?? Buffer.alloc(0)).name, tag);
    const nv = ps[w + 1];
    t.ok(nv?.req.kind === 'vdi' && nv.req.opcode === Op.NEW_VDI && nv.req.snapid === 1 && nv.req.baseVdiId === vid);
  }
  // 06 listing: the snapshot and the new working inode.
  const heads = decodedPairs(find('06-vdi-snapshot'))
    .filter((p) => p.req.opcode === Op.READ_OBJ && p.rspF.bodyLen === SD_INODE_HEADER_SIZE + 8 && p.rspF.body)
    .map((p) => decodeInodeHeader(p.rspF.body ?? Buffer.alloc(0)))
    .filter((h) => h.name === 'alpha');
  const snap = heads.find((h) => h.vdiId === 0xed202b && h.tag === 'snap1');
  const work = heads.find((h) => h.vdiId === 0xed202c);
  t.ok(snap && snap.snapCtime !== 0n && snap.snapId === 1);
  t.ok(work && work.snapCtime === 0n && work.snapId === 2 && work.parentVdiId === 0xed202b);
  // 15: the hyper volume's B-tree root, written with the header at offset 0.
  const hy = decodedPairs(find('15-vdi-create-ec-hyper'));
  t.ok(hy.some((p) => p.req.kind === 'obj' && p.req.oid === vidToDataOid(0x5b5b59, 0x100000)));
  const root = hy.find((p) => p.req.opcode === Op.WRITE_OBJ && p.req.kind === 'obj' && p.req.offset === 0);
  const body = root?.reqF.body ?? Buffer.alloc(0);
  t.equal(body.length, SD_INODE_HEADER_SIZE + 16);
  t.equal(decodeInodeHeader(body).storePolicy, 1);
  t.same(decodeBtreeHeader(body, SD_INODE_HEADER_SIZE), { magic: INODE_BTREE_MAGIC, depth: 1, entries: 1 });
  t.same(decodeBtreeIndex(body, SD_INODE_HEADER_SIZE, 0), { idx: 0x100000, vdiId: 0x5b5b59 });
  for (const name of ['15-vdi-create-ec-hyper', '16-libsheepdog-lock-io']) {
    const rd = decodedPairs(find(name)).find(
      (p) => p.req.kind === 'obj' && p.req.oid === vidToVdiOid(0x5b5b59) && p.req.offset === SD_INODE_HEADER_SIZE,
    );
    t.equal(rd?.rspF.body?.toString('hex'), '746201000100000000001000595b5b00', `${name}: root read`);
  }
  // 18: a hole costs no data read.
  t.same(
    decodedPairs(find('18-read-hole')).map((p) => [opName(p.req.opcode), p.req.kind === 'obj' && isVdiObj(p.req.oid)]),
    [
      ['GET_VDI_INFO', false],
      ['READ_OBJ', true],
    ],
  );
});

t.test('docs: READ_VDIS / READ_DEL_VDIS bitmaps are LSB-first', async (t) => {
  const bitmapSha = (vids: number[]): string => {
    const b = new Uint8Array(VDI_BITMAP_SIZE);
    for (const v of vids) bitmapSet(b, v);
    return sha256(b);
  };
  const bitmaps = (name: string, op: number): string[] =>
    pairs(find(name))
      .filter((p) => p.req.hdr[1] === op)
      .map((p) => {
        t.equal(p.rsp.bodyLen, VDI_BITMAP_SIZE);
        return p.rsp.bodySha256;
      });
  const listed = bitmapSha([0x13a0c1, 0x4620a7, 0x6ba96a, 0xed202b]);
  t.same(bitmaps('04-vdi-list', Op.READ_VDIS), [listed, listed], 'exactly the four VDIs of 02');
  t.same(bitmaps('04-vdi-list', Op.READ_DEL_VDIS), [bitmapSha([]), bitmapSha([])]);
  t.same(bitmaps('13-vdi-delete', Op.READ_DEL_VDIS), [bitmapSha([0x6ba96a, 0xc29457, 0xed202b, 0xed202c])]);
  // The same bits with the other bit order do not match.
  const msb = new Uint8Array(VDI_BITMAP_SIZE);
  for (const v of [0x13a0c1, 0x4620a7, 0x6ba96a, 0xed202b]) msb[v >> 3] = (msb[v >> 3] as number) | (0x80 >> (v & 7));
  t.not(sha256(msb), bitmaps('04-vdi-list', Op.READ_VDIS)[0]);
  // dog then reads the inodes of the in-use, not-deleted vids, ascending.
  for (const name of ['15-vdi-create-ec-hyper', '16-libsheepdog-lock-io']) {
    const inuse = new Uint8Array(VDI_BITMAP_SIZE);
    for (const v of [0x13a0c1, 0x4620a7, 0x6ba96a, 0xed202b, 0xed202c, 0xc29457, 0xed202d, 0x320a4e, 0x5b5b59])
      bitmapSet(inuse, v);
    const deleted = new Uint8Array(VDI_BITMAP_SIZE);
    for (const v of [0x6ba96a, 0xc29457, 0xed202b, 0xed202c]) bitmapSet(deleted, v);
    t.same(bitmaps(name, Op.READ_VDIS), [sha256(inuse)]);
    t.same(bitmaps(name, Op.READ_DEL_VDIS), [sha256(deleted)]);
    const expected = [...bitmapSetBits(inuse)].filter((v) => !bitmapTest(deleted, v));
    const read = decodedPairs(find(name))
      .filter((p) => p.req.kind === 'obj' && isVdiObj(p.req.oid) && p.req.offset === 0 && p.req.dataLength === 4672)
      .map((p) => (p.req.kind === 'obj' ? oidToVid(p.req.oid) : -1));
    t.same(read, expected, `${name}: inode headers read in bitmap order`);
  }
});
