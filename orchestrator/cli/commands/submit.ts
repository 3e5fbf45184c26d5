/**
 * `stoker submit FILE [--set k=v]... [--wait] [--json]`: submit a spec to a running
 * stoker. Prints the run id, or with --wait follows the run and exits with its result.
 * Warns when no controller is alive on that Redis (the run waits for one).
 */
import type { Command } from 'commander';
import { controllerAlive } from '../../leader.js';
import { connectClient } from '../client.js';
import { makeContext } from '../context.js';
import { finishRun, followRun } from '../follow.js';
import { globals, print, printJson } from '../options.js';
import { loadSpec, requireFile } from '../spec-input.js';

export interface SubmitOptions {
  set?: string[];
  wait?: boolean;
  json?: boolean;
}

export async function action(file: string, o: SubmitOptions, cmd: Command): Promise<void> {
  requireFile(file);
  const ctx = makeContext(globals(cmd));
  const spec = await loadSpec(file, o.set);
  const client = await connectClient(ctx);
  try {
    if (!(await controllerAlive(client.redis, ctx.keys))) {
      process.stderr.write(
        'warning: no stoker controller is alive on this Redis; the run waits until one starts (stoker up)\n',
      );
    }
    const run = await client.store.createRun(spec, { home: ctx.home });
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
