/**
 * Typed errors of the SDK, all in this module. Every one is a class (usable
 * as a type) with a stable `code` and a brand, so `instanceof` works across
 * two copies of the package (see protocol/errors.ts, which holds the base
 * classes the pure codec throws; they are re-exported here).
 *
 * Split (MongoDB driver style): network (ConnectionError), protocol
 * (ProtocolError), client-side (Timeout/Abort/QueueFull/PoolClosed/
 * InvalidArgument/OutcomeUnknown), server (SheepdogResponseError, carrying
 * the SD_RES number and name, and one subclass per common result) and the
 * higher layers' own (PartialWriteError from the VDI data path;
 * ClusterNotReadyError and ImageTooLargeError from the driver).
 */
import { InvalidArgumentError, ProtocolError, SheepdogError } from '../protocol/errors.js';
import { Result, resultMessage, resultName } from '../protocol/constants.js';
import type { ClusterInfoResult } from './client/client.js';

export { InvalidArgumentError, ProtocolError, SheepdogError };

/** Why a connection failed (ConnectionError.reason). */
export type ConnectionErrorReason =
  /** The TCP connect was refused, reset or could not resolve. */
  | 'connect'
  /** The TCP connect did not finish within `connectTimeout`. */
  | 'connect-timeout'
  /** The peer closed the connection (or it was reset) while requests were pending. */
  | 'closed'
  /** The socket reported an error (ECONNRESET, EPIPE...). */
  | 'socket'
  /** Our side destroyed the connection (pool.destroy(), a retired connection). */
  | 'destroyed'
  /** No node of the pool can take the request (all down for good, or the pinned node left). */
  | 'no-node';

export interface ConnectionErrorOptions extends ErrorOptions {
  reason?: ConnectionErrorReason;
  /** Whether the failed request had been written to the socket (its outcome may be unknown). */
  sent?: boolean;
}

/** The socket to a sheep failed: connect refused, reset, closed mid-request. */
export class ConnectionError extends SheepdogError {
  static override readonly brand: string = 'ConnectionError';
  /** `host:port` of the sheep. */
  readonly node: string | undefined;
  /** What failed; see ConnectionErrorReason. */
  readonly reason: ConnectionErrorReason;
  /** True when the request had been written before the connection failed. */
  readonly sent: boolean;
  constructor(message: string, node?: string, options?: ConnectionErrorOptions) {
    super(message, 'SHEEPDOG_ERR_CONNECTION', options);
    this.node = node;
    this.reason = options?.reason ?? 'closed';
    this.sent = options?.sent ?? false;
  }
}

/** Why the reply stream of a connection was rejected (SheepProtocolError.reason). */
export type ProtocolErrorReason =
  /** A reply carried an id that no request in flight on that connection uses. */
  | 'unknown-id'
  /** A reply header does not match its request (opcode) or cannot be a reply. */
  | 'bad-header'
  /** A reply body is larger than the request allows, or than `maxDataLength`. */
  | 'oversize'
  /** The frame decoder rejected the stream. */
  | 'frame'
  /**
   * The peer is not a sheep: the first bytes it sent on a connection (an
   * HTTP answer, a proxy's banner, a header cut short by its close) match no
   * request in flight there, before any valid reply.
   */
  | 'not-a-sheep';

/**
 * A sheep sent bytes that cannot be a valid reply on this connection. The
 * socket is destroyed and every request in flight on it fails with this
 * error (or, through the pool, is retried / turned into OutcomeUnknownError).
 * `instanceof ProtocolError` holds too.
 */
export class SheepProtocolError extends ProtocolError {
  static override readonly brand: string = 'SheepProtocolError';
  /** `host:port` of the sheep that sent the bytes. */
  readonly node: string | undefined;
  readonly reason: ProtocolErrorReason;
  constructor(message: string, node: string | undefined, reason: ProtocolErrorReason, options?: ErrorOptions) {
    super(message, options);
    this.node = node;
    this.reason = reason;
  }
}

/** Where a request was when it timed out or was aborted. */
export type RequestPhase =
  /** Waiting in the pool queue for a connection (never sent). */
  | 'queued'
  /** Written (or being written) to a sheep; its reply had not arrived. */
  | 'sent'
  /** Waiting to be re-sent after a transient result or a failover. */
  | 'backoff';

export interface RequestErrorOptions extends ErrorOptions {
  /** `host:port` the request was last sent to, if any. */
  node?: string | undefined;
  phase?: RequestPhase;
  /** The timeout that fired, in ms (TimeoutError). */
  timeout?: number;
}

