/**
 * `sheepdog-client/testing`: the embedded sheep, a protocol-faithful
 * Sheepdog 1.0 cluster in-process, for tests and demos. See
 * docs/embedded-sheep.md.
 *
 *   import { startMemorySheep } from 'sheepdog-client/testing';
 *   const sheep = await startMemorySheep({ nodes: 3, copies: 2, lock: true });
 *   sheep.addresses   // ['127.0.0.1:PORT', ...]
 *   await sheep.close();
 */
export { startMemorySheep } from './embedded.js';
export type { Fault, FaultHandle, FaultMatch, InjectedFault, MemorySheep, MemorySheepOptions } from './types.js';
