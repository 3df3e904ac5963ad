/** `sheepdog bench`: its entry in the command table; the benchmark itself is loaded only when it runs. */
import type { CommandSpec } from '../spec.js';

export const benchCommand: CommandSpec = {
  path: ['bench'],
  args: '[ARGS...]',
  summary: 'benchmarks against a cluster (sheepdog bench --help)',
  min: 0,
  max: Number.POSITIVE_INFINITY,
  raw: true,
  local: true,
  // Loaded on demand: one-shot commands do not pay for the benchmark's modules.
  async run(ctx, args) {
    const { runBench } = await import('../bench/command.js');
    return runBench(args, { stdout: ctx.io.stdout, stderr: ctx.io.stderr, env: ctx.io.env });
  },
};
