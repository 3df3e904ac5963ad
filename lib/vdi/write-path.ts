/**
 * The write path of a VDI: writes, discards and write-zeroes over the
 * objects of the working VDI, safe under overlapping concurrent calls and
 * snapshots taken by anyone. docs/architecture.md ("the write path") draws
 * the decisions; the rules:
 *
 * 1. A piece of a write goes to one object. If the VDI owns the object it is
 *    a WRITE_OBJ under the object's shared gate; otherwise a
 *    CREATE_AND_WRITE_OBJ (copy-on-write from the parent's object, if any)
 *    under its exclusive gate. A gate is held until the sheep answered.
 * 2. Objects a write created are persisted in the inode index, then the
 *    snapshot fence runs (GET_VDI_INFO, a cluster op, ordered after any
 *    snapshot): if the working vid moved, the write is redone against the new
 *    working VDI. Only then does the write settle its own confirmation.
 * 3. A write that wrote into an object another write created but has not yet
 *    confirmed waits on that confirmation before it reports success (its
 *    bytes are only durable once the slot is in the inode). It settles its
 *    own confirmation first, so writes waiting on each other cannot deadlock.
 * 4. A discard unmaps whole objects under their exclusive gates (taken in
 *    ascending order, after their pending confirmations, which it awaits
 *    holding no gate), with the snapshot fence run before the index
 *    changes (a discard never zeroes the slots of a snapshot that existed
 *    when it was called) and after (a snapshot taken meanwhile: unmap again
 *    in the new working VDI). Partial objects get zeros written.
 * 5. A caller's abort or timeout stops pieces not yet sent; pieces already
 *    sent are waited for (their gates stay closed), so an abandoned write can
 *    never land after a later one.
 */
import { Flag, Op, Result, StorePolicy } from '../../protocol/constants.js';
import { objRequest } from '../../protocol/header.js';
import { vidToDataOid, vidToVdiOid } from '../../protocol/oid.js';
import { NoObjError, NoVdiError, PartialWriteError, ReadOnlyError, responseError } from '../errors.js';
import type { RequestOptions } from '../transport/types.js';
import { runBounded } from '../util/bounded.js';
import { vdiRetryChannel } from '../util/diagnostics.js';
import { abortedError } from '../util/signal.js';
import { Confirmation } from './locks.js';
import type { VdiCore } from './core.js';

/**
 * Largest body of one object request. Objects can be up to 2 GiB (bss 31),
 * far over what a gateway accepts in one frame (our pool and the embedded
 * sheep default to 64 MiB): larger pieces are split within the object.
 */
export const MAX_IO = 32 * 2 ** 20;

export interface Piece {
  idx: number;
  /** Offset inside the object. */
  within: number;
  /** Offset inside the caller's buffer (or range). */
  pos: number;
  len: number;
}

/** Split a range per object, and large objects (bss > 25) into requests of at most `maxLen` bytes. */
export function splitPieces(objectSize: number, offset: number, length: number, maxLen = Infinity): Piece[] {
  const out: Piece[] = [];
  let pos = 0;
  while (pos < length) {
    const abs = offset + pos;
    const idx = Math.floor(abs / objectSize);
    const within = abs - idx * objectSize;
    const len = Math.min(objectSize - within, length - pos, maxLen);
    out.push({ idx, within, pos, len });
    pos += len;
  }
  return out;
}

/** Options of one call on the write path. */
export interface CallOptions {
  signal?: AbortSignal | undefined;
}

/** Object request options: the caller's signal only stops requests not yet on the wire. */
function reqOpts(signal: AbortSignal | undefined): RequestOptions {
  return signal === undefined ? UNTIL_REPLY : { signal, untilReply: true };
}
const UNTIL_REPLY: RequestOptions = { untilReply: true };
const DISCARD_OPTS: RequestOptions = { untilReply: true, idempotent: true };

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * After this many attempts made stale by snapshots, a write or discard runs
 * its next attempts exclusive of this client's snapshots of the VDI
 * (VdiHost.exclusiveOfSnapshots): under a steady stream of snapshots, an
 * attempt as long as a burst of replays would otherwise be overtaken every
 * time. (Not for NO_OBJ: a recovering cluster is waited out, not
 * serialised.)
 */
