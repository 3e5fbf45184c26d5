/**
 * `stoker logs RUN [--task T] [--attempt N] [-f]`: the full log file of a task attempt
 * (every task, or one task or stage; the latest attempt unless --attempt); when the file
 * is not on this machine, the last lines kept in Redis. -f follows until the task ends.
 */
import { createReadStream, existsSync, statSync } from 'node:fs';
import type { Command } from 'commander';
import { UsageError } from '../../../common/errors.js';
import { isTerminal } from '../../../common/model.js';
import { attemptLogFile } from '../../../common/paths.js';
import { readTaskLogTail } from '../../../common/progress.js';
import { buildRunView } from '../../views.js';
import { connectClient, type ClientConnection } from '../client.js';
import { makeContext } from '../context.js';
import { globals, print } from '../options.js';
import { notRemote, remoteFrom } from '../remote.js';

export interface LogsOptions {
  task?: string;
  attempt?: number;
  follow?: boolean;
}

export async function action(query: string, o: LogsOptions, cmd: Command): Promise<void> {
  const ctx = makeContext(globals(cmd));
  if (remoteFrom(ctx.env)) notRemote('logs');
  const client = await connectClient(ctx);
  try {
    const runId = await client.store.resolveRunId(query);
    const view = await buildRunView(client.store, client.redis, ctx.keys, runId);
    const tasks = view.stages.flatMap((s) => s.tasks.map((t) => ({ stage: s.name, t })));
    const chosen = o.task
      ? tasks.filter(({ stage, t }) => t.id === o.task || stage === o.task)
      : tasks;
    if (o.task && chosen.length === 0)
      throw new UsageError(
        `run ${view.id} has no task or stage "${o.task}" (tasks: ${tasks.map((x) => x.t.id).join(', ') || 'none yet'})`,
      );
    for (const { stage, t } of chosen) {
      const attempt = o.attempt ?? t.attempt;
      const file = attemptLogFile(view.runDir, t.id, attempt);
      if (chosen.length > 1) print(`==> ${stage} (${t.id}, attempt ${attempt}) <==`);
      if (existsSync(file)) {
        await printFile(file, o.follow ? () => attemptOver(client, t.id, attempt) : null);
      } else {
        const tail = await readTaskLogTail(client.redis, ctx.keys, t.id);
        print(tail.length ? tail.join('\n') : '(no log lines yet)');
      }
    }
  } finally {
    await client.close();
  }
}

async function attemptOver(
  client: ClientConnection,
  taskId: string,
  attempt: number,
): Promise<boolean> {
  const s = (await client.store.getTaskStatuses([taskId]))[taskId];
  return !s || isTerminal(s.phase) || s.attempt !== attempt;
}

/** The file from the start; with `done`, what is appended until done() says so. */
async function printFile(file: string, done: (() => Promise<boolean>) | null): Promise<void> {
  let offset = 0;
  for (;;) {
    const size = statSync(file).size;
    if (size > offset) {
      await new Promise<void>((resolve, reject) => {
        const s = createReadStream(file, { start: offset, end: size - 1 });
        s.on('data', (chunk) => process.stdout.write(chunk));
        s.on('end', () => resolve());
        s.on('error', reject);
      });
      offset = size;
    }
    if (!done || (await done())) {
      if (done && statSync(file).size > offset) continue;
      return;
    }
    await new Promise((r) => setTimeout(r, 300));
  }
}
