/**
 * Discovery: learning the cluster's gateways with GET_NODE_LIST (data_length
 * sized for SD_MAX_NODES). One refresh runs at a time; one asked for while
 * it runs makes it run once more. The reply's nodes are matched against the
 * pool's: new ones are added, discovered ones that left are removed
 * (configured seeds are kept; a seed given by host name is matched to the
 * address it answered from).
 */
import { Op, Result, SD_MAX_NODES, SD_NODE_SIZE } from '../../protocol/constants.js';
import { type NodeResponse, plainRequest } from '../../protocol/header.js';
import { decodeNodeList } from '../../protocol/records/node.js';
import { formatAddress, parseAddress } from '../util/address.js';
import { PoolNode, findResolved } from './node-health.js';
import type { SheepdogPool } from './pool.js';
import type { Reply } from './types.js';

export class Discovery {
  private readonly pool: SheepdogPool;
  /** The pool's nodes by key (shared with the pool). */
  private readonly nodes: Map<string, PoolNode>;
  /** The refresh under way, if any. */
  running: Promise<void> | undefined = undefined;
  /** A refresh was asked for while one ran: run once more. */
  private again = false;
  /** A node list was received at least once. */
  learned = false;

  constructor(pool: SheepdogPool, nodes: Map<string, PoolNode>) {
    this.pool = pool;
    this.nodes = nodes;
  }

  /** Run GET_NODE_LIST and apply it (joins the refresh under way, which then runs once more). */
  refresh(): Promise<void> {
    if (this.running !== undefined) {
      this.again = true;
      return this.running;
    }
    const p = this.run().finally(() => {
      this.running = undefined;
      this.pool._discoveryEnded();
    });
    this.running = p;
    return p;
  }

  private async run(): Promise<void> {
    do {
      this.again = false;
      await this.once();
    } while (this.again && !this.pool.closed);
  }

  private async once(): Promise<void> {
    if (this.pool.closed) return;
    let r: Reply;
    try {
      r = await this.pool.request(plainRequest(Op.GET_NODE_LIST, { dataLength: SD_MAX_NODES * SD_NODE_SIZE }));
    } catch {
      return; // no node answered: the next connection or epoch change tries again
    }
    const h = r.header as NodeResponse;
    if (h.result !== Result.SUCCESS || h.kind !== 'node') return;
    const count = Math.min(h.nrNodes, Math.floor(r.body.length / SD_NODE_SIZE));
    let addrs: string[];
    try {
      addrs = decodeNodeList(r.body, count)
        .filter((n) => n.nid.addr !== '' && n.nid.port !== 0)
        .map((n) => formatAddress(n.nid.addr, n.nid.port));
    } catch {
      return;
    }
    this.learned = true;
    this.apply(addrs, h.epoch);
  }

  /** Add the nodes of `addrs` the pool does not know; remove discovered nodes not in it. */
  private apply(addrs: readonly string[], epoch: number): void {
    if (this.pool.closed || addrs.length === 0) return;
    const nodes = this.nodes;
    const keys = new Set<string>();
    for (const a of addrs) keys.add(parseAddress(a).key);
    const added: string[] = [];
    const removed: string[] = [];
    for (const k of keys) {
      if (nodes.has(k) || findResolved(nodes, k) !== undefined) continue;
      const a = parseAddress(k);
      nodes.set(k, new PoolNode(k, a.host, a.port, false));
      added.push(k);
    }
    for (const n of [...nodes.values()]) {
      if (n.seed || keys.has(n.key) || (n.resolved !== undefined && keys.has(n.resolved))) continue;
      this.pool._removeNode(n);
      removed.push(n.key);
    }
    if (added.length === 0 && removed.length === 0) return;
    this.pool._nodesChanged(epoch, added, removed);
  }
}
