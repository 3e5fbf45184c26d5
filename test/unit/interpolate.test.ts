import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { isNonRetryable } from '../../common/errors.js';
import {
  findReferences,
  interpolate,
  InterpolationError,
  resolveStage,
} from '../../common/spec/interpolate.js';
import type {
  InterpolationContext,
  StageResolutionContext,
} from '../../common/spec/interpolate.js';
import { makePipeline } from '../builders/spec.js';

describe('findReferences', () => {
  it.each([
    ['the run id', 'x-${run.id}', [{ kind: 'run', field: 'id', text: '${run.id}', offset: 2 }]],
    ['the run dir', '${run.dir}/logs', [{ kind: 'run', field: 'dir' }]],
    [
      'this stage',
      '${stage.name}:${stage.outputDir}',
      [
        { kind: 'stage', field: 'name' },
        { kind: 'stage', field: 'outputDir' },
      ],
    ],
    [
      "an upstream stage's output",
      '--model=${stages.teacher-1.outputs.checkpoint}',
      [{ kind: 'stageOutput', stage: 'teacher-1', output: 'checkpoint', offset: 8 }],
    ],
    ['a param', '${params.steps}', [{ kind: 'param', name: 'steps' }]],
    ['an env variable', '${env.HF_HOME}/hub', [{ kind: 'env', name: 'HF_HOME' }]],
    ['nothing in plain text', 'python3 train.py --lr 1e-4 $HOME', []],
    ['nothing in an escape', '$${run.id} costs $$5', []],
    ['the reference after an escape', '$${x}${run.id}', [{ kind: 'run', field: 'id', offset: 5 }]],
  ])('finds %s', (_name, template, expected) => {
    const found = findReferences(template);
    expect(found.errors).toEqual([]);
    expect(found.references).toMatchObject(expected);
    expect(found.references).toHaveLength(expected.length);
  });

  it.each([
    ['an unclosed reference', 'a ${run.id', /"\$\{run\.id" has no closing "\}"/],
    ['an empty reference', '${}', /empty reference/],
    ['spaces inside', '${ run.id }', /no spaces inside/],
    ['nesting', '${stages.${params.s}.outputs.x}', /cannot be nested/],
    [
      'an unknown root',
      '${secrets.TOKEN}',
      /unknown reference root "secrets" \(expected run, stage, stages, params or env\)/,
    ],
    ['an unknown run field', '${run.name}', /expected \$\{run\.id\} or \$\{run\.dir\}/],
    [
      'an unknown stage field',
      '${stage.dir}',
      /expected \$\{stage\.name\} or \$\{stage\.outputDir\}/,
    ],
    [
      'a stage output without "outputs"',
      '${stages.a.checkpoint}',
      /expected \$\{stages\.<stage>\.outputs\.<output>\}/,
    ],
    ['a param path too deep', '${params.a.b}', /expected \$\{params\.<name>\}/],
    ['a bare root', '${env}', /expected \$\{env\.<NAME>\}/],
    ['a double dot', '${run..id}', /names separated by single dots/],
    ['a strange character', '${params.a/b}', /"a\/b" is not a name/],
    ['a shell-style default', '${params.x:-3}', /"x:-3" is not a name/],
  ])('reports %s', (_name, template, message) => {
    const found = findReferences(template);
    expect(found.errors).toHaveLength(1);
    expect(found.errors[0]?.message).toMatch(message);
  });

  it('reports every error in a template and keeps the good references', () => {
    const found = findReferences('${run.id} ${nope.x} ${params.p} ${run.dir');
    expect(found.references.map((r) => r.text)).toEqual(['${run.id}', '${params.p}']);
    expect(found.errors.map((e) => e.offset)).toEqual([10, 32]);
  });
});