/** The request's deadline passed before its reply arrived. */
export class TimeoutError extends SheepdogError {
  static override readonly brand: string = 'TimeoutError';
  readonly node: string | undefined;
  readonly phase: RequestPhase | undefined;
  readonly timeout: number | undefined;
  constructor(message = 'request timed out', options?: RequestErrorOptions) {
    super(message, 'SHEEPDOG_ERR_TIMEOUT', options);
    this.node = options?.node;
    this.phase = options?.phase;
    this.timeout = options?.timeout;
  }
}

/** The request's AbortSignal fired. `cause` is the signal's reason. */
export class AbortError extends SheepdogError {
  static override readonly brand: string = 'AbortError';
  readonly node: string | undefined;
  readonly phase: RequestPhase | undefined;
  constructor(message = 'request aborted', options?: RequestErrorOptions) {
    super(message, 'SHEEPDOG_ERR_ABORTED', options);
    this.node = options?.node;
    this.phase = options?.phase;
  }
}

/** The pool's wait queue is full (`maxQueued`). */
export class QueueFullError extends SheepdogError {
  static override readonly brand: string = 'QueueFullError';
  constructor(message = 'request queue is full', options?: ErrorOptions) {
    super(message, 'SHEEPDOG_ERR_QUEUE_FULL', options);
  }
}

/** The pool (or client) was closed or destroyed. */
export class PoolClosedError extends SheepdogError {
  static override readonly brand: string = 'PoolClosedError';
  constructor(message = 'pool is closed', options?: ErrorOptions) {
    super(message, 'SHEEPDOG_ERR_POOL_CLOSED', options);
  }
}

/**
 * A request that is not safe to repeat (NEW_VDI, DEL_VDI, snapshot steps,
 * exclusive attr creation...) was sent, and its connection died before the
 * reply: it may or may not have taken effect. Callers reconcile (look up)
 * before retrying. `cause` is the connection or protocol error.
 */
export class OutcomeUnknownError extends SheepdogError {
  static override readonly brand: string = 'OutcomeUnknownError';
  readonly node: string | undefined;
  readonly opcode: number;
  constructor(message: string, opcode: number, node?: string, options?: ErrorOptions) {
    super(message, 'SHEEPDOG_ERR_OUTCOME_UNKNOWN', options);
    this.opcode = opcode;
    this.node = node;
  }
}

/** Sheep answered with a result other than SUCCESS. */
export class SheepdogResponseError extends SheepdogError {
  static override readonly brand: string = 'SheepdogResponseError';
  /** The SD_RES_* number. */
  readonly result: number;
  /** Its symbolic name, e.g. `NO_VDI`. */
  readonly resultName: string;
  /** `host:port` of the sheep that answered, when known. */
  readonly node: string | undefined;
  constructor(result: number, context?: string, node?: string, options?: ErrorOptions) {
    const msg = `${context ? `${context}: ` : ''}${resultMessage(result)} (${resultName(result)})`;
    super(msg, `SHEEPDOG_ERR_${resultName(result)}`, options);
    this.result = result;
    this.resultName = resultName(result);
    this.node = node;
  }
}

/** Constructor signature shared by the per-result subclasses below. */
type ResponseErrorClass = new (context?: string, node?: string, options?: ErrorOptions) => SheepdogResponseError;

/** No VDI of that name, tag or id (SD_RES_NO_VDI). */
export class NoVdiError extends SheepdogResponseError {
  static override readonly brand: string = 'NoVdiError';
  constructor(context?: string, node?: string, options?: ErrorOptions) {
    super(Result.NO_VDI, context, node, options);
  }
}

/** The VDI (or an exclusive attribute) exists already (SD_RES_VDI_EXIST). */
export class VdiExistsError extends SheepdogResponseError {
  static override readonly brand: string = 'VdiExistsError';
  constructor(context?: string, node?: string, options?: ErrorOptions) {
    super(Result.VDI_EXIST, context, node, options);
  }
}

/** The VDI is already locked (SD_RES_VDI_LOCKED). */
export class VdiLockedError extends SheepdogResponseError {
  static override readonly brand: string = 'VdiLockedError';
  constructor(context?: string, node?: string, options?: ErrorOptions) {
    super(Result.VDI_LOCKED, context, node, options);
  }
}

/** No snapshot with the requested tag (SD_RES_NO_TAG). */
export class NoTagError extends SheepdogResponseError {
  static override readonly brand: string = 'NoTagError';
  constructor(context?: string, node?: string, options?: ErrorOptions) {
    super(Result.NO_TAG, context, node, options);
  }
}

