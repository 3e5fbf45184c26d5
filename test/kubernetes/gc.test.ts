/**
 * Garbage collection at controller start (gc.ts through createKubernetesBackend), on the
 * simulated cluster with a real run store: what earlier controllers left behind is
 * deleted, what a live attempt owns is kept for the dispatcher to re-attach to.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1Job, V1Pod, V1Service } from '@kubernetes/client-node';
import { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { makeKeys } from '../../common/keys.js';
import { silentLogger } from '../../common/logger.js';
import type { Phase } from '../../common/model.js';
import { attemptVerdict, planGarbage } from '../../orchestrator/backends/kubernetes/gc.js';
import { createKubernetesBackend } from '../../orchestrator/backends/kubernetes/compose.js';
import type { KubernetesBackend } from '../../orchestrator/backends/kubernetes/backend.js';
import { kubernetesSettings } from '../../orchestrator/backends/kubernetes/settings.js';
import { startFakeCluster, type FakeCluster } from '../../testing/kube-sim/cluster.js';
import { newTaskStatus } from '../../common/task-store.js';
import { RunStore } from '../../orchestrator/store.js';
import { makeTrainJob, type TrainJobBuilder } from '../builders/k8s.js';
import { eventually, testRedisUrl, uniquePrefix } from '../util/redis-server.js';

const NS = 'stoker';
const SLEEP = 'setTimeout(() => {}, 120000)';

let cluster: FakeCluster;
let redis: Redis;
let store: RunStore;
let prefix: string;
let home: string;
let backend: KubernetesBackend | undefined;

beforeEach(async () => {
  cluster = await startFakeCluster({ kubelet: { inheritEnv: 'all' } });
  redis = new Redis(await testRedisUrl());
  prefix = uniquePrefix('gc');
  store = new RunStore(redis, makeKeys(prefix));
  home = mkdtempSync(join(tmpdir(), 'stoker-gc-'));
});
afterEach(async () => {
  await backend?.close();
  backend = undefined;
  await cluster.stop();
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length) await redis.del(...keys);
  redis.disconnect();
  rmSync(home, { recursive: true, force: true });
});

/** Record the builder's run in the store, and its task at `attempt` in `phase`. */
async function recordTask(b: TrainJobBuilder, attempt: number, phase: Phase): Promise<void> {
  const req = b.request();
  await store.createRun(b.spec(), { home, id: req.runId });
  await store.createTask({
    status: {
      ...newTaskStatus({
        id: req.taskId,
        runId: req.runId,
        stage: req.stage,
        queue: 'train',
        maxAttempts: 3,
      }),
      phase,
      attempt,
      unit: `${req.taskId}-a${attempt}`,
    },
    payload: {
      command: ['true'],
      env: {},
      secretEnv: [],
      workingDir: home,
      outputDir: home,
      terminationGracePeriodSeconds: 5,
      stallTimeoutSeconds: 0,
    },
    runDir: join(home, 'runs', req.runId),
  });
}

function createJob(b: TrainJobBuilder): string {
  const { job, service } = b.build();
  cluster.store.create('jobs', job, { namespace: NS });
  if (service) cluster.store.create('services', service, { namespace: NS });
  return job.metadata!.name!;
}

const jobNames = () =>
  cluster.store
    .list<V1Job>('jobs', { namespace: NS })
    .map((j) => j.metadata!.name!)
    .sort();
const podsOf = (job: string) =>
  cluster.store
    .list<V1Pod>('pods', { namespace: NS })
    .filter((p) => p.metadata?.labels?.['job-name'] === job);

async function running(job: string): Promise<void> {
  await eventually(`a running pod of ${job}`, () =>
    podsOf(job).some((p) => p.status?.phase === 'Running'),
  );
}

async function startBackend(gcIntervalSeconds?: number): Promise<KubernetesBackend> {
  cluster.server.clearRequests();
  backend = await createKubernetesBackend({
    kc: cluster.kubeConfig({ namespace: NS }),
    settings: kubernetesSettings({
      namespace: NS,
      ...(gcIntervalSeconds === undefined ? {} : { gcIntervalSeconds }),
    }),
    store,
    log: silentLogger(),
  });
  return backend;
}

