// SheepdogDriver (the Nova/Cinder-style facade) against the embedded sheep.
import { readFileSync } from 'node:fs';
import net, { createServer } from 'node:net';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { Op, Result } from '../../protocol/constants.js';
import { SheepdogClient } from '../../lib/client/client.js';
import {
  ClusterNotReadyError,
  DRIVER_VERSION,
  ImageTooLargeError,
  SheepdogDriver,
  type SnapshotSpec,
} from '../../lib/driver/driver.js';
import {
  AbortError,
  ConnectionError,
  InvalidArgumentError,
  NoSpaceError,
  NoTagError,
  NoVdiError,
  SheepdogError,
  VdiExistsError,
} from '../../lib/errors.js';
import { SheepdogPool } from '../../lib/transport/pool.js';
import { nbdProtocol as nbd, startNbdServer } from '../../lib/nbd/index.js';
import { startMemorySheep } from '../../testing/index.js';
import type { Transport } from '../../lib/transport/types.js';
import { GiB, MiB, pattern, withCluster } from '../helpers/cluster.js';

interface Harness {
  driver: SheepdogDriver;
  client: SheepdogClient;
  sheep: Awaited<ReturnType<typeof withCluster>>['sheep'];
  warnings: string[];
}

async function setup(t: Test): Promise<Harness> {
  const { sheep, client } = await withCluster(t);
  const warnings: string[] = [];
  const driver = new SheepdogDriver({ client, logger: { warn: (m) => warnings.push(m) } });
  t.teardown(() => driver.close());
  return { driver, client, sheep, warnings };
}

async function readAll(client: SheepdogClient, name: string, offset = 0, length?: number): Promise<Buffer> {
  const v = await client.openVdi(name);
  try {
    return await v.read(offset, length ?? v.size - offset);
  } finally {
    await v.close();
  }
}

async function writeAt(client: SheepdogClient, name: string, data: Uint8Array, offset: number): Promise<void> {
  const v = await client.openVdi(name);
  try {
    await v.write(data, offset);
  } finally {
    await v.close();
  }
}

async function names(client: SheepdogClient): Promise<string[]> {
  return (await client.listVdis()).map((v) => (v.snapshot ? `${v.name}@${v.tag}` : v.name)).sort();
}

/** A port nothing listens on. */
async function deadPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

t.test('checkForSetupError', async (t) => {
  t.test('a running cluster passes and reports itself', async (t) => {
    const { driver } = await setup(t);
    const info = await driver.checkForSetupError();
    t.equal(info.status, 'running');
    t.equal(info.nodes.length, 3);
    t.equal(info.copies, 2);
  });

  t.test('an unformatted cluster is a ClusterNotReadyError (unformatted)', async (t) => {
    const sheep = await startMemorySheep({ nodes: 1, unformatted: true });
    const driver = new SheepdogDriver({ nodes: [...sheep.addresses] });
    t.teardown(async () => {
      await driver.close();
      await sheep.close();
    });
    const e = await driver.checkForSetupError().catch((x: unknown) => x);
    t.ok(e instanceof ClusterNotReadyError, 'typed');
    t.equal((e as ClusterNotReadyError).reason, 'unformatted');
    t.equal((e as ClusterNotReadyError).code, 'SHEEPDOG_ERR_CLUSTER_NOT_READY');
    t.ok(e instanceof SheepdogError, 'a SheepdogError');
  });

  t.test('an unreachable cluster is a ClusterNotReadyError (unreachable) naming the nodes', async (t) => {
    const port = await deadPort();
    const driver = new SheepdogDriver({ nodes: [`127.0.0.1:${port}`], reconnectStrategy: false, connectTimeout: 2000 });
    t.teardown(() => driver.close());
    const e = await driver.checkForSetupError().catch((x: unknown) => x);
    t.ok(e instanceof ClusterNotReadyError);
    t.equal((e as ClusterNotReadyError).reason, 'unreachable');
    t.match((e as Error).message, `127.0.0.1:${port}`);
    t.ok((e as Error).cause, 'the connection error is the cause');
  });

  t.test('with the default options, a refusing cluster is reported unreachable at once', async (t) => {
    const ports = [await deadPort(), await deadPort()];
    const nodes = ports.map((p) => `127.0.0.1:${p}`);
    const driver = new SheepdogDriver({ nodes }); // default requestTimeout (30 s), reconnects on
    t.teardown(() => driver.close());
    const t0 = performance.now();
    const e = await driver.checkForSetupError().catch((x: unknown) => x);
    const took = performance.now() - t0;
    t.ok(e instanceof ClusterNotReadyError);
    t.equal((e as ClusterNotReadyError).reason, 'unreachable');
    t.ok(took < 5000, `reported within seconds (${Math.round(took)} ms), not after the request timeout`);
    const cause = (e as Error).cause;
    t.ok(cause instanceof ConnectionError, 'cause: the ConnectionError');
    for (const n of nodes) t.match((e as Error).message, `${n}: connection refused (ECONNREFUSED)`);
  });
});

