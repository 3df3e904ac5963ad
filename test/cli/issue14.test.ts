// Issue 14, the CLI's part: writes past the end and failed writes say what
// landed, all-digit tags, negative and 16 PiB sizes, control characters,
// serve --memory and memory given back, bench and $SHEEPDOG_NODES,
// cluster info of an unformatted cluster, progress bars, --json of write.
import { PassThrough, Readable } from 'node:stream';
import t from 'tap';
import { Result } from '../../protocol/constants.js';
import { Op } from '../../protocol/opcodes.js';
import { parseBenchArgs } from '../../cli/bench/command.js';
import { ExitCode } from '../../cli/exit.js';
import { escapeControls, table } from '../../cli/format.js';
import { progressLine } from '../../cli/progress.js';
import { type CliIO, runCli } from '../../cli/run.js';
import { SD_MAX_VDI_SIZE, checkVdiSize, parseSize, parseSizeBig } from '../../lib/client/names.js';
import { ObjectStore } from '../../testing/store.js';
import { MiB, pattern, withCluster } from '../helpers/cluster.js';

interface Run {
  code: number;
  stdout: Buffer;
  stderr: string;
}

async function run(
  args: string[],
  input: Buffer | string = '',
  o: { tty?: boolean; env?: CliIO['env']; signal?: AbortSignal; onListening?: CliIO['onListening'] } = {},
): Promise<Run> {
  const out: Buffer[] = [];
  let err = '';
  const stdout = new PassThrough();
  stdout.on('data', (b: Buffer) => out.push(b));
  const stderr = Object.assign(new PassThrough(), { isTTY: o.tty === true, columns: 120 });
  stderr.on('data', (b: Buffer) => {
    err += b.toString();
  });
  // stdin in 64 KiB pieces, as a pipe delivers it
  const pieces: Buffer[] = [];
  const all = Buffer.from(input);
  for (let i = 0; i < all.length; i += 65536) pieces.push(all.subarray(i, i + 65536));
  const io: CliIO = { stdin: Readable.from(pieces), stdout, stderr, env: o.env ?? {} };
  if (o.signal) io.signal = o.signal;
  if (o.onListening) io.onListening = o.onListening;
  const code = await runCli(args, io);
  await new Promise((r) => setImmediate(r));
  return { code, stdout: Buffer.concat(out), stderr: err };
}

t.test('4: vdi write past the end and failed writes report the bytes that landed', async (t) => {
  const { sheep, client } = await withCluster(t);
  const a = ['-a', sheep.addresses.join(',')];
  t.equal((await run([...a, 'vdi', 'create', 'p', '4M'])).code, 0);
  const input = pattern(2 * MiB, 4);
  const r = await run([...a, 'vdi', 'write', 'p', '3M'], input);
  t.equal(r.code, ExitCode.USAGE, r.stderr);
  t.match(
    r.stderr,
    /^sheepdog: vdi write p: input continues past the end of VDI p \(4194304 bytes\): the 1048576 bytes that fit were written \(offset 3145728\.\.4194304\), the rest was not\n$/,
  );
  const v = await client.openVdi('p');
  t.ok((await v.read(3 * MiB, MiB)).equals(input.subarray(0, MiB)), 'what fits landed');
  await v.close();
  // exactly to the end is fine
  t.equal((await run([...a, 'vdi', 'write', 'p', '3M'], input.subarray(0, MiB))).code, 0, 'input ends at the end');

  // a write that fails halfway: EIO on the third object created through each gateway
  t.equal((await run([...a, 'vdi', 'create', 'f', '64M'])).code, 0);
  for (let i = 0; i < sheep.addresses.length; i++)
    sheep.inject(i, { kind: 'result', result: Result.EIO, opcode: Op.CREATE_AND_WRITE_OBJ, after: 2 });
  const data = pattern(32 * MiB, 5);
  const f = await run([...a, 'vdi', 'write', 'f'], data);
  t.equal(f.code, ExitCode.FAILURE, f.stderr);
  const m = /: I\/O error \(EIO\); (\d+) bytes? landed in VDI f \(offset 0\.\.(\d+)\)/.exec(f.stderr);
  t.ok(m, f.stderr);
  const landed = Number(m?.[1]);
  t.equal(Number(m?.[2]), landed);
  t.ok(landed < data.length);
  const fv = await client.openVdi('f');
  t.ok((await fv.read(0, landed)).equals(data.subarray(0, landed)), 'the reported bytes did land');
  await fv.close();
});

