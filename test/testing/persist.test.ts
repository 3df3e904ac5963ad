// Persistence: a cluster started on a directory comes back from it.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { startEmbeddedSheep } from '../../testing/embedded.js';
import {
  clusterRequest,
  decodeClusterInfo,
  decodeEpochLogs,
  decodeVdiStates,
  Flag,
  CLUSTER_INFO_SIZE,
  Op,
  plainRequest,
  Result,
  SD_NODE_SIZE,
  VDI_BITMAP_SIZE,
  VDI_STATE_SIZE,
  vidToVdiOid,
} from '../../protocol/index.js';
import { MiniDog } from './dog.js';
import { getVdiInfo, RawClient, readObj } from './raw.js';

const MiB = 2 ** 20;

function pattern(len: number, seed: number): Buffer {
  const b = Buffer.alloc(len);
  let x = seed;
  for (let i = 0; i < len; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

t.test('write, close, start again on the same dir, read back', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'embedded-sheep-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const data = pattern(5 * MiB + 123, 7);
  let ctime = 0n;
  let inuse: Buffer;
  let deleted: Buffer;
  let states: Buffer;
  const ids: Record<string, number> = {};
  let objects = 0;
  let bytes = 0;
  {
    const sheep = await startEmbeddedSheep({ nodes: 3, copies: 2, lock: true, dir });
    const c = await RawClient.connect(sheep.addresses[0] as string);
    const dog = new MiniDog(c);
    ids.alpha = await dog.create('alpha', 100 * MiB);
    await dog.write('alpha', 3 * MiB, data);
    await dog.snapshot('alpha', 'snap1');
    await dog.write('alpha', 0, Buffer.from('after'));
    ids.clone = await dog.clone('alpha', 'snap1', 'alpha-clone');
    ids.gamma = await dog.create('gamma', 10 * MiB, { blockSizeShift: 20 });
    await dog.write('gamma', 0, Buffer.from('bye'));
    t.equal((await dog.delete('gamma')).rsp.result, Result.SUCCESS);
    ids.work = await dog.vid('alpha');
    const ci = decodeClusterInfo((await c.call(plainRequest(Op.CLUSTER_INFO, { dataLength: CLUSTER_INFO_SIZE }))).body);
    ctime = ci.ctime;
    inuse = (await c.call(plainRequest(Op.READ_VDIS, { dataLength: VDI_BITMAP_SIZE }))).body;
    deleted = (await c.call(plainRequest(Op.READ_DEL_VDIS, { dataLength: VDI_BITMAP_SIZE }))).body;
    states = (await c.call(plainRequest(Op.GET_VDI_COPIES, { dataLength: 64 * VDI_STATE_SIZE }))).body;
    objects = sheep.stats.objects;
    bytes = sheep.stats.bytes;
    c.close();
    await sheep.close();
  }
  const files = (): number =>
    readdirSync(join(dir, 'nodes')).reduce((n, i) => n + readdirSync(join(dir, 'nodes', i, 'obj')).length, 0);
  t.equal(readdirSync(join(dir, 'nodes')).length, 3, 'a store per node');
  t.ok(files() >= 2 * objects, 'objects are files, one per replica');
  {
    const sheep = await startEmbeddedSheep({ nodes: 3, copies: 3, dir });
    t.teardown(() => sheep.close());
    const c = await RawClient.connect(sheep.addresses[2] as string);
    t.teardown(() => c.close());
    const dog = new MiniDog(c);
    await sheep.recovered(); // new ports, new ring: the replicas move to where it places them
    t.equal(sheep.stats.objects, objects, 'same objects');
    t.equal(sheep.stats.bytes, bytes, 'same bytes (2 copies of each)');
    t.equal(await dog.vid('alpha'), ids.work, 'VDI ids survive');
    t.equal(await dog.vid('alpha', 'snap1'), ids.alpha);
    t.equal(await dog.vid('alpha-clone'), ids.clone);
    t.equal((await getVdiInfo(c, 'gamma')).rsp.result, Result.NO_VDI, 'deleted stays deleted');
    t.ok((await dog.read(ids.alpha as number, 3 * MiB, data.length)).equals(data), 'snapshot data identical');
    const work = await dog.read(ids.work as number, 0, 3 * MiB + data.length);
    t.equal(work.subarray(0, 5).toString(), 'after');
    t.ok(work.subarray(3 * MiB).equals(data));
    t.ok((await dog.read(ids.clone as number, 3 * MiB, data.length)).equals(data), 'clone data identical');
    t.ok(
      (await c.call(plainRequest(Op.READ_VDIS, { dataLength: VDI_BITMAP_SIZE }))).body.equals(inuse),
      'in-use bitmap',
    );
    t.ok(
      (await c.call(plainRequest(Op.READ_DEL_VDIS, { dataLength: VDI_BITMAP_SIZE }))).body.equals(deleted),
      'deleted bitmap',
    );
    const now = decodeVdiStates(
      (await c.call(plainRequest(Op.GET_VDI_COPIES, { dataLength: 64 * VDI_STATE_SIZE }))).body,
    );
    const before = decodeVdiStates(states);
    t.same(
      now.map((s) => [s.vid, s.nrCopies, s.snapshot, s.copyPolicy, s.blockSizeShift]),
      before.map((s) => [s.vid, s.nrCopies, s.snapshot, s.copyPolicy, s.blockSizeShift]),
      'vdi_state rebuilt from the inodes',
    );
    const ci = decodeClusterInfo((await c.call(plainRequest(Op.CLUSTER_INFO, { dataLength: CLUSTER_INFO_SIZE }))).body);
    t.equal(ci.ctime, ctime, 'same cluster');
    t.equal(ci.nrCopies, 2, 'the stored format wins over the options');
    t.equal(ci.flags, 0x0c);
    const logs = decodeEpochLogs(
      (await c.call(clusterRequest(Op.STAT_CLUSTER, { nodesNr: 3, dataLength: 4 * (48 + 3 * SD_NODE_SIZE) }))).body,
      3,
    );
    t.same(
      logs.map((l) => l.epoch),
      [2, 1],
      'the epoch log survives; new ports are a new epoch',
    );
    // the store keeps working, and a reformat wipes the directory
    await dog.write('alpha', 0, Buffer.from('again'));
    t.equal((await readObj(c, vidToVdiOid(ids.work as number), 0, 5)).body.toString(), 'alpha');
    const fs = Buffer.from('plain\0');
    const mk = await c.call(
      clusterRequest(Op.MAKE_FS, { flags: Flag.CMD_WRITE, dataLength: fs.length, copies: 2, ctime: 5n << 32n }),
      fs,
    );
    t.equal(mk.rsp.result, Result.SUCCESS);
    t.equal(files(), 0);
  }
  {
    const sheep = await startEmbeddedSheep({ dir });
    t.teardown(() => sheep.close());
    t.equal(sheep.stats.objects, 0, 'the reformat persisted');
    const c = await RawClient.connect(sheep.addresses[0] as string);
    t.teardown(() => c.close());
    t.equal((await getVdiInfo(c, 'alpha')).rsp.result, Result.NO_VDI);
  }
});

t.test('an unformatted dir cluster stays unformatted until MAKE_FS', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'embedded-sheep-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const a = await startEmbeddedSheep({ nodes: 1, unformatted: true, dir });
  await a.close();
  const b = await startEmbeddedSheep({ nodes: 1, dir });
  t.teardown(() => b.close());
  const c = await RawClient.connect(b.addresses[0] as string);
  t.teardown(() => c.close());
  t.equal((await getVdiInfo(c, 'x')).rsp.result, Result.WAIT_FOR_FORMAT);
});