t.test('createVolume: GiB, bytes, options, validation, exists', async (t) => {
  const { driver, client, sheep } = await setup(t);
  const v = await driver.createVolume({ name: 'volume-1', size: 1 });
  t.equal(v.size, GiB, 'size is in GiB, as Cinder gives it');
  t.equal(v.used, 0, 'thin');
  t.equal((await driver.createVolume({ name: 'volume-2', sizeBytes: 12 * MiB })).size, 12 * MiB, 'sizeBytes');
  t.equal(
    (await driver.createVolume({ name: 'volume-3', size: 0.5, sizeBytes: GiB / 2 })).size,
    GiB / 2,
    'both, agreeing',
  );
  const thick = await driver.createVolume({
    name: 'thick',
    sizeBytes: 8 * MiB,
    preallocate: true,
    copies: 3,
    blockSizeShift: 20,
  });
  t.equal(thick.used, 8 * MiB, 'preallocated');
  t.equal(thick.copies, 3);
  t.equal(thick.blockSizeShift, 20);
  await t.rejects(driver.createVolume({ name: 'volume-1', size: 1 }), VdiExistsError, 'name taken');

  const before = sheep.stats.requests;
  await t.rejects(driver.createVolume({ name: 'x', size: 1, sizeBytes: 5 }), InvalidArgumentError, 'disagreeing sizes');
  await t.rejects(driver.createVolume({ name: 'x' }), InvalidArgumentError, 'no size');
  await t.rejects(driver.createVolume({ name: 'x', size: 0 }), InvalidArgumentError, 'size 0');
  await t.rejects(driver.createVolume({ name: 'x', size: -1 }), InvalidArgumentError, 'negative size');
  await t.rejects(driver.createVolume({ name: 'x', size: Number.NaN }), InvalidArgumentError, 'NaN size');
  await t.rejects(driver.createVolume({ name: 'x', size: 1e-12 }), InvalidArgumentError, 'not whole bytes');
  await t.rejects(driver.createVolume({ name: '', size: 1 }), InvalidArgumentError, 'empty name');
  await t.rejects(driver.createVolume({ name: 'n'.repeat(256), size: 1 }), InvalidArgumentError, 'long name');
  await t.rejects(driver.createVolume(null as never), InvalidArgumentError, 'not an object');
  await t.rejects(driver.createVolume({ name: 42 } as never), InvalidArgumentError, 'name not a string');
  t.equal(sheep.stats.requests, before, 'invalid input never reaches the cluster');

  const withDefaults = new SheepdogDriver({ client, copies: 1, blockSizeShift: 21 });
  const d = await withDefaults.createVolume({ name: 'defaults', size: 1 });
  t.equal(d.copies, 1, 'driver default copies');
  t.equal(d.blockSizeShift, 21, 'driver default block size shift');
  await withDefaults.close();
  t.ok((await client.listVdis()).length > 0, 'closing a driver leaves a client it was given open');
});

t.test('deleteVolume is idempotent and reports a missing volume', async (t) => {
  const { driver, client, warnings } = await setup(t);
  await driver.createVolume({ name: 'v', size: 1 });
  await writeAt(client, 'v', pattern(MiB, 1), 0);
  t.same(await driver.deleteVolume({ name: 'v' }), { deleted: true });
  await t.rejects(client.getVdi('v'), NoVdiError);
  t.same(await driver.deleteVolume({ name: 'v' }), { deleted: false }, 'missing: resolves');
  t.same(await driver.deleteVolume({ name: 'never-was' }), { deleted: false });
  t.equal(warnings.length, 2, 'each reported as a warning');
  t.match(warnings[0], /v: volume not found/);
  await t.rejects(driver.deleteVolume({ name: '' }), InvalidArgumentError);
});

