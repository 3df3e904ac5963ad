/** The shape of a CLI command, shared by the dispatcher (run.ts) and the command table (commands/). */
import type { Readable, Writable } from 'node:stream';
import type { SheepdogClient } from '../lib/client/client.js';

/** Where a run of the CLI reads and writes; the process's streams by default. */
export interface CliIO {
  stdin: Readable & { isTTY?: boolean };
  stdout: Writable & { isTTY?: boolean };
  stderr: Writable & { isTTY?: boolean; columns?: number };
  env: Record<string, string | undefined>;
  /** `serve` stops when this fires (default: SIGINT / SIGTERM of the process). */
  signal?: AbortSignal;
  /** `serve` calls this once its nodes listen (tests). */
  onListening?: (addresses: readonly string[]) => void;
}

export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  /** Placeholder in the help text, e.g. "N". */
  arg?: string;
  help: string;
  multiple?: boolean;
}

export type OptionValues = Record<string, string | boolean | (string | boolean)[] | undefined>;

export interface Context {
  io: CliIO;
  /** Gateways from -a / SHEEPDOG_NODES / the default. */
  nodes: string[];
  json: boolean;
  /** The client (made on first use, closed after the command). */
  client(): SheepdogClient;
  out(text: string): void;
  /** A line on stderr (informational, not an error). */
  note(text: string): void;
}

export interface CommandSpec {
  /** Command words, e.g. ['vdi', 'create']. */
  path: string[];
  /** Positional synopsis, e.g. 'NAME SIZE'. */
  args: string;
  summary: string;
  /** Longer description (help). */
  description?: string;
  options?: Record<string, OptionSpec>;
  /** Number of positionals accepted. */
  min: number;
  max: number;
  /** Accepts --json. */
  json?: boolean;
  /** Needs no cluster connection (no -a / --timeout in its help). */
  local?: boolean;
  /** Takes its arguments verbatim (no option parsing): `bench`. */
  raw?: boolean;
  examples?: string[];
  /** Resolves with the exit code (default 0). */
  run(ctx: Context, pos: string[], opts: OptionValues): Promise<number | undefined>;
}

/** The string value of an option (the last, if given several times). */
export function str(opts: OptionValues, name: string): string | undefined {
  const v = opts[name];
  if (Array.isArray(v)) {
    const last = v.at(-1);
    return typeof last === 'string' ? last : undefined;
  }
  return typeof v === 'string' ? v : undefined;
}

export function bool(opts: OptionValues, name: string): boolean {
  return opts[name] === true;
}
