// NBD over TLS (NBD_OPT_STARTTLS): the handshake upgrade byte by byte with
// Node's TLS client, what a server that requires TLS refuses before it, client
// certificates, and real clients (nbdinfo, qemu-io, qemu-img, nbdcopy) with
// the test credentials in test/fixtures/tls. Every write is read back through
// the SDK.
import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import t, { type Test } from 'tap';
import { InvalidArgumentError } from '../../lib/errors.js';
import { startNbdServer, type NbdServer, type NbdTlsOptions } from '../../lib/nbd/index.js';
import {
  ClientFlag,
  Cmd,
  Opt,
  Rep,
  encodeClientFlags,
  encodeInfoRequestData,
  encodeOption,
} from '../../lib/nbd/protocol/index.js';
import type { SheepdogClient } from '../../lib/client/client.js';
import { MiB, pattern, withCluster } from '../helpers/cluster.js';
import { RawClient } from './raw.js';

const exec = promisify(execFile);
const DIR = fileURLToPath(new URL('../fixtures/tls/', import.meta.url));
const pem = (f: string): Buffer => readFileSync(join(DIR, f));
const SERVER: NbdTlsOptions = { key: pem('server-key.pem'), cert: pem('server-cert.pem') };
const CA = pem('ca-cert.pem');

async function have(bin: string): Promise<boolean> {
  return exec('sh', ['-c', `command -v ${bin}`]).then(
    () => true,
    () => false,
  );
}
const tools = {
  nbdinfo: await have('nbdinfo'),
  nbdcopy: await have('nbdcopy'),
  qemuIo: await have('qemu-io'),
  qemuImg: await have('qemu-img'),
};

/** A GnuTLS x509 directory with only the CA: a client that has no certificate of its own. */
const caOnly = mkdtempSync(join(tmpdir(), 'sheepdog-tls-'));
cpSync(join(DIR, 'ca-cert.pem'), join(caOnly, 'ca-cert.pem'));
t.teardown(() => rmSync(caOnly, { recursive: true, force: true }));

const SIZE = 8 * MiB;

async function setup(t: Test, o: NbdTlsOptions = SERVER): Promise<{ client: SheepdogClient; server: NbdServer }> {
  const { client } = await withCluster(t);
  await client.createVdi('vol', SIZE, { blockSizeShift: 20 });
  const server = await startNbdServer({ client, exports: ['vol'], listen: { host: '127.0.0.1', port: 0 }, tls: o });
  t.teardown(() => server.close());
  return { client, server };
}

const portOf = (s: NbdServer): number => (s.address as { port: number }).port;

async function sdkRead(client: SheepdogClient, off: number, len: number): Promise<Buffer> {
  const v = await client.openVdi('vol');
  try {
    return await v.read(off, len);
  } finally {
    await v.close();
  }
}

/** Read one option reply: its type and data. */
async function optionReply(c: RawClient): Promise<{ option: number; type: number; data: Buffer }> {
  const h = await c.read(20);
  const data = Buffer.from(await c.read(h.readUInt32BE(16)));
  return { option: h.readUInt32BE(8), type: h.readUInt32BE(12), data };
}

/** A plain connection past the greeting and the client flags. */
async function plain(port: number): Promise<{ socket: net.Socket; c: RawClient }> {
  const socket = net.connect(port, '127.0.0.1');
  const c = new RawClient(socket);
  await c.read(18);
  c.raw(encodeClientFlags(ClientFlag.FIXED_NEWSTYLE | ClientFlag.NO_ZEROES));
  return { socket, c };
}

/** STARTTLS on a plain connection, then Node's TLS client over its socket; resolves with a RawClient on the TLS socket. */
async function startTls(
  { socket, c: before }: { socket: net.Socket; c: RawClient },
  creds: { cert?: Buffer; key?: Buffer } = {},
): Promise<{ c: RawClient }> {
  before.raw(encodeOption(Opt.STARTTLS));
  const r = await optionReply(before);
  if (r.type !== Rep.ACK) throw new Error(`STARTTLS answered 0x${r.type.toString(16)}`);
  socket.removeAllListeners('data');
  const tlsSocket = tls.connect({ socket, ca: CA, servername: 'localhost', ...creds });
  const c = new RawClient(tlsSocket);
  await new Promise<void>((resolve, reject) => {
    tlsSocket.once('secureConnect', () => resolve());
    tlsSocket.once('error', reject);
  });
  return { c };
}