const EXCLUSIVE_AFTER = 2;

/** Backoff before redoing a write after a result sheep gives while it recovers. */
function transientDelay(attempt: number): number {
  return Math.min(10 * 2 ** attempt, 1000);
}

/** WRITE_OBJ / CREATE_AND_WRITE_OBJ of one piece; resolves with the result code. */
async function sendWrite(
  st: VdiCore,
  oid: bigint,
  within: number,
  chunk: Uint8Array,
  create: boolean,
  cowOid: bigint,
  signal: AbortSignal | undefined,
): Promise<number> {
  const h = st.header;
  const cow = cowOid !== 0n;
  const r = await st.host.transport.request(
    objRequest(create ? Op.CREATE_AND_WRITE_OBJ : Op.WRITE_OBJ, {
      flags: Flag.CMD_WRITE | (cow ? Flag.CMD_COW : 0),
      oid,
      cowOid,
      offset: within,
      dataLength: chunk.length,
      copies: h.nrCopies,
      copyPolicy: h.copyPolicy,
    }),
    chunk,
    reqOpts(signal),
  );
  return r.header.result;
}

/** One attempt of one write call against one working vid. */
class WriteAttempt {
  readonly st: VdiCore;
  readonly vid: number;
  readonly data: Uint8Array;
  readonly signal: AbortSignal | undefined;
  /** Objects this attempt created or must re-persist. */
  readonly created: number[] = [];
  /** Confirmations of other writes whose objects this one wrote into. */
  readonly deps = new Set<Confirmation>();
  readonly failed: Piece[] = [];
  /** Pieces never sent because the call was aborted. */
  unsent = 0;
  stale = false;
  /** Sheep answered NO_OBJ for an object the index names: redo after a reload (and a pause). */
  noObj = false;
  error: unknown;
  private mine: Confirmation | undefined;

  constructor(st: VdiCore, data: Uint8Array, signal: AbortSignal | undefined) {
    this.st = st;
    this.vid = st.header.vdiId;
    this.data = data;
    this.signal = signal;
  }

  private confirmation(): Confirmation {
    return (this.mine ??= new Confirmation());
  }

  async piece(p: Piece): Promise<void> {
    const st = this.st;
    const vid = this.vid;
    const chunk = this.data.subarray(p.pos, p.pos + p.len);
    for (;;) {
      if (this.signal?.aborted) {
        this.unsent++;
        return;
      }
      if (st.header.vdiId !== vid) {
        this.stale = true; // reloaded meanwhile: redo against the new vid
        return;
      }
      const slot = st.index.get(p.idx);
      const exclusive = slot !== vid;
      await st.locks.acquire(p.idx, exclusive);
      let r: number;
      try {
        if (st.header.vdiId !== vid) {
          this.stale = true;
          return;
        }
        const now = st.index.get(p.idx);
        if (exclusive ? now !== slot : now !== vid) continue; // decided while waiting: decide again
        if (this.signal?.aborted) {
          this.unsent++;
          return;
        }
        const oid = vidToDataOid(vid, p.idx);
        if (!exclusive) {
          const dep = st.pending.get(p.idx);
          r = await sendWrite(st, oid, p.within, chunk, false, 0n, this.signal);
          if (r === Result.SUCCESS) {
            if (dep !== undefined && dep !== this.mine) this.deps.add(dep);
            if (st.unpersisted.has(p.idx) && !this.created.includes(p.idx)) this.created.push(p.idx);
          }
        } else {
          r = await sendWrite(st, oid, p.within, chunk, true, slot === 0 ? 0n : vidToDataOid(slot, p.idx), this.signal);
          if (r === Result.SUCCESS) {
            // Reloaded while we created: the object is in the old vid, which
            // the new working VDI's index may not name. Redo against it.
            if (st.header.vdiId !== vid) {
              this.stale = true;
              return;
            }
            st.index.set(p.idx, vid);
            if (!this.created.includes(p.idx)) this.created.push(p.idx);
            st.pending.set(p.idx, this.confirmation());
          }
        }
      } catch (e) {
        this.fail(p, e);
        return;
      } finally {
        st.locks.release(p.idx, exclusive);
      }
      if (r === Result.SUCCESS) return;
      if (r === Result.READONLY) {
        this.stale = true;
      } else if (r === Result.NO_OBJ && !exclusive) {
        this.noObj = true;
        this.stale = true;
      } else {
        this.fail(p, responseError(r, `write to ${st.name}`));
      }
      return;
    }
  }

