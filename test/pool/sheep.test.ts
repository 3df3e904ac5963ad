// The fault suite (fault-suite.ts) against the embedded sheep
// (`startMemorySheep`, testing/), using its own fault injection,
// stopNode/startNode and reordering.
import { once } from 'node:events';
import t from 'tap';
import { Op, Result } from '../../protocol/constants.js';
import { objRequest } from '../../protocol/header.js';
import { SheepdogPool } from '../../lib/transport/pool.js';
import { startMemorySheep } from '../../testing/index.js';
import { type Harness, faultSuite } from './fault-suite.js';

t.setTimeout(60_000);

t.test('fault suite on the embedded sheep', async (t) => {
  const start = startMemorySheep;
  t.test('discovery: one seed, GET_NODE_LIST finds the others', async (t) => {
    const sheep = await start({ nodes: 4, copies: 2 });
    const pool = new SheepdogPool({ nodes: [sheep.addresses[0] as string], discover: true, connectionsPerNode: 1 });
    t.teardown(async () => {
      pool.destroy();
      await sheep.close();
    });
    await pool.connect();
    t.same([...pool.nodes].sort(), [...sheep.addresses].sort());
    t.ok(pool.epoch > 0, `epoch ${pool.epoch} from the replies`);
    while (pool.stats.ready < 4) await once(pool, 'nodeUp');
    const rs = await Promise.all(
      sheep.addresses.map((a) =>
        pool.request(objRequest(Op.READ_OBJ, { oid: 1n, dataLength: 8 }), undefined, { node: a }),
      ),
    );
    t.same(
      rs.map((r) => r.node),
      [...sheep.addresses],
    );
    t.ok(rs.every((r) => r.header.result === Result.NO_OBJ || r.header.result === Result.SUCCESS));
    await pool.close();
    t.equal(pool.stats.connections, 0);
  });

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
