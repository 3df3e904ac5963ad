/**
 * Request deadlines without a timer per request (undici's "fast timers"
 * idea): timeouts of a second or more are kept in one list that a single
 * 250 ms interval sweeps, so they fire at most 250 ms late; shorter ones use
 * a native timer. Entries are cancelled by clearing their `deadline`, and
 * dropped at the next sweep, or sooner: once the cancelled entries outnumber
 * the armed ones (and at least COMPACT_MIN), the list is compacted at once.
 * A cancelled entry still references its request, so at tens of thousands of
 * requests a second a list swept only every 250 ms would keep thousands of
 * finished requests (and what they reference: headers, reply bodies) alive
 * long enough to be promoted out of V8's young generation. Nothing here
 * allocates a closure per request.
 */

/** Something with a deadline. `deadline` is `performance.now()`-based; 0 = none / cancelled. */
export interface Deadlined {
  deadline: number;
  /** Native timer of a short timeout, if any. */
  timer: NodeJS.Timeout | undefined;
  onDeadline(): void;
}

const SWEEP_MS = 250;
/** Below this, a native timer is more precise than the sweep. */
const NATIVE_BELOW_MS = 1000;

const list: Deadlined[] = [];
let sweeper: NodeJS.Timeout | undefined;
/** Deadlines armed in the list (not fired, not cancelled). The sweep runs only while there are some. */
let live = 0;
/** Entries of `list` cancelled since it was last compacted (an upper bound: a re-armed entry counts as cancelled). */
let dead = 0;
/** Cancelled entries tolerated before a compaction, however few are armed. */
const COMPACT_MIN = 64;
/**
 * A sweep is iterating `list`: a deadline callback may cancel the last other
 * live deadline (a request settling others, a connection destroyed), which
 * must not truncate the list under the loop; the sweep stops the interval
 * itself once it is done.
 */
let sweeping = false;

/** Whether the interval keeps the process alive (it does while a deadline is armed). */
let sweeperRefed = false;

function stopSweeper(): void {
  if (sweeping) return; // sweep() compacts the list and stops the interval when it ends
  if (sweeper !== undefined) clearInterval(sweeper);
  sweeper = undefined;
  sweeperRefed = false;
  list.length = 0; // every entry left is cancelled
  dead = 0;
}

/**
 * The last armed deadline was cancelled: the list is emptied, and the
 * interval stops keeping the process alive but runs on until the next sweep
 * (which stops it if nothing was armed since). A request at a time (QD 1)
 * would otherwise clear and create the interval once per request.
 */
function goIdle(): void {
  if (sweeping) return;
  list.length = 0; // every entry left is cancelled
  dead = 0;
  if (sweeper !== undefined && sweeperRefed) {
    sweeper.unref();
    sweeperRefed = false;
  }
}

/** Drop cancelled entries (amortized: runs once per `max(COMPACT_MIN, live)` cancels, over `live + dead` entries). */
function compact(): void {
  let w = 0;
  for (let r = 0; r < list.length; r++) {
    const d = list[r] as Deadlined;
    if (d.deadline !== 0 && d.timer === undefined) list[w++] = d;
  }
  list.length = w;
  dead = 0;
}

function fireNative(d: Deadlined): void {
  d.timer = undefined;
  if (d.deadline === 0) return;
  d.deadline = 0;
  d.onDeadline();
}

function sweep(): void {
  if (sweeping) return;
  sweeping = true;
  const now = performance.now();
  const n = list.length;
  let w = 0;
  let r = 0;
  try {
    for (; r < n; r++) {
      const d = list[r] as Deadlined;
      if (d.deadline === 0 || d.timer !== undefined) continue;
      if (d.deadline <= now) {
        d.deadline = 0;
        live--;
        d.onDeadline();
        continue;
      }
      list[w++] = d;
    }
  } finally {
    // Entries not reached (a callback threw: it is rethrown) and entries
    // added while firing (after `n`) are kept, cancelled ones dropped.
    for (let i = r < n ? r + 1 : n; i < list.length; i++) {
      const d = list[i] as Deadlined;
      if (d.deadline !== 0) list[w++] = d;
    }
    list.length = w;
    dead = 0;
    sweeping = false;
    if (live === 0) stopSweeper();
  }
}

/** Arm `d` to fire `ms` from now (ms > 0). */
export function armDeadline(d: Deadlined, ms: number): void {
  if (d.deadline !== 0 && d.timer === undefined) live--; // re-armed: counted again below
  if (d.timer !== undefined) {
    clearTimeout(d.timer);
    d.timer = undefined;
  }
  d.deadline = performance.now() + ms;
  if (ms < NATIVE_BELOW_MS) {
    d.timer = setTimeout(fireNative, ms, d);
    return;
  }
  list.push(d);
  live++;
  // Ref'd while a deadline is armed: a request waiting for its deadline
  // keeps the process alive. Unref'd as soon as none is, stopped at the
  // next sweep if none was armed again.
  if (sweeper === undefined) sweeper = setInterval(sweep, SWEEP_MS);
  else if (sweeperRefed) return;
  else sweeper.ref();
  sweeperRefed = true;
}

/** Cancel `d`'s deadline (idempotent). */
export function disarmDeadline(d: Deadlined): void {
  const inList = d.deadline !== 0 && d.timer === undefined;
  d.deadline = 0;
  if (inList) {
    if (--live === 0) goIdle();
    else if (++dead >= COMPACT_MIN && dead > live && !sweeping) compact();
  }
  if (d.timer !== undefined) {
    clearTimeout(d.timer);
    d.timer = undefined;
  }
}

/** @internal Run one sweep now (tests: a deadline callback that cancels others). */
export function sweepNow(): void {
  sweep();
}

/** Deadlines waiting in the sweep list (tests, stats). */
export function pendingDeadlines(): number {
  let n = 0;
  for (const d of list) if (d.deadline !== 0) n++;
  return n;
}

/** @internal Entries in the sweep list, cancelled ones included (tests: cancelled entries do not pile up). */
export function listedDeadlines(): number {
  return list.length;
}
