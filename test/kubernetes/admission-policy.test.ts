/**
 * k8s/base/admission-policy.yaml enforced by the simulated API server
 * (testing/kube-sim/store/admission-policy.ts, CEL by @marcbachmann/cel-js), through the
 * real @kubernetes/client-node:
 *
 *   - hostile Jobs sent with the controller's own token (what a compromised controller
 *     can send: its Role lets it create Jobs), and hostile pods sent by another service
 *     account of the namespace (as if an overlay let one create pods): each is refused
 *     with 422 and the message of the rule it breaks, as the real API server answers;
 *   - what is not stoker's worker: the controller's and Redis's pods, made by their
 *     workload controllers, are admitted; the same pods created by a service account of
 *     the namespace are checked;
 *   - a run with a train stage and a pool stage, a secretEnv and a PVC, end to end: every
 *     Job and pod it creates was evaluated and admitted (the other scenarios in
 *     test/kubernetes run with the policy on too; the harness fails a test on any
 *     denial it did not expect).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ApiException,
  BatchV1Api,
  CoreV1Api,
  type V1Job,
  type V1Pod,
  type V1PodSpec,
} from '@kubernetes/client-node';
import { afterEach, describe, expect, it } from 'vitest';
import { buildAll } from '../../orchestrator/backends/kubernetes/objects.js';
import { settingsFromEnv } from '../../orchestrator/backends/kubernetes/settings.js';
import { runIdFor } from '../builders/k8s.js';
import { makePipeline } from '../builders/spec.js';
import { dataOf, find, K8S, render } from '../util/kustomize.js';
import { eventually } from '../util/redis-server.js';
import { payloadFixture, specFrom } from '../util/system.js';
import { NS, startK8sCluster, USERS, type K8sHarness } from './harness.js';

let h: K8sHarness | undefined;
let dir: string | undefined;
afterEach(async () => {
  await h?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
  h = undefined;
  dir = undefined;
});

const PREFIX = `ValidatingAdmissionPolicy 'stoker-worker-pods' with binding 'stoker-worker-pods' denied request: `;

/** A train stage's Job as the controller renders it with the base's settings. */
function workerJob(): V1Job {
  const settings = settingsFromEnv(
    dataOf(find(render(`${K8S}/base`), 'ConfigMap', 'stoker-config')),
  );
  const spec = makePipeline('hostile')
    .stage('teacher', (s) =>
      s.gpus(1).set('kubernetes', {
        volumes: { pvc: [{ claimName: 'datasets', mountPath: '/data', readOnly: true }] },
      }),
    )
    .normalize();
  const job = buildAll(spec, runIdFor('hostile'), settings).find(
    (o): o is V1Job => o.kind === 'Job',
  );
  if (!job) throw new Error('no Job rendered');
  return job;
}

/** What the API server answered a create with: its code and message, or 'created'. */
async function attempt(create: () => Promise<unknown>): Promise<{ code: number; message: string }> {
  try {
    await create();
    return { code: 201, message: 'created' };
  } catch (err) {
    if (!(err instanceof ApiException)) throw err;
    const e = err as ApiException<string>;
    const body = JSON.parse(e.body) as {
      message: string;
      details?: { causes?: { message: string }[] };
    };
    // The real server puts the policy's sentence in the message and as the only cause.
    expect(body.details?.causes?.map((c) => c.message)).toEqual([
      body.message.slice(body.message.indexOf(': ') + 2),
    ]);
    return { code: e.code, message: body.message };
  }
}

type Edit = (spec: V1PodSpec, job: V1Job) => void;
const worker = (spec: V1PodSpec) => spec.containers[0]!;

