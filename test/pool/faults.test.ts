// The fault suite (fault-suite.ts) against the scripted fake sheep, which
// emulates every fault the embedded sheep can inject.
import t from 'tap';
import { FakeSheep } from './fake-sheep.js';
import { type Harness, faultSuite } from './fault-suite.js';

t.setTimeout(60_000);

async function fakeHarness(): Promise<Harness> {
  const nodes: FakeSheep[] = [];
  const objects = new Map<bigint, Buffer>();
  for (let i = 0; i < 3; i++) nodes.push(await FakeSheep.start({ objects }));
  const at = (i: number): FakeSheep => nodes[i] as FakeSheep;
  return {
    addresses: nodes.map((n) => n.address),
    inject: (i, f) => at(i).inject(f),
    clearFaults: (i) => {
      for (const [k, n] of nodes.entries()) if (i === undefined || i === k) n.clearFaults();
    },
    stopNode: (i) => at(i).stop(),
    startNode: (i) => at(i).start(),
    setReorder: (on) => {
      for (const n of nodes) n.reorder = on;
    },
    connections: () => nodes.reduce((s, n) => s + n.conns.size, 0),
    close: async () => {
      for (const n of nodes) await n.close();
    },
  };
}

faultSuite(t, fakeHarness);
