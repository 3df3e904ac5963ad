// One-shot commands load only what they use: the command table names every
// command without importing it, and `vdi list` (a real process, with a module
// hook that records every module it resolves) never loads the NBD server, the
// embedded sheep, progress bars, the benchmark or the data path. Timing is
// bench/startup.ts's business, not this test's.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import t from 'tap';
import { commandTable } from '../../cli/commands/index.js';
import { startMemorySheep } from '../../testing/index.js';
import type { MemorySheep } from '../../testing/types.js';
import { ensureBuilt, sheepdog } from './helpers.js';

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

/** Run the built CLI with a hook that logs every module it resolves; the URLs under dist/ and node_modules/. */
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
  const r = await sheepdog([...sheep.addresses], args, {
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
