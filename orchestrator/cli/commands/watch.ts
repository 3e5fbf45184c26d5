/** `stoker watch RUN`: live progress bars until the run ends; exit 0 if it succeeded. */
import type { Command } from 'commander';
import { connectClient } from '../client.js';
import { makeContext } from '../context.js';
import { finishRun } from '../follow.js';
import { globals } from '../options.js';
import { notRemote, remoteFrom } from '../remote.js';
import { watchRun } from '../watch.js';

export async function action(query: string, _o: unknown, cmd: Command): Promise<void> {
  const ctx = makeContext(globals(cmd));
  if (remoteFrom(ctx.env)) notRemote('watch');
  const client = await connectClient(ctx);
  try {
    const runId = await client.store.resolveRunId(query);
    const view = await watchRun({
      store: client.store,
      redis: client.redis,
      keys: ctx.keys,
      runId,
    });
    process.exitCode = finishRun(view, false);
  } finally {
    await client.close();
  }
}