t.test('exports, discovery and connections', async (t) => {
  const { driver, sheep } = await setup(t);
  await driver.createVolume({ name: 'vol', size: 1 });
  const vol = { name: 'vol' };
  await driver.ensureExport({}, vol);
  await driver.createExport({}, vol, { host: 'h' });
  await t.rejects(driver.ensureExport({}, { name: 'nope' }), NoVdiError, 'ensureExport: missing volume');
  await t.rejects(driver.createExport({}, { name: 'nope' }), NoVdiError);

  const before = sheep.stats.requests;
  await driver.removeExport({}, vol);
  await driver.undiscoverVolume(vol);
  await driver.terminateConnection(vol, {});
  t.equal(sheep.stats.requests, before, 'no-ops send nothing');
  await t.rejects(driver.removeExport({}, { name: '' }), InvalidArgumentError, 'but validate');
  await t.rejects(driver.undiscoverVolume({} as never), InvalidArgumentError);
  await t.rejects(driver.terminateConnection({ name: 'a\0b' }, {}), InvalidArgumentError);

  const hosts = sheep.addresses.map((a) => a.slice(0, a.lastIndexOf(':')));
  const ports = sheep.addresses.map((a) => a.slice(a.lastIndexOf(':') + 1));
  const loc = await driver.discoverVolume(vol);
  t.equal(loc.path, 'sheepdog:vol', 'the locator QEMU-era clients used');
  t.equal(loc.uri, `sheepdog://${sheep.addresses[0]}/vol`);
  t.same(loc.hosts, hosts);
  t.same(loc.ports, ports);
  await t.rejects(driver.discoverVolume({ name: 'nope' }), NoVdiError);

  const ci = await driver.initializeConnection(vol, { host: 'compute-1', initiator: 'x' });
  t.same(ci, { driverVolumeType: 'sheepdog', data: { name: 'vol', hosts, ports } });
  await t.rejects(driver.initializeConnection({ name: 'nope' }, {}), NoVdiError);
});

t.test('snapshots: create, delete (idempotent), errors', async (t) => {
  const { driver, client, warnings } = await setup(t);
  await driver.createVolume({ name: 'vol', size: 1 });
  const snap: SnapshotSpec = { volumeName: 'vol', name: 'snap-1' };
  const r = await driver.createSnapshot(snap);
  t.equal(r.tag, 'snap-1');
  t.same(await names(client), ['vol', 'vol@snap-1']);
  await t.rejects(driver.createSnapshot(snap), VdiExistsError, 'tag taken');
  await t.rejects(driver.createSnapshot({ volumeName: 'nope', name: 's' }), NoVdiError, 'missing volume');
  await t.rejects(driver.createSnapshot({ volumeName: 'vol', name: '' }), InvalidArgumentError);
  await t.rejects(driver.createSnapshot({ volumeName: 'vol' } as never), InvalidArgumentError);
  t.same(await driver.deleteSnapshot(snap), { deleted: true });
  t.same(await names(client), ['vol']);
  t.same(await driver.deleteSnapshot(snap), { deleted: false }, 'missing snapshot: resolves');
  t.same(
    await driver.deleteSnapshot({ volumeName: 'nope', name: 'x' }),
    { deleted: false },
    'missing volume: resolves',
  );
  t.equal(warnings.length, 2);
});

t.test('createVolumeFromSnapshot: copy-on-write clone, grown to the requested size', async (t) => {
  const { driver, client } = await setup(t);
  await driver.createVolume({ name: 'src', sizeBytes: 64 * MiB });
  const data = pattern(6 * MiB, 7);
  await writeAt(client, 'src', data, MiB);
  const snap = { volumeName: 'src', name: 'base' };
  await driver.createSnapshot(snap);
  await writeAt(client, 'src', Buffer.alloc(MiB, 9), MiB); // after the snapshot

  const same = await driver.createVolumeFromSnapshot({ name: 'c1' }, snap);
  t.equal(same.size, 64 * MiB, 'no size: the snapshot\u2019s');
  t.equal(same.used, 0, 'shares everything');
  t.ok((await readAll(client, 'c1', MiB, data.length)).equals(data), 'clone has the snapshot\u2019s data');

  const big = await driver.createVolumeFromSnapshot({ name: 'c2', size: 1 }, snap);
  t.equal(big.size, GiB, 'grown to the volume size');
  t.ok((await readAll(client, 'c2', MiB, data.length)).equals(data));
  t.ok((await readAll(client, 'c2', GiB - MiB, MiB)).equals(Buffer.alloc(MiB)), 'the new tail reads zeros');

  await t.rejects(
    driver.createVolumeFromSnapshot({ name: 'c3', sizeBytes: MiB }, snap),
    InvalidArgumentError,
    'smaller',
  );
  await t.rejects(driver.createVolumeFromSnapshot({ name: 'c3' }, { volumeName: 'src', name: 'nope' }), NoTagError);
  await t.rejects(driver.createVolumeFromSnapshot({ name: 'c3' }, { volumeName: 'nope', name: 'base' }), NoVdiError);
  await t.rejects(driver.createVolumeFromSnapshot({ name: 'c1' }, snap), VdiExistsError, 'target exists');
  t.notOk((await names(client)).includes('c3'), 'nothing created by the failures');
});

