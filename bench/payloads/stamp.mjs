/**
 * Bench payload: records when it started, then exits 0.
 *
 * Usage   node stamp.mjs FILE
 * Writes  FILE: {"startedAt": <wall-clock ms, sub-ms resolution>, "pid": N}, taken as the
 *         script's first statement (node's own start-up comes before it, for every
 *         path that spawns this script alike).
 * Events  result {startedAt}.
 * Exit    0; 2 without FILE.
 */
import { performance } from 'node:perf_hooks';
import { writeFileSync } from 'node:fs';

const startedAt = performance.timeOrigin + performance.now();
const file = process.argv[2];
if (!file) {
  console.error('usage: node stamp.mjs FILE');
  process.exit(2);
}
writeFileSync(file, JSON.stringify({ startedAt, pid: process.pid }));
process.stdout.write(`::stoker:: ${JSON.stringify({ type: 'result', startedAt })}\n`);
