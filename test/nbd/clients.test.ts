// The NBD server against real clients (nbdinfo, qemu-img, qemu-io) and a raw
// client built on the codec, every effect cross-checked through the SDK.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t, { type Test } from 'tap';
import { startNbdServer, type NbdServer } from '../../lib/nbd/index.js';
import { ClientFlag, Cmd, Errno, Opt, Rep, encodeClientFlags, encodeOption } from '../../lib/nbd/protocol/index.js';
import { RawClient } from './raw.js';
import type { SheepdogClient } from '../../lib/client/client.js';
import { MiB, pattern, withCluster } from '../helpers/cluster.js';

const exec = promisify(execFile);

async function have(bin: string): Promise<boolean> {
  return exec('sh', ['-c', `command -v ${bin}`]).then(
    () => true,
    () => false,
  );
}
const tools = { nbdinfo: await have('nbdinfo'), qemuImg: await have('qemu-img'), qemuIo: await have('qemu-io') };

async function run(bin: string, args: string[]): Promise<string> {
  const r = await exec(bin, args, { timeout: 20_000, maxBuffer: 64 * MiB });
  return r.stdout;
}

const OS = MiB; // bss 20: 1 MiB objects keep boundaries cheap
const SIZE = 8 * MiB;

async function setup(t: Test, o: { readOnly?: boolean } = {}): Promise<{ client: SheepdogClient; server: NbdServer }> {
  const { client } = await withCluster(t);
  await client.createVdi('vol', SIZE, { blockSizeShift: 20 });
  const v = await client.openVdi('vol');
  await v.write(pattern(OS, 1), 0); // object 0
  await client.snapshotVdi('vol', 'base'); // object 0 now belongs to the snapshot
  await v.write(pattern(100, 2), 2 * OS + 5); // object 2, own
  await v.close();
  const server = await startNbdServer({ client, exports: 'all', listen: { host: '127.0.0.1', port: 0 }, ...o });
  t.teardown(() => server.close());
  return { client, server };
}

async function sdkRead(client: SheepdogClient, name: string, off: number, len: number): Promise<Buffer> {
  const v = await client.openVdi(name);
  try {
    return await v.read(off, len);
  } finally {
    await v.close();
  }
}

t.test(
  'nbdinfo: --json, --map, --map=qemu:allocation-depth, --list',
  { skip: !tools.nbdinfo && 'nbdinfo missing' },
  async (t) => {
    const { server } = await setup(t);
    const info = JSON.parse(await run('nbdinfo', ['--json', server.uri('vol')])) as {
      protocol: string;
      structured: boolean;
      exports: Record<string, unknown>[];
    };
    t.equal(info.protocol, 'newstyle-fixed');
    t.equal(info.structured, true);
    t.match(info.exports[0], {
      'export-name': 'vol',
      'export-size': SIZE,
      is_read_only: false,
      can_flush: true,
      can_trim: true,
      can_zero: true,
      can_fast_zero: true,
      can_df: true,
      can_cache: true,
      can_multi_conn: true,
      block_size_minimum: 1,
      block_size_preferred: OS,
      block_size_maximum: 32 * MiB,
      contexts: ['base:allocation', 'qemu:allocation-depth', 'qemu:dirty-bitmap:base'],
    });
    const map = (await run('nbdinfo', ['--map', server.uri('vol')]))
      .trim()
      .split('\n')
      .map((l) => l.trim().split(/\s+/).slice(0, 3).map(Number));
    t.same(map, [
      [0, OS, 0],
      [OS, OS, 3],
      [2 * OS, OS, 0],
      [3 * OS, 5 * OS, 3],
    ]);
    const depth = (await run('nbdinfo', ['--map=qemu:allocation-depth', server.uri('vol')]))
      .trim()
      .split('\n')
      .map((l) => l.trim().split(/\s+/).slice(0, 3).map(Number));
    t.same(
      depth,
      [
        [0, OS, 2],
        [OS, OS, 0],
        [2 * OS, OS, 1],
        [3 * OS, 5 * OS, 0],
      ],
      'object 0 inherited from the snapshot (2), object 2 own (1), holes 0',
    );
    const list = JSON.parse(await run('nbdinfo', ['--list', '--json', server.uri('vol')])) as {
      exports: { 'export-name': string; is_read_only: boolean }[];
    };
    t.same(list.exports.map((e) => [e['export-name'], e.is_read_only]).sort(), [
      ['vol', false],
      ['vol@base', true],
    ]);
  },
);