t.test('createClonedVolume: temporary snapshot, deleted afterwards; the clone keeps its data', async (t) => {
  const { driver, client } = await setup(t);
  await driver.createVolume({ name: 'src', sizeBytes: 32 * MiB });
  const data = pattern(10 * MiB, 3);
  await writeAt(client, 'src', data, 0);
  const c = await driver.createClonedVolume({ name: 'dst', sizeBytes: 48 * MiB }, { name: 'src' });
  t.equal(c.size, 48 * MiB);
  t.same(await names(client), ['dst', 'src'], 'the temporary snapshot is gone');
  t.ok(
    (await readAll(client, 'dst', 0, data.length)).equals(data),
    'the clone reads the source\u2019s data after the temp snapshot was deleted',
  );
  await writeAt(client, 'src', Buffer.alloc(MiB, 1), 0);
  t.ok(
    (await readAll(client, 'dst', 0, MiB)).equals(data.subarray(0, MiB)),
    'independent of later writes to the source',
  );
  await writeAt(client, 'dst', Buffer.alloc(MiB, 2), 0);
  t.ok((await readAll(client, 'src', 0, MiB)).equals(Buffer.alloc(MiB, 1)), 'and the source of writes to the clone');

  await t.rejects(driver.createClonedVolume({ name: 'x' }, { name: 'nope' }), NoVdiError, 'missing source');
  await t.rejects(driver.createClonedVolume({ name: 'src' }, { name: 'src' }), InvalidArgumentError, 'onto itself');
  await t.rejects(
    driver.createClonedVolume({ name: 'x', sizeBytes: MiB }, { name: 'src' }),
    InvalidArgumentError,
    'smaller',
  );
  t.same(await names(client), ['dst', 'src']);
});

t.test('createClonedVolume cleans up its temporary snapshot when the clone fails', async (t) => {
  t.test('target exists (NEW_VDI answers VDI_EXIST)', async (t) => {
    const { driver, client } = await setup(t);
    await driver.createVolume({ name: 'src', sizeBytes: 8 * MiB });
    await driver.createVolume({ name: 'taken', sizeBytes: 8 * MiB });
    await t.rejects(driver.createClonedVolume({ name: 'taken' }, { name: 'src' }), VdiExistsError);
    t.same(await names(client), ['src', 'taken'], 'no temporary snapshot left');
  });

  t.test('NEW_VDI of the clone fails (fault injected on the sheep)', async (t) => {
    const { sheep } = await withCluster(t);
    const pool = new SheepdogPool({ nodes: [...sheep.addresses] });
    let armed = true;
    // Arm the fault on every node just as the clone's NEW_VDI (base set, snapid 0) goes out.
    const transport: Transport = {
      get nodes() {
        return pool.nodes;
      },
      request(req, body, opts) {
        if (armed && req.kind === 'vdi' && req.opcode === Op.NEW_VDI && req.baseVdiId !== 0 && req.snapid === 0) {
          armed = false;
          const faults = sheep.addresses.map((_, i) =>
            sheep.inject(i, { kind: 'result', opcode: Op.NEW_VDI, result: Result.NO_SPACE, times: 1 }),
          );
          return pool.request(req, body, opts).finally(() => {
            for (const f of faults) f.remove();
          });
        }
        return pool.request(req, body, opts);
      },
      close: () => pool.close(),
      destroy: (e) => pool.destroy(e),
    };
    const client = new SheepdogClient({ transport });
    const driver = new SheepdogDriver({ client });
    t.teardown(() => pool.close());
    await driver.createVolume({ name: 'src', sizeBytes: 8 * MiB });
    await writeAt(client, 'src', pattern(MiB, 5), 0);
    await t.rejects(driver.createClonedVolume({ name: 'dst' }, { name: 'src' }), NoSpaceError);
    t.notOk(armed, 'the fault was armed');
    t.same(await names(client), ['src'], 'no temporary snapshot, no clone');
    t.ok((await readAll(client, 'src', 0, MiB)).equals(pattern(MiB, 5)), 'the source is intact');
    // And it works once the fault is gone.
    await driver.createClonedVolume({ name: 'dst' }, { name: 'src' });
    t.same(await names(client), ['dst', 'src']);
  });

  t.test('a leftover temporary snapshot of a crashed attempt does not block a new one', async (t) => {
    const { driver, client } = await setup(t);
    await driver.createVolume({ name: 'src', sizeBytes: 8 * MiB });
    await client.snapshotVdi('src', 'tmp-snap-src-dst');
    await driver.createClonedVolume({ name: 'dst' }, { name: 'src' });
    t.same(await names(client), ['dst', 'src']);
  });
});

