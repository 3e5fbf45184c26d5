/**
 * scale-down-under-load: scaling a busy pool from 4 workers to 1 loses no shard and runs
 * none twice.
 *
 * Payload    bench/payloads/slow-load-server.mjs (no load time), ITEM_MS=25, shards of 2
 *            items: about 50 ms of work per shard; N shards (200, quick: 100), the stage's
 *            default retry policy (a shard cut short would come back as a second attempt).
 * Measured   a Pipeline with one `generate` stage over a pool of 4 workers (product
 *            lock/stall settings). Once at least 4 shards are done and the 4 workers
 *            report busy at the same time, the pool is scaled to 1 (scalePool, which
 *            publishes a wake-up, plus a direct controller wake), then the stage runs to
 *            its end. Clocks from the scale command: the 3 victims marked draining by the
 *            backend, the pool's worker hash down to 1 entry (the drained workers remove
 *            their own entry), 1 live worker process left (scaleToOneWorkerMs).
 *            shardsLost      shards whose outcome is not Succeeded, whose output file is
 *                            missing, or whose output does not hold exactly its items
 *            shardsRunTwice  shards with more than one completion in the pool's
 *                            completions zset, an outcome or task attempt above 1, or an
 *                            item that appears more than once across all outputs
 *            Both must be 0 (`met`). Also: server loads (4 expected: no server restart),
 *            leftover partial files (in shards/ or .partial/), the run still Running when 1 worker was left.
 * Baseline   measured in the same run: scale command -> the end of the last shard any
 *            victim ran (from the shard outcomes), what a drain must wait for; the rest of
 *            scaleToOneWorkerMs (drainOverheadMs) is the drain's own cost (worker.close,
 *            server shutdown, process exit, the backend noticing).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { shardTaskId } from '../common/keys.js';
import { readWorkers, scalePool } from '../orchestrator/pools.js';
import {
  type Benchmark,
  type BenchContext,
  type Cleanup,
  median,
  nowMs,
  round,
  sleep,
  waitFor,
} from './lib/harness.js';
import {
  benchConnection,
  generatePipeline,
  killStrayServers,
  livePoolProcs,
  payloadScript,
  poolProcs,
  readLoads,
  shardStartTimes,
  startPoolSystem,
  stateDir,
  waitPoolGone,
  writeItems,
} from './lib/pools.js';

const WORKERS = 4;
const ITEMS_PER_SHARD = 2;
const ITEM_MS = 25;
const SCRIPT = 'slow-load-server.mjs';

function readOutput(file: string): string[] | null {
  if (!existsSync(file)) return null;
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => (JSON.parse(l) as { id: string }).id);
}

type PoolSystem = Awaited<ReturnType<typeof startPoolSystem>>;
type Probe = Awaited<ReturnType<typeof benchConnection>>;
type Outcome = Awaited<ReturnType<PoolSystem['sys']['store']['shardOutcomes']>>[number];

/** The run under test: its pool, its shards' items, where to look. */
interface ScaleRun {
  b: PoolSystem;
  probe: Probe;
  dir: string;
  pool: string;
  ids: string[];
  n: number;
  runId: string;
  submittedAt: number;
  completionsKey: string;
  attempts: number | null;
}

/**
 * 1. submit the stage on 4 workers; 2. wait until all 4 are busy past their first shard;
 * 3. scale to 1; 4. watch the pool shrink while shards keep flowing; 5. let the run
 * finish; 6. check every shard; 7. time the victims' last shards.
 */
