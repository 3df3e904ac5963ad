// More real clients against the NBD server: qemu:allocation-depth on a
// clone (own, inherited from one and two snapshots up, holes), nbdcopy in
// and out over 4 connections, fio's nbd engine with crc32c verification.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t, { type Test } from 'tap';
import type { SheepdogClient } from '../../lib/client/client.js';
import { startNbdServer, type NbdServer } from '../../lib/nbd/index.js';
import { MiB, pattern, withCluster } from '../helpers/cluster.js';

const exec = promisify(execFile);
const have = async (bin: string): Promise<boolean> =>
  exec('sh', ['-c', `command -v ${bin}`]).then(
    () => true,
    () => false,
  );
const tools = { nbdinfo: await have('nbdinfo'), nbdcopy: await have('nbdcopy'), fio: await have('fio') };

async function run(bin: string, args: string[]): Promise<string> {
  return (await exec(bin, args, { timeout: 30_000, maxBuffer: 64 * MiB })).stdout;
}

const OS = MiB;

async function serve(t: Test, client: SheepdogClient): Promise<NbdServer> {
  const server = await startNbdServer({ client, exports: 'all', listen: { host: '127.0.0.1', port: 0 } });
  t.teardown(() => server.close());
  return server;
}

async function sdkRead(client: SheepdogClient, name: string, off: number, len: number): Promise<Buffer> {
  const v = await client.openVdi(name);
  try {
    return await v.read(off, len);
  } finally {
    await v.close();
  }
}

function mapOf(out: string): number[][] {
  return out
    .trim()
    .split('\n')
    .map((l) => l.trim().split(/\s+/).slice(0, 3).map(Number));
}

t.test(
  'nbdinfo --map=qemu:allocation-depth on a clone: 1 own, 2 and 3 inherited, 0 hole',
  { skip: !tools.nbdinfo && 'nbdinfo missing' },
  async (t) => {
    const { client } = await withCluster(t);
    await client.createVdi('vol', 5 * OS, { blockSizeShift: 20 });
    const v = await client.openVdi('vol');
    await v.write(pattern(OS, 1), 0); // object 0
    await client.snapshotVdi('vol', 'base'); // object 0 belongs to vol@base
    await v.write(pattern(OS, 2), OS); // object 1
    await client.snapshotVdi('vol', 's2'); // object 1 belongs to vol@s2
    await v.close();
    await client.cloneVdi('vol', 's2', 'clone');
    const c = await client.openVdi('clone');
    await c.write(pattern(100, 3), 2 * OS + 7); // object 2, the clone's own
    await c.close();
    const server = await serve(t, client);
    t.same(
      mapOf(await run('nbdinfo', ['--map=qemu:allocation-depth', server.uri('clone')])),
      [
        [0, OS, 3],
        [OS, OS, 2],
        [2 * OS, OS, 1],
        [3 * OS, 2 * OS, 0],
      ],
      'object 0 from vol@base (3), object 1 from vol@s2 (2), object 2 own (1), the rest holes (0)',
    );
    t.same(mapOf(await run('nbdinfo', ['--map', server.uri('clone')])), [
      [0, 3 * OS, 0],
      [3 * OS, 2 * OS, 3],
    ]);
    const got = await run('nbdinfo', ['--map=qemu:allocation-depth', server.uri('vol@s2')]);
    t.same(mapOf(got), [
      [0, OS, 2],
      [OS, OS, 1],
      [2 * OS, 3 * OS, 0],
    ]);
  },
);

t.test(
  'nbdcopy --connections 4, out of a volume and into one',
  { skip: !tools.nbdcopy && 'nbdcopy missing' },
  async (t) => {
    const { client } = await withCluster(t);
    const size = 16 * OS;
    await client.createVdi('src', size, { blockSizeShift: 20 });
    const v = await client.openVdi('src');
    const data = pattern(size, 7);
    data.fill(0, 4 * OS, 9 * OS); // a hole in the middle
    await v.write(data.subarray(0, 4 * OS), 0);
    await v.write(data.subarray(9 * OS), 9 * OS);
    await v.close();
    const server = await serve(t, client);
    const dir = await mkdtemp(join(tmpdir(), 'nbdcopy-'));
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'out.raw');
    await run('nbdcopy', ['--connections', '4', server.uri('src'), file]);
    t.ok((await readFile(file)).equals(data), 'out: the file is the volume');

    await client.createVdi('dst', size, { blockSizeShift: 20 });
    const input = pattern(size, 8);
    input.fill(0, 2 * OS, 3 * OS);
    await writeFile(file, input);
    await run('nbdcopy', ['--connections', '4', '--flush', file, server.uri('dst')]);
    t.ok((await sdkRead(client, 'dst', 0, size)).equals(input), 'in: the SDK reads what nbdcopy wrote');
  },
);

