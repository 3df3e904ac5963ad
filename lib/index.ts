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
export * from './transport.js';
export * from './names.js';
export * from './pool.js';
export * from './client.js';
export * from './driver.js';
export { Vdi, PartialWriteError, type ReadStreamOptions, type WriteStreamOptions } from './vdi.js';
export * from './sheep/index.js';
