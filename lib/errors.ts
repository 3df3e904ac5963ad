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

/** The socket to a sheep failed: connect refused, reset, closed mid-request. */
export class ConnectionError extends SheepdogError {
  static override readonly brand: string = 'ConnectionError';
  /** `host:port` of the sheep. */
  readonly node: string | undefined;
  constructor(message: string, node?: string, options?: ErrorOptions) {
    super(message, 'SHEEPDOG_ERR_CONNECTION', options);
    this.node = node;
  }
}

/** The request's deadline passed before its reply arrived. */
export class TimeoutError extends SheepdogError {
  static override readonly brand: string = 'TimeoutError';
  constructor(message = 'request timed out', options?: ErrorOptions) {
    super(message, 'SHEEPDOG_ERR_TIMEOUT', options);
  }
}

/** The request's AbortSignal fired. `cause` is the signal's reason. */
export class AbortError extends SheepdogError {
  static override readonly brand: string = 'AbortError';
  constructor(message = 'request aborted', options?: ErrorOptions) {
    super(message, 'SHEEPDOG_ERR_ABORTED', options);
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
 * before retrying.
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

const byResult = new Map<number, new (context?: string, node?: string, options?: ErrorOptions) => SheepdogResponseError>([
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
]);

/** The most specific SheepdogResponseError for a result code. */
export function responseError(result: number, context?: string, node?: string): SheepdogResponseError {
  const C = byResult.get(result);
  return C ? new C(context, node) : new SheepdogResponseError(result, context, node);
}
