import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SpecError } from '../../common/errors.js';
import type { SpecIssue } from '../../common/errors.js';
import {
  formatPath,
  loadSpecFile,
  parseSetExpression,
  parseSpec,
} from '../../common/spec/index.js';
import type { NormalizedSpec } from '../../common/spec/index.js';
import { makePipeline, makeRun } from '../builders/spec.js';

/** Removes the common indentation and the first newline, so YAML can sit indented in a test. */
function dedent(text: string): string {
  const lines = text.replace(/^\n/, '').split('\n');
  const indent = Math.min(
    ...lines.filter((l) => l.trim()).map((l) => /^ */.exec(l)?.[0].length ?? 0),
  );
  return lines.map((l) => l.slice(indent)).join('\n');
}

function specError(fn: () => unknown): SpecError {
  try {
    fn();
  } catch (err) {
    if (err instanceof SpecError) return err;
    throw err;
  }
  throw new Error('expected a SpecError, but the spec was accepted');
}

async function specErrorAsync(fn: () => Promise<unknown>): Promise<SpecError> {
  try {
    await fn();
  } catch (err) {
    if (err instanceof SpecError) return err;
    throw err;
  }
  throw new Error('expected a SpecError, but the spec was accepted');
}

interface Expected {
  path: string;
  message: RegExp;
  line?: number | null;
  column?: number;
}

/** Every expected issue is present (path, message, and line where given; null: no line). */
function expectIssues(issues: SpecIssue[], expected: Expected[]): void {
  for (const e of expected) {
    const match = issues.find((i) => i.path === e.path && e.message.test(i.message));
    expect(
      match,
      `no issue at ${e.path} matching ${String(e.message)} in:\n${JSON.stringify(issues, null, 2)}`,
    ).toBeDefined();
    if (e.line === null) expect(match?.line).toBeUndefined();
    else if (e.line !== undefined) expect(match?.line).toBe(e.line);
    if (e.column !== undefined) expect(match?.column).toBe(e.column);
  }
}

const FIRE = dedent(`
  apiVersion: stoker/v1
  kind: Pipeline
  metadata:
    name: fire-mini
    labels: {team: rl}
  spec:
    params:
      steps: 100
      model: tiny
    defaults:
      image: stoker/payload:1
      resources: {gpus: 8, gpuType: h100, memory: 64Gi}
      retry: {attempts: 5, backoff: {type: fixed}}
      env: {HF_HOME: /cache, LOG_LEVEL: info}
      stallTimeout: 10m
    stages:
      - name: teacher
        kind: train
        payload:
          command: [python3, train.py, --steps, "\${params.steps}", --out, "\${stage.outputDir}"]
          env: {LOG_LEVEL: debug}
        outputs: {checkpoint: final.pt}
        resources: {nodes: 2}
      - name: selfplay
        kind: generate
        dependsOn: [teacher]
        payload:
          command: [python3, generate.py, --teacher, "\${stages.teacher.outputs.checkpoint}"]
        outputs: {dialogues: dialogues.jsonl}
        resources: {gpus: 1}
        retry: {backoff: {delay: 30s}}
      - name: report
        kind: report
        dependsOn: [selfplay]
        payload:
          command: [python3, report.py, "\${stages.selfplay.outputs.dialogues}", "\${stages.teacher.outputs.checkpoint}"]
        terminationGracePeriod: 5
`);

