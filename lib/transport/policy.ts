/**
 * Retry policy of the pool, as data: which requests are safe to send again
 * after their connection died (idempotency by opcode and flags), which sheep
 * results are transient, and the default backoff.
 *
 * Sources: sheep/request.c (`queue_request`, `queue_gateway_request`,
 * `gateway_op_done`), sheep/ops.c, sheep/store/plain_store.c (sheepdog 1.0).
 */
import { Flag, Op, Result } from '../../protocol/constants.js';
import { opcodeInfo } from '../../protocol/opcodes.js';

/**
 * Whether a request may be repeated after its connection died, by opcode and
 * header flags. The opcode table (protocol/opcodes.ts, `repeatable`) says
 * which opcodes may: reads, lookups, statistics, and object writes at a fixed
 * offset (writing the same bytes twice leaves the same object). Not
 * repeatable (the caller gets OutcomeUnknownError): NEW_VDI (create,
 * snapshot, clone, rollback steps), DEL_VDI, LOCK_VDI / RELEASE_VDI (owned by
 * the gateway node that took them), REMOVE_OBJ / DISCARD_OBJ (a repeat
 * answers NO_OBJ), GET_VDI_ATTR with EXCL or DEL, every admin and peer op,
 * and any opcode the table does not know.
 */
export function isIdempotent(opcode: number, flags = 0): boolean {
  if (opcodeInfo(opcode)?.repeatable !== true) return false;
  if (opcode === Op.GET_VDI_ATTR) {
    // Lookup, or create-if-missing with the same value: repeatable.
    // EXCL: a repeat answers VDI_EXIST; DEL: a repeat answers NO_OBJ.
    return (flags & (Flag.CMD_EXCL | Flag.CMD_DEL)) === 0;
  }
  return true;
}

/**
 * Results sheep gives before doing anything (`queue_request` node-state
 * checks, `queue_gateway_request` HALT, LOCK_VDI while collecting lock state,
 * CLEANUP during recovery, peer epoch checks, AGAIN): safe to send again,
 * whatever the opcode.
 */
const TRANSIENT_NOT_DONE = new Set<number>([
  Result.WAIT_FOR_JOIN,
  Result.KILLED,
  Result.SHUTDOWN,
  Result.HALT,
  Result.STARTUP,
  Result.COLLECTING_CINFO,
  Result.OLD_NODE_VER,
  Result.NEW_NODE_VER,
  Result.AGAIN,
  Result.NODE_IN_RECOVERY,
]);

/** Transient, but the request may have been partly done: repeated only when idempotent. */
const TRANSIENT_MAYBE_DONE = new Set<number>([Result.NETWORK_ERROR]);

/**
 * Whether a sheep result is transient (worth retrying after a backoff):
 * WAIT_FOR_JOIN, KILLED, SHUTDOWN, HALT, STARTUP, COLLECTING_CINFO,
 * OLD/NEW_NODE_VER, AGAIN, NODE_IN_RECOVERY, NETWORK_ERROR. Everything else
 * (including WAIT_FOR_FORMAT: only an admin's format ends it) is terminal.
 */
export function isTransientResult(result: number): boolean {
  return TRANSIENT_NOT_DONE.has(result) || TRANSIENT_MAYBE_DONE.has(result);
}

/** Whether a transient `result` may be retried for a request of this idempotency. */
export function mayRetryResult(result: number, idempotent: boolean): boolean {
  return TRANSIENT_NOT_DONE.has(result) || (idempotent && TRANSIENT_MAYBE_DONE.has(result));
}

/** Results that say "this node cannot serve now": the retry prefers another node. */
export function isNodeResult(result: number): boolean {
  return result === Result.KILLED || result === Result.SHUTDOWN || result === Result.WAIT_FOR_JOIN;
}

/**
 * `reconnectStrategy(retries, cause)`: milliseconds to wait before the next
 * connection attempt to a node, `false` to stop trying (the node is then
 * "failed"), or an Error to stop with that error as the reason.
 */
export type ReconnectStrategy = (retries: number, cause: Error) => number | false | Error;

/** Exponential backoff with jitter: min(2^n · 50, 2000) + rand(0..200) ms (node-redis). */
export function defaultBackoff(retries: number): number {
  return Math.min(2 ** Math.min(retries, 16) * 50, 2000) + Math.floor(Math.random() * 200);
}

export const defaultReconnectStrategy: ReconnectStrategy = (retries) => defaultBackoff(retries);