t.test('revertToSnapshot rolls back, keeps a grown size, refuses foreign snapshots', async (t) => {
  const { driver, client } = await setup(t);
  await driver.createVolume({ name: 'vol', sizeBytes: 16 * MiB });
  const before = pattern(4 * MiB, 11);
  await writeAt(client, 'vol', before, 0);
  const snap = { volumeName: 'vol', name: 'good' };
  await driver.createSnapshot(snap);
  await writeAt(client, 'vol', pattern(4 * MiB, 12), 0);
  await driver.extendVolume({ name: 'vol' }, 1);

  const r = await driver.revertToSnapshot({}, { name: 'vol', size: 1 }, snap);
  t.equal(r.size, GiB, 'keeps the size it grew to');
  t.ok((await readAll(client, 'vol', 0, before.length)).equals(before), 'data as at the snapshot');
  t.same(await names(client), ['vol', 'vol@good'], 'the snapshot stays');

  await t.rejects(
    driver.revertToSnapshot({}, { name: 'other' }, snap),
    InvalidArgumentError,
    'snapshot of another volume',
  );
  await t.rejects(driver.revertToSnapshot({}, { name: 'vol' }, { volumeName: 'vol', name: 'nope' }), NoTagError);
  t.same(await names(client), ['vol', 'vol@good'], 'a failed revert leaves the volume alone');
  await t.rejects(driver.revertToSnapshot({}, { name: 'nope' }, { volumeName: 'nope', name: 'good' }), NoVdiError);
});

t.test('extendVolume', async (t) => {
  const { driver } = await setup(t);
  await driver.createVolume({ name: 'vol', size: 1 });
  t.equal((await driver.extendVolume({ name: 'vol' }, 3)).size, 3 * GiB);
  await t.rejects(driver.extendVolume({ name: 'vol' }, 2), InvalidArgumentError, 'shrinking refused');
  await t.rejects(driver.extendVolume({ name: 'vol' }, 0), InvalidArgumentError);
  await t.rejects(driver.extendVolume({ name: 'vol' }, Number.POSITIVE_INFINITY), InvalidArgumentError);
  await t.rejects(driver.extendVolume({ name: 'nope' }, 4), NoVdiError);
});

/** `total` bytes in 1 MiB chunks; with `zeroObjects`, every second 4 MiB object is all zeros. */
function chunks(total: number, seed: number, zeroObjects = false): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i * MiB < total; i++) {
    const n = Math.min(MiB, total - i * MiB);
    out.push(zeroObjects && Math.floor(i / 4) % 2 === 1 ? Buffer.alloc(n) : pattern(n, seed + i));
  }
  return out;
}

function sink(): { stream: Writable; data: () => Buffer } {
  const parts: Buffer[] = [];
  return {
    stream: new Writable({
      write(c: Buffer, _e, cb) {
        parts.push(c);
        cb();
      },
    }),
    data: () => Buffer.concat(parts),
  };
}

t.test('copyImageToVolume / copyVolumeToImage round trip, sparse', async (t) => {
  const { driver, client } = await setup(t);
  const image = chunks(20 * MiB, 100, true); // objects 1 and 3 all zero
  await driver.createVolume({ name: 'vol', sizeBytes: 32 * MiB });
  await writeAt(client, 'vol', Buffer.alloc(MiB, 0xee), 30 * MiB); // old data past the image
  const seen: number[] = [];
  const r = await driver.copyImageToVolume({ name: 'vol' }, Readable.from(image), { onProgress: (n) => seen.push(n) });
  t.same(r, { bytes: 20 * MiB, sizeBytes: 32 * MiB });
  t.equal(seen.at(-1), 20 * MiB, 'progress reaches the end');
  const info = await client.getVdi('vol');
  t.equal(info.size, 32 * MiB, 'the volume keeps its size');
  t.equal(info.used, 12 * MiB, 'all-zero objects are not stored');
  t.ok(
    (await readAll(client, 'vol', 30 * MiB, MiB)).equals(Buffer.alloc(MiB)),
    'the old volume was replaced, not overwritten',
  );

  const out = sink();
  const back = await driver.copyVolumeToImage({ name: 'vol' }, out.stream);
  t.same(back, { bytes: 32 * MiB, sizeBytes: 32 * MiB });
  const bytes = out.data();
  t.ok(bytes.subarray(0, 20 * MiB).equals(Buffer.concat(image)), 'image round trip');
  t.ok(bytes.subarray(20 * MiB).equals(Buffer.alloc(12 * MiB)), 'the rest is zeros');
  await t.rejects(driver.copyVolumeToImage({ name: 'nope' }, sink().stream), NoVdiError);
  await t.rejects(driver.copyVolumeToImage({ name: 'vol' }, {} as never), InvalidArgumentError);

  // A new volume, sized in GiB; and one sized from imageSize; an async iterable source.
  await driver.copyImageToVolume({ name: 'fresh', size: 1 }, Readable.from(image));
  t.equal((await client.getVdi('fresh')).size, GiB);
  async function* gen(): AsyncGenerator<Uint8Array> {
    yield new Uint8Array(3 * MiB).fill(7);
  }
  await driver.copyImageToVolume({ name: 'sized' }, gen(), { imageSize: 3 * MiB });
  t.equal((await client.getVdi('sized')).size, 3 * MiB);
  t.ok((await readAll(client, 'sized')).equals(Buffer.alloc(3 * MiB, 7)));
});

