// The pure NBD codec: a whole client stream decoded identically for every
// chunking, hostile input answered with typed errors, encoders byte-exact.
import fc from 'fast-check';
import t, { type Test } from 'tap';
import {
  ClientFlag,
  Cmd,
  CmdFlag,
  Info,
  NbdOptionError,
  NbdProtocolError,
  NbdServerDecoder,
  Opt,
  Rep,
  encodeBlockStatus,
  encodeChunkError,
  encodeClientFlags,
  encodeExportNameReply,
  encodeGreeting,
  encodeInfoRequestData,
  encodeMetaContextRequestData,
  encodeOffsetDataHeader,
  encodeOffsetHole,
  encodeOption,
  encodeRequest,
  encodeSimpleReply,
  parseEmpty,
  parseExportName,
  parseInfoRequest,
  parseMetaContextRequest,
  type ClientMessage,
} from '../../lib/nbd/protocol/index.js';

const payload = Buffer.from(Array.from({ length: 1000 }, (_, i) => (i * 7) & 0xff));
const stream = Buffer.concat([
  encodeClientFlags(ClientFlag.FIXED_NEWSTYLE | ClientFlag.NO_ZEROES),
  encodeOption(Opt.STRUCTURED_REPLY),
  encodeOption(Opt.INFO, encodeInfoRequestData('vol', [Info.NAME, Info.BLOCK_SIZE])),
  encodeOption(Opt.SET_META_CONTEXT, encodeMetaContextRequestData('vol', ['base:allocation', 'qemu:allocation-depth'])),
  encodeOption(99, Buffer.from('xyz')),
  encodeOption(Opt.GO, encodeInfoRequestData('vol')),
  encodeRequest({ flags: CmdFlag.FUA, type: Cmd.WRITE, cookie: 1n, offset: 4090, length: payload.length }),
  payload,
  encodeRequest({ flags: CmdFlag.DF, type: Cmd.READ, cookie: 0xffffffffffffffffn, offset: 0, length: 65536 }),
  encodeRequest({ flags: 0, type: Cmd.FLUSH, cookie: 3n, offset: 0, length: 0 }),
  encodeRequest({ flags: 0, type: Cmd.TRIM, cookie: 4n, offset: 2 ** 40, length: 2 ** 31 }),
  encodeRequest({
    flags: CmdFlag.NO_HOLE | CmdFlag.FAST_ZERO,
    type: Cmd.WRITE_ZEROES,
    cookie: 5n,
    offset: 1,
    length: 2,
  }),
  encodeRequest({ flags: CmdFlag.REQ_ONE, type: Cmd.BLOCK_STATUS, cookie: 6n, offset: 0, length: 1 << 30 }),
  encodeRequest({ flags: 0, type: Cmd.CACHE, cookie: 7n, offset: 0, length: 4096 }),
  encodeRequest({ flags: 0, type: Cmd.WRITE, cookie: 8n, offset: 0, length: 0 }),
  encodeRequest({ flags: 0, type: Cmd.DISC, cookie: 9n, offset: 0, length: 0 }),
]);

/** Decode chunks the way the server drives the decoder: a GO is answered with startTransmission. */
function decodeAll(chunks: Buffer[]): unknown[] {
  const d = new NbdServerDecoder();
  const out: unknown[] = [];
  for (const c of chunks) {
    d.push(c);
    for (let m: ClientMessage | undefined; (m = d.next()) !== undefined;) {
      out.push(plain(m));
      if (m.kind === 'option' && m.option === Opt.GO) d.startTransmission();
    }
  }
  if (d.buffered !== 0) throw new Error(`${d.buffered} bytes left over`);
  return out;
}

function plain(m: ClientMessage): unknown {
  return JSON.parse(
    JSON.stringify(m, (_k, v: unknown) =>
      typeof v === 'bigint'
        ? `0x${v.toString(16)}`
        : v instanceof Uint8Array || (v as { type?: string })?.type === 'Buffer'
          ? Buffer.from(v as Uint8Array).toString('hex')
          : v,
    ),
  );
}

