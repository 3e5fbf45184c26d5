/**
 * http-api: the HTTP API's read path, and /metrics, against a store of 1,000 runs.
 *
 * Setup      on the bench's Redis, 1,000 runs (quick: 100) created through the store,
 *            each a TrainingRun with its one stage Running and its one task Running (a
 *            status written as a worker would), so every run is active; no controller.
 *            The HTTP server (orchestrator/http/) on a free port with its tokens.
 * Measured   GET /api/v1/runs/ID with the read token, for random runs, one request at a
 *            time over one keep-alive connection: 2,000 requests (quick: 200), p50/p99.
 * Baseline   the same framework (fastify), in this process too, with a bare route and
 *            no authentication that reads the same run's record hash (HGET) and sends
 *            it: what a route of this framework on this Redis costs at the least.
 *            Stoker and the baseline alternate in 4 rounds (quick: 1).
 * Ratio      API p50 / bare p50 (the API also reads the stages, the task statuses and
 *            their progress, and builds the RunView).
 * Also       /metrics scrape time (median and max of 20, quick: 5) with 1,000 active
 *            runs and tasks, and the size of the text.
 *            The dashboard's reads: GET /api/v1/runs?limit=100 (its runs page) at 1,000
 *            runs, p50/p99 of 20; GET /api/v1/runs/ID/metrics?points=1000 on a task
 *            with 100,000 points of metric history (loss, lr: a metrics.jsonl of its
 *            attempt): the first read (the file parsed), a read with nothing new, and a
 *            read after 1,000 more points were appended (a live chart's poll).
 */
