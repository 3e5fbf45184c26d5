/**
 * Dispatched execution end to end on the local backend: real Redis, real BullMQ, real
 * worker processes (`stoker worker`), fixture payloads.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import { QUEUES } from '../../common/keys.js';
import { readTaskProgress } from '../../common/progress.js';
import { bullConnection } from '../../common/redis.js';
import { isRunning } from '../../common/proc.js';
import { describeRun } from '../../orchestrator/cli/format.js';
import { eventually } from '../util/redis-server.js';
import {
  nodePayloadRun,
  payloadFixture,
  specFrom,
  startTestSystem,
  type TestSystem,
} from '../util/system.js';

let sys: TestSystem | undefined;
afterEach(async () => {
  await sys?.cleanup();
  sys = undefined;
});

const starts = (outDir: string) =>
  readFileSync(join(outDir, 'starts.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map(
      (l) =>
        JSON.parse(l) as { attempt: number; pid: number; resumeFrom: string | null; step: number },
    );

describe('a training run on the local backend', () => {
  it("mirrors the task's progress into its BullMQ job, live and at the end", async () => {
    sys = await startTestSystem();
    const runId = await sys.submit(
      nodePayloadRun('mirror', 'train-sim.mjs', { STEPS: 200, STEP_MS: 30 }),
    );
    const taskId = `${runId}.train`;
    const queue = new Queue(QUEUES.train, {
      connection: bullConnection(sys.redisUrl),
      prefix: sys.keys.bullPrefix,
    });
    try {
      const live = await eventually(
        'the job part way',
        async () => {
          const p = (await queue.getJob(taskId))?.progress;
          return typeof p === 'number' && p > 0 && p < 100 ? p : null;
        },
        60_000,
        50,
      );
      expect(live).toBeGreaterThan(0);
      const view = await sys.waitForPhase(runId, ['Succeeded', 'Failed']);
      expect(view.phase).toBe('Succeeded');
      expect((await queue.getJob(taskId))?.progress).toBe(100);
    } finally {
      await queue.close();
    }
  });

  it('goes from Pending to Succeeded and exposes progress, metrics and outputs', async () => {
    sys = await startTestSystem();
    const runId = await sys.submit(
      nodePayloadRun(
        'ok',
        'train-sim.mjs',
        { STEPS: 12, STEP_MS: 5 },
        { outputs: { checkpoint: 'final.json' } },
      ),
    );
    const view = await sys.waitForPhase(runId, ['Succeeded', 'Failed', 'Cancelled']);
    expect(view.phase).toBe('Succeeded');
    const task = view.stages[0]?.tasks[0];
    expect(task?.phase).toBe('Succeeded');
    expect(task?.attempt).toBe(1);
    expect(task?.progress.step).toBe(12);
    expect(task?.progress.totalSteps).toBe(12);
    expect(task?.progress.metrics.loss).toBeCloseTo(1 / 12);
    expect(task?.progress.checkpoint?.step).toBe(10);
    expect(task?.result).toMatchObject({ steps: 12 });
    // declared output resolved under the stage's directory; the artifact event adds `model`
    expect(view.stages[0]?.outputs.checkpoint).toMatch(/stages\/train\/final\.json$/);
    expect(view.stages[0]?.outputs.model).toBe(view.stages[0]?.outputs.checkpoint);
    expect(existsSync(task?.logFile ?? '')).toBe(true);
    expect(readFileSync(task?.logFile ?? '', 'utf8')).toContain('attempt 1 starting at step 0');
  });

  it('passes an earlier stage output to a later stage through ${stages.X.outputs.Y}', async () => {
    sys = await startTestSystem();
    const spec = specFrom({
      apiVersion: 'stoker/v1',
      kind: 'Pipeline',
      metadata: { name: 'chain' },
      spec: {
        stages: [
          {
            name: 'first',
            kind: 'train',
            payload: {
              command: [process.execPath, payloadFixture('train-sim.mjs')],
              env: { STEPS: 3, STEP_MS: 1 },
            },
            outputs: { model: 'final.json' },
          },
          {
            name: 'second',
            kind: 'evaluate',
            dependsOn: ['first'],
            payload: {
              command: [
                process.execPath,
                payloadFixture('train-sim.mjs'),
                '${stages.first.outputs.model}',
              ],
              env: { STEPS: 2, STEP_MS: 1 },
            },
          },
        ],
      },
    });
    const runId = await sys.submit(spec);
    const view = await sys.waitForPhase(runId, ['Succeeded', 'Failed']);
    expect(view.phase).toBe('Succeeded');
    const first = view.stages.find((s) => s.name === 'first');
    const second = view.stages.find((s) => s.name === 'second');
    expect(Date.parse(second?.startedAt ?? '')).toBeGreaterThanOrEqual(
      Date.parse(first?.finishedAt ?? ''),
    );
    const task = await sys.store.getTask(second?.tasks[0]?.id ?? '');
    expect(task?.payload.command[2]).toBe(first?.outputs.model);
  });

  it('retries a retryable failure with backoff and records each attempt', async () => {
    sys = await startTestSystem();
    const runId = await sys.submit(
      nodePayloadRun('flaky', 'train-sim.mjs', {
        STEPS: 6,
        STEP_MS: 5,
        FAIL_ATTEMPTS: 2,
        FAIL_AT: 3,
        CKPT_EVERY: 2,
      }),
    );
    const view = await sys.waitForPhase(runId, ['Succeeded', 'Failed']);
    expect(view.phase).toBe('Succeeded');
    const task = view.stages[0]?.tasks[0];
    expect(task?.attempt).toBe(3);
    expect(task?.history.map((h) => h.reason)).toEqual(['FAILURE', 'FAILURE', 'SUCCESS']);
    // attempt 2 and 3 resumed from the checkpoint written at step 2
    const outDir = join(view.runDir, 'stages', 'train');
    const s = starts(outDir);
    expect(s.map((x) => x.attempt)).toEqual([1, 2, 3]);
    expect(s[1]?.resumeFrom).toMatch(/ckpt-2\.json$/);
    expect(s[2]?.step).toBe(2);
  });

  it('fails a non-retryable exit at once, with the classification and the stderr tail', async () => {
    sys = await startTestSystem();
    const runId = await sys.submit(
      nodePayloadRun('baddata', 'train-sim.mjs', {
        STEPS: 6,
        STEP_MS: 5,
        FAIL_ATTEMPTS: 5,
        FAIL_AT: 2,
        FAIL_CODE: 65,
      }),
    );
    const view = await sys.waitForPhase(runId, ['Succeeded', 'Failed']);
    expect(view.phase).toBe('Failed');
    const task = view.stages[0]?.tasks[0];
    expect(task?.attempt).toBe(1);
    expect(task?.reason).toBe('BAD_DATA');
    expect(task?.exitCode).toBe(65);
    expect(task?.stderrTail.join('\n')).toContain('planned failure at step 2');
    expect(view.message).toContain('stage train failed');
    expect(task?.message).toContain('not retryable');
  });

  it("says what the failed attempt's stderr shows went wrong: class, evidence and hint", async () => {
    sys = await startTestSystem();
    const line = "OSError: [Errno 28] No space left on device: '/data/ckpt/step-400.pt'";
    const runId = await sys.submit(
      nodePayloadRun(
        'diskfull',
        'crash.mjs',
        { CRASH_LINE: line },
        { retry: { attempts: 1, backoff: { type: 'fixed', delay: '50ms' } } },
      ),
    );
    const view = await sys.waitForPhase(runId, ['Succeeded', 'Failed']);
    expect(view.phase).toBe('Failed');
    expect(view.stages[0]?.tasks[0]?.failure).toMatchObject({ class: 'DISK_FULL', evidence: line });
    expect(describeRun(view)).toContain('failure: DISK_FULL: a disk is full');
  });

  it('gives up after the last attempt of a retryable failure', async () => {
    sys = await startTestSystem();
    const runId = await sys.submit(
      nodePayloadRun(
        'alwaysfail',
        'train-sim.mjs',
        { STEPS: 6, STEP_MS: 1, FAIL_ATTEMPTS: 9, FAIL_AT: 1 },
        { retry: { attempts: 2, backoff: { type: 'fixed', delay: '50ms' } } },
      ),
    );
    const view = await sys.waitForPhase(runId, ['Succeeded', 'Failed']);
    expect(view.phase).toBe('Failed');
    expect(view.stages[0]?.tasks[0]?.attempt).toBe(2);
    expect(view.stages[0]?.tasks[0]?.message).toContain('gave up after 2 attempts');
  });

  it('warns once about malformed marker lines and finishes the run', async () => {
    sys = await startTestSystem();
    const runId = await sys.submit(nodePayloadRun('garbage', 'garbage.mjs'));
    const view = await sys.waitForPhase(runId, ['Succeeded', 'Failed']);
    expect(view.phase).toBe('Succeeded');
    const warnings = view.stages[0]?.tasks[0]?.warnings ?? [];
    expect(warnings.length).toBe(1);
    expect(warnings[0]).toMatch(/malformed/i);
  });

  it('retries a task whose worker was killed with SIGKILL, resuming from the last checkpoint', async () => {
    sys = await startTestSystem();
    const runId = await sys.submit(
      nodePayloadRun('kill9', 'train-sim.mjs', { STEPS: 40, STEP_MS: 50, CKPT_EVERY: 5 }),
    );
    const unitName = `${runId}.train-a1`;
    await eventually('a checkpoint of attempt 1', async () => {
      const p = await readTaskProgress(sys!.redis, sys!.keys, `${runId}.train`);
      return p.checkpoint && p.checkpoint.step >= 5;
    });
    const pid = Number(await sys.redis.hget(sys.keys.unit(unitName), 'pid'));
    const payloadPgid = Number(await sys.redis.hget(sys.keys.unit(unitName), 'payloadPgid'));
    process.kill(pid, 'SIGKILL');
    const view = await sys.waitForPhase(runId, ['Succeeded', 'Failed']);
    expect(view.phase).toBe('Succeeded');
    const task = view.stages[0]?.tasks[0];
    expect(task?.attempt).toBe(2);
    expect(task?.history[0]?.reason).toBe('WorkerLost');
    // the orphaned payload of attempt 1 was killed, and attempt 2 resumed
    expect(isRunning(payloadPgid)).toBe(false);
    const s = starts(join(view.runDir, 'stages', 'train'));
    expect(s[1]?.resumeFrom).toMatch(/ckpt-\d+\.json$/);
    expect(s[1]?.step).toBeGreaterThanOrEqual(5);
    expect(existsSync(join(view.runDir, 'stages', 'train', 'overlap'))).toBe(false);
  });

  it('cancels a running task: SIGTERM to the payload, run Cancelled, no retry', async () => {
    sys = await startTestSystem();
    const runId = await sys.submit(
      nodePayloadRun('cancel', 'train-sim.mjs', { HANG: 1, STEP_MS: 10 }),
    );
    await eventually(
      'the payload to make progress',
      async () => (await readTaskProgress(sys!.redis, sys!.keys, `${runId}.train`)).step === 2,
    );
    await sys.store.requestCancel(runId);
    const view = await sys.waitForPhase(runId, ['Succeeded', 'Failed', 'Cancelled']);
    expect(view.phase).toBe('Cancelled');
    const task = view.stages[0]?.tasks[0];
    expect(task?.phase).toBe('Cancelled');
    expect(task?.attempt).toBe(1);
    const outDir = join(view.runDir, 'stages', 'train');
    expect(readdirSync(outDir)).toContain('sigterm-1');
    // nothing is retried afterwards
    await new Promise((r) => setTimeout(r, 1500));
    expect((await sys.view(runId)).stages[0]?.tasks[0]?.attempt).toBe(1);
  });

  it('cancels queued work of a run before it starts', async () => {
    sys = await startTestSystem({ concurrency: { train: 1, steps: 1 } });
    const blocker = await sys.submit(nodePayloadRun('blocker', 'train-sim.mjs', { HANG: 1 }));
    await eventually('blocker running', async () => (await sys!.view(blocker)).phase === 'Running');
    const queued = await sys.submit(nodePayloadRun('queued', 'train-sim.mjs', { STEPS: 2 }));
    await eventually(
      'second run queued',
      async () => (await sys!.view(queued)).stages[0]?.tasks.length === 1,
    );
    await sys.store.requestCancel(queued);
    const view = await sys.waitForPhase(queued, ['Cancelled', 'Succeeded', 'Failed']);
    expect(view.phase).toBe('Cancelled');
    expect(view.stages[0]?.tasks[0]?.attempt).toBe(0);
    await sys.store.requestCancel(blocker);
    await sys.waitForPhase(blocker, ['Cancelled']);
  });

  it('writes status only when it changed', async () => {
    sys = await startTestSystem();
    const runId = await sys.submit(
      nodePayloadRun('quiet', 'train-sim.mjs', { STEPS: 3, STEP_MS: 1 }),
    );
    await sys.waitForPhase(runId, ['Succeeded']);
    const before = sys.controller.stats.writes;
    for (let i = 0; i < 5; i++) await sys.controller.reconcileRun(runId);
    expect(sys.controller.stats.writes).toBe(before);
  });

  it('kills and retries a task whose step counter stops moving (stallTimeout)', async () => {
    sys = await startTestSystem();
    const runId = await sys.submit(
      nodePayloadRun(
        'stall',
        'train-sim.mjs',
        { HANG: 1, STEP_MS: 10 },
        { stallTimeout: '1s', retry: { attempts: 2, backoff: { type: 'fixed', delay: '50ms' } } },
      ),
    );
    const view = await sys.waitForPhase(runId, ['Succeeded', 'Failed']);
    expect(view.phase).toBe('Failed');
    const task = view.stages[0]?.tasks[0];
    expect(task?.attempt).toBe(2);
    expect(task?.history.map((h) => h.reason)).toEqual(['Stalled', 'Stalled']);
    expect(task?.history[0]?.message).toContain('no step progress for 1 s');
  });

  it('fails a task that runs past its budget without retrying it', async () => {
    sys = await startTestSystem();
    const runId = await sys.submit(
      nodePayloadRun(
        'deadline',
        'train-sim.mjs',
        { HANG: 1 },
        { budget: { activeDeadline: '2s' } },
      ),
    );
    const view = await sys.waitForPhase(runId, ['Succeeded', 'Failed']);
    expect(view.phase).toBe('Failed');
    expect(view.stages[0]?.tasks[0]?.reason).toBe('DeadlineExceeded');
    expect(view.stages[0]?.tasks[0]?.attempt).toBe(1);
  });

  it("never passes the worker's Redis URL or unrelated secrets to the payload", async () => {
    sys = await startTestSystem({
      workerEnv: {
        ...process.env,
        AWS_SECRET_ACCESS_KEY: 'aws-secret',
        HF_TOKEN: 'hf-secret-value',
      },
    });
    const spec = nodePayloadRun('envcheck', 'ok-progress.mjs', { PRINT_ENV_VAR: 'HF_TOKEN' });
    spec.stages[0]?.payload.secretEnv.push({ name: 'HF_TOKEN', fromEnv: 'HF_TOKEN' });
    const runId = await sys.submit(spec);
    const view = await sys.waitForPhase(runId, ['Succeeded', 'Failed']);
    expect(view.phase).toBe('Succeeded');
    const env = JSON.parse(
      readFileSync(join(view.runDir, 'stages', 'train', 'env.json'), 'utf8'),
    ) as Record<string, string>;
    expect(env.STOKER_REDIS_URL).toBeUndefined();
    expect(env.REDIS_URL).toBeUndefined();
    expect(env.AWS_SECRET_ACCESS_KEY).toBeUndefined();
    expect(env.HF_TOKEN).toBe('hf-secret-value');
    expect(env.STOKER_TASK_ID).toBe(`${runId}.train`);
    const log = readFileSync(view.stages[0]?.tasks[0]?.logFile ?? '', 'utf8');
    expect(log).not.toContain('hf-secret-value');
    expect(log).toContain('[redacted]');
  });
});