t.test('the whole stream decodes to the expected messages', async (t) => {
  const msgs = decodeAll([stream]) as { kind: string; option?: number; type?: number; data?: string }[];
  t.same(
    msgs.map((m) => (m.kind === 'request' ? `cmd${m.type}` : m.kind === 'option' ? `opt${m.option}` : m.kind)),
    [
      'client-flags',
      'opt8',
      'opt6',
      'opt10',
      'opt99',
      'opt7',
      'cmd1',
      'cmd0',
      'cmd3',
      'cmd4',
      'cmd6',
      'cmd7',
      'cmd5',
      'cmd1',
      'cmd2',
    ],
  );
  t.match(msgs[6], { flags: CmdFlag.FUA, cookie: '0x1', offset: 4090, length: 1000, data: payload.toString('hex') });
  t.match(msgs[7], { cookie: '0xffffffffffffffff', length: 65536 });
  t.match(msgs[9], { offset: 2 ** 40, length: 2 ** 31 });
  t.equal(msgs[13]?.data, '', 'zero-length WRITE has an empty payload');
  const info = parseInfoRequest(Buffer.from(msgs[2]?.data ?? '', 'hex'));
  t.same(info, { name: 'vol', infos: [Info.NAME, Info.BLOCK_SIZE] });
  const meta = parseMetaContextRequest(Buffer.from(msgs[3]?.data ?? '', 'hex'));
  t.same(meta, { name: 'vol', queries: ['base:allocation', 'qemu:allocation-depth'] });
});

t.test('split at every offset (2 chunks), and byte by byte', async (t) => {
  const want = decodeAll([stream]);
  let bad = 0;
  for (let i = 0; i <= stream.length; i++) {
    const got = decodeAll([stream.subarray(0, i), stream.subarray(i)]);
    if (JSON.stringify(got) !== JSON.stringify(want)) bad++;
  }
  t.equal(bad, 0, `all ${stream.length + 1} splits decode the same`);
  const bytes = [...stream].map((b) => Buffer.from([b]));
  t.same(decodeAll(bytes), want, 'one byte at a time');
});

t.test('random chunkings (property)', async (t) => {
  const want = JSON.stringify(decodeAll([stream]));
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 1, max: stream.length }), { maxLength: 12 }), (cuts) => {
      const pos = [...new Set(cuts)].sort((a, b) => a - b);
      const chunks: Buffer[] = [];
      let prev = 0;
      for (const p of [...pos, stream.length]) {
        chunks.push(stream.subarray(prev, p));
        prev = p;
      }
      return JSON.stringify(decodeAll(chunks)) === want;
    }),
    { numRuns: 200 },
  );
  t.pass();
});

t.test('the decoder holds after GO until told how it went', async (t) => {
  const d = new NbdServerDecoder();
  d.push(encodeClientFlags(ClientFlag.FIXED_NEWSTYLE));
  d.push(encodeOption(Opt.GO, encodeInfoRequestData('nope')));
  d.push(encodeOption(Opt.ABORT));
  t.match(d.next(), { kind: 'client-flags' });
  t.match(d.next(), { kind: 'option', option: Opt.GO });
  t.equal(d.phase, 'held');
  t.equal(d.next(), undefined, 'holds');
  d.continueOptions();
  t.match(d.next(), { kind: 'option', option: Opt.ABORT });
  t.throws(() => d.startTransmission(), 'not held any more');
});

function protocolError(t: Test, d: NbdServerDecoder, reason: string): void {
  let err: unknown;
  try {
    while (d.next() !== undefined);
  } catch (e) {
    err = e;
  }
  t.ok(err instanceof NbdProtocolError, `NbdProtocolError (${String(err)})`);
  t.equal((err as NbdProtocolError).reason, reason);
  t.throws(() => d.next(), NbdProtocolError, 'stays failed');
}

