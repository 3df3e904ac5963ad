// Pointed at something that is not a sheep (an HTTP server, a proxy that
// answers with its own banner or cuts the connection after a few bytes):
// "not a sheep (no valid reply header from HOST:PORT)", a SheepProtocolError
// with reason 'not-a-sheep', and no internal numbers (data_length, connection
// serials, pending counts) in the message.
import http from 'node:http';
import net from 'node:net';
import t, { type Test } from 'tap';
import { Flag, Op } from '../../protocol/constants.js';
import { objRequest, vdiRequest } from '../../protocol/header.js';
import { ProtocolError, SheepProtocolError } from '../../lib/errors.js';
import { Connection } from '../../lib/transport/connection.js';
import { SheepdogPool } from '../../lib/transport/pool.js';

t.setTimeout(60_000);

const read = (oid: bigint, len = 16) => objRequest(Op.READ_OBJ, { oid, dataLength: len });
const newVdi = () => vdiRequest(Op.NEW_VDI, { flags: Flag.CMD_WRITE, dataLength: 256, vdiSize: 1n << 30n });

async function listen(t: Test, server: net.Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return (server.address() as net.AddressInfo).port;
}

/** Node's own HTTP server: it answers our binary header with a 400 (47 bytes) and closes. */
async function httpServer(t: Test): Promise<number> {
  const s = http.createServer((_req, res) => res.end('hello'));
  return listen(t, s);
}

/** A peer that answers any bytes with `text` (longer than a header) and keeps the connection open. */
async function banner(t: Test, text: string): Promise<number> {
  const socks = new Set<net.Socket>();
  const s = net.createServer((c) => {
    socks.add(c);
    c.on('error', () => {});
    c.once('data', () => c.write(text));
  });
  t.teardown(() => {
    for (const c of socks) c.destroy();
  });
  return listen(t, s);
}

function checkNotASheep(t: Test, e: unknown, port: number, hint = ''): void {
  t.ok(e instanceof SheepProtocolError, 'a SheepProtocolError');
  t.ok(e instanceof ProtocolError);
  const pe = e as SheepProtocolError;
  t.equal(pe.reason, 'not-a-sheep');
  t.equal(pe.node, `127.0.0.1:${port}`);
  t.equal(pe.message, `not a sheep (no valid reply header from 127.0.0.1:${port}${hint})`);
  t.notMatch(pe.message, /data_length|exceeds|pending|connection \d/);
}

t.test('an HTTP server (answers 400 and closes): not a sheep', async (t) => {
  const port = await httpServer(t);
  const conn = await Connection.connect({ host: '127.0.0.1', port });
  t.teardown(() => conn.destroy());
  const e = await conn.request(read(1n)).catch((x: unknown) => x);
  checkNotASheep(t, e, port, '; it answered like an HTTP server');
});

t.test('a peer answering a long banner (a bogus data_length): not a sheep', async (t) => {
  const port = await banner(
    t,
    'HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nbad request',
  );
  const conn = await Connection.connect({ host: '127.0.0.1', port });
  t.teardown(() => conn.destroy());
  const e = await conn.request(read(1n)).catch((x: unknown) => x);
  checkNotASheep(t, e, port, '; it answered like an HTTP server');
  t.match(String(((e as Error).cause as Error)?.message), /exceeds the limit/, 'the decoder error is the cause');

  const port2 = await banner(t, 'SSH-2.0-OpenSSH_9.6 please go away, this is no sheep at all\r\n');
  const c2 = await Connection.connect({ host: '127.0.0.1', port: port2 });
  t.teardown(() => c2.destroy());
  checkNotASheep(t, await c2.request(read(1n)).catch((x: unknown) => x), port2);
});

t.test('through the pool: reads and non-repeatable requests get not-a-sheep', async (t) => {
  const port = await httpServer(t);
  const p = new SheepdogPool({ nodes: `127.0.0.1:${port}`, reconnectStrategy: 1 });
  t.teardown(() => p.destroy());
  checkNotASheep(t, await p.request(read(1n)).catch((x: unknown) => x), port, '; it answered like an HTTP server');
  const nv = await p.request(newVdi(), Buffer.alloc(256)).catch((x: unknown) => x);
  checkNotASheep(t, nv, port, '; it answered like an HTTP server');
});
