// `sheepdog nbd serve` as a real process: the URIs it prints, nbdinfo and
// qemu-io against them, effects through the SDK, SIGTERM drains and exits 0.
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import t from 'tap';
import { CLI, childEnv, ensureBuilt, sheepdog, withoutTapHooks } from './helpers.js';
import { MiB, pattern, withCluster } from '../helpers/cluster.js';

const exec = promisify(execFile);
const have = async (bin: string): Promise<boolean> =>
  exec('sh', ['-c', `command -v ${bin}`]).then(
    () => true,
    () => false,
  );
const nbdinfo = await have('nbdinfo');
const qemuIo = await have('qemu-io');

t.before(ensureBuilt);

interface Served {
  lines: string[];
  stderr: () => string;
  exited: Promise<number | null>;
  kill(sig: NodeJS.Signals): void;
}

/** Start `sheepdog -a NODES nbd serve ARGS`; resolves once it printed `want` lines. */
async function serve(nodes: readonly string[], args: string[], want: number): Promise<Served> {
  const env = childEnv();
  const [cmd, argv] = withoutTapHooks(process.execPath, [CLI, '-a', nodes.join(','), 'nbd', 'serve', ...args], env);
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], env });
  let out = '';
  let err = '';
  child.stderr.on('data', (b: Buffer) => {
    err += b.toString();
  });
  const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
  const lines = await new Promise<string[]>((resolve, reject) => {
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      const l = out.split('\n');
      if (l.length > want) resolve(l.slice(0, want));
    });
    child.on('close', () => reject(new Error(`nbd serve exited early: ${err}`)));
  });
  return { lines, stderr: () => err, exited, kill: (sig) => child.kill(sig) };
}

t.test('nbd serve: prints the URIs, nbdinfo and qemu-io use them, SIGTERM exits 0', async (t) => {
  const { sheep, client } = await withCluster(t);
  await client.createVdi('vol', 4 * MiB, { blockSizeShift: 20 });
  const v = await client.openVdi('vol');
  await v.write(pattern(MiB, 3), 0);
  await client.snapshotVdi('vol', 'base');
  await v.close();
  const s = await serve(sheep.addresses, ['--listen', '127.0.0.1:0', 'vol', 'vol@base'], 2);
  t.teardown(() => s.kill('SIGKILL'));
  t.match(s.lines[0], /^nbd:\/\/127\.0\.0\.1:\d+\/vol$/, 'the URI of each export');
  t.match(s.lines[1], /^nbd:\/\/127\.0\.0\.1:\d+\/vol%40base$/);
  const [uri, snapUri] = s.lines as [string, string];
  if (nbdinfo) {
    const info = JSON.parse((await exec('nbdinfo', ['--json', uri])).stdout) as {
      exports: { 'export-size': number; is_read_only: boolean }[];
    };
    t.match(info.exports[0], { 'export-size': 4 * MiB, is_read_only: false });
    const snap = JSON.parse((await exec('nbdinfo', ['--json', snapUri])).stdout) as {
      exports: { is_read_only: boolean }[];
    };
    t.equal(snap.exports[0]?.is_read_only, true, 'the snapshot is read-only');
  } else t.comment('skipped: nbdinfo missing');
  if (qemuIo) {
    await exec('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 1000 70000', uri]);
    const r = await client.openVdi('vol');
    t.ok(
      (await r.read(1000, 70000)).every((b) => b === 0x5a),
      'the SDK reads what qemu-io wrote',
    );
    await r.close();
  } else t.comment('skipped: qemu-io missing');
  s.kill('SIGTERM');
  t.equal(await s.exited, 0, 'SIGTERM: drained and exited 0');
  t.match(s.stderr(), /serving 2 exports over NBD/);
  t.match(s.stderr(), /SIGTERM: stopping/);
});

