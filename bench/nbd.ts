/**
 * The NBD server's cost and ceiling (`npm run bench:nbd`): fio
 * (`--ioengine=nbd`, libnbd) over our in-process NBD server on the embedded
 * cluster, against the SDK directly on the same cluster and VDI (the
 * `sheepdog bench` engine: `measure`, vdi.read / vdi.write at the same queue
 * depth and block size), against our NBD server over a volume in memory
 * (`mem`: no SDK, no cluster; the server's own cost per request and its
 * ceiling), the same NBD server over TLS (`tls`: STARTTLS, fio through
 * nbds:// with the test credentials of test/fixtures/tls), and against `qemu-nbd` serving a raw file on /dev/shm (the NBD
 * server ceiling of this machine: fio, loopback TCP and a C server with
 * nothing behind it).
 *
 *   node dist/bench/nbd.js [--seconds S] [--rounds N] [--warmup S] [--size SIZE] [--only SUBSTRING]
 *                          [--targets sdk,nbd,tls,mem,qemu] [--profile DIR] [--markdown]
 *
 * The cluster (3 nodes) runs in a separate process (cli/bench/launcher.ts,
 * as startEmbeddedCluster); the NBD servers run in this process, one over a
 * SheepdogClient to it. One VDI of --size (default 1 GiB) is created and
 * filled first, and the raw file too, so reads hit stored data and writes are
 * overwrites. For each workload, after a warm-up of each target, the rounds
 * alternate sdk, nbd, tls, mem, qemu-nbd, sdk, nbd, ... (--rounds, default 3);
 * min / median / max are reported, and the ratios of the medians: nbd/sdk
 * (the overhead of serving over NBD, goal >= 0.9), tls/nbd (what TLS costs)
 * and nbd/qemu-nbd.
 * CPU time per request is reported for each process involved (this one,
 * with its system part, the cluster, fio, qemu-nbd), and this process's
 * read and write system calls per request (/proc/self/io). Prints a table
 * and one JSON line, and writes bench/results/<stamp>-nbd.json.
 *
 * `--targets` measures only some of the targets (while iterating; ratios
 * need sdk and nbd). `--profile DIR` writes a CPU profile of this process
 * (node:inspector) for each measured sdk, nbd and mem run, and nothing else
 * (not the fill, not the warm-up): DIR/<workload>-<target>-<round>.cpuprofile.
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { Session } from 'node:inspector';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type BenchOp, type BenchPattern, fillPattern, fillVdi, measure } from '../cli/bench/engine.js';
import { launchSheep } from '../cli/bench/launcher.js';
import { SheepdogClient } from '../lib/client/client.js';
import { parseSize } from '../lib/client/names.js';
import { startNbdServer } from '../lib/nbd/index.js';
import { SheepdogPool } from '../lib/transport/pool.js';
import {
  GiB,
  type Machine,
  MiB,
  fmt,
  isMain,
  machine,
  markdownTable,
  parseFlags,
  saveResult,
  table,
  warnIfBusy,
} from './common.js';

const run = promisify(execFile);

export type Target = 'sdk' | 'nbd' | 'tls' | 'mem' | 'qemu';
const TARGETS: readonly Target[] = ['sdk', 'nbd', 'tls', 'mem', 'qemu'];

/** The test TLS credentials (GnuTLS x509 directory layout), from bench/ or dist/bench/. */
function tlsDir(): string {
  for (const rel of ['../test/fixtures/tls/', '../../test/fixtures/tls/']) {
    const d = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(join(d, 'server-cert.pem'))) return d;
  }
  throw new Error('bench/nbd: test/fixtures/tls not found (the tls target needs its credentials)');
}

interface Spec {
  name: string;
  op: BenchOp;
  pattern: BenchPattern;
  bs: number;
  qd: number;
}

