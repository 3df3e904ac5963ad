/**
 * The `sheepdog` command line: global options, dispatch to a command, help,
 * and the mapping of errors to one stderr line and an exit code.
 * `runCli` never calls process.exit; cli/main.ts does that.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { parseAddress } from '../lib/util/address.js';
import type { ClientOptions, SheepdogClient } from '../lib/client/client.js';
import { type CommandEntry, commandTable } from './commands/index.js';
import { ExitCode, UsageError, errorText, exitCodeFor } from './exit.js';
import { escapeControls } from './format.js';
import type { CliIO, CommandSpec, Context, OptionSpec, OptionValues } from './spec.js';

export type { CliIO } from './spec.js';
export { ExitCode } from './exit.js';

const DEFAULT_NODE = '127.0.0.1:7000';
const DEFAULT_TIMEOUT = 30_000;

const GLOBAL: Record<string, OptionSpec> = {
  address: {
    type: 'string',
    short: 'a',
    arg: 'HOST:PORT[,...]',
    multiple: true,
    help: `sheep gateways (default: $SHEEPDOG_NODES, else ${DEFAULT_NODE})`,
  },
  timeout: { type: 'string', arg: 'MS', help: `request timeout in milliseconds (default ${DEFAULT_TIMEOUT})` },
  json: { type: 'boolean', help: 'JSON output (listing, info and create-like commands)' },
  help: { type: 'boolean', short: 'h', help: 'show help' },
};

/** dog's `-p PORT`: the port of `-a HOST` addresses that name none (alone: 127.0.0.1:PORT). Not on local commands (`serve -p`). */
const PORT: OptionSpec = {
  type: 'string',
  short: 'p',
  arg: 'PORT',
  help: "port for -a hosts given without one, as dog's -a HOST -p PORT (alone: 127.0.0.1:PORT)",
};

function processIO(): CliIO {
  return {
    // process.stdin builds its stream on first use (a file's pulls in fs
    // streams and fs/promises): only the commands that read stdin pay for it.
    get stdin() {
      return process.stdin;
    },
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
  };
}

let cachedVersion: string | undefined;
/** The package version, from the nearest package.json named sheepdog-client. */
export function version(): string {
  if (cachedVersion) return cachedVersion;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    try {
      const p = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (p.name === 'sheepdog-client' && p.version) return (cachedVersion = p.version);
    } catch {
      // keep looking
    }
    dir = dirname(dir);
  }
  return (cachedVersion = 'unknown');
}

// ------------------------------------------------------------------ help

function optLines(opts: Record<string, OptionSpec>): string[] {
  const rows = Object.entries(opts).map(([name, o]) => {
    const flag = `${o.short ? `-${o.short}, ` : '    '}--${name}${o.arg ? ` ${o.arg}` : ''}`;
    return [flag, o.help] as const;
  });
  const w = Math.max(...rows.map(([f]) => f.length));
  return rows.map(([f, h]) => `  ${f.padEnd(w)}  ${h}`);
}

function usageLine(c: CommandSpec): string {
  const opts = Object.entries(c.options ?? {}).map(([n, o]) => `[--${n}${o.arg ? ` ${o.arg}` : ''}]`);
  if (c.json) opts.push('[--json]');
  const glob = c.local ? '' : ' [-a HOST:PORT[,...]]';
  return `sheepdog${glob} ${c.path.join(' ')}${c.args ? ` ${c.args}` : ''}${opts.length ? ` ${opts.join(' ')}` : ''}`;
}

function commandHelp(c: CommandSpec): string {
  const out = [`Usage: ${usageLine(c)}`, '', `${c.summary[0]?.toUpperCase() ?? ''}${c.summary.slice(1)}.`];
  if (c.description) out.push('', c.description);
  const opts = { ...(c.options ?? {}) };
  if (c.json) opts['json'] = GLOBAL['json'] as OptionSpec;
  if (!c.local) {
    opts['address'] = GLOBAL['address'] as OptionSpec;
    opts['port'] = PORT;
    opts['timeout'] = GLOBAL['timeout'] as OptionSpec;
  }
  opts['help'] = GLOBAL['help'] as OptionSpec;
  out.push('', 'Options:', ...optLines(opts));
  if (c.examples?.length) out.push('', 'Examples:', ...c.examples.map((e) => `  ${e}`));
  return `${out.join('\n')}\n`;
}

