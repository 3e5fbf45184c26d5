/**
 * Rules a backend adds to the spec checks (common/spec/rules.ts): the loader's `rules`
 * hook, the paths a rule's issue gets (the document's, or a stored spec's), the
 * kubernetes backend's rules (orchestrator/backends/kubernetes/spec-rules.ts) giving the
 * same verdict on a stored spec as at validate, and the graph checks as part of the
 * document schema (common/spec/document.ts).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { SpecError } from '../../common/errors.js';
import type { SpecIssue } from '../../common/errors.js';
import { RunSpecDocument } from '../../common/spec/document.js';
import { loadSpecFile, parseSpec } from '../../common/spec/load.js';
import { storedPaths } from '../../common/spec/rules.js';
import type { SpecRule } from '../../common/spec/rules.js';
import type { NormalizedSpec } from '../../common/spec/schema.js';
import { formatPath } from '../../common/spec/values.js';
import { kubernetesSpecRules } from '../../orchestrator/backends/kubernetes/spec-rules.js';
import { makePipeline, makeRun } from '../builders/spec.js';

function issuesOf(fn: () => unknown): SpecIssue[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof SpecError) return err.issues;
    throw err;
  }
  throw new Error('expected a SpecError, but the spec was accepted');
}

/** A rule of the test: a stage may not ask for 3 GPUs; it says where the setting was written. */
const noThreeGpus: SpecRule = (spec, paths) =>
  spec.stages.flatMap((stage, i) =>
    stage.resources.gpus === 3
      ? [{ path: paths.setting(i, ['resources', 'gpus']).path, message: 'three GPUs' }]
      : [],
  );

const PIPELINE = `apiVersion: stoker/v1
kind: Pipeline
metadata: {name: rules}
spec:
  defaults:
    resources:
      gpus: 3
  stages:
    - name: a
      kind: train
      payload: {command: [python3, a.py]}
    - name: b
      kind: train
      resources:
        gpus: 3
      payload: {command: [python3, b.py]}
    - name: c
      kind: merge
      payload: {command: [python3, c.py]}
`;

describe('the loader runs the rules it is given', () => {
  it('at the path and line the setting was written: the stage, or spec.defaults it inherits', () => {
    const issues = issuesOf(() => parseSpec(PIPELINE, { rules: [noThreeGpus] }));
    expect(issues).toEqual([
      { path: 'spec.defaults.resources.gpus', message: 'three GPUs', line: 7, column: 13 },
      { path: 'spec.stages[1].resources.gpus', message: 'three GPUs', line: 15, column: 15 },
    ]);
    // Without rules the spec is fine: the rule is what refuses it.
    expect(parseSpec(PIPELINE).stages.map((s) => s.resources.gpus)).toEqual([3, 3, 0]);
  });

  it('beside the graph checks: every problem at once', () => {
    const text = PIPELINE.replace('kind: merge', 'kind: merge\n      dependsOn: [ghost]');
    const issues = issuesOf(() => parseSpec(text, { rules: [noThreeGpus] }));
    expect(issues.map((i) => `${i.path}: ${i.message}`)).toEqual([
      'spec.defaults.resources.gpus: three GPUs',
      'spec.stages[1].resources.gpus: three GPUs',
      'spec.stages[2].dependsOn[0]: dependsOn names stage "ghost", which does not exist',
    ]);
  });

  it('only on a spec whose structure passed (a rule needs the normalised stages)', () => {
    let calls = 0;
    const counting: SpecRule = (spec, paths) => {
      calls += 1;
      return noThreeGpus(spec, paths);
    };
    const text = PIPELINE.replace('kind: merge', 'kind: merj');
    const issues = issuesOf(() => parseSpec(text, { rules: [counting] }));
    expect(calls).toBe(0);
    expect(issues.map((i) => i.path)).toEqual(['spec.stages[2].kind']);
    expect(parseSpec(PIPELINE.replace(/gpus: 3/g, 'gpus: 1'), { rules: [counting] })).toBeDefined();
    expect(calls).toBe(1);
  });
});

describe('storedPaths: a stored spec has lost where its settings were written', () => {
  it.each<[string, () => NormalizedSpec, string]>([
    ['a pipeline stage', () => parseSpec(PIPELINE), 'spec.stages[1].resources.gpus'],
    ['a one-stage kind', () => makeRun().gpus(3).normalize(), 'spec.resources.gpus'],
  ])('%s: every setting is at its stage, not known to be its own', (_name, build, path) => {
    const spec = build();
    const i = spec.stages.findIndex((s) => s.resources.gpus === 3 && s.name !== 'a');
    const where = storedPaths(spec).setting(i, ['resources', 'gpus']);
    expect(formatPath(where.path)).toBe(path);
    expect(where.own).toBeUndefined();
  });
});

/** Specs `stoker validate` accepts, to check that the backend accepts them once stored too. */
function recipes(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return recipes(p);
    return name.endsWith('.yaml') && readFileSync(p, 'utf8').includes('apiVersion: stoker/v1')
      ? [p]
      : [];
  });
}

