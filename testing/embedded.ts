/**
 * The embedded sheep cluster: its nodes, validation of the options, and
 * `startMemorySheep` (public through testing/index.ts, the
 * `sheepdog-client/testing` entry). `EmbeddedSheep` and `startEmbeddedSheep`
 * expose the implementation to the SDK's own tests.
 */
import net from 'node:net';
import { addrFromString } from '../protocol/records.js';
import { ClusterFlag, ClusterStatus, SD_MAX_COPIES } from '../protocol/constants.js';
import { DEFAULT_MAX_DATA_LENGTH } from '../protocol/decoder.js';
import { InvalidArgumentError } from '../protocol/errors.js';
import { ecPolicyToDp, type NodeRecord, nowCtime, SheepCluster } from './cluster.js';
import { join } from 'node:path';
import { DirBackend } from './persist.js';
import { ObjectStore } from './store.js';
import { type ServerEnv, SheepNode } from './server.js';
import type { Fault, InjectedFault, MemorySheep, MemorySheepOptions } from './types.js';

const FAULT_KINDS = new Set([
  'delay',
  'stall',
  'drop',
  'dropMidFrame',
  'result',
  'unknownId',
  'corruptHeader',
  'execute-drop-reply',
  'execute-late',
  'drop-before-execute',
  'close-mid-payload',
]);
const MAX_NODES = 1024;

function intIn(v: unknown, min: number, max: number, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new InvalidArgumentError(`${what} must be an integer in ${min}..${max}, got ${String(v)}`);
  }
  return v;
}

/** The address the other sheep (and GET_NODE_LIST) see for a listen host. */
function recordAddr(host: string): string {
  if (net.isIPv4(host)) return host === '0.0.0.0' ? '127.0.0.1' : host;
  if (net.isIPv6(host)) return host === '::' ? '::1' : host;
  return '127.0.0.1';
}

function addrKey(addr: string): string {
  const b = new Uint8Array(16);
  addrFromString(addr, b);
  return Buffer.from(b).toString('hex');
}

export class EmbeddedSheep implements MemorySheep {
  readonly cluster: SheepCluster;
  readonly nodes: SheepNode[] = [];
  private reorderOn: boolean;
  private requests = 0;
  /** Exceptions an op threw (answered SYSTEM_ERROR); a test can assert this stays empty. */
  readonly internalErrors: unknown[] = [];
  private closed = false;
  /** The directory persistence of each node's store (none without `dir`). */
  readonly backends: DirBackend[] = [];

  constructor(opts: Required<Pick<MemorySheepOptions, 'reorder'>> & MemorySheepOptions) {
    this.cluster = new SheepCluster({
      nodes: opts.nodes ?? 3,
      maxMemory: opts.maxMemory ?? 4 * 2 ** 30,
      nullMode: opts.nullMode ?? false,
    });
    this.reorderOn = opts.reorder;
    const host = opts.host ?? '127.0.0.1';
    const nodes = opts.nodes ?? 3;
    const storeSize = BigInt(Math.floor(opts.storeSize ?? (opts.maxMemory ?? 4 * 2 ** 30) / nodes));
    const env: ServerEnv = {
      cluster: this.cluster,
      maxDataLength: opts.maxDataLength ?? DEFAULT_MAX_DATA_LENGTH,
      nullMode: opts.nullMode ?? false,
      reorder: () => this.reorderOn,
      countRequest: () => {
        this.requests++;
      },
      onInternalError: (e) => {
        if (this.internalErrors.length < 100) this.internalErrors.push(e);
      },
      killNode: (i) => {
        void this.leave(i, true);
      },
      shutdownAll: () => {
        for (let i = 0; i < this.nodes.length; i++) void this.leave(i, true, false);
      },
    };
    const port = opts.port ?? 0;
    for (let i = 0; i < nodes; i++) {
      this.nodes.push(new SheepNode(env, i, host, recordAddr(host), port === 0 ? 0 : port + i, storeSize));
    }
    this.cluster.members = () => this.members();
  }

  private members(): NodeRecord[] {
    return this.nodes
      .filter((n) => n.up)
      .map((n) => n.record)
      .sort((a, b) => {
        const ka = addrKey(a.addr);
        const kb = addrKey(b.addr);
        return ka < kb ? -1 : ka > kb ? 1 : a.port - b.port;
      });
  }

  get addresses(): readonly string[] {
    return this.nodes.map((n) => n.address);
  }

  get stats(): { objects: number; bytes: number; requests: number; connections: number } {
    let connections = 0;
    for (const n of this.nodes) connections += n.conns.size;
    return {
      objects: this.cluster.store.count,
      bytes: this.cluster.store.bytes,
      requests: this.requests,
      connections,
    };
  }

