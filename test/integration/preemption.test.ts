/**
 * Cooperative preemption end to end on the local backend, as `stoker up` does it on its
 * first Ctrl-C or SIGTERM (System.stop('preempt')): the payload gets SIGTERM, writes a
 * checkpoint within its grace period and exits PREEMPTED; the task is requeued without
 * spending an attempt; the next controller resumes it from that checkpoint's step, not
 * from step 0; the final step count is exact. (The Kubernetes twin, an evicted pod, is in
 * test/kubernetes/backend-e2e.test.ts.)
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { connectRedis } from '../../common/redis.js';
import { RunStore } from '../../orchestrator/store.js';
import { buildRunView } from '../../orchestrator/views.js';
import { eventually } from '../util/redis-server.js';
import { nodePayloadRun, startTestSystem, type TestSystem } from '../util/system.js';

const systems: TestSystem[] = [];
afterEach(async () => {
  for (const s of systems.splice(0).reverse()) await s.cleanup();
});

/** The one file called `name` under `dir`. */
function findFile(dir: string, name: string): string {
  const hits = (readdirSync(dir, { recursive: true }) as string[]).filter(
    (p) => p.split('/').pop() === name,
  );
  expect(hits).toHaveLength(1);
  return join(dir, hits[0] as string);
}

it('a drained controller checkpoints the payload, requeues it without spending an attempt, and the next one resumes from that step', async () => {
  const STEPS = 150;
  const first = await startTestSystem();
  systems.push(first);
  const runId = await first.submit(
    nodePayloadRun(
      'preempt',
      'train-sim.mjs',
      { STEPS, STEP_MS: 40, CKPT_EVERY: 1000 },
      { retry: { attempts: 1 }, terminationGracePeriod: '30s' },
    ),
  );
  // Some steps in, and no periodic checkpoint (CKPT_EVERY > STEPS): the only checkpoint
  // there will be is the one the SIGTERM handler writes.
  await eventually(
    'the payload at step 10',
    async () => ((await first.view(runId)).stages[0]?.tasks[0]?.progress.step ?? 0) >= 10,
  );
  await first.stop('preempt');

  const redis = await connectRedis(first.redisUrl);
  const stopped = await buildRunView(new RunStore(redis, first.keys), redis, first.keys, runId);
  redis.disconnect();
  const task = stopped.stages[0]?.tasks[0];
  expect(task?.phase, JSON.stringify(task)).not.toBe('Failed');
  const sigtermStep = Number(readFileSync(findFile(stopped.runDir, 'sigterm-1'), 'utf8'));
  expect(sigtermStep).toBeGreaterThanOrEqual(10);

  // A new controller on the same Redis and prefix picks the run up.
  const second = await startTestSystem({ prefix: first.prefix });
  systems.push(second);
  const done = await second.waitForPhase(runId, ['Succeeded', 'Failed'], 120_000);
  const t = done.stages[0]?.tasks[0];
  expect(done.phase, JSON.stringify(t)).toBe('Succeeded');
  // One attempt allowed, and the run still succeeded on its second execution: the
  // preempted one (its own number and log) did not spend the budget.
  expect(t?.maxAttempts).toBe(1);
  expect(t?.history.map((h) => [h.attempt, h.reason])).toEqual([
    [1, 'PREEMPTED'],
    [2, 'SUCCESS'],
  ]);

  const starts = readFileSync(findFile(done.runDir, 'starts.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { attempt: number; resumeFrom: string | null; step: number });
  expect(starts).toHaveLength(2);
  expect(starts[0]).toMatchObject({ resumeFrom: null, step: 0 });
  // Resumed from the SIGTERM checkpoint's step, not from 0.
  expect(starts[1]?.resumeFrom).toMatch(new RegExp(`ckpt-${sigtermStep}\\.json$`));
  expect(starts[1]?.step).toBe(sigtermStep);
  const final = JSON.parse(readFileSync(findFile(done.runDir, 'final.json'), 'utf8')) as {
    step: number;
  };
  expect(final.step).toBe(STEPS);
  expect(t?.progress.step).toBe(STEPS);
});
