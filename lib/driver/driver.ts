/**
 * SheepdogDriver: an OpenStack-style (Nova/Cinder) volume driver for
 * Sheepdog that needs no external binary. The original Nova driver shelled
 * out to `qemu-img` and `collie`; the Cinder one parsed `dog`'s stderr. This
 * one speaks the protocol through SheepdogClient, so every failure arrives as
 * a typed error (docs/driver.md maps each method to its Cinder name and to
 * the SDK calls it makes).
 *
 * Conventions, as a Cinder operator expects them:
 * - volume sizes are GiB (`size`), or bytes (`sizeBytes`);
 * - deleting a missing volume or snapshot succeeds (`{ deleted: false }`,
 *   with a warning through `logger`);
 * - a failed clone or image copy leaves nothing behind (temporary snapshots
 *   and half-written volumes are deleted again).
 */
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import { formatAddress, parseAddress } from '../util/address.js';
import {
  type ClientOptions,
  type ClusterInfoResult,
  type CreateVdiOptions,
  type SnapshotResult,
  SheepdogClient,
  type VdiInfo,
} from '../client/client.js';
import {
  AbortError,
  ClusterNotReadyError,
  type ClusterNotReadyReason,
  ConnectionError,
  ImageTooLargeError,
  InvalidArgumentError,
  NoTagError,
  NoVdiError,
  SheepdogError,
  SheepdogResponseError,
  TimeoutError,
} from '../errors.js';
import { checkBytes, checkTag, checkVdiName } from '../client/names.js';
import { Result } from '../../protocol/constants.js';
import type { Vdi } from '../vdi/vdi.js';
import { type NbdListen, type NbdServer, type NbdTlsOptions, startNbdServer } from '../nbd/server.js';

/** Version reported by getVolumeStats (Cinder's `driver_version`). */
export const DRIVER_VERSION = '1.0.0';

const GiB = 2 ** 30;

/** Where the driver sends its warnings (Cinder logs them): `console` fits. */
export interface DriverLogger {
  warn(message: string): void;
  info?(message: string): void;
}

export interface SheepdogDriverOptions extends ClientOptions {
  /** Use this client (the driver will not close it) instead of making one from the options. */
  client?: SheepdogClient;
  /** Warnings (missing volume on delete, cleanup failures). Default: none. */
  logger?: DriverLogger;
  /** Redundancy of new volumes: copies or 'd:p' (default: the cluster's). */
  copies?: number | string;
  /** Object size shift of new volumes (default: the cluster's). */
  blockSizeShift?: number;
  /** `volume_backend_name` reported by getVolumeStats (default 'sheepdog'). */
  backendName?: string;
  /**
   * Export volumes over NBD (QEMU ≥ 6 has no sheepdog driver): createExport
   * adds an export, initializeConnection then answers `driverVolumeType:
   * 'nbd'`. Without this option exports are no-ops and connections use the
   * sheepdog protocol.
   */
  nbd?: DriverNbdOptions;
}

export interface DriverNbdOptions {
  /** A server to add exports to (the driver never closes it). */
  server?: NbdServer;
  /**
   * Or where the driver's own server listens (default 127.0.0.1:10809; port 0
   * picks one). It starts at the first createExport/ensureExport and is
   * closed by close().
   */
  listen?: NbdListen;
  /** The host put in connection info (default: the address the server listens on; needed for 0.0.0.0). */
  host?: string;
  /** TLS credentials of the driver's own server (see startNbdServer); its exports are then nbds://. */
  tls?: NbdTlsOptions;
}

/** Where an NBD client finds an export (TCP). */
export interface NbdExportInfo {
  host: string;
  port: number;
  exportName: string;
  /** `nbd://HOST:PORT/NAME` (`nbds://` with TLS) */
  uri: string;
  /** Present when the server has TLS: the client starts TLS (NBD_OPT_STARTTLS). */
  tls?: true;
}

/** Where an NBD client finds an export (a Unix socket). */
export interface NbdSocketExportInfo {
  socket: string;
  exportName: string;
  /** `nbd+unix:///NAME?socket=PATH` (`nbds+unix://` with TLS) */
  uri: string;
  /** Present when the server has TLS: the client starts TLS (NBD_OPT_STARTTLS). */
  tls?: true;
}

