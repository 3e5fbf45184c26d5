/**
 * controller-kill-dispatch-steps: one training run, and `stoker up` killed with SIGKILL
 * at each step of its dispatch, a new `stoker up` started after each kill:
 *
 *   1. submitted     the run record exists, the controller has not made its task yet
 *   2. queued        the task's BullMQ job exists, its unit is not launched yet
 *   3. launching     the unit's record is written, its worker's pid not yet (the local
 *                    backend's spawn)
 *   4. running       the unit runs its payload (a step recorded)
 *   5. finished      the payload wrote final.json, the run is not Succeeded yet
 *
 * Each kill lands as soon as its state is seen (polled every 5 ms). There is no hook
 * inside the dispatcher, so a step whose window is shorter than the poll is passed
 * before the kill; the line says, per kill, which state the kill really found
 * (`details.kills`), and the scenario fails only on what it counts: a second launch, a
 * lost or repeated step, a run that does not succeed. The attempt count is printed, not
 * checked: a worker that dies with the controller that was launching it ends its attempt
 * without a result (retried, as a lost worker is).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { QUEUES } from '../../common/keys.js';
import { readTaskProgress } from '../../common/progress.js';
import { waitFor } from '../lib/harness.js';
import { check, type Scenario } from './lib/scenario.js';
import { type ChaosStack, ChaosStack as Stack, type UpProcess } from './lib/stack.js';
import { countTraining, trainingSpec, trainTask } from './lib/workloads.js';

type Step = 'submitted' | 'queued' | 'launching' | 'running' | 'finished' | 'succeeded';

/** Where the run stands, as far as the outside can see. */
async function stepOf(s: ChaosStack, runId: string): Promise<Step> {
  const run = await s.store.getRun(runId);
  if (run?.phase === 'Succeeded') return 'succeeded';
  if (run && existsSync(join(run.runDir, 'stages', 'train', 'final.json'))) return 'finished';
  const taskId = trainTask(runId);
  if (((await readTaskProgress(s.probe, s.keys, taskId)).step ?? 0) > 0) return 'running';
  const [launchedAt, pid] = await s.probe.hmget(s.keys.unit(`${taskId}-a1`), 'launchedAt', 'pid');
  if (pid) return 'running';
  if (launchedAt) return 'launching';
  if (await s.probe.exists(`${s.keys.bullPrefix}:${QUEUES.train}:${taskId}`)) return 'queued';
  return 'submitted';
}

const ORDER: Step[] = ['submitted', 'queued', 'launching', 'running', 'finished', 'succeeded'];

export const controllerKillDispatchSteps: Scenario = {
  name: 'controller-kill-dispatch-steps',
  fault:
    '`stoker up` SIGKILLed as the run is submitted, queued, launching, running and finished (a new one started after each)',
  async run(ctx, cleanup) {
    const t = { steps: 60, stepMs: 50, ckptEvery: 10 };
    const s = await Stack.start(ctx, cleanup, 'controller-kill-dispatch-steps');
    let up: UpProcess = await s.up();
    const runId = await s.submit(trainingSpec(ctx.root, 'dispatch-steps', t));
    const kills: Array<{ aimedAt: Step; found: Step; signal: number | string }> = [];
    let stuck: { aimedAt: Step; error: string } | null = null;
    for (const aim of ['submitted', 'queued', 'launching', 'running', 'finished'] as const) {
      const found = await waitFor(
        `the run to reach ${aim}`,
        async () => {
          const st = await stepOf(s, runId);
          return ORDER.indexOf(st) >= ORDER.indexOf(aim) ? st : null;
        },
        60_000,
        5,
      ).catch((err: Error) => {
        stuck = { aimedAt: aim, error: err.message };
        return null;
      });
      if (found === null) break;
      if (found === 'succeeded') break;
      up.child.kill('SIGKILL');
      kills.push({ aimedAt: aim, found, signal: await up.exited });
      up = await s.up();
    }
    const c = await countTraining(s, runId, t, stuck ? 5_000 : 120_000);
    return {
      counts: c,
      checks: [
        check(
          'every kill was a SIGKILL',
          kills.length > 0 && kills.every((k) => k.signal === 'SIGKILL'),
          kills,
        ),
        // A worker lost with the controller that launched it may cost an attempt (it
        // ended without a result, as WorkerLost does), never a second run of the payload.
        check('one start: the payload never ran twice', c.starts.length === 1, {
          attempt: c.attempt,
          starts: c.starts.length,
        }),
        check('the last stoker up is still running', !up.hasExited()),
        check('the run went on after every kill', stuck === null, stuck),
      ],
      details: { kills, ...(stuck ? { stuck } : {}) },
    };
  },
};
