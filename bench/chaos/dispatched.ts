/**
 * Chaos on dispatched training (a TrainingRun of train-sim.mjs under `stoker up`):
 *
 *   payload-kill     SIGKILL to the payload's process group once a checkpoint is written:
 *                    the next attempt resumes from that checkpoint, the step count is exact
 *   worker-kill      SIGKILL to the task's `stoker worker` (WorkerLost): its payload group is
 *                    killed before the retry, which resumes from the checkpoint
 *   controller-kill  SIGKILL to `stoker up` mid-run, then a new `stoker up`: it re-attaches
 *                    to the worker that kept training (one attempt, one start)
 *   redis-sigstop    Redis paused (SIGSTOP) for 2.5 leader TTLs (5x in the full run too):
 *                    `stoker up` loses its lock, leads again and finishes, never exiting
 */
import { readTaskProgress } from '../../common/progress.js';
import { isRunning, killGroup, killPid } from '../../common/proc.js';
import { type Cleanup, waitFor } from '../lib/harness.js';
import { check, type Scenario } from './lib/scenario.js';
import { type ChaosContext, ChaosStack, LEADER_TTL_MS } from './lib/stack.js';
import {
  countTraining,
  type Training,
  trainingSpec,
  trainTask,
  waitStep,
} from './lib/workloads.js';

const training = (ctx: ChaosContext): Training =>
  ctx.quick ? { steps: 80, stepMs: 25, ckptEvery: 10 } : { steps: 300, stepMs: 20, ckptEvery: 20 };

/** The unit record of the task's first attempt, once its worker wrote its payload's group. */
async function firstUnit(s: ChaosStack, runId: string) {
  return waitFor(
    'the unit of attempt 1 with its payload group',
    async () => {
      const [pid, pgid] = await s.probe.hmget(
        s.keys.unit(`${trainTask(runId)}-a1`),
        'pid',
        'payloadPgid',
      );
      return pid && pgid && Number(pgid) > 0 ? { pid: Number(pid), pgid: Number(pgid) } : null;
    },
    30_000,
  );
}

/** payload-kill and worker-kill: the same run, a different victim. */
function killAndResume(name: string, victim: 'payload' | 'worker', fault: string): Scenario {
  return {
    name,
    fault,
    async run(ctx: ChaosContext, cleanup: Cleanup) {
      const t = training(ctx);
      const s = await ChaosStack.start(ctx, cleanup, name);
      await s.up();
      const runId = await s.submit(trainingSpec(ctx.root, name, t));
      const unit = await firstUnit(s, runId);
      const atKill = await waitStep(s, runId, 0, Math.floor(t.steps / 2.5));
      const killed =
        victim === 'payload' ? killGroup(unit.pgid, 'SIGKILL') : killPid(unit.pid, 'SIGKILL');
      const c = await countTraining(s, runId, t, 120_000);
      const second = c.starts[1];
      return {
        counts: c,
        checks: [
          check(`SIGKILL delivered to the ${victim}`, killed),
          check('two attempts, two starts', c.attempt === 2 && c.starts.length === 2, {
            attempt: c.attempt,
            starts: c.starts.length,
          }),
          check(
            `attempt 2 resumed from a checkpoint at or after step ${atKill.checkpoint}`,
            !!second?.resumeFrom && second.step >= atKill.checkpoint,
            second,
          ),
          check(
            victim === 'worker' ? 'attempt 1 ended WorkerLost' : 'attempt 1 ended by a signal',
            victim === 'worker'
              ? c.history[0]?.reason === 'WorkerLost'
              : (c.history[0]?.reason ?? '') !== '',
            c.history[0],
          ),
        ],
        details: { checkpointAtKill: atKill.checkpoint, history: c.history },
      };
    },
  };
}

export const payloadKill = killAndResume(
  'payload-kill',
  'payload',
  "SIGKILL to a training payload's process group after its checkpoint at 40% of the steps",
);

export const workerKill = killAndResume(
  'worker-kill',
  'worker',
  "SIGKILL to a training task's `stoker worker` after its checkpoint at 40% of the steps",
);

export const controllerKill: Scenario = {
  name: 'controller-kill',
  fault:
    '`stoker up` killed with SIGKILL mid-run, a new `stoker up` started once the worker has gone on alone',
  async run(ctx, cleanup) {
    const t = ctx.quick
      ? { steps: 80, stepMs: 50, ckptEvery: 10 }
      : { steps: 200, stepMs: 40, ckptEvery: 20 };
    const s = await ChaosStack.start(ctx, cleanup, 'controller-kill');
    const up1 = await s.up();
    const runId = await s.submit(trainingSpec(ctx.root, 'controller-kill', t));
    await waitStep(s, runId, 10);
    up1.child.kill('SIGKILL');
    const how = await up1.exited;
    const atKill = (await readTaskProgress(s.probe, s.keys, trainTask(runId))).step ?? 0;
    // The orphaned worker goes on training while no controller runs.
    await waitStep(s, runId, Math.min(t.steps, atKill + 3));
    const up2 = await s.up();
    const c = await countTraining(s, runId, t, 120_000);
    return {
      counts: c,
      checks: [
        check('the first stoker up died of SIGKILL', how === 'SIGKILL', how),
        check('re-attached: one attempt, one start', c.attempt === 1 && c.starts.length === 1, {
          attempt: c.attempt,
          starts: c.starts.length,
        }),
        check('the second stoker up is still running', !up2.hasExited()),
      ],
      details: { stepAtKill: atKill },
    };
  },
};

function redisSigstop(name: string, ttls: number): Scenario {
  const pauseMs = ttls * LEADER_TTL_MS;
  return {
    name,
    fault: `Redis paused with SIGSTOP for ${pauseMs / 1000} s (${ttls} leader TTLs) mid-run, then SIGCONT`,
    async run(ctx, cleanup) {
      const t = { steps: ctx.quick ? 300 : 500, stepMs: 30, ckptEvery: 20 };
      const s = await ChaosStack.start(ctx, cleanup, name);
      const up = await s.up();
      const runId = await s.submit(trainingSpec(ctx.root, name, t));
      await waitStep(s, runId, 30);
      await s.pauseRedis(pauseMs);
      const c = await countTraining(s, runId, t, 180_000);
      const err = up.stderr();
      return {
        counts: c,
        checks: [
          check('stoker up never exited', !up.hasExited()),
          check(
            'it lost its lock and led again',
            err.includes('lost its lock') && err.includes('leading again'),
          ),
          check('the redis-server is still the same process', isRunning(s.redisPid)),
          check('one start per attempt, never two at once', c.starts.length === c.attempt, {
            attempt: c.attempt,
            starts: c.starts.length,
          }),
        ],
        details: { pauseMs, attempts: c.attempt, history: c.history },
      };
    },
  };
}

export const redisSigstop5s = redisSigstop('redis-sigstop', 2.5);
export const redisSigstop10s = redisSigstop('redis-sigstop-10s', 5);