/** Hostile pod templates: what each does, and the start of the rule's message. */
const HOSTILE: [string, Edit, string][] = [
  [
    "mounts Redis's data PVC",
    (s) =>
      s.volumes!.push({ name: 'r', persistentVolumeClaim: { claimName: 'data-stoker-redis-0' } }),
    'PVCs stoker keeps for itself may not be mounted (the runs claim stoker-runs excepted): volume r (claim data-stoker-redis-0)',
  ],
  [
    'reads the API tokens into a variable',
    (s) =>
      worker(s).env!.push({
        name: 'T',
        valueFrom: { secretKeyRef: { name: 'stoker-api-tokens', key: 'admin' } },
      }),
    'Secrets stoker keeps for itself may not be read (only STOKER_REDIS_URL from Secret stoker-redis, key worker-url): container worker env T (Secret stoker-api-tokens, key admin)',
  ],
  [
    'mounts the API tokens as a secret volume',
    (s) => s.volumes!.push({ name: 't', secret: { secretName: 'stoker-api-tokens' } }),
    'Secrets stoker keeps for itself may not be mounted: volume t',
  ],
  [
    'takes every key of the API tokens with envFrom',
    (s) => (worker(s).envFrom = [{ secretRef: { name: 'stoker-api-tokens' } }]),
    'Secrets stoker keeps for itself may not be read: container worker envFrom Secret stoker-api-tokens',
  ],
  [
    'projects the API tokens into a volume',
    (s) =>
      s.volumes!.push({
        name: 'p',
        projected: { sources: [{ secret: { name: 'stoker-api-tokens' } }] },
      }),
    'Secrets stoker keeps for itself may not be mounted: volume p',
  ],
  [
    "reads the controller's Redis URL under STOKER_REDIS_URL",
    (s) => {
      const redis = worker(s).env!.find((e) => e.name === 'STOKER_REDIS_URL')!;
      redis.valueFrom!.secretKeyRef!.key = 'controller-url';
    },
    'Secrets stoker keeps for itself may not be read (only STOKER_REDIS_URL from Secret stoker-redis, key worker-url): container worker env STOKER_REDIS_URL (Secret stoker-redis, key controller-url)',
  ],
  [
    "reads the workers' Redis URL under another name",
    (s) =>
      worker(s).env!.push({
        name: 'MY_URL',
        valueFrom: { secretKeyRef: { name: 'stoker-redis', key: 'worker-url' } },
      }),
    'Secrets stoker keeps for itself may not be read (only STOKER_REDIS_URL from Secret stoker-redis, key worker-url): container worker env MY_URL (Secret stoker-redis, key worker-url)',
  ],
  [
    "runs as the controller's service account",
    (s) => (s.serviceAccountName = 'stoker-controller'),
    'the service account may not be stoker-controller (the controller of stoker)',
  ],
  [
    'mounts an API token',
    (s) => (s.automountServiceAccountToken = true),
    'a worker pod gets no API token: automountServiceAccountToken must be false and no projected volume may hold a serviceAccountToken',
  ],
  [
    'mounts a host path',
    (s) => s.volumes!.push({ name: 'h', hostPath: { path: '/var/lib/kubelet' } }),
    'hostPath volumes are not allowed: volume h',
  ],
  [
    'clones a claim through an ephemeral volume',
    (s) =>
      s.volumes!.push({
        name: 'e',
        ephemeral: {
          volumeClaimTemplate: {
            spec: {
              accessModes: ['ReadWriteOnce'],
              dataSource: { kind: 'PersistentVolumeClaim', name: 'data-stoker-redis-0' },
              resources: { requests: { storage: '1Gi' } },
            },
          },
        },
      }),
    'volumes may be emptyDir, persistentVolumeClaim, configMap, secret, projected or downwardAPI only: volume e',
  ],
  [
    'runs a privileged container',
    (s) => (worker(s).securityContext!.privileged = true),
    'privileged containers are not allowed: container worker',
  ],
  [
    "joins the host's network",
    (s) => (s.hostNetwork = true),
    'hostNetwork, hostPID and hostIPC are not allowed',
  ],
  [
    "drops stoker's labels",
    (s, job) => {
      delete job.spec!.template.metadata!.labels!['app.kubernetes.io/managed-by'];
    },
    "namespace stoker runs stoker's worker Jobs only: a Job and its pod template, or a pod, must be labelled app.kubernetes.io/managed-by=stoker and app.kubernetes.io/component=train-worker or pool-worker",
  ],
];

