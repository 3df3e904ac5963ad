/**
 * Backup throughput: client.backupVdi vs `dog vdi backup`, on the same real
 * cluster, the same snapshots, written to /dev/null. Needs a sheep build:
 *
 *   SHEEPDOG_PREFIX=/opt/sheepdog bash /work/shared/tools/sheep-cluster.sh start 3 2
 *   SHEEPDOG_PREFIX=/opt/sheepdog npm run build && node dist/bench/backup.js [--size-mib 256] [--runs 3]
 *
 * Without SHEEPDOG_PREFIX it says so and exits 0 (not part of npm test).
 * Full backup: `-F empty -s full` of a VDI filled with random data;
 * incremental: `-F full -s incr` after rewriting 1/8 of it.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { SheepdogClient } from '../lib/client/client.js';
import { MiB, fmt, isMain, machine, markdownTable, parseFlags, saveResult, table, warnIfBusy } from './common.js';

async function dogBackup(dog: string, from: string, to: string, name: string, addr: string[]): Promise<number> {
  const t0 = performance.now();
  await new Promise<void>((resolve, reject) => {
    const p = spawn(dog, ['vdi', 'backup', '-F', from, '-s', to, name, ...addr], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`dog vdi backup exited ${code}`))));
  });
  return (performance.now() - t0) / 1000;
}

async function ourBackup(c: SheepdogClient, from: string, to: string, name: string): Promise<[number, number]> {
  const t0 = performance.now();
  const s = await c.backupVdi(name, { from, to });
  await pipeline(s, createWriteStream('/dev/null'));
  return [(performance.now() - t0) / 1000, s.stats.bytes];
}

async function main(): Promise<void> {
  const prefix = process.env.SHEEPDOG_PREFIX;
  if (!prefix) {
    console.log('bench/backup: SHEEPDOG_PREFIX is not set (a sheep build and a running cluster are needed); skipped');
    return;
  }
  const f = parseFlags(process.argv.slice(2), { values: ['size-mib', 'runs'] });
  const sizeMiB = Number(f.values.get('size-mib') ?? 256);
  const runs = Number(f.values.get('runs') ?? 3);
  const node = f.nodes?.[0] ?? '127.0.0.1:7000';
  const [host = '127.0.0.1', port = '7000'] = node.split(':');
  const dog = `${prefix}/bin/dog`;
  const addr = ['-a', host, '-p', port];
  const m = await machine();
  warnIfBusy(m);
  const c = new SheepdogClient({ nodes: [node] });
  const name = `bench-backup-${process.pid}`;
  await c.createVdi(name, sizeMiB * MiB);
  try {
    await c.snapshotVdi(name, 'empty');
    const v = await c.openVdi(name);
    for (let off = 0; off < sizeMiB * MiB; off += 4 * MiB) await v.write(randomBytes(4 * MiB), off);
    await c.snapshotVdi(name, 'full');
    for (let off = 0; off < sizeMiB * MiB; off += 32 * MiB) await v.write(randomBytes(4 * MiB), off);
    await c.snapshotVdi(name, 'incr');
    await v.close();
    const rows: string[][] = [];
    const result: Record<string, unknown>[] = [];
    for (const [kind, from, to] of [
      ['full', 'empty', 'full'],
      ['incremental', 'full', 'incr'],
    ] as const) {
      const ours: number[] = [];
      const dogs: number[] = [];
      let bytes = 0;
      for (let i = 0; i < runs; i++) {
        const [s, b] = await ourBackup(c, from, to, name);
        ours.push(s);
        bytes = b;
        dogs.push(await dogBackup(dog, from, to, name, addr));
      }
      const best = (xs: number[]): number => Math.min(...xs);
      const oursMiBs = bytes / MiB / best(ours);
      const dogMiBs = bytes / MiB / best(dogs);
      rows.push([kind, fmt(bytes / MiB, 1), fmt(oursMiBs, 1), fmt(dogMiBs, 1), fmt(oursMiBs / dogMiBs, 2)]);
      result.push({ kind, bytes, ours: ours, dog: dogs, oursMiBs, dogMiBs });
    }
    const header = ['backup', 'MiB written', 'ours MiB/s', 'dog MiB/s', 'ours/dog'];
    console.log(table(header, rows));
    console.log(markdownTable(header, rows));
    console.log(
      `best of ${runs}; ${sizeMiB} MiB VDI; ${m.nproc} CPUs ${m.cpu}; busy ${(m.busyBefore * 100).toFixed(0)}% before the run`,
    );
    console.log(`saved ${saveResult('backup', { machine: m, sizeMiB, runs, result })}`);
  } finally {
    await c.deleteVdi(name).catch(() => {});
    for (const tag of ['incr', 'full', 'empty']) await c.deleteVdi(name, { snapshot: tag }).catch(() => {});
    await c.close();
    try {
      execFileSync(dog, ['vdi', 'list', ...addr], { stdio: 'ignore' });
    } catch {
      // only a check that dog still talks to the cluster
    }
  }
}

if (isMain(import.meta.url)) await main();
