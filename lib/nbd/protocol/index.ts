/**
 * The NBD codec (NetworkBlockDevice/nbd doc/proto.md), pure: no sockets, no
 * timers. The server (lib/nbd/server.ts) binds it to sockets and to Vdi.
 */
export * from './constants.js';
export * from './decoder.js';
export * from './encode.js';
export * from './errors.js';
export * from './options.js';