t.test('4: a failed import into an existing VDI says what landed; stdin past the end is detected', async (t) => {
  const { sheep } = await withCluster(t);
  const a = ['-a', sheep.addresses.join(',')];
  t.equal((await run([...a, 'vdi', 'create', 'i', '1M'])).code, 0);
  const r = await run([...a, 'vdi', 'import', 'i', '-'], pattern(MiB + 1, 1));
  t.equal(r.code, ExitCode.USAGE);
  t.match(r.stderr, /input continues past the end of VDI i \(1048576 bytes\): the 1048576 bytes that fit were written/);
});

t.test('5: all-digit tags: warned at creation, read back with --tag; --id', async (t) => {
  const { sheep } = await withCluster(t);
  const a = ['-a', sheep.addresses.join(',')];
  t.equal((await run([...a, 'vdi', 'create', 'd', '4M'])).code, 0);
  const s = await run([...a, 'vdi', 'snapshot', 'd', '--tag', '20240501']);
  t.equal(s.code, 0);
  t.match(s.stderr, /tag "20240501" is all digits; .*--tag 20240501/);
  t.equal((await run([...a, 'vdi', 'snapshot', 'd', '--tag', 'named'])).stderr, '', 'no note for other tags');
  const byTag = await run([...a, 'vdi', 'info', 'd', '--tag', '20240501', '--json']);
  t.equal(byTag.code, 0, byTag.stderr);
  t.equal(JSON.parse(byTag.stdout.toString()).tag, '20240501');
  t.equal((await run([...a, 'vdi', 'info', 'd', '-s', '20240501'])).code, ExitCode.NOT_FOUND, '-s digits: an id');
  t.equal(JSON.parse((await run([...a, 'vdi', 'info', 'd', '--id', '1', '--json'])).stdout.toString()).snapId, 1);
  t.equal((await run([...a, 'vdi', 'read', 'd', '0', '1K', '--tag', '20240501'])).stdout.length, 1024);
  t.equal((await run([...a, 'vdi', 'clone', 'd', 'dc', '--tag', '20240501'])).code, 0, 'clone --tag');
  t.equal((await run([...a, 'vdi', 'info', 'd', '--tag', 'x', '--id', '1'])).code, ExitCode.USAGE, 'one selector');
  t.match((await run([...a, 'vdi', 'info', 'd', '--id', 'x'])).stderr, /--id must be a snapshot id/);
});

