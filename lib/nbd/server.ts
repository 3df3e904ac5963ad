/**
 * An NBD server in-process: Sheepdog VDIs served over the Network Block
 * Device protocol (fixed newstyle, structured replies, base:allocation and
 * qemu:allocation-depth). The only module that knows both NBD (the pure codec
 * in ./protocol) and Vdi. See docs/nbd.md.
 */
import net from 'node:net';
import tls from 'node:tls';
import { once, setMaxListeners } from 'node:events';
import { SheepdogClient } from '../client/client.js';
import type { SnapshotRef } from '../client/names.js';
import { InvalidArgumentError, NoSpaceError, NoTagError, NoVdiError, ReadOnlyError } from '../errors.js';
import type { Vdi } from '../vdi/vdi.js';
import {
  CONTEXT_ALLOCATION_DEPTH,
  CONTEXT_BASE_ALLOCATION,
  ClientFlag,
  Cmd,
  CmdFlag,
  Errno,
  HandshakeFlag,
  Info,
  NbdOptionError,
  NbdProtocolError,
  NbdServerDecoder,
  Opt,
  Rep,
  ReplyFlag,
  StateFlag,
  TransmissionFlag,
  encodeBlockStatus,
  encodeChunkError,
  encodeChunkNone,
  encodeExportNameReply,
  encodeGreeting,
  encodeInfoBlockSize,
  encodeInfoExport,
  encodeInfoString,
  encodeMetaContext,
  encodeOffsetDataHeader,
  encodeOffsetHole,
  encodeOptionError,
  encodeOptionReply,
  encodeRepServer,
  encodeSimpleReply,
  parseEmpty,
  parseExportName,
  parseInfoRequest,
  parseMetaContextRequest,
  type ClientMessage,
  type Extent,
  type OptionMessage,
  type RequestMessage,
} from './protocol/index.js';

const MiB = 1024 * 1024;

export type NbdListen = { host?: string; port: number } | { path: string };

export interface NbdServerOptions {
  /** The client to serve through (kept open by close()). */
  client?: SheepdogClient;
  /** Or gateways to make a client of (closed by close()). */
  nodes?: readonly string[];
  /** Export names (`vol`, `vol@tag`, `vol@snapid`), or 'all': any VDI or snapshot, resolved at connect time. */
  exports: readonly string[] | 'all';
  listen: NbdListen;
  /** Serve every export read-only (snapshots always are). */
  readOnly?: boolean;
  /** Largest READ/WRITE payload (INFO_BLOCK_SIZE maximum; default 32 MiB). */
  maxPayload?: number;
  /** Bytes of requests in flight per connection before the server stops reading it (default 64 MiB). */
  maxInFlightBytes?: number;
  /** The same over all connections (default 256 MiB). */
  maxServerInFlightBytes?: number;
  /** TLS (NBD_OPT_STARTTLS): without it, STARTTLS is answered NBD_REP_ERR_UNSUP. */
  tls?: NbdTlsOptions;
}

/**
 * The server's TLS credentials (PEM). A client upgrades with
 * NBD_OPT_STARTTLS during the handshake, as QEMU and libnbd's tools do; the
 * URIs become nbds://.
 */
export interface NbdTlsOptions {
  /** Private key of the server certificate. */
  key: string | Buffer;
  /** Server certificate (chain). */
  cert: string | Buffer;
  /** CA certificates: when given, clients must present a certificate one of them issued. */
  ca?: string | Buffer;
  /**
   * Also serve clients that do not start TLS (default false: until STARTTLS
   * every option but ABORT gets NBD_REP_ERR_TLS_REQD, and NBD_OPT_EXPORT_NAME
   * ends the connection).
   */
  optional?: boolean;
}

export type NbdAddress = { host: string; port: number } | { path: string };

/** Counters of a server (for tests and monitoring). */
export interface NbdServerStats {
  /** Requests received (decoded) since the start. */
  requests: number;
  /** Requests running or whose reply is being written. */
  inFlightRequests: number;
  /** Bytes those requests hold (payloads, replies being built), over every connection. */
  inFlightBytes: number;
  /** The most `inFlightBytes` ever was. */
  peakInFlightBytes: number;
  /** Times a connection stopped reading its socket because a cap on bytes in flight was reached. */
  pauses: number;
  /** Socket writes of replies: each is a batch of the replies that were ready in one turn of the event loop. */
  replyWrites: number;
}

export interface NbdServer {
  readonly address: NbdAddress;
  /** Open connections. */
  readonly connections: number;
  /** The server has TLS credentials: clients start TLS (STARTTLS), required unless `tls.optional`. */
  readonly tls: boolean;
  /** The names served now (`'all'` for a server of every VDI). */
  readonly exports: readonly string[] | 'all';
  readonly stats: Readonly<NbdServerStats>;
  /** Serve one more export (a no-op if served already, or on an `'all'` server). */
  addExport(name: string): void;
  /**
   * Stop serving an export: new clients cannot open it, and its open
   * connections are drained (requests in flight answered) and closed.
   * On an `'all'` server only the connections are closed.
   */
  removeExport(name: string): Promise<void>;
  /** The nbd:// (or nbd+unix://) URI of an export. */
  uri(exportName: string): string;
  /** Stop accepting, let requests in flight finish and their replies go out, close every connection and handle. */
  close(): Promise<void>;
}

