/**
 * The embedded cluster of `sheepdog bench`, run away from the benchmark's
 * event loop: this module is the entry point of either a separate Node
 * process (started by launcher.ts, which talks to it over the IPC
 * channel: `process.send`) or a worker thread (`parentPort`, engine.ts's startEmbeddedThread).
 *
 * Protocol: the options arrive as `workerData` (thread) or as JSON in
 * argv[2] (process). Once every node listens it posts
 * `{ type: 'ready', addresses, pid }`, or `{ type: 'error', message }` if the
 * cluster cannot start. `{ type: 'stop' }` closes the cluster and ends the
 * thread/process, as does losing the parent (the IPC channel closing).
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { startMemorySheep } from '../../testing/index.js';
import type { MemorySheep, MemorySheepOptions } from '../../testing/types.js';

export type BenchSheepMessage =
  { type: 'ready'; addresses: string[]; pid: number } | { type: 'error'; message: string } | { type: 'stopped' };

type Post = (m: BenchSheepMessage) => void;

function channel():
  { post: Post; onMessage(fn: (m: unknown) => void): void; onLost(fn: () => void): void } | undefined {
  if (!isMainThread && parentPort) {
    const port = parentPort;
    return {
      post: (m) => port.postMessage(m),
      onMessage: (fn) => port.on('message', fn),
      onLost: (fn) => port.on('close', fn),
    };
  }
  if (typeof process.send === 'function') {
    const send = process.send.bind(process);
    return {
      post: (m) => {
        send(m);
      },
      onMessage: (fn) => process.on('message', fn),
      onLost: (fn) => process.on('disconnect', fn),
    };
  }
  return undefined;
}

function options(): MemorySheepOptions {
  if (!isMainThread) return (workerData ?? {}) as MemorySheepOptions;
  const raw = process.argv[2];
  return raw ? (JSON.parse(raw) as MemorySheepOptions) : {};
}

async function main(): Promise<void> {
  const ch = channel();
  if (!ch) {
    process.stderr.write('bench-sheep: start me from sheepdog bench (no parent to report to)\n');
    process.exitCode = 1;
    return;
  }
  let sheep: MemorySheep | undefined;
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    try {
      await sheep?.close();
    } finally {
      try {
        ch.post({ type: 'stopped' });
      } catch {
        // parent already gone
      }
      // The IPC channel (process) or the message port (thread) would keep the loop alive.
      if (isMainThread) process.disconnect?.();
      else parentPort?.close();
    }
  };
  ch.onMessage((m) => {
    if ((m as { type?: unknown } | null)?.type === 'stop') void stop();
  });
  ch.onLost(() => {
    void stop();
  });
  try {
    sheep = await startMemorySheep(options());
    ch.post({ type: 'ready', addresses: [...sheep.addresses], pid: process.pid });
  } catch (e) {
    ch.post({ type: 'error', message: (e as Error)?.message ?? String(e) });
    await stop();
  }
}

void main();
