/**
 * `stoker logs RUN [--task T] [--attempt N] [-f] [--raw]`: the full log file of a task
 * attempt (every task, or one task or stage; the latest attempt unless --attempt); when
 * the file is not on this machine, the last lines kept in Redis. -f follows until the
 * task ends. The payload's protocol lines (`::stoker:: {...}`: progress, metrics, the
 * ones `stoker status` and `watch` show) are left out unless --raw. Through the HTTP API
 * when STOKER_URL is set.
 */
import { createReadStream, existsSync, statSync } from 'node:fs';
import { printable } from '../../../common/terminal.js';
import { StringDecoder } from 'node:string_decoder';
import type { Command } from 'commander';
import { UsageError } from '../../../common/errors.js';
import { isTerminal } from '../../../common/model.js';
import { isProtocolLine } from '../../../common/events.js';
import { attemptLogFile } from '../../../common/paths.js';
import { readTaskLogTail } from '../../../common/progress.js';
import type { LogChunk } from '../../http/logs.js';
import { buildRunView, selectTasks, type RunView } from '../../views.js';
import { connectClient, type ClientConnection } from '../client.js';
import { makeContext } from '../context.js';
import { globals, print } from '../options.js';
import { ApiClient, remoteFrom } from '../remote.js';

export interface LogsOptions {
  task?: string;
  attempt?: number;
  follow?: boolean;
  raw?: boolean;
  /** A gang's node (0: the leader's log). */
  node?: number;
}

export async function action(query: string, o: LogsOptions, cmd: Command): Promise<void> {
  const ctx = makeContext(globals(cmd));
  const remote = remoteFrom(ctx.env);
  if (remote) return remoteLogs(new ApiClient(remote), query, o);
  const client = await connectClient(ctx);
  try {
    const runId = await client.store.resolveRunId(query);
    const view = await buildRunView(client.store, client.redis, ctx.keys, runId);
    const { chosen, none } = selectTasks(view, o.task);
    if (o.task && chosen.length === 0) throw new UsageError(none);
    for (const { stage, t } of chosen) {
      const attempt = o.attempt ?? t.attempt;
      const file = attemptLogFile(view.runDir, t.id, attempt, o.node ?? 0);
      if (chosen.length > 1) print(`==> ${stage} (${t.id}, attempt ${attempt}) <==`);
      if (existsSync(file)) {
        const out = new LineFilter(o.raw ?? false);
        await printFile(file, out, o.follow ? () => attemptOver(client, t.id, attempt) : null);
        out.end();
      } else if (o.node) {
        throw new UsageError(`no log of node ${o.node} for ${t.id} attempt ${attempt} (${file})`);
      } else {
        const tail = (await readTaskLogTail(client.redis, ctx.keys, t.id)).filter(
          (l) => o.raw || !isProtocolLine(l),
        );
        print(tail.length ? tail.join('\n') : '(no log lines yet)');
      }
    }
  } finally {
    await client.close();
  }
}

/**
 * The same through the HTTP API (GET /api/v1/runs/RUN/logs, a chunk at a time from an
 * offset): everything there is, or with -f until the attempt is over.
 */
async function remoteLogs(api: ApiClient, query: string, o: LogsOptions): Promise<void> {
  const enc = encodeURIComponent;
  const view = await api.get<RunView>(`/api/v1/runs/${enc(query)}`);
  const { chosen, none } = selectTasks(view, o.task);
  if (o.task && chosen.length === 0) throw new UsageError(none);
  for (const { stage, t } of chosen) {
    const attempt = o.attempt ?? t.attempt;
    if (chosen.length > 1) print(`==> ${stage} (${t.id}, attempt ${attempt}) <==`);
    let offset = 0;
    for (;;) {
      const c = await api.get<LogChunk>(
        `/api/v1/runs/${enc(view.id)}/logs?task=${enc(t.id)}&attempt=${attempt}&node=${o.node ?? 0}&offset=${offset}${o.raw ? '&raw=1' : ''}`,
      );
      if (c.lines.length > 0) print(c.lines.join('\n'));
      else if (c.source === 'redis') print('(no log lines yet)');
      const moved = c.next > offset;
      offset = c.next;
      if (c.source === 'redis' || c.done || (!o.follow && !moved)) break;
      if (!moved) await new Promise((r) => setTimeout(r, 300));
    }
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

/**
 * Writes a log's text to stdout, whole lines at a time, without protocol lines unless
 * raw. On a terminal, control characters are shown as escapes (common/terminal.ts): a
 * payload's output cannot drive the user's terminal. Into a pipe or a file, raw output
 * is the log's bytes as they are.
 */
class LineFilter {
  private partial = '';
  // A character split between two reads of a followed file is joined here.
  private readonly decoder = new StringDecoder('utf8');
  private readonly tty = process.stdout.isTTY === true;
  constructor(private readonly raw: boolean) {}

  write(chunk: Buffer): void {
    if (this.raw && !this.tty) {
      process.stdout.write(chunk);
      return;
    }
    const lines = (this.partial + this.decoder.write(chunk)).split('\n');
    this.partial = lines.pop() ?? '';
    const kept = this.raw ? lines : lines.filter((l) => !isProtocolLine(l));
    if (kept.length) process.stdout.write(this.out(`${kept.join('\n')}\n`));
  }

  private out(text: string): string {
    return this.tty ? printable(text) : text;
  }

  /** The last line, if the file did not end with a newline. */
  end(): void {
    if (this.partial && (this.raw || !isProtocolLine(this.partial)))
      process.stdout.write(this.out(`${this.partial}\n`));
    this.partial = '';
  }
}

/** The file from the start; with `done`, what is appended until done() says so. */
async function printFile(
  file: string,
  out: LineFilter,
  done: (() => Promise<boolean>) | null,
): Promise<void> {
  let offset = 0;
  for (;;) {
    const size = statSync(file).size;
    if (size > offset) {
      await new Promise<void>((resolve, reject) => {
        const s = createReadStream(file, { start: offset, end: size - 1 });
        s.on('data', (chunk) => out.write(chunk as Buffer));
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
