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

runCli(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`sheepdog: internal error: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exitCode = 1;
  },
);
