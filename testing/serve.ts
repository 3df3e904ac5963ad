/** `sheepdog serve`'s loop around the embedded sheep (not part of the public API). */
import { startMemorySheep } from './embedded.js';
import type { MemorySheepOptions } from './types.js';

export interface ServeOptions {
  /** Stop when this fires. */
  signal: AbortSignal;
  /** Called once every node listens. */
  onListening?: (addresses: readonly string[]) => void;
}

/**
 * Run a cluster until `signal` aborts, then close it: what `sheepdog serve`
 * needs (it passes parsed options; port defaults to 7000 there).
 */
export async function serveMemorySheep(opts: MemorySheepOptions, serve: ServeOptions): Promise<void> {
  const sheep = await startMemorySheep(opts);
  try {
    serve.onListening?.(sheep.addresses);
    if (!serve.signal.aborted) {
      await new Promise<void>((resolve) => serve.signal.addEventListener('abort', () => resolve(), { once: true }));
    }
  } finally {
    await sheep.close();
  }
}