async function scaleDown(ctx: BenchContext, cleanup: Cleanup, n: number, timeoutMs: number) {
  const r = await submitRun(ctx, cleanup, n);
  const { b, probe, pool, completionsKey } = r;
  const { sys } = b;
  const busyAt = await waitFor(
    `${WORKERS} busy workers`,
    async () => {
      if ((await probe.zcard(completionsKey)) < WORKERS) return null;
      const ws = await readWorkers(probe, sys.keys, pool);
      return ws.filter((w) => w.state === 'busy').length >= WORKERS ? ws : null;
    },
    60_000,
    5,
  );
  const doneAtScale = await probe.zcard(completionsKey);
  // The controller is woken by scalePool's publish and directly.
  const tScale = nowMs();
  await scalePool(probe, sys.keys, pool, 1);
  sys.controller.wake(`pool:${pool}`);
  const shrink = await watchShrink(r, tScale);
  const run = await b.waitTerminal(r.runId, timeoutMs, 50);
  const endMs = nowMs() - r.submittedAt;
  await sleep(200); // a late completion ZADD after the outcome
  const checked = await checkShards(r);
  const timing = await shardTimings(r, checked.outcomes, shrink.victims, tScale);
  // Partial files: anything in shards/ that is not a shard's output, and what is left in
  // .partial/ (removed when the stage ends).
  const shardsDir = join(run.runDir, 'stages', 'gen', 'shards');
  const partialDir = join(run.runDir, 'stages', 'gen', '.partial');
  const partials = existsSync(shardsDir)
    ? readdirSync(shardsDir).filter((f) => !/^shard-\d{5}\.jsonl$/.test(f)).length +
      (existsSync(partialDir) ? readdirSync(partialDir).length : 0)
    : null;
  await waitPoolGone(sys, pool, 60_000).catch(() => undefined);
  return {
    runPhase: run.phase,
    runMessage: run.phase === 'Succeeded' ? undefined : run.message,
    shardsLost: checked.lost.length,
    shardsRunTwice: checked.twice.length,
    lostShards: checked.lost.slice(0, 10),
    twiceShards: checked.twice.slice(0, 10),
    scaleToOneWorkerMs: round(shrink.oneProcessMs, 0),
    victimsLastShardEndMs: round(timing.victimsLastShardEndMs, 0),
    drainMarkedMs: shrink.drainMarkedMs === null ? null : round(shrink.drainMarkedMs, 0),
    workerHashAtOneMs: round(shrink.oneReportedMs, 0),
    busyWorkersAtScale: busyAt.filter((w) => w.state === 'busy').length,
    victims: shrink.victims.size,
    shardsDoneAtScale: doneAtScale,
    shardsDoneWhenOneLeft: shrink.doneWhenOneLeft,
    runPhaseWhenOneLeft: shrink.phaseWhenOneLeft,
    shardInWorkerMsP50: timing.shardMs.length > 0 ? round(median(timing.shardMs), 0) : null,
    completions: checked.completions,
    itemsInOutputs: checked.itemsInOutputs,
    itemsExpected: r.ids.length,
    serverLoads: readLoads(r.dir).length,
    partialFilesLeft: partials,
    retryAttempts: r.attempts,
    submitToRunEndMs: round(endMs, 0),
    victimShards: timing.victimShards,
  };
}

/** Step 1: a Pipeline with one generate stage of n shards over a pool of 4 workers. */
async function submitRun(ctx: BenchContext, cleanup: Cleanup, n: number): Promise<ScaleRun> {
  const dir = stateDir(ctx, 'scale-down');
  cleanup.defer('kill stray slow-load servers', () => void killStrayServers(dir, SCRIPT));
  const b = await startPoolSystem(ctx, cleanup, 'scale-down');
  const probe = await benchConnection(cleanup, ctx.redisUrl);
  const input = join(dir, 'items.jsonl');
  const ids = writeItems(input, n * ITEMS_PER_SHARD);
  const pool = `bench-sd-${Math.random().toString(36).slice(2, 8)}`;
  const spec = generatePipeline({
    name: 'bench-scale-down',
    inputFile: input,
    shardSize: ITEMS_PER_SHARD,
    pool: { name: pool, replicas: WORKERS, maxReplicas: WORKERS, minReplicas: 0 },
    command: [process.execPath, payloadScript(ctx, SCRIPT)],
    env: { ITEM_MS: String(ITEM_MS), STATE_DIR: dir },
  });
  const attempts = spec.stages[0]?.retry.attempts ?? null;
  const completionsKey = b.sys.keys.poolCompletions(pool);
  const { runId, submittedAt } = await b.submit(spec);
  return { b, probe, dir, pool, ids, n, runId, submittedAt, completionsKey, attempts };
}

/**
 * Step 4: poll the pool until one worker is left, both as processes and in the pool's
 * worker hash; clocks from the scale command.
 */
async function watchShrink(r: ScaleRun, tScale: number) {
  const { sys } = r.b;
  let drainMarkedMs: number | null = null;
  let oneReportedMs: number | null = null;
  let oneProcessMs: number | null = null;
  let phaseWhenOneLeft: string | null = null;
  let doneWhenOneLeft: number | null = null;
  const victims = new Set<string>();
  const deadline = Date.now() + 120_000;
  while (oneProcessMs === null || oneReportedMs === null) {
    const now = nowMs() - tScale;
    const procs = await poolProcs(sys, r.pool);
    // The victims of this scale-down (not those of the scale to 0 once the stage is done).
    if (drainMarkedMs === null) {
      for (const p of procs) if (p.draining) victims.add(p.workerId);
      if (victims.size >= WORKERS - 1) drainMarkedMs = now;
    }
    if (oneReportedMs === null && (await r.probe.hlen(sys.keys.poolWorkers(r.pool))) <= 1)
      oneReportedMs = now;
    if (oneProcessMs === null && (await livePoolProcs(sys, r.pool)).length <= 1) {
      oneProcessMs = now;
      phaseWhenOneLeft = (await sys.store.getRun(r.runId))?.phase ?? null;
      doneWhenOneLeft = await r.probe.zcard(r.completionsKey);
    }
    if (Date.now() > deadline)
      throw new Error(
        `the pool did not shrink to 1 worker within 120 s (procs: ${JSON.stringify(procs)})`,
      );
    await sleep(5);
  }
  return {
    drainMarkedMs,
    oneReportedMs,
    oneProcessMs,
    phaseWhenOneLeft,
    doneWhenOneLeft,
    victims,
  };
}