t.test('6: negative sizes and sizes up to sheep\u2019s 16 PiB, exact', async (t) => {
  t.equal(parseSizeBig('16P'), 2n ** 54n);
  t.equal(parseSizeBig('1.5K'), 1536n);
  t.equal(parseSizeBig('0.5K'), 512n);
  t.throws(() => parseSizeBig('0.3'), /not a whole number of bytes/);
  t.throws(() => parseSizeBig('-1G'), /"-1G" is negative/);
  t.throws(() => parseSize('16P'), /past 2\^53 - 1 bytes/);
  t.equal(checkVdiSize(SD_MAX_VDI_SIZE), 2n ** 54n);
  t.throws(() => checkVdiSize(16 * 2 ** 50), /a safe integer or a bigint/, 'an unsafe number: give a bigint');
  t.throws(() => checkVdiSize(SD_MAX_VDI_SIZE + 1n), /past sheep's largest VDI/);
  t.throws(() => checkVdiSize(2 ** 53 + 2), /safe integer or a bigint/);

  const { sheep, client } = await withCluster(t);
  const a = ['-a', sheep.addresses.join(',')];
  const neg = await run([...a, 'vdi', 'create', 'x', '-1G']);
  t.equal(neg.code, ExitCode.USAGE);
  t.match(neg.stderr, /SIZE: "-1G" is negative/);
  t.notMatch(neg.stderr, /Unknown option/);
  t.match((await run([...a, 'vdi', 'write', 'x', '-5'])).stderr, /OFFSET: "-5" is negative/);
  const big = await run([...a, 'vdi', 'create', 'huge', '16P', '--json']);
  t.equal(big.code, 0, big.stderr);
  t.match(big.stdout.toString(), /"size": 18014398509481984,/);
  t.equal((await client.getVdi('huge')).storePolicy, 1, 'a hyper volume');
  const odd = await client.createVdi('odd', 2n ** 53n + 512n);
  t.equal(BigInt(odd.size), 2n ** 53n + 512n, 'past 2^53 as a bigint, exact');
  const over = await run([...a, 'vdi', 'create', 'x', '17P']);
  t.equal(over.code, ExitCode.USAGE);
  t.match(over.stderr, /past sheep's largest VDI/);
  t.equal((await run([...a, 'vdi', 'resize', 'odd', '16P'])).code, 0, 'resize to 16P');
  t.match((await run([...a, 'vdi', 'info', 'odd'])).stdout.toString(), /Size: +16\.0 PiB \(18014398509481984 bytes\)/);
});

t.test('7: control characters: refused in new names, escaped in tables', async (t) => {
  t.equal(escapeControls('a\nb\tc\x1b[0m\x7f'), 'a\\nb\\tc\\x1b[0m\\x7f');
  t.equal(table(['Name'], [['x\ny']]), 'Name\nx\\ny\n', 'one row, one line');
  const { sheep, client } = await withCluster(t);
  const a = ['-a', sheep.addresses.join(',')];
  const r = await run([...a, 'vdi', 'create', 'bad\nname', '1M']);
  t.equal(r.code, ExitCode.USAGE);
  t.match(
    r.stderr,
    /^sheepdog: vdi create bad\\nname: VDI name "bad\\nname" contains a control character \(\\x0a\)\n$/,
  );
  t.equal((await run([...a, 'vdi', 'create', 'ok', '1M'])).code, 0);
  t.match(
    (await run([...a, 'vdi', 'snapshot', 'ok', '--tag', 'a\tb'])).stderr,
    /snapshot tag "a\\tb" contains a control/,
  );
  t.equal((await run([...a, 'vdi', 'snapshot', 'ok', '--tag', 't'])).code, 0);
  t.match((await run([...a, 'vdi', 'clone', 'ok', 'c\x1b', '--tag', 't'])).stderr, /target VDI name .* control/);
  await t.rejects(client.createVdi('x\ty', 2 ** 20), /control character/, 'the client refuses too');
  t.equal((await run([...a, 'vdi', 'info', 'still\nlooked-up'])).code, ExitCode.NOT_FOUND, 'lookups still allowed');
});

t.test('8: serve --memory caps the store; deleted objects give memory back', async (t) => {
  t.equal((await run(['serve', '--memory', '1K'])).code, ExitCode.USAGE);
  const ac = new AbortController();
  let r: Run | undefined;
  let full: Run | undefined;
  let after: Run | undefined;
  const served = run(['serve', '--port', '0', '--nodes', '1', '--copies', '1', '--memory', '8M'], '', {
    signal: ac.signal,
    onListening: (addrs) => {
      const a = ['-a', addrs.join(',')];
      void (async () => {
        r = await run([...a, 'vdi', 'create', 'm', '64M']);
        full = await run([...a, 'vdi', 'write', 'm'], pattern(12 * MiB, 3));
        await run([...a, 'vdi', 'delete', 'm']);
        await run([...a, 'vdi', 'create', 'm', '64M']);
        after = await run([...a, 'vdi', 'write', 'm'], pattern(6 * MiB, 3));
      })().finally(() => ac.abort());
    },
  });
  t.equal((await served).code, 0);
  t.equal(r?.code, 0);
  t.equal(full?.code, ExitCode.FULL, `NO_SPACE past --memory: ${full?.stderr}`);
  t.match(full?.stderr, /bytes? landed/);
  t.equal(after?.code, 0, `space is free again after a delete: ${after?.stderr}`);

  // RSS: 512 MiB of chunks stored, then removed, comes back to the OS.
  const store = new ObjectStore(2 ** 31);
  const data = Buffer.alloc(4 * MiB, 7);
  const base = process.memoryUsage().rss;
  for (let i = 0; i < 128; i++) store.create(BigInt(i), 4 * MiB, 0, data);
  const full2 = process.memoryUsage().rss;
  for (let i = 0; i < 128; i++) store.remove(BigInt(i));
  let rss = full2;
  for (let i = 0; i < 40 && rss - base > 128 * MiB; i++) {
    await new Promise((res) => setTimeout(res, 100));
    rss = process.memoryUsage().rss;
  }
  t.ok(full2 - base > 400 * MiB, `stored: +${Math.round((full2 - base) / MiB)} MiB`);
  t.ok(rss - base < 128 * MiB, `after the deletes: +${Math.round((rss - base) / MiB)} MiB`);
});

t.test('9: bench honours $SHEEPDOG_NODES', async (t) => {
  const args = ['--op', 'read', '--pattern', 'seq', '--bs', '4K', '--qd', '1', '--total', '4K', '--vdi', 'v'];
  const fromEnv = parseBenchArgs(args, { SHEEPDOG_NODES: '127.0.0.1:7001 127.0.0.1:7002' });
  t.same(fromEnv !== 'help' && fromEnv.nodes, ['127.0.0.1:7001', '127.0.0.1:7002']);
  const given = parseBenchArgs([...args, '-a', '127.0.0.1:7003'], { SHEEPDOG_NODES: '127.0.0.1:7001' });
  t.same(given !== 'help' && given.nodes, ['127.0.0.1:7003'], '-a wins');
  const none = parseBenchArgs(args, {});
  t.equal(none !== 'help' && none.nodes, undefined, 'neither: the embedded cluster');
  const { sheep } = await withCluster(t);
  const r = await run(['bench', ...args.slice(0, -2), '--vdi', 'nosuch'], '', {
    env: { SHEEPDOG_NODES: sheep.addresses.join(',') },
  });
  t.equal(r.code, ExitCode.NOT_FOUND, `the cluster of $SHEEPDOG_NODES was asked: ${r.stderr}`);
});

t.test('10: cluster info of an unformatted cluster: exit 2, nothing on stdout', async (t) => {
  const ac = new AbortController();
  let info: Run | undefined;
  let json: Run | undefined;
  const served = run(['serve', '--port', '0', '--nodes', '1', '--unformatted'], '', {
    signal: ac.signal,
    onListening: (addrs) => {
      void (async () => {
        info = await run(['-a', addrs.join(','), 'cluster', 'info']);
        json = await run(['-a', addrs.join(','), 'cluster', 'info', '--json']);
      })().finally(() => ac.abort());
    },
  });
  t.equal((await served).code, 0);
  t.equal(info?.code, ExitCode.UNAVAILABLE);
  t.equal(info?.stdout.length, 0, 'no table of zeros');
  t.match(info?.stderr, /^sheepdog: cluster info: the cluster is not running: waiting-for-format/);
  t.equal(json?.code, ExitCode.UNAVAILABLE);
  t.equal(json?.stdout.length, 0, 'nor JSON');
});

t.test('progress bars on write from stdin, read to stdout, import and export (TTY only); write --json', async (t) => {
  t.match(progressLine('copy', 50, 100, 1), /^copy \[#{12}-{12}\] {2}50% 50 B \/ 100 B 50 B\/s ETA 00:01$/);
  t.match(progressLine('copy', 5 * MiB, undefined, 2), /^copy 5\.0 MiB 2\.5 MiB\/s 00:02$/, 'unknown total');
  t.ok(progressLine('x'.repeat(200), 1, 2, 1, 40).length <= 39, 'fits the terminal');
  const { sheep } = await withCluster(t);
  const a = ['-a', sheep.addresses.join(',')];
  t.equal((await run([...a, 'vdi', 'create', 'g', '8M'])).code, 0);
  const data = pattern(4 * MiB, 8);
  const w = await run([...a, 'vdi', 'write', 'g'], data, { tty: true });
  t.equal(w.code, 0, w.stderr);
  t.match(w.stderr, /write g 4\.0 MiB [\d.]+ [KMG]?i?B\/s \d\d:\d\d/, 'write: bytes, rate, elapsed (no total)');
  const wl = await run([...a, 'vdi', 'write', 'g', '0', '4M'], data, { tty: true });
  t.match(wl.stderr, /write g \[#+\] 100% 4\.0 MiB \/ 4\.0 MiB [\d.]+ \S+\/s ETA 00:00/, 'with LEN: a bar and ETA');
  const rd = await run([...a, 'vdi', 'read', 'g', '0', '4M'], '', { tty: true });
  t.ok(rd.stdout.equals(data));
  t.match(rd.stderr, /read g \[#+\] 100% 4\.0 MiB \/ 4\.0 MiB .*ETA/, 'read to stdout');
  const ex = await run([...a, 'vdi', 'export', 'g', '-'], '', { tty: true });
  t.match(ex.stderr, /export g \[#+\] 100% 8\.0 MiB \/ 8\.0 MiB/, 'export to stdout');
  t.equal((await run([...a, 'vdi', 'read', 'g', '0', '4M'])).stderr, '', 'nothing on a pipe');
  t.equal((await run([...a, 'vdi', 'read', 'g', '0', '4M', '--no-progress'], '', { tty: true })).stderr, '');
  const j = await run([...a, 'vdi', 'write', 'g', '1M', '--json'], 'hello');
  t.same(JSON.parse(j.stdout.toString()), { name: 'g', offset: MiB, bytes: 5 });
});