function commandList(list: readonly CommandEntry[]): string[] {
  const rows = list.map((c) => [`${c.path.join(' ')}${c.args ? ` ${c.args}` : ''}`, c.summary] as const);
  const w = Math.max(...rows.map(([a]) => a.length));
  return rows.map(([a, s]) => `  ${a.padEnd(w)}  ${s}`);
}

const EXIT_HELP = [
  'Exit codes:',
  '  0 success, 1 failure, 2 cluster unreachable or not ready, 3 no space,',
  '  4 not found, 5 exists already, 64 usage error, 130 interrupted',
];

function topHelp(): string {
  return [
    'Usage: sheepdog [-a HOST:PORT[,...]] [--timeout MS] COMMAND [ARGS...] [--json]',
    '',
    'Manage a Sheepdog cluster: VDIs, snapshots, clones, data, attributes, locks.',
    'Speaks the sheep protocol itself (no dog, no qemu-img).',
    '',
    'Commands:',
    ...commandList(commandTable),
    '',
    'Global options:',
    ...optLines({ ...GLOBAL, port: PORT, version: { type: 'boolean', short: 'V', help: 'print the version' } }),
    '',
    'Sizes, offsets and lengths take K, M, G, T, P suffixes (powers of 1024).',
    'Snapshots: -s TAG|ID (all digits: an id), --tag TAG, --id ID.',
    '',
    ...EXIT_HELP,
    '',
    "Run 'sheepdog COMMAND --help' for a command's options; see docs/cli.md.",
    '',
  ].join('\n');
}

function groupHelp(prefix: string[]): string {
  const list = commandTable.filter((c) => prefix.every((w, i) => c.path[i] === w));
  return [
    `Usage: sheepdog ${prefix.join(' ')} SUBCOMMAND [ARGS...]`,
    '',
    'Subcommands:',
    ...commandList(list),
    '',
    `Run 'sheepdog ${prefix.join(' ')} SUBCOMMAND --help' for its options.`,
    '',
  ].join('\n');
}

// -------------------------------------------------------------- dispatch

/** Command words → table entry (or the group prefix they name). */
function resolve(words: string[]): { spec?: CommandEntry; used: number; group: boolean } {
  let used = 0;
  let spec: CommandEntry | undefined;
  for (;;) {
    const prefix = words.slice(0, used + 1);
    if (used >= words.length) break;
    const matches = commandTable.filter((c) => prefix.every((w, i) => c.path[i] === w));
    if (matches.length === 0) break;
    used++;
    spec = matches.find((c) => c.path.length === used);
    if (spec) break;
  }
  const group = spec === undefined && used > 0;
  return spec ? { spec, used, group } : { used, group };
}

function toParseConfig(opts: Record<string, OptionSpec>): NonNullable<ParseArgsConfig['options']> {
  const out: NonNullable<ParseArgsConfig['options']> = {};
  for (const [name, o] of Object.entries(opts)) {
    out[name] = { type: o.type, ...(o.short ? { short: o.short } : {}), ...(o.multiple ? { multiple: true } : {}) };
  }
  return out;
}

function parse(
  args: string[],
  options: Record<string, OptionSpec>,
  positionals: boolean,
  help: string,
): { values: OptionValues; positionals: string[] } {
  // "-1G", "-5": a negative number, not a short option (no option is a
  // digit). Hidden from parseArgs so the command can say what is wrong with it.
  const neg: string[] = [];
  const hide = (a: string): string => (/^-\d/.test(a) ? `\0neg${neg.push(a) - 1}` : a);
  const show = (a: string): string => {
    const m = /^\0neg(\d+)$/.exec(a);
    return m ? (neg[Number(m[1])] ?? a) : a;
  };
  try {
    const r = parseArgs({
      args: args.map(hide),
      options: toParseConfig(options),
      strict: true,
      allowPositionals: positionals,
    });
    const values: OptionValues = {};
    for (const [k, v] of Object.entries(r.values as OptionValues)) {
      values[k] =
        typeof v === 'string' ? show(v) : Array.isArray(v) ? v.map((x) => (typeof x === 'string' ? show(x) : x)) : v;
    }
    return { values, positionals: r.positionals.map(show) };
  } catch (e) {
    const msg = (e as Error).message.replace(/\0neg(\d+)/g, (_m, i: string) => neg[Number(i)] ?? '');
    throw new UsageError(msg.replace(/\. To specify a positional.*$/s, ''), help);
  }
}