t.test('nbd serve --all --json --socket; usage errors; a missing export', async (t) => {
  const { sheep, client } = await withCluster(t);
  await client.createVdi('a', MiB);
  const dir = await mkdtemp(join(tmpdir(), 'nbd-cli-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const sock = join(dir, 'nbd.sock');
  const env = childEnv();
  const [cmd, argv] = withoutTapHooks(
    process.execPath,
    [CLI, '-a', sheep.addresses.join(','), 'nbd', 'serve', '--all', '--json', '--socket', sock, '--read-only'],
    env,
  );
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], env });
  t.teardown(() => child.kill('SIGKILL'));
  const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
  let out = '';
  const j = await new Promise<{ uri: string; all: boolean; readOnly: boolean; address: { path: string } }>(
    (resolve, reject) => {
      child.stdout.on('data', (b: Buffer) => {
        out += b.toString();
        try {
          resolve(JSON.parse(out) as never);
        } catch {
          // not complete yet
        }
      });
      child.on('close', () => reject(new Error('exited early')));
    },
  );
  t.match(j, { all: true, readOnly: true, address: { path: sock } });
  t.equal(j.uri, `nbd+unix:///?socket=${sock}`);
  if (nbdinfo) {
    const info = JSON.parse((await exec('nbdinfo', ['--json', `nbd+unix:///a?socket=${sock}`])).stdout) as {
      exports: { 'export-size': number; is_read_only: boolean }[];
    };
    t.match(info.exports[0], { 'export-size': MiB, is_read_only: true }, '--all serves a VDI by name, --read-only');
  } else t.comment('skipped: nbdinfo missing');
  child.kill('SIGINT');
  t.equal(await exited, 0, 'SIGINT exits 0');

  const nodes = sheep.addresses;
  const none = await sheepdog(nodes, ['nbd', 'serve']);
  t.equal(none.code, 64, 'no exports: usage');
  t.match(none.stderr, /give the exports/);
  const both = await sheepdog(nodes, ['nbd', 'serve', '--listen', '127.0.0.1:0', '--socket', sock, 'a']);
  t.equal(both.code, 64);
  const bad = await sheepdog(nodes, ['nbd', 'serve', '--listen', 'nope:port', 'a']);
  t.equal(bad.code, 64);
  t.match(bad.stderr, /--listen must be HOST:PORT/);
  const missing = await sheepdog(nodes, ['nbd', 'serve', '--listen', '127.0.0.1:0', 'a', 'nope']);
  t.not(missing.code, 0, 'a missing export fails at start');
  t.match(missing.stderr, /export "nope"/);
  t.equal(missing.code, 4, 'not found: exit 4');
  const help = await sheepdog(undefined, ['nbd', 'serve', '--help']);
  t.match(help.stdout.toString(), /Usage: sheepdog .*nbd serve \[NAME\[@TAG\]\.\.\.\]/);
});

t.test('nbd serve --tls-cert --tls-key [--tls-ca]: nbds:// URIs, nbdinfo over TLS; TLS usage errors', async (t) => {
  const { sheep, client } = await withCluster(t);
  await client.createVdi('a', MiB);
  const dir = fileURLToPath(new URL('../fixtures/tls/', import.meta.url));
  const creds = ['--tls-cert', join(dir, 'server-cert.pem'), '--tls-key', join(dir, 'server-key.pem')];
  const s = await serve(
    sheep.addresses,
    ['--listen', '127.0.0.1:0', ...creds, '--tls-ca', join(dir, 'ca-cert.pem'), 'a'],
    1,
  );
  const uri = s.lines[0] ?? '';
  t.match(uri, /^nbds:\/\/127\.0\.0\.1:\d+\/a$/, 'the URI says TLS');
  if (nbdinfo) {
    const info = JSON.parse((await exec('nbdinfo', ['--json', `${uri}?tls-certificates=${dir}`])).stdout) as {
      TLS: boolean;
      exports: { 'export-size': number }[];
    };
    t.equal(info.TLS, true);
    t.equal(info.exports[0]?.['export-size'], MiB, 'nbdinfo over TLS with the test client certificate');
    t.match(
      await exec('nbdinfo', [uri.replace('nbds://', 'nbd://')], { timeout: 20_000 }).then(
        () => 'it succeeded',
        (e: { stderr?: string }) => e.stderr,
      ),
      /opt_go/,
      'a plain client is refused',
    );
  } else t.comment('skipped: nbdinfo missing');
  t.match(s.stderr(), /over NBD with TLS/);
  s.kill('SIGTERM');
  t.equal(await s.exited, 0, 'SIGTERM exits 0');

  const nodes = sheep.addresses;
  for (const [args, msg] of [
    [['--tls-cert', join(dir, 'server-cert.pem')], /give both --tls-cert and --tls-key/],
    [['--tls-ca', join(dir, 'ca-cert.pem')], /need --tls-cert and --tls-key/],
    [['--tls-optional'], /need --tls-cert and --tls-key/],
    [
      ['--tls-cert', join(dir, 'nope.pem'), '--tls-key', join(dir, 'server-key.pem')],
      /--tls-cert: cannot read .*ENOENT/,
    ],
  ] as const) {
    const r = await sheepdog(nodes, ['nbd', 'serve', '--listen', '127.0.0.1:0', ...args, 'a']);
    t.equal(r.code, 64, args.join(' '));
    t.match(r.stderr, msg);
  }
  const badPem = await sheepdog(nodes, [
    'nbd',
    'serve',
    '--listen',
    '127.0.0.1:0',
    '--tls-cert',
    join(dir, 'server-cert.pem'),
    '--tls-key',
    join(dir, 'client-key.pem'),
    'a',
  ]);
  t.not(badPem.code, 0, 'a key that is not the certificate’s fails at start');
  t.match(badPem.stderr, /tls: /);
});
