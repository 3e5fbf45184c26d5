/**
 * training-configs/fire-gpu-mini/pipeline.yaml with device=cpu, scaled down: the GPU
 * pipeline's graph (the `model` stage building a new model from a config, training from
 * it, self-play on a pool of 2, merge, evaluation, report) runs for real on the CPU, where
 * engine=auto resolves to tiny. It checks the engine rule end to end: every Python stage
 * logs the engine it ran, and the report's evaluation directories and its Engines line
 * say tiny on cpu. The hf engine needs transformers (bench/gpu-check.sh runs it on a GPU).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadSpecFile } from '../../common/spec/load.js';
import { startTestSystem, type TestSystem } from '../util/system.js';

const PIPELINE = join(
  import.meta.dirname,
  '..',
  '..',
  'training-configs',
  'fire-gpu-mini',
  'pipeline.yaml',
);

let sys: TestSystem | undefined;
afterEach(async () => {
  await sys?.cleanup();
  sys = undefined;
});

describe('training-configs/fire-gpu-mini/pipeline.yaml', () => {
  it('defaults to device cuda and engine auto, passed to every Python payload', async () => {
    const spec = await loadSpecFile(PIPELINE);
    expect(spec.params).toMatchObject({ device: 'cuda', engine: 'auto' });
    const python = spec.stages.filter((s) => s.payload.command.includes('${params.python}'));
    expect(python.map((s) => s.name)).toEqual([
      'model',
      'base',
      'teacher',
      'student',
      'selfplay',
      'final',
      'control',
      'eval-base',
      'eval-control',
      'eval-final',
    ]);
    for (const s of python) {
      const at = s.payload.command.indexOf('--backend');
      expect(s.payload.command.slice(at, at + 4), s.name).toEqual([
        '--backend',
        '${params.engine}',
        '--device',
        '${params.device}',
      ]);
    }
  });

  it('with device=cpu runs the whole graph on the tiny engine and says so in every log and the report', async () => {
    sys = await startTestSystem();
    const spec = await loadSpecFile(PIPELINE, {
      sets: [
        'spec.params.device=cpu',
        'spec.params.dialogues=48',
        'spec.params.seeds=40',
        'spec.params.testDialogues=12',
        'spec.params.baseSteps=6',
        'spec.params.teacherSteps=6',
        'spec.params.studentSteps=3',
        'spec.params.finalSteps=3',
        'spec.params.batchSize=8',
        'spec.params.maxNewTokens=12',
        'spec.stages[8].input.shardSize=20',
      ],
    });
    expect(spec.stages[8]?.name).toBe('selfplay');
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

    // The model stage wrote a tiny model directory, and base and teacher trained from it.
    const model = stage('model').outputs['model'] ?? '';
    for (const file of ['config.json', 'vocab.json', 'model.pt'])
      expect(existsSync(join(model, file)), file).toBe(true);
    const produced = stage('model').lineage?.produced.find((e) => e.ref === 'outputs.model');
    for (const trained of ['base', 'teacher'])
      expect(
        stage(trained).lineage?.consumed.find((e) => e.ref === 'stages.model.outputs.model')
          ?.sha256,
      ).toBe(produced?.sha256);
    expect(stage('selfplay').shards).toMatchObject({ total: 2, succeeded: 2, failed: 0 });

    // Every Python stage with a model says which engine ran: auto resolved from the device.
    for (const name of ['model', 'base', 'teacher', 'student', 'final', 'control', 'eval-final']) {
      const log = readFileSync(stage(name).tasks[0]?.logFile ?? '', 'utf8');
      expect(log, name).toContain('engine: tiny (auto, device cpu)');
    }

    // The report: the three models, and the engine each evaluation ran.
    const md = readFileSync(stage('report').outputs['report'] ?? '', 'utf8');
    expect(md).toContain('| base (baseline) | 1.00 |');
    expect(md).toContain(
      'Engines: base tiny (device cpu); control tiny (device cpu); final tiny (device cpu).',
    );
    const json = JSON.parse(readFileSync(stage('report').outputs['json'] ?? '', 'utf8')) as {
      models: Array<{ name: string; run: { engine: string; device: string } | null }>;
    };
    expect(json.models.map((m) => [m.name, m.run?.engine, m.run?.device])).toEqual([
      ['base', 'tiny', 'cpu'],
      ['control', 'tiny', 'cpu'],
      ['final', 'tiny', 'cpu'],
    ]);
  }, 480_000);
});