function nodesFrom(values: OptionValues[], env: CliIO['env']): string[] {
  const given: string[] = [];
  let port: number | undefined;
  for (const v of values) {
    const a = v['address'];
    for (const x of Array.isArray(a) ? a : a === undefined ? [] : [a]) if (typeof x === 'string') given.push(x);
    const p = v['port'];
    const ps = Array.isArray(p) ? p.at(-1) : p;
    if (typeof ps === 'string') {
      if (!/^\d{1,5}$/.test(ps) || Number(ps) < 1 || Number(ps) > 65535)
        throw new UsageError(`--port must be 1..65535, got ${JSON.stringify(ps)}`);
      port = Number(ps);
    }
  }
  const raw = given.length
    ? given.join(',')
    : port !== undefined
      ? '127.0.0.1'
      : (env['SHEEPDOG_NODES'] ?? '').trim() || DEFAULT_NODE;
  const nodes = raw
    .split(/[\s,]+/)
    .filter((s) => s !== '')
    .map((s) => parseAddress(s, port).key);
  if (nodes.length === 0) throw new UsageError('no sheep address given');
  return nodes;
}

/**
 * Options for the client the CLI makes: fail fast when nothing answers (a
 * node is given up after its third failed connect in a row), but ride out a
 * connection that drops once during a long transfer.
 */
export function cliClientOptions(nodes: string[], timeout: number): ClientOptions {
  return {
    nodes,
    requestTimeout: timeout,
    connectTimeout: Math.min(timeout || 10_000, 10_000),
    connectionsPerNode: 1,
    reconnectStrategy: (retries: number) => (retries < 2 ? 50 * (retries + 1) : false),
  };
}

/**
 * Run the CLI with `argv` (without node and the script). Resolves with the
 * exit code; writes output and errors to `io`.
 */
