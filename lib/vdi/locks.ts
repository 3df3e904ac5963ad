/**
 * Per-object gates of the write path: a readers-writer lock per object index.
 *
 * - shared: a WRITE_OBJ to an object the VDI owns. Any number at once; sheep
 *   applies each at its own offset.
 * - exclusive: anything that replaces or removes the whole object:
 *   CREATE_AND_WRITE_OBJ (sheep writes a temporary file and renames it over
 *   the object), an unmap (index slot zeroed, DISCARD_OBJ).
 *
 * A holder keeps its gate until the sheep has answered the request it guards
 * (or the transport has given up on it), never only until the caller stopped
 * waiting. Waiters are served first come, first served, so an exclusive
 * waiter is not starved by a stream of shared ones. A request holds at most
 * one gate while it waits for another only in ascending index order
 * (unmap of several objects), so gates cannot deadlock.
 */

interface Waiter {
  readonly exclusive: boolean;
  readonly resolve: () => void;
}

interface Gate {
  shared: number;
  exclusive: boolean;
  readonly waiters: Waiter[];
}

export class ObjectLocks {
  private readonly gates = new Map<number, Gate>();

  /** Take a shared gate now if that needs no wait (the overwrite fast path); false otherwise. */
  tryShared(idx: number): boolean {
    const g = this.gates.get(idx);
    if (g === undefined) {
      this.gates.set(idx, { shared: 1, exclusive: false, waiters: [] });
      return true;
    }
    if (g.exclusive || g.waiters.length > 0) return false;
    g.shared++;
    return true;
  }

  /** Take the gate of `idx`; resolves when it is held. */
  acquire(idx: number, exclusive: boolean): Promise<void> {
    let g = this.gates.get(idx);
    if (g === undefined) {
      g = { shared: 0, exclusive: false, waiters: [] };
      this.gates.set(idx, g);
    }
    if (g.waiters.length === 0 && !g.exclusive && (!exclusive || g.shared === 0)) {
      if (exclusive) g.exclusive = true;
      else g.shared++;
      return Promise.resolve();
    }
    const waiters = g.waiters;
    return new Promise<void>((resolve) => {
      waiters.push({ exclusive, resolve });
    });
  }

  release(idx: number, exclusive: boolean): void {
    const g = this.gates.get(idx);
    if (g === undefined) throw new Error(`object gate ${idx} released but not held`);
    if (exclusive) g.exclusive = false;
    else g.shared--;
    while (g.waiters.length > 0 && !g.exclusive) {
      const w = g.waiters[0] as Waiter;
      if (w.exclusive) {
        if (g.shared > 0) break;
        g.exclusive = true;
      } else {
        g.shared++;
      }
      g.waiters.shift();
      w.resolve();
    }
    if (!g.exclusive && g.shared === 0 && g.waiters.length === 0) this.gates.delete(idx);
  }

  /** Whether anything holds or waits for the gate of `idx`. */
  busy(idx: number): boolean {
    return this.gates.has(idx);
  }

  /** Objects with a gate held or awaited (diagnostics, tests). */
  get size(): number {
    return this.gates.size;
  }
}

/**
 * The index update of objects one write created: resolves true once their
 * slots are in the inode and the snapshot fence passed, false if either
 * failed. Other writes to those objects wait on it before they report
 * success; the creating write settles it itself, before it waits on anyone
 * else's, so two writes that wait on each other's objects cannot deadlock.
 */
export class Confirmation {
  readonly promise: Promise<boolean>;
  private done: ((ok: boolean) => void) | undefined;
  constructor() {
    let done: (ok: boolean) => void = () => {};
    this.promise = new Promise<boolean>((r) => {
      done = r;
    });
    this.done = done;
  }
  settle(ok: boolean): void {
    const d = this.done;
    this.done = undefined;
    d?.(ok);
  }
}
