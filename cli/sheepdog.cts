#!/usr/bin/env node
/**
 * The `sheepdog` executable (package.json "bin").
 *
 * A one-shot command (`sheepdog vdi list`) spends most of its time starting:
 * Node's ESM loader resolving and reading each module, and V8 compiling them.
 * So this CommonJS launcher runs the CLI from one bundle of dist/cli/main.js
 * and everything it imports (sheepdog.bundle.cjs, written by `npm run build`)
 * with V8's code cache for that bundle (sheepdog.bundle.cjs.v8cache, written
 * by the build from a run of `vdi list`): the functions a command runs arrive
 * compiled.
 *
 * - No bundle, or in a source tree one older than main.js (tsc run alone
 *   after the last `npm run build`): main.js is imported, the same CLI as
 *   the sources are. An installed package is left alone: npm writes its
 *   files in archive order, so their times say nothing about the build.
 *   (A source tree has tsconfig.build.json two levels above dist/cli.)
 * - The cache file starts with the SHA-1 of the bundle it was made from, and
 *   is used only with that bundle: V8 checks a cache against the length of
 *   the source, not its content, and would run the old code of a bundle
 *   edited to the same length.
 * - A cache V8 rejects (another Node version, other V8 flags, a damaged
 *   file) only costs the compile time it would have saved.
 * - `NODE_DEBUG=sheepdog:cli` says which of these happened.
 * - `SHEEPDOG_CODE_CACHE_OUT=FILE` writes the cache of this run to FILE at
 *   exit; the build uses it, nothing else does.
 */
// A CommonJS module (.cts): require, typed as the modules it loads.
const crypto: typeof import('node:crypto') = require('node:crypto');
const fs: typeof import('node:fs') = require('node:fs');
const path: typeof import('node:path') = require('node:path');
const util: typeof import('node:util') = require('node:util');
const vm: typeof import('node:vm') = require('node:vm');

const log = util.debuglog('sheepdog:cli');
const bundle = path.join(__dirname, 'sheepdog.bundle.cjs');

function mtime(file: string): number | undefined {
  try {
    return fs.statSync(file).mtimeMs;
  } catch {
    return undefined;
  }
}

/** Bytes of the bundle's SHA-1 at the head of its cache file. */
const DIGEST = 20;

function start(): void {
  const built = mtime(bundle);
  const sourceTree = mtime(path.join(__dirname, '..', '..', 'tsconfig.build.json')) !== undefined;
  const main = sourceTree ? mtime(path.join(__dirname, 'main.js')) : undefined;
  if (built === undefined || (main !== undefined && built < main)) {
    if (built === undefined) log('no bundle at %s: importing main.js', bundle);
    else log('the bundle %s is older than main.js: importing main.js', bundle);
    void import('./main.js');
    return;
  }
  const bytes = fs.readFileSync(bundle);
  const digest = crypto.createHash('sha1').update(bytes).digest();
  let cachedData: Buffer | undefined;
  let none = 'no code cache for %s: compiling';
  try {
    const file = fs.readFileSync(`${bundle}.v8cache`);
    if (file.length > DIGEST && digest.equals(file.subarray(0, DIGEST))) cachedData = file.subarray(DIGEST);
    else none = 'the code cache was made for another bundle than %s: ignored, compiling';
  } catch {
    // no cache: V8 compiles as it would for any script
  }
  // The wrapper Node gives every CommonJS module, on the bundle's first line
  // so that line numbers in stack traces stay the bundle's.
  const script = new vm.Script(
    `(function (exports, require, module, __filename, __dirname) {${bytes.toString('utf8')}\n})`,
    { filename: bundle, ...(cachedData ? { cachedData } : {}) },
  );
  if (!cachedData) log(none, bundle);
  else if (script.cachedDataRejected) log('code cache rejected by this V8: compiling');
  else log('code cache accepted (%d bytes)', cachedData.length);
  const out = process.env['SHEEPDOG_CODE_CACHE_OUT'];
  if (out) process.once('exit', () => fs.writeFileSync(out, Buffer.concat([digest, script.createCachedData()])));
  const run = script.runInThisContext() as (...args: unknown[]) => void;
  run.call(module.exports, module.exports, require, module, bundle, __dirname);
}

start();
