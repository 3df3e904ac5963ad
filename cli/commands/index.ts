/** The command table of `sheepdog`, in the order of its help. */
import type { CommandSpec } from '../spec.js';
import { benchCommand } from './bench.js';
import { clusterCheck, clusterFormat, clusterInfo, clusterRecover, clusterShutdown } from './cluster.js';
import { nbdServe } from './nbd.js';
import { nodeInfo, nodeKill, nodeList, nodeRecovery } from './node.js';
import { serveCommand } from './serve.js';
import { vdiGetattr, vdiSetattr } from './vdi-attr.js';
import { vdiBackup, vdiRestore } from './vdi-backup.js';
import { vdiExport, vdiImport, vdiRead, vdiWrite } from './vdi-data.js';
import { vdiLockList, vdiLockUnlock } from './vdi-lock.js';
import { vdiClone, vdiRollback, vdiSnapshot } from './vdi-snapshot.js';
import { vdiCheck } from './vdi-check.js';
import { vdiObjectLocation, vdiObjectMap } from './vdi-object.js';
import { vdiCreate, vdiDelete, vdiInfo, vdiList, vdiResize, vdiTree } from './vdi.js';

/** Every command whose options the dispatcher parses (all but `bench`). */
export const commands: CommandSpec[] = [
  vdiCreate,
  vdiList,
  vdiTree,
  vdiInfo,
  vdiDelete,
  vdiSnapshot,
  vdiClone,
  vdiRollback,
  vdiResize,
  vdiRead,
  vdiWrite,
  vdiImport,
  vdiExport,
  vdiBackup,
  vdiRestore,
  vdiSetattr,
  vdiGetattr,
  vdiLockList,
  vdiLockUnlock,
  vdiObjectLocation,
  vdiObjectMap,
  vdiCheck,
  nodeList,
  nodeInfo,
  nodeRecovery,
  nodeKill,
  clusterInfo,
  clusterFormat,
  clusterCheck,
  clusterRecover,
  clusterShutdown,
  serveCommand,
  nbdServe,
];

/** The whole table: `commands`, then `bench` (which takes its arguments verbatim). */
export const commandTable: CommandSpec[] = [...commands, benchCommand];