t.test(
  'qemu-img info, convert, compare, map; and convert into a volume',
  { skip: !tools.qemuImg && 'qemu-img missing' },
  async (t) => {
    const { client, server } = await setup(t);
    const dir = await mkdtemp(join(tmpdir(), 'nbd-test-'));
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    const info = JSON.parse(await run('qemu-img', ['info', '--output=json', server.uri('vol')])) as {
      'virtual-size': number;
    };
    t.equal(info['virtual-size'], SIZE);
    const file = join(dir, 'vol.raw');
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', server.uri('vol'), file]);
    t.ok((await readFile(file)).equals(await sdkRead(client, 'vol', 0, SIZE)), 'convert out matches the SDK');
    await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', server.uri('vol'), file]);
    const map = JSON.parse(await run('qemu-img', ['map', '--output=json', '-f', 'raw', server.uri('vol')])) as {
      start: number;
      data: boolean;
    }[];
    t.same(
      map.map((e) => [e.start, e.data]),
      [
        [0, true],
        [OS, false],
        [2 * OS, true],
        [3 * OS, false],
      ],
    );
    // Into a second volume over NBD.
    await client.createVdi('copy', SIZE, { blockSizeShift: 20 });
    const src = join(dir, 'src.raw');
    const data = pattern(SIZE, 9);
    data.fill(0, 3 * OS, 5 * OS);
    await writeFile(src, data);
    await run('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', src, server.uri('copy')]);
    t.ok((await sdkRead(client, 'copy', 0, SIZE)).equals(data), 'convert in: the SDK reads what qemu-img wrote');
    await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', src, server.uri('copy')]);
    await writeFile(src, Buffer.alloc(SIZE, 1));
    await t.rejects(
      run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', src, server.uri('copy')]),
      'compare can fail',
    );
  },
);

t.test(
  'qemu-io: unaligned write -P / read -P / write -z / discard across object boundaries',
  { skip: !tools.qemuIo && 'qemu-io missing' },
  async (t) => {
    const { client, server } = await setup(t);
    const off = OS - 1000; // straddles objects 0 | 1
    const len = OS + 3001; // and 1 | 2
    const out = await run('qemu-io', [
      '-f',
      'raw',
      '-c',
      `write -P 0xab ${off} ${len}`,
      '-c',
      `read -P 0xab ${off} ${len}`,
      '-c',
      `write -z ${3 * OS - 7} 14`,
      '-c',
      `read -P 0 ${3 * OS - 7} 14`,
      '-c',
      `discard ${4 * OS} ${2 * OS}`,
      '-c',
      'flush',
      server.uri('vol'),
    ]);
    t.notMatch(out, /verification failed|error/i, out);
    const got = await sdkRead(client, 'vol', 0, SIZE);
    t.ok(
      got.subarray(off, off + len).every((b) => b === 0xab),
      'the pattern landed',
    );
    t.ok(got.subarray(0, off).equals(pattern(OS, 1).subarray(0, off)), 'bytes before it kept');
    t.ok(
      got.subarray(3 * OS - 7, 3 * OS + 7).every((b) => b === 0),
      'write -z zeroed across 2|3',
    );
    t.ok(got.subarray(off + len, 3 * OS - 7).equals(Buffer.alloc(3 * OS - 7 - off - len)), 'between: untouched zeros');
    // A failing pattern check fails qemu-io's output.
    const bad = await run('qemu-io', ['-f', 'raw', '-c', `read -P 0xcd ${off} 512`, server.uri('vol')]).then(
      () => '',
      (e: { stdout?: string }) => e.stdout ?? '',
    );
    t.match(bad, /Pattern verification failed/, 'pattern checks can fail');
    const v = await client.openVdi('vol', { snapshot: 'base' });
    t.ok((await v.read(0, OS)).equals(pattern(OS, 1)), 'the snapshot is unchanged');
    await v.close();
  },
);

// ---- a raw client on the codec: exact errno values ----------------------

