// The NBD server's bounds: bytes in flight capped per connection and per
// server (the server stops reading the socket), close() draining requests
// that are running. Observed through server.stats, no sleeps.
import t from 'tap';
import { startNbdServer } from '../../lib/nbd/index.js';
import { Cmd } from '../../lib/nbd/protocol/index.js';
import { MiB, pattern, withCluster } from '../helpers/cluster.js';
import { RawClient } from './raw.js';

const W = 128 * 1024; // one WRITE's payload
const N = 32; // writes sent at once: 4 MiB
const COST = W + 64; // what one WRITE holds while in flight

/** Send N writes of W bytes (one socket write), covering [base, base + N*W). */
function sendWrites(c: RawClient, base: number, data: Buffer, cookie0: number): void {
  for (let i = 0; i < N; i++) {
    c.send(Cmd.WRITE, base + i * W, W, BigInt(cookie0 + i), data.subarray(i * W, (i + 1) * W));
  }
}

t.test('the bytes-in-flight cap per connection: the server stops reading, then goes on', async (t) => {
  const { client } = await withCluster(t);
  await client.createVdi('vol', 8 * MiB, { blockSizeShift: 20 });
  const cap = 256 * 1024;
  const server = await startNbdServer({
    client,
    exports: ['vol'],
    listen: { host: '127.0.0.1', port: 0 },
    maxInFlightBytes: cap,
  });
  t.teardown(() => server.close());
  const c = await RawClient.connect((server.address as { port: number }).port, 'vol');
  const data = pattern(N * W, 11);
  sendWrites(c, 0, data, 1);
  const seen = new Set<bigint>();
  for (let i = 0; i < N; i++) {
    const [cookie, err] = await c.reply();
    t.equal(err, 0);
    seen.add(cookie);
  }
  t.equal(seen.size, N, 'every write answered');
  const st = server.stats;
  t.ok(st.pauses > 0, `the connection stopped reading its socket (${st.pauses} pauses)`);
  t.ok(st.peakInFlightBytes <= cap + COST, `peak in flight ${st.peakInFlightBytes} <= cap + one write`);
  t.ok(st.peakInFlightBytes >= cap, 'the cap was reached');
  t.equal(st.inFlightBytes, 0, 'nothing held afterwards');
  t.equal(st.requests, N);
  const v = await client.openVdi('vol');
  t.ok((await v.read(0, N * W)).equals(data), 'the SDK reads every write');
  await v.close();
  c.close();
});

t.test('the bytes-in-flight cap per server, over two connections', async (t) => {
  const { client } = await withCluster(t);
  await client.createVdi('vol', 16 * MiB, { blockSizeShift: 20 });
  const cap = 384 * 1024;
  const server = await startNbdServer({
    client,
    exports: ['vol'],
    listen: { host: '127.0.0.1', port: 0 },
    maxServerInFlightBytes: cap,
  });
  t.teardown(() => server.close());
  const port = (server.address as { port: number }).port;
  const [a, b] = await Promise.all([RawClient.connect(port, 'vol'), RawClient.connect(port, 'vol')]);
  const da = pattern(N * W, 21);
  const db = pattern(N * W, 22);
  sendWrites(a, 0, da, 1);
  sendWrites(b, 8 * MiB, db, 1);
  for (const c of [a, b]) for (let i = 0; i < N; i++) t.equal((await c.reply())[1], 0);
  const st = server.stats;
  t.ok(st.pauses > 0, `connections stopped reading (${st.pauses} pauses)`);
  // A connection with nothing in flight may always start one request (no
  // connection starves): the server cap is exceeded by at most one per connection.
  t.ok(st.peakInFlightBytes <= cap + 2 * COST, `peak ${st.peakInFlightBytes} <= the server cap + one write each`);
  const v = await client.openVdi('vol');
  t.ok((await v.read(0, N * W)).equals(da));
  t.ok((await v.read(8 * MiB, N * W)).equals(db));
  await v.close();
  a.close();
  b.close();
});

t.test('close() with requests running: each is answered, then the connection closes', async (t) => {
  const { client } = await withCluster(t);
  await client.createVdi('vol', 8 * MiB, { blockSizeShift: 20 });
  const server = await startNbdServer({ client, exports: ['vol'], listen: { host: '127.0.0.1', port: 0 } });
  const c = await RawClient.connect((server.address as { port: number }).port, 'vol');
  const data = pattern(N * W, 31);
  sendWrites(c, 0, data, 1);
  const busy = (): boolean => server.stats.inFlightRequests >= 4 || server.stats.requests === N;
  while (!busy()) await new Promise((r) => setImmediate(r));
  const running = server.stats.inFlightRequests;
  const accepted = server.stats.requests;
  const closed = server.close();
  t.ok(running > 0, `close() called with ${running} requests running`);
  const answered: bigint[] = [];
  for (let i = 0; i < accepted; i++) {
    const [cookie, err] = await c.reply();
    t.equal(err, 0, `cookie ${cookie} answered OK`);
    answered.push(cookie);
  }
  await closed;
  await t.rejects(c.read(1), /closed/, 'then the connection is closed');
  t.equal(server.connections, 0);
  t.equal(server.stats.inFlightRequests, 0, 'nothing left running');
  t.same(
    answered.map(Number).sort((x, y) => x - y),
    Array.from({ length: accepted }, (_, i) => i + 1),
    'every accepted request answered, in any order',
  );
  // What was answered landed; what was never read was not acknowledged.
  const v = await client.openVdi('vol');
  for (const cookie of answered) {
    const i = Number(cookie) - 1;
    t.ok((await v.read(i * W, W)).equals(data.subarray(i * W, (i + 1) * W)), `write ${cookie} is in the volume`);
  }
  await v.close();
});
