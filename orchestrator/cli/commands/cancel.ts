/**
 * `stoker cancel RUN [--wait]`: queued tasks are removed, running payloads get SIGTERM,
 * nothing is retried; --wait until the run has stopped. Through the HTTP API when
 * STOKER_URL is set (the admin token).
 */
import type { Command } from 'commander';
import { isTerminal, type Phase } from '../../../common/model.js';
import type { RunView } from '../../views.js';
import { connectClient } from '../client.js';
import { makeContext } from '../context.js';
import { globals, print } from '../options.js';
import { ApiClient, remoteFrom } from '../remote.js';

interface Target {
  /** The run's id and phase now. */
  read(): Promise<{ id: string; phase: Phase }>;
  cancel(id: string): Promise<void>;
  close(): Promise<void>;
}

export async function action(query: string, o: { wait?: boolean }, cmd: Command): Promise<void> {
  const ctx = makeContext(globals(cmd));
  const remote = remoteFrom(ctx.env);
  let target: Target;
  if (remote) {
    const api = new ApiClient(remote);
    const path = `/api/v1/runs/${encodeURIComponent(query)}`;
    target = {
      read: () => api.get<RunView>(path),
      cancel: async (id) => {
        await api.post(`/api/v1/runs/${encodeURIComponent(id)}/cancel`);
      },
      close: async () => undefined,
    };
  } else {
    const client = await connectClient(ctx);
    const runId = await client.store.resolveRunId(query).catch(async (err: unknown) => {
      await client.close();
      throw err;
    });
    target = {
      read: () => client.store.mustGetRun(runId),
      cancel: (id) => client.store.requestCancel(id),
      close: () => client.close(),
    };
  }
  try {
    const run = await target.read();
    if (isTerminal(run.phase)) return print(`run ${run.id} already ${run.phase}`);
    await target.cancel(run.id);
    print(`cancel requested for ${run.id}`);
    if (!o.wait) return;
    for (;;) {
      const r = await target.read();
      if (isTerminal(r.phase)) return print(`run ${r.id}: ${r.phase}`);
      await new Promise((res) => setTimeout(res, 300));
    }
  } finally {
    await target.close();
  }
}