const CTX_BASE = 1;
const CTX_DEPTH = 2;
const CONTEXTS: readonly [number, string][] = [
  [CTX_BASE, CONTEXT_BASE_ALLOCATION],
  [CTX_DEPTH, CONTEXT_ALLOCATION_DEPTH],
];
/** `qemu:dirty-bitmap:<snapshot>`: objects that differ from that snapshot of the export's VDI. */
const DIRTY_PREFIX = 'qemu:dirty-bitmap:';
/** First context id of the dirty bitmaps (after the fixed ones). */
const CTX_DIRTY = 3;
/** NBD_STATE_DIRTY of qemu:dirty-bitmap contexts. */
const STATE_DIRTY = 1;
const KNOWN_CMD_FLAGS = CmdFlag.FUA | CmdFlag.NO_HOLE | CmdFlag.DF | CmdFlag.REQ_ONE | CmdFlag.FAST_ZERO;

/** Replies' buffers up to this size are copied into one buffer per batch; larger ones are written as they are. */
const SMALL = 1024;

/** Runs of two or more small buffers copied into one (a batch of replies: one write, few iovecs). */
function coalesce(bufs: readonly Buffer[]): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < bufs.length;) {
    const first = bufs[i] as Buffer;
    let j = i + 1;
    if (first.length <= SMALL) {
      let n = first.length;
      while (j < bufs.length && (bufs[j] as Buffer).length <= SMALL) n += (bufs[j++] as Buffer).length;
      if (j - i > 1) {
        const slab = Buffer.allocUnsafe(n);
        let o = 0;
        for (let k = i; k < j; k++) o += (bufs[k] as Buffer).copy(slab, o);
        out.push(slab);
        i = j;
        continue;
      }
    }
    out.push(first);
    i = j;
  }
  return out;
}

/** Split `vol@tag` / `vol@3` into a VDI name and a snapshot (a number when all digits). */
export function parseExportRef(name: string): { vdi: string; snapshot?: SnapshotRef } {
  const at = name.lastIndexOf('@');
  if (at <= 0 || at === name.length - 1) return { vdi: name };
  const ref = name.slice(at + 1);
  return { vdi: name.slice(0, at), snapshot: /^[0-9]+$/.test(ref) ? Number(ref) : ref };
}

/** The NBD error for an SDK error. */
export function nbdErrno(e: unknown): number {
  if (e instanceof ReadOnlyError) return Errno.EPERM;
  if (e instanceof NoSpaceError) return Errno.ENOSPC;
  if (e instanceof InvalidArgumentError) return Errno.EINVAL;
  return Errno.EIO;
}

interface Budget extends NbdServerStats {
  bytes: number;
}

export async function startNbdServer(opts: NbdServerOptions): Promise<NbdServer> {
  if (opts.client === undefined && (opts.nodes === undefined || opts.nodes.length === 0)) {
    throw new InvalidArgumentError('startNbdServer needs a client or nodes');
  }
  if (opts.exports !== 'all' && !Array.isArray(opts.exports)) {
    throw new InvalidArgumentError("exports must be a list of names or 'all'");
  }
  const tlsConfig = opts.tls === undefined ? undefined : tlsConfigOf(opts.tls);
  const ownsClient = opts.client === undefined;
  const client = opts.client ?? new SheepdogClient({ nodes: [...(opts.nodes ?? [])] });
  const conns = new Set<NbdConnection>();
  const budget: Budget = {
    bytes: 0,
    requests: 0,
    inFlightRequests: 0,
    inFlightBytes: 0,
    peakInFlightBytes: 0,
    pauses: 0,
    replyWrites: 0,
  };
  const cfg: ServerConfig = {
    client,
    exports: opts.exports === 'all' ? 'all' : [...opts.exports],
    readOnly: opts.readOnly === true,
    maxPayload: opts.maxPayload ?? 32 * MiB,
    maxInFlightBytes: opts.maxInFlightBytes ?? 64 * MiB,
    maxServerInFlightBytes: opts.maxServerInFlightBytes ?? 256 * MiB,
    tls: tlsConfig,
    budget,
    kick: () => {
      for (const c of conns) c.flow();
    },
  };
  const srv = net.createServer((socket) => {
    const c = new NbdConnection(socket, cfg);
    conns.add(c);
    void c.done.then(() => conns.delete(c));
  });
  const listen = opts.listen;
  if ('path' in listen) srv.listen(listen.path);
  else srv.listen(listen.port, listen.host ?? '127.0.0.1');
  try {
    await once(srv, 'listening');
  } catch (e) {
    if (ownsClient) await client.close();
    throw e;
  }
  const a = srv.address();
  const address: NbdAddress =
    typeof a === 'string' || a === null
      ? { path: 'path' in listen ? listen.path : String(a) }
      : { host: a.address, port: a.port };
  let closing: Promise<void> | undefined;
  return {
    address,
    tls: tlsConfig !== undefined,
    get connections() {
      return conns.size;
    },
    get exports() {
      return cfg.exports === 'all' ? 'all' : [...cfg.exports];
    },
    get stats() {
      const { requests, inFlightRequests, peakInFlightBytes, pauses, replyWrites } = budget;
      return { requests, inFlightRequests, inFlightBytes: budget.bytes, peakInFlightBytes, pauses, replyWrites };
    },
    addExport(name: string) {
      if (typeof name !== 'string') throw new InvalidArgumentError('export name must be a string');
      if (cfg.exports !== 'all' && !cfg.exports.includes(name)) cfg.exports.push(name);
    },
    async removeExport(name: string) {
      if (cfg.exports !== 'all') cfg.exports = cfg.exports.filter((n) => n !== name);
      await Promise.all([...conns].filter((c) => c.exportName === name).map((c) => c.shutdown()));
    },
    uri(exportName: string) {
      const e = encodeURIComponent(exportName);
      const scheme = tlsConfig ? 'nbds' : 'nbd';
      if ('path' in address) return `${scheme}+unix:///${e}?socket=${address.path}`;
      const h = address.host.includes(':') ? `[${address.host}]` : address.host;
      return `${scheme}://${h}:${address.port}/${e}`;
    },
    close() {
      closing ??= (async () => {
        const stopped = new Promise<void>((resolve) => srv.close(() => resolve()));
        await Promise.all([...conns].map((c) => c.shutdown()));
        await stopped;
        if (ownsClient) await client.close();
      })();
      return closing;
    },
  };
}

