/**
 * Following a run to its end, for `run`, `demo`, `submit --wait` and `watch`: live
 * progress bars on a terminal (watch.ts), a poll under --json; the final view printed;
 * the exit code of the CLI's contract (0 the run succeeded, 1 it did not).
 */
import { isTerminal } from '../../common/model.js';
import type { Keys } from '../../common/keys.js';
import type { Redis } from 'ioredis';
import type { RunStore } from '../store.js';
import { buildRunView, type RunView } from '../views.js';
import { describeRun } from './format.js';
import { print, printJson } from './options.js';
import { watchRuns } from './watch.js';

export interface Follow {
  store: RunStore;
  redis: Redis;
  keys: Keys;
  runId: string;
  json: boolean;
  signal?: AbortSignal;
}

/** The run's view once it has ended (or `signal` aborted). */
export async function followRun(f: Follow): Promise<RunView> {
  if (f.json) {
    for (;;) {
      const run = await f.store.mustGetRun(f.runId);
      if (isTerminal(run.phase) || f.signal?.aborted)
        return buildRunView(f.store, f.redis, f.keys, f.runId);
      await new Promise((r) => setTimeout(r, 300));
    }
  }
  const [view] = await watchRuns({
    runIds: [f.runId],
    view: (id) => buildRunView(f.store, f.redis, f.keys, id),
    ...(f.signal ? { signal: f.signal } : {}),
  });
  return view as RunView;
}

/** Print the final view; the exit code. */
export function finishRun(view: RunView, json: boolean): number {
  if (json) printJson(view);
  else print(describeRun(view));
  return view.phase === 'Succeeded' ? 0 : 1;
}

/** Two-stage Ctrl-C (and SIGTERM): the first calls `first`, later ones `second`. */
export function onInterrupt(first: () => void, second: () => void): () => void {
  let count = 0;
  const handler = () => {
    count++;
    if (count === 1) first();
    else second();
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
}
