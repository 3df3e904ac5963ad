/**
 * sheepdog-client: the native TypeScript SDK for the Sheepdog block store.
 *
 *   SheepdogClient  typed cluster and VDI operations (lib/client.ts)
 *   Vdi             byte-level I/O on an open VDI (lib/vdi.ts)
 *   SheepdogPool    pipelined connections over several gateways (lib/pool.ts)
 *   SheepdogDriver  OpenStack-style volume driver facade (lib/driver.ts)
 *   startMemorySheep  an embedded, protocol-faithful sheep cluster (lib/sheep/)
 *
 * The pure wire codec is a separate entry point: `sheepdog-client/protocol`.
 */
export * from './errors.js';
export * from './transport/types.js';
export * from './client/names.js';
export * from './transport/pool.js';
export * from './client/client.js';
export * from './driver/driver.js';
export { Vdi, PartialWriteError, type ReadStreamOptions, type WriteStreamOptions } from './vdi/vdi.js';
export * from '../testing/index.js';
