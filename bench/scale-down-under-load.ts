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
 *            leftover `.partial-` files, the run still Running when 1 worker was left.
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

async function scaleDown(ctx: BenchContext, cleanup: Cleanup, n: number, timeoutMs: number) {
  const dir = stateDir(ctx, 'scale-down');
  cleanup.defer('kill stray slow-load servers', () => void killStrayServers(dir, SCRIPT));
  const b = await startPoolSystem(ctx, cleanup, 'scale-down');
  const probe = await benchConnection(cleanup, ctx.redisUrl);
  const { sys } = b;
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
  const completionsKey = sys.keys.poolCompletions(pool);
  const { runId, submittedAt } = await b.submit(spec);

  // 1. Wait until all 4 workers are busy at once, past their first shard (steady state).
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
  // 2. Scale to 1; the controller is woken by scalePool's publish and directly.
  const tScale = nowMs();
  await scalePool(probe, sys.keys, pool, 1);
  sys.controller.wake(`pool:${pool}`);
  // 3. Watch the pool shrink while shards keep flowing.
  let drainMarkedMs: number | null = null;
  let oneReportedMs: number | null = null;
  let oneProcessMs: number | null = null;
  let phaseWhenOneLeft: string | null = null;
  let doneWhenOneLeft: number | null = null;
  const victims = new Set<string>();
  const deadline = Date.now() + 120_000;
  while (oneProcessMs === null || oneReportedMs === null) {
    const now = nowMs() - tScale;
    const procs = await poolProcs(sys, pool);
    // The victims of this scale-down (not those of the scale to 0 once the stage is done).
    if (drainMarkedMs === null) {
      for (const p of procs) if (p.draining) victims.add(p.workerId);
      if (victims.size >= WORKERS - 1) drainMarkedMs = now;
    }
    if (oneReportedMs === null && (await probe.hlen(sys.keys.poolWorkers(pool))) <= 1)
      oneReportedMs = now;
    if (oneProcessMs === null && (await livePoolProcs(sys, pool)).length <= 1) {
      oneProcessMs = now;
      phaseWhenOneLeft = (await sys.store.getRun(runId))?.phase ?? null;
      doneWhenOneLeft = await probe.zcard(completionsKey);
    }
    if (Date.now() > deadline)
      throw new Error(
        `the pool did not shrink to 1 worker within 120 s (procs: ${JSON.stringify(procs)})`,
      );
    await sleep(5);
  }
  // 4. Let it finish.
  const run = await b.waitTerminal(runId, timeoutMs, 50);
  const endMs = nowMs() - submittedAt;
  await sleep(200); // a late completion ZADD after the outcome
  // 5. Check every shard.
  const outcomes = new Map(
    (await sys.store.shardOutcomes(runId, 'gen')).map((o) => [o.index, o] as const),
  );
  const statuses = await sys.store.getTaskStatuses(
    Array.from({ length: n }, (_, i) => shardTaskId(runId, 'gen', i)),
  );
  const completions = await probe.zrange(completionsKey, '0', '-1');
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
    const want = ids.slice(i * ITEMS_PER_SHARD, (i + 1) * ITEMS_PER_SHARD);
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
  const shardsDir = join(run.runDir, 'stages', 'gen', 'shards');
  const partials = existsSync(shardsDir)
    ? readdirSync(shardsDir).filter((f) => f.includes('.partial-')).length
    : null;
  const startedAt = await shardStartTimes(
    probe,
    sys,
    Array.from({ length: n }, (_, i) => shardTaskId(runId, 'gen', i)),
  );
  const shardMs = [...outcomes.values()].flatMap((o) => {
    const st = startedAt.get(o.taskId);
    return st === undefined ? [] : [Date.parse(o.finishedAt) - st];
  });
  const loads = readLoads(dir).length;
  // What a drain has to wait for: each victim's last shard (started before or just after
  // the signal) ends; the rest of the time to 1 worker is the drain's own cost.
  let victimsLastShardEndMs = 0;
  const victimShards = { afterScale: 0, total: 0 };
  for (const o of outcomes.values()) {
    if (!victims.has(o.worker)) continue;
    victimShards.total++;
    const end = Date.parse(o.finishedAt) - tScale;
    if (end > 0) victimShards.afterScale++;
    victimsLastShardEndMs = Math.max(victimsLastShardEndMs, end);
  }
  await waitPoolGone(sys, pool, 60_000).catch(() => undefined);
  return {
    runPhase: run.phase,
    runMessage: run.phase === 'Succeeded' ? undefined : run.message,
    shardsLost: lost.length,
    shardsRunTwice: twice.length,
    lostShards: lost.slice(0, 10),
    twiceShards: twice.slice(0, 10),
    scaleToOneWorkerMs: round(oneProcessMs, 0),
    victimsLastShardEndMs: round(victimsLastShardEndMs, 0),
    drainMarkedMs: drainMarkedMs === null ? null : round(drainMarkedMs, 0),
    workerHashAtOneMs: round(oneReportedMs, 0),
    busyWorkersAtScale: busyAt.filter((w) => w.state === 'busy').length,
    victims: victims.size,
    shardsDoneAtScale: doneAtScale,
    shardsDoneWhenOneLeft: doneWhenOneLeft,
    runPhaseWhenOneLeft: phaseWhenOneLeft,
    shardInWorkerMsP50: shardMs.length > 0 ? round(median(shardMs), 0) : null,
    completions: completions.length,
    itemsInOutputs: [...seen.values()].reduce((a, c) => a + c, 0),
    itemsExpected: ids.length,
    serverLoads: loads,
    partialFilesLeft: partials,
    retryAttempts: attempts,
    submitToRunEndMs: round(endMs, 0),
    victimShards,
  };
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
