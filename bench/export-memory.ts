/**
 * Memory while exporting a large VDI: the client's RSS must stay bounded by
 * the stream's read-ahead, not grow with the VDI. Each case runs as its own
 * process (bench/streams.ts --ops export) against a fresh embedded cluster,
 * on a preallocated VDI (every object is read from the cluster).
 *
 *   node dist/bench/export-memory.js [--sizes 1G,4G,8G] [--size 4G] [-a HOST:PORT,...]
 *
 * Cases: a sink that takes everything at once, for each of --sizes (the
 * peak must not grow with the size), and a sink throttled to 200 MiB/s for
 * --size (a slow disk: the read-ahead must stop, not pile up).
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { MiB, fmt, isMain, machine, markdownTable, parseFlags, saveResult, table, warnIfBusy } from './common.js';
import type { StreamResult } from './streams.js';

const run = promisify(execFile);

async function main(): Promise<void> {
  const { nodes, flags, values } = parseFlags(process.argv.slice(2), {
    flags: ['markdown'],
    values: ['size', 'sizes'],
  });
  const size = values.get('size') ?? '4G';
  const sizes = (values.get('sizes') ?? '1G,4G,8G').split(',').filter((x) => x !== '');
  const m = await machine();
  warnIfBusy(m);
  const script = fileURLToPath(new URL('./streams.js', import.meta.url));
  const cases: { name: string; size: string; args: string[] }[] = [
    ...sizes.map((sz) => ({ name: `${sz}, sink takes everything`, size: sz, args: [] })),
    { name: `${size}, sink throttled to 200 MiB/s`, size, args: ['--sink-mibps', '200'] },
  ];
  const rows: (StreamResult & { case: string })[] = [];
  for (const c of cases) {
    const args = [script, '--ops', 'export', '--prealloc', '--size', c.size, '--json', ...c.args];
    if (nodes) args.push('-a', nodes.join(','));
    const { stdout } = await run(process.execPath, ['--expose-gc', ...args], { maxBuffer: 4 * MiB });
    const line = stdout.split('\n').find((l) => l.startsWith('{'));
    if (!line) throw new Error(`${c.name}: no result`);
    rows.push({ case: c.name, ...(JSON.parse(line) as StreamResult) });
  }
  const header = ['export (VDI size, sink)', 'MiB/s', 'RSS before MiB', 'peak RSS MiB', 'growth MiB'];
  const cells = rows.map((r) => [
    r.case,
    fmt(r.mibps, 1),
    fmt(r.baseline_rss_mb),
    fmt(r.max_rss_mb),
    fmt(r.max_rss_mb - r.baseline_rss_mb),
  ]);
  process.stdout.write(
    `client RSS while exporting (vdi.createReadStream, default options)\n${m.cpu}, node ${m.node}\n\n`,
  );
  process.stdout.write(flags.has('markdown') ? markdownTable(header, cells) : table(header, cells));
  const file = saveResult('export-memory', {
    kind: 'export-memory',
    date: new Date().toISOString(),
    machine: m,
    rows,
  });
  process.stdout.write(`\nresults in ${file}\n`);
}

if (isMain(import.meta.url)) {
  main().catch((e: unknown) => {
    process.stderr.write(`export-memory: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exitCode = 1;
  });
}
