// `sheepdog vdi backup | restore` in-process (fake stdio) against the embedded sheep.
import { readFileSync } from 'node:fs';
import { PassThrough, Readable } from 'node:stream';
import t from 'tap';
import { type CliIO, runCli } from '../../cli/run.js';
import { MiB, pattern, withCluster } from '../helpers/cluster.js';

const FIXTURES = new URL('../fixtures/dog-backup/', import.meta.url);

async function run(args: string[], input: Buffer = Buffer.alloc(0), tty = false) {
  const out: Buffer[] = [];
  let err = '';
  const stdout = new PassThrough();
  stdout.on('data', (b: Buffer) => out.push(b));
  const stderr = Object.assign(new PassThrough(), { isTTY: tty, columns: 100 });
  stderr.on('data', (b: Buffer) => {
    err += b.toString();
  });
  const io: CliIO = { stdin: Readable.from([input]), stdout, stderr, env: {} };
  const code = await runCli(args, io);
  await new Promise((r) => setImmediate(r));
  return { code, stdout: Buffer.concat(out), stderr: err };
}

t.test('vdi backup -F/-s > file, vdi restore -s < file, --json summaries, exit codes', async (t) => {
  const { sheep, client } = await withCluster(t);
  const a = ['-a', sheep.addresses.join(',')];
  await client.createVdi('vol', 16 * MiB);
  const v = await client.openVdi('vol');
  await v.write(pattern(5 * MiB, 1), 4096);
  await client.snapshotVdi('vol', 'mon');
  await v.write(pattern(8192, 2), 9 * MiB);
  await client.snapshotVdi('vol', 'tue');
  await v.close();

  const full = await run([...a, 'vdi', 'backup', '-s', 'mon', 'vol', '--json']);
  t.equal(full.code, 0, full.stderr);
  const sum = JSON.parse(full.stderr) as { objects: number; bytes: number; seconds: number };
  t.equal(sum.objects, 2);
  t.equal(sum.bytes, full.stdout.length, '--json on stderr; bytes = the file');
  t.ok(sum.seconds >= 0);
  const incr = await run([...a, 'vdi', 'backup', '-F', 'mon', '-s', 'tue', 'vol']);
  t.equal(incr.code, 0);
  t.equal(incr.stdout.length, 8 + 16 + 8192 + 16, 'one record of the changed sectors');

  const r1 = await run([...a, 'vdi', 'restore', '--size', '16M', 'copy', '--json'], full.stdout);
  t.equal(r1.code, 0, r1.stderr);
  t.match(JSON.parse(r1.stdout.toString()), { name: 'copy', objects: 2, bytes: full.stdout.length });
  await client.snapshotVdi('copy', 'mon');
  const r2 = await run([...a, 'vdi', 'restore', '-s', 'mon', '--into', 'copy-tue', 'copy'], incr.stdout);
  t.equal(r2.code, 0, r2.stderr);
  const read = async (name: string, snapshot?: string) => {
    const h = await client.openVdi(name, snapshot === undefined ? {} : { snapshot });
    const b = Buffer.from(await h.read(0, h.size));
    await h.close();
    return b;
  };
  t.same(await read('copy-tue'), await read('vol', 'tue'), 'restored chain = tue');

  // dog style: a new snapshot of the VDI, tagged here.
  const r3 = await run([...a, 'vdi', 'restore', '-s', 'mon', '--snapshot-tag', 'back', 'copy'], incr.stdout);
  t.equal(r3.code, 0, r3.stderr);
  t.match(r3.stderr, /restored copy as a new snapshot/);
  t.same(await read('copy', 'back'), await read('vol', 'tue'));

  // dog's own file
  const dogFull = readFileSync(new URL('fixture-empty-s1.bak', FIXTURES));
  t.equal((await run([...a, 'vdi', 'restore', '--size', '16M', 'fromdog'], dogFull)).code, 0);

  const cut = await run([...a, 'vdi', 'restore', '-s', 'mon', '--into', 'cut', 'copy'], incr.stdout.subarray(0, 100));
  t.equal(cut.code, 1, 'a cut stream fails');
  t.match(cut.stderr, /truncated at byte 100/);
  t.notOk(
    (await client.listVdis()).some((x) => x.name === 'cut'),
    'and leaves nothing behind',
  );

  t.equal((await run([...a, 'vdi', 'restore', 'copy'], incr.stdout)).code, 64, 'no -s, no --size: usage');
  t.equal((await run([...a, 'vdi', 'backup', '-s', 'nope', 'vol'])).code, 4, 'unknown snapshot: not found');
  const tty = await run([...a, 'vdi', 'backup', 'vol'], Buffer.alloc(0), true);
  t.equal(tty.code, 0, 'a progress bar on a terminal stderr');
  t.match(tty.stderr, /backup vol/);
});
