/**
 * The kubernetes backend's desired objects (orchestrator/backends/kubernetes/objects.ts)
 * and the spec's `kubernetes` block and checks (common/spec, and the backend's rules in
 * orchestrator/backends/kubernetes/spec-rules.ts). Every object built here is
 * validated against the Kubernetes OpenAPI schemas (kubernetes-models).
 */
import { readFileSync } from 'node:fs';
import type { V1EnvVar, V1Job, V1PodSpec, V1Service } from '@kubernetes/client-node';
import { Job } from 'kubernetes-models/batch/v1/Job';
import { Service } from 'kubernetes-models/v1/Service';
import { describe, expect, it } from 'vitest';
import { SpecError } from '../../common/errors.js';
import type { SpecIssue } from '../../common/errors.js';
import { packageRoot } from '../../common/paths.js';
import { parseSpec } from '../../common/spec/load.js';
import type { NormalizedSpec } from '../../common/spec/schema.js';
import { JOB_NAME_MAX, jobNameFor, labelValueFor } from '../../common/spec/schema.js';
import {
  buildAll,
  buildTrainJob,
  NON_RETRYABLE_EXIT_CODES,
  ownedByJob,
  WORKER_CONTAINER,
} from '../../orchestrator/backends/kubernetes/objects.js';
import { serviceNameFor } from '../../orchestrator/backends/kubernetes/names.js';
import { kubernetesSpecRules } from '../../orchestrator/backends/kubernetes/spec-rules.js';
import { imageDigestRule, unpinnedImage } from '../../orchestrator/backends/kubernetes/images.js';
import { runRules, storedPaths } from '../../common/spec/rules.js';
import {
  kubernetesSettings,
  SettingsError,
  settingsFromEnv,
} from '../../orchestrator/backends/kubernetes/settings.js';
import {
  defaultResources,
  scaleQuantity,
} from '../../orchestrator/backends/kubernetes/default-resources.js';
import { makePoolWorkers, makeTrainJob, runIdFor } from '../builders/k8s.js';
import { makePipeline, makeRun } from '../builders/spec.js';

// ---------------------------------------------------------------------------------------
// Helpers

/** Validates against the OpenAPI schema (throws with the failing path) and returns it. */
function valid<T extends V1Job | V1Service>(obj: T): T {
  if (obj.kind === 'Job') new Job(obj as ConstructorParameters<typeof Job>[0]).validate();
  else if (obj.kind === 'Service')
    new Service(obj as ConstructorParameters<typeof Service>[0]).validate();
  else throw new Error(`no validator for ${String(obj.kind)}`);
  return obj;
}

function podOf(job: V1Job): V1PodSpec {
  const spec = job.spec?.template.spec;
  if (!spec) throw new Error('job without a pod template');
  return spec;
}

function envOf(job: V1Job): Map<string, V1EnvVar> {
  const container = podOf(job).containers[0];
  return new Map((container?.env ?? []).map((e) => [e.name, e]));
}

const value = (job: V1Job, name: string): string | undefined => envOf(job).get(name)?.value;

function specIssues(fn: () => unknown): SpecIssue[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof SpecError) return err.issues;
    throw err;
  }
  throw new Error('expected a SpecError, but the spec was accepted');
}

const exitTable = JSON.parse(readFileSync(`${packageRoot()}/common/exit-codes.json`, 'utf8')) as {
  codes: Record<string, { code: number; retryable: boolean }>;
  nonRetryableRange: [number, number];
};

// ---------------------------------------------------------------------------------------
// Train Jobs

it('the schema validation used below rejects a malformed Job (it is not a no-op)', () => {
  const { job } = makeTrainJob().build();
  const broken = { ...job, spec: { ...job.spec, completions: 'two' } } as unknown as V1Job;
  expect(() => valid(broken)).toThrow(/completions/);
});