/** A volume as Cinder hands it to a driver: its name, and its size in GiB. */
export interface VolumeRef {
  /** VDI name (Cinder: `volume.name`, e.g. `volume-<uuid>`). */
  name: string;
  /** Size in GiB (Cinder's unit). */
  size?: number;
  /** Size in bytes; wins over `size` when both are given (they must then agree). */
  sizeBytes?: number;
}

export interface CreateVolumeSpec extends VolumeRef {
  /** Redundancy: copies (1..31) or erasure code 'd:p'. Default: the driver's, else the cluster's. */
  copies?: number | string;
  blockSizeShift?: number;
  /** Allocate every object now (thick provisioning, `dog vdi create -P`). */
  preallocate?: boolean;
}

/** A snapshot as Cinder hands it over: the volume it belongs to and its name (the sheepdog tag). */
export interface SnapshotSpec {
  volumeName: string;
  name: string;
}

export interface DeleteResult {
  /** False when there was nothing to delete (which is not an error). */
  deleted: boolean;
}

/** What QEMU-era clients used to address a volume (`sheepdog:NAME`), plus the gateways. */
export interface VolumeLocator {
  /** `sheepdog:NAME`, the path the Nova driver's discover_volume returned. */
  path: string;
  /** `sheepdog://HOST:PORT/NAME` for the first gateway (QEMU's URI syntax). */
  uri: string;
  name: string;
  hosts: string[];
  /** Ports as strings, as Cinder's connection_info carries them. */
  ports: string[];
}

/** initialize_connection's answer (Cinder's `connection_info`): NBD when the volume is exported, else sheepdog. */
export type ConnectionInfo = SheepdogConnectionInfo | NbdConnectionInfo;

export interface SheepdogConnectionInfo {
  driverVolumeType: 'sheepdog';
  data: { name: string; hosts: string[]; ports: string[] };
}

export interface NbdConnectionInfo {
  driverVolumeType: 'nbd';
  data: NbdExportInfo | NbdSocketExportInfo;
}

/** get_volume_stats' answer. Capacities are raw store bytes summed over nodes (as `dog node info`). */
export interface VolumeStats {
  volumeBackendName: string;
  vendorName: string;
  driverVersion: string;
  storageProtocol: 'sheepdog';
  totalCapacityBytes: number;
  freeCapacityBytes: number;
  totalCapacityGb: number;
  freeCapacityGb: number;
  /** Sum of the sizes of all working volumes (thin: may exceed the total). */
  provisionedCapacityBytes: number;
  provisionedCapacityGb: number;
  /** Bytes of objects volumes and snapshots own (before replication). */
  allocatedCapacityBytes: number;
  thinProvisioning: true;
  thinProvisioningSupport: true;
  thickProvisioningSupport: true;
  reservedPercentage: number;
  multiattach: false;
  /** The cluster's default redundancy ("3" or "4:2"). */
  redundancy: string;
  nodes: number;
  volumes: number;
  snapshots: number;
}

export interface CopyImageOptions {
  /** Size of the image in bytes, when known (checked against the volume before anything is written). */
  imageSize?: number;
  /** Called as bytes arrive. */
  onProgress?: (bytes: number) => void;
  signal?: AbortSignal;
}

export interface CopyResult {
  /** Bytes of image copied. */
  bytes: number;
  /** Size of the volume afterwards. */
  sizeBytes: number;
}

/** Declared in lib/errors.ts; re-exported for importers of this module. */
export { ClusterNotReadyError, type ClusterNotReadyReason, ImageTooLargeError };

function checkObject(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null) throw new InvalidArgumentError(`${what} must be an object`);
  return v as Record<string, unknown>;
}

function volumeName(volume: unknown, what = 'volume'): string {
  return checkVdiName(checkObject(volume, what)['name'], `${what} name`);
}

