// An idle pool does not keep the process alive (its sockets are unref'd
// while nothing is pending), and a pending request does (sockets and the
// reconnect timer are ref'd again). Each case runs in a child process that
// must exit by itself, having printed what it settled.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { withoutTapHooks } from '../cli/helpers.js';
import { Op } from '../../protocol/constants.js';
import { FakeSheep } from './fake-sheep.js';

t.setTimeout(90_000);

const child = fileURLToPath(new URL('./fixtures/exit-child.ts', import.meta.url));

/** Run the child; resolves with its stdout once it exited by itself (rejects if killed at the timeout). */
function run(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    // Only the TypeScript loader: the child needs no tap instrumentation.
    const execArgv = process.execArgv.filter((a) => a.includes('@tapjs/typescript'));
    const [cmd, argv] = withoutTapHooks(process.execPath, [...execArgv, child, ...args], process.env);
    execFile(cmd, argv, { timeout: 30_000 }, (err, out, stderr) => {
      if (err) reject(new Error(`${err.message}\nstdout: ${out}\nstderr: ${stderr}`));
      else resolve(out);
    });
  });
}

t.test('a process with an idle open pool exits, after its requests settled', async (t) => {
  let n = 0;
  const fake = await FakeSheep.start({
    onRequest: (r) => {
      if (r.opcode === Op.READ_OBJ && ++n === 2) setTimeout(() => r.auto(), 200);
      else r.auto();
    },
  });
  t.teardown(() => fake.close());
  const out = await run(['idle', fake.address]);
  t.same(out.trim().split('\n'), ['first', 'second'], 'both settled, then the process exited');
});

t.test('a request waiting on a reconnect keeps the process alive until it settles', async (t) => {
  const dead = await FakeSheep.start();
  const addr = dead.address;
  await dead.close();
  const out = await run(['reconnect', addr]);
  t.same(out.trim().split('\n'), ['connect failed', 'settled ConnectionError']);
});
