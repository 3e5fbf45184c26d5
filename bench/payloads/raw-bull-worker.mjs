/**
 * Bench baseline process: one raw BullMQ Worker with a no-op processor, configured as a
 * stoker pool worker configures its own (worker/pool-worker.ts: concurrency 1,
 * lockDuration 30 s, stalledInterval 15 s, maxStalledCount 5) and connected as stoker
 * connects (common/redis.ts bullConnection).
 *
 * Usage   node raw-bull-worker.mjs REDIS_URL PREFIX QUEUE NAME
 * Stdout  {"ready": true} once the worker is connected; then, after a line `report` on
 *         stdin (or EOF), the worker is closed and {"processed", "firstStartMs",
 *         "lastEndMs"} is printed (wall-clock ms, performance.timeOrigin + now(): the
 *         processor's first start and last end).
 * Exit    0; 2 on bad arguments.
 */
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { Worker } from 'bullmq';

const [url, prefix, queue, name] = process.argv.slice(2);
if (!url || !prefix || !queue || !name) {
  console.error('usage: node raw-bull-worker.mjs REDIS_URL PREFIX QUEUE NAME');
  process.exit(2);
}
const now = () => performance.timeOrigin + performance.now();
let processed = 0;
let firstStartMs = null;
let lastEndMs = null;

const worker = new Worker(
  queue,
  async () => {
    if (firstStartMs === null) firstStartMs = now();
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
process.stdout.write(`${JSON.stringify({ processed, firstStartMs, lastEndMs })}\n`);
process.exit(0);