describe('parseSpec: valid specs', () => {
  it('normalises a three-stage pipeline, keeping stage order and merging defaults field by field', () => {
    const spec = parseSpec(FIRE);
    expect(spec).toMatchObject({
      apiVersion: 'stoker/v1',
      kind: 'Pipeline',
      name: 'fire-mini',
      labels: { team: 'rl' },
    });
    expect(spec.params).toEqual({ steps: 100, model: 'tiny' });
    expect(spec.stages.map((s) => [s.name, s.kind, s.dependsOn])).toEqual([
      ['teacher', 'train', []],
      ['selfplay', 'generate', ['teacher']],
      ['report', 'report', ['selfplay']],
    ]);
    const [teacher, selfplay, report] = spec.stages;
    // The stage wins, field by field; env key by key.
    expect(teacher?.resources).toEqual({ gpus: 8, nodes: 2, gpuType: 'h100', memory: '64Gi' });
    expect(teacher?.payload.env).toEqual({ HF_HOME: '/cache', LOG_LEVEL: 'debug' });
    expect(teacher?.image).toBe('stoker/payload:1');
    expect(teacher?.stallTimeoutSeconds).toBe(600);
    expect(teacher?.retry).toEqual({ attempts: 5, backoff: { type: 'fixed', delay: 2 } });
    expect(selfplay?.resources).toEqual({ gpus: 1, nodes: 1, gpuType: 'h100', memory: '64Gi' });
    expect(selfplay?.retry).toEqual({ attempts: 5, backoff: { type: 'fixed', delay: 30 } });
    // A CPU step takes only cpu/memory from the default resources.
    expect(report?.resources).toEqual({ gpus: 0, nodes: 1, memory: '64Gi' });
    expect(report?.terminationGracePeriodSeconds).toBe(5);
    // References stay as written: they are resolved at run time.
    expect(selfplay?.payload.command).toContain('${stages.teacher.outputs.checkpoint}');
  });

  it('turns a TrainingRun into one stage named train, with the built-in defaults', () => {
    const spec = parseSpec(
      dedent(`
        apiVersion: stoker/v1
        kind: TrainingRun
        metadata: {name: sft}
        spec:
          params: {lr: 0.0001}
          payload: {command: [python3, train.py, --lr, "\${params.lr}", 3]}
          outputs: {checkpoint: /data/out/final.pt}
      `),
    );
    expect(spec.stages).toEqual([
      {
        name: 'train',
        kind: 'train',
        dependsOn: [],
        payload: {
          command: ['python3', 'train.py', '--lr', '${params.lr}', '3'],
          env: {},
          secretEnv: [],
        },
        outputs: { checkpoint: '/data/out/final.pt' },
        resources: { gpus: 0, nodes: 1 },
        image: undefined,
        retry: { attempts: 3, backoff: { type: 'exponential', delay: 2 } },
        activeDeadlineSeconds: undefined,
        stallTimeoutSeconds: 0,
        terminationGracePeriodSeconds: 30,
        priority: undefined,
        maxFailedShards: 0,
        shardParams: {},
        kubernetes: {
          namespace: undefined,
          imagePullPolicy: undefined,
          serviceAccountName: undefined,
          nodeSelector: {},
          tolerations: [],
          priorityClassName: undefined,
          volumes: { pvc: [], shmSize: null },
          queueName: undefined,
          ttlSecondsAfterFinished: 86400,
          runAsUser: undefined,
          fsGroup: undefined,
          gpusPerNodeMax: 8,
          cpuDistributed: false,
          writableRoot: false,
        },
      },
    ] satisfies NormalizedSpec['stages']);
  });

  it.each([
    ['a SelfPlay run is one generate stage', 'SelfPlay', 'generate', 'generate'],
    ['an Evaluation run is one evaluate stage', 'Evaluation', 'evaluate', 'evaluate'],
    ['a TrainingRun is one train stage', 'TrainingRun', 'train', 'train'],
  ] as const)('%s', (_name, kind, stageName, stageKind) => {
    const spec = makeRun(kind).command(['python3', 'x.py']).normalize();
    expect(spec.stages.map((s) => [s.name, s.kind])).toEqual([[stageName, stageKind]]);
  });

  it.each<[string, () => NormalizedSpec, (spec: NormalizedSpec) => void]>([
    [
      'a stage may depend on one listed after it (order in the list is free)',
      () =>
        makePipeline()
          .stage('b', (s) => s.dependsOn('a'))
          .stage('a')
          .normalize(),
      (spec) => expect(spec.stages.map((s) => s.name)).toEqual(['b', 'a']),
    ],
    [
      'a multi-node CPU training stage (gloo) is allowed when it says so',
      () =>
        makePipeline()
          .stage('t', (s) => s.nodes(4).gpus(0).set('kubernetes', { cpuDistributed: true }))
          .normalize(),
      (spec) => expect(spec.stages[0]?.resources).toEqual({ gpus: 0, nodes: 4 }),
    ],
    [
      'an upstream stage two dependsOn away may be referenced',
      () =>
        makePipeline()
          .stage('a', (s) => s.outputs({ ckpt: 'a.pt' }))
          .stage('b', (s) => s.dependsOn('a'))
          .stage('c', (s) => s.dependsOn('b').command(['x', '${stages.a.outputs.ckpt}']))
          .normalize(),
      (spec) => expect(spec.stages[2]?.payload.command[1]).toBe('${stages.a.outputs.ckpt}'),
    ],
    [
      'an escaped $${ is not a reference, so it needs no such stage',
      () => makeRun().command(['echo', '$${stages.nope.outputs.x}']).normalize(),
      (spec) => expect(spec.stages[0]?.payload.command[1]).toBe('$${stages.nope.outputs.x}'),
    ],
    [
      '${env.X} may name a variable from spec.defaults.env',
      () =>
        makePipeline()
          .defaults({ env: { CACHE: '/c' } })
          .stage('a', (s) => s.command(['x', '--cache', '${env.CACHE}']))
          .normalize(),
      (spec) => expect(spec.stages[0]?.payload.env).toEqual({ CACHE: '/c' }),
    ],
    [
      'durations are seconds or strings with a unit',
      () => makeRun().stallTimeout('90s').retry(2, { delay: '1m' }).normalize(),
      (spec) => {
        expect(spec.stages[0]?.stallTimeoutSeconds).toBe(90);
        expect(spec.stages[0]?.retry).toEqual({
          attempts: 2,
          backoff: { type: 'exponential', delay: 60 },
        });
      },
    ],
    [
      'a repeated dependsOn entry counts once',
      () =>
        makePipeline()
          .stage('a')
          .stage('b', (s) => s.dependsOn('a', 'a'))
          .normalize(),
      (spec) => expect(spec.stages[1]?.dependsOn).toEqual(['a']),
    ],
  ])('%s', (_name, build, check) => check(build()));

  it('accepts anchors and merge keys, and a --set changes only the place it names', () => {
    const spec = parseSpec(
      dedent(`
        apiVersion: stoker/v1
        kind: Pipeline
        metadata: {name: anchors}
        spec:
          stages:
            - &base
              name: a
              kind: train
              payload: {command: [python3, a.py], env: {SEED: 1}}
            - <<: *base
              name: b
      `),
      { sets: ['spec.stages[1].payload.env.SEED=2'] },
    );
    expect(spec.stages.map((s) => [s.name, s.payload.env['SEED']])).toEqual([
      ['a', '1'],
      ['b', '2'],
    ]);
  });
});