/** Bytes from `size` (GiB) or `sizeBytes`; undefined when neither is given. */
function requestedBytes(volume: VolumeRef, what = 'volume'): number | undefined {
  const { size, sizeBytes } = volume;
  let fromGiB: number | undefined;
  if (size !== undefined) {
    if (typeof size !== 'number' || !Number.isFinite(size) || size <= 0) {
      throw new InvalidArgumentError(`${what} size must be a positive number of GiB, got ${String(size)}`);
    }
    fromGiB = size * GiB;
    if (!Number.isSafeInteger(fromGiB)) {
      throw new InvalidArgumentError(`${what} size ${size} GiB is not a whole number of bytes`);
    }
  }
  if (sizeBytes !== undefined) {
    checkBytes(sizeBytes, `${what} sizeBytes`, { min: 1 });
    if (fromGiB !== undefined && fromGiB !== sizeBytes) {
      throw new InvalidArgumentError(`${what} size (${size} GiB) and sizeBytes (${sizeBytes}) disagree`);
    }
    return sizeBytes;
  }
  return fromGiB;
}

function snapshotSpec(s: unknown): SnapshotSpec {
  const o = checkObject(s, 'snapshot');
  return {
    volumeName: checkVdiName(o['volumeName'], 'snapshot volumeName'),
    name: checkTag(o['name'], 'snapshot name'),
  };
}

function round2(n: number): number {
  return Math.round(n * 100) / 100;
}

function isMissing(e: unknown): boolean {
  return e instanceof NoVdiError || e instanceof NoTagError;
}