  fail(p: Piece, e: unknown): void {
    this.failed.push(p);
    this.error ??= e;
  }

  /** Persist the slots of the objects created, run the snapshot fence, settle our confirmation. */
  async confirm(pieces: readonly Piece[]): Promise<void> {
    const st = this.st;
    const created = this.created;
    try {
      if (created.length === 0 || this.stale || this.error !== undefined) return;
      try {
        await st.index.persist(st.host.indexIO, vidToVdiOid(this.vid), created);
        for (const idx of created) st.unpersisted.delete(idx);
      } catch (e) {
        // Our memory names these objects but the inode may not: later
        // writes to them must persist the slots again (not the fast path).
        for (const idx of created) st.unpersisted.add(idx);
        for (const p of pieces) if (created.includes(p.idx)) this.fail(p, e);
        return;
      }
      // Fence: a snapshot taken after our objects were created but before
      // our index landed copied the old index. GET_VDI_INFO is a cluster op,
      // ordered after any such snapshot.
      try {
        if ((await st.host.lookupWorking(st.name)) !== this.vid) this.stale = true;
      } catch (e) {
        // Unconfirmed: nobody may count on these objects being indexed.
        for (const p of pieces) if (created.includes(p.idx)) this.fail(p, e);
        if (e instanceof NoVdiError) await this.reclaim();
      }
    } finally {
      const mine = this.mine;
      if (mine !== undefined) {
        mine.settle(!this.stale && this.error === undefined);
        for (const idx of created) if (st.pending.get(idx) === mine) st.pending.delete(idx);
      }
    }
  }

  /** The VDI was deleted under us: remove the objects this write created, so nothing leaks. */
  private async reclaim(): Promise<void> {
    const t = this.st.host.transport;
    await runBounded(this.created, this.st.host.maxConcurrency, async (idx) => {
      await t.request(objRequest(Op.REMOVE_OBJ, { oid: vidToDataOid(this.vid, idx) }));
    }).catch(() => {
      // Best effort: the error the caller gets is NoVdiError either way.
    });
  }

  /** The attempt: every piece, then the confirmations of what it created, then those it depends on. */
  async run(pieces: readonly Piece[]): Promise<void> {
    await runBounded(pieces, this.st.host.maxConcurrency, (p) => this.piece(p));
    await this.confirm(pieces);
    await this.awaitDeps();
  }

  /** Wait for the confirmations of other writes' objects we wrote into. */
  async awaitDeps(): Promise<void> {
    if (this.stale || this.error !== undefined) return;
    for (const d of this.deps) if (!(await d.promise)) this.stale = true;
  }
}

/** Write all of `data` at `offset` (range checked by the caller). */
export async function writeRange(st: VdiCore, data: Uint8Array, offset: number, opts: CallOptions = {}): Promise<void> {
  const os = st.objectSize;
  const idx = Math.floor(offset / os);
  const within = offset - idx * os;
  let first = 0;
  let snapshotted = 0;
  // Fast path: one piece into an object this VDI owns, indexed and
  // confirmed, with its gate free: a plain WRITE_OBJ.
  if (
    data.length > 0 &&
    data.length <= MAX_IO &&
    within + data.length <= os &&
    opts.signal === undefined &&
    st.index.get(idx) === st.header.vdiId &&
    !st.pending.has(idx) &&
    !st.unpersisted.has(idx) &&
    st.locks.tryShared(idx)
  ) {
    const gen = st.generation;
    let r: number;
    try {
      r = await sendWrite(st, vidToDataOid(st.header.vdiId, idx), within, data, false, 0n, undefined);
    } finally {
      st.locks.release(idx, false);
    }
    if (r === Result.SUCCESS) return;
    if (r !== Result.READONLY && r !== Result.NO_OBJ) throw responseError(r, `write to ${st.name}`);
    await st.reload(gen);
    first = 1;
    if (r === Result.READONLY) snapshotted = 1;
  }
  return writeGeneral(st, data, offset, first, opts.signal, snapshotted);
}