t.test('copyImageToVolume refuses images that do not fit, and leaves no volume behind', async (t) => {
  const { driver, client } = await setup(t);
  await t.rejects(
    driver.copyImageToVolume({ name: 'small', sizeBytes: 4 * MiB }, Readable.from(chunks(8 * MiB, 1)), {
      imageSize: 8 * MiB,
    }),
    ImageTooLargeError,
    'known image size: refused before anything is created',
  );
  t.same(await names(client), []);
  const e = await driver
    .copyImageToVolume({ name: 'small', sizeBytes: 4 * MiB }, Readable.from(chunks(8 * MiB, 1)))
    .catch((x: unknown) => x);
  t.ok(e instanceof ImageTooLargeError, 'discovered while streaming');
  t.ok(e instanceof InvalidArgumentError, 'an InvalidArgumentError');
  t.equal((e as ImageTooLargeError).volumeSize, 4 * MiB);
  t.same(await names(client), [], 'the half-written volume was deleted');
  await t.rejects(
    driver.copyImageToVolume({ name: 'nosize' }, Readable.from(chunks(MiB, 1))),
    InvalidArgumentError,
    'no size',
  );
  await t.rejects(driver.copyImageToVolume({ name: 'x', size: 1 }, 'not a stream' as never), InvalidArgumentError);
  await t.rejects(
    driver.copyImageToVolume({ name: 'x', size: 1 }, Readable.from([]), { imageSize: -1 }),
    InvalidArgumentError,
  );
});

t.test('copyImageToVolume: a source that fails midway leaves no volume behind', async (t) => {
  const { driver, client } = await setup(t);
  async function* broken(): AsyncGenerator<Buffer> {
    yield pattern(2 * MiB, 1);
    yield pattern(2 * MiB, 2);
    throw new Error('glance went away');
  }
  const broke = await driver.copyImageToVolume({ name: 'vol', size: 1 }, broken()).catch((x: unknown) => x);
  t.ok(broke instanceof SheepdogError, 'a typed error');
  t.equal((broke as SheepdogError).code, 'SHEEPDOG_ERR_IMAGE_STREAM');
  t.match((broke as Error).message, /the image stream failed: glance went away/);
  t.equal(((broke as Error).cause as Error).message, 'glance went away', 'the stream’s error is the cause');
  t.same(await names(client), [], 'no volume');

  // Same when it replaced an existing volume (as the Cinder driver: the volume is deleted on failure).
  await driver.createVolume({ name: 'existing', size: 1 });
  await t.rejects(driver.copyImageToVolume({ name: 'existing' }, broken()), { code: 'SHEEPDOG_ERR_IMAGE_STREAM' });
  t.same(await names(client), []);

  const ac = new AbortController();
  const slow = new Readable({ read() {} });
  slow.push(pattern(MiB, 3));
  const p = driver.copyImageToVolume({ name: 'aborted', size: 1 }, slow, { signal: ac.signal });
  setImmediate(() => ac.abort(new Error('operator cancelled')));
  const ab = await p.catch((x: unknown) => x);
  t.ok(ab instanceof AbortError, "the SDK's typed AbortError, not Node's");
  t.equal((ab as AbortError).code, 'SHEEPDOG_ERR_ABORTED');
  t.equal(((ab as Error).cause as Error).message, 'operator cancelled', "cause: the signal's reason");
  t.same(await names(client), [], 'aborted copy cleaned up');

  // Aborted before the call: nothing is created.
  const pre = AbortSignal.abort();
  const e0 = await driver
    .copyImageToVolume({ name: 'never', size: 1 }, Readable.from([]), { signal: pre })
    .catch((x: unknown) => x);
  t.ok(e0 instanceof AbortError);
  t.same(await names(client), [], 'nothing created');
});

t.test('copyVolumeToImage aborted: the typed AbortError', async (t) => {
  const { driver } = await setup(t);
  await driver.createVolume({ name: 'src', sizeBytes: 64 * MiB });
  const ac = new AbortController();
  const slow = new Writable({
    highWaterMark: 1,
    write(_b, _e, cb) {
      ac.abort(); // abort on the first chunk; never acknowledge it
      void cb;
    },
  });
  const e = await driver.copyVolumeToImage({ name: 'src' }, slow, { signal: ac.signal }).catch((x: unknown) => x);
  t.ok(e instanceof AbortError, "the SDK's typed AbortError");
  t.equal((e as AbortError).code, 'SHEEPDOG_ERR_ABORTED');
  t.ok((e as Error).cause !== undefined);
  const e2 = await driver
    .copyVolumeToImage({ name: 'src' }, new Writable({ write: (_b, _e, cb) => cb() }), {
      signal: AbortSignal.abort(),
    })
    .catch((x: unknown) => x);
  t.ok(e2 instanceof AbortError, 'already aborted: AbortError before anything is read');
});

