/**
 * Fixed-layout records carried in bodies, one module per family. Offsets are
 * those of the sheepdog 1.0 structs on x86-64; u64 fields are bigint.
 */
export * from './attr.js';
export * from './bitmap.js';
export * from './btree.js';
export * from './cluster.js';
export * from './inode.js';
export * from './name-body.js';
export * from './node.js';
export * from './vdi-state.js';
