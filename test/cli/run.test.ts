// runCli in-process (fake stdio): every command's help, argument handling,
// error mapping and output formats, plus the pieces (exit codes, progress, formatting).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import t from 'tap';
import { Result } from '../../protocol/constants.js';
import { commands } from '../../cli/commands/index.js';
import { CliError, ExitCode, UsageError, errorText, exitCodeFor } from '../../cli/exit.js';
import { formatDuration, formatSize, keyValues, table, toJson } from '../../cli/format.js';
import { createProgress } from '../../cli/progress.js';
import { type CliIO, cliClientOptions, runCli, version } from '../../cli/run.js';
import { ClusterNotReadyError } from '../../lib/driver/driver.js';
import {
  AbortError,
  ConnectionError,
  InvalidArgumentError,
  NoSpaceError,
  NoVdiError,
  SheepdogError,
  SheepdogResponseError,
  TimeoutError,
  VdiExistsError,
  responseError,
} from '../../lib/errors.js';
import { MiB, pattern, withCluster } from '../helpers/cluster.js';

interface Run {
  code: number;
  stdout: Buffer;
  stderr: string;
}

function fakeIO(
  input: Buffer | string = '',
  opts: { tty?: boolean; signal?: AbortSignal; onListening?: (a: readonly string[]) => void } = {},
) {
  const out: Buffer[] = [];
  let err = '';
  const stdout = new PassThrough();
  stdout.on('data', (b: Buffer) => out.push(b));
  const stderr = Object.assign(new PassThrough(), { isTTY: opts.tty === true, columns: 100 });
  stderr.on('data', (b: Buffer) => {
    err += b.toString();
  });
  const io: CliIO = { stdin: Readable.from([Buffer.from(input)]), stdout, stderr, env: {} };
  if (opts.signal) io.signal = opts.signal;
  if (opts.onListening) io.onListening = opts.onListening;
  return { io, result: (code: number): Run => ({ code, stdout: Buffer.concat(out), stderr: err }) };
}

async function run(args: string[], input?: Buffer | string, tty = false): Promise<Run> {
  const f = fakeIO(input, { tty });
  const code = await runCli(args, f.io);
  await new Promise((r) => setImmediate(r));
  return f.result(code);
}

t.test('help for every command, and for the groups', async (t) => {
  for (const c of commands) {
    const r = await run([...c.path, '--help']);
    t.equal(r.code, 0, `${c.path.join(' ')} --help`);
    t.match(r.stdout.toString(), `Usage: sheepdog`);
    t.match(r.stdout.toString(), c.path.join(' '));
    const h = await run(['help', ...c.path]);
    t.equal(h.stdout.toString(), r.stdout.toString(), `help ${c.path.join(' ')}`);
  }
  for (const g of [['vdi'], ['vdi', 'lock'], ['node'], ['cluster']]) {
    const r = await run([...g, '--help']);
    t.equal(r.code, 0);
    t.match(r.stdout.toString(), /Subcommands:/);
    t.equal((await run(['help', ...g])).code, 0);
  }
  t.match((await run(['help'])).stdout.toString(), /Commands:/);
  t.match((await run(['-h'])).stdout.toString(), /Commands:/);
  t.match((await run(['--help', 'vdi', 'list'])).stdout.toString(), /vdi list/, 'global --help before the command');
  t.equal((await run(['help', 'nope'])).code, 64);
  t.match((await run(['-V'])).stdout.toString(), version());
  t.match(version(), /^\d+\.\d+\.\d+/);
});