/** A new connection, upgraded to TLS at once. */
async function upgrade(port: number, creds: { cert?: Buffer; key?: Buffer } = {}): Promise<{ c: RawClient }> {
  return startTls(await plain(port), creds);
}

/** NBD_OPT_GO on `c` for `name`; resolves with the reply type that ended it (ACK or an error). */
async function go(c: RawClient, name: string): Promise<number> {
  c.raw(encodeOption(Opt.GO, encodeInfoRequestData(name)));
  for (;;) {
    const r = await optionReply(c);
    if (r.type === Rep.ACK || r.type >= 0x80000000) return r.type;
  }
}

t.test('STARTTLS, then GO and the data path over TLS; the bytes are the SDK’s', async (t) => {
  const { client, server } = await setup(t);
  t.equal(server.uri('vol'), `nbds://127.0.0.1:${portOf(server)}/vol`, 'the URI says TLS');
  const { c } = await upgrade(portOf(server));
  t.equal(await go(c, 'vol'), Rep.ACK, 'GO over TLS');
  const data = pattern(70_000, 7);
  c.send(Cmd.WRITE, 1000, data.length, 1n, data);
  t.same(await c.reply(), [1n, 0], 'WRITE over TLS');
  c.send(Cmd.READ, 1000, data.length, 2n);
  t.same(await c.reply(), [2n, 0]);
  t.ok((await c.read(data.length)).equals(data), 'READ over TLS returns it');
  t.ok((await sdkRead(client, 1000, data.length)).equals(data), 'and the SDK reads the same bytes');
  c.close();
});

t.test('a server that requires TLS: options before STARTTLS are refused, the connection stays usable', async (t) => {
  const { server } = await setup(t);
  const { c } = await plain(portOf(server));
  for (const opt of [Opt.LIST, Opt.STRUCTURED_REPLY, Opt.INFO, 99]) {
    c.raw(encodeOption(opt, opt === Opt.INFO ? encodeInfoRequestData('vol') : undefined));
    const r = await optionReply(c);
    t.equal(r.type, Rep.ERR_TLS_REQD, `option ${opt}: NBD_REP_ERR_TLS_REQD`);
    t.match(r.data.toString(), /requires TLS/);
  }
  t.equal(await go(c, 'vol'), Rep.ERR_TLS_REQD, 'GO too');
  c.raw(encodeOption(Opt.LIST, Buffer.alloc(70_000)));
  t.equal((await optionReply(c)).type, Rep.ERR_TLS_REQD, 'an option too large to read: TLS_REQD as well');
  c.raw(encodeOption(Opt.STARTTLS, Buffer.from('x')));
  t.equal((await optionReply(c)).type, Rep.ERR_INVALID, 'STARTTLS with data is invalid');
  c.raw(encodeOption(Opt.ABORT));
  t.equal((await optionReply(c)).type, Rep.ACK, 'ABORT is answered');
  await t.rejects(c.read(1), /closed/, 'and ends the connection');

  const e = await plain(portOf(server));
  e.c.raw(encodeOption(Opt.EXPORT_NAME, Buffer.from('vol')));
  await t.rejects(e.c.read(1), /closed/, 'EXPORT_NAME before TLS ends the connection (it has no error reply)');

  // Without fixed newstyle a client has no STARTTLS (options with replies): it is let go at once.
  const old = new RawClient(net.connect(portOf(server), '127.0.0.1'));
  await old.read(18);
  old.raw(encodeClientFlags(0));
  await t.rejects(old.read(1), /closed/, 'a client without fixed newstyle: closed after its flags');
});

/** Everything the server sends until it closes the connection. */
async function untilClosed(c: RawClient): Promise<Buffer> {
  const got: Buffer[] = [];
  for (;;) {
    try {
      got.push(Buffer.from(await c.read(1)));
    } catch {
      return Buffer.concat(got);
    }
  }
}

