/**
 * `stoker status [RUN] [--json] [--limit N]`: the runs, newest first; or one run (an id,
 * an id prefix, or a name: the newest run of that name) with its stages and tasks.
 * JSON schemas: RunView (orchestrator/views.ts) and {runs: [RunSummary]}.
 */
import type { Command } from 'commander';
import { table } from '../../../common/table.js';
import { buildRunView, runSummary } from '../../views.js';
import { connectClient } from '../client.js';
import { makeContext } from '../context.js';
import { age, describeRun } from '../format.js';
import { globals, print, printJson } from '../options.js';

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
  const client = await connectClient(ctx);
  try {
    if (query) {
      const runId = await client.store.resolveRunId(query);
      const view = await buildRunView(client.store, client.redis, ctx.keys, runId);
      if (o.json) printJson(view);
      else print(describeRun(view));
      return;
    }
    const runs = await client.store.listRuns(o.limit);
    if (o.json) return printJson({ runs: runs.map(runSummary) });
    if (runs.length === 0) return print('no runs yet: stoker submit FILE');
    const rows = [['RUN', 'PHASE', 'STAGES', 'AGE', 'MESSAGE']];
    for (const r of runs) {
      const stages = await client.store.getStages(r.id);
      const done = Object.values(stages).filter((s) => s.phase === 'Succeeded').length;
      rows.push([
        r.id,
        r.phase,
        `${done}/${Object.keys(stages).length}`,
        age(r.createdAt),
        r.message ?? '',
      ]);
    }
    print(table(rows));
  } finally {
    await client.close();
  }
}