  private node(i: number): SheepNode {
    intIn(i, 0, this.nodes.length - 1, 'node index');
    return this.nodes[i] as SheepNode;
  }

  /** Start every node (first start). */
  async listen(): Promise<void> {
    try {
      for (const n of this.nodes) await n.start();
    } catch (e) {
      await this.close();
      throw e;
    }
  }

  private async leave(i: number, graceful: boolean, epochBump = true, reset = false): Promise<void> {
    const n = this.node(i);
    if (!n.up) return;
    const stopped = n.stop(graceful, reset);
    // the node is out of the ring at once: nothing is forwarded to it any more
    this.cluster.store.membersChanged();
    this.cluster.nodeLeft(n.record);
    if (epochBump) this.cluster.membershipChanged();
    await stopped;
  }

  async stopNode(i: number): Promise<void> {
    if (this.closed) return;
    await this.leave(i, false);
  }

  async killNode(i: number): Promise<void> {
    if (this.closed) return;
    await this.leave(i, false, true, true);
  }

  readNodeObject(i: number, oid: bigint): Uint8Array | undefined {
    const s = this.cluster.store.nodes[intIn(i, 0, this.nodes.length - 1, 'node index')];
    const o = s?.working.get(oid);
    return o?.read(0, o.size);
  }

  placement(oid: bigint): number[] {
    return [...this.cluster.store.targets(oid)];
  }

  recovered(): Promise<void> {
    return this.cluster.store.recovered();
  }

  get recovering(): boolean {
    return this.cluster.store.recovering;
  }

  async startNode(i: number): Promise<void> {
    if (this.closed) throw new InvalidArgumentError('the embedded sheep is closed');
    const n = this.node(i);
    if (n.up) return;
    if (this.cluster.status === ClusterStatus.SHUTDOWN) {
      // sheep restarted after `dog cluster shutdown`: it comes back running
      this.cluster.status = this.cluster.formatted ? ClusterStatus.OK : ClusterStatus.WAIT;
    }
    await n.start();
    this.cluster.store.membersChanged();
    this.cluster.membershipChanged();
  }

  inject(i: number, fault: Fault): InjectedFault {
    const n = this.node(i);
    if (!fault || typeof fault !== 'object' || !FAULT_KINDS.has(fault.kind)) {
      throw new InvalidArgumentError(`unknown fault kind ${String((fault as { kind?: unknown })?.kind)}`);
    }
    if (fault.opcode !== undefined) intIn(fault.opcode, 0, 255, 'fault.opcode');
    if (fault.oid !== undefined && (typeof fault.oid !== 'bigint' || fault.oid < 0n || fault.oid >= 1n << 64n)) {
      throw new InvalidArgumentError(`fault.oid must be a bigint in 0..2^64-1, got ${String(fault.oid)}`);
    }
    if (fault.after !== undefined) intIn(fault.after, 0, Number.MAX_SAFE_INTEGER, 'fault.after');
    if (fault.times !== undefined) intIn(fault.times, 0, Number.MAX_SAFE_INTEGER, 'fault.times');
    if (fault.kind === 'delay') intIn(fault.ms, 0, 2 ** 31 - 1, 'fault.ms');
    if (fault.kind === 'result') intIn(fault.result, 0, 0xffffffff, 'fault.result');
    if (fault.kind === 'execute-late') {
      if (fault.ms !== undefined) intIn(fault.ms, 0, 2 ** 31 - 1, 'fault.ms');
      if (fault.overtakenBy !== undefined) intIn(fault.overtakenBy, 0, Number.MAX_SAFE_INTEGER, 'fault.overtakenBy');
    }
    if (fault.kind === 'close-mid-payload' && fault.bytes !== undefined) {
      intIn(fault.bytes, 0, 0xffffffff, 'fault.bytes');
    }
    return n.inject(fault);
  }

  clearFaults(i?: number): void {
    if (i === undefined) for (const n of this.nodes) n.faults = [];
    else this.node(i).faults = [];
  }

  setReorder(on: boolean): void {
    this.reorderOn = on;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.cluster.store.close();
    await Promise.all(this.nodes.map((n) => n.dispose()));
    for (const b of this.backends) b.close();
  }
}