interface TlsConfig {
  /** Options of the tls.Server each STARTTLS hands its socket to (see startTls). */
  serverOptions: tls.TlsOptions;
  /** Clients must start TLS before anything else. */
  required: boolean;
}

/** A TLS handshake that has not finished after this long ends the connection. */
const TLS_HANDSHAKE_TIMEOUT_MS = 30_000;

function tlsConfigOf(o: NbdTlsOptions): TlsConfig {
  if (typeof o !== 'object' || o === null || o.key === undefined || o.cert === undefined) {
    throw new InvalidArgumentError('tls needs a key and a cert (PEM)');
  }
  const creds = o.ca === undefined ? { key: o.key, cert: o.cert } : { key: o.key, cert: o.cert, ca: o.ca };
  try {
    // Checked now, so that bad credentials fail startNbdServer rather than every client.
    tls.createSecureContext(creds);
  } catch (e) {
    throw new InvalidArgumentError(`tls: ${(e as Error).message}`, { cause: e });
  }
  const verify = o.ca !== undefined;
  return {
    serverOptions: {
      ...creds,
      requestCert: verify,
      rejectUnauthorized: verify,
      handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS,
    },
    required: o.optional !== true,
  };
}

interface ServerConfig {
  client: SheepdogClient;
  exports: string[] | 'all';
  readOnly: boolean;
  maxPayload: number;
  maxInFlightBytes: number;
  maxServerInFlightBytes: number;
  tls: TlsConfig | undefined;
  budget: Budget;
  kick(): void;
}

interface Piece {
  off: number;
  len: number;
  idx: number;
  owner: number;
}

interface OpenExport {
  name: string;
  vdi: Vdi;
  readOnly: boolean;
  flags: number;
}

/** One controller per connection, shared by all its requests in flight (so no listener-count warning). */
function newConnectionAbort(): AbortController {
  const ac = new AbortController();
  setMaxListeners(0, ac.signal);
  return ac;
}

class NbdConnection {
  readonly done: Promise<void>;
  /** The client's socket; after STARTTLS, the TLS socket over it. */
  private socket: net.Socket;
  /** TLS was started (STARTTLS, handshake done). */
  private secured = false;
  private readonly cfg: ServerConfig;
  private readonly decoder: NbdServerDecoder;
  /** Aborts every request of this connection when it ends; each request in flight listens on it. */
  private readonly abort = newConnectionAbort();
  private structured = false;
  private noZeroes = false;
  /** Meta contexts set by SET_META_CONTEXT, and for which export name. */
  private contexts: { name: string; ids: number[]; dirty: Map<number, Vdi> } | undefined;
  private exp: OpenExport | undefined;
  private pumping = false;
  private paused = false;
  /** run() stopped decoding because the budget was spent. */
  private blocked = false;
  private stopping = false;
  private closed = false;
  private inflight = 0;
  private inflightBytes = 0;
  private idle: (() => void) | undefined;
  private depthChain: number[] | undefined;
  private resolveDone!: () => void;
  /** Replies queued for the next batch (see flush), the requests they answer and the bytes those hold. */
  private out: Buffer[] = [];
  private outCount = 0;
  private outCost = 0;
  private flushQueued = false;