export async function runCli(argv: readonly string[], io: CliIO = processIO()): Promise<number> {
  let label = 'sheepdog';
  let client: SheepdogClient | undefined;
  let gateways: string[] = [];
  let help = "Run 'sheepdog --help' for usage.";
  try {
    // Global options before the command.
    let i = 0;
    const pre: string[] = [];
    while (i < argv.length) {
      const a = argv[i] ?? '';
      if (!a.startsWith('-') || a === '-') break;
      pre.push(a);
      i++;
      if ((a === '-a' || a === '--address' || a === '--timeout' || a === '-p' || a === '--port') && i < argv.length)
        pre.push(argv[i++] ?? '');
    }
    const top = parse(
      pre,
      { ...GLOBAL, port: PORT, version: { type: 'boolean', short: 'V', help: '' } },
      false,
      help,
    ).values;
    if (top['version']) {
      io.stdout.write(`sheepdog ${version()}\n`);
      return ExitCode.OK;
    }
    let words = argv.slice(i);
    if (words[0] === 'help') {
      words = words.slice(1);
      const r = resolve(words);
      if (words.length === 0) io.stdout.write(topHelp());
      else if (r.spec) io.stdout.write(commandHelp(await r.spec.load()));
      else if (r.group && r.used === words.length) io.stdout.write(groupHelp(words.slice(0, r.used)));
      else throw new UsageError(`unknown command: ${words.join(' ')}`);
      return ExitCode.OK;
    }
    if (words.length === 0) {
      if (top['help']) {
        io.stdout.write(topHelp());
        return ExitCode.OK;
      }
      throw new UsageError('no command given', topHelp());
    }
    const r = resolve(words);
    if (!r.spec) {
      const prefix = words.slice(0, r.used);
      const wantsHelp = words.slice(r.used).some((w) => w === '--help' || w === '-h') || top['help'] === true;
      if (r.group && wantsHelp) {
        io.stdout.write(groupHelp(prefix));
        return ExitCode.OK;
      }
      if (r.group) {
        const next = words[r.used];
        throw new UsageError(
          next === undefined
            ? `${prefix.join(' ')}: missing subcommand`
            : `${prefix.join(' ')}: unknown subcommand ${JSON.stringify(next)}`,
          groupHelp(prefix),
        );
      }
      throw new UsageError(`unknown command ${JSON.stringify(words[0])}`, topHelp());
    }
    const spec = await r.spec.load();
    const rest = words.slice(r.used);
    label = `sheepdog: ${spec.path.join(' ')}`;
    help = `Run 'sheepdog ${spec.path.join(' ')} --help' for usage.`;
    if (spec.raw) {
      // Global options given before the command are passed on (`sheepdog -a X bench ...`).
      const fwd: string[] = [];
      const addr = top['address'];
      if (typeof top['port'] === 'string') for (const n of nodesFrom([top], {})) fwd.push('-a', n);
      else for (const a of Array.isArray(addr) ? addr : []) if (typeof a === 'string') fwd.push('-a', a);
      if (typeof top['timeout'] === 'string') fwd.push('--timeout', top['timeout']);
      if (top['json'] === true) fwd.push('--json');
      return (
        (await spec.run(
          makeContext(io, [], false, () => client),
          [...fwd, ...rest],
          {},
        )) ?? 0
      );
    }

    const own: Record<string, OptionSpec> = {
      ...(spec.options ?? {}),
      ...GLOBAL,
      ...(spec.local ? {} : { port: PORT }),
    };
    const { values, positionals } = parse(rest, own, true, help);
    if (values['help'] || top['help']) {
      io.stdout.write(commandHelp(spec));
      return ExitCode.OK;
    }
    if (positionals.length < spec.min || positionals.length > spec.max) {
      const n = positionals.length < spec.min ? 'missing arguments' : 'too many arguments';
      throw new UsageError(`${n}\nUsage: ${usageLine(spec)}`, help);
    }
    if (positionals[0] !== undefined) label += ` ${escapeControls(positionals[0])}`;
    const json = values['json'] === true || top['json'] === true;
    if (json && !spec.json) throw new UsageError(`${spec.path.join(' ')} has no --json output`, help);
    const tRaw = (values['timeout'] ?? top['timeout']) as string | undefined;
    if (tRaw !== undefined && !/^\d+$/.test(tRaw))
      throw new UsageError(`--timeout must be milliseconds, got ${JSON.stringify(tRaw)}`, help);
    const timeout = tRaw === undefined ? DEFAULT_TIMEOUT : Number(tRaw);
    const nodes = spec.local ? [] : nodesFrom([top, values], io.env);
    gateways = nodes;
    // The SDK is loaded only for commands that talk to a cluster (and after their arguments are checked).
    const Client = spec.local ? undefined : (await import('../lib/client/client.js')).SheepdogClient;
    const ctx = makeContext(io, nodes, json, () => {
      if (Client === undefined) return undefined;
      client ??= new Client(cliClientOptions(nodes, timeout));
      return client;
    });
    return (await spec.run(ctx, positionals, values)) ?? 0;
  } catch (e) {
    const code = exitCodeFor(e);
    if (e instanceof UsageError) {
      io.stderr.write(`${label}: ${e.message}\n${e.help?.includes('\n') ? `\n${e.help}` : `${e.help ?? help}\n`}`);
    } else {
      io.stderr.write(`${label}: ${errorText(e, gateways)}\n`);
    }
    return code;
  } finally {
    if (client) await client.close().catch(() => {});
  }
}

function makeContext(io: CliIO, nodes: string[], json: boolean, getClient: () => SheepdogClient | undefined): Context {
  return {
    io,
    nodes,
    json,
    client: () => {
      const c = getClient();
      if (!c) throw new UsageError('this command does not talk to a cluster');
      return c;
    },
    out: (text) => {
      io.stdout.write(text);
    },
    note: (text) => {
      io.stderr.write(`${text}\n`);
    },
  };
}