describe('the kubernetes rules give a stored spec the verdict validate gave', () => {
  const rules = [kubernetesSpecRules];
  const stored = (spec: NormalizedSpec) =>
    kubernetesSpecRules(spec, storedPaths(spec)).map((i) => `${formatPath(i.path)}: ${i.message}`);

  it.each(recipes(join(import.meta.dirname, '..', '..', 'training-configs')))(
    'accepted by validate and by the backend: %s',
    async (file) => {
      expect(stored(await loadSpecFile(file, { rules }))).toEqual([]);
    },
  );

  it.each<[string, () => string]>([
    [
      'cpuDistributed in spec.defaults and a GPU stage (it says nothing about that stage)',
      () =>
        makePipeline()
          .defaults({ kubernetes: { cpuDistributed: true } })
          .stage('cpu', (s) => s.nodes(2))
          .stage('gpu', (s) => s.gpus(8))
          .toYaml(),
    ],
    [
      'the same mount path on the stage and in spec.defaults (the stage wins, one mount)',
      () =>
        makePipeline()
          .defaults({ kubernetes: { volumes: { pvc: [{ claimName: 'a', mountPath: '/data' }] } } })
          .stage('t', (s) =>
            s.set('kubernetes', { volumes: { pvc: [{ claimName: 'b', mountPath: '/data/' }] } }),
          )
          .toYaml(),
    ],
    [
      'a pool that takes the stage GPUs, at the maximum',
      () =>
        makePipeline()
          .stage('g', (s) =>
            s
              .kind('generate')
              .gpus(8)
              .set('input', { shards: ['a'] })
              .set('pool', { name: 'p', maxReplicas: 1 }),
          )
          .toYaml(),
    ],
  ])('accepted by validate and by the backend: %s', (_name, build) => {
    const spec = parseSpec(build(), { rules });
    expect(stored(spec)).toEqual([]);
  });

  it('keeps one mount per path: /data/ on the stage replaces /data of the defaults', () => {
    const spec = makePipeline()
      .defaults({ kubernetes: { volumes: { pvc: [{ claimName: 'a', mountPath: '/data' }] } } })
      .stage('t', (s) =>
        s.set('kubernetes', { volumes: { pvc: [{ claimName: 'b', mountPath: '/data/' }] } }),
      )
      .normalize();
    expect(spec.stages[0]?.kubernetes.volumes.pvc).toEqual([
      { claimName: 'b', mountPath: '/data/', readOnly: false },
    ]);
  });

  it.each<[string, () => string, string[]]>([
    [
      'GPUs over gpusPerNodeMax inherited from spec.defaults',
      () =>
        makePipeline()
          .defaults({ resources: { gpus: 16 } })
          .stage('t')
          .toYaml(),
      ['spec.defaults.resources.gpus', 'spec.stages[0].resources.gpus'],
    ],
    [
      'a PVC over /dev/shm in spec.defaults',
      () =>
        makePipeline()
          .defaults({
            kubernetes: { volumes: { pvc: [{ claimName: 'a', mountPath: '/dev/shm' }] } },
          })
          .stage('t', (s) => s.gpus(1))
          .toYaml(),
      [
        'spec.defaults.kubernetes.volumes.pvc[0].mountPath',
        'spec.stages[0].kubernetes.volumes.pvc[0].mountPath',
      ],
    ],
  ])(
    'refused by both, with the same message: %s (validate, then stored)',
    (_name, build, [atValidate, atStored]) => {
      const issues = issuesOf(() => parseSpec(build(), { rules }));
      expect(issues.map((i) => i.path)).toEqual([atValidate]);
      const storedIssues = stored(parseSpec(build()));
      expect(storedIssues).toEqual([`${atStored}: ${issues[0]?.message}`]);
    },
  );
});

describe('the document schema carries the graph checks', () => {
  it('refuses a cycle by itself, as a custom issue marked graph', () => {
    const doc = parse(
      makePipeline()
        .stage('a', (s) => s.dependsOn('b'))
        .stage('b', (s) => s.dependsOn('a'))
        .toYaml(),
    ) as unknown;
    const parsed = RunSpecDocument.safeParse(doc);
    expect(parsed.success).toBe(false);
    expect(parsed.error?.issues).toEqual([
      expect.objectContaining({
        code: 'custom',
        path: ['spec', 'stages', 0, 'dependsOn'],
        message: 'dependsOn forms a cycle: a -> b -> a',
        params: { graph: true },
      }),
    ]);
  });

  it.each(recipes(join(import.meta.dirname, '..', '..', 'training-configs')))(
    'accepts its own output, unchanged (the graph checks re-parse what zod gives them): %s',
    (file) => {
      const once = RunSpecDocument.parse(parse(readFileSync(file, 'utf8')));
      expect(RunSpecDocument.parse(once)).toEqual(once);
    },
  );
});
