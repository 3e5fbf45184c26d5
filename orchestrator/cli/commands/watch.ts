/**
 * `stoker watch RUN [RUN...]`: live progress bars until every run has ended; exit 0 if
 * every one succeeded. Through the HTTP API when STOKER_URL is set.
 */
import type { Command } from 'commander';
import { buildRunView, type RunView } from '../../views.js';
import { connectClient } from '../client.js';
import { makeContext } from '../context.js';
import { finishRun } from '../follow.js';
import { globals } from '../options.js';
import { ApiClient, remoteFrom } from '../remote.js';
import { watchRuns } from '../watch.js';

export async function action(queries: string[], _o: unknown, cmd: Command): Promise<void> {
  const ctx = makeContext(globals(cmd));
  const remote = remoteFrom(ctx.env);
  if (remote) {
    const api = new ApiClient(remote);
    const get = (q: string) => api.get<RunView>(`/api/v1/runs/${encodeURIComponent(q)}`);
    // Resolve names and prefixes once: the ids are followed.
    const ids = await Promise.all(queries.map(async (q) => (await get(q)).id));
    return finish(await watchRuns({ runIds: ids, view: get }));
  }
  const client = await connectClient(ctx);
  try {
    const ids = await Promise.all(queries.map((q) => client.store.resolveRunId(q)));
    const views = await watchRuns({
      runIds: ids,
      view: (id) => buildRunView(client.store, client.redis, ctx.keys, id),
    });
    finish(views);
  } finally {
    await client.close();
  }
}

function finish(views: RunView[]): void {
  const codes = views.map((v) => finishRun(v, false));
  process.exitCode = codes.every((c) => c === 0) ? 0 : 1;
}
