/**
 * resident-vs-reload: what a resident payload (loaded once per pool worker) saves over a
 * process per shard when loading takes seconds.
 *
 * Payload    bench/payloads/slow-load-server.mjs (server mode): LOAD_MS=2000 before it
 *            answers `ready`, then ITEM_MS=10 per item; N shards (20, quick: 6) of 4 items.
 * Measured   a Pipeline with one `generate` stage (input JSONL of 4N lines, shardSize 4,
 *            one attempt per shard) over a pool of 2 workers: submit -> last shard
 *            completion (the pool's completions zset), worker start-up and the two loads
 *            included; also first shard start -> last completion, the loads the servers
 *            recorded (expected: 2) and every shard's output checked (4 items).
 * Baseline   the same fixture, a fresh process per shard, 2 at a time, on the same
 *            machine: spawn -> `ready` -> one shard request -> `done` -> shutdown -> exit
 *            (wall: first spawn -> last exit), outputs checked the same way.
 * Ratio      stoker shards/s (from submit) / fresh-process shards/s (= baseline wall /
 *            stoker wall).
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { shardTaskId } from '../common/keys.js';
import {
  type Benchmark,
  type BenchContext,
  type Cleanup,
  median,
  nowMs,
  round,
  sleep,
  stopPhase,
  waitFor,
} from './lib/harness.js';
import {
  benchConnection,
  generatePipeline,
  killStrayServers,
  payloadScript,
  readLoads,
  shardStartTimes,
  startPoolSystem,
  stateDir,
  waitPoolGone,
  writeItems,
} from './lib/pools.js';

const WORKERS = 2;
const LOAD_MS = 2000;
const ITEM_MS = 10;
const ITEMS_PER_SHARD = 4;
const SCRIPT = 'slow-load-server.mjs';
const FIXTURE_ENV = { LOAD_MS: String(LOAD_MS), ITEM_MS: String(ITEM_MS) };

/** Lines of a JSONL output file that carry an id. */
function outputIds(file: string): string[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => (JSON.parse(l) as { id: string }).id);
}

