// The fault suite (fault-suite.ts) against the embedded sheep
// (`startMemorySheep`, lib/sheep/), using its own fault injection,
// stopNode/startNode and reordering. Skipped while lib/sheep/index.ts does
// not export a working startMemorySheep.
import { existsSync } from 'node:fs';
import t from 'tap';
import type { MemorySheep, MemorySheepOptions } from '../../lib/sheep/types.js';
import { type Harness, faultSuite } from './fault-suite.js';

t.setTimeout(60_000);

type Start = (o?: MemorySheepOptions) => Promise<MemorySheep>;

async function loadSheep(): Promise<Start | undefined> {
  const url = new URL('../../lib/sheep/index.ts', import.meta.url);
  if (!existsSync(url)) return undefined;
  // A computed specifier: the module may not exist yet when this compiles.
  const spec = '../../lib/sheep/index.js';
  const mod = (await import(spec)) as { startMemorySheep?: Start };
  return typeof mod.startMemorySheep === 'function' ? mod.startMemorySheep : undefined;
}

t.test('fault suite on the embedded sheep', async (t) => {
  const start = await loadSheep().catch(() => undefined);
  if (start === undefined) {
    t.test('embedded sheep', { skip: 'lib/sheep/index.ts does not export startMemorySheep yet' }, () => {});
    return;
  }
  faultSuite(t, async (): Promise<Harness> => {
    const sheep = await start({ nodes: 3, copies: 2 });
    return {
      addresses: sheep.addresses,
      inject: (i, f) => sheep.inject(i, f),
      clearFaults: (i) => sheep.clearFaults(i),
      stopNode: (i) => sheep.stopNode(i),
      startNode: (i) => sheep.startNode(i),
      setReorder: (on) => sheep.setReorder(on),
      connections: () => sheep.stats.connections,
      close: () => sheep.close(),
    };
  });
});