t.test('hostile input gets typed errors', async (t) => {
  const start = (): NbdServerDecoder => {
    const d = new NbdServerDecoder({ maxPayload: 1 << 20 });
    d.push(encodeClientFlags(ClientFlag.FIXED_NEWSTYLE | ClientFlag.NO_ZEROES));
    return d;
  };
  const inTransmission = (): NbdServerDecoder => {
    const d = start();
    d.push(encodeOption(Opt.GO, encodeInfoRequestData('')));
    d.next();
    d.next();
    d.startTransmission();
    return d;
  };

  let d = new NbdServerDecoder();
  d.push(encodeClientFlags(0x80));
  protocolError(t, d, 'bad-client-flags');

  d = start();
  d.push(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
  protocolError(t, d, 'bad-magic');

  d = start();
  const huge = encodeOption(Opt.INFO);
  huge.writeUInt32BE(0xffffffff, 12);
  d.push(huge);
  protocolError(t, d, 'option-too-large');

  // Over maxOptionLength but under the skip limit: skipped, reported, stream in sync.
  d = start();
  d.next();
  d.push(encodeOption(Opt.INFO, Buffer.alloc(100 * 1024)));
  d.push(encodeOption(Opt.LIST));
  t.match(d.next(), { kind: 'option', option: Opt.INFO, tooLarge: true, length: 100 * 1024 });
  t.match(d.next(), { kind: 'option', option: Opt.LIST, tooLarge: false });

  d = inTransmission();
  d.push(encodeRequest({ flags: 0, type: Cmd.WRITE, cookie: 1n, offset: 0, length: 2 ** 30 }));
  protocolError(t, d, 'payload-too-large');

  // A WRITE over maxPayload but within the skip limit is read off and flagged.
  d = inTransmission();
  d.push(encodeRequest({ flags: 0, type: Cmd.WRITE, cookie: 1n, offset: 0, length: 1.5 * 2 ** 20 }));
  t.equal(d.next(), undefined);
  for (let i = 0; i < 3; i++) {
    d.push(Buffer.alloc(2 ** 19));
    if (i < 2) t.equal(d.next(), undefined, 'still skipping');
  }
  d.push(encodeRequest({ flags: 0, type: Cmd.FLUSH, cookie: 2n, offset: 0, length: 0 }));
  t.match(d.next(), { kind: 'request', type: Cmd.WRITE, tooLarge: true, data: undefined });
  t.match(d.next(), { kind: 'request', type: Cmd.FLUSH, cookie: 2n });
  t.equal(d.buffered, 0, 'the skipped payload is not kept');

  d = inTransmission();
  const r = encodeRequest({ flags: 0, type: Cmd.READ, cookie: 1n, offset: 0, length: 1 });
  r.writeUInt32BE(0xdeadbeef, 0);
  d.push(r);
  protocolError(t, d, 'bad-magic');

  // A client closing mid-payload: the decoder reports the partial message.
  d = inTransmission();
  d.push(encodeRequest({ flags: 0, type: Cmd.WRITE, cookie: 1n, offset: 0, length: 100 }));
  d.push(Buffer.alloc(50));
  t.equal(d.next(), undefined);
  t.ok(d.midMessage, 'a partial WRITE is visible');
});

t.test('WRITE payloads: a view of the chunk when in one, else assembled in one buffer as bytes arrive', async (t) => {
  const go = (): NbdServerDecoder => {
    const d = new NbdServerDecoder();
    d.push(encodeClientFlags(ClientFlag.FIXED_NEWSTYLE | ClientFlag.NO_ZEROES));
    d.push(encodeOption(Opt.GO, encodeInfoRequestData('')));
    d.next();
    d.next();
    d.startTransmission();
    return d;
  };
  const body = Buffer.from(Array.from({ length: 10_000 }, (_, i) => (i * 13) & 0xff));
  const head = encodeRequest({ flags: 0, type: Cmd.WRITE, cookie: 1n, offset: 0, length: body.length });

  let d = go();
  const chunk = Buffer.concat([head, body]);
  d.push(chunk);
  const one = d.next();
  t.ok(one?.kind === 'request' && one.data?.buffer === chunk.buffer, 'in one chunk: a view, no copy');

  d = go();
  d.push(head);
  t.equal(d.next(), undefined);
  const parts = [body.subarray(0, 3000), body.subarray(3000, 3001), body.subarray(3001, 9000)];
  let pushed = 0;
  for (const p of parts) {
    d.push(p);
    pushed += p.length;
    t.equal(d.next(), undefined, `${pushed} of ${body.length} bytes: not yet`);
    t.equal(d.buffered, pushed, 'bytes being assembled count as buffered');
  }
  const last = Buffer.concat([
    body.subarray(9000),
    encodeRequest({ flags: 0, type: Cmd.FLUSH, cookie: 2n, offset: 0, length: 0 }),
  ]);
  d.push(last);
  const m = d.next();
  t.ok(m?.kind === 'request' && m.data !== undefined && m.data.equals(body), 'assembled byte-exact');
  t.ok(
    m?.kind === 'request' && m.data?.length === body.length && m.data.buffer !== last.buffer,
    'in a buffer of its own',
  );
  t.match(d.next(), { kind: 'request', type: Cmd.FLUSH, cookie: 2n });
  t.equal(d.buffered, 0);
});

t.test('garbage never throws anything but NbdProtocolError', async (t) => {
  fc.assert(
    fc.property(fc.boolean(), fc.uint8Array({ maxLength: 300 }), (transmission, junk) => {
      const d = new NbdServerDecoder();
      d.push(encodeClientFlags(0));
      if (transmission) {
        d.push(encodeOption(Opt.GO, encodeInfoRequestData('')));
        d.next();
        d.next();
        d.startTransmission();
      } else d.next();
      d.push(junk);
      try {
        for (let i = 0; i < 100 && d.next() !== undefined; i++) {
          if (d.phase === 'held') d.continueOptions();
        }
      } catch (e) {
        return e instanceof NbdProtocolError;
      }
      return true;
    }),
    { numRuns: 500 },
  );
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (junk) => {
      const b = Buffer.from(junk);
      for (const f of [parseInfoRequest, parseMetaContextRequest, parseExportName]) {
        try {
          f(b);
        } catch (e) {
          if (!(e instanceof NbdOptionError)) return false;
        }
      }
      return true;
    }),
    { numRuns: 500 },
  );
  t.pass();
});

