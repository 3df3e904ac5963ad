// How one-shot commands start.
// - They load only what they use: the command table names every command
//   without importing it, and `vdi list` (a real process of the ESM entry,
//   with a module hook that records every module it resolves) never loads the
//   NBD server, the embedded sheep, progress bars, the benchmark or the data
//   path. The bundle keeps those boundaries (an import() is a lazy require in
//   it): through the bin, `vdi list` requires none of what they need.
// - The bin (dist/cli/sheepdog.cjs) runs that bundle with V8's code cache, and
//   prints what the ESM entry prints; without a bundle, with an out-of-date
//   one, or with a cache V8 refuses or that belongs to another bundle, it
//   still runs the right code.
// Timing is bench/startup.ts's business, not this test's.
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import t from 'tap';
import { commandTable } from '../../cli/commands/index.js';
import { startMemorySheep } from '../../testing/index.js';
import type { MemorySheep } from '../../testing/types.js';
import { BUNDLE, CLI, MAIN, ROOT, ensureBuilt, runNode, sheepdog } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'sheepdog-lazy-'));
let sheep: MemorySheep;

t.before(async () => {
  await ensureBuilt();
  sheep = await startMemorySheep({ nodes: 1, copies: 1 });
});
t.teardown(async () => {
  await sheep?.close();
  rmSync(dir, { recursive: true, force: true });
});

t.test('every entry of the table matches the spec its module exports', async (t) => {
  const seen = new Set<string>();
  for (const e of commandTable) {
    const spec = await e.load();
    const what = e.path.join(' ');
    t.strictSame(spec.path, e.path, `${what}: path`);
    t.equal(spec.args, e.args, `${what}: args`);
    t.equal(spec.summary, e.summary, `${what}: summary`);
    t.notOk(seen.has(what), `${what}: listed once`);
    seen.add(what);
  }
});

/** Run the built CLI's ESM entry with a hook that logs every module it resolves; the URLs under dist/ and node_modules/. */
async function loaded(args: string[]): Promise<{ code: number | null; modules: string[]; stdout: string }> {
  const log = join(dir, `loaded-${Math.random().toString(36).slice(2)}.txt`);
  const hooks = join(dir, 'hooks.mjs');
  writeFileSync(
    hooks,
    "import { appendFileSync } from 'node:fs';\n" +
      'export async function resolve(spec, ctx, next) {\n' +
      '  const r = await next(spec, ctx);\n' +
      "  appendFileSync(process.env.SHEEPDOG_TEST_LOADED, r.url + '\\n');\n" +
      '  return r;\n' +
      '}\n',
  );
  const register = join(dir, 'register.mjs');
  writeFileSync(
    register,
    `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(hooks).href)});\n`,
  );
  writeFileSync(log, '');
  const r = await runNode(MAIN, ['-a', sheep.addresses.join(','), ...args], {
    env: {
      SHEEPDOG_TEST_LOADED: log,
      NODE_OPTIONS: `${process.env['NODE_OPTIONS'] ?? ''} --import ${pathToFileURL(register).href}`,
    },
  });
  const modules = [
    ...new Set(
      readFileSync(log, 'utf8')
        .split('\n')
        .filter((u) => /[\\/](dist|node_modules)[\\/]/.test(u) && !/[\\/]node_modules[\\/](tap|@tapjs)/.test(u)),
    ),
  ];
  return { code: r.code, modules, stdout: r.stdout.toString() };
}

const NOT_FOR_ONE_SHOT = [
  /node_modules[\\/]cli-progress/,
  /dist[\\/]cli[\\/]bench[\\/]/,
  /dist[\\/]cli[\\/](progress|transfer)\.js/,
  /dist[\\/]testing[\\/]/,
  /dist[\\/]lib[\\/]nbd[\\/]/,
  // The inode index classes too: listing flat VDIs (all the cluster has here) counts the index bytes itself;
  // only a hyper volume's B-tree loads vdi-index.js.
  /dist[\\/]lib[\\/]vdi[\\/](vdi|core|write-path|locks|vdi-index)\.js/,
  /dist[\\/]lib[\\/]client[\\/]backup\.js/,
  /dist[\\/]lib[\\/]index\.js/,
  /dist[\\/]cli[\\/]commands[\\/](?!vdi\.js|index\.js|args\.js)/,
];

t.test('vdi list loads only the vdi commands, the client and the transport', async (t) => {
  const c = new (await import('../../lib/client/client.js')).SheepdogClient({ nodes: [...sheep.addresses] });
  await c.createVdi('lazy1', 2 ** 20);
  await c.close();
  const r = await loaded(['vdi', 'list']);
  t.equal(r.code, 0);
  t.match(r.stdout, /lazy1/);
  t.ok(
    r.modules.some((u) => u.endsWith('/dist/lib/client/client.js')),
    'the hook saw the modules',
  );
  for (const re of NOT_FOR_ONE_SHOT) {
    t.same(
      r.modules.filter((u) => re.test(u)),
      [],
      `not loaded: ${re.source}`,
    );
  }
});