describe('parseSpec: --set overrides', () => {
  const base = (): string =>
    makePipeline('base')
      .params({ steps: 10 })
      .stage('a', (s) => s.command(['python3', 'a.py', '${params.steps}']))
      .stage('b', (s) => s.dependsOn('a'))
      .toYaml();

  it.each<[string, string[], (spec: NormalizedSpec) => void]>([
    [
      'a number stays a number',
      ['spec.params.steps=100'],
      (s) => expect(s.params['steps']).toBe(100),
    ],
    [
      'a quoted number is a string',
      ['spec.params.steps="100"'],
      (s) => expect(s.params['steps']).toBe('100'),
    ],
    [
      'a new param is created',
      ['spec.params.seed=7'],
      (s) => expect(s.params).toEqual({ steps: 10, seed: 7 }),
    ],
    [
      'a flow list is a list',
      ['spec.stages[1].dependsOn=[a]', 'spec.stages[0].payload.command=[python3, train.py]'],
      (s) => expect(s.stages[0]?.payload.command).toEqual(['python3', 'train.py']),
    ],
    [
      'missing intermediate mappings are created',
      ['spec.stages[0].payload.env.SEED=3'],
      (s) => expect(s.stages[0]?.payload.env).toEqual({ SEED: '3' }),
    ],
    [
      'a dotted numeric segment indexes a list',
      ['spec.stages.1.image=img:2'],
      (s) => expect(s.stages[1]?.image).toBe('img:2'),
    ],
    ['metadata is reachable too', ['metadata.name=renamed'], (s) => expect(s.name).toBe('renamed')],
    [
      'a quoted key may hold dots',
      ['metadata.labels["app.kubernetes.io/part-of"]=fire'],
      (s) => expect(s.labels).toEqual({ 'app.kubernetes.io/part-of': 'fire' }),
    ],
    [
      'an empty value is an empty string',
      ['metadata.description='],
      (s) => expect(s.description).toBe(''),
    ],
    [
      'later sets win',
      ['spec.params.steps=1', 'spec.params.steps=2'],
      (s) => expect(s.params['steps']).toBe(2),
    ],
  ])('%s', (_name, sets, check) => check(parseSpec(base(), { sets })));

  it.each<[string, string[], Expected[]]>([
    [
      'a set without "=" is refused',
      ['spec.params.steps'],
      [{ path: '', message: /--set spec\.params\.steps: expected path=value/ }],
    ],
    [
      'an index beyond the end of a list names the --set',
      ['spec.stages[5].image=x'],
      [
        {
          path: 'spec.stages[5]',
          message:
            /--set spec\.stages\[5\]\.image=x: spec\.stages has 2 item\(s\): index 5 is beyond its end/,
          line: null,
        },
      ],
    ],
    [
      'indexing into a scalar names the --set',
      ['metadata.name.first=x'],
      [
        {
          path: 'metadata.name',
          message:
            /--set metadata\.name\.first=x: metadata\.name is the string "base", which cannot be indexed/,
        },
      ],
    ],
    [
      'a key on a list is refused',
      ['spec.stages.first.image=x'],
      [{ path: 'spec.stages', message: /spec\.stages is a list: index it with a number/ }],
    ],
    [
      '[i] on a mapping is refused',
      ['metadata[0]=x'],
      [{ path: 'metadata', message: /is a mapping, not a list/ }],
    ],
    [
      'a value that is not YAML is refused',
      ['spec.params.x=[a'],
      [{ path: '', message: /the value is not valid YAML/ }],
    ],
    [
      'a value from a --set that fails validation has its path and no line',
      ['spec.stages[0].resources.gpus=eight'],
      [
        {
          path: 'spec.stages[0].resources.gpus',
          message: /expected a number, got the string "eight"/,
          line: null,
        },
      ],
    ],
    [
      'a prototype key is refused',
      ['spec.params.__proto__=x'],
      [{ path: '', message: /"__proto__" is not a spec field/ }],
    ],
  ])('%s', (_name, sets, expected) => {
    expectIssues(specError(() => parseSpec(base(), { sets })).issues, expected);
  });

  it('parses set expressions into tokens and a YAML value', () => {
    expect(parseSetExpression('spec.stages[0].payload.env.SEED=3')).toEqual({
      tokens: [
        { key: 'spec' },
        { key: 'stages' },
        { index: 0 },
        { key: 'payload' },
        { key: 'env' },
        { key: 'SEED' },
      ],
      value: 3,
    });
    expect(parseSetExpression('a.b=x=y')).toEqual({
      tokens: [{ key: 'a' }, { key: 'b' }],
      value: 'x=y',
    });
    expect(parseSetExpression('a..b=1')).toMatch(/empty path segment/);
  });
});