t.test('STARTTLS twice, bytes sent after STARTTLS, a client that is not TLS', async (t) => {
  const { server } = await setup(t);
  const port = portOf(server);
  const { c } = await upgrade(port);
  c.raw(encodeOption(Opt.STARTTLS));
  t.equal((await optionReply(c)).type, Rep.ERR_INVALID, 'STARTTLS over TLS is invalid');
  t.equal(await go(c, 'vol'), Rep.ACK, 'and the connection goes on');
  c.close();

  // An option sent right behind STARTTLS, before its reply, is not an option: if it
  // came in the same read, the server closes at once; if later, it is not a TLS
  // ClientHello and the handshake fails. Either way the GO is never answered.
  const early = await plain(port);
  early.c.raw(Buffer.concat([encodeOption(Opt.STARTTLS), encodeOption(Opt.GO, encodeInfoRequestData('vol'))]));
  const sent = await untilClosed(early.c);
  t.ok(sent.length === 0 || sent.length === 20, 'at most the STARTTLS reply, then closed');
  if (sent.length === 20) t.equal(sent.readUInt32BE(12), Rep.ACK, 'the STARTTLS reply');

  const garbage = await plain(port);
  garbage.c.raw(encodeOption(Opt.STARTTLS));
  t.equal((await optionReply(garbage.c)).type, Rep.ACK);
  garbage.c.raw(Buffer.from('this is not a TLS ClientHello\r\n\r\n'));
  t.equal((await untilClosed(garbage.c)).length, 0, 'a failed handshake closes the connection, nothing answered');

  // A client that goes away in the middle of its handshake.
  const gone = await plain(port);
  gone.c.raw(encodeOption(Opt.STARTTLS));
  t.equal((await optionReply(gone.c)).type, Rep.ACK);
  gone.c.close();
  while (server.connections > 0) await new Promise((r) => setImmediate(r));
  t.equal(server.connections, 0, 'its connection is torn down');

  const { c: after } = await upgrade(port);
  t.equal(await go(after, 'vol'), Rep.ACK, 'the server goes on serving');
  after.close();
});

t.test('with a CA: a client certificate it issued is required', async (t) => {
  const { client, server } = await setup(t, { ...SERVER, ca: CA });
  const port = portOf(server);
  // TLS 1.3: the client's handshake completes before the server checks its
  // certificate; the refusal is an alert or the close, and GO is never answered.
  const refused = /closed|alert|certificate|ECONNRESET/i;
  const cases: [string, { cert?: Buffer; key?: Buffer }][] = [
    ['no client certificate', {}],
    ['a certificate the CA did not issue', { cert: pem('stranger-cert.pem'), key: pem('stranger-key.pem') }],
    [
      'a certificate the CA issued for a server, not a client',
      { cert: pem('server-cert.pem'), key: pem('server-key.pem') },
    ],
  ];
  for (const [what, creds] of cases) {
    await t.rejects(
      (async () => {
        const { c } = await upgrade(port, creds);
        await go(c, 'vol');
      })(),
      refused,
      `${what}: refused`,
    );
  }
  const { c } = await upgrade(port, { cert: pem('client-cert.pem'), key: pem('client-key.pem') });
  t.equal(await go(c, 'vol'), Rep.ACK, 'the test client certificate is accepted');
  const data = pattern(4096, 3);
  c.send(Cmd.WRITE, 0, data.length, 9n, data);
  t.same(await c.reply(), [9n, 0]);
  t.ok((await sdkRead(client, 0, 4096)).equals(data));
  c.close();
});

t.test('optional TLS: plain and TLS clients served; nothing negotiated before STARTTLS survives it', async (t) => {
  const { server } = await setup(t, { ...SERVER, optional: true });
  const { c: p } = await plain(portOf(server));
  t.equal(await go(p, 'vol'), Rep.ACK, 'a plain GO');
  p.close();

  const conn = await plain(portOf(server));
  conn.c.raw(encodeOption(Opt.STRUCTURED_REPLY));
  t.equal((await optionReply(conn.c)).type, Rep.ACK, 'structured replies, in plain text');
  const { c } = await startTls(conn);
  c.raw(encodeOption(Opt.STRUCTURED_REPLY));
  t.equal((await optionReply(c)).type, Rep.ACK, 'over TLS, structured replies are negotiated afresh (not "already")');
  t.equal(await go(c, 'vol'), Rep.ACK, 'a GO after STARTTLS');
  c.close();
});

