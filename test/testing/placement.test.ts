// Object placement (protocol/placement.ts) against sheep 1.0.1's own ring:
// placement-oracle.json was computed by sheep's include/sheep.h
// (nodes_to_vnodes, oid_to_nodes) compiled against its v1.0.1 headers, and,
// when a real cluster's `dog vdi object location` outputs are recorded in
// test/fixtures/dog-outputs, against those too.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import {
  buildRing,
  effectiveCopies,
  oidToNodes,
  type PlacementNode,
  sdHashOid,
  vidToVdiOid,
} from '../../protocol/index.js';
import { formatAddress } from '../../lib/util/address.js';

interface OracleSet {
  copies: number;
  nodes: { addr: string; port: number; zone: number; nrVnodes: number }[];
  placements: { oid: string; nodes: string[] }[];
}
const oracle = JSON.parse(readFileSync(new URL('./placement-oracle.json', import.meta.url), 'utf8')) as {
  sets: OracleSet[];
};

/** dog's addr_to_str: "a.b.c.d:port", IPv6 unbracketed. */
function dogAddr(n: PlacementNode): string {
  return `${n.nid.addr}:${n.nid.port}`;
}

t.test('placement equals sheep 1.0.1 oid_to_nodes for every recorded node set', async (t) => {
  for (const set of oracle.sets) {
    const nodes: PlacementNode[] = set.nodes.map((n) => ({
      nid: { addr: n.addr, port: n.port },
      nrVnodes: n.nrVnodes,
      zone: n.zone,
    }));
    const ring = buildRing(nodes);
    t.equal(ring.vnodes.length, 128 * nodes.length);
    for (const p of set.placements) {
      const got = oidToNodes(ring, BigInt(`0x${p.oid}`), set.copies).map((i) => dogAddr(nodes[i] as PlacementNode));
      t.same(got, p.nodes, `${p.oid} on ${set.nodes.length} nodes, ${set.copies} copies`);
    }
  }
});

t.test('copies land in distinct zones, capped at the zones there are', async (t) => {
  const nodes: PlacementNode[] = [0, 0, 1, 1, 2, 3].map((zone, i) => ({
    nid: { addr: '192.168.0.' + (i + 1), port: 7000 },
    nrVnodes: 128,
    zone,
  }));
  const ring = buildRing(nodes);
  t.equal(ring.nrZones, 4);
  t.equal(effectiveCopies(ring, 6), 4);
  for (let k = 0; k < 200; k++) {
    const oid = (BigInt(k * 7919 + 1) << 32n) | BigInt(k);
    const at = oidToNodes(ring, oid, 6);
    t.equal(at.length, 4);
    t.equal(new Set(at.map((i) => nodes[i]?.zone)).size, 4);
  }
  // a gateway-only node (no vnodes) holds nothing and adds no zone
  const gw = buildRing([...nodes.slice(0, 2), { nid: { addr: '192.168.0.9', port: 7000 }, nrVnodes: 0, zone: 9 }]);
  t.equal(gw.nrZones, 1);
  t.same(oidToNodes(gw, 1n, 3).length, 1);
  t.same(oidToNodes(buildRing([]), 1n, 3), []);
  t.throws(() => oidToNodes(ring, 1n, 1000));
  t.equal(typeof sdHashOid(0n), 'bigint');
});

// `dog vdi object location` outputs recorded from a real cluster (nodes 127.0.0.1:7000+i in zone i,
// copies 2; some recorded with a node down): "Looking for the object 0x..." (or "the inode object
// 0x<vid>"), a line per node of the ring saying whether it has the object, then "According to
// sheepdog algorithm, the object should be located at:" and the nodes.
const dogDir = new URL('../fixtures/dog-outputs/', import.meta.url);
const dogFiles = existsSync(dogDir) ? readdirSync(dogDir).filter((f) => f.endsWith('.txt')) : [];
const entryRe =
  /Looking for the (inode )?object 0x([0-9a-f]+)[^\n]*\n\n((?:\S+ (?:has|doesn't have) the object\n)+)\nAccording to sheepdog algorithm, the object should be located at:\n([^\n]+)/g;
t.test(
  'placement equals what a real dog prints',
  { skip: dogFiles.length === 0 && 'no recorded dog outputs' },
  async (t) => {
    let checked = 0;
    for (const f of dogFiles) {
      const text = readFileSync(join(dogDir.pathname, f), 'utf8');
      for (const m of text.matchAll(entryRe)) {
        const id = BigInt(`0x${m[2] as string}`);
        const oid = m[1] ? vidToVdiOid(Number(id)) : id;
        const nodes: PlacementNode[] = (m[3] as string)
          .trim()
          .split('\n')
          .map((l) => {
            const [addr, port] = (l.split(' ')[0] as string).split(':');
            return { nid: { addr: addr as string, port: Number(port) }, nrVnodes: 128, zone: Number(port) - 7000 };
          });
        const expected = (m[4] as string).trim().split(/\s+/);
        const got = oidToNodes(buildRing(nodes), oid, expected.length).map((i) => {
          const n = nodes[i] as PlacementNode;
          return formatAddress(n.nid.addr, n.nid.port);
        });
        t.same(got, expected, `${f}: ${oid.toString(16)} on ${nodes.length} nodes`);
        checked++;
      }
    }
    t.ok(checked > 0, `${checked} recorded placements checked`);
  },
);
