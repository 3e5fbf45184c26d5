/**
 * Fluent builders for the kubernetes backend's inputs, so that a test says only what
 * matters to it. The stage goes through the real spec loader (builders/spec.ts), so its
 * defaults are the ones a user gets:
 *
 *   makeTrainJob().gpus(8).nodes(2).build()                      -> {job, service}
 *   makeTrainJob().secretEnv('HF_TOKEN', { secret: 'hf', key: 'token' }).request()
 *   makeTrainJob().kubernetes({ queueName: 'team-a' }).settings({ masterPort: 23456 }).build()
 *   makePoolWorkers('gen-h100').gpus(1).workers('gen-h100-a', 'gen-h100-b').build()   -> Job[]
 *   makeTrainJob().run('gc').attempt(2).simulated('setTimeout(() => {}, 60000)').build()
 *     a Job whose pod runs that script on the simulated node instead of `stoker worker`
 *     (labels, annotations and names as stoker makes them; no Secret, PVC or
 *     PriorityClass needed)
 *
 * `.stage(fn)` reaches any other stage field through StageBuilder; `.defaults({...})`
 * sets the pipeline's spec.defaults (to test merging).
 */
import type { V1Job } from '@kubernetes/client-node';
import {
  buildPoolWorkers,
  buildTrainJob,
  type PoolWorkersContext,
  type TrainJobObjects,
  type TrainJobRequest,
} from '../../orchestrator/backends/kubernetes/objects.js';
import {
  kubernetesSettings,
  type KubernetesSettings,
} from '../../orchestrator/backends/kubernetes/settings.js';
import { taskIdFor } from '../../orchestrator/store.js';
import type { NormalizedSpec, NormalizedStage } from '../../common/spec/schema.js';
import { makePipeline, type StageBuilder } from './spec.js';

type Obj = Record<string, unknown>;

/** A run id of the shape makeRunId gives (name + 23 characters). */
export const runIdFor = (name: string): string => `${name}-20261126-100422-c373ab`;

abstract class StageInput {
  protected runName = 'fire';
  protected stageName: string;
  protected specDefaults: Obj | undefined;
  protected readonly configure: ((s: StageBuilder) => void)[] = [];
  protected settingsOverrides: Partial<KubernetesSettings> = {};
  protected imageName = 'stoker-worker-gpu:test';
  protected env: Record<string, string> = { STOKER_PREFIX: 'stoker:' };
  /** The stage's resources, kept here (StageBuilder has no cpu()) and set as a whole. */
  protected readonly resources: Obj = {};

  constructor(stageName: string) {
    this.stageName = stageName;
  }

  stage(fn: (s: StageBuilder) => StageBuilder | void): this {
    this.configure.push((s) => void fn(s));
    return this;
  }
  run(name: string): this {
    this.runName = name;
    return this;
  }
  named(stage: string): this {
    this.stageName = stage;
    return this;
  }
  protected resource(key: string, value: unknown): this {
    this.resources[key] = value;
    return this;
  }
  gpus(n: number): this {
    return this.resource('gpus', n);
  }
  gpuType(t: string): this {
    return this.resource('gpuType', t);
  }
  memory(q: string): this {
    return this.resource('memory', q);
  }
  cpu(q: string | number): this {
    return this.resource('cpu', q);
  }
  secretEnv(name: string, from: { fromEnv?: string; secret?: string; key?: string } = {}): this {
    return this.stage((s) => s.secretEnv(name, from));
  }
  kubernetes(block: Obj): this {
    return this.stage((s) => s.set('kubernetes', block));
  }
  grace(d: number | string): this {
    return this.stage((s) => s.terminationGracePeriod(d));
  }
  defaults(defaults: Obj): this {
    this.specDefaults = defaults;
    return this;
  }
  settings(overrides: Partial<KubernetesSettings>): this {
    this.settingsOverrides = { ...this.settingsOverrides, ...overrides };
    return this;
  }
  image(image: string): this {
    this.imageName = image;
    return this;
  }
  withEnv(env: Record<string, string>): this {
    this.env = { ...this.env, ...env };
    return this;
  }

