/**
 * The command table of `sheepdog`, in the order of its help: each command's
 * words, synopsis and summary (all that the top and group help show), and
 * how to load the module that defines it. A command's module is imported only
 * when that command runs or its own help is asked for, so one-shot commands
 * (`vdi list`) do not pay for the modules of the others (the NBD server, the
 * embedded sheep, progress bars, the benchmark). test/cli/lazy.test.ts checks
 * that every entry matches the spec its module exports.
 */
import type { CommandSpec } from '../spec.js';

/** A command as the table knows it before its module is loaded. */
export interface CommandEntry {
  /** Command words, e.g. ['vdi', 'create']. */
  readonly path: readonly string[];
  /** Positional synopsis (as CommandSpec.args). */
  readonly args: string;
  /** One-line summary (as CommandSpec.summary). */
  readonly summary: string;
  /** The full spec: options, run. */
  load(): Promise<CommandSpec>;
}

// One literal import per module (loaded once; the module cache shares it).
const vdi = () => import('./vdi.js');
const vdiSnapshot = () => import('./vdi-snapshot.js');
const vdiData = () => import('./vdi-data.js');
const vdiBackup = () => import('./vdi-backup.js');
const vdiAttr = () => import('./vdi-attr.js');
const vdiLock = () => import('./vdi-lock.js');
const vdiObject = () => import('./vdi-object.js');
const vdiCheck = () => import('./vdi-check.js');
const node = () => import('./node.js');
const cluster = () => import('./cluster.js');
const serve = () => import('./serve.js');
const nbd = () => import('./nbd.js');
const bench = () => import('./bench.js');

function entry(path: string[], args: string, summary: string, load: () => Promise<CommandSpec>): CommandEntry {
  return { path, args, summary, load };
}

