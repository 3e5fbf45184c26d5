/**
 * The real PyTorch payload (`-m stoker_examples.smoke_train`, /usr/bin/python3 with
 * Debian's python3-torch) through the whole system: loss falls, checkpoints, resume after kill -9.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { readTaskProgress } from '../../common/progress.js';
import { loadSpecFile } from '../../common/spec/load.js';
import { eventually } from '../util/redis-server.js';
import { startTestSystem, type TestSystem } from '../util/system.js';

const SMOKE = join(import.meta.dirname, '..', '..', 'training-configs', 'smoke-cpu.yaml');

let sys: TestSystem | undefined;
afterEach(async () => {
  await sys?.cleanup();
  sys = undefined;
});

describe('training-configs/smoke-cpu.yaml', () => {
  it('trains for real: Succeeded, loss fell, checkpoint and metrics outputs written', async () => {
    sys = await startTestSystem();
    const spec = await loadSpecFile(SMOKE, {
      sets: ['spec.params.steps=80', 'spec.params.stepDelay=0', 'spec.params.checkpointEvery=40'],
    });
    const runId = await sys.submit(spec);
    const view = await sys.waitForPhase(runId, ['Succeeded', 'Failed'], 120_000);
    expect(view.phase, JSON.stringify(view.stages[0]?.tasks[0]?.stderrTail)).toBe('Succeeded');
    const task = view.stages[0]?.tasks[0];
    expect(task?.result).toMatchObject({ lossFell: true, steps: 80 });
    const result = task?.result as { initialLoss: number; finalLoss: number };
    expect(result.finalLoss).toBeLessThan(result.initialLoss);
    expect(task?.progress.checkpoint?.step).toBe(80);
    expect(existsSync(view.stages[0]?.outputs.checkpoint ?? '')).toBe(true);
    expect(existsSync(view.stages[0]?.outputs.metrics ?? '')).toBe(true);
  });

  it('resumes from its last checkpoint after its worker is killed with SIGKILL', async () => {
    sys = await startTestSystem();
    const spec = await loadSpecFile(SMOKE, {
      sets: [
        'spec.params.steps=200',
        'spec.params.stepDelay=0.03',
        'spec.params.checkpointEvery=20',
      ],
    });
    const runId = await sys.submit(spec);
    const taskId = `${runId}.train`;
    await eventually(
      'a checkpoint at step 40 or later',
      async () =>
        ((await readTaskProgress(sys!.redis, sys!.keys, taskId)).checkpoint?.step ?? 0) >= 40,
      90_000,
    );
    const pid = Number(await sys.redis.hget(sys.keys.unit(`${taskId}-a1`), 'pid'));
    process.kill(pid, 'SIGKILL');
    const view = await sys.waitForPhase(runId, ['Succeeded', 'Failed'], 120_000);
    expect(view.phase).toBe('Succeeded');
    const task = view.stages[0]?.tasks[0];
    expect(task?.attempt).toBe(2);
    expect(task?.history[0]?.reason).toBe('WorkerLost');
    const result = task?.result as {
      startStep: number;
      resumedFrom: string | null;
      lossFell: boolean;
    };
    expect(result.resumedFrom).toMatch(/step-\d+\.pt$/);
    expect(result.startStep).toBeGreaterThanOrEqual(40);
    expect(result.lossFell).toBe(true);
  });
});

describe('training-configs/generate-cpu.yaml', () => {
  it('scores every input item exactly once on a pool of 2 workers with a resident model', async () => {
    sys = await startTestSystem();
    const spec = await loadSpecFile(
      join(import.meta.dirname, '..', '..', 'training-configs', 'generate-cpu.yaml'),
      {
        sets: ['spec.params.items=60', 'spec.params.loadDelay=0'],
      },
    );
    const runId = await sys.submit(spec);
    const view = await sys.waitForPhase(runId, ['Succeeded', 'Failed'], 180_000);
    expect(view.phase, view.message ?? '').toBe('Succeeded');
    const score = view.stages.find((s) => s.name === 'score');
    expect(score?.shards).toMatchObject({ total: 3, succeeded: 3, failed: 0, items: 60 });
    const manifest = JSON.parse(readFileSync(score?.outputs.shards ?? '', 'utf8')) as {
      shards: Array<{ path: string }>;
    };
    const rows = manifest.shards
      .flatMap((s) => readFileSync(s.path, 'utf8').trim().split('\n'))
      .map((l) => JSON.parse(l) as { id: string; score: number });
    expect(rows).toHaveLength(60);
    expect(new Set(rows.map((r) => r.id)).size).toBe(60);
    expect(rows.every((r) => Number.isFinite(r.score))).toBe(true);
  });
});
