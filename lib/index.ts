/**
 * sheepdog-client: the native TypeScript SDK for the Sheepdog block store.
 *
 *   SheepdogClient  typed cluster and VDI operations (lib/client/client.ts)
 *   Vdi             byte-level I/O on an open VDI (lib/vdi/vdi.ts)
 *   SheepdogPool    pipelined connections over several gateways (lib/transport/pool.ts)
 *   SheepdogDriver  OpenStack-style volume driver facade (lib/driver/driver.ts)
 *   errors          every typed error (lib/errors.ts)
 *
 * The other entry points: `sheepdog-client/protocol` (the pure wire codec)
 * and `sheepdog-client/testing` (the embedded sheep cluster).
 *
 * This list is the public API: add a name here only if a user needs it.
 */
import { startMemorySheep as startMemorySheepImpl } from '../testing/index.js';
import type * as testing from '../testing/index.js';

export * from './errors.js';

export { SheepdogClient } from './client/client.js';
export type {
  ClientOptions,
  ClusterInfoResult,
  CreateVdiOptions,
  DeleteVdiOptions,
  LockInfo,
  NodeCapacity,
  NodeInfo,
  OpenVdiOptions,
  SnapshotResult,
  VdiInfo,
} from './client/client.js';
export type { SnapshotRef } from './client/names.js';
export { BackupFormatError, parseBackup } from './client/backup.js';
export type {
  BackupOptions,
  BackupProgress,
  BackupRecord,
  BackupStats,
  BackupStream,
  DiffRange,
  RestoreOptions,
  RestoreResult,
  VdiDiff,
} from './client/backup.js';

export { Vdi } from './vdi/vdi.js';
export type { IoOptions, ReadStreamOptions, WriteStreamOptions } from './vdi/vdi.js';

export { SheepdogPool } from './transport/pool.js';
export type { NodeState, NodeStats, PoolEvents, PoolOptions, PoolStats, ReconnectStrategy } from './transport/pool.js';
export type { Reply, RequestOptions, Transport } from './transport/types.js';

export { DRIVER_VERSION, SheepdogDriver } from './driver/driver.js';
export type {
  ConnectionInfo,
  CopyImageOptions,
  CopyResult,
  CreateVolumeSpec,
  DeleteResult,
  DriverLogger,
  SheepdogDriverOptions,
  SnapshotSpec,
  VolumeLocator,
  VolumeRef,
  VolumeStats,
} from './driver/driver.js';

/**
 * Start an embedded sheep cluster.
 *
 * @deprecated Import it from `sheepdog-client/testing`; the main entry stops
 * exporting it in the next release.
 */
export const startMemorySheep: typeof startMemorySheepImpl = startMemorySheepImpl;
/** @deprecated Import it from `sheepdog-client/testing`. */
export type MemorySheep = testing.MemorySheep;
/** @deprecated Import it from `sheepdog-client/testing`. */
export type MemorySheepOptions = testing.MemorySheepOptions;
/** @deprecated Import it from `sheepdog-client/testing`. */
export type Fault = testing.Fault;
/** @deprecated Import it from `sheepdog-client/testing`. */
export type FaultHandle = testing.FaultHandle;
/** @deprecated Import it from `sheepdog-client/testing`. */
export type FaultMatch = testing.FaultMatch;
