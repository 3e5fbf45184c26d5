/**
 * Bench payload in server mode (protocol: common/events.ts, "Server mode"), the protocol
 * of test/fixtures/payloads/server.mjs without its fault injection: a server whose load
 * takes LOAD_MS, then serves shards of JSONL items at ITEM_MS per item.
 *
 * Env     LOAD_MS (default 0): time to "load a model" before `ready`;
 *         ITEM_MS (default 0): work per item; STATE_DIR (default .): it appends
 *         {"pid", "loadMs"} to STATE_DIR/loads.jsonl once loaded (one line per load).
 * Input   JSONL items {"id": ...}; a line that is not JSON -> failed BAD_DATA.
 * Output  one line per item {"id", "worker": pid} to the request's output path.
 * Events  progress {step, totalSteps} after every item, then done {id, items}.
 * Exit    0 on a shutdown request or EOF on stdin.
 */
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const emit = (e) => process.stdout.write(`::stoker:: ${JSON.stringify(e)}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const loadMs = Number(process.env.LOAD_MS ?? 0);
const itemMs = Number(process.env.ITEM_MS ?? 0);

if (loadMs > 0) await sleep(loadMs);
appendFileSync(
  join(process.env.STATE_DIR ?? '.', 'loads.jsonl'),
  `${JSON.stringify({ pid: process.pid, loadMs })}\n`,
);
emit({ type: 'ready' });

for await (const line of createInterface({ input: process.stdin })) {
  let req;
  try {
    req = JSON.parse(line);
  } catch {
    console.error(`bad request line: ${line}`);
    continue;
  }
  if (req.type === 'shutdown') break;
  if (req.type !== 'shard') continue;
  const lines = readFileSync(req.input, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '');
  const out = [];
  let bad = null;
  for (const [i, l] of lines.entries()) {
    try {
      out.push(JSON.stringify({ id: JSON.parse(l).id, worker: process.pid }));
    } catch {
      bad = i + 1;
      break;
    }
    if (itemMs > 0) await sleep(itemMs);
    emit({ type: 'progress', step: i + 1, totalSteps: lines.length });
  }
  if (bad !== null) {
    emit({
      type: 'failed',
      id: req.id,
      reason: 'BAD_DATA',
      message: `input line ${bad}: not JSON`,
    });
    continue;
  }
  writeFileSync(req.output, out.map((o) => `${o}\n`).join(''));
  emit({ type: 'done', id: req.id, items: out.length });
}
