/**
 * Bench payload in server mode (protocol: common/events.ts, "Server mode"): a no-op
 * shard server. It loads nothing, answers `ready`, then for every shard request copies
 * the (tiny) input to the request's output and answers `done` with the number of
 * non-empty lines. No progress events: the shard's cost is what stoker adds around it.
 *
 * Env     STATE_DIR (default .): it appends {"pid"} to STATE_DIR/loads.jsonl once at
 *         start, so a bench can count loads and stop stray servers.
 *         SHARD_MS (default 0): each shard takes this long (a timer, no CPU) before its
 *         output is written: a shard of known length (pulled-50ms).
 * Exit    0 on a shutdown request or EOF on stdin.
 */
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const emit = (e) => process.stdout.write(`::stoker:: ${JSON.stringify(e)}\n`);
appendFileSync(
  join(process.env.STATE_DIR ?? '.', 'loads.jsonl'),
  `${JSON.stringify({ pid: process.pid })}\n`,
);
const shardMs = Number(process.env.SHARD_MS ?? 0);
emit({ type: 'ready' });

for await (const line of createInterface({ input: process.stdin })) {
  let req;
  try {
    req = JSON.parse(line);
  } catch {
    continue;
  }
  if (req.type === 'shutdown') break;
  if (req.type !== 'shard') continue;
  if (shardMs > 0) await new Promise((r) => setTimeout(r, shardMs));
  const text = readFileSync(req.input, 'utf8');
  writeFileSync(req.output, text);
  let items = 0;
  for (const l of text.split('\n')) if (l.trim() !== '') items++;
  emit({ type: 'done', id: req.id, items });
}
