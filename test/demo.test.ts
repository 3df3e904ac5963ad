// `npm start`: the demo program (dist/lib/demo.js) exits 0 and reports every step.
import { PassThrough } from 'node:stream';
import t from 'tap';
import { runDemo } from '../examples/demo.js';
import { DEMO, ensureBuilt, runNode } from './cli/helpers.js';

const STEPS = [
  'checkForSetupError',
  'createVolume',
  'copyImageToVolume',
  'createSnapshot',
  'createVolumeFromSnapshot',
  'write to the clone (COW)',
  'read back and verify',
  'extendVolume',
  'getVolumeStats',
  'initializeConnection',
  'copyVolumeToImage',
  'delete everything',
];

t.test('the demo runs as a program and exits 0', async (t) => {
  await ensureBuilt();
  const r = await runNode(DEMO, []);
  const out = r.stdout.toString();
  t.equal(r.code, 0, r.stderr || out);
  t.match(out, /embedded 3-node sheep cluster \(2 copies\) on 127\.0\.0\.1:\d+/);
  for (const s of STEPS) t.match(out, s, `reports ${s}`);
  t.match(out, /\d+\.\d ms$/m, 'with timings');
  t.match(out, /all steps passed in \d+ ms/);
  t.equal(r.stderr, '', 'nothing on stderr');
});

t.test('runDemo in-process', async (t) => {
  const out = new PassThrough();
  let text = '';
  out.on('data', (b: Buffer) => {
    text += b.toString();
  });
  t.equal(await runDemo({ out, nodes: 2, copies: 1 }), 0);
  t.match(text, /2-node sheep cluster \(1 copy\)/);
  t.match(text, /all steps passed/);
});
