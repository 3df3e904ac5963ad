// Reply batching: the replies ready in one turn of the event loop go out as
// one socket write. Many replies in one batch arrive intact and matchable by
// cookie; a client that closes while a batch is being written leaves nothing
// held and the server serving others. Observed through server.stats.
import t from 'tap';
import { startNbdServer } from '../../lib/nbd/index.js';
import { Cmd } from '../../lib/nbd/protocol/index.js';
import { MiB, pattern, withCluster } from '../helpers/cluster.js';
import { RawClient } from './raw.js';

const N = 64;
const BS = 4096;

/** Until `cond()` holds (a turn of the event loop between looks; tap's timeout bounds it). */
async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setImmediate(r));
}

t.test('many replies in few writes: every one intact, matched by its cookie', async (t) => {
  const { client } = await withCluster(t);
  await client.createVdi('vol', 8 * MiB, { blockSizeShift: 20 });
  const data = pattern(N * BS, 41);
  const v = await client.openVdi('vol');
  await v.write(data, 0);
  await v.close();
  const server = await startNbdServer({ client, exports: ['vol'], listen: { host: '127.0.0.1', port: 0 } });
  t.teardown(() => server.close());
  const c = await RawClient.connect((server.address as { port: number }).port, 'vol');
  const before = server.stats.replyWrites;
  // N reads of distinct blocks, sent in one go; cookies say which block.
  for (let i = 0; i < N; i++) c.send(Cmd.READ, i * BS, BS, BigInt(1000 + i));
  const seen = new Map<number, Buffer>();
  for (let i = 0; i < N; i++) {
    const [cookie, err] = await c.reply();
    t.equal(err, 0);
    const block = Number(cookie) - 1000;
    t.ok(block >= 0 && block < N && !seen.has(block), `cookie ${cookie} is one sent, answered once`);
    seen.set(block, Buffer.from(await c.read(BS)));
  }
  let wrong = 0;
  for (const [block, got] of seen) if (!got.equals(data.subarray(block * BS, (block + 1) * BS))) wrong++;
  t.equal(seen.size, N, 'every read answered');
  t.equal(wrong, 0, 'every reply carries its own block');
  const writes = server.stats.replyWrites - before;
  t.ok(writes >= 1 && writes < N, `${N} replies went out in ${writes} socket writes`);

  // Writes, each of its own pattern, then read back through the SDK.
  const fresh = pattern(N * BS, 42);
  for (let i = 0; i < N; i++) c.send(Cmd.WRITE, i * BS, BS, BigInt(i + 1), fresh.subarray(i * BS, (i + 1) * BS));
  const acked = new Set<bigint>();
  for (let i = 0; i < N; i++) {
    const [cookie, err] = await c.reply();
    t.equal(err, 0);
    acked.add(cookie);
  }
  t.equal(acked.size, N, 'every write acknowledged once');
  const check = await client.openVdi('vol');
  t.ok((await check.read(0, N * BS)).equals(fresh), 'the SDK reads every acknowledged write');
  await check.close();
  t.equal(server.stats.inFlightRequests, 0);
  t.equal(server.stats.inFlightBytes, 0);
  c.close();
});

t.test('a client that closes while its replies are being written: nothing held, the server goes on', async (t) => {
  const { client } = await withCluster(t);
  await client.createVdi('vol', 64 * MiB, { blockSizeShift: 22 });
  const v = await client.openVdi('vol');
  await v.write(pattern(32 * MiB, 51), 0);
  await v.close();
  const server = await startNbdServer({ client, exports: ['vol'], listen: { host: '127.0.0.1', port: 0 } });
  t.teardown(() => server.close());
  const port = (server.address as { port: number }).port;
  const a = await RawClient.connect(port, 'vol');
  // 32 reads of 1 MiB: far more than the socket buffers hold, so the batch is
  // still being written when the client goes away without reading it.
  for (let i = 0; i < 32; i++) a.send(Cmd.READ, i * MiB, MiB, BigInt(i + 1));
  await until(() => server.stats.replyWrites > 0);
  a.close();
  await until(() => server.connections === 0);
  t.equal(server.stats.inFlightRequests, 0, 'no request left running');
  t.equal(server.stats.inFlightBytes, 0, 'no reply bytes held');
  // Another client is served as before.
  const b = await RawClient.connect(port, 'vol');
  b.send(Cmd.READ, 5 * MiB, BS, 7n);
  const [cookie, err] = await b.reply();
  t.same([cookie, err], [7n, 0]);
  t.ok((await b.read(BS)).equals(pattern(32 * MiB, 51).subarray(5 * MiB, 5 * MiB + BS)));
  b.close();
});