t.test('getVolumeStats', async (t) => {
  const { driver, client } = await setup(t);
  await driver.createVolume({ name: 'a', size: 2 });
  await driver.createVolume({ name: 'b', sizeBytes: 100 * MiB });
  await writeAt(client, 'b', pattern(8 * MiB, 1), 0);
  await driver.createSnapshot({ volumeName: 'b', name: 's' });
  const st = await driver.getVolumeStats();
  const caps = await client.nodeCapacity();
  const total = caps.reduce((s, c) => s + c.size, 0);
  t.equal(st.storageProtocol, 'sheepdog');
  t.equal(st.driverVersion, DRIVER_VERSION);
  t.equal(st.volumeBackendName, 'sheepdog');
  t.equal(st.vendorName, 'Open Source');
  t.equal(st.thinProvisioning, true);
  t.equal(st.thinProvisioningSupport, true);
  t.equal(st.totalCapacityBytes, total);
  t.ok(total > 0);
  t.ok(st.freeCapacityBytes <= st.totalCapacityBytes);
  t.equal(st.totalCapacityGb, Math.round((total / GiB) * 100) / 100);
  t.equal(st.provisionedCapacityBytes, 2 * GiB + 100 * MiB, 'working volumes only');
  t.equal(st.provisionedCapacityGb, Math.round(((2 * GiB + 100 * MiB) / GiB) * 100) / 100);
  t.equal(st.allocatedCapacityBytes, 8 * MiB);
  t.equal(st.volumes, 2);
  t.equal(st.snapshots, 1);
  t.equal(st.nodes, 3);
  t.equal(st.redundancy, '2');
  t.equal(st.reservedPercentage, 0);
  const named = new SheepdogDriver({ client, backendName: 'sheep-a' });
  t.equal((await named.getVolumeStats()).volumeBackendName, 'sheep-a');
});

t.test('construction, own client, close', async (t) => {
  const { sheep } = await withCluster(t);
  const driver = new SheepdogDriver({ nodes: [...sheep.addresses] });
  await driver.createVolume({ name: 'v', size: 1 });
  t.ok(driver.client instanceof SheepdogClient);
  await driver.close();
  await driver.close(); // idempotent
  await t.rejects(driver.createVolume({ name: 'w', size: 1 }), { code: 'SHEEPDOG_ERR_CLOSED' });
  await t.rejects(driver.getVolumeStats(), { code: 'SHEEPDOG_ERR_CLOSED' });
  t.throws(() => new SheepdogDriver({ client: {} as never }), InvalidArgumentError);
});

t.test('NBD exports: an owned server, started by createExport, closed by close()', async (t) => {
  const { client } = await withCluster(t);
  const driver = new SheepdogDriver({ client, nbd: { listen: { host: '127.0.0.1', port: 0 } } });
  t.teardown(() => driver.close());
  await driver.createVolume({ name: 'vol', sizeBytes: 4 * MiB });
  const vol = { name: 'vol' };
  t.match(await driver.initializeConnection(vol), { driverVolumeType: 'sheepdog' }, 'not exported yet: sheepdog');
  await t.rejects(driver.createExport({}, { name: 'nope' }), NoVdiError, 'a missing volume is not exported');
  const exp = await driver.createExport({}, vol, { host: 'compute-1' });
  if (exp === undefined || !('port' in exp)) throw new Error('expected a TCP export');
  t.match(exp, { host: '127.0.0.1', port: Number, exportName: 'vol', uri: `nbd://127.0.0.1:${exp.port}/vol` });
  t.not(exp.port, 0);
  t.same(await driver.ensureExport({}, vol), exp, 'ensureExport: the same export, idempotent');
  const ci = await driver.initializeConnection(vol, { host: 'compute-1' });
  t.same(ci, { driverVolumeType: 'nbd', data: exp });

  // The export works: a raw NBD handshake reaches the volume.
  const s = net.connect(exp.port, '127.0.0.1');
  const greeting = await readN(s, 18);
  t.equal(greeting.subarray(0, 8).toString(), 'NBDMAGIC');
  s.write(nbd.encodeClientFlags(nbd.ClientFlag.FIXED_NEWSTYLE | nbd.ClientFlag.NO_ZEROES));
  s.write(nbd.encodeOption(nbd.Opt.GO, nbd.encodeInfoRequestData('vol')));
  const first = await readN(s, 20);
  t.equal(first.readUInt32BE(12), nbd.Rep.INFO, 'GO on the export answers');
  s.destroy();

  await driver.removeExport({}, vol);
  t.match(await driver.initializeConnection(vol), { driverVolumeType: 'sheepdog' }, 'removed: sheepdog again');
  await driver.removeExport({}, vol); // no-op
  const again = await driver.createExport({}, vol);
  t.same(again, exp, 'exported again on the same server');
  await driver.close();
  await t.rejects(
    new Promise((resolve, reject) => {
      const c = net.connect(exp.port, '127.0.0.1', () => resolve(c));
      c.on('error', reject);
    }),
    /ECONNREFUSED/,
    'close() closed the server it started',
  );
});