t.test('bad credentials fail at start with a typed error', async (t) => {
  const { client } = await withCluster(t);
  const listen = { host: '127.0.0.1', port: 0 };
  for (const [what, tlsOpts] of [
    ['not PEM', { key: Buffer.from('nope'), cert: pem('server-cert.pem') }],
    ['key of another certificate', { key: pem('client-key.pem'), cert: pem('server-cert.pem') }],
    ['no cert', { key: pem('server-key.pem') } as unknown as NbdTlsOptions],
  ] as const) {
    await t.rejects(startNbdServer({ client, exports: ['vol'], listen, tls: tlsOpts }), InvalidArgumentError, what);
  }
});

t.test(
  'nbdinfo over nbds://, with and without client certificates',
  { skip: !tools.nbdinfo && 'nbdinfo missing' },
  async (t) => {
    const { server } = await setup(t);
    const uri = `${server.uri('vol')}?tls-certificates=${DIR}`;
    const info = JSON.parse((await exec('nbdinfo', ['--json', uri], { timeout: 20_000 })).stdout) as {
      protocol: string;
      TLS: boolean;
      exports: { 'export-size': number }[];
    };
    t.equal(info.TLS, true, 'nbdinfo reports TLS');
    t.equal(info.exports[0]?.['export-size'], SIZE);
    t.match(
      await exec('nbdinfo', [server.uri('vol').replace('nbds://', 'nbd://')], { timeout: 20_000 }).then(
        () => 'it succeeded',
        (e: { stderr?: string }) => e.stderr,
      ),
      /opt_go/,
      'a plain nbd:// client is refused at NBD_OPT_GO by a server that requires TLS',
    );

    const strict = await setup(t, { ...SERVER, ca: CA });
    await exec('nbdinfo', [`${strict.server.uri('vol')}?tls-certificates=${DIR}`], { timeout: 20_000 });
    t.match(
      await exec('nbdinfo', [`${strict.server.uri('vol')}?tls-certificates=${caOnly}`], { timeout: 20_000 }).then(
        () => 'it succeeded',
        (e: { stderr?: string }) => e.stderr,
      ),
      /TLS|gnutls/,
      'without a client certificate nbdinfo is refused in the TLS handshake',
    );
  },
);

t.test(
  'qemu-io and qemu-img over TLS (tls-creds-x509), nbdcopy out; the SDK reads the same bytes',
  { skip: (!tools.qemuIo || !tools.qemuImg) && 'qemu-io / qemu-img missing' },
  async (t) => {
    const { client, server } = await setup(t, { ...SERVER, ca: CA });
    const port = portOf(server);
    const object = ['--object', `tls-creds-x509,id=tls0,dir=${DIR},endpoint=client`];
    const image = `driver=nbd,host=127.0.0.1,port=${port},export=vol,tls-creds=tls0`;
    // Unaligned, across the boundary of objects 0 and 1 (1 MiB objects).
    const off = MiB - 3000;
    await exec('qemu-io', [...object, '--image-opts', image, '-c', `write -P 0x5a ${off} 70000`], { timeout: 20_000 });
    const rd = await exec('qemu-io', [...object, '--image-opts', image, '-c', `read -P 0x5a ${off} 70000`], {
      timeout: 20_000,
    });
    t.match(rd.stdout, /read 70000\/70000 bytes/, 'qemu-io reads the pattern back');
    t.ok(
      (await sdkRead(client, off, 70000)).every((b) => b === 0x5a),
      'the SDK sees the pattern',
    );
    const info = await exec('qemu-img', ['info', ...object, '--image-opts', image], { timeout: 20_000 });
    t.match(info.stdout, new RegExp(`virtual size: 8 MiB \\(${SIZE} bytes\\)`));
    if (tools.nbdcopy) {
      const out = join(caOnly, 'copy.raw');
      await exec('nbdcopy', [`${server.uri('vol')}?tls-certificates=${DIR}`, out], { timeout: 30_000 });
      const copy = readFileSync(out);
      t.equal(copy.length, SIZE, 'nbdcopy copies the whole export over TLS');
      t.ok(copy.equals(await sdkRead(client, 0, SIZE)), 'byte for byte what the SDK reads');
      rmSync(out);
    }
  },
);
