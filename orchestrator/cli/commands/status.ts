/**
 * `stoker status [RUN] [--json] [--limit N]`: the runs, newest first; or one run (an id,
 * an id prefix, or a name: the newest run of that name) with its stages and tasks.
 * JSON schemas: RunView (orchestrator/views.ts) and {runs: [RunSummary]}. `-w` keeps
 * the list on screen, read again every 2 s. Through the HTTP API when STOKER_URL is set
 * (remote.ts), with the same output.
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
  watch?: boolean;
}

/** `status -w`: how often the list is read again. */
const WATCH_MS = 2000;

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
    const list = async () =>
      (await api.get<{ runs: RunSummary[] }>(`/api/v1/runs?limit=${o.limit}`)).runs;
    return o.watch ? watchList(list) : showRuns(await list(), o);
  }
  const client = await connectClient(ctx);
  try {
    if (query) {
      const runId = await client.store.resolveRunId(query);
      return showRun(await buildRunView(client.store, client.redis, ctx.keys, runId), o);
    }
    const list = async () => summarize(client.store, await client.store.listRuns(o.limit));
    if (o.watch) await watchList(list);
    else showRuns(await list(), o);
  } finally {
    await client.close();
  }
}

/**
 * The list again every WATCH_MS until Ctrl-C: redrawn on a terminal; elsewhere printed
 * when a run's phase or stage count changed (not for the ages alone).
 */
async function watchList(list: () => Promise<RunSummary[]>): Promise<void> {
  const tty = Boolean(process.stdout.isTTY);
  let last = '';
  for (;;) {
    const runs = await list();
    const key = JSON.stringify(runs.map((r) => [r.id, r.phase, r.stages, r.message]));
    if (tty) process.stdout.write(`\x1b[H\x1b[2J${new Date().toISOString()}  stoker status -w\n\n`);
    if (tty || key !== last) showRuns(runs, {});
    last = key;
    await new Promise((r) => setTimeout(r, WATCH_MS));
  }
}

const enc = encodeURIComponent;

function showRun(view: RunView, o: StatusOptions): void {
  if (o.json) printJson(view);
  else print(describeRun(view));
}

function showRuns(runs: RunSummary[], o: { json?: boolean }): void {
  if (o.json) return printJson({ runs });
  if (runs.length === 0) return print('no runs yet: stoker submit FILE');
  const rows = [['RUN', 'PHASE', 'STAGES', 'AGE', 'MESSAGE']];
  for (const r of runs) {
    rows.push([
      r.id,
      r.phase,
      `${r.stages.succeeded}/${r.stages.total}`,
      age(r.createdAt),
      // A run whose next work waits in a queue says where it stands and when it starts.
      r.waiting ? `waiting: ${r.waiting}` : (r.message ?? ''),
    ]);
  }
  print(table(rows));
}