  constructor(socket: net.Socket, cfg: ServerConfig) {
    this.socket = socket;
    this.cfg = cfg;
    this.decoder = new NbdServerDecoder({ maxPayload: cfg.maxPayload });
    this.done = new Promise((r) => (this.resolveDone = r));
    socket.setNoDelay(true);
    this.listen(socket);
    socket.write(encodeGreeting(HandshakeFlag.FIXED_NEWSTYLE | HandshakeFlag.NO_ZEROES));
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.stopping) return; // ending: nothing more is decoded
    this.decoder.push(chunk);
    this.pump();
  };

  private listen(socket: net.Socket): void {
    socket.on('data', this.onData);
    socket.on('error', () => {});
    socket.on('close', () => void this.teardown());
  }

  /**
   * NBD_OPT_STARTTLS was acknowledged: from now on the connection is a TLS
   * socket over the client's. The handshake is a tls.Server's (one per
   * upgrade, never listening: the socket is handed to it), so that it is
   * Node's own checks that verify a client certificate against the CA and
   * bound the handshake in time. Resolves once the handshake is done (and the
   * certificate accepted); rejects, ending the connection, otherwise.
   */
  private async startTls(cfg: TlsConfig): Promise<void> {
    const raw = this.socket;
    raw.removeListener('data', this.onData);
    const srv = tls.createServer(cfg.serverOptions);
    const s = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const closed = (): void => reject(new Error('the connection closed during the TLS handshake'));
      raw.once('close', closed);
      srv.once('tlsClientError', (e: Error) => reject(e));
      srv.once('secureConnection', (sock: tls.TLSSocket) => {
        raw.off('close', closed);
        resolve(sock);
      });
      srv.emit('connection', raw);
    });
    this.socket = s;
    this.listen(s);
    this.secured = true;
    // The spec: nothing negotiated before STARTTLS survives it (structured
    // replies, meta contexts), so that none of it came from a man in the middle.
    this.structured = false;
    await this.setContexts(undefined);
  }

  /** The export this connection is in transmission with. */
  get exportName(): string | undefined {
    return this.exp?.name;
  }

  /** Server close: stop reading, let requests in flight answer, then end. */
  async shutdown(): Promise<void> {
    this.stopReading();
    await this.drained();
    this.finish();
    await this.done;
  }

  /**
   * End the connection after every reply: FIN after the last one, then read
   * and drop what the client still sends until its EOF (a paused socket
   * would never see it, and destroying one with unread bytes sends an RST
   * that can discard replies the client has not read yet). A client that
   * never closes is cut off after 10 s.
   */
  private finish(): void {
    this.socket.end();
    this.socket.resume();
    setTimeout(() => this.socket.destroy(), 10_000).unref();
  }

  private stopReading(): void {
    this.stopping = true;
    this.socket.pause();
  }

  private drained(): Promise<void> {
    if (this.inflight === 0) return Promise.resolve();
    return new Promise((r) => {
      const prev = this.idle;
      this.idle = () => {
        prev?.();
        r();
      };
    });
  }

  private async teardown(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stopping = true;
    this.abort.abort(new Error('NBD connection closed'));
    await this.drained();
    const vdi = this.exp?.vdi;
    this.exp = undefined;
    if (vdi) await vdi.close().catch(() => {});
    await this.setContexts(undefined);
    this.resolveDone();
  }

  private fatal(): void {
    this.stopReading();
    this.socket.destroy();
  }

  /** Pause or resume reading from the socket by the bytes in flight. */
  flow(): void {
    if (this.closed) return;
    const over =
      this.inflight > 0 &&
      (this.inflightBytes + this.decoder.buffered >= this.cfg.maxInFlightBytes ||
        this.cfg.budget.bytes >= this.cfg.maxServerInFlightBytes);
    if ((over || this.stopping) && !this.paused) {
      this.paused = true;
      if (over && !this.stopping) this.cfg.budget.pauses++;
      this.socket.pause();
    } else if (!over && !this.stopping && this.paused) {
      this.paused = false;
      this.socket.resume();
    }
    if (this.blocked && !this.overBudget()) {
      this.blocked = false;
      this.pump();
    }
  }

  /**
   * Decode and start what has arrived, synchronously (requests start in the
   * same tick, so the client batches their sheep requests), until the bytes
   * run out or the budget is spent. An option is answered asynchronously,
   * with the socket paused; decoding goes on after it.
   */
  private pump(): void {
    if (this.pumping || this.closed) return;
    this.pumping = true;
    for (;;) {
      if (this.stopping) break;
      if (this.decoder.phase === 'transmission' && this.inflight > 0 && this.overBudget()) {
        this.blocked = true;
        break;
      }
      let m: ClientMessage | undefined;
      try {
        m = this.decoder.next();
      } catch (e) {
        if (!(e instanceof NbdProtocolError)) throw e;
        this.fatal();
        break;
      }
      if (m === undefined) break;
      if (m.kind === 'client-flags') {
        this.noZeroes = (m.flags & ClientFlag.NO_ZEROES) !== 0;
        // TLS needs the fixed newstyle handshake (STARTTLS is an option with replies); a
        // client without it could only send EXPORT_NAME, which a server requiring TLS refuses.
        if (this.cfg.tls?.required && (m.flags & ClientFlag.FIXED_NEWSTYLE) === 0) {
          this.fatal();
          break;
        }
      } else if (m.kind === 'option') {
        this.socket.pause();
        this.option(m).then(
          () => {
            if (!this.stopping && !this.paused) this.socket.resume();
            this.pumping = false;
            this.pump();
          },
          () => {
            this.fatal();
            this.pumping = false;
            this.flow();
          },
        );
        return;
      } else this.request(m);
    }
    this.pumping = false;
    this.flow();
  }

  private overBudget(): boolean {
    return this.inflightBytes >= this.cfg.maxInFlightBytes || this.cfg.budget.bytes >= this.cfg.maxServerInFlightBytes;
  }

  // ---- negotiation --------------------------------------------------------

  private allowed(name: string): string | undefined {
    const list = this.cfg.exports;
    if (list === 'all') return name === '' ? undefined : name;
    if (name === '') return list[0];
    return list.includes(name) ? name : undefined;
  }

  private async open(name: string): Promise<OpenExport> {
    const real = this.allowed(name);
    if (real === undefined) throw new NbdOptionError(`no export ${JSON.stringify(name)}`, Rep.ERR_UNKNOWN);
    const ref = parseExportRef(real);
    let vdi: Vdi;
    try {
      vdi = await this.cfg.client.openVdi(
        ref.vdi,
        ref.snapshot === undefined
          ? { signal: this.abort.signal }
          : { snapshot: ref.snapshot, signal: this.abort.signal },
      );
    } catch (e) {
      const why = e instanceof NoVdiError || e instanceof NoTagError ? 'no such VDI or snapshot' : String(e);
      throw new NbdOptionError(`export ${JSON.stringify(real)}: ${why}`, Rep.ERR_UNKNOWN);
    }
    const readOnly = this.cfg.readOnly || vdi.snapshot;
    let flags =
      TransmissionFlag.HAS_FLAGS |
      TransmissionFlag.SEND_FLUSH |
      TransmissionFlag.SEND_FUA |
      TransmissionFlag.SEND_TRIM |
      TransmissionFlag.SEND_WRITE_ZEROES |
      TransmissionFlag.SEND_CACHE |
      TransmissionFlag.SEND_FAST_ZERO |
      // Safe: every connection of this server goes through one client, whose
      // handles of one VDI share its state (writes ordered per object), and
      // sheep acknowledges a write only once it is on every replica, so a
      // completed write is visible to and durable for every connection.
      TransmissionFlag.CAN_MULTI_CONN;
    if (readOnly) flags |= TransmissionFlag.READ_ONLY;
    if (this.structured) flags |= TransmissionFlag.SEND_DF;
    return { name: real, vdi, readOnly, flags };
  }

  private reply(option: number, type: number, data?: Uint8Array): void {
    this.socket.write(encodeOptionReply(option, type, data));
  }

  private async option(m: OptionMessage): Promise<void> {
    const o = m.option;
    const ends = o === Opt.GO || o === Opt.EXPORT_NAME;
    // TLS required: before STARTTLS every option but ABORT is refused (even
    // one too large to read), and EXPORT_NAME, which has no error reply, ends
    // the connection, as the spec says.
    if (this.cfg.tls?.required && !this.secured && o !== Opt.STARTTLS && o !== Opt.ABORT) {
      if (o === Opt.EXPORT_NAME) return this.fatal();
      this.socket.write(
        encodeOptionError(o, Rep.ERR_TLS_REQD, 'this server requires TLS: send NBD_OPT_STARTTLS first'),
      );
      if (ends && !m.tooLarge) this.decoder.continueOptions();
      return;
    }
    if (m.tooLarge) {
      if (o === Opt.EXPORT_NAME) return this.fatal();
      this.socket.write(encodeOptionError(o, Rep.ERR_TOO_BIG, `option data of ${m.length} bytes is too large`));
      return;
    }
    try {
      switch (o) {
        case Opt.EXPORT_NAME: {
          const exp = await this.open(parseExportName(m.data));
          this.exp = exp;
          this.socket.write(encodeExportNameReply(exp.vdi.size, exp.flags, this.noZeroes));
          this.decoder.startTransmission();
          return;
        }
        case Opt.ABORT:
          this.reply(o, Rep.ACK);
          this.stopReading();
          this.finish();
          return;
        case Opt.LIST:
          parseEmpty(m.data, 'NBD_OPT_LIST');
          for (const name of await this.names()) this.socket.write(encodeRepServer(o, name));
          this.reply(o, Rep.ACK);
          return;
        case Opt.INFO:
        case Opt.GO:
          return await this.info(o, m.data);
        case Opt.STRUCTURED_REPLY:
          parseEmpty(m.data, 'NBD_OPT_STRUCTURED_REPLY');
          if (this.structured) throw new NbdOptionError('structured replies already negotiated', Rep.ERR_INVALID);
          this.structured = true;
          this.reply(o, Rep.ACK);
          return;
        case Opt.LIST_META_CONTEXT:
        case Opt.SET_META_CONTEXT:
          return await this.metaContext(o, m.data);
        case Opt.STARTTLS: {
          parseEmpty(m.data, 'NBD_OPT_STARTTLS');
          const cfg = this.cfg.tls;
          if (cfg === undefined) throw new NbdOptionError('TLS is not configured on this server', Rep.ERR_UNSUP);
          if (this.secured) throw new NbdOptionError('TLS is already started', Rep.ERR_INVALID);
          // The client must wait for this reply before its TLS handshake:
          // bytes already here are neither options nor TLS.
          if (this.decoder.buffered > 0) return this.fatal();
          this.reply(o, Rep.ACK);
          return await this.startTls(cfg);
        }
        default:
          throw new NbdOptionError(`option ${o} is not supported`, Rep.ERR_UNSUP);
      }
    } catch (e) {
      if (o === Opt.EXPORT_NAME) return this.fatal(); // the protocol has no error reply for it
      if (!(e instanceof NbdOptionError)) throw e;
      this.socket.write(encodeOptionError(o, e.rep, e.message));
      if (ends) this.decoder.continueOptions();
    }
  }

  private async names(): Promise<string[]> {
    if (this.cfg.exports !== 'all') return this.cfg.exports;
    const out: string[] = [];
    for (const v of await this.cfg.client.listVdis({ signal: this.abort.signal })) {
      out.push(v.snapshot ? `${v.name}@${v.tag !== '' ? v.tag : v.snapId}` : v.name);
    }
    return out;
  }

  private async info(o: number, data: Buffer): Promise<void> {
    const req = parseInfoRequest(data);
    const exp = await this.open(req.name);
    const keep = o === Opt.GO;
    try {
      this.socket.write(encodeInfoExport(o, exp.vdi.size, exp.flags));
      if (req.infos.includes(Info.NAME)) this.socket.write(encodeInfoString(o, Info.NAME, exp.name));
      if (req.infos.includes(Info.DESCRIPTION)) {
        const kind = exp.vdi.snapshot ? 'snapshot' : 'VDI';
        this.socket.write(
          encodeInfoString(o, Info.DESCRIPTION, `Sheepdog ${kind} ${exp.vdi.name} (vid ${exp.vdi.vid})`),
        );
      }
      const os = exp.vdi.objectSize;
      this.socket.write(encodeInfoBlockSize(o, 1, Math.min(os, this.cfg.maxPayload), this.cfg.maxPayload));
      this.reply(o, Rep.ACK);
    } finally {
      if (!keep) await exp.vdi.close();
    }
    if (keep) {
      this.exp = exp;
      if (this.contexts !== undefined && this.contexts.name !== req.name) await this.setContexts(undefined);
      this.decoder.startTransmission();
    }
  }

  /** Replace the contexts set, closing the snapshot handles of the dirty bitmaps no longer used. */
  private async setContexts(c: NbdConnection['contexts']): Promise<void> {
    const old = this.contexts;
    this.contexts = c;
    if (old) await Promise.all([...old.dirty.values()].map((v) => v.close().catch(() => {})));
  }

  /** The snapshots of `vdi`, as dirty-bitmap context names. */
  private async snapshotContexts(vdi: string): Promise<string[]> {
    const out: string[] = [];
    for (const v of await this.cfg.client.listVdis({ signal: this.abort.signal })) {
      if (v.snapshot && v.name === vdi) out.push(`${DIRTY_PREFIX}${v.tag !== '' ? v.tag : v.snapId}`);
    }
    return out;
  }

  private async metaContext(o: number, data: Buffer): Promise<void> {
    if (!this.structured) {
      throw new NbdOptionError('meta contexts need structured replies first', Rep.ERR_INVALID);
    }
    const req = parseMetaContextRequest(data);
    const real = this.allowed(req.name);
    if (real === undefined) {
      throw new NbdOptionError(`no export ${JSON.stringify(req.name)}`, Rep.ERR_UNKNOWN);
    }
    const vdiName = parseExportRef(real).vdi;
    const list = o === Opt.LIST_META_CONTEXT;
    const all = list && req.queries.length === 0;
    const found: [number, string][] = [];
    const add = (id: number, name: string): void => {
      if (!found.some(([, n]) => n === name)) found.push([id, name]);
    };
    for (const [id, name] of CONTEXTS) {
      const ns = name.slice(0, name.indexOf(':') + 1);
      if (all || req.queries.some((q) => q === name || (list && q === ns))) add(id, name);
    }
    let next = CTX_DIRTY;
    const dirty = new Map<number, Vdi>();
    try {
      if (all || (list && req.queries.some((q) => q === 'qemu:' || q === DIRTY_PREFIX))) {
        for (const name of await this.snapshotContexts(vdiName)) add(next++, name);
      }
      for (const q of req.queries) {
        if (!q.startsWith(DIRTY_PREFIX) || q.length === DIRTY_PREFIX.length) continue;
        if (found.some(([, n]) => n === q)) continue;
        const ref = parseExportRef(`${vdiName}@${q.slice(DIRTY_PREFIX.length)}`).snapshot;
        if (ref === undefined) continue;
        let snap: Vdi;
        try {
          snap = await this.cfg.client.openVdi(vdiName, { snapshot: ref, signal: this.abort.signal });
        } catch (e) {
          if (e instanceof NoVdiError || e instanceof NoTagError) continue; // no such context: not listed
          throw e;
        }
        if (list) await snap.close();
        else dirty.set(next, snap);
        add(next++, q);
      }
    } catch (e) {
      await Promise.all([...dirty.values()].map((v) => v.close().catch(() => {})));
      throw e;
    }
    for (const [id, name] of found) this.socket.write(encodeMetaContext(o, id, name));
    if (!list) await this.setContexts({ name: req.name, ids: found.map(([id]) => id), dirty });
    this.reply(o, Rep.ACK);
  }

  // ---- transmission -------------------------------------------------------

  /**
   * Start one request. READ and WRITE go to the Vdi without options: its
   * one-request fast path (a signal would take the general one, with an
   * abort listener per request), and a READ or WRITE, bounded by
   * `maxPayload`, has every piece sent at once, so aborting it at teardown
   * would stop nothing; teardown waits for it (the client's request timeout
   * bounds it). The other commands run under the connection's signal.
   * Replies go out in batches (`answer`).
   */
  private request(r: RequestMessage): void {
    const t = r.type;
    if (t === Cmd.DISC) {
      this.stopReading();
      void this.drained().then(() => this.finish());
      return;
    }
    const cost = 64 + (t === Cmd.READ || t === Cmd.WRITE ? Math.min(r.length, this.cfg.maxPayload) : 0);
    const b = this.cfg.budget;
    this.inflight++;
    this.inflightBytes += cost;
    b.bytes += cost;
    b.requests++;
    b.inFlightRequests++;
    if (b.bytes > b.peakInFlightBytes) b.peakInFlightBytes = b.bytes;
    const exp = this.exp;
    if (exp === undefined) return this.answerAll(cost, this.error(r, Errno.EIO, 'no export'));
    const bad = this.validate(r, exp);
    if (bad !== undefined) return this.answerAll(cost, this.error(r, bad[0], bad[1]));
    if (t === Cmd.WRITE) return this.write(r, exp.vdi, cost);
    if (t === Cmd.READ) return this.read(r, exp.vdi, cost);
    this.execute(r, exp).then(
      (bufs) => this.answerAll(cost, bufs),
      (e: unknown) => this.fail(r, cost, e),
    );
  }

  /** WRITE: the payload as decoded (a view of the received bytes, or the one buffer it was assembled in) goes to Vdi.write. */
  private write(r: RequestMessage, vdi: Vdi, cost: number): void {
    const cookie = r.cookie;
    if (r.data === undefined || r.length === 0) {
      this.answer(cost, encodeSimpleReply(cookie, Errno.OK));
      return;
    }
    vdi.write(r.data, r.offset).then(
      () => this.answer(cost, encodeSimpleReply(cookie, Errno.OK)),
      (e: unknown) => this.fail(r, cost, e),
    );
  }

  /** Queue a reply of one or two buffers (header, data) for the next batch; `cost` is released once it is written. */
  private answer(cost: number, a: Buffer, b?: Buffer): void {
    this.out.push(a);
    if (b !== undefined) this.out.push(b);
    this.queued(cost);
  }

  private answerAll(cost: number, bufs: readonly Buffer[]): void {
    for (const x of bufs) this.out.push(x);
    this.queued(cost);
  }

  private fail(r: RequestMessage, cost: number, e: unknown): void {
    this.answerAll(cost, this.error(r, nbdErrno(e), e instanceof Error ? e.message : String(e)));
  }

  private queued(cost: number): void {
    this.outCount++;
    this.outCost += cost;
    if (!this.flushQueued) {
      this.flushQueued = true;
      setImmediate(this.flush);
    }
  }

  /**
   * Write every reply queued since the last batch: once per turn of the
   * event loop (setImmediate: after the I/O callbacks of that turn, so the
   * replies of every sheep connection's reads go out together), as one
   * write. A reply's buffers are consecutive (replies never interleave);
   * runs of small buffers (headers, errors, extents) are copied into one,
   * payloads are written as they are. The batch's requests are released
   * when the socket took it (or failed to).
   */
  private readonly flush = (): void => {
    this.flushQueued = false;
    const bufs = this.out;
    const count = this.outCount;
    const cost = this.outCost;
    this.out = [];
    this.outCount = 0;
    this.outCost = 0;
    if (count === 0) return;
    if (this.closed || this.socket.destroyed) return this.release(count, cost);
    const chunks = coalesce(bufs);
    const done = (): void => this.release(count, cost);
    this.cfg.budget.replyWrites++;
    const last = chunks.length - 1;
    if (last === 0) {
      this.socket.write(chunks[0] as Buffer, done);
      return;
    }
    this.socket.cork();
    for (let i = 0; i < last; i++) this.socket.write(chunks[i] as Buffer);
    this.socket.write(chunks[last] as Buffer, done);
    this.socket.uncork();
  };

  /** `count` requests holding `cost` bytes are done (their replies written, or the socket gone). */
  private release(count: number, cost: number): void {
    const b = this.cfg.budget;
    this.inflight -= count;
    this.inflightBytes -= cost;
    b.bytes -= cost;
    b.inFlightRequests -= count;
    if (this.inflight === 0) {
      const idle = this.idle;
      this.idle = undefined;
      idle?.();
    }
    this.cfg.kick();
  }

  private error(r: RequestMessage, errno: number, message: string): Buffer[] {
    if (this.structured && (r.type === Cmd.READ || r.type === Cmd.BLOCK_STATUS)) {
      return [encodeChunkError(r.cookie, errno, message)];
    }
    return [encodeSimpleReply(r.cookie, errno)];
  }

  /** Check a request before it touches the volume: an errno and why, or undefined. */
  private validate(r: RequestMessage, exp: OpenExport): [number, string] | undefined {
    const t = r.type;
    if (t > Cmd.BLOCK_STATUS) return [Errno.EINVAL, `command ${t} is not supported`];
    if ((r.flags & ~KNOWN_CMD_FLAGS) !== 0) return [Errno.EINVAL, `unknown flags 0x${r.flags.toString(16)}`];
    if (r.flags & (CmdFlag.NO_HOLE | CmdFlag.FAST_ZERO) && t !== Cmd.WRITE_ZEROES) {
      return [Errno.EINVAL, 'NO_HOLE and FAST_ZERO go with WRITE_ZEROES only'];
    }
    if (r.flags & CmdFlag.DF && (t !== Cmd.READ || !this.structured)) {
      return [Errno.EINVAL, 'DF goes with READ and structured replies only'];
    }
    if (r.flags & CmdFlag.REQ_ONE && t !== Cmd.BLOCK_STATUS)
      return [Errno.EINVAL, 'REQ_ONE goes with BLOCK_STATUS only'];
    const writes = t === Cmd.WRITE || t === Cmd.TRIM || t === Cmd.WRITE_ZEROES;
    if (r.tooLarge) return [Errno.EINVAL, `WRITE of ${r.length} bytes is over the maximum ${this.cfg.maxPayload}`];
    if (writes && exp.readOnly) return [Errno.EPERM, `export ${exp.name} is read-only`];
    if (t === Cmd.READ && r.length > this.cfg.maxPayload) {
      return [Errno.EOVERFLOW, `READ of ${r.length} bytes is over the maximum ${this.cfg.maxPayload}`];
    }
    if (t === Cmd.FLUSH) return undefined;
    if (r.offset + r.length > exp.vdi.size) {
      const errno = t === Cmd.WRITE || t === Cmd.WRITE_ZEROES ? Errno.ENOSPC : Errno.EINVAL;
      return [errno, `[${r.offset}, +${r.length}) is past the end (${exp.vdi.size} bytes)`];
    }
    if (t === Cmd.BLOCK_STATUS) {
      if (!this.structured || this.contexts === undefined || this.contexts.ids.length === 0) {
        return [Errno.EINVAL, 'BLOCK_STATUS needs a meta context'];
      }
      if (r.length === 0) return [Errno.EINVAL, 'BLOCK_STATUS of length 0'];
    }
    return undefined;
  }

  /** The commands other than READ and WRITE (checked already); rejects with the volume's error. */
  private async execute(r: RequestMessage, exp: OpenExport): Promise<Buffer[]> {
    const io = { signal: this.abort.signal };
    const ok = [encodeSimpleReply(r.cookie, Errno.OK)];
    switch (r.type) {
      case Cmd.FLUSH:
        await exp.vdi.flush(io);
        return ok;
      case Cmd.TRIM:
        if (r.length > 0) await exp.vdi.discard(r.offset, r.length, io);
        return ok;
      case Cmd.WRITE_ZEROES: {
        const noHole = (r.flags & CmdFlag.NO_HOLE) !== 0;
        // Writing zeros allocates object by object: not fast.
        if (noHole && r.flags & CmdFlag.FAST_ZERO) return [encodeSimpleReply(r.cookie, Errno.ENOTSUP)];
        if (r.length > 0) await exp.vdi.writeZeroes(r.offset, r.length, { ...io, unmap: !noHole });
        return ok;
      }
      case Cmd.CACHE:
        return ok; // the SDK keeps no cache: nothing to prefetch into
      case Cmd.BLOCK_STATUS:
        return await this.blockStatus(r, exp.vdi);
      default:
        return this.error(r, Errno.EINVAL, `command ${r.type}`);
    }
  }

  /** The objects of [offset, offset+length), clipped to it, with their owning vid (0: hole). */
  private pieces(vdi: Vdi, offset: number, length: number): Piece[] {
    const os = vdi.objectSize;
    const out: Piece[] = [];
    const end = offset + length;
    for (let off = offset; off < end;) {
      const idx = Math.floor(off / os);
      const next = Math.min(end, (idx + 1) * os);
      out.push({ off, len: next - off, idx, owner: vdi.objectOwner(idx) }); // one index lookup per object
      off = next;
    }
    return out;
  }

  /** Runs of objects with the same owner, clipped to the range. */
  private runs(vdi: Vdi, offset: number, length: number): { off: number; len: number; owner: number }[] {
    const out: { off: number; len: number; owner: number }[] = [];
    for (const p of this.pieces(vdi, offset, length)) {
      const last = out.at(-1);
      if (last && last.owner === p.owner) last.len += p.len;
      else out.push({ off: p.off, len: p.len, owner: p.owner });
    }
    return out;
  }

  /**
   * READ. A range within one object (the common case) is one Vdi.read whose
   * Buffer is the reply's payload as it is (no copy), or, structured, one
   * OFFSET_HOLE without a read when the object is unallocated.
   */
  private read(r: RequestMessage, vdi: Vdi, cost: number): void {
    const cookie = r.cookie;
    if (r.length === 0) {
      this.answer(cost, this.structured ? encodeChunkNone(cookie) : encodeSimpleReply(cookie, Errno.OK));
      return;
    }
    const off = r.offset;
    const os = vdi.objectSize;
    const idx = Math.floor(off / os);
    const df = (r.flags & CmdFlag.DF) !== 0;
    if (this.structured && !df && Math.floor((off + r.length - 1) / os) !== idx) {
      this.readRuns(r, vdi).then(
        (bufs) => this.answerAll(cost, bufs),
        (e: unknown) => this.fail(r, cost, e),
      );
      return;
    }
    if (this.structured && !df && vdi.objectOwner(idx) === 0) {
      this.answer(cost, encodeOffsetHole(cookie, ReplyFlag.DONE, off, r.length));
      return;
    }
    const structured = this.structured;
    vdi.read(off, r.length).then(
      (data) =>
        this.answer(
          cost,
          structured
            ? encodeOffsetDataHeader(cookie, ReplyFlag.DONE, off, data.length)
            : encodeSimpleReply(cookie, Errno.OK),
          data,
        ),
      (e: unknown) => this.fail(r, cost, e),
    );
  }

  /** A structured READ over several objects: OFFSET_HOLE for runs of unallocated ones, OFFSET_DATA for the rest. */
  private async readRuns(r: RequestMessage, vdi: Vdi): Promise<Buffer[]> {
    const runs = this.runs(vdi, r.offset, r.length);
    const parts = await Promise.all(
      runs.map(async (run) => (run.owner === 0 ? undefined : await vdi.read(run.off, run.len))),
    );
    const out: Buffer[] = [];
    runs.forEach((run, i) => {
      const flags = i === runs.length - 1 ? ReplyFlag.DONE : 0;
      const data = parts[i];
      if (data === undefined) out.push(encodeOffsetHole(r.cookie, flags, run.off, run.len));
      else out.push(encodeOffsetDataHeader(r.cookie, flags, run.off, data.length), data);
    });
    return out;
  }

  /** The vids from the export's own up its parent chain (for qemu:allocation-depth). */
  private async chain(vdi: Vdi, need: Iterable<number>): Promise<number[]> {
    let c = this.depthChain;
    const missing = (): boolean =>
      c === undefined || c[0] !== vdi.vid || [...need].some((v) => v !== 0 && !c?.includes(v));
    if (missing()) {
      const parents = new Map<number, number>();
      for (const v of await this.cfg.client.listVdis({ signal: this.abort.signal }))
        parents.set(v.vdiId, v.parentVdiId);
      c = [vdi.vid];
      for (let p = parents.get(vdi.vid) ?? vdi.inode.parentVdiId; p && !c.includes(p); p = parents.get(p) ?? 0)
        c.push(p);
      this.depthChain = c;
    }
    return c ?? [vdi.vid];
  }

  private async blockStatus(r: RequestMessage, vdi: Vdi): Promise<Buffer[]> {
    const ids = this.contexts?.ids ?? [];
    const dirty = this.contexts?.dirty;
    const one = (r.flags & CmdFlag.REQ_ONE) !== 0;
    const runs = this.pieces(vdi, r.offset, r.length);
    const out: Buffer[] = [];
    let chain: number[] | undefined;
    if (ids.includes(CTX_DEPTH))
      chain = await this.chain(
        vdi,
        runs.map((x) => x.owner),
      );
    ids.forEach((id, i) => {
      const snap = dirty?.get(id);
      const flagOf =
        id === CTX_BASE
          ? (p: Piece) => (p.owner === 0 ? StateFlag.HOLE | StateFlag.ZERO : 0)
          : id === CTX_DEPTH
            ? (p: Piece) => {
                if (p.owner === 0) return 0;
                const d = chain?.indexOf(p.owner) ?? -1;
                return d < 0 ? 2 : d + 1;
              }
            : // Dirty: the object's owner differs from the snapshot's (written, or discarded, since).
              (p: Piece) => (snap !== undefined && snap.objectOwner(p.idx) === p.owner ? 0 : STATE_DIRTY);
      const extents: Extent[] = [];
      for (const run of runs) {
        const f = flagOf(run);
        const last = extents.at(-1);
        if (last && last.flags === f) last.length += run.len;
        else extents.push({ length: run.len, flags: f });
      }
      out.push(
        encodeBlockStatus(r.cookie, i === ids.length - 1 ? ReplyFlag.DONE : 0, id, one ? extents.slice(0, 1) : extents),
      );
    });
    return out;
  }
}
