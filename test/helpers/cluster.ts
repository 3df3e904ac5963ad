/** Start an embedded sheep cluster and a client for a test; both torn down with the test. */
import type { Test } from 'tap';
import { SheepdogClient, type ClientOptions } from '../../lib/client/client.js';
import { startMemorySheep } from '../../testing/index.js';
import type { MemorySheep, MemorySheepOptions } from '../../testing/types.js';

export interface Cluster {
  sheep: MemorySheep;
  client: SheepdogClient;
}

export async function withCluster(
  t: Test,
  sheepOpts: MemorySheepOptions = {},
  clientOpts: Omit<ClientOptions, 'nodes'> = {},
): Promise<Cluster> {
  const sheep = await startMemorySheep({ nodes: 3, copies: 2, ...sheepOpts });
  const client = new SheepdogClient({ nodes: [...sheep.addresses], ...clientOpts });
  t.teardown(async () => {
    await client.close();
    await sheep.close();
  });
  return { sheep, client };
}

/** Deterministic pseudo-random bytes (xorshift32). */
export function pattern(len: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(len);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

export const MiB = 2 ** 20;
export const GiB = 2 ** 30;
export const TiB = 2 ** 40;
