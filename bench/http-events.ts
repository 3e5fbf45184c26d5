/**
 * http-events: the API's event stream (GET /api/v1/events) under load.
 *
 * Setup      a stoker in this process (controller, dispatcher, local backend) with its
 *            HTTP server; a TrainingRun whose payload (bench/payloads/flood-rate.mjs)
 *            prints 1,000 progress events a second for 10 s (quick: 3 s) through a real
 *            `stoker worker`, which coalesces them into a few progress writes a second.
 * Measured   with 100 clients of the stream (bench/payloads/sse-clients.mjs, one other
 *            process): the age of the progress each `task` event carries when a client
 *            receives it (now - the time of the newest progress write in it; p50, p99),
 *            the events per client, and this process's CPU (controller + HTTP server)
 *            per second of the run.
 * Baseline   the same run with no client connected: this process's CPU per second.
 * Ratio      CPU per second with 100 clients / without.
 * Note       before a write there is the worker's coalescing (at most 250 ms: the
 *            progress-ingestion bench), so an event reaches a client at most that much
 *            later than the payload printed it, plus the delay measured here.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { silentLogger } from '../common/logger.js';
import { httpSettings, startHttp } from '../orchestrator/http/start.js';
import { type Benchmark, type BenchContext, round, summarize, waitFor } from './lib/harness.js';
import { benchRun, startBenchSystem, type BenchSystem } from './lib/stoker.js';

const CLIENTS = 100;
const RATE = 1000;

interface ClientResult {
  clients: number;
  connected: number;
  events: number;
  perClient: number[];
  delaysMs: number[];
}

async function floodRun(ctx: BenchContext, b: BenchSystem, seconds: number) {
  const argv = [
    process.execPath,
    join(ctx.root, 'bench', 'payloads', 'flood-rate.mjs'),
    '--rate',
    String(RATE),
    '--seconds',
    String(seconds),
  ];
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const { runId } = await b.submit(benchRun('bench-events', argv));
  const run = await b.waitTerminal(runId, 120_000, 200);
  if (run.phase !== 'Succeeded') throw new Error(`run ${runId} ended ${run.phase}`);
  const c = process.cpuUsage(cpu0);
  const wallS = (performance.now() - t0) / 1000;
  return { cpuS: (c.user + c.system) / 1e6, wallS };
}

/** The clients' process, started and connected; resolves with their results. */
async function clients(ctx: BenchContext, url: string, token: string, seconds: number) {
  const out = join(ctx.tmpRoot, `sse-clients-${process.pid}.json`);
  const child = spawn(
    process.execPath,
    [
      join(ctx.root, 'bench', 'payloads', 'sse-clients.mjs'),
      url,
      token,
      String(CLIENTS),
      String(seconds),
      out,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    const rl = createInterface({ input: child.stdout });
    rl.on('line', (l) => l === 'ready' && resolve());
    child.on('exit', (code) =>
      reject(new Error(`sse-clients exited with ${code} before all connected`)),
    );
  });
  return {
    done: async (): Promise<ClientResult> => {
      await exited;
      await waitFor('the clients results', () => (existsSync(out) ? true : null), 10_000);
      return JSON.parse(readFileSync(out, 'utf8')) as ClientResult;
    },
  };
}

export const httpEvents: Benchmark = {
  name: 'http-events',
  async run(ctx, cleanup) {
    const seconds = ctx.quick ? 3 : 10;
    const b = await startBenchSystem(ctx, cleanup, 'events', { train: 1, steps: 1 });
    const http = await startHttp({
      sys: b.sys,
      redisUrl: ctx.redisUrl,
      home: b.home,
      env: {},
      settings: httpSettings({ port: 0, host: '127.0.0.1' }, {}),
      log: silentLogger(),
    });
    cleanup.defer('close the HTTP server', () => http.close());

    ctx.note(`http-events: a run of ${seconds} s at ${RATE} events/s, no client`);
    const alone = await floodRun(ctx, b, seconds);
    ctx.note(`http-events: the same with ${CLIENTS} clients of the event stream`);
    const c = await clients(ctx, http.url, http.tokens.tokens.read, seconds + 8);
    const loaded = await floodRun(ctx, b, seconds);
    const got = await c.done();
    const perSec = (x: { cpuS: number; wallS: number }) => round(x.cpuS / x.wallS, 3);
    const delays = summarize(got.delaysMs, 1);
    return {
      unit: 'ms',
      clients: got.connected,
      eventsPerSecFromPayload: RATE,
      seconds,
      taskEventsPerClient: summarize(got.perClient, 1),
      writeToClientMs: delays,
      cpuPerSecond: { withClients: perSec(loaded), without: perSec(alone) },
      ratio: round(perSec(loaded) / perSec(alone), 2),
      ratioOf: `controller process CPU-seconds per second of the run, ${CLIENTS} stream clients / none`,
    };
  },
};
