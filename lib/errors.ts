/**
 * Typed errors of the SDK. Every class has a stable `code` and a brand, so
 * `instanceof` works across two copies of the package (see protocol/errors.ts).
 *
 * Split (MongoDB driver style): network (ConnectionError), protocol
 * (ProtocolError), client-side (Timeout/Abort/QueueFull/PoolClosed/
 * InvalidArgument/OutcomeUnknown) and server (SheepdogResponseError, carrying
 * the SD_RES number and name).
 */
import { InvalidArgumentError, ProtocolError, SheepdogError } from '../protocol/errors.js';
import { Result, resultMessage, resultName } from '../protocol/constants.js';

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
  | 'frame';

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

function sub(brand: string, result: number) {
  const C = class extends SheepdogResponseError {
    static override readonly brand: string = brand;
    constructor(context?: string, node?: string, options?: ErrorOptions) {
      super(result, context, node, options);
    }
  };
  Object.defineProperty(C, 'name', { value: brand });
  return C;
}

export const NoVdiError = sub('NoVdiError', Result.NO_VDI);
export const VdiExistsError = sub('VdiExistsError', Result.VDI_EXIST);
export const VdiLockedError = sub('VdiLockedError', Result.VDI_LOCKED);
export const NoTagError = sub('NoTagError', Result.NO_TAG);
export const ReadOnlyError = sub('ReadOnlyError', Result.READONLY);
export const NoSpaceError = sub('NoSpaceError', Result.NO_SPACE);
export const InvalidParmsError = sub('InvalidParmsError', Result.INVALID_PARMS);
export const NoObjError = sub('NoObjError', Result.NO_OBJ);
export const WaitForFormatError = sub('WaitForFormatError', Result.WAIT_FOR_FORMAT);
export const VerMismatchError = sub('VerMismatchError', Result.VER_MISMATCH);
export const VdiNotLockedError = sub('VdiNotLockedError', Result.VDI_NOT_LOCKED);
export const NoBaseVdiError = sub('NoBaseVdiError', Result.NO_BASE_VDI);
export const FullVdiError = sub('FullVdiError', Result.FULL_VDI);
export const EioError = sub('EioError', Result.EIO);
export const HaltError = sub('HaltError', Result.HALT);
export const ShutdownError = sub('ShutdownError', Result.SHUTDOWN);
export const WaitForJoinError = sub('WaitForJoinError', Result.WAIT_FOR_JOIN);
export const NoSupportError = sub('NoSupportError', Result.NO_SUPPORT);
export const BufferSmallError = sub('BufferSmallError', Result.BUFFER_SMALL);
export const InodeInvalidatedError = sub('InodeInvalidatedError', Result.INODE_INVALIDATED);

const byResult = new Map<
  number,
  new (context?: string, node?: string, options?: ErrorOptions) => SheepdogResponseError
>([
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
