/**
 * Fluent builders for run specs, as a user would write them (plain objects / YAML, not
 * normalised), so that tests say only what matters to them:
 *
 *   makeRun().gpus(8).nodes(2).build()                       a TrainingRun
 *   makeRun('SelfPlay').command(['python3', 'gen.py']).toYaml()
 *   makePipeline('fire')
 *     .params({ steps: 10 })
 *     .stage('teacher', (s) => s.kind('train').command(['python3', 'train.py']).outputs({ checkpoint: 'final.pt' }))
 *     .stage('gen', (s) => s.kind('generate').dependsOn('teacher').command(['python3', 'gen.py', '${stages.teacher.outputs.checkpoint}']))
 *     .normalize()                                            -> NormalizedSpec via parseSpec
 *
 * `makeRun().stage(...)` turns the run into a Pipeline. Extend these rather than writing
 * spec objects by hand; `.set(key, value)` / `.with(key, value)` reach any other field
 * (including invalid values, for tests of validation).
 */
import { stringify } from 'yaml';
import { parseSpec } from '../../common/spec/load.js';
import type { NormalizedSpec, StageKind } from '../../common/spec/schema.js';

type Obj = Record<string, unknown>;
type RunKind = 'Pipeline' | 'TrainingRun' | 'SelfPlay' | 'Evaluation';

export class StageBuilder {
  private readonly fields: Obj;
  private readonly payload: Obj;
  private readonly resources: Obj = {};

  constructor(name?: string) {
    this.payload = { command: ['python3', `${name ?? 'train'}.py`] };
    this.fields = name === undefined ? {} : { name, kind: 'train' };
  }

  kind(kind: StageKind | string): this {
    this.fields['kind'] = kind;
    return this;
  }
  dependsOn(...names: string[]): this {
    const deps = (this.fields['dependsOn'] as string[] | undefined) ?? [];
    this.fields['dependsOn'] = [...deps, ...names];
    return this;
  }
  command(argv: unknown): this {
    this.payload['command'] = argv;
    return this;
  }
  env(env: Record<string, string | number | boolean>): this {
    this.payload['env'] = { ...((this.payload['env'] as Obj | undefined) ?? {}), ...env };
    return this;
  }
  secretEnv(name: string, from: { fromEnv?: string; secret?: string; key?: string } = {}): this {
    const list = (this.payload['secretEnv'] as Obj[] | undefined) ?? [];
    this.payload['secretEnv'] = [...list, { name, ...from }];
    return this;
  }
  workingDir(dir: string): this {
    this.payload['workingDir'] = dir;
    return this;
  }
  /** Replaces the whole payload (e.g. a shell string, to test that it is refused). */
  payloadValue(value: unknown): this {
    this.fields['payload'] = value;
    return this;
  }
  outputs(outputs: Record<string, string>): this {
    this.fields['outputs'] = { ...((this.fields['outputs'] as Obj | undefined) ?? {}), ...outputs };
    return this;
  }
  gpus(n: number): this {
    this.resources['gpus'] = n;
    return this;
  }
  nodes(n: number): this {
    this.resources['nodes'] = n;
    return this;
  }
  gpuType(t: string): this {
    this.resources['gpuType'] = t;
    return this;
  }
  memory(q: string): this {
    this.resources['memory'] = q;
    return this;
  }
  image(image: string): this {
    this.fields['image'] = image;
    return this;
  }
  retry(
    attempts: number,
    backoff?: { type?: 'exponential' | 'fixed'; delay?: number | string },
  ): this {
    this.fields['retry'] = { attempts, ...(backoff ? { backoff } : {}) };
    return this;
  }
  stallTimeout(d: number | string): this {
    this.fields['stallTimeout'] = d;
    return this;
  }
  terminationGracePeriod(d: number | string): this {
    this.fields['terminationGracePeriod'] = d;
    return this;
  }
  activeDeadline(d: number | string): this {
    this.fields['budget'] = { activeDeadline: d };
    return this;
  }
  /** Any other field, as written. */
  set(key: string, value: unknown): this {
    this.fields[key] = value;
    return this;
  }

  build(): Obj {
    const out: Obj = { ...this.fields };
    if (!('payload' in out)) out['payload'] = { ...this.payload };
    if (Object.keys(this.resources).length) out['resources'] = { ...this.resources };
    return out;
  }
}

