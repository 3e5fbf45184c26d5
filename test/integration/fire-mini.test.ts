/**
 * training-configs/fire-mini/pipeline.yaml end to end, scaled down (few dialogues, a
 * few training steps): every stage of the FIRE graph runs for real (stoker_fire.synth,
 * `stoker data`, stoker_fire.train/selfplay/evaluate on the tiny backend, `stoker report`)
 * through the controller, the dispatcher and a pool of 2 workers. It checks the wiring,
 * the lineage and the report, not the numbers (the demo's full size shows those).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadSpecFile } from '../../common/spec/load.js';
import { startTestSystem, type TestSystem } from '../util/system.js';

const FIRE_MINI = join(
  import.meta.dirname,
  '..',
  '..',
  'training-configs',
  'fire-mini',
  'pipeline.yaml',
);

let sys: TestSystem | undefined;
afterEach(async () => {
  await sys?.cleanup();
  sys = undefined;
});

describe('training-configs/fire-mini/pipeline.yaml', () => {
  it('runs the whole FIRE graph: data, training, self-play on a pool, merge, evaluation, report and lineage', async () => {
    sys = await startTestSystem();
    const spec = await loadSpecFile(FIRE_MINI, {
      sets: [
        'spec.params.dialogues=48',
        'spec.params.seeds=40',
        'spec.params.testDialogues=12',
        'spec.params.baseSteps=6',
        'spec.params.teacherSteps=6',
        'spec.params.studentSteps=3',
        'spec.params.finalSteps=3',
        'spec.params.batchSize=8',
        'spec.params.maxNewTokens=12',
        'spec.stages[7].input.shardSize=20',
      ],
    });
    expect(spec.stages[7]?.name).toBe('selfplay');
    const runId = await sys.submit(spec);
    const view = await sys.waitForPhase(runId, ['Succeeded', 'Failed'], 420_000);
    const failed = view.stages.find((s) => s.phase === 'Failed');
    expect(view.phase, JSON.stringify(failed?.tasks[0]?.stderrTail ?? failed?.message)).toBe(
      'Succeeded',
    );
    const stage = (name: string) => {
      const s = view.stages.find((x) => x.name === name);
      if (!s) throw new Error(`no stage ${name}`);
      return s;
    };

    // Self-play ran as 2 shards on the pool; the merge read exactly the seed dialogues
    // and the manifest, and the final model trained on what the merge produced.
    expect(stage('selfplay').shards).toMatchObject({ total: 2, succeeded: 2, failed: 0 });
    const merged = stage('merge').lineage?.produced.find((e) => e.ref === 'outputs.dialogues');
    expect(merged?.records).toBeGreaterThanOrEqual(48);
    const consumedByViews = stage('final-views').lineage?.consumed.find(
      (e) => e.ref === 'stages.merge.outputs.dialogues',
    );
    expect(consumedByViews?.sha256).toBe(merged?.sha256);
    const finalInputs = stage('final').lineage?.consumed.map((e) => e.ref) ?? [];
    expect(finalInputs).toEqual(
      expect.arrayContaining([
        'stages.base.outputs.model',
        'stages.views.outputs.answers',
        'stages.final-views.outputs.student',
      ]),
    );
    const baseModel = stage('base').lineage?.produced.find((e) => e.ref === 'outputs.model');
    expect(baseModel?.kind).toBe('directory');
    expect(
      stage('final').lineage?.consumed.find((e) => e.ref === 'stages.base.outputs.model')?.sha256,
    ).toBe(baseModel?.sha256);

    // The report: three models side by side, the picture, and the lineage table.
    const report = stage('report').outputs['report'] ?? '';
    expect(existsSync(report)).toBe(true);
    const md = readFileSync(report, 'utf8');
    expect(md).toContain('| base (baseline) | 1.00 |');
    expect(md).toMatch(/\| control \|/);
    expect(md).toMatch(/\| final \|/);
    expect(md).toContain('## Lineage');
    expect(existsSync(stage('report').outputs['picture'] ?? '')).toBe(true);
    const json = JSON.parse(readFileSync(stage('report').outputs['json'] ?? '', 'utf8')) as {
      models: Array<{ name: string; free: { dialogues: number } }>;
    };
    expect(json.models.map((m) => [m.name, m.free.dialogues])).toEqual([
      ['base', 12],
      ['control', 12],
      ['final', 12],
    ]);
    // The run directory's lineage.json holds every stage that consumed something.
    const lineage = JSON.parse(readFileSync(join(view.runDir, 'lineage.json'), 'utf8')) as {
      stages: Record<string, unknown>;
    };
    expect(Object.keys(lineage.stages)).toEqual(expect.arrayContaining(['final', 'eval-final']));
  }, 480_000);
});