function errMsg(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** The SDK's AbortError for `what`, when `signal` fired (else undefined). */
function abortedError(what: string, signal: AbortSignal | undefined): AbortError | undefined {
  if (signal?.aborted !== true) return undefined;
  return new AbortError(`${what} aborted`, { cause: signal.reason });
}

/**
 * Every failure of an image copy as a typed SheepdogError: the SDK's own
 * errors as they are; Node's AbortError from the stream pipeline (the
 * signal fired) as the SDK's AbortError (cause: the signal's reason); any
 * other error of the image stream as a SheepdogError of code
 * SHEEPDOG_ERR_IMAGE_STREAM (cause: the stream's error).
 */
function copyError(what: string, e: unknown, signal: AbortSignal | undefined): SheepdogError {
  if (e instanceof SheepdogError) return e;
  const aborted = abortedError(what, signal);
  if (aborted !== undefined) return aborted;
  if (e instanceof Error && (e.name === 'AbortError' || (e as { code?: unknown }).code === 'ABORT_ERR')) {
    return new AbortError(`${what} aborted`, { cause: e.cause ?? e });
  }
  return new SheepdogError(`${what}: the image stream failed: ${errMsg(e)}`, 'SHEEPDOG_ERR_IMAGE_STREAM', {
    cause: e,
  });
}

export class SheepdogDriver {
  /** The client the driver talks through. */
  readonly client: SheepdogClient;
  private readonly ownsClient: boolean;
  private readonly logger: DriverLogger | undefined;
  private readonly defaults: CreateVdiOptions;
  private readonly backendName: string;
  private readonly nbd: DriverNbdOptions | undefined;
  /** The NBD server exports go to: given, or started on first use (then owned). */
  private nbdServer: Promise<NbdServer> | undefined;
  /** Volumes this driver exported over NBD. */
  private readonly exported = new Set<string>();
  private closed = false;

  constructor(opts: SheepdogDriverOptions = {}) {
    const { client, logger, copies, blockSizeShift, backendName, nbd, ...clientOpts } = opts;
    if (nbd !== undefined) {
      checkObject(nbd, 'nbd');
      if (nbd.server !== undefined && nbd.listen !== undefined) {
        throw new InvalidArgumentError('nbd: give a server or where to listen, not both');
      }
      if (nbd.server !== undefined) this.nbdServer = Promise.resolve(nbd.server);
    }
    this.nbd = nbd;
    if (client !== undefined && !(client instanceof SheepdogClient)) {
      throw new InvalidArgumentError('client must be a SheepdogClient');
    }
    this.ownsClient = client === undefined;
    this.client = client ?? new SheepdogClient(clientOpts);
    this.logger = logger;
    this.defaults = {};
    if (copies !== undefined) this.defaults.copies = copies;
    if (blockSizeShift !== undefined) this.defaults.blockSizeShift = blockSizeShift;
    this.backendName = backendName ?? 'sheepdog';
  }

  private warn(msg: string): void {
    this.logger?.warn(msg);
  }

  private checkOpen(): void {
    if (this.closed) throw new SheepdogError('the driver is closed', 'SHEEPDOG_ERR_CLOSED');
  }

  // ---------------------------------------------------------------- setup

  /**
   * Cinder's check_for_setup_error (a TODO in the Nova driver): the cluster
   * answers, is formatted, and is running. Resolves with its info; otherwise
   * ClusterNotReadyError (`reason`, and the underlying error as `cause`).
   */
  async checkForSetupError(): Promise<ClusterInfoResult> {
    this.checkOpen();
    let info: ClusterInfoResult;
    const where = this.client.transport.nodes.join(', ') || 'the configured nodes';
    try {
      info = await this.client.clusterInfo();
    } catch (e) {
      if (e instanceof ConnectionError || e instanceof TimeoutError) {
        throw new ClusterNotReadyError(
          `cannot reach the sheepdog cluster at ${where}: ${errMsg(e)}`,
          'unreachable',
          undefined,
          {
            cause: e,
          },
        );
      }
      if (e instanceof SheepdogResponseError) {
        const r = e.result;
        const reason: ClusterNotReadyReason =
          r === Result.WAIT_FOR_FORMAT || r === Result.NOT_FORMATTED
            ? 'unformatted'
            : r === Result.WAIT_FOR_JOIN
              ? 'waiting-for-join'
              : r === Result.SHUTDOWN || r === Result.KILLED
                ? 'shutdown'
                : 'not-running';
        throw new ClusterNotReadyError(`sheepdog cluster at ${where} is not ready: ${e.message}`, reason, undefined, {
          cause: e,
        });
      }
      throw e;
    }
    if (!info.formatted || info.status === 'waiting-for-format') {
      throw new ClusterNotReadyError(
        `sheepdog cluster at ${where} is not formatted (run \`dog cluster format\`)`,
        'unformatted',
        info.status,
      );
    }
    if (info.status !== 'running') {
      const reason: ClusterNotReadyReason =
        info.status === 'waiting-for-join'
          ? 'waiting-for-join'
          : info.status === 'shutdown' || info.status === 'killed'
            ? 'shutdown'
            : 'not-running';
      throw new ClusterNotReadyError(
        `sheepdog cluster at ${where} is not running (status: ${info.status})`,
        reason,
        info.status,
      );
    }
    return info;
  }

  // -------------------------------------------------------------- volumes

  /** create_volume: a thin VDI of `size` GiB (or `sizeBytes`). VdiExistsError if the name is taken. */
  async createVolume(volume: CreateVolumeSpec): Promise<VdiInfo> {
    this.checkOpen();
    const name = volumeName(volume);
    const bytes = requestedBytes(volume);
    if (bytes === undefined) throw new InvalidArgumentError(`volume ${name}: size (GiB) or sizeBytes is required`);
    const opts: CreateVdiOptions = { ...this.defaults };
    if (volume.copies !== undefined) opts.copies = volume.copies;
    if (volume.blockSizeShift !== undefined) opts.blockSizeShift = volume.blockSizeShift;
    if (volume.preallocate !== undefined) opts.preallocate = volume.preallocate;
    return this.client.createVdi(name, bytes, opts);
  }

  /**
   * delete_volume: the working VDI (its snapshots stay). A volume that does
   * not exist is not an error: `{ deleted: false }` and a warning.
   */
  async deleteVolume(volume: VolumeRef): Promise<DeleteResult> {
    this.checkOpen();
    const name = volumeName(volume);
    try {
      await this.client.deleteVdi(name);
      return { deleted: true };
    } catch (e) {
      if (!isMissing(e)) throw e;
      this.warn(`delete volume ${name}: volume not found, nothing to delete`);
      return { deleted: false };
    }
  }

  /**
   * ensure_export (a TODO in the Nova driver; Cinder calls it at start-up for
   * volumes that should be exported): as createExport, idempotent.
   */
  async ensureExport(_ctx: unknown, volume: VolumeRef): Promise<NbdExportInfo | NbdSocketExportInfo | undefined> {
    return this.createExport(_ctx, volume);
  }

  /**
   * create_export: the volume must exist (NoVdiError). With the `nbd` option
   * it is added to the NBD server (started on first use) and the export's
   * address is returned; without it there is nothing to export (clients
   * connect to the gateways) and undefined is returned. Idempotent.
   */
  async createExport(
    _ctx: unknown,
    volume: VolumeRef,
    _connector?: unknown,
  ): Promise<NbdExportInfo | NbdSocketExportInfo | undefined> {
    this.checkOpen();
    const name = volumeName(volume);
    await this.client.getVdi(name);
    if (this.nbd === undefined) return undefined;
    const server = await this.server();
    this.checkOpen();
    server.addExport(name);
    this.exported.add(name);
    return this.exportInfo(server, name);
  }

  /**
   * remove_export: the volume's NBD export is removed (connections to it are
   * drained and closed); a volume that was not exported, or a driver without
   * `nbd`, is a no-op. Validates the volume reference.
   */
  async removeExport(_ctx: unknown, volume: VolumeRef): Promise<void> {
    this.checkOpen();
    const name = volumeName(volume);
    if (!this.exported.has(name) || this.nbdServer === undefined) return;
    this.exported.delete(name);
    await (await this.nbdServer).removeExport(name);
  }

  /** The NBD server: the given one, or ours (started once). */
  private server(): Promise<NbdServer> {
    this.nbdServer ??= startNbdServer({
      client: this.client,
      exports: [],
      listen: this.nbd?.listen ?? { host: '127.0.0.1', port: 10809 },
      ...(this.nbd?.tls === undefined ? {} : { tls: this.nbd.tls }),
    }).catch((e: unknown) => {
      this.nbdServer = undefined; // let a later call try again (e.g. the port was busy)
      throw e;
    });
    return this.nbdServer;
  }

  private exportInfo(server: NbdServer, name: string): NbdExportInfo | NbdSocketExportInfo {
    const a = server.address;
    const tls = server.tls ? ({ tls: true } as const) : {};
    if ('path' in a) return { socket: a.path, exportName: name, uri: server.uri(name), ...tls };
    const host = this.nbd?.host ?? a.host;
    const uri = `${server.tls ? 'nbds' : 'nbd'}://${formatAddress(host, a.port)}/${encodeURIComponent(name)}`;
    return { host, port: a.port, exportName: name, uri, ...tls };
  }

  private async gateways(): Promise<{ hosts: string[]; ports: string[] }> {
    let addrs = [...this.client.transport.nodes];
    if (addrs.length === 0) addrs = (await this.client.listNodes()).map((n) => n.address);
    const hosts: string[] = [];
    const ports: string[] = [];
    for (const a of addrs) {
      const p = parseAddress(a);
      hosts.push(p.host);
      ports.push(String(p.port));
    }
    return { hosts, ports };
  }

  /**
   * discover_volume (Nova): the locator QEMU-era clients used, `sheepdog:NAME`,
   * with the gateways. Checks the volume exists (NoVdiError).
   */
  async discoverVolume(volume: VolumeRef): Promise<VolumeLocator> {
    this.checkOpen();
    const name = volumeName(volume);
    await this.client.getVdi(name);
    const { hosts, ports } = await this.gateways();
    const gateway = formatAddress(hosts[0] ?? '127.0.0.1', Number(ports[0] ?? 7000));
    return {
      path: `sheepdog:${name}`,
      uri: `sheepdog://${gateway}/${encodeURIComponent(name)}`,
      name,
      hosts,
      ports,
    };
  }

  /** undiscover_volume (Nova): a no-op (validates the volume reference). */
  async undiscoverVolume(volume: VolumeRef): Promise<void> {
    this.checkOpen();
    volumeName(volume);
  }

  // ------------------------------------------------------------ snapshots

  /** create_snapshot: `dog vdi snapshot -s NAME VOLUME`. VdiExistsError if the tag is taken. */
  async createSnapshot(snapshot: SnapshotSpec): Promise<SnapshotResult> {
    this.checkOpen();
    const s = snapshotSpec(snapshot);
    return this.client.snapshotVdi(s.volumeName, s.name);
  }

  /** delete_snapshot: a missing snapshot (or volume) is not an error: `{ deleted: false }` and a warning. */
  async deleteSnapshot(snapshot: SnapshotSpec): Promise<DeleteResult> {
    this.checkOpen();
    const s = snapshotSpec(snapshot);
    try {
      await this.client.deleteVdi(s.volumeName, { snapshot: s.name });
      return { deleted: true };
    } catch (e) {
      if (!isMissing(e)) throw e;
      this.warn(`delete snapshot ${s.volumeName}@${s.name}: snapshot not found, nothing to delete`);
      return { deleted: false };
    }
  }

  /**
   * create_volume_from_snapshot: a copy-on-write clone of the snapshot,
   * grown to the volume's size when that is larger. A smaller size is refused
   * before anything is created; if growing fails the clone is deleted again.
   */
  async createVolumeFromSnapshot(volume: VolumeRef, snapshot: SnapshotSpec): Promise<VdiInfo> {
    this.checkOpen();
    const name = volumeName(volume);
    const want = requestedBytes(volume);
    const s = snapshotSpec(snapshot);
    const snap = await this.client.getVdi(s.volumeName, { snapshot: s.name });
    if (want !== undefined && want < snap.size) {
      throw new InvalidArgumentError(
        `volume ${name} (${want} bytes) would be smaller than snapshot ${s.volumeName}@${s.name} (${snap.size} bytes)`,
      );
    }
    const info = await this.client.cloneVdi(s.volumeName, s.name, name);
    if (want === undefined || want === info.size) return info;
    try {
      await this.client.resizeVdi(name, want);
    } catch (e) {
      await this.cleanup(`volume ${name}`, () => this.client.deleteVdi(name));
      throw e;
    }
    return this.client.getVdi(name);
  }

  /**
   * create_cloned_volume: snapshot the source under a temporary tag, clone
   * it, and delete the temporary snapshot again, whether the clone worked or
   * not (sheep keeps the objects the clone shares).
   */
  async createClonedVolume(volume: VolumeRef, srcVolume: VolumeRef): Promise<VdiInfo> {
    this.checkOpen();
    const name = volumeName(volume);
    const src = volumeName(srcVolume, 'source volume');
    const want = requestedBytes(volume);
    if (name === src) throw new InvalidArgumentError(`volume ${name} cannot be cloned onto itself`);
    const source = await this.client.getVdi(src);
    if (want !== undefined && want < source.size) {
      throw new InvalidArgumentError(
        `volume ${name} (${want} bytes) would be smaller than its source ${src} (${source.size} bytes)`,
      );
    }
    const tmp: SnapshotSpec = { volumeName: src, name: `tmp-snap-${src}-${name}`.slice(0, 255) };
    // A leftover from a crashed earlier attempt would make the snapshot fail.
    try {
      await this.client.deleteVdi(tmp.volumeName, { snapshot: tmp.name });
    } catch (e) {
      if (!isMissing(e)) throw e;
    }
    await this.client.snapshotVdi(tmp.volumeName, tmp.name);
    try {
      return await this.createVolumeFromSnapshot(volume, tmp);
    } finally {
      await this.cleanup(`temporary snapshot ${tmp.volumeName}@${tmp.name}`, () =>
        this.client.deleteVdi(tmp.volumeName, { snapshot: tmp.name }),
      );
    }
  }

  /** revert_to_snapshot (Cinder; the old driver lacked it): roll the volume back, keeping its size if it grew since. */
  async revertToSnapshot(_ctx: unknown, volume: VolumeRef, snapshot: SnapshotSpec): Promise<VdiInfo> {
    this.checkOpen();
    const name = volumeName(volume);
    const want = requestedBytes(volume);
    const s = snapshotSpec(snapshot);
    if (s.volumeName !== name) {
      throw new InvalidArgumentError(`snapshot ${s.volumeName}@${s.name} does not belong to volume ${name}`);
    }
    // Both must exist before the working VDI is dropped (NoVdiError / NoTagError otherwise).
    const cur = await this.client.getVdi(name);
    await this.client.getVdi(name, { snapshot: s.name });
    const info = await this.client.rollbackVdi(name, s.name);
    const size = Math.max(want ?? 0, cur.size);
    if (size > info.size) {
      await this.client.resizeVdi(name, size);
      return this.client.getVdi(name);
    }
    return info;
  }

  /** extend_volume: grow to `newSizeGiB`. Shrinking is refused (InvalidArgumentError). */
  async extendVolume(volume: VolumeRef, newSizeGiB: number): Promise<VdiInfo> {
    this.checkOpen();
    const name = volumeName(volume);
    const bytes = requestedBytes({ name, size: newSizeGiB }, 'new');
    if (bytes === undefined) throw new InvalidArgumentError('new size is required');
    await this.client.resizeVdi(name, bytes);
    return this.client.getVdi(name);
  }

  // --------------------------------------------------------------- images

  /**
   * copy_image_to_volume: write a raw image stream into the volume. As the
   * Cinder driver did, an existing volume is replaced (deleted and created
   * again with its redundancy), then sized to the volume's size (`size` /
   * `sizeBytes`, else its current size, else `imageSize`). An image larger
   * than that is refused (ImageTooLargeError); all-zero blocks are not
   * written (the volume stays thin). If anything fails, the volume is
   * deleted again.
   */
  async copyImageToVolume(
    volume: VolumeRef,
    image: Readable | AsyncIterable<Uint8Array>,
    opts: CopyImageOptions = {},
  ): Promise<CopyResult> {
    this.checkOpen();
    const name = volumeName(volume);
    let size = requestedBytes(volume);
    if (image === null || typeof image !== 'object' || !(Symbol.asyncIterator in image)) {
      throw new InvalidArgumentError('image must be a readable stream or an async iterable of bytes');
    }
    const imageSize = opts.imageSize === undefined ? undefined : checkBytes(opts.imageSize, 'imageSize');
    const what = `image copy to volume ${name}`;
    const early = abortedError(what, opts.signal);
    if (early !== undefined) throw early;
    let existing: VdiInfo | undefined;
    try {
      existing = await this.client.getVdi(name);
    } catch (e) {
      if (!(e instanceof NoVdiError)) throw e;
    }
    size ??= existing?.size ?? imageSize;
    if (size === undefined || size === 0) {
      throw new InvalidArgumentError(`volume ${name}: give its size (GiB), sizeBytes, or the imageSize`);
    }
    if (imageSize !== undefined && imageSize > size) {
      throw new ImageTooLargeError(`image (${imageSize} bytes) is larger than volume ${name} (${size} bytes)`, size);
    }
    const create: CreateVdiOptions = { ...this.defaults };
    if (existing) {
      create.copies = existing.redundancy;
      create.blockSizeShift = existing.blockSizeShift;
      await this.client.deleteVdi(name);
    }
    await this.client.createVdi(name, size, create);
    let vdi: Vdi | undefined;
    let bytes = 0;
    try {
      vdi = await this.client.openVdi(name);
      const limit = size;
      const count = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          bytes += chunk.length;
          if (bytes > limit) {
            cb(new ImageTooLargeError(`image is larger than volume ${name} (${limit} bytes)`, limit));
            return;
          }
          opts.onProgress?.(bytes);
          cb(null, chunk);
        },
      });
      const streamOpts = opts.signal ? { signal: opts.signal } : {};
      await pipeline(image, count, vdi.createWriteStream({ skipZeroes: true }), streamOpts);
      await vdi.flush();
      await vdi.close();
      vdi = undefined;
      return { bytes, sizeBytes: size };
    } catch (e) {
      if (vdi) await vdi.close().catch(() => {});
      await this.cleanup(`volume ${name} after a failed image copy`, () => this.client.deleteVdi(name));
      throw copyError(what, e, opts.signal);
    }
  }

  /** copy_volume_to_image: stream the volume's raw bytes (holes as zeros) into `image`. */
  async copyVolumeToImage(
    volume: VolumeRef,
    image: Writable,
    opts: { onProgress?: (bytes: number) => void; signal?: AbortSignal } = {},
  ): Promise<CopyResult> {
    this.checkOpen();
    const name = volumeName(volume);
    if (image === null || typeof image !== 'object' || typeof (image as Writable).write !== 'function') {
      throw new InvalidArgumentError('image must be a writable stream');
    }
    const what = `copy of volume ${name} to an image`;
    const early = abortedError(what, opts.signal);
    if (early !== undefined) throw early;
    const vdi = await this.client.openVdi(name);
    let bytes = 0;
    try {
      const count = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          bytes += chunk.length;
          opts.onProgress?.(bytes);
          cb(null, chunk);
        },
      });
      const streamOpts = opts.signal ? { signal: opts.signal } : {};
      if (vdi.size > 0) await pipeline(vdi.createReadStream(), count, image, streamOpts);
      else image.end();
      return { bytes, sizeBytes: vdi.size };
    } catch (e) {
      throw copyError(what, e, opts.signal);
    } finally {
      await vdi.close();
    }
  }

  // ---------------------------------------------------------------- stats

  /**
   * get_volume_stats: capacity from STAT_SHEEP of every node (raw store
   * bytes, like `dog node info`), provisioned from the VDI list.
   */
  async getVolumeStats(): Promise<VolumeStats> {
    this.checkOpen();
    const [caps, vdis, info] = await Promise.all([
      this.client.nodeCapacity(),
      this.client.listVdis(),
      this.client.clusterInfo(),
    ]);
    let total = 0;
    let free = 0;
    for (const c of caps) {
      total += c.size;
      free += c.free;
    }
    let provisioned = 0;
    let allocated = 0;
    let volumes = 0;
    let snapshots = 0;
    for (const v of vdis) {
      allocated += v.used;
      if (v.snapshot) snapshots++;
      else {
        volumes++;
        provisioned += v.size;
      }
    }
    return {
      volumeBackendName: this.backendName,
      vendorName: 'Open Source',
      driverVersion: DRIVER_VERSION,
      storageProtocol: 'sheepdog',
      totalCapacityBytes: total,
      freeCapacityBytes: free,
      totalCapacityGb: round2(total / GiB),
      freeCapacityGb: round2(free / GiB),
      provisionedCapacityBytes: provisioned,
      provisionedCapacityGb: round2(provisioned / GiB),
      allocatedCapacityBytes: allocated,
      thinProvisioning: true,
      thinProvisioningSupport: true,
      thickProvisioningSupport: true,
      reservedPercentage: 0,
      multiattach: false,
      redundancy: info.redundancy,
      nodes: caps.length,
      volumes,
      snapshots,
    };
  }

  // ---------------------------------------------------------- connections

  /**
   * initialize_connection: what Nova's LibvirtNetVolumeDriver needs. For a
   * volume exported over NBD (createExport with the `nbd` option):
   * `{ driverVolumeType: 'nbd', data: { host, port, exportName, uri } }`
   * (`<source protocol='nbd' name=...><host .../>`); otherwise the sheepdog
   * form (`<source protocol='sheepdog' name=...>`). Checks the volume exists.
   */
  async initializeConnection(volume: VolumeRef, _connector?: unknown): Promise<ConnectionInfo> {
    this.checkOpen();
    const name = volumeName(volume);
    await this.client.getVdi(name);
    if (this.exported.has(name) && this.nbdServer !== undefined) {
      return { driverVolumeType: 'nbd', data: this.exportInfo(await this.nbdServer, name) };
    }
    const { hosts, ports } = await this.gateways();
    return { driverVolumeType: 'sheepdog', data: { name, hosts, ports } };
  }

  /** terminate_connection: a no-op (validates the volume reference). */
  async terminateConnection(volume: VolumeRef, _connector?: unknown): Promise<void> {
    this.checkOpen();
    volumeName(volume);
  }

  /** Close the driver's NBD server (draining its connections) and the client, when the driver made them. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const server = this.nbd?.server === undefined ? this.nbdServer : undefined;
    if (server !== undefined) await (await server.catch(() => undefined))?.close();
    else if (this.nbd?.server !== undefined) {
      await Promise.all([...this.exported].map((n) => this.nbd?.server?.removeExport(n)));
    }
    this.exported.clear();
    if (this.ownsClient) await this.client.close();
  }

  /** Run a cleanup step; its failure is logged, never thrown over the error being handled. */
  private async cleanup(what: string, fn: () => Promise<unknown>): Promise<void> {
    try {
      await fn();
    } catch (e) {
      if (isMissing(e)) return;
      this.warn(`cleanup of ${what} failed: ${errMsg(e)}`);
    }
  }
}
