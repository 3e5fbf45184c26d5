/**
 * `stoker run FILE [--set k=v]... [--json] [--concurrency N] [--backend B] [--simulate]`:
 * run a spec to completion in this process (stack.ts), with live progress; or, when a
 * stoker already runs on this home or REDIS_URL (local backend), submit to it and watch.
 * Exit 0 if the run succeeded, 1 if not. Ctrl-C cancels the run; a second Ctrl-C forces.
 */
import type { Command } from 'commander';
import type { NormalizedSpec } from '../../../common/spec/schema.js';
import { controllerAlive } from '../../leader.js';
import type { RunView } from '../../views.js';
import { connectClient, findRedisUrl } from '../client.js';
import { makeContext, type Context } from '../context.js';
import { finishRun, followRun, onInterrupt } from '../follow.js';
import { globals } from '../options.js';
import { loadSpec, requireFile } from '../spec-input.js';
import { startStack } from '../stack.js';

export interface RunOptions {
  set?: string[] | undefined;
  json?: boolean;
  concurrency?: number;
  /** A pool the spec declares with other settings than the live one's takes the spec's. */
  takeOverPools?: boolean;
  backend?: string;
  simulate?: boolean;
  /** Called with the final view, after it was printed (the demo prints its report). */
  onFinished?: (view: RunView) => void;
}

export async function action(file: string, o: RunOptions, cmd: Command): Promise<void> {
  requireFile(file);
  process.exitCode = await runSpecFile(makeContext(globals(cmd)), file, o);
}

export async function runSpecFile(ctx: Context, file: string, o: RunOptions): Promise<number> {
  const spec = await loadSpec(file, o.set);
  const json = o.json ?? false;
  const backend = o.backend ?? 'local';
  if (backend === 'local') {
    const code = await submitToRunning(ctx, spec, o);
    if (code !== null) return code;
  }
  const stack = await startStack(ctx, {
    backend,
    simulate: o.simulate ?? false,
    concurrency: o.concurrency,
    waitForLeadership: false,
  });
  const { sys } = stack;
  try {
    const run = await sys.store.createRun(spec, {
      home: ctx.home,
      takeOverPools: o.takeOverPools ?? false,
    });
    if (!json)
      process.stderr.write(
        `run ${run.id}: ${spec.stages.length} stage(s), logs under ${run.runDir}\n`,
      );
    const abort = new AbortController();
    const restore = onInterrupt(
      () => {
        process.stderr.write('\ninterrupted: cancelling the run (Ctrl-C again to force)\n');
        void sys.store.requestCancel(run.id);
      },
      () => {
        abort.abort();
        void stack.stop('force', 'started').then(() => process.exit(130));
      },
    );
    try {
      const view = await followRun({
        store: sys.store,
        redis: sys.redis,
        keys: ctx.keys,
        runId: run.id,
        json,
        signal: abort.signal,
      });
      const code = finishRun(view, json);
      o.onFinished?.(view);
      return code;
    } finally {
      restore();
    }
  } finally {
    await stack.stop('preempt', 'started');
  }
}

/** With a controller alive on this home's Redis or REDIS_URL: submit there and watch (null: none). */
async function submitToRunning(
  ctx: Context,
  spec: NormalizedSpec,
  o: RunOptions,
): Promise<number | null> {
  if (!findRedisUrl(ctx)) return null;
  const client = await connectClient(ctx);
  try {
    const alive = await controllerAlive(client.redis, ctx.keys);
    if (!alive) return null;
    const run = await client.store.createRun(spec, {
      home: ctx.home,
      takeOverPools: o.takeOverPools ?? false,
    });
    if (!o.json) process.stderr.write(`submitted ${run.id} to the running controller ${alive}\n`);
    const view = await followRun({
      store: client.store,
      redis: client.redis,
      keys: ctx.keys,
      runId: run.id,
      json: o.json ?? false,
    });
    const code = finishRun(view, o.json ?? false);
    o.onFinished?.(view);
    return code;
  } finally {
    await client.close();
  }
}
