/**
 * `stoker resume RUN` (orchestrator/resume.ts, orchestrator/controller/resume.ts) on a
 * real system (controller, dispatcher, local backend, pool workers) and the real CLI:
 * a failed and a cancelled run resumed from their last checkpoints with their succeeded
 * stages kept, a sharded stage that runs only its shards that did not succeed, and the
 * refusals (a run that has not ended Failed or Cancelled, a second concurrent resume).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Queue } from 'bullmq';
import { silentLogger } from '../../common/logger.js';
import { readTaskProgress } from '../../common/progress.js';
import { bullConnection, connectRedis } from '../../common/redis.js';
import { Controller } from '../../orchestrator/controller/controller.js';
import {
  readResumeRequest,
  requestResume,
  RunNotResumableError,
} from '../../orchestrator/resume.js';
import type { RunView } from '../../orchestrator/views.js';
import { stoker } from '../util/cli.js';
import { eventually } from '../util/redis-server.js';
import { payloadFixture, specFrom, startTestSystem, type TestSystem } from '../util/system.js';

let sys: TestSystem | undefined;
afterEach(async () => {
  await sys?.cleanup();
  sys = undefined;
});

const cli = (args: string[]) =>
  stoker(args, { home: sys!.home, redisUrl: sys!.redisUrl, prefix: sys!.prefix });

/** A pipeline: `prep` (2 quick steps), then `train` (train-sim with `env`, no retries). */
function twoStages(name: string, env: Record<string, string | number>) {
  const stage = (n: string, e: Record<string, string | number>) => ({
    name: n,
    kind: 'train',
    payload: { command: [process.execPath, payloadFixture('train-sim.mjs')], env: e },
    retry: { attempts: 1 },
    terminationGracePeriod: '5s',
  });
  return specFrom({
    apiVersion: 'stoker/v1',
    kind: 'Pipeline',
    metadata: { name },
    spec: {
      stages: [
        stage('prep', { STEPS: 2, STEP_MS: 1 }),
        { ...stage('train', env), dependsOn: ['prep'] },
      ],
    },
  });
}

/** The lines of a train-sim stage's starts.jsonl: one per start of its payload. */
function starts(view: RunView, stage: string) {
  const file = join(view.runDir, 'stages', stage, 'starts.jsonl');
  return readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { attempt: number; resumeFrom: string | null; step: number });
}