/** The object is read-only, e.g. a snapshot (SD_RES_READONLY). */
export class ReadOnlyError extends SheepdogResponseError {
  static override readonly brand: string = 'ReadOnlyError';
  constructor(context?: string, node?: string, options?: ErrorOptions) {
    super(Result.READONLY, context, node, options);
  }
}

/** The cluster has no space for new objects (SD_RES_NO_SPACE). */
export class NoSpaceError extends SheepdogResponseError {
  static override readonly brand: string = 'NoSpaceError';
  constructor(context?: string, node?: string, options?: ErrorOptions) {
    super(Result.NO_SPACE, context, node, options);
  }
}

/** Sheep rejected the parameters (SD_RES_INVALID_PARMS). */
export class InvalidParmsError extends SheepdogResponseError {
  static override readonly brand: string = 'InvalidParmsError';
  constructor(context?: string, node?: string, options?: ErrorOptions) {
    super(Result.INVALID_PARMS, context, node, options);
  }
}

/** No such object (SD_RES_NO_OBJ). */
export class NoObjError extends SheepdogResponseError {
  static override readonly brand: string = 'NoObjError';
  constructor(context?: string, node?: string, options?: ErrorOptions) {
    super(Result.NO_OBJ, context, node, options);
  }
}

/** The cluster is not formatted yet (SD_RES_WAIT_FOR_FORMAT). */
export class WaitForFormatError extends SheepdogResponseError {
  static override readonly brand: string = 'WaitForFormatError';
  constructor(context?: string, node?: string, options?: ErrorOptions) {
    super(Result.WAIT_FOR_FORMAT, context, node, options);
  }
}

/** Protocol version mismatch (SD_RES_VER_MISMATCH). */
export class VerMismatchError extends SheepdogResponseError {
  static override readonly brand: string = 'VerMismatchError';
  constructor(context?: string, node?: string, options?: ErrorOptions) {
    super(Result.VER_MISMATCH, context, node, options);
  }
}

/** The VDI is not locked (SD_RES_VDI_NOT_LOCKED). */
export class VdiNotLockedError extends SheepdogResponseError {
  static override readonly brand: string = 'VdiNotLockedError';
  constructor(context?: string, node?: string, options?: ErrorOptions) {
    super(Result.VDI_NOT_LOCKED, context, node, options);
  }
}

/** No base VDI found (SD_RES_NO_BASE_VDI). */
export class NoBaseVdiError extends SheepdogResponseError {
  static override readonly brand: string = 'NoBaseVdiError';
  constructor(context?: string, node?: string, options?: ErrorOptions) {
    super(Result.NO_BASE_VDI, context, node, options);
  }
}

/** The maximum number of VDIs is reached (SD_RES_FULL_VDI). */
export class FullVdiError extends SheepdogResponseError {
  static override readonly brand: string = 'FullVdiError';
  constructor(context?: string, node?: string, options?: ErrorOptions) {
    super(Result.FULL_VDI, context, node, options);
  }
}

/** I/O error on the sheep (SD_RES_EIO). */
export class EioError extends SheepdogResponseError {
  static override readonly brand: string = 'EioError';
  constructor(context?: string, node?: string, options?: ErrorOptions) {
    super(Result.EIO, context, node, options);
  }
}

/** I/O halted: not enough living nodes (SD_RES_HALT). */
export class HaltError extends SheepdogResponseError {
  static override readonly brand: string = 'HaltError';
  constructor(context?: string, node?: string, options?: ErrorOptions) {
    super(Result.HALT, context, node, options);
  }
}

/** The cluster is shutting down (SD_RES_SHUTDOWN). */
export class ShutdownError extends SheepdogResponseError {
  static override readonly brand: string = 'ShutdownError';
  constructor(context?: string, node?: string, options?: ErrorOptions) {
    super(Result.SHUTDOWN, context, node, options);
  }
}

/** The cluster waits for other nodes to join (SD_RES_WAIT_FOR_JOIN). */
export class WaitForJoinError extends SheepdogResponseError {
  static override readonly brand: string = 'WaitForJoinError';
  constructor(context?: string, node?: string, options?: ErrorOptions) {
    super(Result.WAIT_FOR_JOIN, context, node, options);
  }
}

/** The sheep does not support the operation (SD_RES_NO_SUPPORT). */
export class NoSupportError extends SheepdogResponseError {
  static override readonly brand: string = 'NoSupportError';
  constructor(context?: string, node?: string, options?: ErrorOptions) {
    super(Result.NO_SUPPORT, context, node, options);
  }
}