async function writeGeneral(
  st: VdiCore,
  data: Uint8Array,
  offset: number,
  firstAttempt: number,
  signal: AbortSignal | undefined,
  snapshottedBefore = 0,
): Promise<void> {
  const pieces = splitPieces(st.objectSize, offset, data.length, MAX_IO);
  // Attempts made stale by a snapshot (READONLY, the fence), not by NO_OBJ.
  let snapshotted = snapshottedBefore;
  const host = st.host;
  for (let attempt = firstAttempt; ; attempt++) {
    if (signal?.aborted) throw abortedError(signal, `write to ${st.name}`);
    const gen = st.generation;
    const a = new WriteAttempt(st, data, signal);
    if (snapshotted >= EXCLUSIVE_AFTER) await host.exclusiveOfSnapshots(st.name, () => a.run(pieces));
    else await a.run(pieces);
    if (a.error !== undefined) {
      if (pieces.length === 1 || a.error instanceof NoVdiError) throw a.error;
      throw new PartialWriteError(
        a.failed.map((p) => ({ offset: offset + p.pos, length: p.len })).sort((x, y) => x.offset - y.offset),
        a.error,
      );
    }
    if (a.unsent > 0 && signal !== undefined) throw abortedError(signal, `write to ${st.name}`);
    if (!a.stale) return;
    if (attempt >= host.readonlyRetries) {
      if (a.noObj) throw new NoObjError(`write to ${st.name}: sheep kept answering NO_OBJ for an indexed object`);
      throw new ReadOnlyError(`write to ${st.name}: the VDI kept being snapshotted (${attempt + 1} attempts)`);
    }
    if (a.noObj) {
      publishRetry(st, 'NO_OBJ', attempt);
      await sleep(transientDelay(attempt));
    } else snapshotted++;
    await st.reload(gen, signal);
  }
}

function publishRetry(st: VdiCore, reason: string, attempt: number): void {
  if (vdiRetryChannel.hasSubscribers) vdiRetryChannel.publish({ vdi: st.name, reason, attempt });
}

/**
 * Discard a range: whole objects the VDI maps are unmapped (and reclaimed by
 * sheep); parts of objects that are allocated get zeros written. The range
 * reads as zeros afterwards.
 */
export async function discardRange(st: VdiCore, offset: number, length: number, opts: CallOptions = {}): Promise<void> {
  const signal = opts.signal;
  const os = st.objectSize;
  const size = Number(st.header.vdiSize);
  const pieces = splitPieces(os, offset, length);
  const whole: number[] = [];
  const partial: Piece[] = [];
  for (const p of pieces) {
    if (p.len === os || (p.within === 0 && offset + p.pos + p.len === size)) whole.push(p.idx);
    else partial.push(p);
  }
  for (const p of partial) {
    if (st.index.get(p.idx) === 0) continue;
    await writeZeroes(st, offset + p.pos, p.len, signal);
  }
  if (whole.length > 0) await unmap(st, whole, signal);
}

/** Write zeros over a range (allocating it where needed), at most MAX_IO at a time. */
export async function writeZeroes(
  st: VdiCore,
  offset: number,
  length: number,
  signal: AbortSignal | undefined,
): Promise<void> {
  const zeros = new Uint8Array(Math.min(length, MAX_IO));
  for (let pos = 0; pos < length; pos += zeros.length) {
    const n = Math.min(zeros.length, length - pos);
    await writeGeneral(st, zeros.subarray(0, n), offset + pos, 0, signal);
  }
}

/** Unmap whole objects: exclusive gates in ascending order, pending creations confirmed, fence first. */
async function unmap(st: VdiCore, idxs: readonly number[], signal: AbortSignal | undefined): Promise<void> {
  const host = st.host;
  for (let attempt = 0; ; attempt++) {
    if (signal?.aborted) throw abortedError(signal, `discard of ${st.name}`);
    const gen = st.generation;
    const vid = st.header.vdiId;
    const todo = idxs.filter((i) => st.index.get(i) !== 0).sort((a, b) => a - b);
    if (todo.length === 0) return;
    const run = () => unmapAttempt(st, vid, todo, signal);
    // Every stale attempt of an unmap is a snapshot's doing.
    const stale = await (attempt >= EXCLUSIVE_AFTER ? host.exclusiveOfSnapshots(st.name, run) : run());
    if (!stale) return;
    if (attempt >= host.readonlyRetries) {
      throw new ReadOnlyError(`discard of ${st.name}: the VDI kept being snapshotted (${attempt + 1} attempts)`);
    }
    await st.reload(gen, signal);
  }
}

