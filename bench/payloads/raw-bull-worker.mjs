/**
 * Bench baseline process: one raw BullMQ Worker with a no-op processor, configured as a
 * stoker pool worker configures its own (worker/pool/: concurrency 1,
 * lockDuration 30 s, stalledInterval 15 s, maxStalledCount 5) and connected as stoker
 * connects (common/redis.ts bullConnection).
 *
 * Usage   node raw-bull-worker.mjs REDIS_URL PREFIX QUEUE NAME [FEED_DIR]
 *         FEED_DIR: the floor of the resident-payload design. The processor hands each job
 *         to a resident no-op server (noop-server.mjs, started once, STATE_DIR=FEED_DIR)
 *         as a shard request over its stdin (input FEED_DIR/in.jsonl, output a temporary
 *         name), waits for its `done` line on stdout and renames the output into place:
 *         what a stoker pool worker does per shard, without any of its bookkeeping
 *         (status, outcome, progress, completions, logs).
 * Stdout  {"ready": true} once the worker is connected; then, after a line `report` on
 *         stdin (or EOF), the worker is closed and {"processed", "firstStartMs",
 *         "lastEndMs"} is printed (wall-clock ms, performance.timeOrigin + now(): the
 *         processor's first start and last end).
 * Exit    0; 2 on bad arguments.
 */
import { spawn } from 'node:child_process';
import { renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Worker } from 'bullmq';

const [url, prefix, queue, name, feedDir] = process.argv.slice(2);
if (!url || !prefix || !queue || !name) {
  console.error('usage: node raw-bull-worker.mjs REDIS_URL PREFIX QUEUE NAME');
  process.exit(2);
}
const now = () => performance.timeOrigin + performance.now();

/** FEED_DIR: the resident server and a function that runs one shard on it. */
async function startFeed(dir) {
  writeFileSync(join(dir, 'in.jsonl'), '{"id":"item"}\n');
  const server = spawn(
    process.execPath,
    [join(dirname(fileURLToPath(import.meta.url)), 'noop-server.mjs')],
    { stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, STATE_DIR: dir } },
  );
  let onLine = null;
  let ready;
  const isReady = new Promise((r) => (ready = r));
  createInterface({ input: server.stdout }).on('line', (line) => {
    const event = JSON.parse(line.slice(line.indexOf('{')));
    if (event.type === 'ready') ready();
    else if (event.type === 'done' && onLine) onLine(event);
  });
  await isReady;
  return {
    server,
    async run(id) {
      const output = join(dir, `${name}-${id}.jsonl`);
      const tmp = `${output}.partial`;
      await new Promise((resolve) => {
        onLine = resolve;
        server.stdin.write(
          `${JSON.stringify({ type: 'shard', id, input: join(dir, 'in.jsonl'), output: tmp })}\n`,
        );
      });
      onLine = null;
      renameSync(tmp, output);
    },
  };
}
const feed = feedDir ? await startFeed(feedDir) : null;

let processed = 0;
let firstStartMs = null;
let lastEndMs = null;

const worker = new Worker(
  queue,
  async (job) => {
    if (firstStartMs === null) firstStartMs = now();
    if (feed) await feed.run(job.id);
    processed += 1;
    lastEndMs = now();
    return null;
  },
  {
    connection: { url, maxRetriesPerRequest: null, connectTimeout: 4000, enableOfflineQueue: true },
    prefix,
    concurrency: 1,
    lockDuration: 30_000,
    stalledInterval: 15_000,
    maxStalledCount: 5,
    name,
  },
);
worker.on('error', (err) => console.error(`worker error: ${err.message}`));
await worker.waitUntilReady();
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);

const rl = createInterface({ input: process.stdin });
for await (const line of rl) if (line.trim() === 'report') break;
await worker.close();
feed?.server.kill();
process.stdout.write(`${JSON.stringify({ processed, firstStartMs, lastEndMs })}\n`);
process.exit(0);
