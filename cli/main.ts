#!/usr/bin/env node
/**
 * The `sheepdog` executable (package.json "bin"). Everything is in run.ts;
 * this file only connects it to the process: argv, the exit code, and a
 * reader that went away (`sheepdog vdi read x | head`), which is not an error.
 */
import { runCli } from './run.js';

process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});

/** Exit once stdout and stderr have flushed what was written (a pipe may still be draining). */
function exit(code: number): void {
  process.exitCode = code;
  process.stdout.write('', () => {
    process.stderr.write('', () => process.exit(code));
  });
}

runCli(process.argv.slice(2)).then(exit, (e: unknown) => {
  process.stderr.write(`sheepdog: internal error: ${(e as Error)?.stack ?? String(e)}\n`);
  exit(1);
});
