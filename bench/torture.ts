/**
 * The data-path torture run: a seeded random mix of overlapping, unaligned
 * (sector-granular) writes, discards, write-zeroes, reads and snapshots at a
 * fixed queue depth against one VDI of an embedded cluster with faults
 * injected, then a per-sector linearizability check of every read, every
 * snapshot and the final content (docs/reliability.md).
 *
 * The contract checked, per 512-byte sector: a sector holds the data of an
 * operation that covered it and that no acknowledged operation covering it
 * strictly followed (invoked after it returned); zeros only when such an
 * operation was a discard, a write-zeroes or the initial state. A read (or a
 * snapshot) may see an operation invoked before it returned and not strictly
 * followed by one acknowledged before it was invoked.
 *
 *   npm run torture -- --seconds 300 [--seed N] [--bss 20|22] [--hyper] [--failover]
 *
 * test/client/torture.test.ts runs short seeded rounds of it in `npm test`.
 */
import { Op } from '../protocol/constants.js';
import { SheepdogClient } from '../lib/client/client.js';
import type { Vdi } from '../lib/vdi/vdi.js';
import { startMemorySheep } from '../testing/index.js';
import type { MemorySheep } from '../testing/types.js';
import { isMain } from './common.js';

export const SECTOR = 512;
const MAGIC = 0x5eed_d00d;

export interface TortureOptions {
  seed: number;
  /** Object size shift of the VDI (20 = 1 MiB objects). */
  bss: number;
  /** Size of the VDI in objects. */
  objects: number;
  /** Create a hyper volume (store_policy 1). */
  hyper?: boolean;
  /** Operations in flight at once. */
  qd: number;
  /** Operations in all (the run also stops after `seconds`). */
  ops: number;
  seconds?: number;
  /** Largest write, bytes (rounded to sectors). */
  maxWrite: number;
  /** Inject faults (delays, reordering, dropped connections) into the cluster. */
  faults?: boolean;
  /**
   * Connections die under the load: object writes dropped before execution
   * (the connection closes), executed with the reply lost (the deadline then
   * destroys the connection), and one node's listener stopped and started
   * again mid-run. The pool replays; the caller must see no error.
   */
  failover?: boolean;
  /** Log progress to stderr. */
  verbose?: boolean;
}

export interface TortureReport {
  seed: number;
  ops: number;
  writes: number;
  discards: number;
  zeroes: number;
  reads: number;
  snapshots: number;
  /** Requests the injected faults acted on. */
  faultsHit: number;
  /** Operations that failed (an error is a defect when the cluster is healthy). */
  errors: string[];
  /** Sectors that broke the contract, with why (first 20). */
  violations: string[];
  seconds: number;
}

type Kind = 'write' | 'discard' | 'zeroes' | 'read' | 'snapshot';

interface Op {
  id: number;
  kind: Kind;
  /** First sector and sector count (snapshot: whole VDI). */
  s0: number;
  n: number;
  invoke: number;
  /** Logical time of the reply; Infinity if it never came or failed. */
  response: number;
  ok: boolean;
  failed?: boolean;
  /** What a read or snapshot saw (sector tags), decoded. */
  seen?: Int32Array;
  snapTag?: string;
}

/** xorshift32 */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
}

/** Fill `buf` (sector-aligned) with the tag of write `id` at sector `s0` onwards. */
function fill(buf: Buffer, id: number, s0: number): void {
  for (let k = 0; k * SECTOR < buf.length; k++) {
    const base = k * SECTOR;
    buf.writeUInt32LE(id, base);
    buf.writeUInt32LE(MAGIC, base + 4);
    buf.writeUInt32LE(s0 + k, base + 8);
    buf.writeUInt32LE((id ^ (s0 + k) ^ MAGIC) >>> 0, base + 12);
    buf.copyWithin(base + 16, base, base + 16);
    buf.copyWithin(base + 32, base, base + 32);
    buf.copyWithin(base + 64, base, base + 64);
    buf.copyWithin(base + 128, base, base + 128);
    buf.copyWithin(base + 256, base, base + 256);
  }
}

/** Decode sectors: op id, 0 for zeros, -1 for anything else (torn or foreign bytes). */
function decode(buf: Buffer, s0: number, out: Int32Array, at: number): void {
  for (let k = 0; k * SECTOR < buf.length; k++) {
    const base = k * SECTOR;
    const id = buf.readUInt32LE(base);
    let v: number;
    if (id === 0 && buf.readUInt32LE(base + 4) === 0) {
      v = isZeroSector(buf, base) ? 0 : -1;
    } else if (buf.readUInt32LE(base + 4) !== MAGIC || buf.readUInt32LE(base + 8) !== s0 + k) {
      v = -1;
    } else {
      v = id;
      // The tag repeats through the sector: compare the middle and the end.
      for (const w of [240, SECTOR - 16]) {
        if (buf.compare(buf, base, base + 16, base + w, base + w + 16) !== 0) v = -1;
      }
    }
    out[at + k] = v;
  }
}