/** The buffer is too small (SD_RES_BUFFER_SMALL). */
export class BufferSmallError extends SheepdogResponseError {
  static override readonly brand: string = 'BufferSmallError';
  constructor(context?: string, node?: string, options?: ErrorOptions) {
    super(Result.BUFFER_SMALL, context, node, options);
  }
}

/** The inode object is invalidated (SD_RES_INODE_INVALIDATED). */
export class InodeInvalidatedError extends SheepdogResponseError {
  static override readonly brand: string = 'InodeInvalidatedError';
  constructor(context?: string, node?: string, options?: ErrorOptions) {
    super(Result.INODE_INVALIDATED, context, node, options);
  }
}

const byResult = new Map<number, ResponseErrorClass>([
  [Result.NO_VDI, NoVdiError],
  [Result.VDI_EXIST, VdiExistsError],
  [Result.VDI_LOCKED, VdiLockedError],
  [Result.NO_TAG, NoTagError],
  [Result.READONLY, ReadOnlyError],
  [Result.NO_SPACE, NoSpaceError],
  [Result.INVALID_PARMS, InvalidParmsError],
  [Result.NO_OBJ, NoObjError],
  [Result.WAIT_FOR_FORMAT, WaitForFormatError],
  [Result.VER_MISMATCH, VerMismatchError],
  [Result.VDI_NOT_LOCKED, VdiNotLockedError],
  [Result.NO_BASE_VDI, NoBaseVdiError],
  [Result.FULL_VDI, FullVdiError],
  [Result.EIO, EioError],
  [Result.HALT, HaltError],
  [Result.SHUTDOWN, ShutdownError],
  [Result.WAIT_FOR_JOIN, WaitForJoinError],
  [Result.NO_SUPPORT, NoSupportError],
  [Result.BUFFER_SMALL, BufferSmallError],
  [Result.INODE_INVALIDATED, InodeInvalidatedError],
]);

/** The most specific SheepdogResponseError for a result code. */
export function responseError(result: number, context?: string, node?: string): SheepdogResponseError {
  const C = byResult.get(result);
  return C ? new C(context, node) : new SheepdogResponseError(result, context, node);
}

/** A multi-object write failed part-way: `ranges` may not have landed (the rest did). */
export class PartialWriteError extends SheepdogError {
  static override readonly brand: string = 'PartialWriteError';
  readonly ranges: { offset: number; length: number }[];
  constructor(ranges: { offset: number; length: number }[], cause: unknown) {
    const what = ranges.map((r) => `[${r.offset}, +${r.length})`).join(', ');
    super(`write failed for ${what}: ${(cause as Error)?.message ?? String(cause)}`, 'SHEEPDOG_ERR_PARTIAL_WRITE', {
      cause,
    });
    this.ranges = ranges;
  }
}

/** Why the cluster is not usable (ClusterNotReadyError.reason). */
export type ClusterNotReadyReason = 'unreachable' | 'unformatted' | 'waiting-for-join' | 'shutdown' | 'not-running';

/** check_for_setup_error failed: the cluster cannot be reached, is not formatted, or is not running. */
export class ClusterNotReadyError extends SheepdogError {
  static override readonly brand: string = 'ClusterNotReadyError';
  readonly reason: ClusterNotReadyReason;
  /** The status clusterInfo reported, when it answered. */
  readonly status: ClusterInfoResult['status'] | undefined;
  constructor(
    message: string,
    reason: ClusterNotReadyReason,
    status?: ClusterInfoResult['status'],
    options?: ErrorOptions,
  ) {
    super(message, 'SHEEPDOG_ERR_CLUSTER_NOT_READY', options);
    this.reason = reason;
    this.status = status;
  }
}

/** The image given to copyImageToVolume does not fit the volume. */
export class ImageTooLargeError extends InvalidArgumentError {
  static override readonly brand: string = 'ImageTooLargeError';
  readonly volumeSize: number;
  constructor(message: string, volumeSize: number) {
    super(message);
    this.volumeSize = volumeSize;
  }
}

/** The VDI cannot be deleted (or rolled back) now: a handle of this client has it open, or its lock is held. */
export class VdiInUseError extends SheepdogError {
  static override readonly brand: string = 'VdiInUseError';
  /** The VDI's name. */
  readonly vdi: string;
  /** Who uses it: 'open' (a handle of this client) or 'locked' (LOCK_VDI held, by the listed nodes). */
  readonly by: 'open' | 'locked';
  constructor(message: string, vdi: string, by: 'open' | 'locked') {
    super(message, 'SHEEPDOG_ERR_VDI_IN_USE');
    this.vdi = vdi;
    this.by = by;
  }
}
