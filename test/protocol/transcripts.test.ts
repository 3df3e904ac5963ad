// Every frame of every recorded real-sheep conversation decodes, re-encodes to
// the identical 48 bytes, obeys the framing rules, and carries the values the
// scenario table says sheep answered.
import t from 'tap';
import {
  HEADER_SIZE,
  Flag,
  Op,
  Result,
  SD_PROTO_VER,
  SD_SHEEP_PROTO_VER,
  decodeEpochLogs,
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