function isZeroSector(buf: Buffer, base: number): boolean {
  for (let i = base; i < base + SECTOR; i += 4) if (buf.readUInt32LE(i) !== 0) return false;
  return true;
}

/** Pick a sector range biased to object boundaries. */
function pickRange(r: () => number, sectors: number, perObj: number, maxN: number): [number, number] {
  let n = r() < 0.6 ? 1 + Math.floor(r() * 16) : 1 + Math.floor(r() ** 3 * maxN);
  n = Math.min(n, sectors);
  let s0: number;
  if (r() < 0.5) {
    const boundary = Math.floor(r() * (sectors / perObj + 1)) * perObj;
    s0 = boundary - Math.floor(r() * Math.min(n, 4)) - (r() < 0.5 ? 0 : Math.floor(n / 2));
  } else {
    s0 = Math.floor(r() * sectors);
  }
  s0 = Math.max(0, Math.min(s0, sectors - n));
  return [s0, n];
}

export async function torture(o: TortureOptions, given?: { sheep: MemorySheep }): Promise<TortureReport> {
  const started = Date.now();
  const sheep = given?.sheep ?? (await startMemorySheep({ nodes: 3, copies: 2 }));
  // With failover, a lost reply costs one deadline before the replay.
  const client = new SheepdogClient({ nodes: [...sheep.addresses], requestTimeout: o.failover ? 3000 : 60_000 });
  const r = rng(o.seed);
  const os = 2 ** o.bss;
  const size = o.objects * os;
  const sectors = size / SECTOR;
  const perObj = os / SECTOR;
  const maxN = Math.max(1, Math.floor(o.maxWrite / SECTOR));
  const name = `torture-${o.seed}`;
  const report: TortureReport = {
    seed: o.seed,
    ops: 0,
    writes: 0,
    discards: 0,
    zeroes: 0,
    reads: 0,
    snapshots: 0,
    faultsHit: 0,
    errors: [],
    violations: [],
    seconds: 0,
  };
  const ops: Op[] = [{ id: 0, kind: 'zeroes', s0: 0, n: sectors, invoke: 0, response: 0, ok: true }];
  let clock = 1;
  try {
    await client.createVdi(name, size, o.hyper ? { hyper: true } : { blockSizeShift: o.bss });
    const v = await client.openVdi(name);
    const faults: { remove(): void; readonly hits?: number }[] = [];
    if (o.faults) {
      sheep.setReorder(true);
      for (let i = 0; i < sheep.addresses.length; i++) {
        faults.push(sheep.inject(i, { kind: 'delay', ms: 2, after: 3, times: 400 }));
        // Object writes executed after later requests (a late CREATE_AND_WRITE_OBJ
        // replaces a whole object): the gates must keep later writes behind them.
        // (Released by time alone: a sheep that waited for later requests to
        // one object would wait forever on a client that orders them.)
        faults.push(
          sheep.inject(i, { kind: 'execute-late', opcode: Op.WRITE_OBJ, ms: 3, overtakenBy: 0, after: 5, times: 60 }),
        );
        faults.push(
          sheep.inject(i, {
            kind: 'execute-late',
            opcode: Op.CREATE_AND_WRITE_OBJ,
            ms: 3,
            overtakenBy: 0,
            after: 2,
            times: 40,
          }),
        );
      }
    }
    if (o.failover) {
      for (let i = 0; i < sheep.addresses.length; i++) {
        faults.push(sheep.inject(i, { kind: 'drop', opcode: Op.WRITE_OBJ, after: 20 + 7 * i, times: 4 }));
        faults.push(sheep.inject(i, { kind: 'drop', opcode: Op.CREATE_AND_WRITE_OBJ, after: 5 + 3 * i, times: 3 }));
        faults.push(
          sheep.inject(i, { kind: 'execute-drop-reply', opcode: Op.WRITE_OBJ, after: 40 + 11 * i, times: 1 }),
        );
        faults.push(
          sheep.inject(i, { kind: 'execute-drop-reply', opcode: Op.CREATE_AND_WRITE_OBJ, after: 15 + 5 * i, times: 1 }),
        );
      }
    }
    const stopAt = o.failover ? Math.floor(o.ops / 3) : -1;
    const startAt = o.failover ? Math.floor((2 * o.ops) / 3) : -1;
    let nodeStops = Promise.resolve();
    const deadline = o.seconds === undefined ? Infinity : started + o.seconds * 1000;
    let issued = 0;
    const run = async (op: Op, fn: () => Promise<void>): Promise<void> => {
      op.invoke = clock++;
      try {
        await fn();
        op.ok = true;
        op.response = clock++;
      } catch (e) {
        op.response = Infinity;
        op.failed = true;
        report.errors.push(`${op.kind} #${op.id} [${op.s0}, +${op.n}): ${(e as Error).message}`);
      }
    };
    const one = async (): Promise<void> => {
      const id = ops.length;
      const x = r();
      let op: Op;
      if (x < 0.02 && !o.hyper) {
        op = { id, kind: 'snapshot', s0: 0, n: sectors, invoke: 0, response: Infinity, ok: false, snapTag: `s${id}` };
        ops.push(op);
        report.snapshots++;
        await run(op, async () => {
          await client.snapshotVdi(name, op.snapTag as string);
        });
        return;
      }
      const [s0, n] = pickRange(r, sectors, perObj, maxN);
      if (x < 0.1) {
        op = { id, kind: 'discard', s0, n, invoke: 0, response: Infinity, ok: false };
        ops.push(op);
        report.discards++;
        await run(op, () => v.discard(s0 * SECTOR, n * SECTOR));
      } else if (x < 0.15) {
        op = { id, kind: 'zeroes', s0, n, invoke: 0, response: Infinity, ok: false };
        ops.push(op);
        report.zeroes++;
        const unmap = r() < 0.5;
        await run(op, () => v.writeZeroes(s0 * SECTOR, n * SECTOR, { unmap }));
      } else if (x < 0.25) {
        op = { id, kind: 'read', s0, n, invoke: 0, response: Infinity, ok: false };
        ops.push(op);
        report.reads++;
        await run(op, async () => {
          const b = await v.read(s0 * SECTOR, n * SECTOR);
          op.seen = new Int32Array(n);
          decode(b, s0, op.seen, 0);
        });
      } else {
        op = { id, kind: 'write', s0, n, invoke: 0, response: Infinity, ok: false };
        ops.push(op);
        report.writes++;
        const buf = Buffer.allocUnsafe(n * SECTOR);
        fill(buf, id, s0);
        await run(op, () => v.write(buf, s0 * SECTOR));
        // The SDK must not read a buffer after the write settled: scribble on it.
        buf.fill(0xee);
      }
    };
    const lanes: Promise<void>[] = [];
    for (let q = 0; q < o.qd; q++) {
      lanes.push(
        (async () => {
          while (issued < o.ops && Date.now() < deadline) {
            issued++;
            if (issued === stopAt) nodeStops = nodeStops.then(() => sheep.stopNode(1));
            if (issued === startAt) nodeStops = nodeStops.then(() => sheep.startNode(1));
            await one();
            if (o.verbose && issued % 100 === 0)
              process.stderr.write(`torture seed ${o.seed}: ${issued} ops, ${Date.now() - started} ms\n`);
          }
        })(),
      );
    }
    const inflight = new Set<Op>();
    const watchdog = o.verbose
      ? setInterval(() => {
          const open = ops.filter((x) => x.invoke > 0 && x.response === Infinity && !x.ok && !x.failed);
          process.stderr.write(`in flight: ${open.map((x) => `${x.kind}#${x.id}[${x.s0},+${x.n}]`).join(' ')}\n`);
        }, 5000)
      : undefined;
    await Promise.all(lanes);
    await nodeStops;
    if (watchdog) clearInterval(watchdog);
    void inflight;
    for (const f of faults) {
      report.faultsHit += f.hits ?? 0;
      f.remove();
    }
    sheep.setReorder(false);
    report.ops = ops.length - 1;
    if (o.verbose) process.stderr.write(`torture seed ${o.seed}: ran in ${Date.now() - started} ms, checking\n`);
    // The final content, read after everything settled.
    const fin: Op = { id: -1, kind: 'read', s0: 0, n: sectors, invoke: clock++, response: 0, ok: true };
    fin.seen = await readAll(v, sectors);
    fin.response = clock++;
    check(ops, fin, sectors, report, 'final content');
    for (const op of ops) if (op.kind === 'read' && op.ok) check(ops, op, sectors, report, `read #${op.id}`);
    for (const op of ops) {
      if (op.kind !== 'snapshot' || !op.ok) continue;
      const sv = await client.openVdi(name, { snapshot: op.snapTag as string });
      op.seen = await readAll(sv, sectors);
      await sv.close();
      check(ops, op, sectors, report, `snapshot ${op.snapTag as string}`);
    }
    await v.close();
  } finally {
    await client.close();
    if (given === undefined) await sheep.close();
  }
  report.seconds = (Date.now() - started) / 1000;
  return report;
}

async function readAll(v: Vdi, sectors: number): Promise<Int32Array> {
  const out = new Int32Array(sectors);
  const step = Math.min(sectors, (8 * 2 ** 20) / SECTOR);
  for (let s = 0; s < sectors; s += step) {
    const n = Math.min(step, sectors - s);
    decode(await v.read(s * SECTOR, n * SECTOR), s, out, s);
  }
  return out;
}

/**
 * Check what `obs` saw (sectors obs.s0 .. +n) against the history: each
 * sector's value must come from an operation covering it, invoked before
 * obs returned, and not strictly followed by an acknowledged covering
 * operation that returned before obs was invoked.
 */
function check(ops: readonly Op[], obs: Op, _sectors: number, report: TortureReport, what: string): void {
  const seen = obs.seen as Int32Array;
  const n = obs.n;
  const s0 = obs.s0;
  // Per sector: the latest invoke among acknowledged covering ops that
  // returned before obs was invoked (they supersede anything that returned
  // before they were invoked).
  const floor = new Float64Array(n);
  for (const op of ops) {
    if (!op.ok || op.kind === 'read' || op.kind === 'snapshot' || op.response >= obs.invoke) continue;
    const a = Math.max(op.s0, s0);
    const b = Math.min(op.s0 + op.n, s0 + n);
    for (let s = a; s < b; s++) if (op.invoke > (floor[s - s0] as number)) floor[s - s0] = op.invoke;
  }
  // Per sector: the latest response among zero-producing ops (discard,
  // write-zeroes, the initial state) covering it and invoked before obs
  // returned; zeros are allowed when it is not below the floor.
  const zeroTop = new Float64Array(n).fill(-1);
  for (const op of ops) {
    if ((op.kind !== 'zeroes' && op.kind !== 'discard') || op.invoke >= obs.response) continue;
    const a = Math.max(op.s0, s0);
    const b = Math.min(op.s0 + op.n, s0 + n);
    for (let s = a; s < b; s++) if (op.response > (zeroTop[s - s0] as number)) zeroTop[s - s0] = op.response;
  }
  const allowed = (op: Op, s: number): boolean =>
    op.s0 <= s && s < op.s0 + op.n && op.invoke < obs.response && op.response >= (floor[s - s0] as number);
  for (let k = 0; k < n; k++) {
    const s = s0 + k;
    const val = seen[k] as number;
    let ok: boolean;
    if (val === -1) ok = false;
    else if (val === 0) ok = (zeroTop[k] as number) >= (floor[k] as number);
    else {
      const op = ops[val];
      ok = op !== undefined && op.kind === 'write' && allowed(op, s);
    }
    if (!ok && report.violations.length < 20) {
      const why = val === -1 ? 'torn or foreign bytes' : val === 0 ? 'zeros' : `write #${val}`;
      report.violations.push(`${what}: sector ${s} holds ${why}, which the history does not allow`);
      if (report.violations.length === 1 && process.env.TORTURE_DEBUG) {
        const hist = ops
          .filter((op) => op.s0 <= s && s < op.s0 + op.n && op.kind !== 'read')
          .map((op) => `${op.kind}#${op.id}[${op.invoke},${op.response}]${op.ok ? '' : '!'}`);
        process.stderr.write(`history of sector ${s} (obs [${obs.invoke},${obs.response}]): ${hist.join(' ')}\n`);
      }
    } else if (!ok) {
      report.violations.push('...');
      return;
    }
  }
}

function flag(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
}

async function main(argv: string[]): Promise<number> {
  const seconds = Number(flag(argv, 'seconds') ?? 60);
  const firstSeed = Number(flag(argv, 'seed') ?? Date.now() % 100000);
  const bss = Number(flag(argv, 'bss') ?? 20);
  const hyper = argv.includes('--hyper');
  const failover = argv.includes('--failover');
  const end = Date.now() + seconds * 1000;
  let failed = 0;
  for (let seed = firstSeed; Date.now() < end; seed++) {
    const rep = await torture({
      seed,
      bss: hyper ? 22 : bss,
      objects: hyper ? 12 : 32,
      hyper,
      qd: 32,
      // Bounded per seed: the check is quadratic in the history's length.
      ops: 1500,
      seconds: Math.max(1, (end - Date.now()) / 1000),
      maxWrite: 8 * 2 ** 20,
      faults: true,
      failover,
    });
    const bad = rep.errors.length + rep.violations.length;
    if (bad > 0) failed++;
    console.log(
      JSON.stringify(rep.violations.length + rep.errors.length > 0 ? rep : { ...rep, errors: [], violations: [] }),
    );
  }
  console.log(`${failed === 0 ? 'no' : failed} failing seeds`);
  return failed === 0 ? 0 : 1;
}

if (isMain(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
