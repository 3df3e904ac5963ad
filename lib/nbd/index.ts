/**
 * `sheepdog-client/nbd`: serve Sheepdog volumes over the Network Block
 * Device protocol, in-process (docs/nbd.md).
 *
 *   import { startNbdServer } from 'sheepdog-client/nbd';
 *   const server = await startNbdServer({ client, exports: ['vol'], listen: { host: '127.0.0.1', port: 10809 } });
 *   server.uri('vol');   // nbd://127.0.0.1:10809/vol
 *   await server.close();
 *
 * The pure codec is exported too, for tools and tests.
 */
export { nbdErrno, parseExportRef, startNbdServer } from './server.js';
export type { NbdAddress, NbdListen, NbdServer, NbdServerOptions, NbdTlsOptions } from './server.js';
export * as nbdProtocol from './protocol/index.js';