t.test(
  'fio --ioengine=nbd: random writes at iodepth 32, --verify=crc32c',
  { skip: !tools.fio && 'fio missing (apt-get install fio)' },
  async (t) => {
    const { client } = await withCluster(t);
    const size = 8 * OS;
    await client.createVdi('vol', size, { blockSizeShift: 20 });
    const server = await serve(t, client);
    const out = await run('fio', [
      '--name=nbd-randwrite',
      '--ioengine=nbd',
      `--uri=${server.uri('vol')}`,
      '--rw=randwrite',
      '--bs=4k',
      '--iodepth=32',
      `--size=${size}`,
      '--verify=crc32c',
      '--verify_fatal=1',
      '--verify_state_save=0', // no *-verify.state file left in the working directory
      '--do_verify=1',
      '--output-format=json',
    ]);
    const r = JSON.parse(out.slice(out.indexOf('{'))) as {
      jobs: { error: number; write: { total_ios: number }; read: { total_ios: number } }[];
    };
    const job = r.jobs[0];
    t.equal(job?.error, 0, 'fio finished without error (every block verified)');
    t.equal(job?.write.total_ios, size / 4096, 'every 4 KiB block written once');
    t.equal(job?.read.total_ios, size / 4096, 'and read back for verification');
    // Cross-check: what NBD clients saw is what the SDK reads.
    const v = await client.openVdi('vol');
    t.same(v.allocatedRanges(), [{ offset: 0, length: size }], 'the whole volume is allocated');
    const sdk = await v.read(0, size);
    await v.close();
    if (tools.nbdcopy) {
      const dir = await mkdtemp(join(tmpdir(), 'fio-'));
      t.teardown(() => rm(dir, { recursive: true, force: true }));
      await run('nbdcopy', [server.uri('vol'), join(dir, 'vol.raw')]);
      t.ok((await readFile(join(dir, 'vol.raw'))).equals(sdk), 'the SDK reads the bytes fio wrote');
    }
  },
);

t.test(
  'nbdinfo --map=qemu:dirty-bitmap:SNAP: the objects that differ from a snapshot',
  { skip: !tools.nbdinfo && 'nbdinfo missing' },
  async (t) => {
    const { client } = await withCluster(t);
    await client.createVdi('vol', 6 * OS, { blockSizeShift: 20 });
    const v = await client.openVdi('vol');
    await v.write(pattern(3 * OS, 1), 0); // objects 0, 1, 2
    await client.snapshotVdi('vol', 'snap');
    await v.write(pattern(10, 2), OS + 5); // object 1 rewritten
    await v.discard(2 * OS, OS); // object 2 unmapped
    await v.write(pattern(10, 3), 3 * OS); // object 3 new
    await v.close();
    const server = await serve(t, client);
    const map = mapOf(await run('nbdinfo', ['--map=qemu:dirty-bitmap:snap', server.uri('vol')]));
    t.same(
      map,
      [
        [0, OS, 0],
        [OS, 3 * OS, 1],
        [4 * OS, 2 * OS, 0],
      ],
      'object 0 clean, 1 (rewritten), 2 (discarded), 3 (new) dirty, holes in both clean',
    );
    const info = JSON.parse(await run('nbdinfo', ['--json', server.uri('vol')])) as {
      exports: { contexts: string[] }[];
    };
    t.same(info.exports[0]?.contexts, ['base:allocation', 'qemu:allocation-depth', 'qemu:dirty-bitmap:snap']);
    const self = mapOf(await run('nbdinfo', ['--map=qemu:dirty-bitmap:snap', server.uri('vol@snap')]));
    t.same(self, [[0, 6 * OS, 0]], 'a snapshot is clean against itself');
    await t.rejects(
      run('nbdinfo', ['--map=qemu:dirty-bitmap:nope', server.uri('vol')]),
      'an unknown snapshot is no context',
    );
  },
);
