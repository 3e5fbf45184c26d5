/**
 * Chaos on pulled work (a `generate` stage over a pool of warm workers running
 * test/fixtures/payloads/server.mjs, under `stoker up`):
 *
 *   pool-worker-kill   SIGKILL to the pool worker that holds shard 3, mid-shard (the
 *                      payload holds that shard at a gate until the worker is dead): the
 *                      shard runs again elsewhere once its lock expires
 *   client-kill        `CLIENT KILL SKIPME yes` (every client of Redis but the probe: the
 *                      controller's and every worker's connections), three times while
 *                      shards flow
 *   redis-restart-aof  Redis (AOF on, fsync always) killed with SIGKILL mid-stage and
 *                      started again on the same port from its AOF: every shard a worker
 *                      was told was recorded (its log) must be found after the restart
 *   scale-down         the pool scaled from 4 workers to 1 while all 4 are busy (the check
 *                      of bench/scale-down-under-load.ts: no shard cut short or lost)
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { shardTaskId } from '../../common/keys.js';
import { readTaskEvents } from '../../common/progress.js';
import { isRunning, killPid } from '../../common/proc.js';
import { readWorkers, scalePool } from '../../orchestrator/pools.js';
import { waitFor } from '../lib/harness.js';
import { check, type Scenario } from './lib/scenario.js';
import { ChaosStack } from './lib/stack.js';
import {
  countSharded,
  type Sharded,
  shardsDone,
  submitSharded,
  type ShardedRun,
} from './lib/workloads.js';

/** Wait for `n` completed shards (fail fast if the run ended first). */
async function waitDone(s: ChaosStack, r: ShardedRun, n: number, timeoutMs = 60_000) {
  return waitFor(
    `${n} shards done`,
    async () => {
      if ((await shardsDone(s, r)) >= n) return true;
      const run = await s.store.getRun(r.runId);
      if (run && ['Failed', 'Cancelled'].includes(run.phase))
        throw new Error(`run ended ${run.phase}: ${run.message ?? ''}`);
      return null;
    },
    timeoutMs,
    10,
  );
}

export const poolWorkerKill: Scenario = {
  name: 'pool-worker-kill',
  fault: 'SIGKILL to the pool worker holding shard 3 while its payload is mid-shard',
  async run(ctx, cleanup) {
    const s = await ChaosStack.start(ctx, cleanup, 'pool-worker-kill');
    const gate = join(s.dir, 'gate');
    const w: Sharded = {
      items: ctx.quick ? 40 : 200,
      shardSize: 4,
      itemMs: 25,
      workers: 2,
      env: { GATE_ON: `shard-00003:${gate}` },
    };
    await s.up();
    const r = await submitSharded(s, 'pool-worker-kill', w);
    const target = shardTaskId(r.runId, 'gen', 3);
    const holder = await waitFor(
      'a pool worker busy with shard 3',
      async () =>
        (await readWorkers(s.probe, s.keys, r.pool)).find(
          (x) => x.state === 'busy' && x.shard === target,
        ) ?? null,
      60_000,
      10,
    );
    const killed = killPid(holder.pid, 'SIGKILL');
    await waitFor(
      'the killed worker to be gone',
      () => (isRunning(holder.pid) ? null : true),
      10_000,
    );
    writeFileSync(gate, 'open');
    const c = await countSharded(s, r, 120_000);
    const o = (await s.store.shardOutcomes(r.runId, 'gen')).find((x) => x.taskId === target);
    // BullMQ does not count a stalled job's redelivery as an attempt (attemptsMade stays);
    // the pool worker numbers it as a new one (its stalledCounter): the starts are in the
    // shard's event stream either way.
    const starts = (await readTaskEvents(s.probe, s.keys, target)).filter(
      (e) => e.type === 'attempt',
    ).length;
    return {
      counts: c,
      checks: [
        check('SIGKILL delivered to the holder of shard 3', killed),
        check(
          'shard 3 started twice and finished by another worker',
          !!o && o.worker !== holder.workerId && starts >= 2,
          o && { worker: o.worker, attempt: o.attempt, victim: holder.workerId, starts },
        ),
      ],
      details: { shards: c.shards, shardsRetried: c.shardsRetried },
    };
  },
};

export const clientKill: Scenario = {
  name: 'client-kill',
  fault:
    '`CLIENT KILL SKIPME yes` (every connection of the controller and the workers) three times while shards run',
  async run(ctx, cleanup) {
    const s = await ChaosStack.start(ctx, cleanup, 'client-kill');
    const w: Sharded = { items: ctx.quick ? 90 : 300, shardSize: 3, itemMs: 40, workers: 2 };
    await s.up();
    const r = await submitSharded(s, 'client-kill', w);
    const total = w.items / w.shardSize;
    const killedEach: number[] = [];
    for (const at of [2, Math.floor(total / 3), Math.floor(total / 2)]) {
      await waitDone(s, r, at);
      killedEach.push(Number(await s.probe.call('CLIENT', 'KILL', 'SKIPME', 'yes')));
    }
    const c = await countSharded(s, r, 120_000);
    return {
      counts: c,
      checks: [
        check(
          'each CLIENT KILL closed the controller and worker connections (>= 3)',
          killedEach.every((k) => k >= 3),
          killedEach,
        ),
      ],
      details: { clientsKilled: killedEach, shards: c.shards, shardsRetried: c.shardsRetried },
    };
  },
};