import { Agent, request, type Server } from 'node:http';
import { appendFileSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { join } from 'node:path';
import Fastify from 'fastify';
import { Redis } from 'ioredis';
import { makeKeys, type Keys } from '../common/keys.js';
import { silentLogger } from '../common/logger.js';
import { nowIso } from '../common/model.js';
import { newTaskStatus } from '../common/task-store.js';
import { attemptMetricsFile } from '../common/paths.js';
import { parseSpec } from '../common/spec/load.js';
import { StokerMetrics } from '../orchestrator/http/metrics.js';
import { buildHttpServer } from '../orchestrator/http/server.js';
import { loadOrCreateTokens, TokenAuth } from '../orchestrator/http/tokens.js';
import { QueueReader } from '../orchestrator/queue-counts.js';
import { RunStore } from '../orchestrator/store.js';
import { deleteKeysWithPrefix } from '../testing/redis-keys.js';
import { type Benchmark, type Cleanup, median, nowMs, round, summarize } from './lib/harness.js';

const SPEC = `apiVersion: stoker/v1
kind: TrainingRun
metadata: {name: bench-api}
spec:
  payload: {command: [/bin/true]}
`;

/** GET over one keep-alive agent; resolves with the body's length. */
function get(url: string, token: string | null, agent: Agent) {
  return new Promise<number>((resolve, reject) => {
    const req = request(
      url,
      { agent, headers: token ? { authorization: `Bearer ${token}` } : {} },
      (res) => {
        let n = 0;
        res.on('data', (c: Buffer) => (n += c.length));
        res.on('end', () =>
          res.statusCode === 200 ? resolve(n) : reject(new Error(`${url}: ${res.statusCode}`)),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

async function timed(n: number, one: () => Promise<unknown>): Promise<number[]> {
  const ms: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = nowMs();
    await one();
    ms.push(nowMs() - t);
  }
  return ms;
}

const urlOf = (server: Server): string => {
  const a = server.address();
  return `http://127.0.0.1:${a && typeof a === 'object' ? a.port : 0}`;
};

/** `n` runs, each active with its one stage and one task Running. */
async function storeRuns(store: RunStore, home: string, n: number): Promise<string[]> {
  const spec = parseSpec(SPEC);
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const id = `bench-api-${String(i).padStart(5, '0')}`;
    const run = await store.createRun(spec, { home, id });
    const taskId = `${run.id}.train`;
    await store.writeTaskStatus(
      {
        ...newTaskStatus({ id: taskId, runId: id, stage: 'train', queue: 'train', maxAttempts: 3 }),
        phase: 'Running',
        attempt: 1,
        startedAt: nowIso(),
      },
      { wake: false },
    );
    const before = (await store.getStages(id)).train;
    if (before)
      await store.writeStageIfChanged(id, before, { ...before, phase: 'Running', tasks: [taskId] });
    ids.push(id);
  }
  return ids;
}

/** The API (with its tokens) and the bare route, listening; their URLs. */
async function servers(
  cleanup: Cleanup,
  redis: Redis,
  keys: Keys,
  store: RunStore,
  home: string,
  redisUrl: string,
) {
  const tokens = loadOrCreateTokens(home, {});
  const queues = new QueueReader(redis, keys, redisUrl);
  cleanup.defer('close queues', () => queues.close());
  const source = { redis, keys, store, queues, home, isLeader: () => true };
  const api = buildHttpServer({
    ...source,
    auth: new TokenAuth(tokens.tokens),
    metrics: new StokerMetrics(source),
    metricsToken: null,
    log: silentLogger(),
    bodyLimit: 1024 * 1024,
  });
  const bare = Fastify({ logger: false });
  bare.get<{ Params: { id: string } }>('/runs/:id', async (req) => {
    const raw = await redis.hget(keys.run(req.params.id), 'record');
    return raw ? (JSON.parse(raw) as unknown) : {};
  });
  await api.listen({ port: 0, host: '127.0.0.1' });
  cleanup.defer('close the API', () => api.close());
  await bare.listen({ port: 0, host: '127.0.0.1' });
  cleanup.defer('close the bare server', () => bare.close());
  return { apiUrl: urlOf(api.server), bareUrl: urlOf(bare.server), read: tokens.tokens.read };
}

export const httpApi: Benchmark = {
  name: 'http-api',
  async run(ctx, cleanup) {
    const runs = ctx.quick ? 100 : 1000;
    const requests = ctx.quick ? 200 : 2000;
    const rounds = ctx.quick ? 1 : 4;
    const prefix = `bench-api-${process.pid}:`;
    const keys = makeKeys(prefix);
    const redis = new Redis(ctx.redisUrl, { maxRetriesPerRequest: null });
    cleanup.defer('close redis', async () => void (await redis.quit()));
    cleanup.defer(`delete ${prefix}*`, () => deleteKeysWithPrefix(ctx.redisUrl, prefix));
    const store = new RunStore(redis, keys);
    const home = mkdtempSync(join(ctx.tmpRoot, 'api-home-'));
    ctx.note(`http-api: storing ${runs} runs`);
    const ids = await storeRuns(store, home, runs);
    const { apiUrl, bareUrl, read } = await servers(
      cleanup,
      redis,
      keys,
      store,
      home,
      ctx.redisUrl,
    );
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    cleanup.defer('destroy the agent', () => agent.destroy());
    const pick = () => ids[Math.floor(Math.random() * ids.length)] as string;

    const apiMs: number[] = [];
    const bareMs: number[] = [];
    let viewBytes = 0;
    for (let r = 1; r <= rounds; r++) {
      ctx.note(`http-api: round ${r}/${rounds}, ${requests / rounds} requests each`);
      const one = async () => {
        viewBytes = await get(`${apiUrl}/api/v1/runs/${pick()}`, read, agent);
      };
      apiMs.push(...(await timed(requests / rounds, one)));
      bareMs.push(
        ...(await timed(requests / rounds, () => get(`${bareUrl}/runs/${pick()}`, null, agent))),
      );
    }
    let metricsBytes = 0;
    const scrapeMs = await timed(ctx.quick ? 5 : 20, async () => {
      metricsBytes = await get(`${apiUrl}/metrics`, null, agent);
    });
    const listMs = await timed(20, () => get(`${apiUrl}/api/v1/runs?limit=100`, read, agent));
    const history = await historyReads(store, ids[0] as string, apiUrl, read, agent);
    const apiS = summarize(apiMs, 2);
    const bareS = summarize(bareMs, 2);
    return {
      unit: 'ms',
      runsStored: runs,
      activeTasks: runs,
      requests,
      rounds,
      getRun: { ...apiS, bytes: viewBytes },
      baseline: { ...bareS, what: 'fastify route, no auth, HGET of the run record' },
      ratio: round(apiS.p50 / bareS.p50, 2),
      ratioOf: 'GET /api/v1/runs/ID p50 / bare route p50, same process, same Redis, alternated',
      metricsScrape: {
        medianMs: round(median(scrapeMs), 1),
        maxMs: round(Math.max(...scrapeMs), 1),
        bytes: metricsBytes,
      },
      listRuns100: summarize(listMs, 2),
      metricHistory: history,
    };
  },
};

/** A metrics.jsonl line: loss and lr at `step`. */
const point = (step: number): string =>
  `${JSON.stringify({ a: 1, s: step, t: 1_765_000_000_000 + step * 100, m: { loss: 2 / Math.sqrt(step + 1) + (step % 97 === 0 ? 0.5 : 0), lr: 1e-4 } })}\n`;

/** The metric history route on 100,000 points: first read, unchanged, after an append. */
async function historyReads(
  store: RunStore,
  runId: string,
  apiUrl: string,
  token: string,
  agent: Agent,
) {
  const run = await store.mustGetRun(runId);
  const file = attemptMetricsFile(run.runDir, `${runId}.train`, 1);
  mkdirSync(dirname(file), { recursive: true });
  const lines: string[] = [];
  for (let step = 0; step < 100_000; step++) lines.push(point(step));
  writeFileSync(file, lines.join(''));
  const url = `${apiUrl}/api/v1/runs/${runId}/metrics?points=1000`;
  let bytes = 0;
  const [first] = await timed(1, async () => (bytes = await get(url, token, agent)));
  const unchanged = await timed(10, () => get(url, token, agent));
  let step = 100_000;
  const appended = await timed(10, async () => {
    const more: string[] = [];
    for (let i = 0; i < 100; i++) more.push(point(step++));
    appendFileSync(file, more.join(''));
    await get(url, token, agent);
  });
  return {
    points: 100_000,
    firstReadMs: round(first ?? 0, 1),
    unchangedMs: summarize(unchanged, 2),
    after100MoreMs: summarize(appended, 2),
    responseBytes: bytes,
  };
}