export class RunBuilder {
  private runName = 'test-run';
  private runKind: RunKind;
  private readonly metadata: Obj = {};
  private readonly top: Obj = {};
  private readonly specFields: Obj = {};
  private readonly stages: StageBuilder[] = [];
  /** The inline stage of a one-stage kind. */
  private readonly inline = new StageBuilder();
  private inlineUsed = false;
  private kindChosen: boolean;

  constructor(kind?: RunKind) {
    this.runKind = kind ?? 'TrainingRun';
    this.kindChosen = kind !== undefined;
  }

  name(name: string): this {
    this.runName = name;
    return this;
  }
  kind(kind: RunKind | string): this {
    this.runKind = kind as RunKind;
    this.kindChosen = true;
    return this;
  }
  label(key: string, value: string): this {
    this.metadata['labels'] = {
      ...((this.metadata['labels'] as Obj | undefined) ?? {}),
      [key]: value,
    };
    return this;
  }
  description(text: string): this {
    this.metadata['description'] = text;
    return this;
  }
  params(params: Record<string, string | number | boolean>): this {
    this.specFields['params'] = {
      ...((this.specFields['params'] as Obj | undefined) ?? {}),
      ...params,
    };
    return this;
  }
  /** `spec.defaults` of a Pipeline. */
  defaults(defaults: Obj): this {
    this.specFields['defaults'] = defaults;
    return this;
  }
  /** Adds a pipeline stage (kind train and `python3 <name>.py` unless configured). */
  stage(name: string, configure: (s: StageBuilder) => StageBuilder | void = () => {}): this {
    if (!this.kindChosen) this.runKind = 'Pipeline';
    const s = new StageBuilder(name);
    configure(s);
    this.stages.push(s);
    return this;
  }
  /** A top-level field other than apiVersion/kind/metadata/spec (e.g. to test strictness). */
  with(key: string, value: unknown): this {
    this.top[key] = value;
    return this;
  }

  // The inline stage of a TrainingRun / SelfPlay / Evaluation.
  private body(fn: (s: StageBuilder) => void): this {
    this.inlineUsed = true;
    fn(this.inline);
    return this;
  }
  command(argv: unknown): this {
    return this.body((s) => s.command(argv));
  }
  env(env: Record<string, string | number | boolean>): this {
    return this.body((s) => s.env(env));
  }
  outputs(outputs: Record<string, string>): this {
    return this.body((s) => s.outputs(outputs));
  }
  gpus(n: number): this {
    return this.body((s) => s.gpus(n));
  }
  nodes(n: number): this {
    return this.body((s) => s.nodes(n));
  }
  gpuType(t: string): this {
    return this.body((s) => s.gpuType(t));
  }
  image(image: string): this {
    return this.body((s) => s.image(image));
  }
  retry(
    attempts: number,
    backoff?: { type?: 'exponential' | 'fixed'; delay?: number | string },
  ): this {
    return this.body((s) => s.retry(attempts, backoff));
  }
  stallTimeout(d: number | string): this {
    return this.body((s) => s.stallTimeout(d));
  }
  inlineStage(configure: (s: StageBuilder) => StageBuilder | void): this {
    return this.body((s) => void configure(s));
  }

  /** The spec as a user writes it. */
  build(): Obj {
    const spec: Obj = { ...this.specFields };
    if (this.runKind === 'Pipeline') {
      if (this.inlineUsed)
        throw new Error('makeRun: inline stage fields on a Pipeline; use .stage() instead');
      spec['stages'] = this.stages.map((s) => s.build());
    } else {
      if (this.stages.length)
        throw new Error(`makeRun: .stage() on a ${this.runKind}; use makePipeline()`);
      Object.assign(spec, this.inline.build());
    }
    return {
      apiVersion: 'stoker/v1',
      kind: this.runKind,
      metadata: { name: this.runName, ...this.metadata },
      spec,
      ...this.top,
    };
  }

  toYaml(): string {
    return stringify(this.build());
  }

  /** Through the real loader: the NormalizedSpec (or the SpecError) a user would get. */
  normalize(sets?: string[]): NormalizedSpec {
    return parseSpec(this.toYaml(), sets ? { sets } : {});
  }
}

/** A one-stage run (TrainingRun unless told); `.stage()` makes it a Pipeline. */
export const makeRun = (kind?: RunKind): RunBuilder => new RunBuilder(kind);
export const makePipeline = (name?: string): RunBuilder => {
  const b = new RunBuilder('Pipeline');
  return name === undefined ? b : b.name(name);
};
export const makeStage = (name: string): StageBuilder => new StageBuilder(name);