t.test('usage errors', async (t) => {
  const cases: [string[], RegExp][] = [
    [[], /no command given/],
    [['nope'], /unknown command "nope"/],
    [['vdi'], /vdi: missing subcommand/],
    [['vdi', 'frob'], /unknown subcommand "frob"/],
    [['vdi', 'create', 'x'], /missing arguments/],
    [['vdi', 'delete', 'a', 'b'], /too many arguments/],
    [['vdi', 'create', 'x', 'ten'], /SIZE: cannot parse/],
    [['vdi', 'list', '--frob'], /Unknown option '--frob'/],
    [['vdi', 'delete', 'x', '--json'], /has no --json output/],
    [['--timeout', 'soon', 'vdi', 'list'], /--timeout must be milliseconds/],
    [['-a', 'host:notaport', 'vdi', 'list'], /invalid port/],
    [['--bogus', 'vdi', 'list'], /Unknown option/],
    [['vdi', 'clone', 'a', 'b'], /needs --snapshot/],
    [['vdi', 'rollback', 'a'], /needs --snapshot/],
    [['vdi', 'snapshot', 'a'], /needs --tag/],
    [['vdi', 'create', 'x', '1G', '-z', 'big'], /--block-size-shift must be a whole number/],
    [['vdi', 'setattr', 'x', 'k', 'v', '--delete'], /takes no VALUE/],
    [['serve', '--port', '70000'], /--port must be/],
    [['serve', '--port', '65535', '--nodes', '3'], /passes port 65535/],
  ];
  for (const [args, re] of cases) {
    const r = await run(args);
    t.equal(r.code, ExitCode.USAGE, `${args.join(' ')}: 64`);
    t.match(r.stderr, re);
    t.match(r.stderr, /^sheepdog/);
  }
});