t.test('help and --version load neither the SDK nor a command module', async (t) => {
  for (const args of [['--help'], ['--version'], ['vdi', '--help']]) {
    const r = await loaded(args);
    t.equal(r.code, 0, args.join(' '));
    t.same(
      r.modules.filter((u) =>
        /dist[\\/](lib[\\/](client|transport|vdi|nbd)|testing)[\\/]|commands[\\/](?!index\.js)|cli-progress/.test(u),
      ),
      [],
      `${args.join(' ')}: no SDK, no command module`,
    );
  }
});

// listVdis reads each inode's header with the first 4 KiB of its index, and the
// rest of a longer index in a second read: its used/shared must be getVdi's.
t.test('vdi list --json: used and shared as getVdi, past the first 4 KiB of the index too', async (t) => {
  const c = new (await import('../../lib/client/client.js')).SheepdogClient({ nodes: [...sheep.addresses] });
  t.teardown(() => c.close());
  await c.createVdi('big', 16 * 2 ** 30);
  const v = await c.openVdi('big');
  for (const idx of [0, 1023, 1024, 4095]) await v.write(Buffer.alloc(512, 1), idx * 4 * 2 ** 20);
  await v.close();
  await c.snapshotVdi('big', 'snap1');
  await c.cloneVdi('big', 'snap1', 'bigclone');
  const w = await c.openVdi('bigclone');
  await w.write(Buffer.alloc(512, 2), 2000 * 4 * 2 ** 20);
  await w.close();
  const r = await sheepdog([...sheep.addresses], ['vdi', 'list', '--json']);
  t.equal(r.code, 0);
  type Row = { name: string; snapId: number; snapshot: boolean; used: number; shared: number };
  const listed = JSON.parse(r.stdout.toString()) as Row[];
  const mine = listed.filter((x) => x.name.startsWith('big'));
  t.equal(mine.length, 3, 'big, its snapshot, the clone');
  for (const l of mine) {
    const g = await c.getVdi(l.name, l.snapshot ? { snapshot: l.snapId } : {});
    t.equal(l.used, g.used, `${l.name}@${l.snapId} used`);
    t.equal(l.shared, g.shared, `${l.name}@${l.snapId} shared`);
  }
  const clone = listed.find((x) => x.name === 'bigclone');
  t.equal(clone?.used, 4 * 2 ** 20, 'the clone owns one object');
  t.equal(clone?.shared, 4 * 4 * 2 ** 20, 'and shares four');
});

t.test('the bin is the launcher; it runs the bundle with its code cache and prints what main.js prints', async (t) => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string> };
  t.equal(pkg.bin['sheepdog'], './dist/cli/sheepdog.cjs', 'package.json bin');
  const c = new (await import('../../lib/client/client.js')).SheepdogClient({ nodes: [...sheep.addresses] });
  await c.createVdi('viabin', 2 ** 30);
  await c.close();
  const debug = { NODE_DEBUG: 'sheepdog:cli' };
  for (const args of [['vdi', 'list'], ['vdi', 'list', '-r'], ['--version'], ['node', 'list'], ['vdi', '--help']]) {
    const what = args.join(' ');
    const viaBin = await sheepdog([...sheep.addresses], args, { env: debug });
    const viaMain = await runNode(MAIN, ['-a', sheep.addresses.join(','), ...args]);
    t.equal(viaBin.code, 0, `${what}: exit 0\n${viaBin.stderr}`);
    t.equal(viaBin.stdout.toString(), viaMain.stdout.toString(), `${what}: the same output as main.js`);
    t.match(viaBin.stderr, /code cache accepted \(\d+ bytes\)/, `${what}: V8 took the build's code cache`);
  }
  const failing = await sheepdog([...sheep.addresses], ['vdi', 'delete', 'nosuch']);
  const failingMain = await runNode(MAIN, ['-a', sheep.addresses.join(','), 'vdi', 'delete', 'nosuch']);
  t.not(failing.code, 0, 'a failing command fails through the bin');
  t.same([failing.code, failing.stderr], [failingMain.code, failingMain.stderr], 'with main.js exit code and message');
});