async function throughPool(ctx: BenchContext, cleanup: Cleanup, n: number, timeoutMs: number) {
  const dir = stateDir(ctx, 'resident');
  cleanup.defer('kill stray slow-load servers', () => void killStrayServers(dir, SCRIPT));
  const b = await startPoolSystem(ctx, cleanup, 'resident');
  const probe = await benchConnection(cleanup, ctx.redisUrl);
  const input = join(dir, 'items.jsonl');
  const ids = writeItems(input, n * ITEMS_PER_SHARD);
  const pool = `bench-res-${Math.random().toString(36).slice(2, 8)}`;
  const spec = generatePipeline({
    name: 'bench-resident',
    inputFile: input,
    shardSize: ITEMS_PER_SHARD,
    pool: { name: pool, replicas: WORKERS, maxReplicas: WORKERS },
    command: [process.execPath, payloadScript(ctx, SCRIPT)],
    env: { ...FIXTURE_ENV, STATE_DIR: dir },
    attempts: 1,
  });
  const { runId, submittedAt } = await b.submit(spec);
  const done = b.sys.keys.stageShardsDone(runId, 'gen');
  const failed = b.sys.keys.stageShardsFailed(runId, 'gen');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await probe.multi().scard(done).scard(failed).exec();
    const s = Number(res?.[0]?.[1] ?? 0);
    const f = Number(res?.[1]?.[1] ?? 0);
    if (f > 0) throw new Error(`${f} shard(s) failed through the pool`);
    if (s >= n) break;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms: ${s} of ${n} shards done`);
    await sleep(20);
  }
  const completionsKey = b.sys.keys.poolCompletions(pool);
  await waitFor(
    'the last completions',
    async () => ((await probe.zcard(completionsKey)) >= n ? true : null),
    10_000,
    5,
  );
  const run = await b.waitTerminal(runId, 60_000, 20);
  const runSeenMs = nowMs() - submittedAt;
  if (run.phase !== 'Succeeded') throw new Error(`run ${runId} ended ${run.phase}: ${run.message}`);
  const scored = await probe.zrange(completionsKey, '0', '-1', 'WITHSCORES');
  const lastDone = Math.max(...scored.filter((_, i) => i % 2 === 1).map(Number));
  const startedAt = await shardStartTimes(
    probe,
    b.sys,
    Array.from({ length: n }, (_, i) => shardTaskId(runId, 'gen', i)),
  );
  const firstStart = Math.min(...startedAt.values());
  // Every shard's output holds exactly its 4 items.
  const outcomes = await b.sys.store.shardOutcomes(runId, 'gen');
  let bad = 0;
  for (const o of outcomes) {
    const want = ids.slice(o.index * ITEMS_PER_SHARD, (o.index + 1) * ITEMS_PER_SHARD);
    const got = o.output ? outputIds(o.output) : [];
    if (o.phase !== 'Succeeded' || got.join() !== want.join()) bad++;
  }
  if (outcomes.length !== n || bad > 0)
    throw new Error(`pool: ${bad} of ${outcomes.length} shard outputs wrong (want ${n})`);
  const loads = readLoads(dir).length;
  await waitPoolGone(b.sys, pool, 60_000);
  const wallMs = lastDone - submittedAt;
  return {
    wallMs: round(wallMs, 0),
    shardsPerSec: round((n * 1000) / wallMs, 2),
    firstShardStartMs: round(firstStart - submittedAt, 0),
    firstStartToLastDoneMs: round(lastDone - firstStart, 0),
    runSucceededSeenMs: round(runSeenMs, 0),
    serverLoads: loads,
  };
}

/** One fresh server process for one shard: spawn, ready, shard, done, shutdown, exit. */
function oneShardProcess(
  ctx: BenchContext,
  cleanup: Cleanup,
  dir: string,
  index: number,
  input: string,
  output: string,
): Promise<{ ms: number; readyMs: number; items: number }> {
  const t0 = nowMs();
  const child = spawn(process.execPath, [payloadScript(ctx, SCRIPT)], {
    stdio: ['pipe', 'pipe', 'pipe'],
    cwd: dir,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: process.env.HOME ?? '/tmp',
      ...FIXTURE_ENV,
      STATE_DIR: dir,
    },
  });
  cleanup.defer(`stop fresh server ${index}`, () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-2000);
  });
  const id = `fresh.gen.s${String(index).padStart(5, '0')}`;
  return new Promise((resolve, reject) => {
    let readyMs = 0;
    let items = -1;
    createInterface({ input: child.stdout }).on('line', (line) => {
      const at = line.indexOf('::stoker::');
      if (at === -1) return;
      const ev = JSON.parse(line.slice(at + '::stoker::'.length)) as {
        type: string;
        items?: number;
        message?: string;
      };
      if (ev.type === 'ready') {
        readyMs = nowMs() - t0;
        child.stdin.write(
          `${JSON.stringify({ type: 'shard', id, input, output, attempt: 1, params: {} })}\n`,
        );
      } else if (ev.type === 'done') {
        items = ev.items ?? 0;
        child.stdin.end(`${JSON.stringify({ type: 'shutdown' })}\n`);
      } else if (ev.type === 'failed') {
        reject(new Error(`fresh server: shard ${index} failed: ${ev.message}`));
        child.kill('SIGKILL');
      }
    });
    child.once('error', reject);
    child.once('close', (code, signal) => {
      if (code === 0 && items >= 0) resolve({ ms: nowMs() - t0, readyMs, items });
      else
        reject(
          new Error(
            `fresh server for shard ${index} exited ${code ?? signal} (items ${items}): ${stderr.trim().slice(-300)}`,
          ),
        );
    });
  });
}

async function freshProcesses(ctx: BenchContext, cleanup: Cleanup, n: number) {
  const dir = stateDir(ctx, 'reload');
  cleanup.defer('kill stray fresh servers', () => void killStrayServers(dir, SCRIPT));
  const ids = writeItems(join(dir, 'items.jsonl'), n * ITEMS_PER_SHARD);
  const shards = Array.from({ length: n }, (_, i) => {
    const mine = ids.slice(i * ITEMS_PER_SHARD, (i + 1) * ITEMS_PER_SHARD);
    const input = join(dir, `in-${i}.jsonl`);
    writeFileSync(input, mine.map((id) => `${JSON.stringify({ id })}\n`).join(''));
    return { input, output: join(dir, `out-${i}.jsonl`), want: mine };
  });
  const per: Array<{ ms: number; readyMs: number; items: number }> = [];
  let next = 0;
  const t0 = nowMs();
  await Promise.all(
    Array.from({ length: WORKERS }, async () => {
      while (next < n) {
        const i = next++;
        const s = shards[i] as (typeof shards)[number];
        per.push(await oneShardProcess(ctx, cleanup, dir, i, s.input, s.output));
      }
    }),
  );
  const wallMs = nowMs() - t0;
  const bad = shards.filter((s) => outputIds(s.output).join() !== s.want.join()).length;
  if (bad > 0) throw new Error(`fresh processes: ${bad} of ${n} shard outputs wrong`);
  return {
    wallMs: round(wallMs, 0),
    shardsPerSec: round((n * 1000) / wallMs, 2),
    processMsP50: round(median(per.map((p) => p.ms)), 0),
    spawnToReadyMsP50: round(median(per.map((p) => p.readyMs)), 0),
    serverLoads: readLoads(dir).length,
    concurrency: WORKERS,
  };
}

export const residentVsReload: Benchmark = {
  name: 'resident-vs-reload',
  async run(ctx, cleanup) {
    const n = ctx.quick ? 6 : 20;
    ctx.note(
      `resident-vs-reload: ${n} shards (load ${LOAD_MS} ms) through a pool of ${WORKERS} workers`,
    );
    const phase = cleanup.child('stoker phase');
    const stoker = await throughPool(ctx, phase, n, ctx.quick ? 120_000 : 300_000);
    await stopPhase(phase);
    ctx.note(`resident-vs-reload: ${n} shards, a fresh process each, ${WORKERS} at a time`);
    const fresh = cleanup.child('fresh phase');
    const baseline = await freshProcesses(ctx, fresh, n);
    await stopPhase(fresh);
    return {
      unit: 'shards/s',
      shards: n,
      itemsPerShard: ITEMS_PER_SHARD,
      loadMs: LOAD_MS,
      itemMs: ITEM_MS,
      workers: WORKERS,
      shardsPerSec: stoker.shardsPerSec,
      stoker,
      baseline,
      ratio: round(stoker.shardsPerSec / baseline.shardsPerSec, 3),
      ratioOf:
        'stoker pool shards/s (submit -> last completion) / fresh process per shard shards/s (2 at a time)',
    };
  },
};