describe('parseSpec: schema errors name the YAML path and line', () => {
  it('reports a wrong type at its line and column', () => {
    const text = dedent(`
      apiVersion: stoker/v1
      kind: TrainingRun
      metadata: {name: sft}
      spec:
        payload: {command: [python3, train.py]}
        resources:
          gpus: eight
    `);
    const err = specError(() => parseSpec(text, { file: 'sft.yaml' }));
    expect(err.issues).toEqual([
      {
        path: 'spec.resources.gpus',
        message: 'expected a number, got the string "eight"',
        line: 7,
        column: 11,
      },
    ]);
    expect(err.message).toContain('sft.yaml: invalid spec (1 problem)');
    expect(err.message).toContain('spec.resources.gpus (line 7, column 11)');
  });

  it('reports every problem at once, schema and graph together, in file order', () => {
    const text = dedent(`
      apiVersion: stoker/v2
      kind: Pipeline
      metadata: {name: Fire}
      spec:
        stages:
          - name: a
            kind: trian
            dependOn: [b]
            payload: {command: [python3, a.py]}
          - name: b
            kind: train
            dependsOn: [ghost]
            payload: {command: [python3, b.py, "\${params.nope}"]}
    `);
    const err = specError(() => parseSpec(text));
    expectIssues(err.issues, [
      { path: 'apiVersion', message: /must be "stoker\/v1"/, line: 1 },
      { path: 'metadata.name', message: /lower-case letters.*\(got "Fire"\)/, line: 3 },
      {
        path: 'spec.stages[0].kind',
        message: /expected one of train, generate.*did you mean "train"/,
        line: 7,
      },
      {
        path: 'spec.stages[0].dependOn',
        message: /unknown field "dependOn" \(did you mean "dependsOn"\?\)/,
        line: 8,
        column: 7,
      },
      {
        path: 'spec.stages[1].dependsOn[0]',
        message: /dependsOn names stage "ghost", which does not exist/,
        line: 12,
      },
      { path: 'spec.stages[1].payload.command[2]', message: /no parameter "nope"/, line: 13 },
    ]);
    expect(err.issues).toHaveLength(6);
    expect(err.issues.map((i) => i.line)).toEqual([1, 3, 7, 8, 12, 13]);
  });

  it.each<[string, string, Expected[]]>([
    [
      'a payload given as a shell string is refused with a pointer to argv arrays',
      makeRun()
        .inlineStage((s) => s.payloadValue('python train.py'))
        .toYaml(),
      [{ path: 'spec.payload', message: /argv array.*never a shell string/ }],
    ],
    [
      'a command given as a shell string is refused the same way',
      makeRun().command('python train.py --steps 100').toYaml(),
      [
        {
          path: 'spec.payload.command',
          message: /an argv array such as \["python3", "train.py".*never a shell string/,
        },
      ],
    ],
    [
      'a missing command is required',
      makeRun()
        .inlineStage((s) => s.payloadValue({ env: { A: 1 } }))
        .toYaml(),
      [{ path: 'spec.payload.command', message: /required: an argv array/ }],
    ],
    [
      'an empty command is refused',
      makeRun().command([]).toYaml(),
      [{ path: 'spec.payload.command', message: /at least the program/ }],
    ],
    [
      'a missing field points at the mapping that lacks it',
      'apiVersion: stoker/v1\nkind: Pipeline\nmetadata: {name: x}\nspec:\n  stages:\n    - name: a\n      payload: {command: [x]}\n',
      [{ path: 'spec.stages[0].kind', message: /required: expected one of train/, line: 6 }],
    ],
    [
      'an unknown kind suggests the closest one, and the header is still checked',
      'apiVersion: v1\nkind: TrainRun\nmetadata: {name: x}\nspec: {}\n',
      [
        {
          path: 'kind',
          message:
            /must be one of Pipeline, TrainingRun, SelfPlay, Evaluation \(got "TrainRun"\); did you mean "TrainingRun"/,
          line: 2,
        },
        { path: 'apiVersion', message: /must be "stoker\/v1"/, line: 1 },
      ],
    ],
    [
      'a missing kind says so',
      'apiVersion: stoker/v1\nmetadata: {name: x}\nspec: {}\n',
      [{ path: 'kind', message: /it is missing/ }],
    ],
    [
      'a bad duration says what a duration looks like',
      makeRun().stallTimeout('10 minutes').toYaml(),
      [
        {
          path: 'spec.stallTimeout',
          message: /"10 minutes" is not a duration \(expected e\.g\. 30s, 10m, 2h\)/,
        },
      ],
    ],
    [
      'an env variable name must be one',
      makeRun().env({ 'BAD-NAME': 'x' }).toYaml(),
      [
        {
          path: 'spec.payload.env.BAD-NAME',
          message: /"BAD-NAME" is not a valid key: an environment variable name/,
        },
      ],
    ],
    [
      'an unknown top-level field is refused',
      makeRun().with('extra', 1).toYaml(),
      [{ path: 'extra', message: /unknown field "extra"/ }],
    ],
    [
      'a payload field one level too high says where it belongs',
      makePipeline()
        .stage('a', (s) => s.set('env', { A: '1' }).set('gpus', 1))
        .toYaml(),
      [
        { path: 'spec.stages[0].env', message: /unknown field "env" \(it belongs under payload\)/ },
        {
          path: 'spec.stages[0].gpus',
          message: /unknown field "gpus" \(it belongs under resources\)/,
        },
      ],
    ],
    [
      'stages in a TrainingRun says which kind has them',
      makeRun().with('spec', { stages: [] }).toYaml(),
      [{ path: 'spec.stages', message: /unknown field "stages" \(only kind: Pipeline has it\)/ }],
    ],
    [
      'an empty pipeline is refused',
      makePipeline().toYaml(),
      [{ path: 'spec.stages', message: /at least one stage/ }],
    ],
    [
      'a bad stage name says what a name is',
      makePipeline().stage('Teacher_1').toYaml(),
      [{ path: 'spec.stages[0].name', message: /lower-case letters, digits and "-"/ }],
    ],
  ])('%s', (_name, text, expected) => {
    expectIssues(specError(() => parseSpec(text)).issues, expected);
  });
});

describe('parseSpec: graph checks', () => {
  it.each<[string, () => string, Expected[]]>([
    [
      'duplicate stage names',
      () => makePipeline().stage('a').stage('a').toYaml(),
      [
        {
          path: 'spec.stages[1].name',
          message: /stage name "a" is already used by spec\.stages\[0\]/,
        },
      ],
    ],
    [
      'dependsOn naming a stage that does not exist',
      () =>
        makePipeline()
          .stage('teacher')
          .stage('b', (s) => s.dependsOn('teachr'))
          .toYaml(),
      [
        {
          path: 'spec.stages[1].dependsOn[0]',
          message:
            /dependsOn names stage "teachr", which does not exist \(did you mean "teacher"\?\)/,
        },
      ],
    ],
    [
      'a stage depending on itself',
      () =>
        makePipeline()
          .stage('a', (s) => s.dependsOn('a'))
          .toYaml(),
      [{ path: 'spec.stages[0].dependsOn[0]', message: /stage "a" depends on itself/ }],
    ],
    [
      'a cycle is named stage by stage',
      () =>
        makePipeline()
          .stage('a', (s) => s.dependsOn('c'))
          .stage('b', (s) => s.dependsOn('a'))
          .stage('c', (s) => s.dependsOn('b'))
          .toYaml(),
      [
        {
          path: 'spec.stages[0].dependsOn',
          message: /^dependsOn forms a cycle: a -> c -> b -> a$/,
        },
      ],
    ],
    [
      'a dangling reference to an output the stage does not declare',
      () =>
        makePipeline()
          .stage('teacher', (s) => s.outputs({ checkpoint: 'final.pt' }))
          .stage('gen', (s) =>
            s.dependsOn('teacher').command(['x', '${stages.teacher.outputs.ckpt}']),
          )
          .toYaml(),
      [
        {
          path: 'spec.stages[1].payload.command[1]',
          message:
            /dangling reference: stage "teacher" declares no output "ckpt" \(it declares checkpoint\)/,
        },
      ],
    ],
    [
      'a reference to a stage that is not upstream',
      () =>
        makePipeline()
          .stage('teacher', (s) => s.outputs({ checkpoint: 'final.pt' }))
          .stage('gen', (s) => s.command(['x', '${stages.teacher.outputs.checkpoint}']))
          .toYaml(),
      [
        {
          path: 'spec.stages[1].payload.command[1]',
          message: /stage "teacher" is not upstream of "gen": add teacher to dependsOn/,
        },
      ],
    ],
    [
      'a reference to a stage that does not exist',
      () =>
        makePipeline()
          .stage('a', (s) => s.outputs({ out: '${stages.ghost.outputs.x}' }))
          .toYaml(),
      [{ path: 'spec.stages[0].outputs.out', message: /stage "ghost" does not exist/ }],
    ],
    [
      'a stage reading its own outputs',
      () =>
        makePipeline()
          .stage('a', (s) => s.outputs({ x: 'x' }).workingDir('${stages.a.outputs.x}'))
          .toYaml(),
      [{ path: 'spec.stages[0].payload.workingDir', message: /cannot read its own outputs/ }],
    ],
    [
      'an unknown parameter',
      () => makeRun().params({ steps: 1 }).command(['x', '${params.step}']).toYaml(),
      [
        {
          path: 'spec.payload.command[1]',
          message: /\$\{params\.step\}: no parameter "step" in spec\.params \(it has steps\)/,
        },
      ],
    ],
    [
      'an unknown reference root',
      () => makeRun().command(['x', '${secrets.TOKEN}']).toYaml(),
      [{ path: 'spec.payload.command[1]', message: /unknown reference root "secrets"/ }],
    ],
    [
      'malformed ${ syntax',
      () => makeRun().env({ A: '${run.id', B: '${}', C: '${ run.id }' }).toYaml(),
      [
        { path: 'spec.payload.env.A', message: /no closing "\}"/ },
        { path: 'spec.payload.env.B', message: /empty reference/ },
        { path: 'spec.payload.env.C', message: /no spaces/ },
      ],
    ],
    [
      '${env.X} naming a variable the stage does not set',
      () => makeRun().command(['x', '${env.HOME}']).toYaml(),
      [{ path: 'spec.payload.command[1]', message: /"HOME" is not in this stage's payload\.env/ }],
    ],
    [
      '${env.X} inside an env value',
      () => makeRun().env({ A: '1', B: '${env.A}' }).toYaml(),
      [{ path: 'spec.payload.env.B', message: /env values cannot use \$\{env\.\*\}/ }],
    ],
    [
      '${env.X} naming a secret',
      () =>
        makeRun()
          .inlineStage((s) =>
            s.secretEnv('HF_TOKEN', { fromEnv: 'HF_TOKEN' }).command(['x', '${env.HF_TOKEN}']),
          )
          .toYaml(),
      [{ path: 'spec.payload.command[1]', message: /"HF_TOKEN" is a secret/ }],
    ],
    [
      'a variable both plain and secret',
      () =>
        makeRun()
          .inlineStage((s) => s.env({ HF_TOKEN: 'x' }).secretEnv('HF_TOKEN'))
          .toYaml(),
      [{ path: 'spec.payload.secretEnv[0].name', message: /set in payload\.env too/ }],
    ],
    [
      "defaults.env reading one stage's outputs",
      () =>
        makePipeline()
          .defaults({ env: { CKPT: '${stages.a.outputs.x}' } })
          .stage('a')
          .toYaml(),
      [{ path: 'spec.defaults.env.CKPT', message: /applies to every stage/ }],
    ],
    [
      'a CPU step asking for GPUs',
      () =>
        makePipeline()
          .stage('m', (s) => s.kind('merge').gpus(1))
          .toYaml(),
      [
        {
          path: 'spec.stages[0].resources.gpus',
          message: /CPU steps run on one node without GPUs/,
        },
      ],
    ],
    [
      'a CPU step spanning nodes',
      () =>
        makePipeline()
          .stage('p', (s) => s.kind('prepare').nodes(2))
          .toYaml(),
      [
        {
          path: 'spec.stages[0].resources.nodes',
          message: /CPU steps run on one node without GPUs/,
        },
      ],
    ],
  ])('%s', (_name, build, expected) => {
    expectIssues(specError(() => parseSpec(build())).issues, expected);
  });

  it('finds two independent cycles and reports each once', () => {
    const text = makePipeline()
      .stage('a', (s) => s.dependsOn('b'))
      .stage('b', (s) => s.dependsOn('a'))
      .stage('c', (s) => s.dependsOn('d'))
      .stage('d', (s) => s.dependsOn('c'))
      .toYaml();
    const messages = specError(() => parseSpec(text)).issues.map((i) => i.message);
    expect(messages).toEqual([
      'dependsOn forms a cycle: a -> b -> a',
      'dependsOn forms a cycle: c -> d -> c',
    ]);
  });

  it('gives graph problems their line in the file', () => {
    const text = dedent(`
      apiVersion: stoker/v1
      kind: Pipeline
      metadata: {name: g}
      spec:
        stages:
          - name: a
            kind: train
            payload: {command: [python3, a.py]}
          - name: b
            kind: train
            dependsOn:
              - a
              - nope
            payload: {command: [python3, b.py]}
    `);
    expectIssues(specError(() => parseSpec(text)).issues, [
      {
        path: 'spec.stages[1].dependsOn[1]',
        message: /"nope", which does not exist/,
        line: 13,
        column: 11,
      },
    ]);
  });
});

describe('parseSpec: input that is not a spec', () => {
  const billionLaughs = dedent(`
    a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
    h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
    i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
  `);

  it.each<[string, string, Expected[]]>([
    ['an empty file', '', [{ path: '', message: /^the file is empty$/ }]],
    ['a file of blank lines', '\n  \n\n', [{ path: '', message: /^the file is empty$/ }]],
    ['a file of comments only', '# nothing here\n', [{ path: '', message: /the file is empty/ }]],
    [
      'text that is not YAML',
      'apiVersion: stoker/v1\nkind: [Pipeline\n',
      [{ path: '', message: /not valid YAML: Flow sequence/, line: 3 }],
    ],
    ['a bad indent', 'a: 1\n  b: 2\n', [{ path: '', message: /not valid YAML/, line: 1 }]],
    [
      'a top level that is a list',
      '- a\n- b\n',
      [{ path: '', message: /top level must be a mapping.*not a list/ }],
    ],
    [
      'a top level that is a scalar',
      'python train.py\n',
      [{ path: '', message: /top level must be a mapping.*not the string "python train.py"/ }],
    ],
    [
      'two YAML documents',
      'apiVersion: stoker/v1\n---\napiVersion: stoker/v1\n',
      [{ path: '', message: /more than one YAML document/, line: 2 }],
    ],
    [
      'a duplicate key',
      'apiVersion: stoker/v1\nkind: TrainingRun\nmetadata: {name: x}\nkind: Pipeline\n',
      [{ path: 'kind', message: /duplicate key/, line: 4, column: 1 }],
    ],
    [
      'a duplicate key deep inside',
      'apiVersion: stoker/v1\nkind: TrainingRun\nmetadata: {name: x}\nspec:\n  payload:\n    command: [a]\n    command: [b]\n',
      [{ path: 'spec.payload.command', message: /duplicate key/, line: 7 }],
    ],
    ['a YAML bomb (billion laughs)', billionLaughs, [{ path: '', message: /YAML bomb/ }]],
    [
      'an unknown tag',
      'a: !python/object x\n',
      [
        {
          path: '',
          message:
            /Unresolved tag: !python\/object \(specs use plain YAML values, no custom tags\)/,
          line: 1,
        },
      ],
    ],
    [
      'a __proto__ key',
      'apiVersion: stoker/v1\n__proto__: {polluted: true}\n',
      [{ path: '__proto__', message: /not allowed as a key/ }],
    ],
  ])('refuses %s', (_name, text, expected) => {
    expectIssues(specError(() => parseSpec(text)).issues, expected);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });
});

describe('loadSpecFile', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'stoker-spec-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('loads a file and applies --set overrides', async () => {
    const file = path.join(dir, 'fire.yaml');
    await writeFile(file, FIRE);
    const spec = await loadSpecFile(file, { sets: ['spec.params.steps=5'] });
    expect(spec.params['steps']).toBe(5);
    expect(spec.stages).toHaveLength(3);
  });

  it('names the file in errors', async () => {
    const file = path.join(dir, 'bad.yaml');
    await writeFile(file, makeRun().gpus(-1).toYaml());
    const err = await specErrorAsync(() => loadSpecFile(file));
    expect(err.file).toBe(file);
    expect(err.message).toContain(`${file}: invalid spec`);
    expectIssues(err.issues, [{ path: 'spec.resources.gpus', message: /must be at least 0/ }]);
  });

  it('refuses a 50 MB file from its size, before reading it', async () => {
    const file = path.join(dir, 'huge.yaml');
    await writeFile(file, Buffer.alloc(50 * 1024 * 1024, 'a: 1\n'));
    const err = await specErrorAsync(() => loadSpecFile(file));
    expect(err.issues).toEqual([
      { path: '', message: 'the file is 50 MiB, larger than the 1 MiB a spec may be' },
    ]);
  });

  it('honours a smaller maxBytes', async () => {
    const file = path.join(dir, 'small.yaml');
    await writeFile(file, FIRE);
    const err = await specErrorAsync(() => loadSpecFile(file, { maxBytes: 100 }));
    expectIssues(err.issues, [{ path: '', message: /larger than the 100 bytes a spec may be/ }]);
  });

  it.each([
    ['a file that does not exist', 'missing.yaml', /^no such file$/],
    ['a directory', '.', /is a directory/],
  ])('refuses %s clearly', async (_name, name, message) => {
    const err = await specErrorAsync(() => loadSpecFile(path.join(dir, name)));
    expectIssues(err.issues, [{ path: '', message }]);
  });

  it('refuses an empty file', async () => {
    const file = path.join(dir, 'empty.yaml');
    await writeFile(file, '');
    const err = await specErrorAsync(() => loadSpecFile(file));
    expect(err.issues).toEqual([{ path: '', message: 'the file is empty' }]);
  });
});

describe('formatPath', () => {
  it.each([
    [['spec', 'stages', 1, 'dependsOn', 0], 'spec.stages[1].dependsOn[0]'],
    [['metadata', 'labels', 'app.kubernetes.io/name'], 'metadata.labels["app.kubernetes.io/name"]'],
    [[], ''],
  ])('%j -> %s', (segments, expected) => {
    expect(formatPath(segments)).toBe(expected);
  });
});
