/**
 * Run the built `sheepdog` CLI as a real process: the package's bin,
 * dist/cli/sheepdog.cjs, which runs the bundle of dist/cli/main.js.
 * `ensureBuilt()` builds as `npm run build` does (tsc with
 * tsconfig.build.json, then scripts/bundle-cli.mjs) when dist is missing or
 * older than any source (a fresh clone running `npm test` without a build);
 * a lock directory keeps parallel test files from building at once.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The package's bin: the launcher of the bundled CLI. */
export const CLI = join(ROOT, 'dist', 'cli', 'sheepdog.cjs');
/** The CLI's ESM entry, which the bundle is made from. */
export const MAIN = join(ROOT, 'dist', 'cli', 'main.js');
export const BUNDLE = join(ROOT, 'dist', 'cli', 'sheepdog.bundle.cjs');
export const DEMO = join(ROOT, 'dist', 'examples', 'demo.js');

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...sources(p));
    else if (/\.c?ts$/.test(e.name) && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

function mtime(p: string): number {
  try {
    return statSync(p).mtimeMs;
  } catch {
    return -1;
  }
}

/** Sources whose compiled file is missing or older ('.cts' compiles to '.cjs'). */
export function staleSources(): string[] {
  const stale: string[] = [];
  for (const d of ['lib', 'protocol', 'testing', 'cli', 'examples']) {
    for (const src of sources(join(ROOT, d))) {
      const out = join(ROOT, 'dist', relative(ROOT, src).replace(/\.(c?)ts$/, '.$1js'));
      if (mtime(out) < mtime(src)) stale.push(src);
    }
  }
  return stale;
}

/** Whether the CLI bundle or its code cache is missing, or older than what makes it. */
function bundleStale(): boolean {
  const newest = Math.max(
    mtime(join(ROOT, 'scripts', 'bundle-cli.mjs')),
    ...['lib', 'protocol', 'testing', 'cli'].flatMap((d) => sources(join(ROOT, d)).map(mtime)),
  );
  return mtime(BUNDLE) < newest || mtime(`${BUNDLE}.v8cache`) < mtime(BUNDLE);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Build dist unless it is up to date. Safe to call from several test processes at once. */
export async function ensureBuilt(): Promise<void> {
  if (staleSources().length === 0 && !bundleStale()) return;
  const lock = join(ROOT, '.tap', 'build.lock');
  mkdirSync(join(ROOT, '.tap'), { recursive: true });
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      // Another test file is building; a lock older than 3 minutes is stale.
      if (Date.now() - mtime(lock) > 180_000) rmSync(lock, { recursive: true, force: true });
      await sleep(200);
    }
  }
  try {
    if (staleSources().length > 0) {
      const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
      try {
        await promisify(execFile)(process.execPath, [tsc, '-p', join(ROOT, 'tsconfig.build.json')], { cwd: ROOT });
      } catch (e) {
        // Type errors elsewhere still emit JavaScript; only a missing output is fatal.
        const missing = staleSources();
        if (missing.length) throw new Error(`build failed for ${missing.length} sources: ${(e as Error).message}`);
      }
    }
    if (bundleStale()) {
      await promisify(execFile)(process.execPath, [join(ROOT, 'scripts', 'bundle-cli.mjs')], { cwd: ROOT });
    }
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

export interface RunOptions {
  /** Bytes for stdin (stdin is closed after them; empty when absent). */
  input?: Uint8Array | string;
  env?: Record<string, string | undefined>;
  /** Kill after this many ms (default 60 s: a hang fails the test rather than the suite). */
  timeout?: number;
}

/** The environment of a child: ours plus `extra`, no coverage of dist/, no inherited SHEEPDOG_NODES. */
export function childEnv(extra: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = { ...process.env, ...extra };
  // tap instruments every child (it re-adds its hooks to NODE_OPTIONS), but
  // coverage of the built dist/ files, source-mapped back onto cli/*.ts,
  // would clash with run.test.ts's in-process coverage of the same sources:
  // keep dist/ out of it (run.test.ts covers cli/).
  env['_TAPJS_PROCESSINFO_COV_EXCLUDE_'] = String(/[\\/](node_modules|dist)[\\/]/);
  if (extra['SHEEPDOG_NODES'] === undefined) delete env['SHEEPDOG_NODES'];
  return env;
}

/** Split NODE_OPTIONS as Node does: on spaces, with double-quoted tokens. */
function nodeOptionsTokens(s: string): string[] {
  return [...s.matchAll(/"((?:[^"\\]|\\.)*)"|(\S+)/g)].map((m) => m[0]);
}

/**
 * `[command, args]` that run `cmd ...args` without tap's process-info hook.
 * tap adds that hook to NODE_OPTIONS on every spawn, whatever env is given
 * (process-on-spawn), and it costs each Node process about 0.4 s of CPU (a
 * loader thread, a record of every module loaded). The children started this
 * way contribute no coverage: the built CLI's is excluded anyway (childEnv),
 * npm and tsc are not ours, and the pool's exit/debuglog children exercise
 * code the in-process tests cover. So the child is started through env(1), which sets NODE_OPTIONS to
 * the given environment's own with tap's hook taken out (a test's own
 * --import stays), for the child and whatever it starts.
 */
export function withoutTapHooks(
  cmd: string,
  args: string[],
  env: Record<string, string | undefined>,
): [string, string[]] {
  const own = nodeOptionsTokens(env['NODE_OPTIONS'] ?? '').filter((o) => !o.includes('@tapjs/processinfo'));
  return ['env', [`NODE_OPTIONS=${own.join(' ')}`, cmd, ...args]];
}

/** Run `node <script> ...args`, collect its output. */
export function runNode(script: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const env = childEnv(opts.env);
    const [cmd, argv] = withoutTapHooks(process.execPath, [script, ...args], env);
    const child = spawn(cmd, argv, { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => {
      err += b.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeout ?? 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out), stderr: err });
    });
    child.stdin.on('error', () => {}); // the CLI may exit before reading all of it
    child.stdin.end(opts.input ?? '');
  });
}

/** Run the CLI against `nodes` (passed with -a unless `args` has its own). */
export function sheepdog(
  nodes: readonly string[] | undefined,
  args: string[],
  opts: RunOptions = {},
): Promise<RunResult> {
  return runNode(CLI, nodes ? ['-a', nodes.join(','), ...args] : args, opts);
}
