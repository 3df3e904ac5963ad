/** The command table of `sheepdog`, in the order of its help. */
import type { CommandSpec } from '../spec.js';
import { benchCommand } from './bench.js';
import { clusterInfo } from './cluster.js';
import { nodeInfo, nodeList } from './node.js';
import { serveCommand } from './serve.js';
import { vdiGetattr, vdiSetattr } from './vdi-attr.js';
import { vdiExport, vdiImport, vdiRead, vdiWrite } from './vdi-data.js';
import { vdiLockList, vdiLockUnlock } from './vdi-lock.js';
import { vdiClone, vdiRollback, vdiSnapshot } from './vdi-snapshot.js';
import { vdiCreate, vdiDelete, vdiInfo, vdiList, vdiResize } from './vdi.js';

/** Every command whose options the dispatcher parses (all but `bench`). */
export const commands: CommandSpec[] = [
  vdiCreate,
  vdiList,
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
  vdiSetattr,
  vdiGetattr,
  vdiLockList,
  vdiLockUnlock,
  nodeList,
  nodeInfo,
  clusterInfo,
  serveCommand,
];

/** The whole table: `commands`, then `bench` (which takes its arguments verbatim). */
export const commandTable: CommandSpec[] = [...commands, benchCommand];
