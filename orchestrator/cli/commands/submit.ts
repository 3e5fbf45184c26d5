/**
 * `stoker submit FILE [--set k=v]... [--wait] [--json]`: submit a spec to a running
 * stoker. Prints the run id, or with --wait follows the run and exits with its result.
 * Warns when no controller is alive on that Redis (the run waits for one).
 *
 * With STOKER_URL set the file goes to the HTTP API (the admin token), which validates
 * it as `stoker validate` does and answers with the same problems; --wait then polls
 * the run there once a second. Relative paths in the spec resolve against this
 * directory, sent as the run's workDir (the server must see the same files).
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { SpecError } from '../../../common/errors.js';
import { isTerminal } from '../../../common/model.js';
import { controllerAlive } from '../../leader.js';
import type { RunView } from '../../views.js';
import { connectClient } from '../client.js';
import { makeContext } from '../context.js';
import { finishRun, followRun } from '../follow.js';
import { globals, print, printJson } from '../options.js';
import { ApiClient, remoteFrom } from '../remote.js';
import { loadSpec, requireFile } from '../spec-input.js';
import { printable } from '../../../common/terminal.js';

export interface SubmitOptions {
  set?: string[];
  takeOverPools?: boolean;
  wait?: boolean;
  json?: boolean;
}

export async function action(file: string, o: SubmitOptions, cmd: Command): Promise<void> {
  requireFile(file);
  const ctx = makeContext(globals(cmd));
  const remote = remoteFrom(ctx.env);
  if (remote) return submitRemote(new ApiClient(remote), file, o);
  const spec = await loadSpec(file, o.set);
  const client = await connectClient(ctx);
  try {
    if (!(await controllerAlive(client.redis, ctx.keys))) {
      process.stderr.write(
        'warning: no stoker controller is alive on this Redis; the run waits until one starts (stoker up)\n',
      );
    }
    const run = await client.store.createRun(spec, {
      home: ctx.home,
      takeOverPools: o.takeOverPools ?? false,
    });
    if (!o.wait) {
      if (o.json) printJson({ id: run.id });
      else print(run.id);
      return;
    }
    const view = await followRun({
      store: client.store,
      redis: client.redis,
      keys: ctx.keys,
      runId: run.id,
      json: o.json ?? false,
    });
    process.exitCode = finishRun(view, o.json ?? false);
  } finally {
    await client.close();
  }
}

async function submitRemote(api: ApiClient, file: string, o: SubmitOptions): Promise<void> {
  const query = new URLSearchParams({ workDir: process.cwd() });
  if (o.takeOverPools) query.set('takeOverPools', 'true');
  for (const s of o.set ?? []) query.append('set', s);
  let id: string;
  try {
    ({ id } = await api.post<{ id: string }>(
      `/api/v1/runs?${query.toString()}`,
      readFileSync(file, 'utf8'),
    ));
  } catch (err) {
    // The server's problems, shown against this file, as `stoker validate` shows them.
    if (err instanceof SpecError) throw new SpecError(err.issues, file);
    throw err;
  }
  if (!o.wait) {
    if (o.json) printJson({ id });
    else print(id);
    return;
  }
  if (!o.json) process.stderr.write(`submitted ${id}; waiting for it to finish\n`);
  let last = '';
  for (;;) {
    const view = await api.get<RunView>(`/api/v1/runs/${encodeURIComponent(id)}`);
    if (isTerminal(view.phase)) {
      process.exitCode = finishRun(view, o.json ?? false);
      return;
    }
    const line = `${view.phase}: ${view.message ?? ''}`;
    if (!o.json && line !== last) process.stderr.write(`${printable(line)}\n`);
    last = line;
    await new Promise((r) => setTimeout(r, 1000));
  }
}
