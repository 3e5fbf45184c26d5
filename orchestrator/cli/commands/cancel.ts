/**
 * `stoker cancel RUN [--wait]`: queued tasks are removed, running payloads get SIGTERM,
 * nothing is retried; --wait until the run has stopped.
 */
import type { Command } from 'commander';
import { isTerminal } from '../../../common/model.js';
import { connectClient } from '../client.js';
import { makeContext } from '../context.js';
import { globals, print } from '../options.js';

export async function action(query: string, o: { wait?: boolean }, cmd: Command): Promise<void> {
  const ctx = makeContext(globals(cmd));
  const client = await connectClient(ctx);
  try {
    const runId = await client.store.resolveRunId(query);
    const run = await client.store.mustGetRun(runId);
    if (isTerminal(run.phase)) return print(`run ${runId} already ${run.phase}`);
    await client.store.requestCancel(runId);
    print(`cancel requested for ${runId}`);
    if (!o.wait) return;
    for (;;) {
      const r = await client.store.mustGetRun(runId);
      if (isTerminal(r.phase)) return print(`run ${runId}: ${r.phase}`);
      await new Promise((res) => setTimeout(res, 300));
    }
  } finally {
    await client.close();
  }
}