describe('garbage collection at controller start', () => {
  it("deletes Jobs of runs and attempts that are gone, superseded or finished, keeps the live attempt's and finished Jobs for their TTL", async () => {
    // A run that no longer exists in the store (its records expired or were deleted).
    const gone = createJob(makeTrainJob().run('gone').simulated(SLEEP));
    // A task on its second attempt: the first attempt's Job still runs (the controller
    // died before deleting it), the second is the live one.
    const retried = makeTrainJob().run('retried').simulated(SLEEP);
    await recordTask(retried, 2, 'Running');
    const superseded = createJob(retried.attempt(1));
    const live = createJob(retried.attempt(2));
    // A task cancelled while its Job ran, the controller dead before it deleted the Job.
    const cancelled = makeTrainJob().run('cancelled').simulated(SLEEP);
    await recordTask(cancelled, 1, 'Cancelled');
    const stillRunning = createJob(cancelled);
    // A task that succeeded: its finished Job stays for inspection until its TTL.
    const done = makeTrainJob().run('done').simulated('');
    await recordTask(done, 1, 'Succeeded');
    const finished = createJob(done);
    await cluster.store.waitFor<V1Job>('jobs', NS, finished, (j) =>
      (j?.status?.conditions ?? []).some((c) => c.type === 'Complete'),
    );
    // Not stoker's: no managed-by label.
    const foreign = makeTrainJob().run('foreign').simulated(SLEEP).build().job;
    foreign.metadata!.name = 'someone-elses';
    delete foreign.metadata!.labels!['app.kubernetes.io/managed-by'];
    delete foreign.spec!.template.metadata!.labels!['app.kubernetes.io/managed-by'];
    cluster.store.create('jobs', foreign, { namespace: NS });
    for (const j of [gone, superseded, live, stillRunning]) await running(j);
    const goneProcesses = () =>
      cluster.kubelet
        .processes()
        .filter((p) => podsOf(gone).some((x) => x.metadata?.name === p.pod));
    expect(goneProcesses()).toHaveLength(1);

    await startBackend();

    expect(jobNames()).toEqual([finished, live, 'someone-elses'].sort());
    // Background propagation: the deleted Jobs' pods go too, their processes killed.
    await eventually('the pods of deleted Jobs to be gone', () =>
      [gone, superseded, stillRunning].every((j) => podsOf(j).length === 0),
    );
    expect(podsOf(live)).toHaveLength(1);
    // Jobs and pods came from the caches: one list each, one list of Services, a delete each.
    const deletes = cluster.server.requests.filter((r) => r.verb === 'delete');
    expect(deletes.map((r) => r.name).sort()).toEqual([gone, stillRunning, superseded].sort());
    expect(deletes.every((r) => r.query.includes('propagationPolicy=Background'))).toBe(true);
    expect(cluster.server.countRequests({ verb: 'get' })).toBe(0);
    expect(cluster.server.countRequests({ verb: 'list', resource: 'services' })).toBe(1);
  });

  it("deletes a gang's Service whose Job is gone and pods orphaned from their Job, and nothing of pool workers", async () => {
    // A 2-node attempt whose Service outlived its Job (Services were once created
    // first, unowned; or the Job was deleted with propagationPolicy Orphan).
    const gang = makeTrainJob().run('gang').cpu(1).kubernetes({ cpuDistributed: true });
    gang.stage((s) => s.set('resources', { nodes: 2, cpu: 1 }));
    const { job, service } = gang.simulated(SLEEP).build();
    expect(service).toBeDefined();
    await recordTask(gang, 1, 'Running');
    cluster.store.create('services', service!, { namespace: NS });
    // A pod left by a Job deleted with propagationPolicy Orphan.
    const orphanJob = createJob(makeTrainJob().run('orphan').simulated(SLEEP));
    await running(orphanJob);
    cluster.store.delete('jobs', NS, orphanJob, { propagationPolicy: 'Orphan' });
    const orphanPod = podsOf(orphanJob)[0]!.metadata!.name!;
    // A pool worker's Job: pool sizing owns it, not GC.
    const poolJob: V1Job = makeTrainJob().run('pool').simulated(SLEEP).build().job;
    poolJob.metadata!.name = 'pool-gen-0';
    poolJob.metadata!.labels!['app.kubernetes.io/component'] = 'pool-worker';
    poolJob.spec!.template.metadata!.labels!['app.kubernetes.io/component'] = 'pool-worker';
    cluster.store.create('jobs', poolJob, { namespace: NS });

    await startBackend();

    const services = cluster.store.list<V1Service>('services', { namespace: NS });
    expect(services.map((s) => s.metadata?.name)).toEqual([]);
    await eventually('the orphaned pod to be gone', () => podsOf(orphanJob).length === 0);
    expect(jobNames()).toEqual(['pool-gen-0']);
    const deleted = cluster.server.requests
      .filter((r) => r.verb === 'delete')
      .map((r) => `${r.resource}/${r.name}`)
      .sort();
    expect(deleted).toEqual([`pods/${orphanPod}`, `services/${service!.metadata!.name}`].sort());
    expect(job.metadata?.name).toBeDefined();
  });

  it('re-attaches to the live attempt after collecting: launch answers attached, wait follows it', async () => {
    const b = makeTrainJob().run('reattach').simulated('setTimeout(() => {}, 1500)');
    await recordTask(b, 1, 'Running');
    const name = createJob(b);
    await running(name);
    const be = await startBackend();
    const req = b.request();
    expect(await be.launch(req)).toEqual({ attached: true });
    const state = await be.wait(req.unitName);
    expect(state.phase).toBe('Succeeded');
    expect(jobNames()).toEqual([name]);
    expect(cluster.server.countRequests({ verb: 'create', resource: 'jobs' })).toBe(1);
  });
});

