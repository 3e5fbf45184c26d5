/**
 * redis-sigstop-60s: Redis paused with SIGSTOP for 60 s while a training run and a
 * sharded stage both run, at the product's own timings (leader TTL 10 s: the pause is 6
 * TTLs; every job lock, 15 s and 30 s, runs out inside it too). Full suite only (not
 * --quick, not `npm test`): it takes over two minutes.
 *
 * What must happen: `stoker up` loses its lock (its renewals go unanswered for a TTL),
 * stops its work within bounds, waits, leads again once Redis answers, and finishes both
 * runs without being restarted. Task and pool workers survive the pause or are replaced.
 * Counted in steps (the training run, the line's figures); the sharded run is counted
 * in items and held to the same rule (lost 0, duplicated 0, acked = completed) by a check.
 */
import { readTaskProgress } from '../../common/progress.js';
import { isRunning } from '../../common/proc.js';
import { readWorkers } from '../../orchestrator/pools.js';
import { waitFor } from '../lib/harness.js';
import { check, type Scenario } from './lib/scenario.js';
import { ChaosStack, PRODUCT_TIMINGS } from './lib/stack.js';
import {
  countSharded,
  countTraining,
  shardsDone,
  type ShardedRun,
  submitSharded,
  type Training,
  trainingSpec,
  trainTask,
  waitStep,
} from './lib/workloads.js';

const PAUSE_MS = 60_000;
const LEADER_TTL_S = Number(PRODUCT_TIMINGS.STOKER_LEADER_TTL_MS) / 1000;

/** Seconds from `since` to the controller's step-down for want of renewals (its log line). */
function secondsToStepDown(stderr: string, since: number): number | null {
  for (const line of stderr.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const l = JSON.parse(line) as { time?: number; msg?: string };
      if (l.time && l.time >= since && l.msg?.startsWith('could not renew the controller lock'))
        return (l.time - since) / 1000;
    } catch {
      // a line of the banner
    }
  }
  return null;
}

/** Both runs submitted and under way: a step recorded, shards done, both workers busy. */
async function startBoth(s: ChaosStack) {
  // Training outlasts the pause (about 100 s of steps): it is still running when Redis
  // comes back, so the lost lock must stop it and the next leadership see it through.
  const t: Training = { steps: 2000, stepMs: 50, ckptEvery: 50 };
  const runId = await s.submit(trainingSpec(s.ctx.root, 'redis-sigstop-60s', t));
  const sharded = await submitSharded(s, 'sigstop-60s', {
    items: 300,
    shardSize: 3,
    itemMs: 100,
    workers: 2,
  });
  await waitStep(s, runId, 30);
  const poolBefore = await waitFor(
    '4 shards done and 2 pool workers busy',
    async () => {
      if ((await shardsDone(s, sharded)) < 4) return null;
      const ws = await readWorkers(s.probe, s.keys, sharded.pool);
      return ws.filter((w) => w.state === 'busy').length >= 2 ? ws : null;
    },
    60_000,
    20,
  );
  return { t, runId, sharded, poolBefore };
}

/** Pause Redis; then how soon a new leadership and a new shard completion came. */
async function pauseAndWatch(s: ChaosStack, runId: string, sharded: ShardedRun) {
  const stepAtPause = (await readTaskProgress(s.probe, s.keys, trainTask(runId))).step;
  const leaderBefore = await s.probe.get(s.keys.controllerAlive());
  const doneAtPause = await shardsDone(s, sharded);
  s.ctx.note(`redis-sigstop-60s: pausing Redis for ${PAUSE_MS / 1000} s`);
  const pausedAt = Date.now();
  await s.pauseRedis(PAUSE_MS);
  const resumedAt = Date.now();
  // A new leadership names itself in the alive key (a new instance id per round).
  await waitFor(
    'stoker up to lead again',
    async () => {
      const alive = await s.probe.get(s.keys.controllerAlive());
      return alive !== null && alive !== leaderBefore ? true : null;
    },
    120_000,
    50,
  );
  const leadAgainS = (Date.now() - resumedAt) / 1000;
  await waitFor(
    'a shard done after the pause',
    async () => ((await shardsDone(s, sharded)) > doneAtPause ? true : null),
    120_000,
    50,
  );
  return { pausedAt, stepAtPause, leadAgainS, shardAgainS: (Date.now() - resumedAt) / 1000 };
}

export const redisSigstop60s: Scenario = {
  name: 'redis-sigstop-60s',
  fault: `Redis paused with SIGSTOP for ${PAUSE_MS / 1000} s (6 leader TTLs of 10 s, the product's timings) while a training run and a sharded stage run, then SIGCONT`,
  skip: (ctx) =>
    ctx.quick ? 'full suite only: a 60 s outage has no short version (--quick)' : null,
  async run(ctx, cleanup) {
    const s = await ChaosStack.start(ctx, cleanup, 'redis-sigstop-60s', {
      timings: PRODUCT_TIMINGS,
    });
    const up = await s.up();
    const { t, runId, sharded, poolBefore } = await startBoth(s);
    const p = await pauseAndWatch(s, runId, sharded);
    const survived = poolBefore.filter((w) => isRunning(w.pid)).length;
    const c = await countTraining(s, runId, t, 300_000);
    const sh = await countSharded(s, sharded, 300_000);
    const err = up.stderr();
    const stepDownS = secondsToStepDown(err, p.pausedAt);
    return {
      counts: c,
      checks: [
        check('stoker up never exited', !up.hasExited()),
        check(
          'it lost its lock and led again',
          err.includes('lost its lock') && err.includes('leading again'),
        ),
        check(
          `it stepped down while Redis was paused, one TTL (${LEADER_TTL_S} s) after its last renewal`,
          stepDownS !== null &&
            stepDownS >= LEADER_TTL_S * (2 / 3) - 0.5 &&
            stepDownS <= LEADER_TTL_S + 2,
          stepDownS,
        ),
        check('the redis-server is still the same process', isRunning(s.redisPid)),
        check('one start per attempt, never two at once', c.starts.length === c.attempt, {
          attempt: c.attempt,
          starts: c.starts.length,
        }),
        check(
          'the sharded run: Succeeded, lost 0, duplicated 0, acked = completed',
          sh.runPhase === 'Succeeded' &&
            sh.lost === 0 &&
            sh.duplicated === 0 &&
            sh.acked === sh.completed &&
            sh.acked === sharded.ids.length,
          sh,
        ),
      ],
      details: {
        pauseMs: PAUSE_MS,
        stepAtPause: p.stepAtPause,
        attempts: c.attempt,
        history: c.history,
        sharded: { acked: sh.acked, lost: sh.lost, duplicated: sh.duplicated, shards: sh.shards },
        stepDownS,
        leadAgainS: p.leadAgainS,
        shardAgainS: p.shardAgainS,
        poolWorkersBefore: poolBefore.length,
        poolWorkersSurvived: survived,
        ...(c.runPhase === 'Succeeded' ? {} : { upStderr: err.slice(-3000) }),
      },
    };
  },
};