t.test('option data parsers reject malformed data with the right reply', async (t) => {
  const info = encodeInfoRequestData('vol', [1, 2]);
  throwsRep(t, () => parseInfoRequest(info.subarray(0, info.length - 1)), Rep.ERR_INVALID);
  throwsRep(t, () => parseInfoRequest(Buffer.concat([info, Buffer.from([0])])), Rep.ERR_INVALID);
  const long = Buffer.alloc(8);
  long.writeUInt32BE(1 << 20, 0);
  throwsRep(t, () => parseInfoRequest(long), Rep.ERR_TOO_BIG);
  const many = Buffer.alloc(8);
  many.writeUInt32BE(0xffffffff, 4);
  throwsRep(t, () => parseMetaContextRequest(many), Rep.ERR_INVALID);
  throwsRep(t, () => parseExportName(Buffer.from([0xff, 0xfe])), Rep.ERR_INVALID);
  t.throws(() => parseEmpty(Buffer.from([1]), 'LIST'), NbdOptionError);
  t.doesNotThrow(() => parseEmpty(Buffer.alloc(0), 'LIST'));
});

t.test('encoders are byte-exact', async (t) => {
  t.equal(encodeGreeting(3).toString('hex'), '4e42444d4147494349484156454f50540003');
  t.equal(encodeExportNameReply(4096, 1, false).length, 134);
  t.equal(encodeExportNameReply(4096, 1, true).toString('hex'), '00000000000010000001');
  t.equal(encodeSimpleReply(0x0102n, 22).toString('hex'), '67446698' + '00000016' + '0000000000000102');
  t.equal(
    encodeOffsetDataHeader(7n, 1, 512, 4).toString('hex'),
    '668e33ef' + '0001' + '0001' + '0000000000000007' + '0000000c' + '0000000000000200',
  );
  t.equal(encodeOffsetHole(7n, 0, 0, 9).subarray(16).toString('hex'), '0000000c' + '0000000000000000' + '00000009');
  t.equal(
    encodeBlockStatus(7n, 1, 2, [{ length: 10, flags: 3 }])
      .subarray(6)
      .toString('hex'),
    '0005' + '0000000000000007' + '0000000c' + '00000002' + '0000000a' + '00000003',
  );
  const e = encodeChunkError(7n, 1, 'ro');
  t.equal(e.readUInt16BE(6), 0x8001);
  t.equal(e.subarray(20).toString('hex'), '00000001' + '0002' + Buffer.from('ro').toString('hex'));
});

function throwsRep(t: Test, f: () => unknown, rep: number): void {
  try {
    f();
    t.fail('did not throw');
  } catch (e) {
    t.ok(e instanceof NbdOptionError, String(e));
    t.equal((e as NbdOptionError).rep, rep);
  }
}