const SPECS: readonly Spec[] = [
  { name: '4 KiB random write QD32', op: 'write', pattern: 'random', bs: 4096, qd: 32 },
  { name: '4 KiB random read QD32', op: 'read', pattern: 'random', bs: 4096, qd: 32 },
  { name: '4 MiB seq write QD8', op: 'write', pattern: 'seq', bs: 4 * MiB, qd: 8 },
  { name: '4 MiB seq read QD8', op: 'read', pattern: 'seq', bs: 4 * MiB, qd: 8 },
];

/** One measured run of one target. */
export interface NbdRun {
  target: Target;
  round: number;
  mibps: number;
  iops: number;
  p50_us: number;
  p99_us: number;
  seconds: number;
  /** CPU time (user + system) per request, µs: this process (the SDK client, or the NBD server and its client). */
  self_cpu_us: number;
  /** The system (kernel) part of it. */
  self_sys_us: number;
  /** The same for the embedded cluster's process (0 for qemu-nbd runs: it is idle). */
  cluster_cpu_us: number;
  /** fio's own CPU per request (nbd, mem and qemu runs). */
  fio_cpu_us: number | null;
  /** qemu-nbd's CPU per request (qemu runs). */
  qemu_cpu_us: number | null;
  /** read(2)-like and write(2)-like system calls of this process per request (/proc/self/io syscr, syscw). */
  self_reads: number;
  self_writes: number;
  /** 1-minute load average when the run started. */
  load1: number;
}

export interface Spread {
  min: number;
  median: number;
  max: number;
}

export interface NbdRow {
  workload: string;
  bs: number;
  qd: number;
  /** Throughput per target, MiB/s (IOPS = MiB/s × 2^20 / bs). */
  mibps: Record<Target, Spread>;
  iops: Record<Target, Spread>;
  /** Median p50 / p99 latency per target, µs. */
  p50_us: Record<Target, number>;
  p99_us: Record<Target, number>;
  /** Median CPU µs per request per process. */
  cpu_us: Record<Target, { self: number; selfSys: number; cluster: number; fio: number | null; qemu: number | null }>;
  /** Median read / write system calls of this process per request. */
  syscalls: Record<Target, { reads: number; writes: number }>;
  /** median nbd / median sdk throughput (goal >= 0.9). */
  nbd_vs_sdk: number;
  /** median nbd / median qemu-nbd throughput. */
  nbd_vs_qemu: number;
  /** median nbd / median mem (our server over a volume in memory) throughput. */
  nbd_vs_mem: number;
  /** median tls / median nbd throughput: what TLS costs (0 when tls was not measured; absent in older results). */
  tls_vs_nbd?: number;
  runs: NbdRun[];
}

export interface NbdResult {
  kind: 'nbd';
  date: string;
  machine: Machine;
  /** Load averages when the measurements ended. */
  loadavgAfter: number[];
  fio: string;
  qemuNbd: string;
  seconds: number;
  rounds: number;
  vdiSize: number;
  rows: NbdRow[];
}