  /** The one-stage pipeline, through the real loader. */
  spec(): NormalizedSpec {
    const run = makePipeline(this.runName);
    if (this.specDefaults) run.defaults(this.specDefaults);
    return run
      .stage(this.stageName, (s) => {
        s.kind(this.stageKind());
        if (Object.keys(this.resources).length) s.set('resources', { ...this.resources });
        for (const fn of this.configure) fn(s);
      })
      .normalize();
  }
  normalizedStage(): NormalizedStage {
    const stage = this.spec().stages[0];
    if (!stage) throw new Error('makeTrainJob: no stage');
    return stage;
  }
  resolvedSettings(): KubernetesSettings {
    return kubernetesSettings(this.settingsOverrides);
  }
  protected abstract stageKind(): string;
}

export class TrainJobBuilder extends StageInput {
  private attemptNumber = 1;
  private script: string | undefined;

  constructor() {
    super('train');
  }
  protected stageKind(): string {
    return 'train';
  }
  nodes(n: number): this {
    return this.resource('nodes', n);
  }
  attempt(n: number): this {
    this.attemptNumber = n;
    return this;
  }
  activeDeadline(d: number | string): this {
    return this.stage((s) => s.activeDeadline(d));
  }
  /** For the simulated cluster: the pod runs `node -e script`, with no secrets or volumes. */
  simulated(script: string): this {
    this.script = script;
    return this.settings({ priorityClassName: undefined, runsVolume: undefined });
  }

  request(): TrainJobRequest {
    const spec = this.spec();
    const stage = spec.stages[0] as NormalizedStage;
    const settings = this.resolvedSettings();
    const runId = runIdFor(spec.name);
    const taskId = taskIdFor(runId, stage.name);
    return {
      unitName: `${taskId}-a${this.attemptNumber}`,
      taskId,
      runId,
      stage: stage.name,
      attempt: this.attemptNumber,
      runDir: `/var/lib/stoker/runs/${runId}`,
      resources: stage.resources,
      activeDeadlineSeconds: stage.activeDeadlineSeconds,
      terminationGracePeriodSeconds: stage.terminationGracePeriodSeconds,
      stageSpec: stage,
      image: this.imageName,
      namespace: stage.kubernetes.namespace ?? settings.namespace,
      workerCommand: settings.workerCommand,
      env: this.env,
      settings,
      runLabels: spec.labels,
    };
  }
  build(): TrainJobObjects {
    const objects = buildTrainJob(this.request());
    if (this.script === undefined) return objects;
    const pod = objects.job.spec?.template.spec;
    for (const c of pod?.containers ?? []) {
      c.command = [process.execPath, '-e', this.script];
      c.env = (c.env ?? []).filter((e) => !e.valueFrom?.secretKeyRef);
    }
    return objects;
  }
}

export class PoolWorkersBuilder extends StageInput {
  private ids: string[];
  private readonly poolName: string;
  private poolGpus: number | undefined;

  constructor(pool: string) {
    super('generate');
    this.poolName = pool;
    this.ids = [`${pool}-0`];
  }
  protected stageKind(): string {
    return 'generate';
  }
  workers(...ids: string[]): this {
    this.ids = ids;
    return this;
  }
  poolGpusOverride(n: number): this {
    this.poolGpus = n;
    return this;
  }
  override spec(): NormalizedSpec {
    this.stage((s) =>
      s.set('input', { shards: ['a.jsonl'] }).set('pool', {
        name: this.poolName,
        maxReplicas: 4,
        ...(this.poolGpus === undefined ? {} : { resources: { gpus: this.poolGpus } }),
      }),
    );
    return super.spec();
  }
  context(): {
    pool: { name: string; resources: NormalizedStage['resources'] };
  } & PoolWorkersContext {
    const stage = this.normalizedStage();
    const settings = this.resolvedSettings();
    if (!stage.pool) throw new Error('makePoolWorkers: the stage has no pool');
    return {
      pool: { name: stage.pool.name, resources: stage.pool.resources },
      stageSpec: stage,
      workerIds: this.ids,
      image: this.imageName,
      namespace: stage.kubernetes.namespace ?? settings.namespace,
      workerCommand: settings.workerCommand,
      env: this.env,
      settings,
    };
  }
  build(): V1Job[] {
    const { pool, ...ctx } = this.context();
    return buildPoolWorkers(pool, ctx);
  }
}

export const makeTrainJob = (): TrainJobBuilder => new TrainJobBuilder();
export const makePoolWorkers = (pool = 'gen-h100'): PoolWorkersBuilder =>
  new PoolWorkersBuilder(pool);
