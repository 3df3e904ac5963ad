// Bundles the built CLI for its launcher (dist/cli/sheepdog.cjs, the package
// "bin"): `npm run build` runs this after tsc.
//
// 1. dist/cli/main.js and every module it imports become one CommonJS file,
//    dist/cli/sheepdog.bundle.cjs. Dependencies (cli-progress) stay require()s
//    of node_modules; import() of a command's module becomes a lazy require
//    inside the bundle, so a command still runs only the modules it needs.
//    import.meta.url keeps meaning the URL of the module it is written in.
// 2. The bundle is run once (`vdi list` against an embedded sheep), and V8's
//    code cache of that run is written next to it (sheepdog.bundle.cjs.v8cache).
//
//   node scripts/bundle-cli.mjs [--no-cache]
import { execFile } from 'node:child_process';
import { chmodSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
const cliDir = join(dist, 'cli');
const out = join(cliDir, 'sheepdog.bundle.cjs');
const cache = `${out}.v8cache`;
const launcher = join(cliDir, 'sheepdog.cjs');

/**
 * import.meta.url of each module: a call of the helper below with the
 * module's path from the bundle's directory (dist/cli), which the helper
 * joins to the bundle's __dirname. The helper is a module of its own that
 * each such module imports, so a module's own names cannot shadow the
 * wrapper's `require` and `__dirname` the helper uses.
 */
const importMetaUrl = {
  name: 'import-meta-url',
  setup(b) {
    b.onResolve({ filter: /^sheepdog-module-url$/ }, () => ({ path: 'sheepdog-module-url', namespace: 'helper' }));
    b.onLoad({ filter: /.*/, namespace: 'helper' }, () => ({
      contents:
        'export function __sheepdogModuleUrl(rel) {\n' +
        '  return require("node:url").pathToFileURL(require("node:path").join(__dirname, rel)).href;\n' +
        '}\n',
      loader: 'js',
    }));
    b.onLoad({ filter: /\.js$/ }, (args) => {
      const text = readFileSync(args.path, 'utf8');
      if (!text.includes('import.meta')) return undefined;
      const rel = relative(cliDir, args.path).split('\\').join('/');
      const contents =
        `import { __sheepdogModuleUrl } from 'sheepdog-module-url';\n` +
        text.replace(/\bimport\.meta\.url\b/g, `__sheepdogModuleUrl(${JSON.stringify(rel)})`);
      if (contents.includes('import.meta')) {
        return { errors: [{ text: `${args.path}: import.meta other than import.meta.url cannot be bundled` }] };
      }
      return { contents, loader: 'js' };
    });
  },
};

const result = await build({
  entryPoints: [join(cliDir, 'main.js')],
  outfile: out,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  packages: 'external',
  // import() of a bundled module becomes a lazy require: a vm.Script has no
  // module loader for import() of its own.
  supported: { 'dynamic-import': false },
  // Whitespace and syntax only: names stay, for stack traces and profiles.
  minifyWhitespace: true,
  minifySyntax: true,
  legalComments: 'none',
  write: false,
  logLevel: 'warning',
  plugins: [importMetaUrl],
});
const [file] = result.outputFiles;
if (!file) throw new Error('esbuild wrote no output');
// The launcher wraps the bundle in a function: no hashbang line inside it.
writeFileSync(out, file.text.replace(/^#![^\n]*\n/, ''));
rmSync(cache, { force: true });
// tsc writes the launcher without the executable bit its hashbang is for.
chmodSync(launcher, 0o755);
console.log(`bundle: ${relative(root, out)} (${(file.contents.length / 1024).toFixed(0)} KiB)`);

if (!process.argv.includes('--no-cache')) {
  // An embedded one-node cluster with a VDI, in this process; `vdi list` in a
  // child without NODE_OPTIONS: V8 takes a cache only under the V8 flags it
  // was made with, and a plain `sheepdog` has none.
  const { startMemorySheep } = await import(pathToFileURL(join(dist, 'testing', 'index.js')).href);
  const { SheepdogClient } = await import(pathToFileURL(join(dist, 'lib', 'index.js')).href);
  const sheep = await startMemorySheep({ nodes: 1, copies: 1 });
  try {
    const client = new SheepdogClient({ nodes: [...sheep.addresses] });
    await client.createVdi('v', 2 ** 30);
    await client.close();
    const env = { ...process.env, NODE_OPTIONS: '', SHEEPDOG_CODE_CACHE_OUT: cache };
    await promisify(execFile)(process.execPath, [launcher, '-a', sheep.addresses[0], 'vdi', 'list'], { env });
  } catch (e) {
    // No bundle rather than a bundle without its cache: the next build starts over.
    rmSync(out, { force: true });
    rmSync(cache, { force: true });
    throw e;
  } finally {
    await sheep.close();
  }
  console.log(`code cache: ${relative(root, cache)} (${(readFileSync(cache).length / 1024).toFixed(0)} KiB)`);
}