function validate(o: MemorySheepOptions): void {
  if (o === null || typeof o !== 'object') throw new InvalidArgumentError('options must be an object');
  const nodes = o.nodes === undefined ? 3 : intIn(o.nodes, 1, MAX_NODES, 'nodes');
  if (o.port !== undefined) {
    intIn(o.port, 0, 65535, 'port');
    if (o.port !== 0 && o.port + nodes - 1 > 65535) throw new InvalidArgumentError('port + nodes - 1 exceeds 65535');
  }
  if (o.host !== undefined && (typeof o.host !== 'string' || o.host === '')) {
    throw new InvalidArgumentError('host must be a non-empty string');
  }
  if (o.copies !== undefined) intIn(o.copies, 1, SD_MAX_COPIES, 'copies');
  if (o.copyPolicy !== undefined) {
    intIn(o.copyPolicy, 0, 255, 'copyPolicy');
    const d = (o.copyPolicy >> 4) * 2;
    if (o.copyPolicy !== 0 && (ecPolicyToDp(o.copyPolicy) === 0 || ![2, 4, 8, 16].includes(d))) {
      throw new InvalidArgumentError(
        `copyPolicy 0x${o.copyPolicy.toString(16)} is not ((d/2)<<4)|p with d in 2,4,8,16`,
      );
    }
  }
  if (o.blockSizeShift !== undefined) intIn(o.blockSizeShift, 20, 31, 'blockSizeShift');
  if (o.maxDataLength !== undefined) intIn(o.maxDataLength, 1, 0xffffffff, 'maxDataLength');
  if (o.maxMemory !== undefined) intIn(o.maxMemory, 0, Number.MAX_SAFE_INTEGER, 'maxMemory');
  if (o.storeSize !== undefined) intIn(o.storeSize, 0, Number.MAX_SAFE_INTEGER, 'storeSize');
  if (o.dir !== undefined && (typeof o.dir !== 'string' || o.dir === '')) {
    throw new InvalidArgumentError('dir must be a non-empty string');
  }
}

/** Format the cluster as `dog cluster format -c copies [-l] [-z bss]` would. */
function formatLike(c: SheepCluster, o: MemorySheepOptions): void {
  const policy = o.copyPolicy ?? 0;
  c.nrCopies = policy ? ecPolicyToDp(policy) : (o.copies ?? 3);
  c.copyPolicy = policy;
  c.blockSizeShift = o.blockSizeShift ?? 22;
  c.flags = ClusterFlag.AUTO_VNODES | (o.lock ? ClusterFlag.USE_LOCK : 0);
  c.ctime = nowCtime();
  c.defaultStore = 'plain';
  c.status = ClusterStatus.OK;
}

/** Start an embedded sheep cluster; resolves once every node listens. */
export async function startMemorySheep(opts: MemorySheepOptions = {}): Promise<MemorySheep> {
  return startEmbeddedSheep(opts);
}

/** `startMemorySheep` with the implementation type (internal counters for tests). */
export async function startEmbeddedSheep(opts: MemorySheepOptions = {}): Promise<EmbeddedSheep> {
  validate(opts);
  const dir = opts.dir;
  const backend = dir !== undefined ? new DirBackend(dir) : undefined;
  const sheep = new EmbeddedSheep({ ...opts, reorder: opts.reorder ?? false });
  const c = sheep.cluster;
  const saved = backend?.readConfig();
  // format 1 kept one store for the whole cluster in DIR/obj: placed on the ring once the nodes listen
  let legacy: ObjectStore | undefined;
  if (dir !== undefined) {
    for (const s of c.store.nodes) sheep.backends.push(new DirBackend(join(dir, 'nodes', String(s.index))));
  }
  if (backend && saved) {
    c.loadConfig(saved);
    c.store.nodes.forEach((s, i) => {
      (sheep.backends[i] as DirBackend).loadObjects(s.working);
      // the nodes come back together: what each one stored is current
      s.wasLive = true;
    });
    const old = new ObjectStore(Number.MAX_SAFE_INTEGER);
    backend.loadObjects(old);
    if (old.objects.size > 0) legacy = old;
    if (c.status !== ClusterStatus.OK) c.status = c.formatted ? ClusterStatus.OK : ClusterStatus.WAIT;
  } else if (opts.unformatted) {
    c.flags = ClusterFlag.AUTO_VNODES;
    c.nrCopies = 0;
    c.blockSizeShift = 0;
    c.status = ClusterStatus.WAIT;
  } else {
    formatLike(c, opts);
  }
  if (backend) {
    c.store.setBackends((i) => sheep.backends[i] as DirBackend);
    c.onConfigChange = () => backend.saveConfig(c.config());
  }
  await sheep.listen();
  c.store.membersChanged();
  if (legacy && backend) {
    for (const [oid, obj] of legacy.objects) c.store.put(oid, obj);
    backend.cleared();
  }
  if (saved) c.rebuildVdiState();
  if (c.formatted) {
    const last = c.epochs.at(-1);
    const now = c.members();
    const same =
      last !== undefined &&
      last.nodes.length === now.length &&
      last.nodes.every((n, i) => n.addr === now[i]?.addr && n.port === now[i]?.port);
    if (!same) c.incEpoch();
    else c.store.replan(); // finish whatever recovery the last run left undone
  }
  c.onConfigChange?.();
  return sheep;
}
