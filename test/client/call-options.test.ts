// Per-call `signal` and `timeout` on SheepdogClient methods: the call
// rejects with the SDK's typed AbortError / TimeoutError and its requests are
// cancelled; a call without them is unaffected.
import t from 'tap';
import { Op } from '../../protocol/constants.js';
import { AbortError, TimeoutError } from '../../lib/errors.js';
import { MiB, withCluster } from '../helpers/cluster.js';

t.test('an aborted signal rejects at once with AbortError', async (t) => {
  const { client } = await withCluster(t);
  const ac = new AbortController();
  ac.abort();
  await t.rejects(client.listVdis({ signal: ac.signal }), AbortError);
  await t.rejects(client.createVdi('a', MiB, { signal: ac.signal }), AbortError);
  await t.rejects(client.snapshotVdi('a', 's', { signal: ac.signal }), AbortError);
  t.same(await client.listVdis(), [], 'nothing was created');
});

t.test('timeout: a call stuck on a stalled sheep fails with TimeoutError, its request cancelled', async (t) => {
  const { client, sheep } = await withCluster(t, {}, { requestTimeout: 60_000 });
  await client.createVdi('b', 4 * MiB);
  for (let i = 0; i < sheep.addresses.length; i++) sheep.inject(i, { kind: 'stall', opcode: Op.GET_VDI_INFO });
  const started = Date.now();
  const err = await client.getVdi('b', { timeout: 200 }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof TimeoutError, `TimeoutError (${String(err)})`);
  t.ok(Date.now() - started < 30_000, 'long before the pool timeout of 60 s');
  sheep.clearFaults();
  t.equal((await client.getVdi('b')).name, 'b', 'the client works afterwards');
});

t.test('abort during a call: the caller’s AbortError, with the signal’s reason as cause', async (t) => {
  const { client, sheep } = await withCluster(t, {}, { requestTimeout: 60_000 });
  for (let i = 0; i < sheep.addresses.length; i++) sheep.inject(i, { kind: 'stall', opcode: Op.READ_VDIS });
  const ac = new AbortController();
  const p = client.listVdis({ signal: ac.signal });
  ac.abort(new Error('user gave up'));
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof AbortError, String(err));
  t.equal(((err as Error).cause as Error | undefined)?.message, 'user gave up');
  sheep.clearFaults();
});