describe('stoker resume', () => {
  it('resumes a failed run from the failed stage’s last checkpoint, keeping the stage that succeeded', async () => {
    sys = await startTestSystem();
    const spec = twoStages('resume-failed', {
      STEPS: 20,
      STEP_MS: 5,
      CKPT_EVERY: 5,
      FAIL_ATTEMPTS: 1,
      FAIL_AT: 12,
    });
    const runId = await sys.submit(spec);
    const failed = await sys.waitForPhase(runId, ['Succeeded', 'Failed'], 90_000);
    expect(failed.phase).toBe('Failed');
    expect(failed.stages.map((s) => s.phase)).toEqual(['Succeeded', 'Failed']);
    const ckpt = join(failed.runDir, 'stages', 'train', 'ckpt-10.json');
    expect(failed.stages[1]?.tasks[0]?.progress.checkpoint).toEqual({ path: ckpt, step: 10 });

    const r = await cli(['resume', 'resume-failed', '--wait', '--json']);
    expect(r.exitCode, r.all).toBe(0);
    const view = JSON.parse(r.stdout) as RunView;
    expect(view.phase).toBe('Succeeded');
    // prep ran once; train's second attempt started from the checkpoint of the first.
    expect(starts(view, 'prep')).toHaveLength(1);
    expect(starts(view, 'train')).toMatchObject([
      { attempt: 1, resumeFrom: null, step: 0 },
      { attempt: 2, resumeFrom: ckpt, step: 10 },
    ]);
    const task = view.stages[1]?.tasks[0];
    // A new retry budget: the attempt numbers go on, the history keeps the first.
    expect(task).toMatchObject({ phase: 'Succeeded', attempt: 2, maxAttempts: 2 });
    expect(task?.history.map((h) => [h.attempt, h.reason])).toEqual([
      [1, 'FAILURE'],
      [2, 'SUCCESS'],
    ]);
    expect(view.stages[0]?.tasks[0]).toMatchObject({ attempt: 1, maxAttempts: 1 });
    // The run says it was resumed, by whom, from what; so does lineage.json.
    expect(view.resumes).toHaveLength(1);
    expect(view.resumes[0]).toMatchObject({
      by: expect.stringMatching(/^cli:/),
      from: { phase: 'Failed', message: expect.stringContaining('stage train failed') },
      stages: [
        { name: 'train', phase: 'Failed', checkpoint: { path: ckpt, step: 10 }, shards: null },
      ],
    });
    const types = view.conditions.map((c) => `${c.type}=${c.status}`);
    expect(types).toContain('Complete=True');
    expect(types).toContain('Resumed=True');
    expect(types).not.toContain('Failed=True');
    expect(view.stages[1]?.conditions.find((c) => c.type === 'Resumed')?.message).toBe(
      `resumed from checkpoint ${ckpt} (step 10)`,
    );
    const status = await cli(['status', runId]);
    expect(status.stdout).toMatch(/\n {2}resumed at \S+ by cli:\S+ \(it was Failed\)\n/);
    const lineage = JSON.parse(readFileSync(join(view.runDir, 'lineage.json'), 'utf8'));
    expect(lineage.resumes).toEqual(view.resumes);
    // Finished: the request is gone, the run no longer active.
    expect(await sys.redis.exists(sys.keys.runResume(runId))).toBe(0);
    expect(await sys.store.activeRunIds()).not.toContain(runId);

    // A run that succeeded cannot be resumed; nothing changes.
    const again = await cli(['resume', runId]);
    expect(again.exitCode).toBe(1);
    expect(again.stderr).toContain(
      `run ${runId} is Succeeded: only a run that ended Failed or Cancelled can be resumed`,
    );
    expect((await sys.view(runId)).resumes).toHaveLength(1);
  });

  it('resumes a run cancelled mid-way from the checkpoint its payload wrote on SIGTERM', async () => {
    sys = await startTestSystem();
    const spec = twoStages('resume-cancelled', { STEPS: 30, STEP_MS: 100, CKPT_EVERY: 1000 });
    const runId = await sys.submit(spec);
    const taskId = `${runId}.train`;
    await eventually(
      'train past step 3',
      async () => ((await readTaskProgress(sys!.redis, sys!.keys, taskId)).step ?? 0) >= 3,
      60_000,
    );
    await sys.store.requestCancel(runId);
    const cancelled = await sys.waitForPhase(runId, ['Cancelled', 'Failed', 'Succeeded']);
    expect(cancelled.phase).toBe('Cancelled');
    const checkpoint = cancelled.stages[1]?.tasks[0]?.progress.checkpoint;
    expect(checkpoint?.step).toBeGreaterThanOrEqual(3);

    const r = await cli(['resume', runId]);
    expect(r.exitCode, r.all).toBe(0);
    expect(r.stdout).toContain(`resume requested for ${runId} (it was Cancelled)`);
    const view = await eventually(
      'the resumed run to succeed',
      async () => {
        const v = await sys!.view(runId);
        return v.resumes.length === 1 && v.phase === 'Succeeded' ? v : null;
      },
      60_000,
    );
    expect(view.cancelRequestedAt).toBeNull();
    expect(starts(view, 'prep')).toHaveLength(1);
    expect(starts(view, 'train')).toMatchObject([
      { attempt: 1, resumeFrom: null, step: 0 },
      { attempt: 2, resumeFrom: checkpoint?.path, step: checkpoint?.step },
    ]);
    expect(view.resumes[0]).toMatchObject({ from: { phase: 'Cancelled' } });
  });

  it('refuses a second resume while the first is pending: exactly one goes through', async () => {
    sys = await startTestSystem();
    const spec = specFrom({
      apiVersion: 'stoker/v1',
      kind: 'TrainingRun',
      metadata: { name: 'resume-twice' },
      spec: {
        payload: { command: [process.execPath, payloadFixture('crash.mjs')] },
        retry: { attempts: 1 },
      },
    });
    const runId = await sys.submit(spec);
    expect((await sys.waitForPhase(runId, ['Failed', 'Succeeded'])).phase).toBe('Failed');
    const both = await Promise.allSettled([
      requestResume(sys.redis, sys.keys, runId, 'test:a'),
      requestResume(sys.redis, sys.keys, runId, 'test:b'),
    ]);
    expect(both.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const refused = both.find((r) => r.status === 'rejected');
    expect(refused?.reason).toBeInstanceOf(RunNotResumableError);
    // The crash happens again: the run ends Failed once more, after one more attempt.
    const view = await eventually('the resumed run to fail again', async () => {
      const v = await sys!.view(runId);
      return v.resumes.length > 0 && v.phase === 'Failed' ? v : null;
    });
    expect(view.resumes).toHaveLength(1);
    expect(view.stages[0]?.tasks[0]).toMatchObject({ attempt: 2, maxAttempts: 2 });
    // Unknown runs and bad input are refused by the CLI.
    const unknown = await cli(['resume', 'no-such-run']);
    expect(unknown.exitCode).toBe(1);
    expect(unknown.stderr).toContain('no run matches "no-such-run"');
  });

  it('waits for a job still active, and finishes a resume a controller left half done', async () => {
    sys = await startTestSystem();
    const s = sys;
    const spec = specFrom({
      apiVersion: 'stoker/v1',
      kind: 'TrainingRun',
      metadata: { name: 'resume-crash' },
      spec: {
        payload: { command: [process.execPath, payloadFixture('crash.mjs')] },
        retry: { attempts: 1 },
      },
    });
    const runId = await s.submit(spec);
    const taskId = `${runId}.train`;
    expect((await s.waitForPhase(runId, ['Failed', 'Succeeded'])).phase).toBe('Failed');
    // From here on, controllers of the test's making, one pass at a time.
    await s.controller.stop();
    await requestResume(s.redis, s.keys, runId, 'test');
    /** A controller whose `train` queue answers `patch`'s methods instead. */
    const controller = (
      patch: Partial<Record<keyof Queue, unknown>> = {},
      extra: Partial<ConstructorParameters<typeof Controller>[0]> = {},
    ) => {
      const train = new Proxy(s.queues.train, {
        get: (t, p) => {
          const v = (patch as Record<string | symbol, unknown>)[p] ?? Reflect.get(t, p);
          return typeof v === 'function' ? v.bind(t) : v;
        },
      });
      return new Controller({
        redis: s.redis,
        subscriber: s.redis,
        keys: s.keys,
        store: s.store,
        queues: { ...s.queues, train },
        connection: bullConnection(s.redisUrl),
        backend: s.backend,
        log: silentLogger(),
        ...extra,
      });
    };

    // The failed job still active (its processor recording the end): nothing is written.
    await controller({ getJobState: async () => 'active' }).reconcileRun(runId);
    expect((await s.view(runId)).phase).toBe('Failed');
    expect(await readResumeRequest(s.redis, s.keys, runId)).toMatchObject({ state: 'requested' });
    expect(await s.store.activeRunIds()).toContain(runId);
    expect(await s.queues.train.getJobState(taskId)).toBe('failed');

    // Redis fails as the job is added: the run is resumed, its job not yet queued.
    const broken = controller({ add: async () => Promise.reject(new Error('connection lost')) });
    await expect(broken.reconcileRun(runId)).rejects.toThrow('connection lost');
    expect((await s.view(runId)).phase).toBe('Running');
    expect((await s.store.getTaskStatuses([taskId]))[taskId]).toMatchObject({
      phase: 'Pending',
      reason: 'Resumed',
      maxAttempts: 2,
    });
    expect(await readResumeRequest(s.redis, s.keys, runId)).toMatchObject({ state: 'queued' });
    expect(await s.queues.train.getJobState(taskId)).toBe('unknown');

    // The next controller queues it, once; it runs (and crashes again).
    const subscriber = await connectRedis(s.redisUrl);
    const c = controller({}, { subscriber, resyncMs: 500 });
    await c.start();
    try {
      const view = await eventually('the resumed run to fail again', async () => {
        const v = await s.view(runId);
        return v.phase === 'Failed' ? v : null;
      });
      expect(view.resumes).toMatchObject([{ by: 'test', from: { phase: 'Failed' } }]);
      expect(view.stages[0]?.tasks[0]?.history.map((h) => h.attempt)).toEqual([1, 2]);
      expect(await s.redis.exists(s.keys.runResume(runId))).toBe(0);
    } finally {
      await c.stop();
      subscriber.disconnect();
    }
  });

  it('resumes a sharded stage: the shards that succeeded are kept, the others run', async () => {
    sys = await startTestSystem();
    const lines = Array.from({ length: 20 }, (_, i) => JSON.stringify({ id: `item-${i}` }));
    lines.splice(7, 0, '{not json');
    const input = join(sys.home, 'items.jsonl');
    writeFileSync(input, `${lines.join('\n')}\n`);
    const spec = specFrom({
      apiVersion: 'stoker/v1',
      kind: 'Pipeline',
      metadata: { name: 'resume-shards' },
      spec: {
        stages: [
          {
            name: 'gen',
            kind: 'generate',
            input: { file: input, shardSize: 5 },
            pool: { name: 'gen-resume', maxReplicas: 1, replicas: 1 },
            failurePolicy: { maxFailedShards: 0 },
            retry: { attempts: 1 },
            payload: {
              command: [process.execPath, payloadFixture('server.mjs')],
              env: { STATE_DIR: sys.home },
            },
          },
        ],
      },
    });
    const runId = await sys.submit(spec);
    const failed = await sys.waitForPhase(runId, ['Failed', 'Succeeded'], 90_000);
    expect(failed.phase).toBe('Failed');
    const before = await sys.store.shardOutcomes(runId, 'gen');
    const bad = before.find((o) => o.phase === 'Failed');
    expect(bad).toMatchObject({ index: 1, reason: 'BAD_DATA' });
    const kept = before.filter((o) => o.phase === 'Succeeded');
    expect(kept.length).toBeGreaterThan(0);
    // The bad line is fixed where the shard reads it; then the run is resumed.
    const shard = (await sys.store.getTask(bad!.taskId))?.shard;
    const fixed = readFileSync(shard!.input, 'utf8')
      .split('\n')
      .filter((l) => !l.startsWith('{not'));
    writeFileSync(shard!.input, fixed.join('\n'));

    const r = await cli(['resume', runId, '--wait']);
    expect(r.exitCode, r.all).toBe(0);
    const view = await sys.view(runId);
    expect(view.phase).toBe('Succeeded');
    expect(view.stages[0]?.shards).toMatchObject({ total: 5, succeeded: 5, failed: 0, items: 20 });
    expect(view.resumes[0]?.stages).toEqual([
      {
        name: 'gen',
        phase: 'Failed',
        checkpoint: null,
        shards: { kept: kept.length, rerun: 5 - kept.length },
      },
    ]);
    // The shards that had succeeded were not run again: their outcomes are as they were.
    const after = await sys.store.shardOutcomes(runId, 'gen');
    for (const k of kept) expect(after.find((o) => o.taskId === k.taskId)).toEqual(k);
    const manifest = JSON.parse(readFileSync(view.stages[0]!.outputs.shards!, 'utf8'));
    expect(manifest.shards).toHaveLength(5);
    expect(manifest.failed).toEqual([]);
  });
});
