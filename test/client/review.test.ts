// Review regressions: each test failed before the fix it names.
import t from 'tap';
import { SheepdogClient } from '../../lib/client/client.js';
import type { Transport } from '../../lib/transport/types.js';
import type { Request } from '../../protocol/header.js';
import { Op, Result } from '../../protocol/constants.js';
import { MiB, pattern, withCluster } from '../helpers/cluster.js';

t.test('a locked handle releases the vid it locked, even after a snapshot moved it', async (t) => {
  const { client } = await withCluster(t, { lock: true });
  await client.createVdi('vol', 8 * MiB);
  const v = await client.openVdi('vol', { lock: true });
  const locked = v.vid;
  await v.write(Buffer.from('before'), 0);
  await client.snapshotVdi('vol', 's1');
  await v.write(Buffer.from('after'), 0); // READONLY: the handle moves to the new working vid
  t.not(v.vid, locked, 'the handle follows the working VDI');
  await v.close();
  t.same(await client.listLocks(), [], 'no lock is left behind');
});

t.test('a write whose index update failed is not later acknowledged without the index', async (t) => {
  const { client, sheep } = await withCluster(t);
  await client.createVdi('p', 8 * MiB);
  const v = await client.openVdi('p');
  // The first WRITE_OBJ each node sees fails: the only one is the inode update.
  const faults = sheep.addresses.map((_, i) =>
    sheep.inject(i, { kind: 'result', result: Result.EIO, opcode: Op.WRITE_OBJ, times: 1 }),
  );
  await t.rejects(v.write(Buffer.from('lost?'), 0), 'the index update failed');
  for (const f of faults) f.remove();
  const d = pattern(4096, 3);
  await v.write(d, 100); // same object
  await v.close();
  const r = await client.openVdi('p');
  t.ok((await r.read(100, 4096)).equals(d), 'an acknowledged write is in the VDI after reopening');
  await r.close();
});

/** A transport that holds requests matching `hold` until `release()`; the rest pass through. */
function gated(inner: Transport, hold: (req: Request) => boolean) {
  const held: (() => void)[] = [];
  let arrived: () => void = () => {};
  let holding = true;
  const transport: Transport = {
    get nodes() {
      return inner.nodes;
    },
    async request(req, body, opts) {
      if (holding && hold(req)) {
        await new Promise<void>((r) => {
          held.push(r);
          arrived();
        });
      }
      return inner.request(req, body, opts);
    },
    close: async () => {},
    destroy: () => {},
  };
  return {
    transport,
    /** Resolves once a request is being held. */
    waitHeld: () =>
      held.length > 0
        ? Promise.resolve()
        : new Promise<void>((r) => {
            arrived = r;
          }),
    release() {
      holding = false;
      for (const r of held.splice(0)) r();
    },
  };
}

const isInodeWrite = (req: Request): boolean =>
  req.kind === 'obj' && req.opcode === Op.WRITE_OBJ && (req.oid & (1n << 63n)) !== 0n;

t.test('refresh while an allocating write awaits its index update keeps the allocation', async (t) => {
  const { client } = await withCluster(t);
  await client.createVdi('r', 8 * MiB);
  const g = gated(client.transport, isInodeWrite);
  const c2 = new SheepdogClient({ transport: g.transport });
  const v = await c2.openVdi('r');
  const a = pattern(4096, 1);
  const wa = v.write(a, 0); // creates object 0; its index update is held
  await g.waitHeld();
  const refreshed = v.refresh(); // reads the inode before the index update lands
  // The refresh's reads are not held: let it finish, then the index update.
  await refreshed;
  g.release();
  await wa;
  const b = pattern(4096, 2);
  await v.write(b, 8192); // same object: must not be created again over `a`
  await v.close();
  const r = await client.openVdi('r');
  t.ok((await r.read(0, 4096)).equals(a), 'the first acknowledged write survives');
  t.ok((await r.read(8192, 4096)).equals(b), 'the second too');
  await r.close();
});

t.test('hyper volume: concurrent allocating writes whose index updates land out of order lose nothing', async (t) => {
  const { client } = await withCluster(t);
  await client.createVdi('h', 64 * MiB, { hyper: true });
  const held: { release: () => Promise<void> }[] = [];
  let creates = 0;
  let bothCreated: () => void = () => {};
  const created = new Promise<void>((r) => {
    bothCreated = r;
  });
  let holding = true;
  const inner = client.transport;
  const transport: Transport = {
    get nodes() {
      return inner.nodes;
    },
    request(req, body, opts) {
      if (req.opcode === Op.CREATE_AND_WRITE_OBJ) {
        return inner.request(req, body, opts).finally(() => {
          creates++;
          if (creates === 2) bothCreated();
        });
      }
      if (!holding || !isInodeWrite(req)) return inner.request(req, body, opts);
      return new Promise((resolve, reject) => {
        held.push({
          release: () => {
            const p = inner.request(req, body, opts);
            p.then(resolve, reject);
            return p.then(() => {});
          },
        });
      });
    },
    close: async () => {},
    destroy: () => {},
  };
  const c2 = new SheepdogClient({ transport });
  const v = await c2.openVdi('h');
  const a = pattern(4096, 1);
  const b = pattern(4096, 2);
  const wa = v.write(a, 0); // object 0
  const wb = v.write(b, 8 * MiB); // object 2
  // Both creates answered and every continuation run (microtasks only): each
  // write has sent whatever index update it sends without waiting for another.
  await created;
  await new Promise((r) => setImmediate(r));
  holding = false;
  if (held.length >= 2) {
    // The later index update (built with both entries) lands first.
    await held[1]?.release();
    await held[0]?.release();
  } else {
    for (const h of held.splice(0)) await h.release();
  }
  await Promise.all([wa, wb]);
  await v.close();
  const r = await client.openVdi('h');
  t.ok((await r.read(0, 4096)).equals(a), 'object 0 is in the index');
  t.ok((await r.read(8 * MiB, 4096)).equals(b), 'object 2 is in the index');
  await r.close();
});