describe('buildTrainJob', () => {
  it('builds one pod for a one-node stage, with rank variables for a single node', () => {
    const { job, service } = makeTrainJob().gpus(1).build();
    valid(job);
    expect(service).toBeUndefined();
    expect(job.spec).toMatchObject({
      completionMode: 'NonIndexed',
      completions: 1,
      parallelism: 1,
      backoffLimit: 0,
    });
    const pod = podOf(job);
    expect(pod.restartPolicy).toBe('Never');
    expect(pod.subdomain).toBeUndefined();
    // Through the launcher, which moves the Secret-fed variables out of the environ.
    expect(pod.containers[0]?.command).toEqual([
      'stoker-env-fd',
      'stoker',
      'worker',
      '--task',
      'fire-20261126-100422-c373ab.train',
      '--unit',
      'fire-20261126-100422-c373ab.train-a1',
      '--attempt',
      '1',
    ]);
    expect(Object.fromEntries([...envOf(job)].map(([k, v]) => [k, v.value]))).toMatchObject({
      NNODES: '1',
      NODE_RANK: '0',
      NPROC_PER_NODE: '1',
      WORLD_SIZE: '1',
      MASTER_ADDR: '127.0.0.1',
      MASTER_PORT: '29500',
      PET_NNODES: '1',
      PET_NODE_RANK: '0',
    });
  });

  it('builds a 2-node gang: Indexed Job, headless Service, stable MASTER_ADDR, NODE_RANK from the completion index', () => {
    const { job, service } = makeTrainJob().gpus(8).nodes(2).attempt(3).build();
    valid(job);
    if (!service) throw new Error('a gang needs its Service');
    valid(service);
    const name = job.metadata?.name as string;
    expect(name).toBe('fire-20261126-100422-c373ab-train-a3');
    expect(job.spec).toMatchObject({ completionMode: 'Indexed', completions: 2, parallelism: 2 });

    expect(service.metadata?.name).toBe(name);
    expect(service.spec).toMatchObject({
      clusterIP: 'None',
      selector: { 'stoker.dev/job': name },
      publishNotReadyAddresses: true,
    });
    // The Service selects the Job's pods, and the pods live under it.
    expect(job.spec?.template.metadata?.labels?.['stoker.dev/job']).toBe(name);
    expect(podOf(job).subdomain).toBe(service.metadata?.name);

    const env = envOf(job);
    const indexRef = {
      fieldRef: { fieldPath: "metadata.annotations['batch.kubernetes.io/job-completion-index']" },
    };
    expect(env.get('NODE_RANK')?.valueFrom).toEqual(indexRef);
    expect(env.get('PET_NODE_RANK')?.valueFrom).toEqual(indexRef);
    const addr = `${name}-0.${name}`;
    expect(Object.fromEntries([...env].map(([k, v]) => [k, v.value]))).toMatchObject({
      MASTER_ADDR: addr,
      MASTER_PORT: '29500',
      NNODES: '2',
      NPROC_PER_NODE: '8',
      WORLD_SIZE: '16',
      PET_MASTER_ADDR: addr,
      PET_MASTER_PORT: '29500',
      PET_NNODES: '2',
      PET_NPROC_PER_NODE: '8',
    });
    expect(podOf(job).containers[0]?.ports).toEqual([
      { name: 'rendezvous', containerPort: 29500, protocol: 'TCP' },
    ]);
  });

  it('gives a Service a DNS-1035 name when the run name starts with a digit', () => {
    const { job, service } = makeTrainJob().run('7b-sft').gpus(1).nodes(2).build();
    valid(job);
    valid(service as V1Service);
    expect(job.metadata?.name).toMatch(/^7b-sft-/);
    expect(service?.metadata?.name).toBe(`s-${job.metadata?.name}`);
    expect(value(job, 'MASTER_ADDR')).toBe(`${job.metadata?.name}-0.s-${job.metadata?.name}`);
  });

  it.each<[string, () => V1Job, (pod: V1PodSpec) => void]>([
    [
      'GPUs are requested and limited, with the GPU taint tolerated and gpuType selecting nodes',
      () => makeTrainJob().gpus(8).gpuType('h100').cpu(32).memory('256Gi').build().job,
      (pod) => {
        const amounts = { cpu: '32', memory: '256Gi', 'nvidia.com/gpu': '8' };
        expect(pod.containers[0]?.resources).toEqual({ requests: amounts, limits: amounts });
        expect(pod.tolerations).toEqual([
          { key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' },
        ]);
        expect(pod.nodeSelector).toEqual({ 'nvidia.com/gpu.product': 'NVIDIA-H100-80GB-HBM3' });
      },
    ],
    [
      'an unmapped gpuType is used as the label value, next to the stage nodeSelector',
      () =>
        makeTrainJob()
          .gpus(1)
          .gpuType('NVIDIA-B200')
          .kubernetes({ nodeSelector: { 'cloud.google.com/gke-nodepool': 'gpu-pool' } })
          .build().job,
      (pod) =>
        expect(pod.nodeSelector).toEqual({
          'cloud.google.com/gke-nodepool': 'gpu-pool',
          'nvidia.com/gpu.product': 'NVIDIA-B200',
        }),
    ],
    [
      'a CPU pod has no GPU request, no GPU toleration, no GPU selector and no /dev/shm',
      () => makeTrainJob().cpu('2').memory('4Gi').build().job,
      (pod) => {
        expect(pod.containers[0]?.resources).toEqual({
          requests: { cpu: '2', memory: '4Gi' },
          limits: { cpu: '2', memory: '4Gi' },
        });
        expect(pod.tolerations).toBeUndefined();
        expect(pod.nodeSelector).toBeUndefined();
        expect(pod.volumes?.map((v) => v.name)).toEqual(['runs', 'tmp', 'home']);
      },
    ],
    [
      "the stage's own tolerations come first; a GPU toleration already there is not repeated",
      () =>
        makeTrainJob()
          .gpus(1)
          .kubernetes({
            tolerations: [
              { key: 'dedicated', operator: 'Equal', value: 'ml', effect: 'NoSchedule' },
              { key: 'nvidia.com/gpu', operator: 'Exists' },
            ],
          })
          .build().job,
      (pod) =>
        expect(pod.tolerations).toEqual([
          { key: 'dedicated', operator: 'Equal', value: 'ml', effect: 'NoSchedule' },
          { key: 'nvidia.com/gpu', operator: 'Exists' },
        ]),
    ],
    [
      'volumes: the runs PVC, read-only data sets, and a memory-backed /dev/shm with its size limit',
      () =>
        makeTrainJob()
          .gpus(4)
          .kubernetes({
            volumes: {
              pvc: [
                { claimName: 'datasets', mountPath: '/data', readOnly: true },
                { claimName: 'checkpoints', mountPath: '/ckpt' },
              ],
              shmSize: '32Gi',
            },
          })
          .build().job,
      (pod) => {
        expect(pod.volumes).toEqual([
          { name: 'runs', persistentVolumeClaim: { claimName: 'stoker-runs' } },
          { name: 'pvc-0', persistentVolumeClaim: { claimName: 'datasets', readOnly: true } },
          { name: 'pvc-1', persistentVolumeClaim: { claimName: 'checkpoints', readOnly: false } },
          { name: 'dshm', emptyDir: { medium: 'Memory', sizeLimit: '32Gi' } },
          { name: 'tmp', emptyDir: {} },
          { name: 'home', emptyDir: {} },
        ]);
        expect(pod.containers[0]?.volumeMounts).toEqual([
          { name: 'runs', mountPath: '/var/lib/stoker' },
          { name: 'pvc-0', mountPath: '/data', readOnly: true },
          { name: 'pvc-1', mountPath: '/ckpt', readOnly: false },
          { name: 'dshm', mountPath: '/dev/shm' },
          { name: 'tmp', mountPath: '/tmp' },
          { name: 'home', mountPath: '/home/stoker' },
        ]);
      },
    ],
    [
      'a GPU stage gets a 16Gi /dev/shm by default; shmSize: false turns it off',
      () =>
        makeTrainJob()
          .gpus(1)
          .kubernetes({ volumes: { shmSize: false } })
          .build().job,
      (pod) => expect(pod.volumes?.some((v) => v.name === 'dshm')).toBe(false),
    ],
    [
      'the restricted security context: non-root, no privilege escalation, no capabilities, RuntimeDefault seccomp',
      () => makeTrainJob().gpus(1).build().job,
      (pod) => {
        expect(pod.securityContext).toEqual({
          runAsNonRoot: true,
          runAsUser: 1000,
          runAsGroup: 1000,
          fsGroup: 1000,
          fsGroupChangePolicy: 'OnRootMismatch',
          seccompProfile: { type: 'RuntimeDefault' },
        });
        expect(pod.containers[0]?.securityContext).toEqual({
          runAsNonRoot: true,
          allowPrivilegeEscalation: false,
          capabilities: { drop: ['ALL'] },
          readOnlyRootFilesystem: true,
        });
        expect(pod.automountServiceAccountToken).toBe(false);
        expect(pod.enableServiceLinks).toBe(false);
        expect(pod.serviceAccountName).toBe('stoker-worker');
      },
    ],
    [
      'a read-only root file system gets emptyDirs at /tmp and HOME; runAsUser and fsGroup from the stage win',
      () =>
        makeTrainJob()
          .kubernetes({ runAsUser: 2000, fsGroup: 3000 })
          .settings({ workerHome: '/home/node' })
          .build().job,
      (pod) => {
        expect(pod.containers[0]?.securityContext?.readOnlyRootFilesystem).toBe(true);
        expect(pod.volumes).toContainEqual({ name: 'tmp', emptyDir: {} });
        expect(pod.containers[0]?.volumeMounts).toContainEqual({
          name: 'home',
          mountPath: '/home/node',
        });
        expect(pod.securityContext).toMatchObject({ runAsUser: 2000, fsGroup: 3000 });
      },
    ],
    [
      'a PVC mounted at HOME serves it: no emptyDir there (a model cache kept between runs)',
      () =>
        makeTrainJob()
          .kubernetes({ volumes: { pvc: [{ claimName: 'hf-cache', mountPath: '/home/stoker/' }] } })
          .build().job,
      (pod) => {
        expect(pod.volumes?.map((v) => v.name)).toEqual(['runs', 'pvc-0', 'tmp']);
        expect(pod.containers[0]?.securityContext?.readOnlyRootFilesystem).toBe(true);
      },
    ],
    [
      'security.writableRoot: true (here from spec.defaults) keeps the root writable, with no emptyDirs',
      () =>
        makeTrainJob()
          .defaults({ kubernetes: { security: { writableRoot: true } } })
          .build().job,
      (pod) => {
        expect(pod.containers[0]?.securityContext).toMatchObject({
          readOnlyRootFilesystem: false,
          allowPrivilegeEscalation: false,
          capabilities: { drop: ['ALL'] },
        });
        expect(pod.volumes?.map((v) => v.name)).toEqual(['runs']);
      },
    ],
    [
      'the operator can make roots writable for every stage (STOKER_K8S_READ_ONLY_ROOT_FS=false)',
      () => makeTrainJob().settings({ readOnlyRootFilesystem: false }).build().job,
      (pod) => {
        expect(pod.containers[0]?.securityContext?.readOnlyRootFilesystem).toBe(false);
        expect(pod.volumes?.map((v) => v.name)).toEqual(['runs']);
      },
    ],
    [
      "a stage that names no cpu or memory gets its kind's defaults, per GPU on a GPU pod",
      () => makeTrainJob().gpus(8).build().job,
      (pod) => {
        const amounts = { cpu: '32', memory: '256Gi', 'nvidia.com/gpu': '8' };
        expect(pod.containers[0]?.resources).toEqual({ requests: amounts, limits: amounts });
      },
    ],
    [
      "an amount the stage gives wins; the other is the kind's default from the settings",
      () =>
        makeTrainJob()
          .memory('10Gi')
          .settings({ defaultResources: defaultResources({ train: { cpu: '500m' } }) })
          .build().job,
      (pod) => {
        const amounts = { cpu: '500m', memory: '10Gi' };
        expect(pod.containers[0]?.resources).toEqual({ requests: amounts, limits: amounts });
      },
    ],
    [
      'priority class, service account and pull policy come from the stage, else from the settings',
      () =>
        makeTrainJob()
          .kubernetes({
            priorityClassName: 'research-low',
            serviceAccountName: 'trainer',
            imagePullPolicy: 'Always',
          })
          .build().job,
      (pod) => {
        expect(pod.priorityClassName).toBe('research-low');
        expect(pod.serviceAccountName).toBe('trainer');
        expect(pod.containers[0]?.imagePullPolicy).toBe('Always');
      },
    ],
    [
      "the pod outlives the payload's grace period by the worker's margin",
      () => makeTrainJob().grace('5m').build().job,
      (pod) => expect(pod.terminationGracePeriodSeconds).toBe(300 + 15),
    ],
  ])('%s', (_name, build, check) => {
    const job = valid(build());
    check(podOf(job));
  });

  it('references secrets by name and key; no secret value appears anywhere in the objects', () => {
    // The controller's environment holds the values; the settings parsed from it do not.
    const controllerEnv = {
      STOKER_REDIS_URL: 'redis://:hunter2-redis-password@redis:6379',
      HF_TOKEN: 'hf_super_secret_token_value',
      STOKER_PREFIX: 'stoker:',
    };
    const settings = settingsFromEnv(controllerEnv);
    const { job, service } = makeTrainJob()
      .gpus(8)
      .nodes(2)
      .secretEnv('HF_TOKEN', { secret: 'hf', key: 'token' })
      .secretEnv('WANDB_API_KEY')
      .secretEnv('S3_KEY', { fromEnv: 'AWS_SECRET_ACCESS_KEY', secret: 'aws' })
      .settings(settings)
      .build();
    valid(job);
    const env = envOf(job);
    expect(env.get('STOKER_REDIS_URL')).toEqual({
      name: 'STOKER_REDIS_URL',
      valueFrom: { secretKeyRef: { name: 'stoker-redis', key: 'worker-url' } },
    });
    expect(env.get('HF_TOKEN')?.valueFrom).toEqual({
      secretKeyRef: { name: 'hf', key: 'token' },
    });
    // No secret named: the controller's payload Secret, keyed by the variable.
    expect(env.get('WANDB_API_KEY')?.valueFrom).toEqual({
      secretKeyRef: { name: 'stoker-payload-secrets', key: 'WANDB_API_KEY' },
    });
    // fromEnv: the pod holds the worker's variable; the worker copies it into S3_KEY.
    expect(env.get('AWS_SECRET_ACCESS_KEY')?.valueFrom).toEqual({
      secretKeyRef: { name: 'aws', key: 'AWS_SECRET_ACCESS_KEY' },
    });
    expect(env.has('S3_KEY')).toBe(false);
    // The launcher moves exactly the Secret-fed variables to a descriptor.
    expect(env.get('STOKER_SECRET_ENV')?.value?.split(' ')).toEqual([
      'STOKER_REDIS_URL',
      'HF_TOKEN',
      'WANDB_API_KEY',
      'AWS_SECRET_ACCESS_KEY',
    ]);
    for (const e of env.values()) {
      if (/TOKEN|KEY|REDIS_URL/.test(e.name)) expect(e.value).toBeUndefined();
    }
    const serialised = JSON.stringify([job, service]);
    for (const secret of ['hunter2', 'hf_super_secret_token_value', 'redis://'])
      expect(serialised).not.toContain(secret);
  });

  it('without a launcher (STOKER_K8S_WORKER_LAUNCHER=""), runs the worker command as it is, with no STOKER_SECRET_ENV', () => {
    const settings = settingsFromEnv({ STOKER_K8S_WORKER_LAUNCHER: '' });
    expect(settings.workerLauncher).toBeUndefined();
    const { job } = makeTrainJob().settings(settings).build();
    valid(job);
    expect(podOf(job).containers[0]?.command?.slice(0, 2)).toEqual(['stoker', 'worker']);
    expect(envOf(job).has('STOKER_SECRET_ENV')).toBe(false);
    expect(envOf(job).get('STOKER_REDIS_URL')?.valueFrom?.secretKeyRef?.name).toBe('stoker-redis');
  });

  it.each([
    ['a variable named like a secret', { HF_TOKEN: 'abc' }],
    ['the Redis URL as a value', { STOKER_REDIS_URL: 'redis://redis:6379' }],
    ['a URL with a password in it', { CACHE_URL: 'redis://:pw@cache:6379' }],
    ['a rank variable the backend sets', { NODE_RANK: '3' }],
  ])('refuses plain env holding %s', (_name, env) => {
    expect(() => makeTrainJob().withEnv(env).build()).toThrow(
      /looks secret|set by the backend itself/,
    );
  });

  it('fails the Job at once on non-retryable exit codes and ignores disruptions', () => {
    const { job } = makeTrainJob().gpus(1).build();
    valid(job);
    const [lo, hi] = exitTable.nonRetryableRange;
    const retryable = new Set(
      Object.values(exitTable.codes)
        .filter((c) => c.retryable)
        .map((c) => c.code),
    );
    const expected = new Set<number>();
    for (let c = lo; c <= hi; c++) if (!retryable.has(c)) expected.add(c);
    for (const c of Object.values(exitTable.codes))
      if (!c.retryable && c.code !== 0) expected.add(c.code);
    const codes = [...expected].sort((a, b) => a - b);
    expect(codes).toEqual([2, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 76, 78, 79]);
    expect(NON_RETRYABLE_EXIT_CODES).toEqual(codes);
    expect(job.spec?.podFailurePolicy).toEqual({
      rules: [
        { action: 'Ignore', onPodConditions: [{ type: 'DisruptionTarget', status: 'True' }] },
        {
          action: 'FailJob',
          onExitCodes: { containerName: WORKER_CONTAINER, operator: 'In', values: codes },
        },
      ],
    });
    expect(job.spec).toMatchObject({ backoffLimit: 0, podReplacementPolicy: 'Failed' });
  });

  it.each<[string, () => V1Job, Partial<NonNullable<V1Job['spec']>>]>([
    [
      'the stage budget is the Job deadline; the TTL defaults to a day',
      () => makeTrainJob().activeDeadline('2h').build().job,
      { activeDeadlineSeconds: 7200, ttlSecondsAfterFinished: 86400 },
    ],
    [
      'the TTL comes from the kubernetes block (a duration)',
      () => makeTrainJob().kubernetes({ ttlSecondsAfterFinished: '10m' }).build().job,
      { ttlSecondsAfterFinished: 600 },
    ],
  ])('%s', (_name, build, expected) => {
    const job = valid(build());
    expect(job.spec).toMatchObject(expected);
  });

  it('creates the Job suspended with the queue label when the stage names a Kueue queue', () => {
    const queued = valid(
      makeTrainJob().gpus(8).nodes(2).kubernetes({ queueName: 'team-a' }).build().job,
    );
    expect(queued.spec?.suspend).toBe(true);
    expect(queued.metadata?.labels?.['kueue.x-k8s.io/queue-name']).toBe('team-a');

    const plain = valid(makeTrainJob().gpus(8).build().job);
    expect(plain.spec?.suspend).toBeUndefined();
    expect(plain.metadata?.labels?.['kueue.x-k8s.io/queue-name']).toBeUndefined();
  });

  it('labels with the ids (sanitised) and annotates with the full ids', () => {
    const { job } = makeTrainJob().attempt(2).build();
    valid(job);
    const runId = runIdFor('fire');
    const labels = {
      'app.kubernetes.io/managed-by': 'stoker',
      'app.kubernetes.io/name': 'stoker',
      'stoker.dev/run': runId,
      'stoker.dev/task': `${runId}.train`,
      'stoker.dev/stage': 'train',
      'stoker.dev/attempt': '2',
    };
    expect(job.metadata?.labels).toMatchObject(labels);
    expect(job.spec?.template.metadata?.labels).toMatchObject(labels);
    expect(job.metadata?.annotations).toEqual({
      'stoker.dev/run-id': runId,
      'stoker.dev/task-id': `${runId}.train`,
      'stoker.dev/unit': `${runId}.train-a2`,
      'stoker.dev/stage': 'train',
      'stoker.dev/attempt': '2',
    });
  });

  it("copies the run's metadata.labels onto the Job and its pods", () => {
    const request = makeTrainJob().request();
    const { job } = buildTrainJob({
      ...request,
      runLabels: { team: 'rl', 'app.kubernetes.io/part-of': 'fire', 'stoker.dev/run': 'x' },
    });
    valid(job);
    expect(job.metadata?.labels).toMatchObject({ team: 'rl', 'app.kubernetes.io/part-of': 'fire' });
    expect(job.metadata?.labels?.['stoker.dev/run']).toBe(request.runId);
    expect(job.spec?.template.metadata?.labels?.['team']).toBe('rl');
  });

  it('makes a Service owned by its Job once the Job has a uid', () => {
    const { service } = makeTrainJob().gpus(1).nodes(2).build();
    const owned = valid(
      ownedByJob(service as V1Service, { name: 'fire-x-a1', uid: '6f1c7d9e-0000-4000-8000-1234' }),
    );
    expect(owned.metadata?.ownerReferences).toEqual([
      {
        apiVersion: 'batch/v1',
        kind: 'Job',
        name: 'fire-x-a1',
        uid: '6f1c7d9e-0000-4000-8000-1234',
        controller: true,
        blockOwnerDeletion: false,
      },
    ]);
  });
});

// ---------------------------------------------------------------------------------------
// Names

describe('names', () => {
  const longRun = 'r'.repeat(39) + 'x'; // 40: the longest run name
  const longStage = 's'.repeat(38) + 'yz'; // 40: the longest stage name

  it('keeps a short id readable and whole', () => {
    expect(jobNameFor('fire-20261126-100422-c373ab.teacher', 1)).toBe(
      'fire-20261126-100422-c373ab-teacher-a1',
    );
  });

  it.each([
    ['the longest run and stage names, first attempt', longRun, longStage, 1, 2],
    ['the longest names, the hundredth attempt, a 64-node gang', longRun, longStage, 100, 64],
    ['a run whose id is exactly 63 characters', longRun, 'a', 3, 1],
  ])(
    '%s: every name and label value fits in 63 characters',
    (_name, run, stage, attempt, nodes) => {
      const { job, service } = makeTrainJob()
        .run(run)
        .named(stage)
        .gpus(nodes > 1 ? 8 : 0)
        .nodes(nodes)
        .attempt(attempt)
        .build();
      valid(job);
      const name = job.metadata?.name as string;
      expect(name.length).toBeLessThanOrEqual(JOB_NAME_MAX);
      expect(name).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
      expect(name.endsWith(`-a${attempt}`)).toBe(true);
      // Each gang pod's hostname is `${job}-${index}`, a DNS label.
      expect(`${name}-${nodes - 1}`.length).toBeLessThanOrEqual(63);
      for (const v of Object.values(job.metadata?.labels ?? {}))
        expect(v.length).toBeLessThanOrEqual(63);
      if (service) {
        valid(service);
        expect(service.metadata?.name?.length).toBeLessThanOrEqual(63);
      }
      // The annotations keep the full ids.
      expect(job.metadata?.annotations?.['stoker.dev/task-id']).toBe(`${runIdFor(run)}.${stage}`);
    },
  );

  it('cuts long ids with a hash, so ids that differ only past the cut get different names', () => {
    const runId = runIdFor(longRun);
    const a = jobNameFor(`${runId}.${'s'.repeat(39)}a`, 1);
    const b = jobNameFor(`${runId}.${'s'.repeat(39)}b`, 1);
    expect(a).not.toBe(b);
    expect(a.length).toBe(JOB_NAME_MAX);
    expect(jobNameFor(`${runId}.${'s'.repeat(39)}a`, 1)).toBe(a); // deterministic
    const long = `${runId}.${longStage}`;
    expect(labelValueFor(long)).not.toBe(long);
    expect(labelValueFor(long).length).toBeLessThanOrEqual(63);
    expect(labelValueFor('fire.train')).toBe('fire.train');
  });

  it('starts a Service name with a letter', () => {
    expect(serviceNameFor('abc-a1')).toBe('abc-a1');
    expect(serviceNameFor('7b-a1')).toBe('s-7b-a1');
  });
});

// ---------------------------------------------------------------------------------------
// Pool workers

describe('buildPoolWorkers', () => {
  it('builds one Job per worker, running `stoker worker --pool NAME --worker-id ID`', () => {
    const jobs = makePoolWorkers('gen-h100')
      .gpus(1)
      .gpuType('h100')
      .memory('80Gi')
      .secretEnv('HF_TOKEN', { secret: 'hf', key: 'token' })
      .workers('gen-h100-3fa2c1', 'gen-h100-9bd004')
      .build();
    expect(jobs).toHaveLength(2);
    for (const job of jobs) valid(job);
    const [first] = jobs as [V1Job];
    expect(first.metadata?.name).toBe('pool-gen-h100-3fa2c1');
    expect(first.spec).toMatchObject({
      completions: 1,
      parallelism: 1,
      backoffLimit: 0,
      completionMode: 'NonIndexed',
    });
    expect(first.metadata?.labels).toMatchObject({
      'app.kubernetes.io/managed-by': 'stoker',
      'app.kubernetes.io/component': 'pool-worker',
      'stoker.dev/pool': 'gen-h100',
      'stoker.dev/worker-id': 'gen-h100-3fa2c1',
    });
    const pod = podOf(first);
    expect(pod.containers[0]?.command).toEqual([
      'stoker-env-fd',
      'stoker',
      'worker',
      '--pool',
      'gen-h100',
      '--worker-id',
      'gen-h100-3fa2c1',
    ]);
    // cpu from the generate kind's default, per GPU.
    expect(pod.containers[0]?.resources?.limits).toEqual({
      cpu: '4',
      memory: '80Gi',
      'nvidia.com/gpu': '1',
    });
    const env = envOf(first);
    expect(env.get('HF_TOKEN')?.valueFrom).toEqual({ secretKeyRef: { name: 'hf', key: 'token' } });
    expect(env.get('STOKER_SECRET_ENV')?.value).toBe('STOKER_REDIS_URL HF_TOKEN');
    expect(env.has('MASTER_ADDR')).toBe(false);
    expect(pod.volumes?.map((v) => v.name)).toEqual(['runs', 'dshm', 'tmp', 'home']);
  });

  it("uses the pool's own GPUs and the stage's Kueue queue", () => {
    const [job] = makePoolWorkers('judge')
      .gpus(8)
      .poolGpusOverride(2)
      .kubernetes({ queueName: 'gen' })
      .build();
    valid(job as V1Job);
    expect(podOf(job as V1Job).containers[0]?.resources?.requests?.['nvidia.com/gpu']).toBe('2');
    expect(job?.spec?.suspend).toBe(true);
    expect(job?.metadata?.labels?.['kueue.x-k8s.io/queue-name']).toBe('gen');
  });
});

// ---------------------------------------------------------------------------------------
// A whole run

describe('buildAll', () => {
  it('renders every object of a pipeline: gangs with Services, pools once, CPU steps', () => {
    const spec: NormalizedSpec = makePipeline('fire')
      .label('team', 'rl')
      .defaults({ resources: { gpuType: 'h100' }, kubernetes: { queueName: 'team-a' } })
      .stage('teacher', (s) => s.gpus(8).nodes(2).outputs({ checkpoint: 'final.pt' }))
      .stage('selfplay', (s) =>
        s
          .kind('generate')
          .dependsOn('teacher')
          .gpus(1)
          .set('input', { shards: ['a.jsonl', 'b.jsonl'] })
          .set('pool', { name: 'gen-h100', maxReplicas: 3, replicas: 2 }),
      )
      .stage('judge', (s) =>
        s
          .kind('evaluate')
          .dependsOn('teacher')
          .gpus(1)
          .set('input', { shards: ['c.jsonl'] })
          .set('pool', { name: 'gen-h100', maxReplicas: 3 }),
      )
      .stage('report', (s) => s.kind('report').dependsOn('selfplay', 'judge'))
      .normalize();
    const objects = buildAll(spec, runIdFor('fire'), kubernetesSettings());
    for (const o of objects) valid(o);
    expect(objects.map((o) => `${o.kind}/${o.metadata?.name}`)).toEqual([
      'Job/fire-20261126-100422-c373ab-teacher-a1',
      'Service/fire-20261126-100422-c373ab-teacher-a1',
      'Job/pool-gen-h100-0',
      'Job/pool-gen-h100-1',
      'Job/fire-20261126-100422-c373ab-report-a1',
    ]);
    const report = objects[4] as V1Job;
    expect(report.spec?.suspend).toBe(true);
    expect(report.metadata?.labels?.['team']).toBe('rl');
    // A CPU step that names no resources gets its kind's defaults: never BestEffort.
    const cpuStep = { cpu: '1', memory: '4Gi' };
    expect(podOf(report).containers[0]?.resources).toEqual({ requests: cpuStep, limits: cpuStep });
    expect(podOf(report).nodeSelector).toBeUndefined();
  });
});

// ---------------------------------------------------------------------------------------
// Images pinned by digest

describe('images pinned by digest (STOKER_K8S_REQUIRE_IMAGE_DIGESTS)', () => {
  const digest = `sha256:${'0123456789abcdef'.repeat(4)}`;
  it.each([
    [`registry.example.com/stoker@${digest}`, null],
    [`registry.example.com/stoker:0.1.0@${digest}`, null],
    ['registry.example.com/stoker:latest', /is a :latest tag/],
    ['registry.example.com:5000/stoker:0.1.0', /is a tag/],
    ['registry.example.com:5000/stoker', /has no tag or digest/],
    ['stoker@sha256:abc', /a digest that is not sha256:<64 hex digits>/],
  ])('%s', (image, why) => {
    const found = unpinnedImage(image);
    if (why === null) expect(found).toBeNull();
    else expect(found).toMatch(why);
  });

  it("the builders refuse a stage's unpinned image, and build a pinned one", () => {
    const build = (image: string) =>
      makeTrainJob().image(image).settings({ requireImageDigests: true }).build().job;
    expect(() => build('stoker-worker-gpu:latest')).toThrow(/:latest tag.*pinned by digest/);
    const job = valid(build(`registry.example.com/w@${digest}`));
    expect(podOf(job).containers[0]?.image).toBe(`registry.example.com/w@${digest}`);
    // Without the requirement a tag is built as before.
    expect(podOf(makeTrainJob().image('w:1').build().job).containers[0]?.image).toBe('w:1');
  });

  it("refuses a stage's unpinned image at its field (the backend's checkSpec)", () => {
    const spec = makePipeline('img')
      .stage('a', (s) => s.image('registry.example.com/a:1'))
      .stage('b', (s) => s.image(`registry.example.com/b@${digest}`))
      .stage('c')
      .normalize();
    expect(runRules([imageDigestRule], spec, storedPaths(spec))).toEqual([
      { path: ['spec', 'stages', 0, 'image'], message: expect.stringMatching(/is a tag/) },
    ]);
  });
});

// ---------------------------------------------------------------------------------------
// Settings

describe('settingsFromEnv', () => {
  it('reads the ConfigMap variables over the defaults', () => {
    const s = settingsFromEnv({
      STOKER_K8S_NAMESPACE: 'ml',
      STOKER_K8S_WORKER_IMAGE: 'registry.example.com/stoker-worker-gpu:1.2',
      STOKER_K8S_WORKER_COMMAND: '["node", "/app/bin/stoker.js"]',
      STOKER_K8S_WORKER_LAUNCHER: '/opt/stoker/stoker-env-fd',
      STOKER_K8S_PRIORITY_CLASS: '',
      STOKER_K8S_RUNS_CLAIM: '',
      STOKER_K8S_GPU_TYPES: '{"b200": "NVIDIA-B200"}',
      STOKER_K8S_MASTER_PORT: '23456',
      STOKER_K8S_READ_ONLY_ROOT_FS: 'false',
      STOKER_K8S_WORKER_HOME: '/home/node',
      STOKER_K8S_DEFAULT_RESOURCES: '{"train": {"memory": "64Gi"}, "report": {"cpu": "500m"}}',
      STOKER_PREFIX: 'team-a:',
    });
    expect(s).toMatchObject({
      namespace: 'ml',
      workerImage: 'registry.example.com/stoker-worker-gpu:1.2',
      workerCommand: ['node', '/app/bin/stoker.js'],
      workerLauncher: '/opt/stoker/stoker-env-fd',
      priorityClassName: undefined,
      runsVolume: undefined,
      masterPort: 23456,
      readOnlyRootFilesystem: false,
      workerHome: '/home/node',
      workerEnv: { STOKER_PREFIX: 'team-a:' },
    });
    // Each amount given replaces the built-in one; the others stay.
    expect(s.defaultResources).toEqual({
      ...defaultResources(),
      train: { cpu: '4', memory: '64Gi' },
      report: { cpu: '500m', memory: '4Gi' },
    });
    // Unset, the root file system is read-only.
    expect(settingsFromEnv({}).readOnlyRootFilesystem).toBe(true);
    expect(s.gpuTypes).toMatchObject({ b200: 'NVIDIA-B200', h100: 'NVIDIA-H100-80GB-HBM3' });
  });

  it('names every bad variable at once', () => {
    let err: unknown;
    try {
      settingsFromEnv({
        STOKER_K8S_NAMESPACE: 'Not_A_Namespace',
        STOKER_K8S_MASTER_PORT: '99999',
        STOKER_K8S_WORKER_COMMAND: 'stoker worker',
        STOKER_K8S_WORKER_LAUNCHER: 'stoker-env-fd --flag',
        STOKER_K8S_WORKER_HOME: 'home',
        STOKER_K8S_DEFAULT_RESOURCES: '{"train": {"memory": "lots"}}',
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SettingsError);
    expect((err as SettingsError).issues.map((i) => i.variable).sort()).toEqual([
      'STOKER_K8S_DEFAULT_RESOURCES',
      'STOKER_K8S_MASTER_PORT',
      'STOKER_K8S_NAMESPACE',
      'STOKER_K8S_WORKER_COMMAND',
      'STOKER_K8S_WORKER_HOME',
      'STOKER_K8S_WORKER_LAUNCHER',
    ]);
    expect(String(err)).toMatch(/STOKER_K8S_DEFAULT_RESOURCES: memory: a quantity/);
  });

  it('with STOKER_K8S_REQUIRE_IMAGE_DIGESTS, refuses a worker image without a digest', () => {
    const pinned = `registry.example.com/stoker-worker-gpu@sha256:${'a'.repeat(64)}`;
    expect(
      settingsFromEnv({
        STOKER_K8S_REQUIRE_IMAGE_DIGESTS: 'true',
        STOKER_K8S_WORKER_IMAGE: pinned,
      }),
    ).toMatchObject({ requireImageDigests: true, workerImage: pinned });
    expect(() =>
      settingsFromEnv({
        STOKER_K8S_REQUIRE_IMAGE_DIGESTS: 'true',
        STOKER_K8S_WORKER_IMAGE: 'registry.example.com/stoker-worker-gpu:0.1.0',
      }),
    ).toThrow(
      /STOKER_K8S_WORKER_IMAGE: image .* is a tag: this controller runs only images pinned by digest/,
    );
    // The built-in worker image is :latest: refused too.
    expect(() => settingsFromEnv({ STOKER_K8S_REQUIRE_IMAGE_DIGESTS: 'true' })).toThrow(
      /is a :latest tag/,
    );
  });

  it.each([
    ['32Gi', 8, '256Gi'],
    ['4', 8, '32'],
    ['500m', 3, '1500m'],
    ['1.5', 3, '4.5'],
    ['0.1', 3, '0.3'],
  ])('scales a default amount by the GPUs: %s x %d = %s', (q, n, expected) => {
    expect(scaleQuantity(q, n)).toBe(expected);
  });

  it('runs workers through stoker-env-fd on PATH unless told otherwise', () => {
    expect(settingsFromEnv({}).workerLauncher).toBe('stoker-env-fd');
  });
});

// ---------------------------------------------------------------------------------------
// The spec's kubernetes block

describe('spec: the kubernetes block', () => {
  it('merges spec.defaults.kubernetes into each stage, the stage winning field by field', () => {
    const spec = makePipeline('merge')
      .defaults({
        kubernetes: {
          namespace: 'ml',
          nodeSelector: { pool: 'a100', zone: 'us-east1-b' },
          tolerations: [{ key: 'dedicated', operator: 'Exists' }],
          volumes: {
            pvc: [
              { claimName: 'datasets', mountPath: '/data', readOnly: true },
              { claimName: 'ckpt', mountPath: '/ckpt' },
            ],
          },
          queueName: 'team-a',
          ttlSecondsAfterFinished: '1h',
        },
      })
      .stage('a', (s) =>
        s.gpus(2).set('kubernetes', {
          nodeSelector: { pool: 'h100' },
          tolerations: [],
          volumes: { pvc: [{ claimName: 'ckpt-big', mountPath: '/ckpt' }] },
          gpusPerNodeMax: 4,
        }),
      )
      .stage('b', (s) => s.kind('report'))
      .normalize();
    const [a, b] = spec.stages;
    expect(a?.kubernetes).toEqual({
      namespace: 'ml',
      imagePullPolicy: undefined,
      serviceAccountName: undefined,
      nodeSelector: { pool: 'h100', zone: 'us-east1-b' },
      tolerations: [],
      priorityClassName: undefined,
      volumes: {
        pvc: [
          { claimName: 'datasets', mountPath: '/data', readOnly: true },
          { claimName: 'ckpt-big', mountPath: '/ckpt', readOnly: false },
        ],
        shmSize: '16Gi',
      },
      queueName: 'team-a',
      ttlSecondsAfterFinished: 3600,
      runAsUser: undefined,
      fsGroup: undefined,
      gpusPerNodeMax: 4,
      cpuDistributed: false,
      writableRoot: false,
    });
    expect(b?.kubernetes.volumes.shmSize).toBeNull();
    expect(b?.kubernetes.tolerations).toEqual([{ key: 'dedicated', operator: 'Exists' }]);
  });

  it('allows 16 GPUs on a node when the spec says its nodes have them', () => {
    const spec = makeRun()
      .gpus(16)
      .inlineStage((s) => s.set('kubernetes', { gpusPerNodeMax: 16 }))
      .normalize();
    expect(spec.stages[0]?.resources.gpus).toBe(16);
  });

  it.each<[string, () => string, { path: string; message: RegExp }[]]>([
    [
      'two nodes with no GPUs (a forgotten gpus)',
      () => makeRun().nodes(2).toYaml(),
      [{ path: 'spec.resources.nodes', message: /nodes: 2 with no GPUs.*cpuDistributed: true/ }],
    ],
    [
      'two nodes with gpus: 0 inherited from the defaults',
      () =>
        makePipeline()
          .defaults({ resources: { gpus: 0, nodes: 2 } })
          .stage('t')
          .toYaml(),
      [{ path: 'spec.defaults.resources.nodes', message: /nodes: 2 with no GPUs/ }],
    ],
    [
      'cpuDistributed on a stage with GPUs',
      () =>
        makeRun()
          .gpus(8)
          .nodes(2)
          .inlineStage((s) => s.set('kubernetes', { cpuDistributed: true }))
          .toYaml(),
      [{ path: 'spec.kubernetes.cpuDistributed', message: /for multi-node stages without GPUs/ }],
    ],
    [
      'more GPUs per node than the nodes have',
      () => makeRun().gpus(16).toYaml(),
      [
        {
          path: 'spec.resources.gpus',
          message: /gpus is per node: 16 GPUs.*gpusPerNodeMax \(8\).*nodes: 2 with gpus: 8/,
        },
      ],
    ],
    [
      "more GPUs per node than the spec's own maximum, on a pool",
      () =>
        makePipeline()
          .defaults({ kubernetes: { gpusPerNodeMax: 4 } })
          .stage('g', (s) =>
            s
              .kind('generate')
              .set('input', { shards: ['a'] })
              .set('pool', { name: 'p', maxReplicas: 1, resources: { gpus: 8 } }),
          )
          .toYaml(),
      [
        {
          path: 'spec.stages[0].pool.resources.gpus',
          message: /more than kubernetes\.gpusPerNodeMax \(4\)/,
        },
      ],
    ],
    [
      // Its last pod's hostname would not fit in 63 characters either; the spec's bound
      // (10,000 nodes, SPEC_LIMITS) refuses it first, and keeps every index to 4 digits,
      // which a Job name of at most 58 characters leaves room for.
      'a gang of 100,000 nodes',
      () => makeRun().name('r'.repeat(40)).gpus(1).nodes(100_000).toYaml(),
      [{ path: 'spec.resources.nodes', message: /must be at most 10,000 nodes \(got 100000\)/ }],
    ],
    [
      'a secret taking a name stoker sets in the pod',
      () =>
        makeRun()
          .inlineStage((s) =>
            s.secretEnv('TOKEN', { fromEnv: 'STOKER_REDIS_URL' }).secretEnv('MASTER_ADDR'),
          )
          .toYaml(),
      [
        {
          path: 'spec.payload.secretEnv[0].fromEnv',
          message: /"STOKER_REDIS_URL" is a variable stoker sets/,
        },
        {
          path: 'spec.payload.secretEnv[1].name',
          message: /"MASTER_ADDR" is a variable stoker sets/,
        },
      ],
    ],
    [
      "run labels that are not Kubernetes labels, or are stoker's own",
      () =>
        makeRun()
          .label('has space', 'x')
          .label('team', 'a value with spaces')
          .label('stoker.dev/run', 'mine')
          .label('kueue.x-k8s.io/queue-name', 'q')
          .toYaml(),
      [
        { path: 'metadata.labels["has space"]', message: /not a Kubernetes label key/ },
        { path: 'metadata.labels.team', message: /not a Kubernetes label value/ },
        { path: 'metadata.labels["stoker.dev/run"]', message: /a label stoker sets/ },
        {
          path: 'metadata.labels["kueue.x-k8s.io/queue-name"]',
          message: /use kubernetes\.queueName/,
        },
      ],
    ],
    [
      'a PVC over /dev/shm, and one path mounted twice',
      () =>
        makeRun()
          .inlineStage((s) =>
            s.set('kubernetes', {
              volumes: {
                pvc: [
                  { claimName: 'a', mountPath: '/dev/shm' },
                  { claimName: 'b', mountPath: '/data' },
                  { claimName: 'c', mountPath: '/data/' },
                ],
              },
            }),
          )
          .toYaml(),
      [
        {
          path: 'spec.kubernetes.volumes.pvc[0].mountPath',
          message: /\/dev\/shm is the memory-backed volume/,
        },
        { path: 'spec.kubernetes.volumes.pvc[2].mountPath', message: /mounted twice/ },
      ],
    ],
    [
      'a gpuType that cannot be a node label value',
      () => makeRun().gpus(1).gpuType('H100 80GB').toYaml(),
      [{ path: 'spec.resources.gpuType', message: /cannot select nodes/ }],
    ],
    [
      'fields of the block that are not Kubernetes-shaped',
      () =>
        makeRun()
          .inlineStage((s) =>
            s.set('kubernetes', {
              namespace: 'Team_A',
              nodeSelector: { 'bad key!': 'x' },
              queueName: 'has spaces',
              runAsUser: 0,
              imagePullPolicy: 'Sometimes',
              volumes: { pvc: [{ claimName: 'data', mountPath: 'relative/path' }] },
              tolerations: [{ key: 'a', effect: 'Never' }],
            }),
          )
          .toYaml(),
      [
        { path: 'spec.kubernetes.namespace', message: /a DNS label/ },
        {
          path: 'spec.kubernetes.nodeSelector["bad key!"]',
          message: /not a valid key: a Kubernetes label key/,
        },
        { path: 'spec.kubernetes.queueName', message: /a Kubernetes label value/ },
        { path: 'spec.kubernetes.runAsUser', message: /non-root/ },
        { path: 'spec.kubernetes.imagePullPolicy', message: /one of Always, IfNotPresent, Never/ },
        { path: 'spec.kubernetes.volumes.pvc[0].mountPath', message: /an absolute path/ },
        { path: 'spec.kubernetes.tolerations[0].effect', message: /one of NoSchedule/ },
      ],
    ],
    [
      'a misplaced or misspelt field says where it belongs',
      () =>
        makeRun()
          .inlineStage((s) =>
            s.set('nodeSelector', { a: 'b' }).set('kubernetes', { shmSize: '1Gi', queName: 'q' }),
          )
          .toYaml(),
      [
        {
          path: 'spec.nodeSelector',
          message: /unknown field "nodeSelector" \(it belongs under kubernetes\)/,
        },
        { path: 'spec.kubernetes.shmSize', message: /\(it belongs under volumes\)/ },
        { path: 'spec.kubernetes.queName', message: /did you mean "queueName"/ },
      ],
    ],
    [
      'a security block that is not one',
      () =>
        makeRun()
          .inlineStage((s) =>
            s.set('kubernetes', { security: { writableRoot: 'yes', privileged: true } }),
          )
          .toYaml(),
      [
        { path: 'spec.kubernetes.security.writableRoot', message: /expected true or false/ },
        { path: 'spec.kubernetes.security.privileged', message: /unknown field/ },
      ],
    ],
  ])('refuses %s, at its YAML path', (_name, build, expected) => {
    const issues = specIssues(() => parseSpec(build(), { rules: [kubernetesSpecRules] }));
    for (const e of expected) {
      expect(
        issues.find((i) => i.path === e.path && e.message.test(i.message)),
        `no issue at ${e.path} matching ${String(e.message)} in:\n${JSON.stringify(issues, null, 2)}`,
      ).toBeDefined();
    }
  });
});