/**
 * Step 6: lost shards (not Succeeded, or an output that is not exactly its items) and
 * shards run twice (several completions, an attempt above 1, an item output twice).
 */
async function checkShards(r: ScaleRun) {
  const { sys } = r.b;
  const { n, runId } = r;
  const outcomes = new Map(
    (await sys.store.shardOutcomes(runId, 'gen')).map((o) => [o.index, o] as const),
  );
  const statuses = await sys.store.getTaskStatuses(
    Array.from({ length: n }, (_, i) => shardTaskId(runId, 'gen', i)),
  );
  const completions = await r.probe.zrange(r.completionsKey, '0', '-1');
  const completionsPer = new Map<string, number>();
  for (const c of completions) {
    const taskId = c.slice(0, c.lastIndexOf(':'));
    completionsPer.set(taskId, (completionsPer.get(taskId) ?? 0) + 1);
  }
  const seen = new Map<string, number>();
  const outputs: Array<string[] | null> = [];
  for (let i = 0; i < n; i++) {
    const o = outcomes.get(i);
    const got = o?.output ? readOutput(o.output) : null;
    outputs.push(got);
    for (const id of got ?? []) seen.set(id, (seen.get(id) ?? 0) + 1);
  }
  const lost: number[] = [];
  const twice: number[] = [];
  for (let i = 0; i < n; i++) {
    const taskId = shardTaskId(runId, 'gen', i);
    const o = outcomes.get(i);
    const want = r.ids.slice(i * ITEMS_PER_SHARD, (i + 1) * ITEMS_PER_SHARD);
    const got = outputs[i];
    if (o?.phase !== 'Succeeded' || got === null || got === undefined || got.join() !== want.join())
      lost.push(i);
    const dupItem = want.some((id) => (seen.get(id) ?? 0) > 1);
    if (
      (completionsPer.get(taskId) ?? 0) > 1 ||
      (o?.attempt ?? 1) > 1 ||
      (statuses[taskId]?.attempt ?? 1) > 1 ||
      dupItem
    )
      twice.push(i);
  }
  const itemsInOutputs = [...seen.values()].reduce((a, c) => a + c, 0);
  return { outcomes, lost, twice, completions: completions.length, itemsInOutputs };
}

/**
 * Step 7: each shard's time in a worker, and what a drain has to wait for: each victim's
 * last shard (started before or just after the signal) ends; the rest of the time to 1
 * worker is the drain's own cost.
 */
async function shardTimings(
  r: ScaleRun,
  outcomes: Map<number, Outcome>,
  victims: ReadonlySet<string>,
  tScale: number,
) {
  const startedAt = await shardStartTimes(
    r.probe,
    r.b.sys,
    Array.from({ length: r.n }, (_, i) => shardTaskId(r.runId, 'gen', i)),
  );
  const shardMs = [...outcomes.values()].flatMap((o) => {
    const st = startedAt.get(o.taskId);
    return st === undefined ? [] : [Date.parse(o.finishedAt) - st];
  });
  let victimsLastShardEndMs = 0;
  const victimShards = { afterScale: 0, total: 0 };
  for (const o of outcomes.values()) {
    if (!victims.has(o.worker)) continue;
    victimShards.total++;
    const end = Date.parse(o.finishedAt) - tScale;
    if (end > 0) victimShards.afterScale++;
    victimsLastShardEndMs = Math.max(victimsLastShardEndMs, end);
  }
  return { shardMs, victimsLastShardEndMs, victimShards };
}

export const scaleDownUnderLoad: Benchmark = {
  name: 'scale-down-under-load',
  async run(ctx, cleanup) {
    const n = ctx.quick ? 100 : 200;
    ctx.note(
      `scale-down-under-load: ${n} shards of ~${ITEM_MS * ITEMS_PER_SHARD} ms on ${WORKERS} workers, scaled to 1 under load`,
    );
    const r = await scaleDown(ctx, cleanup, n, ctx.quick ? 180_000 : 600_000);
    const met = r.shardsLost === 0 && r.shardsRunTwice === 0 && r.runPhase === 'Succeeded';
    const { victimsLastShardEndMs, ...rest } = r;
    return {
      unit: 'shards',
      shards: n,
      itemsPerShard: ITEMS_PER_SHARD,
      itemMs: ITEM_MS,
      workers: { from: WORKERS, to: 1 },
      ...rest,
      drainOverheadMs: round(r.scaleToOneWorkerMs - victimsLastShardEndMs, 0),
      baseline: { victimsLastShardEndMs },
      ratio:
        victimsLastShardEndMs > 0 ? round(r.scaleToOneWorkerMs / victimsLastShardEndMs, 2) : null,
      ratioOf:
        'scale command -> 1 live worker process / scale command -> the end of the last shard a victim ran (same run)',
      target: { shardsLost: 0, shardsRunTwice: 0 },
      met,
    };
  },
};