t.test(
  'errno: EPERM on a snapshot, EINVAL/ENOSPC out of range, EOVERFLOW over max; the connection goes on',
  async (t) => {
    const { client, server } = await setup(t);
    const port = (server.address as { port: number }).port;
    const snap = await RawClient.connect(port, 'vol@base');
    snap.send(Cmd.WRITE, 0, 4, 1n, Buffer.from('abcd'));
    t.same(await snap.reply(), [1n, Errno.EPERM], 'WRITE to a snapshot');
    snap.send(Cmd.TRIM, 0, 4, 2n);
    t.same(await snap.reply(), [2n, Errno.EPERM], 'TRIM to a snapshot');
    snap.send(Cmd.READ, 0, 4, 3n);
    t.same(await snap.reply(), [3n, 0], 'and it still reads');
    t.ok((await snap.read(4)).equals(pattern(OS, 1).subarray(0, 4)));
    snap.close();

    const c = await RawClient.connect(port, 'vol');
    c.send(Cmd.READ, SIZE - 1, 2, 10n);
    t.same(await c.reply(), [10n, Errno.EINVAL], 'READ past the end');
    c.send(Cmd.WRITE, SIZE - 1, 2, 11n, Buffer.from('xy'));
    t.same(await c.reply(), [11n, Errno.ENOSPC], 'WRITE past the end');
    c.send(Cmd.READ, 0, 33 * MiB, 12n);
    t.same(await c.reply(), [12n, Errno.EOVERFLOW], 'READ over the maximum');
    c.send(Cmd.BLOCK_STATUS, 0, 10, 13n);
    t.same(await c.reply(), [13n, Errno.EINVAL], 'BLOCK_STATUS without a context');
    c.send(Cmd.READ, 0, 1, 14n, undefined, 0x80);
    t.same(await c.reply(), [14n, Errno.EINVAL], 'unknown flag');
    // Concurrent writes, then a read: all answered, effects visible through the SDK.
    const w = pattern(3 * OS, 5);
    for (let i = 0; i < 6; i++)
      c.send(Cmd.WRITE, OS / 2 + i * (OS / 2), OS / 2, BigInt(100 + i), w.subarray(i * (OS / 2), (i + 1) * (OS / 2)));
    const cookies = new Set<bigint>();
    for (let i = 0; i < 6; i++) {
      const [cookie, err] = await c.reply();
      t.equal(err, 0);
      cookies.add(cookie);
    }
    t.equal(cookies.size, 6, 'six replies, one per cookie');
    c.send(Cmd.FLUSH, 0, 0, 200n);
    t.same(await c.reply(), [200n, 0]);
    t.ok((await sdkRead(client, 'vol', OS / 2, 3 * OS)).equals(w), 'the SDK reads the writes');
    // Garbage: the server closes this connection; others go on.
    const other = await RawClient.connect(port, 'vol');
    c.raw(Buffer.from('garbage that is no request header'));
    await t.rejects(c.read(1), /closed/, 'bad magic closes the connection');
    other.send(Cmd.READ, 0, 4, 1n);
    t.same(await other.reply(), [1n, 0], 'another connection still works');
    await other.read(4);
    other.close();
  },
);

t.test('unknown export and unknown option are refused, STARTTLS is unsupported', async (t) => {
  const { server } = await setup(t);
  const port = (server.address as { port: number }).port;
  await t.rejects(RawClient.connect(port, 'nope'), /GO failed: 0x80000006/);
  const s = net.connect(port, '127.0.0.1');
  const c = new RawClient(s);
  await c.read(18);
  s.write(encodeClientFlags(ClientFlag.FIXED_NEWSTYLE));
  for (const [opt, want] of [
    [99, Rep.ERR_UNSUP],
    [Opt.STARTTLS, Rep.ERR_UNSUP],
    [Opt.SET_META_CONTEXT, Rep.ERR_INVALID], // before STRUCTURED_REPLY
  ] as const) {
    s.write(encodeOption(opt));
    const h = await c.read(20);
    await c.read(h.readUInt32BE(16));
    t.equal(h.readUInt32BE(12), want, `option ${opt}`);
  }
  c.close();
});

t.test('close drains: a server with an idle connection closes', async (t) => {
  const { server } = await setup(t);
  const c = await RawClient.connect((server.address as { port: number }).port, 'vol');
  t.equal(server.connections, 1);
  await server.close();
  await t.rejects(c.read(1), /closed/);
  t.equal(server.connections, 0);
});
