/** `sheepdog serve`: the embedded sheep cluster in the foreground, until Ctrl-C / SIGTERM. */
import { serveMemorySheep } from '../../testing/serve.js';
import type { MemorySheepOptions } from '../../testing/types.js';
import { parseSize } from '../../lib/client/names.js';
import { UsageError } from '../exit.js';
import { toJson } from '../format.js';
import { type CommandSpec, bool, str } from '../spec.js';
import { stopSignal } from '../stop.js';

function num(v: string | undefined, name: string, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) {
    throw new UsageError(`--${name} must be a whole number in ${min}..${max}, got ${JSON.stringify(v)}`);
  }
  return Number(v);
}

export const serveCommand: CommandSpec = {
  path: ['serve'],
  args: '',
  summary: 'run an embedded sheep cluster in the foreground (Ctrl-C stops it)',
  description:
    'Node i listens on HOST:PORT+i (PORT 0: an ephemeral port each). Data lives in memory unless --dir is given. ' +
    'The addresses are printed on stdout once every node listens (--json: as a JSON object).',
  options: {
    nodes: { type: 'string', short: 'n', arg: 'N', help: 'number of nodes (default 3)' },
    port: { type: 'string', short: 'p', arg: 'P', help: 'port of node 0 (default 7000)' },
    host: { type: 'string', arg: 'HOST', help: 'address to listen on (default 127.0.0.1)' },
    copies: { type: 'string', short: 'c', arg: 'N', help: 'copies the cluster is formatted with (default 3)' },
    lock: { type: 'boolean', short: 'l', help: 'format with VDI locking on (dog cluster format -l)' },
    'block-size-shift': { type: 'string', short: 'z', arg: 'N', help: 'default object size 2^N (default 22)' },
    dir: { type: 'string', short: 'd', arg: 'DIR', help: 'keep cluster state and objects in DIR' },
    unformatted: { type: 'boolean', help: 'start unformatted (answers WAIT_FOR_FORMAT)' },
    memory: {
      type: 'string',
      short: 'm',
      arg: 'SIZE',
      help: 'object data kept before NO_SPACE, e.g. 512M, 16G (default 4G); freed again by deletes',
    },
  },
  min: 0,
  max: 0,
  json: true,
  local: true,
  examples: [
    'sheepdog serve',
    'sheepdog serve --nodes 5 --port 7100 --copies 2 --dir /var/tmp/sheep',
    'sheepdog serve --memory 16G',
  ],
  async run(ctx, _pos, opts) {
    const o: MemorySheepOptions = {
      nodes: num(str(opts, 'nodes'), 'nodes', 1, 64) ?? 3,
      port: num(str(opts, 'port'), 'port', 0, 65535) ?? 7000,
    };
    const host = str(opts, 'host');
    if (host !== undefined) o.host = host;
    const copies = num(str(opts, 'copies'), 'copies', 1, 31);
    if (copies !== undefined) o.copies = copies;
    const bss = num(str(opts, 'block-size-shift'), 'block-size-shift', 20, 31);
    if (bss !== undefined) o.blockSizeShift = bss;
    const dir = str(opts, 'dir');
    if (dir !== undefined) o.dir = dir;
    if (bool(opts, 'lock')) o.lock = true;
    if (bool(opts, 'unformatted')) o.unformatted = true;
    const mem = str(opts, 'memory');
    if (mem !== undefined) {
      o.maxMemory = parseSize(mem, '--memory');
      if (o.maxMemory < 2 ** 20) throw new UsageError(`--memory must be at least 1M, got ${JSON.stringify(mem)}`);
    }
    if (o.port !== 0 && (o.port ?? 0) + (o.nodes ?? 3) - 1 > 65535)
      throw new UsageError('--port + --nodes passes port 65535');

    const stop = stopSignal(ctx.io);
    stop.signal.addEventListener('abort', () => ctx.note(`sheepdog: ${stop.why}stopping`), { once: true });
    try {
      await serveMemorySheep(o, {
        signal: stop.signal,
        onListening: (list) => {
          const addresses = [...list];
          if (ctx.json) ctx.out(toJson({ addresses, copies: o.copies ?? 3, lock: o.lock ?? false }));
          else ctx.out(`${addresses.join('\n')}\n`);
          ctx.note(
            `sheepdog: serving ${addresses.length} node${addresses.length === 1 ? '' : 's'}` +
              `${o.unformatted ? ' (unformatted)' : ''}; try: sheepdog -a ${addresses.join(',')} cluster info; Ctrl-C stops`,
          );
          ctx.io.onListening?.(addresses);
        },
      });
    } finally {
      stop.dispose();
    }
    return 0;
  },
};