t.test(
  'the launcher alone: a damaged or stale cache is not used, a missing bundle falls back to main.js',
  async (t) => {
    // A source tree's layout: <tree>/tsconfig.build.json and <tree>/dist/cli/.
    const tree = join(dir, 'tree');
    const copy = join(tree, 'dist', 'cli');
    mkdirSync(copy, { recursive: true });
    const launcher = join(copy, 'sheepdog.cjs');
    const cacheFile = join(copy, 'sheepdog.bundle.cjs.v8cache');
    copyFileSync(CLI, launcher);
    copyFileSync(BUNDLE, join(copy, 'sheepdog.bundle.cjs'));
    const env = { NODE_DEBUG: 'sheepdog:cli' };
    const helpMain = await runNode(MAIN, ['--help']);

    // The bundle's digest, then V8 data that is not a code cache.
    const good = readFileSync(`${BUNDLE}.v8cache`);
    writeFileSync(cacheFile, Buffer.concat([good.subarray(0, 20), Buffer.alloc(4096, 0x5a)]));
    const help = await runNode(launcher, ['--help'], { env });
    t.equal(help.code, 0, `runs with a damaged cache\n${help.stderr}`);
    t.match(help.stderr, /code cache rejected/, 'V8 refused the damaged cache');
    t.equal(help.stdout.toString(), helpMain.stdout.toString(), 'and the output is the same');

    // The bundle edited to the same length, with the cache of the original:
    // V8 alone would take it and run the old code of the listing.
    const src = readFileSync(BUNDLE, 'utf8');
    t.match(src, /Block Size Shift/, 'the listing header is in the bundle');
    writeFileSync(join(copy, 'sheepdog.bundle.cjs'), src.replace('Block Size Shift', 'Block Size Order'));
    copyFileSync(`${BUNDLE}.v8cache`, cacheFile);
    const edited = await runNode(launcher, ['-a', sheep.addresses.join(','), 'vdi', 'list'], { env });
    t.equal(edited.code, 0, edited.stderr);
    t.match(edited.stderr, /code cache was made for another bundle/, 'the stale cache is ignored');
    t.match(edited.stdout.toString(), /Block Size Order/, "the edited bundle's code ran");
    copyFileSync(BUNDLE, join(copy, 'sheepdog.bundle.cjs'));

    rmSync(join(copy, 'sheepdog.bundle.cjs.v8cache'));
    const uncached = await runNode(join(copy, 'sheepdog.cjs'), ['--help'], { env });
    t.equal(uncached.code, 0);
    t.match(uncached.stderr, /no code cache/, 'no cache: compiled');
    t.equal(uncached.stdout.toString(), helpMain.stdout.toString(), 'the same output without a cache');

    // main.js rebuilt (tsc alone) after the bundle: the bundle is out of date.
    writeFileSync(
      join(copy, 'main.js'),
      "process.stdout.write('the ESM entry ran: ' + process.argv.slice(2).join(' '));\n",
    );
    const hourAgo = new Date(Date.now() - 3_600_000);
    utimesSync(join(copy, 'sheepdog.bundle.cjs'), hourAgo, hourAgo);
    const installed = await runNode(join(copy, 'sheepdog.cjs'), ['--help'], { env });
    t.equal(
      installed.stdout.toString(),
      helpMain.stdout.toString(),
      'an installed package runs its bundle whatever the times',
    );
    writeFileSync(join(tree, 'tsconfig.build.json'), '{}\n');
    const older = await runNode(join(copy, 'sheepdog.cjs'), ['vdi', 'list'], { env });
    t.equal(older.code, 0);
    t.match(older.stderr, /the bundle .* is older than main\.js: importing main\.js/);
    t.equal(older.stdout.toString(), 'the ESM entry ran: vdi list', 'a source tree: main.js ran, with the arguments');

    rmSync(join(copy, 'sheepdog.bundle.cjs'));
    const fallback = await runNode(join(copy, 'sheepdog.cjs'), ['vdi', 'list'], { env });
    t.equal(fallback.code, 0);
    t.match(fallback.stderr, /no bundle at .*: importing main\.js/);
    t.equal(fallback.stdout.toString(), 'the ESM entry ran: vdi list', 'no bundle: main.js ran');
  },
);

t.test('vdi list through the bin requires none of the modules it does not need', async (t) => {
  // Every require() of the bundle goes through Module.prototype.require (the
  // launcher's own require is passed in): a preload records them.
  const log = join(dir, 'bin-required.txt');
  const preload = join(dir, 'record-require.cjs');
  writeFileSync(
    preload,
    "const Module = require('node:module');\n" +
      "const fs = require('node:fs');\n" +
      'const orig = Module.prototype.require;\n' +
      'Module.prototype.require = function (id) {\n' +
      "  fs.appendFileSync(process.env.SHEEPDOG_TEST_REQUIRED, id + '\\n');\n" +
      '  return orig.apply(this, arguments);\n' +
      '};\n',
  );
  writeFileSync(log, '');
  const r = await sheepdog([...sheep.addresses], ['vdi', 'list'], {
    env: { SHEEPDOG_TEST_REQUIRED: log, NODE_OPTIONS: `--require ${preload}` },
  });
  t.equal(r.code, 0, r.stderr);
  const required = new Set(readFileSync(log, 'utf8').split('\n').filter(Boolean));
  t.ok(required.has('node:net'), `the preload saw the bundle's requires: ${[...required].join(' ')}`);
  for (const id of [
    'cli-progress', // progress bars
    'node:tls', // the NBD server
    'node:child_process', // the benchmark's cluster
    'node:perf_hooks', // the benchmark engine
    'node:v8', // the embedded sheep's store
    'node:fs/promises', // import/export
    'node:stream/promises', // data commands
  ]) {
    t.notOk(required.has(id), `not required: ${id}`);
  }
});
