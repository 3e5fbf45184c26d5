/**
 * `stoker resume RUN [--wait] [--json]`: run a run that ended Failed or Cancelled again
 * from where it stopped (orchestrator/resume.ts): its succeeded stages are kept, the
 * others run again, a dispatched task from its last checkpoint (RESUME_FROM), a pulled
 * stage's shards that did not succeed. --wait follows the resumed run to its end and
 * exits with its result (0 Succeeded, 1 otherwise).
 *
 * A run that has not ended Failed or Cancelled, or one already being resumed, is refused
 * with exit 1 and changes nothing. Through the HTTP API when STOKER_URL is set (the admin
 * token; the server records the resume as by `api:admin`); locally by `cli:<user>`.
 */
import type { Command } from 'commander';
import { isTerminal } from '../../../common/model.js';
import { controllerAlive } from '../../leader.js';
import { localRequester, requestResume, type ResumeAccepted } from '../../resume.js';
import { buildRunView, type RunView } from '../../views.js';
import { connectClient } from '../client.js';
import { makeContext } from '../context.js';
import { finishRun } from '../follow.js';
import { globals, print, printJson } from '../options.js';
import { ApiClient, remoteFrom } from '../remote.js';

interface Target {
  resume(): Promise<ResumeAccepted>;
  view(id: string): Promise<RunView>;
  close(): Promise<void>;
}

export async function action(
  query: string,
  o: { wait?: boolean; json?: boolean },
  cmd: Command,
): Promise<void> {
  const target = await targetFor(query, cmd);
  try {
    const accepted = await target.resume();
    if (!o.wait) {
      if (o.json) printJson(accepted);
      else print(`resume requested for ${accepted.id} (it was ${accepted.from})`);
      return;
    }
    if (!o.json) process.stderr.write(`resume requested for ${accepted.id}; waiting for it\n`);
    process.exitCode = finishRun(
      await waitForEnd(target, accepted, o.json ?? false),
      o.json ?? false,
    );
  } finally {
    await target.close();
  }
}

async function targetFor(query: string, cmd: Command): Promise<Target> {
  const ctx = makeContext(globals(cmd));
  const remote = remoteFrom(ctx.env);
  if (remote) {
    const api = new ApiClient(remote);
    return {
      resume: () => api.post<ResumeAccepted>(`/api/v1/runs/${encodeURIComponent(query)}/resume`),
      view: (id) => api.get<RunView>(`/api/v1/runs/${encodeURIComponent(id)}`),
      close: async () => undefined,
    };
  }
  const client = await connectClient(ctx);
  return {
    async resume() {
      const runId = await client.store.resolveRunId(query);
      if (!(await controllerAlive(client.redis, ctx.keys))) {
        process.stderr.write(
          'warning: no stoker controller is alive on this Redis; the run resumes when one starts (stoker up)\n',
        );
      }
      return requestResume(client.redis, ctx.keys, runId, localRequester());
    },
    view: (id) => buildRunView(client.store, client.redis, ctx.keys, id),
    close: () => client.close(),
  };
}

/** The run's view once this resume was applied and the run has ended again. */
async function waitForEnd(t: Target, accepted: ResumeAccepted, json: boolean): Promise<RunView> {
  let last = '';
  for (;;) {
    const view = await t.view(accepted.id);
    const applied = view.resumes.some((r) => r.at === accepted.requestedAt);
    if (applied && isTerminal(view.phase)) return view;
    const line = `${applied ? view.phase : 'resume requested'}: ${view.message ?? ''}`;
    if (!json && line !== last) process.stderr.write(`${line}\n`);
    last = line;
    await new Promise((r) => setTimeout(r, 500));
  }
}