t.test('NBD exports: a given server is used, never closed; removeExport drains connections', async (t) => {
  const { client } = await withCluster(t);
  const server = await startNbdServer({ client, exports: [], listen: { host: '127.0.0.1', port: 0 } });
  t.teardown(() => server.close());
  t.throws(
    () => new SheepdogDriver({ client, nbd: { server, listen: { port: 0 } } }),
    InvalidArgumentError,
    'server or listen',
  );
  const driver = new SheepdogDriver({ client, nbd: { server, host: 'storage-1.example' } });
  await driver.createVolume({ name: 'v1', sizeBytes: MiB });
  const exp = await driver.createExport({}, { name: 'v1' });
  const port = (server.address as { port: number }).port;
  t.same(exp, { host: 'storage-1.example', port, exportName: 'v1', uri: `nbd://storage-1.example:${port}/v1` });
  t.same(server.exports, ['v1'], 'added to the given server');
  const s = net.connect(port, '127.0.0.1');
  await readN(s, 18);
  s.write(nbd.encodeClientFlags(nbd.ClientFlag.FIXED_NEWSTYLE | nbd.ClientFlag.NO_ZEROES));
  s.write(nbd.encodeOption(nbd.Opt.GO, nbd.encodeInfoRequestData('v1')));
  await readN(s, 20);
  while (server.connections === 0) await new Promise((r) => setImmediate(r));
  const closed = new Promise((r) => s.on('close', r));
  await driver.removeExport({}, { name: 'v1' });
  await closed;
  t.same(server.exports, [], 'removed from the server');
  t.equal(server.connections, 0, "the export's connection was closed");
  await driver.createExport({}, { name: 'v1' });
  await driver.close();
  t.same(server.exports, [], "close() removes the driver's exports");
  t.ok(server.address, 'the given server is still up');
  const c = await new Promise<net.Socket>((resolve, reject) => {
    const x = net.connect(port, '127.0.0.1', () => resolve(x));
    x.on('error', reject);
  });
  c.destroy();
});

async function readN(s: net.Socket, n: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let have = 0;
  return new Promise((resolve, reject) => {
    const onData = (b: Buffer): void => {
      chunks.push(b);
      have += b.length;
      if (have >= n) {
        s.off('data', onData);
        const all = Buffer.concat(chunks);
        if (all.length > n) s.unshift(all.subarray(n));
        resolve(all.subarray(0, n));
      }
    };
    s.on('data', onData);
    s.once('error', reject);
  });
}

t.test('NBD exports with TLS: nbds:// URIs and tls: true in the connection info', async (t) => {
  const { client } = await withCluster(t);
  const dir = fileURLToPath(new URL('../fixtures/tls/', import.meta.url));
  const tls = { key: readFileSync(join(dir, 'server-key.pem')), cert: readFileSync(join(dir, 'server-cert.pem')) };
  const driver = new SheepdogDriver({ client, nbd: { listen: { host: '127.0.0.1', port: 0 }, tls } });
  t.teardown(() => driver.close());
  await driver.createVolume({ name: 'vol', sizeBytes: 4 * MiB });
  const exp = await driver.createExport({}, { name: 'vol' });
  if (exp === undefined || !('port' in exp)) throw new Error('expected a TCP export');
  t.same(exp, {
    host: '127.0.0.1',
    port: exp.port,
    exportName: 'vol',
    uri: `nbds://127.0.0.1:${exp.port}/vol`,
    tls: true,
  });
  t.same(await driver.initializeConnection({ name: 'vol' }), { driverVolumeType: 'nbd', data: exp });
  // The server requires TLS: a plain GO is refused with NBD_REP_ERR_TLS_REQD.
  const s = net.connect(exp.port, '127.0.0.1');
  t.teardown(() => s.destroy());
  await readN(s, 18);
  s.write(nbd.encodeClientFlags(nbd.ClientFlag.FIXED_NEWSTYLE | nbd.ClientFlag.NO_ZEROES));
  s.write(nbd.encodeOption(nbd.Opt.GO, nbd.encodeInfoRequestData('vol')));
  const reply = await readN(s, 20);
  t.equal(reply.readUInt32BE(12), nbd.Rep.ERR_TLS_REQD);
});