/** Every command whose options the dispatcher parses (all but `bench`). */
export const commands: readonly CommandEntry[] = [
  entry(['vdi', 'create'], 'NAME SIZE', 'create a VDI (thin unless --prealloc)', async () => (await vdi()).vdiCreate),
  entry(
    ['vdi', 'list'],
    '[NAME]',
    'list VDIs and snapshots (s = snapshot, c = clone)',
    async () => (await vdi()).vdiList,
  ),
  entry(
    ['vdi', 'tree'],
    '',
    'VDIs, snapshots and clones as a forest (parent → child)',
    async () => (await vdi()).vdiTree,
  ),
  entry(['vdi', 'info'], 'NAME', 'details of a VDI (or of one of its snapshots)', async () => (await vdi()).vdiInfo),
  entry(
    ['vdi', 'delete'],
    'NAME',
    'delete a VDI, or one of its snapshots with --snapshot',
    async () => (await vdi()).vdiDelete,
  ),
  entry(['vdi', 'snapshot'], 'NAME', 'snapshot a VDI under a tag', async () => (await vdiSnapshot()).vdiSnapshot),
  entry(
    ['vdi', 'clone'],
    'SRC DST',
    'clone a snapshot of SRC into a new VDI DST (copy-on-write)',
    async () => (await vdiSnapshot()).vdiClone,
  ),
  entry(
    ['vdi', 'rollback'],
    'NAME',
    'roll a VDI back to a snapshot (discards changes made since)',
    async () => (await vdiSnapshot()).vdiRollback,
  ),
  entry(
    ['vdi', 'resize'],
    'NAME SIZE',
    'grow a VDI to SIZE (shrinking is refused)',
    async () => (await vdi()).vdiResize,
  ),
  entry(
    ['vdi', 'read'],
    'NAME [OFFSET [LEN]]',
    'copy LEN bytes of the VDI from OFFSET to stdout (default: all of it)',
    async () => (await vdiData()).vdiRead,
  ),
  entry(
    ['vdi', 'write'],
    'NAME [OFFSET [LEN]]',
    'copy stdin into the VDI at OFFSET (LEN bytes at most; default: until end of input)',
    async () => (await vdiData()).vdiWrite,
  ),
  entry(
    ['vdi', 'import'],
    'NAME FILE',
    'copy a raw image file into a VDI (created with the file’s size if missing)',
    async () => (await vdiData()).vdiImport,
  ),
  entry(
    ['vdi', 'export'],
    'NAME FILE',
    'copy a VDI (or a snapshot) into a raw image file, sparse',
    async () => (await vdiData()).vdiExport,
  ),
  entry(
    ['vdi', 'backup'],
    'NAME',
    'write a backup of the VDI to stdout, in dog 1.0’s format (incremental with -F)',
    async () => (await vdiBackup()).vdiBackup,
  ),
  entry(
    ['vdi', 'restore'],
    'NAME',
    'restore a backup (dog 1.0’s format) from stdin onto snapshot -s of the VDI',
    async () => (await vdiBackup()).vdiRestore,
  ),
  entry(
    ['vdi', 'setattr'],
    'NAME KEY [VALUE]',
    'set (or with --delete, remove) a VDI attribute; VALUE defaults to stdin',
    async () => (await vdiAttr()).vdiSetattr,
  ),
  entry(
    ['vdi', 'getattr'],
    'NAME KEY',
    'print a VDI attribute’s value (raw bytes; --json: as UTF-8 text)',
    async () => (await vdiAttr()).vdiGetattr,
  ),
  entry(
    ['vdi', 'lock', 'list'],
    '',
    'list VDIs whose lock is held, and by which gateway',
    async () => (await vdiLock()).vdiLockList,
  ),
  entry(
    ['vdi', 'lock', 'unlock'],
    'NAME',
    'force-release a VDI’s lock, whoever holds it',
    async () => (await vdiLock()).vdiLockUnlock,
  ),
  entry(
    ['vdi', 'object', 'location'],
    'NAME',
    'which nodes hold an object of a VDI, and where placement puts it',
    async () => (await vdiObject()).vdiObjectLocation,
  ),
  entry(
    ['vdi', 'object', 'map'],
    'NAME',
    'the allocated objects of a VDI and the VDI owning each',
    async () => (await vdiObject()).vdiObjectMap,
  ),
  entry(
    ['vdi', 'check'],
    'NAME',
    'check the replicas of every object of a VDI (--repair: fix by majority)',
    async () => (await vdiCheck()).vdiCheck,
  ),
  entry(['node', 'list'], '', 'list the cluster’s nodes', async () => (await node()).nodeList),
  entry(['node', 'info'], '', 'store size and use of every node, and the total', async () => (await node()).nodeInfo),
  entry(
    ['node', 'recovery'],
    '[info]',
    'nodes in recovery and their progress',
    async () => (await node()).nodeRecovery,
  ),
  entry(
    ['node', 'kill'],
    'ID|HOST:PORT',
    'stop one sheep (the others recover its copies)',
    async () => (await node()).nodeKill,
  ),
  entry(
    ['cluster', 'info'],
    '',
    'cluster status, format parameters and members',
    async () => (await cluster()).clusterInfo,
  ),
  entry(
    ['cluster', 'format'],
    '',
    'format the cluster (every VDI of a formatted cluster is lost)',
    async () => (await cluster()).clusterFormat,
  ),
  entry(
    ['cluster', 'check'],
    '',
    'vdi check of every VDI and snapshot (--repair: fix by majority)',
    async () => (await cluster()).clusterCheck,
  ),
  entry(
    ['cluster', 'recover'],
    'force|enable|disable',
    'force recovery now, or turn automatic recovery on or off',
    async () => (await cluster()).clusterRecover,
  ),
  entry(['cluster', 'shutdown'], '', 'stop every sheep of the cluster', async () => (await cluster()).clusterShutdown),
  entry(
    ['serve'],
    '',
    'run an embedded sheep cluster in the foreground (Ctrl-C stops it)',
    async () => (await serve()).serveCommand,
  ),
  entry(
    ['nbd', 'serve'],
    '[NAME[@TAG]...]',
    'serve VDIs and snapshots over NBD in the foreground (Ctrl-C stops it)',
    async () => (await nbd()).nbdServe,
  ),
];

/** The whole table: `commands`, then `bench` (which takes its arguments verbatim). */
export const commandTable: readonly CommandEntry[] = [
  ...commands,
  entry(
    ['bench'],
    '[ARGS...]',
    'benchmarks against a cluster (sheepdog bench --help)',
    async () => (await bench()).benchCommand,
  ),
];