/** One attempt of unmap: true when a snapshot moved the VDI meanwhile (stale: reload and redo). */
async function unmapAttempt(
  st: VdiCore,
  vid: number,
  todo: readonly number[],
  signal: AbortSignal | undefined,
): Promise<boolean> {
  const host = st.host;
  const held: number[] = [];
  let stale = false;
  try {
    // Creations of these objects still being confirmed: their index update
    // must land before ours, or it would re-add a slot we zero. Wait for
    // them holding no gate (the creating write may still need one of
    // ours to finish), then take the gates; if another creation slipped
    // in meanwhile, let go and wait again.
    for (;;) {
      for (const idx of todo) {
        const c = st.pending.get(idx);
        if (c !== undefined) await c.promise;
      }
      for (const idx of todo) {
        await st.locks.acquire(idx, true);
        held.push(idx);
      }
      if (!todo.some((idx) => st.pending.has(idx))) break;
      for (const idx of held) st.locks.release(idx, true);
      held.length = 0;
    }
    if (st.header.vdiId !== vid || (await host.lookupWorking(st.name, signal)) !== vid) {
      stale = true;
    } else {
      const mapped = todo.filter((i) => st.index.get(i) !== 0);
      if (mapped.length > 0) {
        await unmapHeld(st, vid, mapped);
        // Fence after: a snapshot that ran between the check above and our
        // index write copied the old slots into the new working VDI (the
        // zeroing went to what is now the snapshot, a state that existed
        // while we ran). Unmap again in the new working VDI.
        if ((await host.lookupWorking(st.name)) !== vid) stale = true;
      }
    }
  } finally {
    for (const idx of held) st.locks.release(idx, true);
  }
  return stale;
}

/** Zero the slots (flat) or DISCARD_OBJ / rewrite the root (hyper), with the gates held. */
async function unmapHeld(st: VdiCore, vid: number, idxs: number[]): Promise<void> {
  const host = st.host;
  const index = st.index;
  const inode = vidToVdiOid(vid);
  const before = idxs.map((i) => index.get(i));
  for (const i of idxs) {
    index.set(i, 0);
    st.unpersisted.delete(i);
  }
  try {
    if (st.header.storePolicy !== StorePolicy.HYPER) {
      await index.persist(host.indexIO, inode, idxs);
      return;
    }
    // Hyper volumes have no refcounts: DISCARD_OBJ removes an own object and
    // clears its entry server-side, rewriting the B-tree root. It runs in the
    // index's write queue, so no root write of ours (built from memory, which
    // no longer holds these entries) is in flight to race it.
    const own = idxs.filter((_, k) => before[k] === vid);
    const others = idxs.filter((_, k) => before[k] !== vid);
    await index.serialize(async () => {
      await runBounded(own, host.maxConcurrency, async (idx) => {
        // Repeatable here: a repeat answers NO_OBJ, which is taken as done,
        // so a DISCARD_OBJ whose connection died is sent again rather than
        // ending the call with OutcomeUnknownError. Sent like the data
        // writes (untilReply): the gate is held while sheep may act on it.
        const r = await host.transport.request(
          objRequest(Op.DISCARD_OBJ, { oid: vidToDataOid(vid, idx) }),
          undefined,
          DISCARD_OPTS,
        );
        if (r.header.result !== Result.SUCCESS && r.header.result !== Result.NO_OBJ) {
          throw responseError(r.header.result, `discard of ${st.name}`, r.node);
        }
      });
    });
    if (others.length > 0) await index.persist(host.indexIO, inode, others);
  } catch (e) {
    // What landed is unknown: take the inode's word for it.
    await st.reload(st.generation).catch(() => {});
    throw e;
  }
}
