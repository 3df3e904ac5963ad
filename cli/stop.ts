/**
 * How a long-running command (`serve`, `nbd serve`) learns to stop: the
 * caller's signal when it is embedded (tests), otherwise SIGINT / SIGTERM.
 */
import type { CliIO } from './spec.js';

export interface StopSignal {
  readonly signal: AbortSignal;
  /** `"SIGTERM: "` when a process signal stopped it, '' otherwise (for "sheepdog: ...stopping"). */
  readonly why: string;
  /** Remove the listeners (in a finally). */
  dispose(): void;
}

export function stopSignal(io: CliIO): StopSignal {
  const ac = new AbortController();
  let why = '';
  const onSignal = (sig: NodeJS.Signals): void => {
    why = `${sig}: `;
    ac.abort();
  };
  const outer = io.signal;
  const onOuter = (): void => ac.abort();
  if (outer) {
    if (outer.aborted) ac.abort();
    else outer.addEventListener('abort', onOuter, { once: true });
  } else {
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  }
  return {
    signal: ac.signal,
    get why() {
      return why;
    },
    dispose() {
      outer?.removeEventListener('abort', onOuter);
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}
