// NODE_DEBUG=sheepdog logs through the diagnostics channels (util.debuglog);
// without it nothing subscribes, so publishing costs nothing.
import { execFile } from 'node:child_process';
import diagnostics_channel from 'node:diagnostics_channel';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { withoutTapHooks } from '../cli/helpers.js';
import '../../lib/util/diagnostics.js';

t.setTimeout(60_000);

const child = fileURLToPath(new URL('./fixtures/debuglog-child.ts', import.meta.url));

function run(env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    // Only the TypeScript loader: the child needs no tap instrumentation.
    const args = process.execArgv.filter((a) => a.includes('@tapjs/typescript'));
    const [cmd, argv] = withoutTapHooks(process.execPath, [...args, child], env);
    execFile(cmd, argv, { env, timeout: 30_000 }, (err, _out, stderr) => {
      if (err) reject(err);
      else resolve(stderr);
    });
  });
}

t.test('NODE_DEBUG=sheepdog logs connects, requests and closes', async (t) => {
  const log = await run({ ...process.env, NODE_DEBUG: 'sheepdog' });
  t.match(log, /SHEEPDOG \d+: connected to 127\.0\.0\.1:\d+/);
  t.match(log, /SHEEPDOG \d+: request READ_OBJ/);
  t.match(log, /answered by 127\.0\.0\.1:\d+, result 0x0/);
  t.match(log, /retry READ_OBJ #1 \(transient\)/);
  t.match(log, /retry READ_OBJ #1: 127\.0\.0\.1:\d+ answered AGAIN \(0x8f\)/, 'the transient result is named');
  t.match(log, /connection \d+ to 127\.0\.0\.1:\d+ closed/);
});

t.test('without NODE_DEBUG nothing subscribes', async (t) => {
  if (/\bsheepdog\b/i.test(process.env.NODE_DEBUG ?? '')) {
    t.pass('NODE_DEBUG=sheepdog is set for this run');
    return;
  }
  for (const name of ['sheepdog:connect', 'sheepdog:node:down', 'sheepdog:reply:late']) {
    t.notOk(diagnostics_channel.hasSubscribers(name), `${name} has no subscriber`);
  }
});
