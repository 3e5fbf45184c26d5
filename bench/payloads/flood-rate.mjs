/**
 * Bench payload: prints marker events at a steady rate, then a final progress event with
 * a known last step, then its own statistics.
 *
 * Usage   node flood-rate.mjs --rate EVENTS_PER_S --seconds S [--stats FILE]
 * Events  progress {step, totalSteps} for steps 1..N (N = rate * seconds), a metrics
 *         {step, loss} after every 100th step (both count as events and share the rate),
 *         then once more progress {step: N, totalSteps: N} (the known last step), then
 *         result {emitted, lastStep, wallMs, cpuUserMs, cpuSystemMs, blockedWrites}.
 * Pacing  every 5 ms it writes whatever is due by the clock, so a reader that falls
 *         behind slows it down (pipe writes block, or wait for 'drain') and shows up as
 *         wallMs above seconds * 1000.
 * Writes  FILE (with --stats): the same statistics as the result event, as JSON.
 * Exit    0; 2 on bad arguments.
 */
import { performance } from 'node:perf_hooks';
import { writeFileSync } from 'node:fs';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
};
const rate = Number(arg('rate', '20000'));
const seconds = Number(arg('seconds', '5'));
const statsFile = arg('stats', '');
if (!(rate > 0) || !(seconds > 0)) {
  console.error('usage: node flood-rate.mjs --rate EVENTS_PER_S --seconds S [--stats FILE]');
  process.exit(2);
}

const totalEvents = Math.round(rate * seconds);
// Of every 101 events, 100 are progress and 1 is metrics.
const lastStep = Math.round((totalEvents * 100) / 101);
const t0 = performance.now();
let emitted = 0;
let step = 0;
let blockedWrites = 0;

const line = (e) => `::stoker:: ${JSON.stringify(e)}\n`;

function pump() {
  const due = Math.min(totalEvents, Math.floor(((performance.now() - t0) * rate) / 1000));
  let chunk = '';
  while (emitted < due && step < lastStep) {
    step += 1;
    chunk += `::stoker:: {"type":"progress","step":${step},"totalSteps":${lastStep}}\n`;
    emitted += 1;
    if (step % 100 === 0) {
      chunk += `::stoker:: {"type":"metrics","step":${step},"loss":${1 / step}}\n`;
      emitted += 1;
    }
  }
  if (chunk.length > 0 && !process.stdout.write(chunk)) {
    blockedWrites += 1;
    process.stdout.once('drain', next);
    return;
  }
  next();
}

function next() {
  if (step >= lastStep) finish();
  else setTimeout(pump, 5);
}

function finish() {
  process.stdout.write(line({ type: 'progress', step: lastStep, totalSteps: lastStep }));
  emitted += 1;
  const cpu = process.cpuUsage();
  const stats = {
    emitted: emitted + 1, // the result event below
    lastStep,
    wallMs: Math.round((performance.now() - t0) * 10) / 10,
    cpuUserMs: Math.round(cpu.user / 1000),
    cpuSystemMs: Math.round(cpu.system / 1000),
    blockedWrites,
  };
  process.stdout.write(line({ type: 'result', ...stats }));
  if (statsFile) writeFileSync(statsFile, JSON.stringify(stats));
}

pump();
