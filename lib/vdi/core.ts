/**
 * What every handle of one working VDI in a client shares: the inode as last
 * loaded (header and index), the per-object gates, and the objects created
 * whose index update is not confirmed yet. Two handles of the same VDI in
 * one process must share these, or one handle's CREATE_AND_WRITE_OBJ could
 * replace an object the other just wrote. Snapshot handles are read-only and
 * keep a state of their own.
 */
import type { InodeHeader } from '../../protocol/records.js';
import type { Transport } from '../transport/types.js';
import { type Confirmation, ObjectLocks } from './locks.js';
import type { IndexIO, VdiIndex } from './vdi-index.js';

/** What an open VDI needs from the client that opened it. */
export interface VdiHost {
  readonly transport: Transport;
  readonly indexIO: IndexIO;
  /** The working vid of `name` now (GET_VDI_INFO: a cluster op, ordered with snapshots). */
  lookupWorking(name: string, signal?: AbortSignal): Promise<number>;
  loadInode(vid: number, signal?: AbortSignal): Promise<{ header: InodeHeader; index: VdiIndex }>;
  releaseLock(vid: number): Promise<void>;
  /** The last handle of a shared state closed. */
  forget?(state: VdiCore): void;
  /**
   * Run `fn` while no snapshot of `name` by this client runs (they wait for
   * it, as they wait for each other): a write or discard that keeps meeting
   * snapshots retries this way, so its attempt cannot be overtaken again.
   */
  exclusiveOfSnapshots<T>(name: string, fn: () => Promise<T>): Promise<T>;
  readonly maxConcurrency: number;
  readonly readonlyRetries: number;
  /** Retries of a result sheep gives while it recovers (NO_OBJ on an indexed object...). */
  readonly transientRetries: number;
}

export class VdiCore {
  readonly host: VdiHost;
  readonly name: string;
  readonly snapshot: boolean;
  header: InodeHeader;
  index: VdiIndex;
  /** Bumped by every reload: a write that saw an older one redoes its decisions. */
  generation = 0;
  private reloading: Promise<void> | undefined;
  readonly locks = new ObjectLocks();
  /** Objects created but whose index update is not confirmed yet, with the write confirming them. */
  readonly pending = new Map<number, Confirmation>();
  /** Objects we created (slot = our vid in memory) whose index update failed: the next write re-persists them. */
  readonly unpersisted = new Set<number>();
  /** Open handles on this state. */
  refs = 0;

  constructor(host: VdiHost, name: string, header: InodeHeader, index: VdiIndex, snapshot: boolean) {
    this.host = host;
    this.name = name;
    this.header = header;
    this.index = index;
    this.snapshot = snapshot;
  }

  get objectSize(): number {
    return 2 ** this.header.blockSizeShift;
  }

  /** Re-read the working VDI (after a snapshot moved it), once per generation. */
  async reload(gen: number, signal?: AbortSignal): Promise<void> {
    if (this.generation !== gen) return;
    if (!this.reloading) {
      this.reloading = (async () => {
        try {
          const vid = await this.host.lookupWorking(this.name, signal);
          const { header, index } = await this.host.loadInode(vid, signal);
          if (vid === this.header.vdiId) {
            // Same working VDI (a refresh): objects this client created may
            // not be in the inode yet (index update in flight, or failed):
            // keep them, or a later write would create them over again. Any
            // other slot takes the inode's word (a discard elsewhere).
            for (const idx of this.pending.keys()) if (index.get(idx) !== vid) index.set(idx, vid);
            for (const idx of this.unpersisted) if (index.get(idx) !== vid) index.set(idx, vid);
          } else {
            this.unpersisted.clear();
          }
          this.header = header;
          this.index = index;
          this.generation++;
        } finally {
          this.reloading = undefined;
        }
      })();
    }
    await this.reloading;
  }

  /** Re-read a snapshot's inode (snapshots never move). */
  async refreshSnapshot(signal?: AbortSignal): Promise<void> {
    const { header, index } = await this.host.loadInode(this.header.vdiId, signal);
    this.header = header;
    this.index = index;
    this.generation++;
  }
}
