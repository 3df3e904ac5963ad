// Backup / restore in dog 1.0's format, and diffVdi, against the embedded sheep.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import t from 'tap';
import {
  BACKUP_MAGIC,
  BackupFormatError,
  compactRange,
  encodeBackupHeader,
  encodeEndMarker,
  encodeRecordHeader,
  parseBackup,
} from '../../lib/client/backup.js';
import type { SheepdogClient } from '../../lib/client/client.js';
import { AbortError, InvalidArgumentError, NoVdiError } from '../../lib/errors.js';
import { MiB, pattern, withCluster } from '../helpers/cluster.js';

const FIXTURES = new URL('../fixtures/dog-backup/', import.meta.url);
/** sha256 of `dog vdi read -s TAG fixture` (16 MiB) on the cluster that wrote the fixtures (see its README). */
const DOG_SHA = {
  s1: '20c9b233ff27943d3d0a8a38d10040f83b79c50f5278095be205e4ef06025c5d',
  s2: '21a727af8aac5a3f44b559f57ab2a718f1b31bb95640c5233d5a95eb19afad5e',
};

async function readAll(client: SheepdogClient, name: string, snapshot?: string): Promise<Buffer> {
  const v = await client.openVdi(name, snapshot === undefined ? {} : { snapshot });
  try {
    return Buffer.from(await v.read(0, v.size));
  } finally {
    await v.close();
  }
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

async function names(client: SheepdogClient): Promise<string[]> {
  return (await client.listVdis()).map((v) => `${v.name}${v.snapshot ? '@' + (v.tag || v.snapId) : ''}`).sort();
}

t.test('codec: header, records, end marker and compaction as dog writes them', async (t) => {
  t.same([...encodeBackupHeader()], [1, 0, 0, 0, 0x92, 0x11, 0x92, 0x11]);
  t.equal(encodeBackupHeader().readUInt32LE(4), BACKUP_MAGIC);
  t.same([...encodeEndMarker()], [0xff, 0xff, 0xff, 0xff, ...new Array<number>(12).fill(0)]);
  t.same([...encodeRecordHeader(3, 512, 1024)].slice(0, 12), [3, 0, 0, 0, 0, 2, 0, 0, 0, 4, 0, 0]);
  const obj = Buffer.alloc(4096);
  t.same(
    compactRange(obj, undefined),
    { offset: 4096, length: 0 },
    'all zeros against none: nothing (dog: offset at the end)',
  );
  obj[1000] = 1;
  obj[2100] = 2;
  t.same(compactRange(obj, undefined), { offset: 512, length: 2048 }, 'sectors 1..4');
  const from = Buffer.from(obj);
  t.same(compactRange(obj, from), { offset: 4096, length: 0 }, 'equal to from: nothing');
  from[4095] = 9;
  t.same(compactRange(obj, from), { offset: 3584, length: 512 }, 'the last sector differs');
});

t.test('full + incremental chain restored to new VDIs equals the source byte for byte', async (t) => {
  const { client } = await withCluster(t);
  const size = 24 * MiB + 1536; // not a whole number of objects
  await client.createVdi('src', size);
  const v = await client.openVdi('src');
  await v.write(pattern(6 * MiB + 77, 1), 1000); // objects 0..1, unaligned
  await v.write(pattern(4096, 2), 20 * MiB);
  await v.write(pattern(1536, 3), size - 1536); // the tail of the last, partial object
  await client.snapshotVdi('src', 'base');
  await v.write(pattern(700, 4), 3 * MiB + 11); // object 0 rewritten in part
  await v.write(Buffer.alloc(8192), 1000); // zeros over data
  await v.write(pattern(MiB, 5), 12 * MiB); // a new object
  await v.discard(20 * MiB, 4 * MiB); // object 5 freed since base
  await client.snapshotVdi('src', 'next');
  await v.write(pattern(100, 6), 0); // working VDI moves on
  await v.close();

  const full = await client.backupVdi('src', { to: 'base' });
  t.equal(full.plan.objects, 4, 'full: the allocated objects');
  const fullBuf = await buffer(full);
  t.equal(full.stats.bytes, fullBuf.length);
  t.ok(full.stats.seconds >= 0);
  let seen: number[] = [];
  for await (const r of parseBackup(Readable.from([fullBuf]), { objectSize: 4 * MiB, objects: 7 })) seen.push(r.idx);
  t.same(seen, [0, 1, 5, 6], 'full: a record per allocated object');

  const progress: number[] = [];
  const inc = await client.backupVdi('src', { from: 'base', to: 'next', onProgress: (p) => progress.push(p.scanned) });
  const incBuf = await buffer(inc);
  seen = [];
  for await (const r of parseBackup(Readable.from([incBuf]))) seen.push(r.idx);
  t.same(seen, [0, 3, 5], 'incremental: rewritten, new and freed objects');
  t.same(progress, [1, 2, 3]);
  t.ok(incBuf.length < 4.1 * MiB, `incremental holds the changed sectors only (${incBuf.length} bytes)`);

  const diff = await client.diffVdi('src', 'base', 'next');
  t.same(
    diff.ranges.map((r) => [r.index, r.count]),
    [
      [0, 1],
      [3, 1],
      [5, 1],
    ],
  );
  t.equal(diff.objects, 3);
  const toWorking = await client.diffVdi('src', 'next');
  t.same(
    toWorking.ranges.map((r) => [r.index, r.offset, r.length]),
    [[0, 0, 4 * MiB]],
  );
  t.equal(diff.size, size);
  t.equal(diff.objectSize, 4 * MiB);

  // Full into a fresh VDI, snapshot it, incremental onto that snapshot.
  const r1 = await client.restoreVdi('copy', Readable.from([fullBuf]), { size });
  t.equal(r1.objects, 4);
  t.equal(r1.bytes, fullBuf.length);
  t.same(await readAll(client, 'copy'), await readAll(client, 'src', 'base'), 'full restore = base');
  await client.snapshotVdi('copy', 'base');
  const r2 = await client.restoreVdi('copy', Readable.from([incBuf]), { snapshot: 'base', into: 'copy2' });
  t.equal(r2.name, 'copy2');
  t.equal(r2.snapshot, false);
  t.same(await readAll(client, 'copy2'), await readAll(client, 'src', 'next'), 'base + incremental = next');

  // dog mode: the result is a new snapshot of the VDI; its working VDI re-made from its parent.
  const r3 = await client.restoreVdi('copy', Readable.from([incBuf]), { snapshot: 'base', tag: 'restored' });
  t.equal(r3.snapshot, true);
  t.ok(r3.workingVdiId);
  t.same(await readAll(client, 'copy', 'restored'), await readAll(client, 'src', 'next'), 'dog mode snapshot = next');
  t.same(await readAll(client, 'copy'), await readAll(client, 'src', 'base'), 'working VDI = its parent (base)');

  await t.rejects(client.restoreVdi('nope', Readable.from([fullBuf])), InvalidArgumentError, 'needs snapshot or size');
  await t.rejects(client.backupVdi('missing'), NoVdiError);
  const ac = new AbortController();
  ac.abort();
  await t.rejects(client.backupVdi('src', { signal: ac.signal }), AbortError);
});

t.test('a file dog 1.0.1 wrote restores, and equals what dog backed up', async (t) => {
  const { client } = await withCluster(t);
  const full = readFileSync(new URL('fixture-empty-s1.bak', FIXTURES));
  const incr = readFileSync(new URL('fixture-s1-s2.bak', FIXTURES));
  await client.restoreVdi('fixture', Readable.from([full]), { size: 16 * MiB });
  t.equal(sha(await readAll(client, 'fixture')), DOG_SHA.s1, 'dog -F empty -s s1, restored: s1');
  await client.snapshotVdi('fixture', 's1');
  await client.restoreVdi('fixture', Readable.from([incr]), { snapshot: 's1', into: 'fixture-s2' });
  t.equal(sha(await readAll(client, 'fixture-s2')), DOG_SHA.s2, 'dog -F s1 -s s2, restored on s1: s2');
  // And we write the same bytes dog wrote for the same change.
  await client.snapshotVdi('fixture-s2', 's2');
  await client.createVdi('again', 16 * MiB);
  await client.snapshotVdi('again', 'empty');
  await client.restoreVdi('again', Readable.from([full]), { snapshot: 'empty', into: 'again-s1' });
  await client.snapshotVdi('again-s1', 's1');
  t.same(await buffer(await client.backupVdi('again-s1', { to: 's1' })), full, 'our full backup = dog -F empty -s s1');
});

t.test('corrupt and truncated streams: typed error with the offset, nothing left behind', async (t) => {
  const { client } = await withCluster(t);
  const incr = readFileSync(new URL('fixture-s1-s2.bak', FIXTURES));
  const full = readFileSync(new URL('fixture-empty-s1.bak', FIXTURES));
  await client.restoreVdi('fx', Readable.from([full]), { size: 16 * MiB });
  await client.snapshotVdi('fx', 's1');
  const before = await names(client);
  const fxData = await readAll(client, 'fx');

  const cases: [string, Buffer, number, 'truncated' | 'corrupt'][] = [];
  cases.push(['truncated in data', incr.subarray(0, 3000), 3000, 'truncated']);
  cases.push(['no end marker', incr.subarray(0, incr.length - 16), incr.length - 16, 'truncated']);
  cases.push(['cut header', incr.subarray(0, 5), 5, 'truncated']);
  const magic = Buffer.from(incr);
  magic[5] = 0;
  cases.push(['bad magic', magic, 4, 'corrupt']);
  const reserved = Buffer.from(incr);
  reserved[8 + 12] = 1;
  cases.push(['reserved field', reserved, 20, 'corrupt']);
  const range = Buffer.from(incr);
  range.writeUInt32LE(4 * MiB + 512, 8 + 8); // length: offset+length past the object
  cases.push(['range past the object', range, 12, 'corrupt']);
  const idx = Buffer.from(incr);
  idx.writeUInt32LE(4, 8); // object 4 of a 4-object VDI
  cases.push(['object past the VDI', idx, 8, 'corrupt']);

  for (const [what, bytes, offset, reason] of cases) {
    for (const into of ['fx-new', undefined]) {
      const err = await client
        .restoreVdi('fx', Readable.from([bytes.subarray(0, 1000), bytes.subarray(1000)]), {
          snapshot: 's1',
          ...(into === undefined ? {} : { into }),
          force: true,
        })
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      t.ok(err instanceof BackupFormatError, `${what} (${into ?? 'dog mode'}): BackupFormatError`);
      t.equal((err as BackupFormatError).offset, offset, `${what}: offset ${offset}`);
      t.equal((err as BackupFormatError).reason, reason);
      t.match((err as Error).message, `at byte ${offset}`);
      t.same(await names(client), before, `${what} (${into ?? 'dog mode'}): no VDI left behind`);
    }
  }
  t.same(await readAll(client, 'fx'), fxData, 'the working VDI after failed dog-mode restores = its parent, s1');

  const kept = await client
    .restoreVdi('fx', Readable.from([incr.subarray(0, incr.length - 16)]), { snapshot: 's1', into: 'kept', keep: true })
    .catch((e: unknown) => e);
  t.ok(kept instanceof BackupFormatError);
  t.ok((await names(client)).includes('kept'), 'keep: the partial VDI stays');

  const seen: number[] = [];
  await t.rejects(
    (async () => {
      for await (const r of parseBackup(Readable.from([incr.subarray(0, 3000)]))) seen.push(r.idx);
    })(),
    BackupFormatError,
  );
  t.same(seen, [0, 1], 'records before the cut are read');
});
