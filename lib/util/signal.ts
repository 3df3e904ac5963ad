/**
 * Per-call cancellation: a call's `signal` and `timeout` folded into one
 * AbortSignal whose reason is the SDK's typed error.
 */
import { AbortError, InvalidArgumentError, SheepdogError, TimeoutError } from '../errors.js';

/** Per-call options of every I/O method and client call. */
export interface IoOptions {
  /** Abort the call: requests not yet sent are dropped; writes already sent are waited for. */
  signal?: AbortSignal;
  /** Milliseconds until the call fails with TimeoutError (same rules as `signal`). */
  timeout?: number;
}

/** A signal that fires on the caller's signal or after `timeout` ms; `done()` clears the timer. */
export interface CallSignal {
  signal: AbortSignal | undefined;
  done(): void;
}
export const NO_CALL_SIGNAL: CallSignal = { signal: undefined, done() {} };

export function callSignal(o: IoOptions | undefined, what: string): CallSignal {
  if (o === undefined || (o.signal === undefined && o.timeout === undefined)) return NO_CALL_SIGNAL;
  const { signal, timeout } = o;
  if (timeout === undefined) return { signal, done() {} };
  if (typeof timeout !== 'number' || !(timeout >= 0)) {
    throw new InvalidArgumentError(`timeout must be a number of ms >= 0, got ${String(timeout)}`);
  }
  const ac = new AbortController();
  const timer = setTimeout(() => {
    ac.abort(new TimeoutError(`${what} timed out after ${timeout} ms`, { timeout }));
  }, timeout);
  const onAbort = (): void => ac.abort(signal?.reason);
  if (signal?.aborted) onAbort();
  else signal?.addEventListener('abort', onAbort, { once: true });
  return {
    signal: ac.signal,
    done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    },
  };
}

export function abortedError(signal: AbortSignal, what: string): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof SheepdogError) return reason;
  return new AbortError(`${what} aborted`, { cause: reason });
}

/** `p`, unless `signal` fires first: then `abortedError(signal, what)` (the wait is left; `p` runs on). */
export function untilAborted<T>(p: Promise<T>, signal: AbortSignal, what: string): Promise<T> {
  if (signal.aborted) return Promise.reject(abortedError(signal, what));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(abortedError(signal, what));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e as Error);
      },
    );
  });
}