describe('interpolate', () => {
  const ctx: InterpolationContext = {
    run: { id: 'r-123', dir: '/runs/r-123' },
    stage: { name: 'gen', outputDir: '/runs/r-123/gen' },
    stages: { teacher: { outputs: { checkpoint: '/runs/r-123/teacher/final.pt' } } },
    params: { steps: 100, lr: 0.0001, fast: true },
    env: { HF_HOME: '/cache' },
  };

  it.each([
    ['plain text unchanged', 'python3', 'python3'],
    ['the run id', 'run-${run.id}', 'run-r-123'],
    ['several references', '${run.dir}/${stage.name}', '/runs/r-123/gen'],
    [
      "an upstream stage's output",
      '--model=${stages.teacher.outputs.checkpoint}',
      '--model=/runs/r-123/teacher/final.pt',
    ],
    ['a number param', '${params.steps}', '100'],
    ['a small number as JavaScript prints it', '${params.lr}', '0.0001'],
    ['a boolean param', '${params.fast}', 'true'],
    ['an env value', '${env.HF_HOME}/hub', '/cache/hub'],
    ['an escape', '$${run.id} is ${run.id}', '${run.id} is r-123'],
    ['a lone dollar', 'cost: $5 and $$', 'cost: $5 and $$'],
  ])('resolves %s', (_name, template, expected) => {
    expect(interpolate(template, ctx)).toBe(expected);
  });

  it.each([
    ['a stage that has not run', '${stages.eval.outputs.score}', /stage "eval" has no outputs yet/],
    [
      'an output the stage does not have',
      '${stages.teacher.outputs.ckpt}',
      /stage "teacher" has no output "ckpt" \(it has checkpoint\)/,
    ],
    ['an unknown param', '${params.nope}', /no parameter "nope"/],
    ['an env variable not in the map', '${env.HOME}', /"HOME" is not in the stage's payload\.env/],
    ['a syntax error', 'x ${run.id', /no closing/],
    ['a prototype property', '${params.constructor}', /no parameter "constructor"/],
  ])('fails clearly on %s', (_name, template, message) => {
    expect(() => interpolate(template, ctx)).toThrow(message);
  });

  it('fails on ${env.*} where no env map is given, and the error is not retryable', () => {
    const { env: _env, ...withoutEnv } = ctx;
    let caught: unknown;
    try {
      interpolate('${env.HF_HOME}', withoutEnv);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(InterpolationError);
    expect((caught as Error).message).toMatch(/not in env values/);
    expect(isNonRetryable(caught)).toBe(true);
  });
});

describe('resolveStage', () => {
  const spec = makePipeline('fire')
    .params({ steps: 10 })
    .defaults({ env: { RUN: '${run.id}' } })
    .stage('teacher', (s) => s.outputs({ checkpoint: 'final.pt' }))
    .stage('gen', (s) =>
      s
        .kind('generate')
        .dependsOn('teacher')
        .command([
          'python3',
          'gen.py',
          '--model',
          '${stages.teacher.outputs.checkpoint}',
          '--steps',
          '${params.steps}',
          '--log',
          '${env.LOG}',
        ])
        .env({ LOG: '${stage.outputDir}/gen.log' })
        .workingDir('${run.dir}/work')
        .outputs({
          dialogues: 'dialogues-${run.id}.jsonl',
          absolute: '/data/shared.jsonl',
          remote: 's3://bucket/${stage.name}/x',
          nested: '${stage.outputDir}/sub/y',
        }),
    )
    .normalize();
  const gen = spec.stages[1];
  if (!gen) throw new Error('the builder lost a stage');

  const ctx: StageResolutionContext = {
    run: { id: 'r1', dir: '/runs/r1' },
    params: spec.params,
    stageOutputDir: '/runs/r1/gen',
    stages: { teacher: { outputs: { checkpoint: '/runs/r1/teacher/final.pt' } } },
  };

  it('resolves command, env, workingDir and outputs', () => {
    expect(resolveStage(gen, ctx)).toEqual({
      command: [
        'python3',
        'gen.py',
        '--model',
        '/runs/r1/teacher/final.pt',
        '--steps',
        '10',
        '--log',
        '/runs/r1/gen/gen.log',
      ],
      env: { RUN: 'r1', LOG: '/runs/r1/gen/gen.log' },
      workingDir: '/runs/r1/work',
      outputs: {
        dialogues: path.resolve('/runs/r1/gen', 'dialogues-r1.jsonl'),
        absolute: '/data/shared.jsonl',
        remote: 's3://bucket/gen/x',
        nested: '/runs/r1/gen/sub/y',
      },
    });
  });

  it('resolves a relative output under the stage output directory', () => {
    const teacher = spec.stages[0];
    if (!teacher) throw new Error('the builder lost a stage');
    const resolved = resolveStage(teacher, {
      ...ctx,
      stageOutputDir: '/runs/r1/teacher',
      stages: {},
    });
    expect(resolved.outputs).toEqual({ checkpoint: '/runs/r1/teacher/final.pt' });
    expect(resolved.workingDir).toBeUndefined();
  });

  it('names the stage and the field when an upstream output is missing at run time', () => {
    expect(() => resolveStage(gen, { ...ctx, stages: {} })).toThrow(
      /stage "gen" payload\.command\[3\]: \$\{stages\.teacher\.outputs\.checkpoint\}: stage "teacher" has no outputs yet/,
    );
  });
});
