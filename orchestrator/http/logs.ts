/**
 * GET /api/v1/runs/RUN/logs?task=T&attempt=N&offset=B&raw=1: a task attempt's log, a
 * chunk at a time, for `stoker logs` through the API (follow: call again from `next`
 * until `done`).
 *
 *   task     a task id or a stage name; may be left out when the run has one task
 *   attempt  default: the task's latest
 *   node     a gang's node (default 0, the leader; the others' logs are their own files)
 *   offset   byte offset in the log file to read from (default 0)
 *   raw      keep the payload's protocol lines (`::stoker:: {...}`); left out otherwise
 *
 * Answer: {task, attempt, source: "file" | "redis", lines, next, done}. From the file: at
 * most MAX_CHUNK bytes, cut after the last whole line (a line still being written comes
 * with the next call); `next` is where to go on. Without the file on the server's disk
 * (a pod elsewhere), the last lines kept in Redis, once. `done`: the attempt is over.
 */
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';
import { z } from 'zod';
import { isProtocolLine } from '../../common/events.js';
import { isTerminal } from '../../common/model.js';
import { attemptLogFile } from '../../common/paths.js';
import { readTaskLogTail } from '../../common/progress.js';
import { type ApiSource, NotFoundError, oneTaskOf } from './source.js';

export const MAX_CHUNK = 1024 * 1024;

export const LogsQuery = z.strictObject({
  task: z.string().max(500).optional(),
  attempt: z.coerce.number().int().min(1).optional(),
  node: z.coerce.number().int().min(0).max(10_000).default(0),
  offset: z.coerce.number().int().min(0).default(0),
  raw: z.enum(['0', '1', 'true', 'false']).optional(),
});

export const LogChunk = z.object({
  task: z.string(),
  attempt: z.number().int(),
  source: z.enum(['file', 'redis']),
  lines: z.array(z.string()),
  next: z.number().int(),
  done: z.boolean(),
});
export type LogChunk = z.infer<typeof LogChunk>;

export async function readLogs(
  src: ApiSource,
  runId: string,
  q: z.infer<typeof LogsQuery>,
): Promise<LogChunk> {
  const { view, t } = await oneTaskOf(src, runId, q.task);
  const attempt = q.attempt ?? t.attempt;
  const done = isTerminal(t.phase) || t.attempt !== attempt;
  const keep = (lines: string[]) =>
    q.raw === '1' || q.raw === 'true' ? lines : lines.filter((l) => !isProtocolLine(l));
  const file = attemptLogFile(view.runDir, t.id, attempt, q.node);
  if (!existsSync(file)) {
    if (q.node > 0)
      throw new NotFoundError(`no log of node ${q.node} for ${t.id} attempt ${attempt}`);
    const tail = await readTaskLogTail(src.redis, src.keys, t.id);
    return { task: t.id, attempt, source: 'redis', lines: keep(tail), next: q.offset, done: true };
  }
  const { text, next } = readChunk(file, q.offset, done);
  const lines = text === '' ? [] : text.replace(/\n$/, '').split('\n');
  return {
    task: t.id,
    attempt,
    source: 'file',
    lines: keep(lines),
    next,
    done: done && next >= statSync(file).size,
  };
}

/** From `offset`, at most MAX_CHUNK bytes ending after a newline (or at the end once done). */
function readChunk(file: string, offset: number, done: boolean): { text: string; next: number } {
  const size = statSync(file).size;
  if (offset >= size) return { text: '', next: size };
  const len = Math.min(MAX_CHUNK, size - offset);
  const buf = Buffer.alloc(len);
  const fd = openSync(file, 'r');
  try {
    readSync(fd, buf, 0, len, offset);
  } finally {
    closeSync(fd);
  }
  const lastNewline = buf.lastIndexOf(0x0a);
  const whole = lastNewline >= 0 ? lastNewline + 1 : done || len === MAX_CHUNK ? len : 0;
  return { text: buf.subarray(0, whole).toString('utf8'), next: offset + whole };
}
