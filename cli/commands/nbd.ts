/** `sheepdog nbd serve`: serve VDIs and snapshots over NBD in the foreground, until Ctrl-C / SIGTERM. */
import { readFileSync } from 'node:fs';
import { NoTagError, NoVdiError } from '../../lib/errors.js';
import { type NbdListen, type NbdTlsOptions, parseExportRef, startNbdServer } from '../../lib/nbd/server.js';
import { parseAddress } from '../../lib/util/address.js';
import { UsageError } from '../exit.js';
import { toJson } from '../format.js';
import { type CommandSpec, bool, str } from '../spec.js';
import { stopSignal } from '../stop.js';

/** The default NBD port (IANA: nbd 10809). */
export const NBD_PORT = 10809;

function listenOpt(listen: string | undefined, socket: string | undefined): NbdListen {
  if (listen !== undefined && socket !== undefined) throw new UsageError('give one of --listen and --socket');
  if (socket !== undefined) {
    if (socket === '') throw new UsageError('--socket needs a path');
    return { path: socket };
  }
  if (listen === undefined) return { host: '127.0.0.1', port: NBD_PORT };
  // parseAddress refuses port 0; an ephemeral port is useful here (tests, scripts reading the URI).
  const zero = /^(.*):0$/.exec(listen);
  try {
    if (zero) return { host: parseAddress(`${zero[1] ?? ''}:1`).host, port: 0 };
    const a = parseAddress(listen, NBD_PORT);
    return { host: a.host, port: a.port };
  } catch (e) {
    throw new UsageError(`--listen must be HOST:PORT, got ${JSON.stringify(listen)}: ${(e as Error).message}`);
  }
}