describe('the garbage plan (pure)', () => {
  it.each([
    ['no task: gone', 1, null, 'gone'],
    ['the recorded attempt, running: live', 2, { phase: 'Running', attempt: 2 }, 'live'],
    [
      'a later attempt than recorded (launched, not yet recorded): live',
      3,
      { phase: 'Pending', attempt: 2 },
      'live',
    ],
    ['an earlier attempt: stale', 1, { phase: 'Running', attempt: 2 }, 'stale'],
    [
      'the recorded attempt of a finished task: stale',
      2,
      { phase: 'Succeeded', attempt: 2 },
      'stale',
    ],
    [
      'the recorded attempt, failed and waiting for its retry: stale',
      2,
      { phase: 'Pending', attempt: 2 },
      'stale',
    ],
  ] as const)('%s', (_name, attempt, task, verdict) => {
    expect(attemptVerdict(attempt, task)).toBe(verdict);
  });

  it('leaves a Job already being deleted, and Jobs it cannot attribute, alone', () => {
    const { job } = makeTrainJob().run('x').build();
    const deleting = { ...job, metadata: { ...job.metadata, deletionTimestamp: new Date() } };
    expect(
      planGarbage({
        jobs: [deleting],
        pods: [],
        services: [],
        verdicts: new Map([[job.metadata!.name!, 'gone']]),
      }),
    ).toEqual([]);
    expect(planGarbage({ jobs: [job], pods: [], services: [], verdicts: new Map() })).toEqual([]);
  });
});

describe('garbage collection while the controller runs', () => {
  it('collects orphans that appear after the start, every gcIntervalSeconds, and keeps live attempts', async () => {
    await startBackend(1);
    // After the start: a run deleted from the store while its Job ran, and a task whose
    // record moved to attempt 2 with attempt 1's Job still running beside the live one.
    const gone = createJob(makeTrainJob().run('gone-later').simulated(SLEEP));
    const retried = makeTrainJob().run('retried-later').simulated(SLEEP);
    await recordTask(retried, 2, 'Running');
    const superseded = createJob(retried.attempt(1));
    const live = createJob(retried.attempt(2));
    // Created by the dispatcher a moment before the task's record says attempt 3.
    const ahead = createJob(retried.attempt(3));
    await eventually(
      'the periodic pass to delete the orphans',
      () => !jobNames().includes(gone) && !jobNames().includes(superseded),
      10_000,
    );
    expect(jobNames()).toEqual([ahead, live].sort());
    const deletes = cluster.server.requests.filter((r) => r.verb === 'delete');
    expect(deletes.map((r) => r.name).sort()).toEqual([gone, superseded].sort());
    // Each pass lists Services once and reads Jobs and pods from the caches.
    expect(cluster.server.countRequests({ verb: 'get' })).toBe(0);
    expect(cluster.server.countRequests({ verb: 'list', resource: 'jobs' })).toBe(1);
  });
});