// ------------------------------------------------------------ helpers

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** CPU seconds (user + system) a process has used so far, from /proc. */
function procCpu(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command (which may hold spaces) in parentheses: state is field 3, utime 14, stime 15.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

/** System calls of this process so far: [read-like, write-like] (/proc/self/io). */
function selfSyscalls(): [number, number] {
  const io = readFileSync('/proc/self/io', 'utf8');
  const get = (k: string): number => Number(new RegExp(`^${k}: (\\d+)`, 'm').exec(io)?.[1] ?? 0);
  return [get('syscr'), get('syscw')];
}

function selfCpu(): number {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1e6;
}

function selfSys(): number {
  return process.cpuUsage().system / 1e6;
}

/** A free TCP port on 127.0.0.1 (bind port 0, read it, close). */
async function freePort(): Promise<number> {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const addr = srv.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  if (port === 0 || port === 10809) throw new Error(`no usable free port (${port})`);
  return port;
}

/** Wait until something listens on 127.0.0.1:port (read from /proc/net/tcp: a probe connection would make qemu-nbd log a failed negotiation). */
async function waitListening(port: number, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  for (;;) {
    const listening = readFileSync('/proc/net/tcp', 'utf8')
      .split('\n')
      .some((l) => {
        const f = l.trim().split(/\s+/);
        return f[1] === local && f[3] === '0A';
      });
    if (listening) return;
    if (Date.now() > until) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) return 0;
  return n % 2 === 1 ? (s[(n - 1) / 2] ?? 0) : ((s[n / 2 - 1] ?? 0) + (s[n / 2] ?? 0)) / 2;
}

/** min / median / max (zeros for a target not measured). */
function spread(xs: readonly number[]): Spread {
  if (xs.length === 0) return { min: 0, median: 0, max: 0 };
  const r = (x: number): number => Number(x.toFixed(1));
  return { min: r(Math.min(...xs)), median: r(median(xs)), max: r(Math.max(...xs)) };
}

const r1 = (x: number): number => Number(x.toFixed(1));
/** a / b to 2 decimals (0 when b was not measured). */
const ratio = (a: number, b: number): number => (b > 0 ? Number((a / b).toFixed(2)) : 0);

interface FioJob {
  error: number;
  read: FioSide;
  write: FioSide;
  usr_cpu: number;
  sys_cpu: number;
  job_runtime?: number;
}
interface FioSide {
  io_bytes: number;
  bw_bytes: number;
  iops: number;
  runtime: number;
  total_ios: number;
  lat_ns?: { percentile?: Record<string, number> };
  clat_ns?: { percentile?: Record<string, number> };
}

/**
 * Run fio's nbd engine against `uri` for `seconds`; what the job did. fio's
 * libnbd refuses `?tls-certificates=` (local file access), so for nbds://
 * `home` is a HOME whose .pki/libnbd holds the credentials: libnbd's default.
 */
async function fio(
  uri: string,
  s: Spec,
  seconds: number,
  size: number,
  home?: string,
): Promise<{ mibps: number; iops: number; p50_us: number; p99_us: number; seconds: number; ios: number; cpu: number }> {
  const rw = s.pattern === 'random' ? (s.op === 'write' ? 'randwrite' : 'randread') : s.op;
  const { stdout } = await run(
    'fio',
    [
      '--name=nbd-bench',
      '--ioengine=nbd',
      `--uri=${uri}`,
      `--rw=${rw}`,
      `--bs=${s.bs}`,
      `--iodepth=${s.qd}`,
      `--size=${size}`,
      '--time_based',
      `--runtime=${seconds}`,
      '--norandommap',
      '--randrepeat=0',
      '--lat_percentiles=1',
      '--output-format=json',
    ],
    home === undefined ? { maxBuffer: 16 * MiB } : { maxBuffer: 16 * MiB, env: { ...process.env, HOME: home } },
  );
  const parsed = JSON.parse(stdout.slice(stdout.indexOf('{'))) as { jobs: FioJob[] };
  const job = parsed.jobs[0];
  if (!job || job.error !== 0) throw new Error(`fio ${rw} on ${uri}: error ${job?.error}`);
  const side = s.op === 'write' ? job.write : job.read;
  const pct = side.lat_ns?.percentile ?? side.clat_ns?.percentile ?? {};
  const secs = side.runtime / 1000;
  return {
    mibps: r1(side.bw_bytes / MiB),
    iops: r1(side.iops),
    p50_us: r1((pct['50.000000'] ?? 0) / 1000),
    p99_us: r1((pct['99.000000'] ?? 0) / 1000),
    seconds: secs,
    ios: side.total_ios,
    cpu: ((job.usr_cpu + job.sys_cpu) / 100) * ((job.job_runtime ?? side.runtime) / 1000),
  };
}

/** The CPU profiler of this process (node:inspector), started and stopped around single runs. */
class Profiler {
  private readonly session = new Session();
  private readonly dir: string;
  constructor(dir: string) {
    this.dir = dir;
    mkdirSync(dir, { recursive: true });
    this.session.connect();
  }
  private post(method: string, params: object = {}): Promise<unknown> {
    return new Promise((resolve, reject) =>
      this.session.post(method, params, (err, res) => (err ? reject(err) : resolve(res))),
    );
  }
  async start(): Promise<void> {
    await this.post('Profiler.enable');
    await this.post('Profiler.setSamplingInterval', { interval: 100 });
    await this.post('Profiler.start');
  }
  async stop(name: string): Promise<string> {
    const res = (await this.post('Profiler.stop')) as { profile: unknown };
    await this.post('Profiler.disable');
    const file = join(this.dir, `${name.replace(/[^A-Za-z0-9]+/g, '-')}.cpuprofile`);
    writeFileSync(file, JSON.stringify(res.profile));
    return file;
  }
  close(): void {
    this.session.disconnect();
  }
}

/**
 * A volume in memory with the part of Vdi's surface the NBD server uses: the
 * `mem` target, our server with no SDK and no cluster behind it (its own
 * cost per request, and its ceiling). read returns a new Buffer, as Vdi.read does.
 */
class MemoryVdi {
  readonly vid = 1;
  readonly snapshot = false;
  readonly objectSize = 4 * MiB;
  readonly inode = { parentVdiId: 0 };
  readonly name: string;
  private readonly mem: Buffer;
  constructor(name: string, size: number) {
    this.name = name;
    this.mem = Buffer.alloc(size);
  }
  get size(): number {
    return this.mem.length;
  }
  read(offset: number, length: number): Promise<Buffer> {
    return Promise.resolve(Buffer.from(this.mem.subarray(offset, offset + length)));
  }
  write(data: Uint8Array, offset: number): Promise<void> {
    this.mem.set(data, offset);
    return Promise.resolve();
  }
  discard(offset: number, length: number): Promise<void> {
    this.mem.fill(0, offset, offset + length);
    return Promise.resolve();
  }
  writeZeroes(offset: number, length: number): Promise<void> {
    return this.discard(offset, length);
  }
  flush(): Promise<void> {
    return Promise.resolve();
  }
  objectOwner(): number {
    return this.vid;
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** A stand-in for the SheepdogClient the NBD server is given: it opens the one MemoryVdi. */
function memoryClient(vdi: MemoryVdi): SheepdogClient {
  const c = {
    openVdi: () => Promise.resolve(vdi),
    listVdis: () => Promise.resolve([]),
    close: () => Promise.resolve(),
  };
  return c as unknown as SheepdogClient;
}

/** A raw file of `size` bytes of data (no holes), for qemu-nbd. */
function makeRawFile(path: string, size: number): void {
  const chunk = fillPattern(Buffer.allocUnsafe(4 * MiB), 0x9e3779b9);
  const fd = openSync(path, 'w');
  try {
    for (let off = 0; off < size; off += chunk.length) {
      writeSync(fd, chunk, 0, Math.min(chunk.length, size - off), off);
    }
  } finally {
    closeSync(fd);
  }
}

// ------------------------------------------------------------ the run

export async function runNbdBench(o: {
  seconds: number;
  rounds: number;
  warmup: number;
  size: number;
  only: string | undefined;
  /** The targets measured (default all). */
  targets?: readonly Target[] | undefined;
  /** Write a CPU profile of this process for each measured sdk and nbd run into this directory. */
  profile?: string | undefined;
  onRun?: (spec: Spec, r: NbdRun) => void;
}): Promise<NbdResult> {
  const targets = TARGETS.filter((t) => o.targets === undefined || o.targets.includes(t));
  const profiler = o.profile === undefined ? undefined : new Profiler(o.profile);
  const m = await machine();
  warnIfBusy(m);
  const fioVersion = execFileSync('fio', ['--version'], { encoding: 'utf8' }).trim();
  const qemuVersion = execFileSync('qemu-nbd', ['--version'], { encoding: 'utf8' }).split('\n')[0] ?? '';
  const name = 'bench';
  const rawFile = `/dev/shm/sheepdog-bench-nbd-${process.pid}.raw`;
  const cluster = await launchSheep({ nodes: 3, port: 0, maxMemory: 64 * GiB });
  const client = new SheepdogClient({
    nodes: [...cluster.addresses],
    connectionsPerNode: 2,
    requestTimeout: 120_000,
    connectTimeout: 10_000,
    maxQueued: 1024,
  });
  let qemu: ReturnType<typeof spawn> | undefined;
  let server: Awaited<ReturnType<typeof startNbdServer>> | undefined;
  let memServer: Awaited<ReturnType<typeof startNbdServer>> | undefined;
  let tlsServer: Awaited<ReturnType<typeof startNbdServer>> | undefined;
  const tlsCerts = targets.includes('tls') ? tlsDir() : '';
  // libnbd's default credentials directory, $HOME/.pki/libnbd, for fio (see fio()).
  const tlsHome = join(os.tmpdir(), `sheepdog-bench-nbd-tls-${process.pid}`);
  const rows: NbdRow[] = [];
  try {
    await client.createVdi(name, o.size);
    {
      const vdi = await client.openVdi(name);
      await fillVdi(vdi);
      await vdi.close();
    }
    makeRawFile(rawFile, o.size);
    server = await startNbdServer({ client, exports: [name], listen: { host: '127.0.0.1', port: 0 } });
    if (targets.includes('tls')) {
      mkdirSync(join(tlsHome, '.pki', 'libnbd'), { recursive: true });
      for (const f of ['ca-cert.pem', 'client-cert.pem', 'client-key.pem']) {
        writeFileSync(join(tlsHome, '.pki', 'libnbd', f), readFileSync(join(tlsCerts, f)));
      }
      tlsServer = await startNbdServer({
        client,
        exports: [name],
        listen: { host: '127.0.0.1', port: 0 },
        tls: {
          key: readFileSync(join(tlsCerts, 'server-key.pem')),
          cert: readFileSync(join(tlsCerts, 'server-cert.pem')),
        },
      });
    }
    if (targets.includes('mem')) {
      memServer = await startNbdServer({
        client: memoryClient(new MemoryVdi(name, o.size)),
        exports: [name],
        listen: { host: '127.0.0.1', port: 0 },
      });
    }
    const qemuPort = await freePort();
    qemu = spawn('qemu-nbd', ['-f', 'raw', '-t', '-p', String(qemuPort), '--bind', '127.0.0.1', '-x', name, rawFile], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const qemuExited = once(qemu, 'exit').then(() => {
      throw new Error('qemu-nbd exited');
    });
    qemuExited.catch(() => {});
    await Promise.race([waitListening(qemuPort, 10_000), qemuExited]);
    const qemuPid = qemu.pid;
    if (qemuPid === undefined) throw new Error('qemu-nbd has no pid');
    const uris: Record<'nbd' | 'tls' | 'mem' | 'qemu', string> = {
      nbd: server.uri(name),
      tls: tlsServer?.uri(name) ?? '',
      mem: memServer?.uri(name) ?? '',
      qemu: `nbd://127.0.0.1:${qemuPort}/${name}`,
    };
    const pool = client.transport instanceof SheepdogPool ? client.transport : undefined;

    const once1 = async (s: Spec, target: Target, seconds: number, round: number): Promise<NbdRun> => {
      const load1 = Number(os.loadavg()[0]?.toFixed(2));
      const profiled = profiler !== undefined && round > 0 && target !== 'qemu';
      if (profiled) await profiler.start();
      const self0 = selfCpu();
      const selfSys0 = selfSys();
      const sys0 = selfSyscalls();
      const cl0 = procCpu(cluster.pid);
      const q0 = procCpu(qemuPid);
      let res: { mibps: number; iops: number; p50_us: number; p99_us: number; seconds: number; ios: number };
      let fioCpu: number | null = null;
      if (target === 'sdk') {
        const vdi = await client.openVdi(name);
        try {
          const r = await measure(vdi, { ...s, total: undefined, seconds }, { pool });
          res = { ...r, ios: Math.round(r.iops * r.seconds) };
        } finally {
          await vdi.close();
        }
      } else {
        const f = await fio(uris[target], s, seconds, o.size, target === 'tls' ? tlsHome : undefined);
        res = f;
        fioCpu = f.cpu;
      }
      const per = (cpu: number): number => r1((cpu * 1e6) / Math.max(1, res.ios));
      const selfUsed = selfCpu() - self0;
      const selfSysUsed = selfSys() - selfSys0;
      const sys1 = selfSyscalls();
      if (profiled) await profiler.stop(`${s.name} ${target} ${round}`);
      return {
        target,
        round,
        mibps: res.mibps,
        iops: res.iops,
        p50_us: res.p50_us,
        p99_us: res.p99_us,
        seconds: res.seconds,
        self_cpu_us: per(selfUsed),
        self_sys_us: per(selfSysUsed),
        cluster_cpu_us: per(procCpu(cluster.pid) - cl0),
        fio_cpu_us: fioCpu === null ? null : per(fioCpu),
        qemu_cpu_us: target === 'qemu' ? per(procCpu(qemuPid) - q0) : null,
        self_reads: Number(((sys1[0] - sys0[0]) / Math.max(1, res.ios)).toFixed(2)),
        self_writes: Number(((sys1[1] - sys0[1]) / Math.max(1, res.ios)).toFixed(2)),
        load1,
      };
    };

    for (const s of SPECS) {
      if (o.only !== undefined && !s.name.includes(o.only)) continue;
      if (o.warmup > 0) for (const t of targets) await once1(s, t, o.warmup, 0);
      const runs: NbdRun[] = [];
      for (let round = 1; round <= o.rounds; round++) {
        for (const t of targets) {
          const r = await once1(s, t, o.seconds, round);
          runs.push(r);
          o.onRun?.(s, r);
        }
      }
      const of = (t: Target): NbdRun[] => runs.filter((r) => r.target === t);
      const per = <T>(f: (t: Target) => T): Record<Target, T> => ({
        sdk: f('sdk'),
        nbd: f('nbd'),
        tls: f('tls'),
        mem: f('mem'),
        qemu: f('qemu'),
      });
      const mibps = per((t) => spread(of(t).map((r) => r.mibps)));
      const medOrNull = (xs: (number | null)[]): number | null =>
        xs.some((x) => x === null) ? null : r1(median(xs as number[]));
      rows.push({
        workload: s.name,
        bs: s.bs,
        qd: s.qd,
        mibps,
        iops: per((t) => spread(of(t).map((r) => r.iops))),
        p50_us: per((t) => r1(median(of(t).map((r) => r.p50_us)))),
        p99_us: per((t) => r1(median(of(t).map((r) => r.p99_us)))),
        cpu_us: per((t) => ({
          self: r1(median(of(t).map((r) => r.self_cpu_us))),
          selfSys: r1(median(of(t).map((r) => r.self_sys_us))),
          cluster: r1(median(of(t).map((r) => r.cluster_cpu_us))),
          fio: medOrNull(of(t).map((r) => r.fio_cpu_us)),
          qemu: medOrNull(of(t).map((r) => r.qemu_cpu_us)),
        })),
        syscalls: per((t) => ({
          reads: Number(median(of(t).map((r) => r.self_reads)).toFixed(2)),
          writes: Number(median(of(t).map((r) => r.self_writes)).toFixed(2)),
        })),
        nbd_vs_sdk: ratio(mibps.nbd.median, mibps.sdk.median),
        nbd_vs_qemu: ratio(mibps.nbd.median, mibps.qemu.median),
        nbd_vs_mem: ratio(mibps.nbd.median, mibps.mem.median),
        tls_vs_nbd: ratio(mibps.tls.median, mibps.nbd.median),
        runs,
      });
    }
  } finally {
    profiler?.close();
    await server?.close().catch(() => {});
    await memServer?.close().catch(() => {});
    await tlsServer?.close().catch(() => {});
    if (qemu && qemu.exitCode === null && qemu.signalCode === null) {
      const exited = once(qemu, 'exit');
      qemu.kill('SIGTERM');
      await exited;
    }
    rmSync(rawFile, { force: true });
    rmSync(tlsHome, { recursive: true, force: true });
    await client.close().catch(() => {});
    await cluster.close();
  }
  return {
    kind: 'nbd',
    date: new Date().toISOString(),
    machine: m,
    loadavgAfter: os.loadavg().map((x) => Number(x.toFixed(2))),
    fio: fioVersion,
    qemuNbd: qemuVersion,
    seconds: o.seconds,
    rounds: o.rounds,
    vdiSize: o.size,
    rows,
  };
}

const HEADER = [
  'workload',
  'unit',
  'sdk min/med/max',
  'nbd min/med/max',
  'tls min/med/max',
  'mem min/med/max',
  'qemu-nbd min/med/max',
  'nbd/sdk',
  'tls/nbd',
  'nbd/qemu',
  'p99 us sdk/nbd/tls/mem/qemu',
];

export function rowCells(r: NbdRow): string[] {
  const iops = r.bs < MiB;
  const sp = (x: Spread): string => `${fmt(x.min)} / ${fmt(x.median)} / ${fmt(x.max)}`;
  const src = iops ? r.iops : r.mibps;
  return [
    r.workload,
    iops ? 'IOPS' : 'MiB/s',
    sp(src.sdk),
    sp(src.nbd),
    src.tls ? sp(src.tls) : '—',
    sp(src.mem),
    sp(src.qemu),
    fmt(r.nbd_vs_sdk, 2),
    fmt(r.tls_vs_nbd ?? 0, 2),
    fmt(r.nbd_vs_qemu, 2),
    `${fmt(r.p99_us.sdk)} / ${fmt(r.p99_us.nbd)} / ${fmt(r.p99_us.tls ?? 0)} / ${fmt(r.p99_us.mem)} / ${fmt(r.p99_us.qemu)}`,
  ];
}

const CPU_HEADER = [
  'workload',
  'sdk: self (sys) + cluster',
  'nbd: self (sys) + cluster + fio',
  'tls: self (sys) + cluster + fio',
  'mem: self (sys) + fio',
  'qemu: qemu-nbd + fio',
  'self syscalls r+w sdk',
  'self syscalls r+w nbd',
];

export function cpuCells(r: NbdRow): string[] {
  const c = r.cpu_us;
  return [
    r.workload,
    `${fmt(c.sdk.self, 1)} (${fmt(c.sdk.selfSys, 1)} sys) + ${fmt(c.sdk.cluster, 1)}`,
    `${fmt(c.nbd.self, 1)} (${fmt(c.nbd.selfSys, 1)} sys) + ${fmt(c.nbd.cluster, 1)} + ${fmt(c.nbd.fio ?? 0, 1)}`,
    c.tls
      ? `${fmt(c.tls.self, 1)} (${fmt(c.tls.selfSys, 1)} sys) + ${fmt(c.tls.cluster, 1)} + ${fmt(c.tls.fio ?? 0, 1)}`
      : '—',
    `${fmt(c.mem.self, 1)} (${fmt(c.mem.selfSys, 1)} sys) + ${fmt(c.mem.fio ?? 0, 1)}`,
    `${fmt(c.qemu.qemu ?? 0, 1)} + ${fmt(c.qemu.fio ?? 0, 1)}`,
    `${fmt(r.syscalls.sdk.reads, 2)} + ${fmt(r.syscalls.sdk.writes, 2)}`,
    `${fmt(r.syscalls.nbd.reads, 2)} + ${fmt(r.syscalls.nbd.writes, 2)}`,
  ];
}

async function main(): Promise<void> {
  const { nodes, flags, values } = parseFlags(process.argv.slice(2), {
    flags: ['markdown'],
    values: ['seconds', 'rounds', 'warmup', 'size', 'only', 'targets', 'profile'],
  });
  if (nodes) throw new Error('bench/nbd runs against its own embedded cluster only');
  const seconds = Number(values.get('seconds') ?? 5);
  const rounds = Number(values.get('rounds') ?? 3);
  const warmup = Number(values.get('warmup') ?? 1);
  if (!(seconds > 0) || !Number.isInteger(rounds) || rounds < 1 || !(warmup >= 0)) {
    throw new Error('--seconds > 0, --rounds >= 1 (integer), --warmup >= 0');
  }
  const targets = values.get('targets')?.split(',');
  const bad = targets?.find((t) => !(TARGETS as readonly string[]).includes(t));
  if (bad !== undefined) throw new Error(`--targets: unknown target ${JSON.stringify(bad)} (${TARGETS.join(', ')})`);
  const t0 = performance.now();
  const res = await runNbdBench({
    seconds,
    rounds,
    warmup,
    size: parseSize(values.get('size') ?? '1G'),
    only: values.get('only'),
    targets: targets as Target[] | undefined,
    profile: values.get('profile'),
    onRun: (s, r) => {
      if (process.stderr.isTTY) {
        process.stderr.write(`  ${s.name} round ${r.round} ${r.target}: ${fmt(r.mibps, 1)} MiB/s\n`);
      }
    },
  });
  const m = res.machine;
  const md = flags.has('markdown');
  process.stdout.write(
    `NBD: fio (${res.fio}, --ioengine=nbd) over our NBD server on the embedded cluster, vs the SDK directly, vs ${res.qemuNbd} on /dev/shm\n` +
      `${m.cpu}, ${m.nproc} CPUs, node ${m.node}, ${Math.round(m.busyBefore * 100)}% busy before the run, ` +
      `load ${m.loadavg.join(' ')} before, ${res.loadavgAfter.join(' ')} after; ${rounds} rounds of ${seconds} s\n\n`,
  );
  const render = md ? markdownTable : table;
  process.stdout.write(render(HEADER, res.rows.map(rowCells)));
  process.stdout.write('\nCPU µs per request, and system calls of this process per request (medians)\n\n');
  process.stdout.write(render(CPU_HEADER, res.rows.map(cpuCells)));
  const summary = {
    kind: 'nbd',
    rows: res.rows.map((r) => ({
      workload: r.workload,
      sdk_mibps: r.mibps.sdk.median,
      nbd_mibps: r.mibps.nbd.median,
      qemu_mibps: r.mibps.qemu.median,
      nbd_vs_sdk: r.nbd_vs_sdk,
      nbd_vs_qemu: r.nbd_vs_qemu,
      mem_mibps: r.mibps.mem.median,
      nbd_vs_mem: r.nbd_vs_mem,
      tls_mibps: r.mibps.tls.median,
      tls_vs_nbd: r.tls_vs_nbd,
    })),
  };
  process.stdout.write(`\n${JSON.stringify(summary)}\n`);
  const file = saveResult('nbd', res);
  process.stdout.write(`\n${((performance.now() - t0) / 1000).toFixed(1)} s; results in ${file}\n`);
}

if (isMain(import.meta.url)) {
  main().catch((e: unknown) => {
    process.stderr.write(`nbd: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exitCode = 1;
  });
}
