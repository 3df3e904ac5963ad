// The package as npm publishes it. `npm pack` (its prepack script builds) in
// a copy of the working tree, then checks of the tarball: what it ships, and
// a consumer project that installs it: the `sheepdog` bin runs, the three
// entry points load at run time, and a consumer file type-checks against the
// shipped .d.ts under node16 and bundler resolution.
import { spawn } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { withoutTapHooks } from '../cli/helpers.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  name: string;
  exports: Record<string, string | Record<string, string>>;
  bin: Record<string, string>;
  dependencies?: Record<string, string>;
};

// npm pack builds (tsc) and npm install runs on two shared cores.
t.setTimeout(180_000);

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Children: no coverage (they run the copy, npm and tsc), none of `npm test`'s lifecycle variables. */
function env(): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(e)) {
    if (/^npm_(lifecycle|package)_/i.test(k) || /^npm_config_(local_)?prefix$/i.test(k) || k === 'INIT_CWD') {
      delete e[k];
    }
  }
  e['_TAPJS_PROCESSINFO_COVERAGE_'] = '0';
  delete e['SHEEPDOG_NODES'];
  return e;
}

function run(cmd: string, args: string[], cwd: string, timeout = 120_000, extra: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    // Without tap's process-info hook: npm, tsc and the bin would each pay for it.
    const e = { ...env(), ...extra };
    const [c, a] = withoutTapHooks(cmd, args, e);
    const child = spawn(c, a, {
      cwd,
      env: e,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeout);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const npx = process.platform === 'win32' ? 'npx.cmd' : 'npx';

const scratch = mkdtempSync(join(tmpdir(), 'sheepdog-pack-'));
t.teardown(() => rmSync(scratch, { recursive: true, force: true }));

// A copy of the working tree without its build output, so the tarball holds
// only what prepack builds (as on a clean clone) and this test does not
// rewrite dist/ under the other test files.
const SKIP = new Set(['node_modules', 'dist', '.git', '.tap', 'coverage']);
const src = join(scratch, 'src');
cpSync(root, src, {
  recursive: true,
  filter: (from) => {
    const rel = relative(root, from);
    return !SKIP.has(rel.split(/[\\/]/)[0] as string) && !rel.startsWith(join('bench', 'results'));
  },
});
symlinkSync(join(root, 'node_modules'), join(src, 'node_modules'), 'junction');

let tarball = '';
let files: string[] = [];

t.test('npm pack: prepack builds, the tarball holds the built entry points and no sources', async (t) => {
  const r = await run(npm, ['pack', '--json', '--pack-destination', scratch], src);
  t.equal(r.code, 0, `npm pack exits 0\n${r.stdout.slice(-4000)}\n${r.stderr}`);
  // npm prints the prepack script's output before the JSON array
  const start = r.stdout.search(/^\[/m);
  t.ok(start >= 0, 'npm pack printed JSON');
  const out = JSON.parse(r.stdout.slice(start)) as { filename: string; files: { path: string }[] }[];
  const first = out[0];
  if (!first) throw new Error('npm pack --json listed no tarball');
  tarball = join(scratch, first.filename);
  files = first.files.map((f) => f.path);
  const has = (p: string) => files.includes(p);

  for (const p of [
    'package.json',
    'README.md',
    'dist/lib/index.js',
    'dist/lib/index.d.ts',
    'dist/protocol/index.js',
    'dist/protocol/index.d.ts',
    'dist/testing/index.js',
    'dist/testing/index.d.ts',
    'dist/cli/main.js',
    'dist/cli/sheepdog.cjs',
    'dist/cli/sheepdog.bundle.cjs',
    'dist/cli/sheepdog.bundle.cjs.v8cache',
  ]) {
    t.ok(has(p), `ships ${p}`);
  }
  // every target of "exports" and "bin"
  const targets = [
    ...Object.values(pkg.exports).flatMap((v) => (typeof v === 'string' ? [v] : Object.values(v))),
    ...Object.values(pkg.bin),
  ];
  for (const target of targets) t.ok(has(target.replace(/^\.\//, '')), `ships ${target}`);

  const bad = files.filter(
    (p) =>
      /^dist\/(bench|test|examples)\//.test(p) ||
      /^(test|bench|examples|lib|protocol|testing|cli)\//.test(p) ||
      (/\.(ts|mts|cts)$/.test(p) && !/^dist\/.*\.d\.c?ts$/.test(p)) ||
      /\.test\.(js|ts)$/.test(p) ||
      p.endsWith('.tsbuildinfo') ||
      /^tsconfig/.test(p),
  );
  t.same(bad, [], 'no sources, tests, benchmarks or examples');
});

const consumer = join(scratch, 'consumer');

t.test('a project installs the tarball; `npx sheepdog --help` runs', async (t) => {
  if (!tarball) throw new Error('no tarball (npm pack failed)');
  mkdirSync(consumer);
  const init = await run(npm, ['init', '-y'], consumer);
  t.equal(init.code, 0, `npm init -y\n${init.stderr}`);
  const manifest = JSON.parse(readFileSync(join(consumer, 'package.json'), 'utf8')) as Record<string, unknown>;
  writeFileSync(join(consumer, 'package.json'), JSON.stringify({ ...manifest, type: 'module' }, null, 2));
  const inst = await run(npm, ['install', tarball, '--prefer-offline', '--no-audit', '--no-fund'], consumer);
  t.equal(inst.code, 0, `npm install <tarball>\n${inst.stderr}`);
  const installed = JSON.parse(
    readFileSync(join(consumer, 'node_modules', pkg.name, 'package.json'), 'utf8'),
  ) as typeof pkg;
  t.same(installed.dependencies, pkg.dependencies, 'runtime dependencies as in package.json');

  const help = await run(npx, ['--no', '--', 'sheepdog', '--help'], consumer, 30_000, { NODE_DEBUG: 'sheepdog:cli' });
  t.equal(help.code, 0, `npx sheepdog --help exits 0\n${help.stderr}`);
  t.match(help.stdout, /^Usage: sheepdog /m, 'prints the usage');
  t.match(help.stdout, /vdi create/, 'and the commands');
  t.match(help.stderr, /code cache accepted/, 'the installed bin runs the bundle with its code cache');
});

t.test('the entry points at run time', async (t) => {
  writeFileSync(
    join(consumer, 'smoke.js'),
    `import * as main from 'sheepdog-client';
import * as protocol from 'sheepdog-client/protocol';
import * as testing from 'sheepdog-client/testing';
const { SheepdogClient, NoVdiError } = main;
const sheep = await testing.startMemorySheep({ nodes: 2, copies: 2 });
const client = new SheepdogClient({ nodes: [...sheep.addresses] });
let missing;
try {
  await client.createVdi('pack', 1 << 22);
  const vdi = await client.openVdi('pack');
  await vdi.write(Buffer.from('hello'), 4096);
  const back = (await vdi.read(4096, 5)).toString();
  await vdi.close();
  try {
    await client.openVdi('nope');
  } catch (e) {
    missing = e instanceof NoVdiError && e instanceof main.SheepdogError;
  }
  console.log(JSON.stringify({
    main: Object.keys(main).sort(),
    testing: Object.keys(testing).sort(),
    protocol: typeof protocol.sdHashVdi === 'function' && typeof protocol.Op.READ_OBJ === 'number',
    deprecatedAlias: main.startMemorySheep === testing.startMemorySheep,
    back,
    missing,
  }));
} finally {
  await client.close();
  await sheep.close();
}
`,
  );
  const r = await run(process.execPath, ['smoke.js'], consumer, 30_000);
  t.equal(r.code, 0, `node smoke.js\n${r.stderr}`);
  const o = JSON.parse(r.stdout) as {
    main: string[];
    testing: string[];
    protocol: boolean;
    deprecatedAlias: boolean;
    back: string;
    missing: boolean;
  };
  t.equal(o.back, 'hello', 'SheepdogClient against the embedded sheep from sheepdog-client/testing');
  t.equal(o.missing, true, 'errors are the package classes');
  t.equal(o.protocol, true, 'sheepdog-client/protocol');
  t.equal(o.deprecatedAlias, true, 'startMemorySheep is still on the main entry (deprecated)');
  for (const name of ['SheepdogClient', 'Vdi', 'SheepdogPool', 'SheepdogDriver', 'NoVdiError', 'SheepdogError']) {
    t.ok(o.main.includes(name), `main entry exports ${name}`);
  }
  for (const name of ['parseSize', 'checkBytes', 'serveMemorySheep', 'startEmbeddedSheep', 'isIdempotent']) {
    t.notOk(o.main.includes(name), `main entry does not export ${name}`);
  }
  t.same(o.testing, ['startMemorySheep'], 'the testing entry exports startMemorySheep only (and types)');
});

const CONSUMER_TS = `import {
  DRIVER_VERSION,
  NoVdiError,
  SheepdogClient,
  SheepdogDriver,
  SheepdogError,
  SheepdogPool,
  SheepdogResponseError,
  TimeoutError,
  Vdi,
  startMemorySheep as deprecatedStart,
  type ClientOptions,
  type PoolStats,
  type Reply,
  type RequestOptions,
  type Transport,
  type VdiInfo,
  type VolumeStats,
} from 'sheepdog-client';
import { Op, objRequest, sdHashVdi, type Request } from 'sheepdog-client/protocol';
import { startMemorySheep, type Fault, type MemorySheep, type MemorySheepOptions } from 'sheepdog-client/testing';
// @ts-expect-error internal: not on the main entry
import { parseSize } from 'sheepdog-client';
// @ts-expect-error internal: not on the testing entry
import { serveMemorySheep } from 'sheepdog-client/testing';
// @ts-expect-error only the entry points in "exports" resolve
import { checkBytes } from 'sheepdog-client/dist/lib/client/names.js';

void parseSize;
void serveMemorySheep;
void checkBytes;

export function describe(e: NoVdiError): string {
  return \`\${e.resultName} (\${e.result}) \${e.code} on \${e.node ?? '?'}\`;
}

export function kind(e: unknown): string {
  if (e instanceof NoVdiError) return describe(e);
  if (e instanceof TimeoutError) return \`timeout after \${e.timeout ?? 0} ms in \${e.phase ?? '?'}\`;
  if (e instanceof SheepdogResponseError) return e.resultName;
  if (e instanceof SheepdogError) return e.code;
  return 'other';
}

export async function use(opts: MemorySheepOptions): Promise<VdiInfo[]> {
  const fault: Fault = { kind: 'delay', ms: 10, opcode: Op.READ_OBJ };
  const sheep: MemorySheep = await startMemorySheep(opts);
  const legacy: typeof startMemorySheep = deprecatedStart;
  void legacy;
  sheep.inject(0, fault).remove();
  const copts: ClientOptions = { nodes: [...sheep.addresses], requestTimeout: 5_000 };
  const client = new SheepdogClient(copts);
  const vdi: Vdi = await client.openVdi('v');
  const data: Buffer = await vdi.read(0, 512);
  await vdi.write(data, 0);
  const t: Transport = client.transport;
  const req: Request = objRequest(Op.READ_OBJ, { oid: 1n, offset: 0, dataLength: 512 });
  const ro: RequestOptions = { timeout: 1_000 };
  const reply: Reply = await t.request(req, undefined, ro);
  void reply.header.result;
  void sdHashVdi('v');
  const pool = new SheepdogPool({ nodes: [...sheep.addresses] });
  pool.on('nodeDown', (node: string, err: Error) => void [node, err]);
  const stats: PoolStats = pool.stats;
  void stats.nodes.length;
  // @ts-expect-error internal option: stripped from PoolOptions
  void new SheepdogPool({ initialRequestId: 1 });
  const driver = new SheepdogDriver({ nodes: [...sheep.addresses] });
  const vs: VolumeStats = await driver.getVolumeStats();
  void [vs, DRIVER_VERSION];
  const list = await client.listVdis();
  await Promise.all([pool.close(), driver.close(), client.close(), sheep.close()]);
  return list;
}
`;

// Both resolutions a consumer may use; the two compilers run side by side.
const RESOLUTIONS = [
  ['node16', 'node16'],
  ['esnext', 'bundler'],
] as const;

t.test('a consumer type-checks against the shipped .d.ts (node16 and bundler resolution)', async (t) => {
  const file = join(consumer, 'consumer.ts');
  writeFileSync(file, CONSUMER_TS);
  const check = (module: string, moduleResolution: string): Promise<Run> =>
    run(
      process.execPath,
      [
        tsc,
        '--module',
        module,
        '--moduleResolution',
        moduleResolution,
        '--target',
        'es2022',
        '--lib',
        'es2023',
        '--strict',
        '--skipLibCheck',
        'false',
        '--noEmit',
        '--types',
        'node',
        '--typeRoots',
        join(root, 'node_modules', '@types'),
        '--pretty',
        'false',
        file,
      ],
      consumer,
    );
  const results = await Promise.all(RESOLUTIONS.map(([m, r]) => check(m, r)));
  RESOLUTIONS.forEach(([module, moduleResolution], i) => {
    const r = results[i] as Run;
    const what = `--module ${module} --moduleResolution ${moduleResolution}`;
    t.equal(r.code, 0, `tsc ${what} exits 0\n${r.stdout}${r.stderr}`);
    t.equal(r.stdout + r.stderr, '', `tsc ${what}: no diagnostics`);
  });
});
