/**
 * Starts the embedded cluster of `sheepdog bench` in a separate Node process
 * (child_process.fork of cli/bench/bench-sheep.js, our own module: no shell,
 * no external program), so the cluster's CPU time, heap and garbage
 * collection are not the benchmarked client's.
 *
 * Only the CLI may start processes: lib/, protocol/ and testing/ never reach
 * child_process (test/package/no-subprocess.test.ts walks their module graph).
 */
import { fork } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { BenchSheepMessage } from './bench-sheep.js';
import type { MemorySheepOptions } from '../../testing/types.js';

export interface LaunchedSheep {
  /** `host:port` of each node. */
  readonly addresses: readonly string[];
  /** Process id of the cluster. */
  readonly pid: number;
  /** How the cluster is isolated from the caller. */
  readonly isolation: 'process';
  /** Stop the cluster and wait for its process to exit. */
  close(): Promise<void>;
}

/**
 * The cluster's entry point, for fork and for a worker thread: the compiled
 * file next to this module (dist/cli/bench/). Run from the source tree (cli/
 * under a TypeScript loader, as the tests do), the compiled copy in dist/
 * when there is one, which starts without transpiling the cluster's modules
 * and works in a worker thread whatever the loader; else the source itself.
 */
export function serverEntry(): string {
  for (const u of [
    new URL('./bench-sheep.js', import.meta.url),
    new URL('../../dist/cli/bench/bench-sheep.js', import.meta.url),
  ]) {
    const p = fileURLToPath(u);
    if (existsSync(p)) return p;
  }
  return fileURLToPath(new URL('./bench-sheep.ts', import.meta.url));
}

const PRELOAD = /^--(import|require|loader|experimental-loader)$/;

/**
 * Node flags for the cluster's process: this process's, without --cpu-prof &
 * co. (a profile is of the benchmarked client), and, when the entry is
 * compiled JavaScript, without preloaded modules and loaders (a TypeScript
 * loader would only slow its start).
 */
export function clusterExecArgv(execArgv: readonly string[], entry: string): string[] {
  const compiled = entry.endsWith('.js');
  const out: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const a = execArgv[i] as string;
    if (/^--(cpu|heap)-prof/.test(a)) continue;
    if (compiled && PRELOAD.test(a.replace(/=.*/s, ''))) {
      if (!a.includes('=')) i++; // its value is the next argument
      continue;
    }
    out.push(a);
  }
  return out;
}

export function launchSheep(opts: MemorySheepOptions, timeoutMs = 30_000): Promise<LaunchedSheep> {
  const entry = serverEntry();
  const child = fork(entry, [JSON.stringify(opts)], {
    // stderr is shared so that a crash of the cluster is visible; stdout is the benchmark's.
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    execArgv: clusterExecArgv(process.execArgv, entry),
    serialization: 'json',
  });
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
  return new Promise<LaunchedSheep>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the embedded cluster did not start within ${timeoutMs} ms`));
    }, timeoutMs);
    const onExit = (code: number | null, sig: NodeJS.Signals | null): void => {
      clearTimeout(timer);
      reject(new Error(`the embedded cluster exited before it was ready (${sig ?? `code ${code}`})`));
    };
    child.once('exit', onExit);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('message', (m: BenchSheepMessage) => {
      if (m.type === 'error') {
        clearTimeout(timer);
        child.off('exit', onExit);
        child.kill('SIGKILL');
        reject(new Error(`the embedded cluster failed to start: ${m.message}`));
      } else if (m.type === 'ready') {
        clearTimeout(timer);
        child.off('exit', onExit);
        let closing: Promise<void> | undefined;
        resolve({
          addresses: m.addresses,
          pid: m.pid,
          isolation: 'process',
          close() {
            closing ??= (async () => {
              if (child.connected) child.send({ type: 'stop' });
              const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
              await exited;
              clearTimeout(t);
            })();
            return closing;
          },
        });
      }
    });
  });
}
