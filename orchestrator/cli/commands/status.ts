/**
 * `stoker status [RUN] [--json] [--limit N]`: the runs, newest first; or one run (an id,
 * an id prefix, or a name: the newest run of that name) with its stages and tasks.
 * JSON schemas: RunView (orchestrator/views.ts) and {runs: [RunSummary]}. Through the
 * HTTP API when STOKER_URL is set (remote.ts), with the same output.
 */
import type { Command } from 'commander';
import { table } from '../../../common/table.js';
import { buildRunView, summarize, type RunSummary, type RunView } from '../../views.js';
import { connectClient } from '../client.js';
import { makeContext } from '../context.js';
import { age, describeRun } from '../format.js';
import { globals, print, printJson } from '../options.js';
import { ApiClient, remoteFrom } from '../remote.js';

export interface StatusOptions {
  json?: boolean;
  limit: number;
}

export async function action(
  query: string | undefined,
  o: StatusOptions,
  cmd: Command,
): Promise<void> {
  const ctx = makeContext(globals(cmd));
  const remote = remoteFrom(ctx.env);
  if (remote) {
    const api = new ApiClient(remote);
    if (query) return showRun(await api.get<RunView>(`/api/v1/runs/${enc(query)}`), o);
    const { runs } = await api.get<{ runs: RunSummary[] }>(`/api/v1/runs?limit=${o.limit}`);
    return showRuns(runs, o);
  }
  const client = await connectClient(ctx);
  try {
    if (query) {
      const runId = await client.store.resolveRunId(query);
      return showRun(await buildRunView(client.store, client.redis, ctx.keys, runId), o);
    }
    showRuns(await summarize(client.store, await client.store.listRuns(o.limit)), o);
  } finally {
    await client.close();
  }
}

const enc = encodeURIComponent;

function showRun(view: RunView, o: StatusOptions): void {
  if (o.json) printJson(view);
  else print(describeRun(view));
}

function showRuns(runs: RunSummary[], o: StatusOptions): void {
  if (o.json) return printJson({ runs });
  if (runs.length === 0) return print('no runs yet: stoker submit FILE');
  const rows = [['RUN', 'PHASE', 'STAGES', 'AGE', 'MESSAGE']];
  for (const r of runs) {
    rows.push([
      r.id,
      r.phase,
      `${r.stages.succeeded}/${r.stages.total}`,
      age(r.createdAt),
      r.message ?? '',
    ]);
  }
  print(table(rows));
}
