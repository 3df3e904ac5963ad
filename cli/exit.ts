/**
 * Exit codes of the `sheepdog` CLI and the one-line error messages. Unlike
 * `dog`, which exits 0 when it cannot connect, every failure is non-zero, and
 * the class of failure is in the code (docs/cli.md, "Exit codes"). Codes 1-4
 * and 64 match dog's EXIT_FAILURE, EXIT_SYSFAIL, EXIT_FULL, EXIT_MISSING and
 * EXIT_USAGE.
 */
import { Result, resultMessage } from '../protocol/constants.js';
import {
  AbortError,
  ClusterNotReadyError,
  ConnectionError,
  InvalidArgumentError,
  PoolClosedError,
  SheepdogError,
  SheepdogResponseError,
  TimeoutError,
} from '../lib/errors.js';

export const ExitCode = {
  /** Success. */
  OK: 0,
  /** Any other failure (EIO, a lock held elsewhere, a local file error...). */
  FAILURE: 1,
  /** The cluster cannot be reached or is not usable: connection refused, timeout, not formatted, shutting down. */
  UNAVAILABLE: 2,
  /** No space left in the cluster, or no VDI id left. */
  FULL: 3,
  /** The VDI, snapshot, attribute or object does not exist. */
  NOT_FOUND: 4,
  /** The VDI, snapshot tag or attribute exists already. */
  EXISTS: 5,
  /** Bad command line or invalid argument (bad size, name too long, shrinking a VDI...). */
  USAGE: 64,
  /** Interrupted (SIGINT) during a data transfer. */
  INTERRUPTED: 130,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

/** A command-line mistake: the message, then a hint to `--help`. */
export class UsageError extends Error {
  readonly help: string | undefined;
  constructor(message: string, help?: string) {
    super(message);
    this.name = 'UsageError';
    this.help = help;
  }
}

/** A failure with a chosen exit code and message (local files, verification). */
export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode: number = ExitCode.FAILURE, options?: ErrorOptions) {
    super(message, options);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}

const NOT_FOUND = new Set<number>([Result.NO_VDI, Result.NO_TAG, Result.NO_OBJ, Result.NO_BASE_VDI, Result.NOT_FOUND]);
const EXISTS = new Set<number>([Result.VDI_EXIST, Result.OID_EXIST]);
const FULL = new Set<number>([Result.NO_SPACE, Result.FULL_VDI]);
const UNAVAILABLE = new Set<number>([
  Result.WAIT_FOR_FORMAT,
  Result.WAIT_FOR_JOIN,
  Result.NOT_FORMATTED,
  Result.SHUTDOWN,
  Result.KILLED,
  Result.HALT,
  Result.STARTUP,
  Result.JOIN_FAILED,
]);
const USAGE = new Set<number>([Result.INVALID_PARMS]);

/** The exit code for an error thrown by a command. */
export function exitCodeFor(e: unknown): number {
  if (e instanceof UsageError) return ExitCode.USAGE;
  if (e instanceof CliError) return e.exitCode;
  if (e instanceof SheepdogResponseError) {
    if (NOT_FOUND.has(e.result)) return ExitCode.NOT_FOUND;
    if (EXISTS.has(e.result)) return ExitCode.EXISTS;
    if (FULL.has(e.result)) return ExitCode.FULL;
    if (UNAVAILABLE.has(e.result)) return ExitCode.UNAVAILABLE;
    if (USAGE.has(e.result)) return ExitCode.USAGE;
    return ExitCode.FAILURE;
  }
  if (e instanceof ClusterNotReadyError) return ExitCode.UNAVAILABLE;
  if (e instanceof ConnectionError || e instanceof TimeoutError || e instanceof PoolClosedError)
    return ExitCode.UNAVAILABLE;
  if (e instanceof InvalidArgumentError) return ExitCode.USAGE;
  if (e instanceof AbortError) return ExitCode.INTERRUPTED;
  if (e instanceof SheepdogError) return ExitCode.FAILURE;
  const code = (e as { code?: unknown } | null)?.code;
  if (code === 'ENOENT') return ExitCode.NOT_FOUND;
  if (code === 'EEXIST') return ExitCode.EXISTS;
  if (code === 'ENOSPC') return ExitCode.FULL;
  if (code === 'ABORT_ERR') return ExitCode.INTERRUPTED;
  return ExitCode.FAILURE;
}

/**
 * The error part of `sheepdog: <command>: <error>`. A sheep result reads as
 * sheep prints it, with its symbolic name: "No VDI found (NO_VDI)". The
 * client's own context (which VDI, which snapshot) is kept when it adds
 * something the command line does not already say.
 */
export function errorText(e: unknown, gateways: readonly string[] = []): string {
  if (e instanceof SheepdogResponseError) {
    const std = `${resultMessage(e.result)} (${e.resultName})`;
    if (e.message.endsWith(`: ${std}`) || e.message === std) {
      const ctx = e.message.slice(0, -std.length).replace(/: $/, '');
      // The client's generic contexts ("VDI x", "create VDI x") repeat the command line.
      if (ctx === '' || /^((create|delete|snapshot|rollback) )?VDI [^:]*$/.test(ctx)) return std;
      return `${ctx}: ${std}`;
    }
    return `${e.message} (${e.resultName})`;
  }
  if (e instanceof ConnectionError && (e.reason === 'no-node' || (e.reason === 'connect' && !e.sent))) {
    // The pool names every node and its error; when they all failed alike, say it once.
    const codes = [...new Set(e.message.match(/\bE[A-Z]{3,}\b|timed out/g) ?? [])];
    if (gateways.length > 0 && codes.length === 1)
      return `cannot reach the cluster at ${gateways.join(', ')} (${codes[0]})`;
    return `cannot reach the cluster: ${e.message}`;
  }
  if (e instanceof Error) {
    let msg = e.message || e.name;
    const code = (e as { code?: unknown }).code;
    if (!(e instanceof SheepdogError) && typeof code === 'string' && !msg.includes(code)) msg += ` (${code})`;
    return msg;
  }
  return String(e);
}