t.test('lifecycle and data commands in-process: text output, options, exit codes', async (t) => {
  const { sheep, client } = await withCluster(t);
  const a = ['-a', sheep.addresses.join(',')];
  const dir = mkdtempSync(join(tmpdir(), 'sheepdog-run-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const ok = async (args: string[], input?: Buffer | string): Promise<Run> => {
    const r = await run([...a, ...args], input);
    t.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    return r;
  };

  await ok(['vdi', 'create', 'a', '64M']);
  await ok(['vdi', 'create', 'b', '1G', '-c', '3', '-z', '21']);
  t.equal((await run([...a, 'vdi', 'create', 'a', '1M'])).code, ExitCode.EXISTS);
  await ok(['vdi', 'snapshot', 'a', '-s', 'first']);
  t.equal((await run([...a, 'vdi', 'snapshot', 'a', '--tag', 'first'])).code, ExitCode.EXISTS, 'tag taken');
  await ok(['vdi', 'clone', 'a', 'c', '--snapshot', '1']);
  const noTag = await run([...a, 'vdi', 'clone', 'a', 'd', '--snapshot', 'nope']);
  t.equal(noTag.code, ExitCode.NOT_FOUND);
  t.match(noTag.stderr, /^sheepdog: vdi clone a: .*\(NO_TAG\)\n$/);

  const table = (await ok(['vdi', 'list'])).stdout.toString();
  t.match(
    table,
    /^s +a +1 +64\.0 MiB +0 B +0 B +\d{4}-\d\d-\d\d \d\d:\d\d +[0-9a-f]{6} +2 +first +22$/m,
    'snapshot row',
  );
  t.match(table, /^ +a +2 +64\.0 MiB/m, 'working row');
  t.match(table, /^ +b +1 +1\.0 GiB .* 3 +21$/m);
  t.match(table, /^c +c +1 /m, 'clone row');
  t.equal(JSON.parse((await ok(['vdi', 'list', 'b', '--json'])).stdout.toString()).length, 1, 'list NAME filters');
  const snapInfo = (await ok(['vdi', 'info', 'a', '--snapshot', 'first'])).stdout.toString();
  t.match(snapInfo, /Type: +snapshot/);
  t.match(snapInfo, /Tag: +first/);
  t.match(snapInfo, /Snapshot taken: /);
  t.match((await ok(['vdi', 'info', 'c'])).stdout.toString(), /Type: +clone\n[\s\S]*Parent VDI id: +[0-9a-f]{6}/);

  await ok(['vdi', 'resize', 'a', '128M']);
  const shrink = await run([...a, 'vdi', 'resize', 'a', '1M']);
  t.equal(shrink.code, ExitCode.USAGE, 'shrinking is a usage error');
  t.match(shrink.stderr, /shrinking/);
  await ok(['vdi', 'rollback', 'a', '-s', 'first']);
  t.equal((await client.getVdi('a')).size, 64 * MiB, 'rolled back');

  // read/write with OFFSET and LEN
  const data = pattern(3 * MiB, 9);
  await ok(['vdi', 'write', 'b', '1M'], data);
  t.ok((await ok(['vdi', 'read', 'b', '1M', '3M'])).stdout.equals(data));
  await ok(['vdi', 'write', 'b', '1K', '5'], 'hello, world');
  t.equal(
    (await ok(['vdi', 'read', 'b', '1024', '7'])).stdout.toString('latin1'),
    'hello\0\0',
    'only LEN bytes written',
  );
  t.equal((await ok(['vdi', 'read', 'b', '0', '0'])).stdout.length, 0, 'LEN 0');
  await ok(['vdi', 'write', 'b', '0', '0'], 'xyz');
  t.equal((await ok(['vdi', 'read', 'b', '0', '3'])).stdout.toString(), '\0\0\0', 'LEN 0 writes nothing');
  t.equal((await ok(['vdi', 'read', 'a', '--snapshot', 'first', '0', '4K'])).stdout.length, 4096, 'read a snapshot');
  t.equal((await run([...a, 'vdi', 'read', 'a', '63M', '2M'])).code, ExitCode.USAGE, 'read past the end');
  t.equal((await run([...a, 'vdi', 'write', 'a', '63M', '2M'])).code, ExitCode.USAGE, 'LEN past the end');
  t.equal(
    (await run([...a, 'vdi', 'write', 'a', '63M'], Buffer.alloc(2 * MiB, 1))).code,
    ExitCode.USAGE,
    'input past the end',
  );
  const missing = await run([...a, 'vdi', 'read', 'nope']);
  t.equal(missing.code, ExitCode.NOT_FOUND);
  t.equal(missing.stdout.length, 0);

  // import/export: progress on a (fake) terminal, stdin/stdout, errors
  const file = join(dir, 'in.raw');
  writeFileSync(file, Buffer.concat([pattern(MiB, 1), Buffer.alloc(2 * MiB), pattern(MiB, 2)]));
  const imp = await run([...a, 'vdi', 'import', 'w', file], '', true);
  t.equal(imp.code, 0, imp.stderr);
  t.match(imp.stderr, /import w \[#+\] 100% 4\.0 MiB \/ 4\.0 MiB \S+ \S+\/s ETA 00:00/, 'progress bar on a TTY');
  const outFile = join(dir, 'out.raw');
  const exp = await run([...a, 'vdi', 'export', 'w', outFile], '', true);
  t.equal(exp.code, 0, exp.stderr);
  t.match(exp.stderr, /export w \[#+\] 100%/);
  t.ok(readFileSync(outFile).equals(readFileSync(file)));
  t.equal((await run([...a, 'vdi', 'export', 'w', outFile, '--no-progress'], '', true)).stderr, '', '--no-progress');
  await ok(['vdi', 'import', 'w', '-'], pattern(MiB, 3));
  t.ok(
    (await ok(['vdi', 'read', 'w', '0', '1M'])).stdout.equals(pattern(MiB, 3)),
    'import from stdin into an existing VDI',
  );
  await ok(['vdi', 'snapshot', 'w', '-s', 's']);
  await ok(['vdi', 'write', 'w'], Buffer.alloc(MiB, 0xff));
  t.ok(
    (await ok(['vdi', 'export', 'w', '-', '-s', 's'])).stdout.subarray(0, MiB).equals(pattern(MiB, 3)),
    'export a snapshot to stdout',
  );
  const small = await run([...a, 'vdi', 'import', 'a', join(dir, 'big.raw')]);
  t.equal(small.code, ExitCode.NOT_FOUND, 'missing file');
  writeFileSync(join(dir, 'big.raw'), Buffer.alloc(65 * MiB, 1));
  const tooBig = await run([...a, 'vdi', 'import', 'a', join(dir, 'big.raw')]);
  t.equal(tooBig.code, ExitCode.USAGE, 'file larger than the VDI');
  t.match(tooBig.stderr, /larger than VDI a/);
  t.equal((await run([...a, 'vdi', 'import', 'new', '-'], 'x')).code, ExitCode.NOT_FOUND, 'stdin import needs the VDI');
  const empty = join(dir, 'empty.raw');
  writeFileSync(empty, '');
  t.equal((await run([...a, 'vdi', 'import', 'e', empty])).code, ExitCode.USAGE, 'empty file');
  t.equal((await run([...a, 'vdi', 'import', 'e', dir])).code, ExitCode.USAGE, 'a directory');
  t.equal(
    (await run([...a, 'vdi', 'export', 'w', join(dir, 'no', 'such', 'dir.raw')])).code,
    ExitCode.FAILURE,
    'cannot create',
  );
  t.notOk(
    (await client.listVdis()).some((v) => v.name === 'e' || v.name === 'new'),
    'failed imports create nothing',
  );

  // attributes
  await ok(['vdi', 'setattr', 'a', 'owner', 'alice']);
  t.equal((await ok(['vdi', 'getattr', 'a', 'owner'])).stdout.toString(), 'alice');
  t.equal((await run([...a, 'vdi', 'setattr', 'a', 'owner', 'bob', '-x'])).code, ExitCode.EXISTS, 'exclusive');
  await ok(['vdi', 'setattr', 'a', 'owner', '--delete']);
  t.equal((await run([...a, 'vdi', 'getattr', 'a', 'owner'])).code, ExitCode.NOT_FOUND, 'deleted');
  await ok(['vdi', 'setattr', 'a', 'k', 'v', '--snapshot', 'first']);
  t.equal((await ok(['vdi', 'getattr', 'a', 'k', '-s', 'first'])).stdout.toString(), 'v', 'attributes of a snapshot');

  // locks (none on a cluster without locking), nodes, cluster
  t.match((await ok(['vdi', 'lock', 'list'])).stdout.toString(), /^Name +Tag +Id +VDI id +State +Owners\n$/);
  await ok(['vdi', 'lock', 'unlock', 'a']);
  t.match((await ok(['node', 'list'])).stdout.toString(), /Id +Host:Port +V-Nodes +Zone\n +0 +127\.0\.0\.1:/);
  t.match((await ok(['node', 'info'])).stdout.toString(), /^Total +/m);
  const ci = (await ok(['cluster', 'info'])).stdout.toString();
  t.match(ci, /Cluster status: +running/);
  t.match(ci, /VDI locking: +off/);

  await ok(['vdi', 'delete', 'a', '--snapshot', 'first']);
  await ok(['vdi', 'delete', 'c']);
  t.equal((await run([...a, 'vdi', 'delete', 'c'])).code, ExitCode.NOT_FOUND);

  const f = fakeIO();
  f.io.env = { SHEEPDOG_NODES: sheep.addresses.join(' ') };
  t.equal(await runCli(['node', 'list'], f.io), 0, 'SHEEPDOG_NODES, space separated');
});

t.test('serve in-process, stopped by the signal', async (t) => {
  const ac = new AbortController();
  let addrs: readonly string[] = [];
  const f = fakeIO('', {
    signal: ac.signal,
    onListening: (a) => {
      addrs = a;
      ac.abort();
    },
  });
  const code = await runCli(
    ['serve', '--port', '0', '--nodes', '1', '--lock', '--unformatted', '-z', '21', '--host', '127.0.0.1'],
    f.io,
  );
  t.equal(code, 0);
  t.equal(addrs.length, 1);
  const r = f.result(code);
  t.equal(r.stdout.toString(), `${addrs[0]}\n`, 'addresses on stdout');
  t.match(r.stderr, /serving 1 node \(unformatted\)/);

  // an unformatted cluster: cluster info exits 2 and says why
  const sheepDir = mkdtempSync(join(tmpdir(), 'sheepdog-serve-'));
  t.teardown(() => rmSync(sheepDir, { recursive: true, force: true }));
  const ac2 = new AbortController();
  let info: Run | undefined;
  const g = fakeIO('', {
    signal: ac2.signal,
    onListening: (a) => {
      run(['-a', a.join(','), 'cluster', 'info']).then((r) => {
        info = r;
        ac2.abort();
      });
    },
  });
  t.equal(
    await runCli(['serve', '--port', '0', '--nodes', '1', '--unformatted', '--dir', sheepDir, '--json'], g.io),
    0,
  );
  t.ok(info);
  t.not(info?.code, 0, 'cluster info of an unformatted cluster fails');
  t.equal(info?.code, ExitCode.UNAVAILABLE);
});

t.test('exit codes by error class', async (t) => {
  t.equal(exitCodeFor(new UsageError('x')), 64);
  t.equal(exitCodeFor(new CliError('x', 7)), 7);
  t.equal(exitCodeFor(new NoVdiError('v')), ExitCode.NOT_FOUND);
  t.equal(exitCodeFor(responseError(Result.NO_TAG)), ExitCode.NOT_FOUND);
  t.equal(exitCodeFor(responseError(Result.NO_OBJ)), ExitCode.NOT_FOUND);
  t.equal(exitCodeFor(new VdiExistsError('v')), ExitCode.EXISTS);
  t.equal(exitCodeFor(new NoSpaceError()), ExitCode.FULL);
  t.equal(exitCodeFor(responseError(Result.FULL_VDI)), ExitCode.FULL);
  t.equal(exitCodeFor(responseError(Result.WAIT_FOR_FORMAT)), ExitCode.UNAVAILABLE);
  t.equal(exitCodeFor(responseError(Result.SHUTDOWN)), ExitCode.UNAVAILABLE);
  t.equal(exitCodeFor(responseError(Result.INVALID_PARMS)), ExitCode.USAGE);
  t.equal(exitCodeFor(responseError(Result.EIO)), ExitCode.FAILURE);
  t.equal(exitCodeFor(new ConnectionError('refused', 'h:1', { reason: 'connect' })), ExitCode.UNAVAILABLE);
  t.equal(exitCodeFor(new TimeoutError()), ExitCode.UNAVAILABLE);
  t.equal(exitCodeFor(new ClusterNotReadyError('x', 'unformatted')), ExitCode.UNAVAILABLE);
  t.equal(exitCodeFor(new InvalidArgumentError('x')), ExitCode.USAGE);
  t.equal(exitCodeFor(new AbortError()), ExitCode.INTERRUPTED);
  t.equal(exitCodeFor(new SheepdogError('x')), ExitCode.FAILURE);
  t.equal(exitCodeFor(Object.assign(new Error('x'), { code: 'ENOENT' })), ExitCode.NOT_FOUND);
  t.equal(exitCodeFor(Object.assign(new Error('x'), { code: 'EEXIST' })), ExitCode.EXISTS);
  t.equal(exitCodeFor(Object.assign(new Error('x'), { code: 'ENOSPC' })), ExitCode.FULL);
  t.equal(exitCodeFor(Object.assign(new Error('x'), { code: 'ABORT_ERR' })), ExitCode.INTERRUPTED);
  t.equal(exitCodeFor('weird'), ExitCode.FAILURE);
});

t.test('error text', async (t) => {
  t.equal(errorText(new NoVdiError('VDI x')), 'No VDI found (NO_VDI)', 'generic context dropped');
  t.equal(errorText(new SheepdogResponseError(Result.VDI_EXIST, 'create VDI x')), 'VDI exists already (VDI_EXIST)');
  t.equal(
    errorText(new SheepdogResponseError(Result.NO_TAG, 'snapshot t of VDI x')),
    'snapshot t of VDI x: Failed to find requested tag (NO_TAG)',
    'informative context kept',
  );
  t.equal(errorText(new SheepdogResponseError(Result.EIO)), 'I/O error (EIO)');
  t.match(
    errorText(new ConnectionError('no node', undefined, { reason: 'no-node' })),
    /^cannot reach the cluster: no node/,
  );
  t.equal(errorText(Object.assign(new Error('open failed'), { code: 'EACCES' })), 'open failed (EACCES)');
  t.equal(errorText(42), '42');
});

t.test('formatting helpers and the progress line', async (t) => {
  t.equal(formatSize(512), '512 B');
  t.equal(formatSize(4 * 2 ** 30), '4.0 GiB');
  t.equal(formatSize(1536), '1.5 KiB');
  t.equal(formatDuration(12.4), '12 ms');
  t.equal(formatDuration(1500), '1.50 s');
  t.equal(formatDuration(25_000), '25.0 s');
  t.equal(
    table(
      ['A', 'Bee'],
      [
        ['1', '2'],
        ['333', '4'],
      ],
      ['right'],
    ),
    '  A  Bee\n  1  2\n333  4\n',
  );
  t.equal(
    keyValues([
      ['a', '1'],
      ['long', '2'],
    ]),
    'a:    1\nlong: 2\n',
  );
  t.equal(toJson({ n: 1n, d: new Date(0) }), '{\n  "n": 1,\n  "d": "1970-01-01T00:00:00.000Z"\n}\n');

  let written = '';
  const tty = Object.assign(new PassThrough(), { isTTY: true, columns: 40 });
  tty.on('data', (b: Buffer) => {
    written += b.toString();
  });
  const p = createProgress('copy', 100, tty);
  p.update(50);
  p.stop(false);
  await new Promise((r) => setImmediate(r));
  t.ok(written.endsWith('\x1b[2K'), 'a failed transfer clears the line (cli-progress)');
  t.match(written, /copy \[#+-+\]/, 'a bar was drawn');
  const off = createProgress('copy', 100, new PassThrough());
  off.update(1);
  off.stop(true);
  t.pass('no-op when not a TTY');
});

t.test('bench loads cli/bench lazily, or says it is absent', async (t) => {
  const r = await run(['bench', '--help']);
  if (r.code === 0) t.pass('bench module present');
  else {
    t.equal(r.code, ExitCode.FAILURE);
    t.match(
      r.stderr,
      /sheepdog: bench: (the benchmark module \(lib\/cli\/bench\) is not part of this build|.*runBench)/,
    );
  }
});

t.test('client options fail fast', async (t) => {
  const o = cliClientOptions(['127.0.0.1:7000'], 5000);
  t.equal(o.requestTimeout, 5000);
  t.equal(o.connectTimeout, 5000);
  const rs = o.reconnectStrategy as (n: number) => number | false;
  t.equal(typeof rs(0), 'number');
  t.equal(rs(2), false, 'a node is given up after three failed attempts');
});

t.test('errors of commands map to codes in-process too', async (t) => {
  const { sheep } = await withCluster(t);
  const a = ['-a', sheep.addresses.join(',')];
  const r = await run([...a, 'vdi', 'info', 'nosuch']);
  t.equal(r.code, ExitCode.NOT_FOUND);
  t.equal(r.stderr, 'sheepdog: vdi info nosuch: No VDI found (NO_VDI)\n');
  t.equal((await run([...a, 'vdi', 'create', 'x'.repeat(300), '1G'])).code, ExitCode.USAGE, 'name too long');
  t.ok(new InvalidArgumentError('x') instanceof SheepdogError);
});