/** --tls-cert, --tls-key, --tls-ca, --tls-optional: the server's TLS credentials, read from PEM files. */
function tlsOpt(
  cert: string | undefined,
  key: string | undefined,
  ca: string | undefined,
  optional: boolean,
): NbdTlsOptions | undefined {
  if (cert === undefined && key === undefined) {
    if (ca !== undefined || optional) throw new UsageError('--tls-ca and --tls-optional need --tls-cert and --tls-key');
    return undefined;
  }
  if (cert === undefined || key === undefined) throw new UsageError('give both --tls-cert and --tls-key');
  const read = (flag: string, path: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (e) {
      throw new UsageError(
        `${flag}: cannot read ${JSON.stringify(path)}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
      );
    }
  };
  return {
    cert: read('--tls-cert', cert),
    key: read('--tls-key', key),
    ...(ca === undefined ? {} : { ca: read('--tls-ca', ca) }),
    optional,
  };
}

export const nbdServe: CommandSpec = {
  path: ['nbd', 'serve'],
  args: '[NAME[@TAG]...]',
  summary: 'serve VDIs and snapshots over NBD in the foreground (Ctrl-C stops it)',
  description:
    'Each NAME is a VDI (read-write unless --read-only), NAME@TAG or NAME@ID a snapshot (always read-only); ' +
    'the first is also the default export (empty name). --all serves any VDI or snapshot, looked up when a ' +
    `client connects. Listens on 127.0.0.1:${NBD_PORT} unless --listen or --socket is given (port 0: an ` +
    'ephemeral port). The nbd:// URI of every export is printed on stdout once the server listens ' +
    '(with --all, the server URI too). With --tls-cert and --tls-key, clients start TLS (NBD_OPT_STARTTLS) ' +
    'before anything else (the URIs are nbds://), unless --tls-optional; with --tls-ca, they must present a ' +
    'certificate that CA issued. SIGINT / SIGTERM answer the requests in flight, close, and exit 0.',
  options: {
    listen: { type: 'string', arg: 'HOST:PORT', help: `address to listen on (default 127.0.0.1:${NBD_PORT})` },
    socket: { type: 'string', arg: 'PATH', help: 'listen on a Unix socket instead' },
    'read-only': { type: 'boolean', short: 'r', help: 'serve every export read-only' },
    all: { type: 'boolean', help: 'serve any VDI or snapshot of the cluster (NBD_OPT_LIST lists them)' },
    'tls-cert': { type: 'string', arg: 'FILE', help: 'TLS: the server certificate (PEM)' },
    'tls-key': { type: 'string', arg: 'FILE', help: 'TLS: its private key (PEM)' },
    'tls-ca': { type: 'string', arg: 'FILE', help: 'TLS: require client certificates issued by this CA (PEM)' },
    'tls-optional': { type: 'boolean', help: 'TLS: also serve clients that do not start TLS' },
  },
  min: 0,
  max: Infinity,
  json: true,
  examples: [
    'sheepdog nbd serve vol',
    'sheepdog -a 10.0.0.1:7000 nbd serve --listen 0.0.0.0:10809 vol vol@base',
    'sheepdog nbd serve --all --read-only --socket /run/sheepdog-nbd.sock',
    'sheepdog nbd serve --tls-cert server-cert.pem --tls-key server-key.pem vol',
    'qemu-img info nbd://127.0.0.1:10809/vol',
  ],
  async run(ctx, pos, opts) {
    const all = bool(opts, 'all');
    if (pos.length === 0 && !all) throw new UsageError('give the exports (NAME or NAME@TAG) or --all');
    const listen = listenOpt(str(opts, 'listen'), str(opts, 'socket'));
    const readOnly = bool(opts, 'read-only');
    const tls = tlsOpt(str(opts, 'tls-cert'), str(opts, 'tls-key'), str(opts, 'tls-ca'), bool(opts, 'tls-optional'));
    const client = ctx.client();
    // A misspelt export fails now, not when the first client asks for it.
    for (const name of pos) {
      const ref = parseExportRef(name);
      try {
        await client.getVdi(ref.vdi, ref.snapshot === undefined ? {} : { snapshot: ref.snapshot });
      } catch (e) {
        const what = `export ${JSON.stringify(name)}`;
        if (e instanceof NoVdiError) throw new NoVdiError(what, e.node, { cause: e });
        if (e instanceof NoTagError) throw new NoTagError(what, e.node, { cause: e });
        throw e;
      }
    }
    const server = await startNbdServer({
      client,
      exports: all ? 'all' : pos,
      listen,
      readOnly,
      ...(tls === undefined ? {} : { tls }),
    });

    const stop = stopSignal(ctx.io);
    try {
      const uris = pos.map((name) => server.uri(name));
      const base = server.uri('').replace(/\/$/, '');
      if (all) uris.push(base);
      if (ctx.json) {
        ctx.out(
          toJson({
            address: server.address,
            all,
            readOnly,
            tls: tls === undefined ? false : tls.optional ? 'optional' : 'required',
            exports: pos.map((name) => ({ name, uri: server.uri(name) })),
            ...(all ? { uri: base } : {}),
          }),
        );
      } else ctx.out(`${uris.join('\n')}\n`);
      const first = uris[0] ?? base;
      // libnbd's TLS credentials: a query parameter (nbds+unix:// already has one, ?socket=).
      const tryUri = tls ? `'${first}${first.includes('?') ? '&' : '?'}tls-certificates=DIR'` : first;
      ctx.note(
        `sheepdog: serving ${all ? 'every VDI and snapshot' : `${pos.length} export${pos.length === 1 ? '' : 's'}`}` +
          ` over NBD${tls ? ' with TLS' : ''}${readOnly ? ' (read-only)' : ''}; try: nbdinfo ${tryUri}; Ctrl-C stops`,
      );
      ctx.io.onListening?.(uris);
      if (!stop.signal.aborted) await new Promise((r) => stop.signal.addEventListener('abort', r, { once: true }));
      ctx.note(
        `sheepdog: ${stop.why}stopping (${server.connections} connection${server.connections === 1 ? '' : 's'})`,
      );
    } finally {
      stop.dispose();
      await server.close();
    }
    return 0;
  },
};