describe('the admission policy', () => {
  it('admits the Job the controller renders, and the pod of it a namespace account creates', async () => {
    h = await startK8sCluster();
    const batch = h.cluster.kubeConfig({ namespace: NS }).makeApiClient(BatchV1Api);
    const job = workerJob();
    job.spec!.suspend = true; // no pods: this checks admission only
    expect(await attempt(() => batch.createNamespacedJob({ namespace: NS, body: job }))).toEqual({
      code: 201,
      message: 'created',
    });
    const core = h.cluster
      .kubeConfig({ namespace: NS, token: USERS.namespaceAccount.token })
      .makeApiClient(CoreV1Api);
    const pod: V1Pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'direct', labels: job.spec!.template.metadata!.labels! },
      spec: structuredClone(job.spec!.template.spec!),
    };
    expect(await attempt(() => core.createNamespacedPod({ namespace: NS, body: pod }))).toEqual({
      code: 201,
      message: 'created',
    });
    expect(h.admissionDecisions().map((d) => [d.resource, d.name, d.username, d.decision])).toEqual(
      [
        ['jobs', job.metadata!.name, USERS.controller.user.username, 'admitted'],
        ['pods', 'direct', USERS.namespaceAccount.user.username, 'admitted'],
      ],
    );
  });

  it.each(HOSTILE)(
    'refuses a Job from the controller whose pod template %s, and the same pod from a namespace account',
    async (_what, edit, message) => {
      h = await startK8sCluster();
      const batch = h.cluster.kubeConfig({ namespace: NS }).makeApiClient(BatchV1Api);
      const job = workerJob();
      edit(job.spec!.template.spec!, job);
      expect(await attempt(() => batch.createNamespacedJob({ namespace: NS, body: job }))).toEqual({
        code: 422,
        message: `jobs.batch "${job.metadata!.name}" is forbidden: ${PREFIX}${message}`,
      });
      const core = h.cluster
        .kubeConfig({ namespace: NS, token: USERS.namespaceAccount.token })
        .makeApiClient(CoreV1Api);
      const pod: V1Pod = {
        metadata: { name: 'hostile', labels: job.spec!.template.metadata!.labels! },
        spec: job.spec!.template.spec!,
      };
      expect(await attempt(() => core.createNamespacedPod({ namespace: NS, body: pod }))).toEqual({
        code: 422,
        message: `pods "hostile" is forbidden: ${PREFIX}${message}`,
      });
      expect(h.takeDenials().map((d) => d.resource)).toEqual(['jobs', 'pods']);
      expect(h.jobs()).toEqual([]);
      expect(h.pods()).toEqual([]);
    },
  );

  it("refuses a Job labelled as stoker's whose own labels are not", async () => {
    h = await startK8sCluster();
    const batch = h.cluster.kubeConfig({ namespace: NS }).makeApiClient(BatchV1Api);
    const job = workerJob();
    job.metadata!.labels = {};
    const answer = await attempt(() => batch.createNamespacedJob({ namespace: NS, body: job }));
    expect(answer.code).toBe(422);
    expect(answer.message).toContain("namespace stoker runs stoker's worker Jobs only");
    h.takeDenials();
  });

  it("admits the controller's and Redis's pods from their workload controllers, and checks the same pods from a namespace account", async () => {
    h = await startK8sCluster();
    const objects = render(`${K8S}/overlays/kind`);
    const podOf = (kind: 'Deployment' | 'StatefulSet', name: string, owner: string): V1Pod => {
      const tpl = (find(objects, kind, name) as unknown as V1Job).spec!.template;
      return {
        metadata: {
          name: `${name}-0`,
          labels: tpl.metadata!.labels!,
          ownerReferences: [
            {
              apiVersion: 'apps/v1',
              kind: owner,
              name,
              uid: '0d6f3a5e-5a4b-4b8e-9e0e-2b8a4b1c2d3e',
              controller: true,
            },
          ],
        },
        spec: tpl.spec!,
      };
    };
    const pods = [
      podOf('Deployment', 'stoker-controller', 'ReplicaSet'),
      podOf('StatefulSet', 'stoker-redis', 'StatefulSet'),
    ];
    // As the ReplicaSet and StatefulSet controllers create them (in-process writes are
    // kube-controller-manager's service accounts, store/admission.ts).
    for (const pod of pods) h.cluster.store.create('pods', pod, { namespace: NS });
    expect(h.admissionDecisions().map((d) => [d.name, d.decision])).toEqual([
      ['stoker-controller-0', 'excluded'],
      ['stoker-redis-0', 'excluded'],
    ]);
    // The same pods sent by a service account of the namespace: forged ownerReferences.
    const core = h.cluster
      .kubeConfig({ namespace: NS, token: USERS.namespaceAccount.token })
      .makeApiClient(CoreV1Api);
    for (const pod of pods) {
      pod.metadata!.name = `forged-${pod.metadata!.name}`;
      const answer = await attempt(() => core.createNamespacedPod({ namespace: NS, body: pod }));
      expect(answer.code).toBe(422);
      expect(answer.message).toContain("namespace stoker runs stoker's worker Jobs only");
    }
    expect(h.takeDenials().map((d) => d.name)).toEqual([
      'forged-stoker-controller-0',
      'forged-stoker-redis-0',
    ]);
  });

  it('admits every Job and pod of a run with a train stage, a pool stage, a secretEnv and a PVC', async () => {
    dir = mkdtempSync(join(tmpdir(), 'stoker-k8s-admission-'));
    h = await startK8sCluster({ kubelet: { extraEnv: { STOKER_HOME: join(dir, 'home') } } });
    h.cluster.store.create('secrets', {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'stoker-payload-secrets', namespace: NS },
      stringData: { HF_TOKEN: 'hf_admission_test_token' },
    });
    h.cluster.store.create('persistentvolumeclaims', {
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      metadata: { name: 'datasets', namespace: NS },
      spec: { accessModes: ['ReadWriteMany'], resources: { requests: { storage: '1Gi' } } },
    });
    const shards = ['a', 'b'].map((name) => {
      const f = join(dir!, `${name}.jsonl`);
      writeFileSync(f, `${JSON.stringify({ id: name })}\n`);
      return f;
    });
    const s = await h.system();
    const spec = specFrom({
      apiVersion: 'stoker/v1',
      kind: 'Pipeline',
      metadata: { name: 'admitted' },
      spec: {
        stages: [
          {
            name: 'train',
            kind: 'train',
            payload: {
              command: [process.execPath, payloadFixture('ok-progress.mjs')],
              env: { STEPS: '2' },
              secretEnv: [{ name: 'HF_TOKEN' }],
            },
            kubernetes: { volumes: { pvc: [{ claimName: 'datasets', mountPath: '/data' }] } },
          },
          {
            name: 'gen',
            kind: 'generate',
            dependsOn: ['train'],
            input: { shards },
            pool: { name: 'gen-cpu', replicas: 1, maxReplicas: 1 },
            payload: {
              command: [process.execPath, payloadFixture('server.mjs')],
              env: { STATE_DIR: dir },
            },
          },
        ],
      },
    });
    const runId = await s.submit(spec);
    const view = await s
      .waitForPhase(runId, ['Succeeded', 'Failed'], 120_000)
      .catch((err: Error) => {
        throw new Error(`${err.message}\n${h!.dump()}`);
      });
    expect(view.phase, h.dump()).toBe('Succeeded');
    const admitted = h.admissionDecisions();
    expect(admitted.filter((d) => d.decision !== 'admitted')).toEqual([]);
    const created = (resource: string) =>
      new Set(admitted.filter((d) => d.resource === resource).map((d) => d.name));
    // The train Job, the pool worker's Job, and one pod of each at least.
    expect([...created('jobs')].filter((n) => n.startsWith('pool-'))).toHaveLength(1);
    expect(created('jobs').size).toBe(2);
    expect(created('pods').size).toBeGreaterThanOrEqual(2);
    await eventually('the decisions to cover every pod', () =>
      h!.pods().every((p) => created('pods').has(p.metadata!.name!)),
    );
  });
});
