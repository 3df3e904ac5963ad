/**
 * sheepdog-client/protocol: the pure Sheepdog wire codec. No sockets, no
 * timers, no I/O.
 */
export * from './bytes.js';
export * from './constants.js';
export * from './decoder.js';
export * from './errors.js';
export * from './hash.js';
export * from './header.js';
export * from './oid.js';
export * from './opcodes.js';
export * from './placement.js';
export * from './records.js';