/**
 * The shards the pool workers were told were recorded: each worker logs `shard done`
 * (debug, with the shard's taskId and attempt) only once Redis has answered the write of
 * its Succeeded outcome. Read after Redis died, these are exactly the acknowledgements
 * given before the crash.
 */
function workerAcks(s: ChaosStack, r: ShardedRun): Map<string, number> {
  const dir = join(s.home, 'pools', r.pool);
  const acks = new Map<string, number>();
  if (!existsSync(dir)) return acks;
  for (const f of readdirSync(dir).filter((x) => /^[^.]+\.log$/.test(x))) {
    for (const line of readFileSync(join(dir, f), 'utf8').split('\n')) {
      if (!line.includes('"shard done"')) continue;
      try {
        const l = JSON.parse(line) as { taskId?: string; attempt?: number };
        if (l.taskId && l.attempt) acks.set(l.taskId, l.attempt);
      } catch {
        // a torn last line: the write it reports was not acknowledged yet either
      }
    }
  }
  return acks;
}

/** Acked shards whose Succeeded outcome (same attempt) is not in Redis. */
async function missingAcks(s: ChaosStack, r: ShardedRun, acks: Map<string, number>) {
  const found = new Map(
    (await s.store.shardOutcomes(r.runId, 'gen'))
      .filter((o) => o.phase === 'Succeeded')
      .map((o) => [o.taskId, o.attempt]),
  );
  return [...acks].filter(([id, attempt]) => found.get(id) !== attempt).map(([id]) => id);
}

export const redisRestartAof: Scenario = {
  name: 'redis-restart-aof',
  fault:
    'Redis (appendonly yes, appendfsync always) killed with SIGKILL mid-stage and started again on its port from its AOF',
  async run(ctx, cleanup) {
    // appendfsync always: a write is on disk before Redis answers anyone, so an
    // acknowledged write must survive any crash. (everysec, Redis's default, may lose the
    // last second of writes to an OS crash, not to a killed process: the page cache
    // keeps them. This scenario kills the process; the promise it checks is the
    // stronger one.)
    const s = await ChaosStack.start(ctx, cleanup, 'redis-restart-aof', {
      appendonly: true,
      appendfsync: 'always',
    });
    const w: Sharded = { items: ctx.quick ? 90 : 300, shardSize: 3, itemMs: 40, workers: 2 };
    const up = await s.up({ STOKER_LOG_LEVEL: 'debug' });
    const r = await submitSharded(s, 'redis-restart-aof', w);
    await waitDone(s, r, Math.floor(w.items / w.shardSize / 3));
    await s.killRedis();
    const acked = workerAcks(s, r);
    await s.restartRedis();
    const lostAtRestart = await missingAcks(s, r, acked);
    const c = await countSharded(s, r, 120_000);
    // An acked shard that ran again would have a later attempt now.
    const redone = await missingAcks(s, r, acked);
    const total = w.items / w.shardSize;
    return {
      counts: c,
      checks: [
        check(
          'the crash hit mid-stage (some shards acked, not all)',
          acked.size > 0 && acked.size < total,
          acked.size,
        ),
        check(
          'every shard a worker was told was recorded is in Redis after the restart (same attempt)',
          lostAtRestart.length === 0,
          lostAtRestart.slice(0, 10),
        ),
        check('no acked shard ran again', redone.length === 0, redone.slice(0, 10)),
        check('stoker up never exited', !up.hasExited()),
      ],
      details: {
        ackedBeforeCrash: acked.size,
        lostAtRestart: lostAtRestart.length,
        shards: c.shards,
        shardsRetried: c.shardsRetried,
      },
    };
  },
};

export const scaleDown: Scenario = {
  name: 'scale-down',
  fault: 'the pool scaled from 4 workers to 1 while all 4 are busy',
  async run(ctx, cleanup) {
    const s = await ChaosStack.start(ctx, cleanup, 'scale-down');
    const w: Sharded = {
      items: ctx.quick ? 120 : 400,
      shardSize: 2,
      itemMs: 50,
      workers: 4,
    };
    const up = await s.up();
    const r = await submitSharded(s, 'scale-down', w);
    await waitFor(
      '4 busy workers past their first shards',
      async () => {
        if ((await shardsDone(s, r)) < 4) return null;
        const ws = await readWorkers(s.probe, s.keys, r.pool);
        return ws.filter((x) => x.state === 'busy').length >= 4 ? true : null;
      },
      60_000,
      5,
    );
    await scalePool(s.probe, s.keys, r.pool, 1);
    const oneLeft = await waitFor(
      'one pool worker left',
      async () => ((await s.probe.hlen(s.keys.poolWorkers(r.pool))) <= 1 ? true : null),
      60_000,
      20,
    );
    const phaseWhenOne = (await s.store.getRun(r.runId))?.phase;
    const c = await countSharded(s, r, 180_000);
    return {
      counts: c,
      checks: [
        check(
          'the pool was down to 1 worker while the run still ran',
          oneLeft && phaseWhenOne === 'Running',
          phaseWhenOne,
        ),
        check(
          'no shard cut short (none ran a second attempt)',
          c.shardsRetried === 0,
          c.shardsRetried,
        ),
        check('stoker up never exited', !up.hasExited()),
      ],
      details: { shards: c.shards },
    };
  },
};
