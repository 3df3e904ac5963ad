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

/** The server entry point, compiled (dist) or as source (run under a TypeScript loader). */
function serverEntry(): string {
  const js = fileURLToPath(new URL('./bench-sheep.js', import.meta.url));
  if (existsSync(js)) return js;
  return fileURLToPath(new URL('./bench-sheep.ts', import.meta.url));
}

export function launchSheep(opts: MemorySheepOptions, timeoutMs = 30_000): Promise<LaunchedSheep> {
  const child = fork(serverEntry(), [JSON.stringify(opts)], {
    // stderr is shared so that a crash of the cluster is visible; stdout is the benchmark's.
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    // Inherit loader flags (e.g. a TypeScript loader) but not --cpu-prof & co.
    execArgv: process.execArgv.filter((a) => !/^--(cpu|heap)-prof/.test(a)),
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
