/**
 * k8s-reconcile: what keeping N training tasks under watch costs the kubernetes backend,
 * and the API server, when nothing changes (issue 4: "reconcile cost with 1,000 active
 * tasks in the fake cluster, API requests per reconcile, and memory; the request count
 * must not grow with the number of unchanged objects").
 *
 * Cluster    the fake API server in this process (no Job controller, no kubelet: the
 *            objects are written straight into its store, so 1,000 tasks need no 1,000
 *            processes): N Jobs built by objects.ts for N tasks, each with one Running pod
 *            labelled as the Job controller labels them.
 * Measured   for N = 100 and 1,000 (quick: 20 and 200), with the real KubernetesBackend
 *            over HTTP:
 *            - start: the three lists that fill its caches, time and requests;
 *            - a reconcile pass: observe() of every active unit, as a controller resync or
 *              a restarted dispatcher does: time per pass (median and fastest of 10; the
 *              median carries GC pauses of the whole process, fake server included, and
 *              other load; passMsPerUnit is from the fastest) and API requests per pass
 *              (from the fake server's request log);
 *            - idle: N wait()s pending (the dispatcher supervising N units) for a few
 *              seconds with nothing changing: API requests (watches aside) in that time;
 *            - a change: 10 Jobs complete: time until their 10 waits return, and the
 *              requests that took;
 *            - memory: heap growth from before the backend started to after it synced,
 *              and the JSON size of what its caches hold.
 * Baseline   the polling design this replaces (one GET per unit per pass; what the old
 *            5 s "quiet" fallback did for every waiting unit): time and requests of one
 *            such pass over the N units, on the same server.
 * Ratio      API requests per reconcile pass, backend / polling, at the largest N (0:
 *            unchanged objects cost no request).
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { BatchV1Api, type V1Job, type V1Pod } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { silentLogger } from '../common/logger.js';
import { parseSpec } from '../common/spec/load.js';
import { KubernetesBackend } from '../orchestrator/backends/kubernetes/backend.js';
import { jobNameOfUnit } from '../orchestrator/backends/kubernetes/compose.js';
import { buildTrainJob } from '../orchestrator/backends/kubernetes/objects.js';
import { kubernetesSettings } from '../orchestrator/backends/kubernetes/settings.js';
import { startFakeApiServer } from '../testing/kube-sim/apiserver/server.js';
import type { FakeApiServer } from '../testing/kube-sim/apiserver/types.js';
import { taskIdFor } from '../orchestrator/store.js';
import {
  type Benchmark,
  type BenchContext,
  type Cleanup,
  median,
  nowMs,
  round,
  sleep,
  waitFor,
} from './lib/harness.js';

const NS = 'stoker';

/** A full GC before reading the heap (the bench runs under tsx, without --expose-gc). */
function collectGarbage(): void {
  setFlagsFromString('--expose_gc');
  (runInNewContext('gc') as () => void)();
}
const PASSES = 10;
const CHANGED = 10;

const spec = parseSpec(
  stringify({
    apiVersion: 'stoker/v1',
    kind: 'TrainingRun',
    metadata: { name: 'bench' },
    spec: {
      payload: { command: ['python3', '-m', 'train'] },
      resources: { gpus: 8, memory: '200Gi', cpu: 32, gpuType: 'h100' },
    },
  }),
);
const settings = kubernetesSettings({ namespace: NS });

/** Unit i: its Job as objects.ts builds it, and one Running pod as the Job controller makes it. */
function unitObjects(i: number): { unit: string; job: V1Job; pod: V1Pod } {
  const stage = spec.stages[0]!;
  const runId = `bench-20260101-000000-${i.toString(16).padStart(6, '0')}`;
  const taskId = taskIdFor(runId, stage.name);
  const unit = `${taskId}-a1`;
  const { job } = buildTrainJob({
    unitName: unit,
    taskId,
    runId,
    stage: stage.name,
    attempt: 1,
    runDir: `/var/lib/stoker/runs/${runId}`,
    resources: stage.resources,
    activeDeadlineSeconds: stage.activeDeadlineSeconds,
    terminationGracePeriodSeconds: stage.terminationGracePeriodSeconds,
    stageSpec: stage,
    image: settings.workerImage,
    namespace: NS,
    workerCommand: settings.workerCommand,
    env: { STOKER_PREFIX: 'stoker:' },
    settings,
  });
  const name = job.metadata!.name!;
  const now = new Date().toISOString();
  const pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: `${name}-x${i.toString(36)}`,
      namespace: NS,
      labels: {
        ...job.spec!.template.metadata!.labels,
        'job-name': name,
        'batch.kubernetes.io/job-name': name,
      },
      annotations: job.spec!.template.metadata!.annotations ?? {},
    },
    spec: { ...job.spec!.template.spec!, nodeName: `node-${i % 128}` },
    status: {
      phase: 'Running',
      conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: now }],
      containerStatuses: [
        {
          name: 'worker',
          image: settings.workerImage,
          imageID: '',
          ready: true,
          restartCount: 0,
          state: { running: { startedAt: now } },
        },
      ],
    },
  } as unknown as V1Pod;
  return { unit, job, pod };
}

const completeJob = (server: FakeApiServer, name: string): void => {
  server.store.mutate<V1Job>('jobs', NS, name, (j) => {
    j.status = {
      ...j.status,
      active: 0,
      succeeded: 1,
      conditions: [
        {
          type: 'Complete',
          status: 'True',
          reason: 'CompletionsReached',
          lastTransitionTime: new Date(),
        },
      ],
    };
  });
};

const apiRequests = (server: FakeApiServer, from: number): number =>
  server.requests.slice(from).filter((r) => r.verb !== 'watch').length;

interface Measured {
  activeTasks: number;
  startMs: number;
  startRequests: number;
  passMs: number;
  minPassMs: number;
  passMsPerUnit: number;
  requestsPerPass: number;
  idleSeconds: number;
  idleRequests: number;
  changeMs: number;
  changeRequests: number;
  heapGrowthMB: number;
  cachedJsonMB: number;
  pollPassMs?: number;
  pollRequestsPerPass?: number;
}

/**
 * One count: 1. the cluster with n Running units; 2. the backend started on it (start
 * time, requests, memory); 3. reconcile passes; 4. idle with every unit waited on; 5. a
 * change to CHANGED units; 6. (poll) the polling baseline; then every wait returns.
 */
async function measure(
  n: number,
  idleMs: number,
  cleanup: Cleanup,
  poll: boolean,
): Promise<Measured> {
  const { server, units } = await seedCluster(n, cleanup);
  const { backend, ...start } = await startBackend(server, n, cleanup);
  const passes = await reconcilePasses(server, backend, units);
  const finished = new Set<string>();
  const waits = units.map((u) => backend.wait(u).then(() => finished.add(u)));
  const idle = await idleRequests(server, idleMs);
  const change = await completeSome(server, units, finished);
  const baseline = poll ? await pollingPass(server, units) : undefined;
  // Let every wait return, then close.
  for (const u of units.slice(CHANGED)) completeJob(server, jobNameOfUnit(u));
  await Promise.all(waits);
  return {
    activeTasks: n,
    startMs: round(start.startMs),
    startRequests: start.startRequests,
    passMs: round(median(passes.ms), 2),
    minPassMs: round(Math.min(...passes.ms), 2),
    passMsPerUnit: round(Math.min(...passes.ms) / n, 4),
    requestsPerPass: passes.requestsPerPass,
    idleSeconds: idleMs / 1000,
    idleRequests: idle,
    changeMs: round(change.ms, 1),
    changeRequests: change.requests,
    heapGrowthMB: round(start.heapGrowthMB, 1),
    cachedJsonMB: round(start.cachedJsonMB, 2),
    ...(baseline === undefined
      ? {}
      : { pollPassMs: round(baseline.passMs), pollRequestsPerPass: baseline.requests }),
  };
}

/** A fake API server holding n units: each a Job (active, ready) and its Running pod. */
async function seedCluster(
  n: number,
  cleanup: Cleanup,
): Promise<{ server: FakeApiServer; units: string[] }> {
  const server = await startFakeApiServer({ validateSchemas: false, historyLimit: 50_000 });
  cleanup.defer(`stop the fake API server (${n})`, () => server.stop());
  server.store.create('priorityclasses', {
    metadata: { name: settings.priorityClassName ?? 'stoker-training' },
    value: 1000,
  });
  const units: string[] = [];
  for (let i = 0; i < n; i++) {
    const { unit, job, pod } = unitObjects(i);
    server.store.create('jobs', job, { namespace: NS });
    server.store.mutate<V1Job>('jobs', NS, job.metadata!.name!, (j) => {
      j.status = { active: 1, ready: 1, startTime: new Date() };
    });
    server.store.create('pods', pod, { namespace: NS });
    units.push(unit);
  }
  return { server, units };
}

/** Start the backend (its three lists fill the caches): time, requests, heap growth. */
async function startBackend(server: FakeApiServer, n: number, cleanup: Cleanup) {
  collectGarbage();
  const heapBefore = process.memoryUsage().heapUsed;
  const backend = new KubernetesBackend({
    kc: server.kubeConfig({ namespace: NS }),
    namespace: NS,
    log: silentLogger(),
    jobName: jobNameOfUnit,
    build: () => {
      throw new Error('the benchmark launches nothing');
    },
  });
  cleanup.defer(`close the backend (${n})`, () => backend.close());
  const from = server.requests.length;
  const t0 = nowMs();
  await backend.start();
  const startMs = nowMs() - t0;
  const startRequests = apiRequests(server, from);
  collectGarbage();
  const heapGrowthMB = (process.memoryUsage().heapUsed - heapBefore) / 2 ** 20;
  const cachedJsonMB =
    (JSON.stringify(server.store.list('jobs', { namespace: NS })).length +
      JSON.stringify(server.store.list('pods', { namespace: NS })).length) /
    2 ** 20;
  return { backend, startMs, startRequests, heapGrowthMB, cachedJsonMB };
}

/** PASSES reconcile passes, each an observe() of every unit: time of each, requests per pass. */
async function reconcilePasses(
  server: FakeApiServer,
  backend: KubernetesBackend,
  units: readonly string[],
): Promise<{ ms: number[]; requestsPerPass: number }> {
  collectGarbage();
  const from = server.requests.length;
  const ms: number[] = [];
  for (let p = 0; p < PASSES; p++) {
    const t0 = nowMs();
    for (const u of units) {
      const s = await backend.observe(u);
      if (s.phase !== 'Running') throw new Error(`${u} is ${s.phase}, expected Running`);
    }
    ms.push(nowMs() - t0);
  }
  return { ms, requestsPerPass: apiRequests(server, from) / PASSES };
}

/** Requests (watches aside) during idleMs with every unit waited on and nothing changing. */
async function idleRequests(server: FakeApiServer, idleMs: number): Promise<number> {
  await sleep(200);
  const from = server.requests.length;
  await sleep(idleMs);
  return apiRequests(server, from);
}

/** CHANGED Jobs complete: the time until their waits return, and the requests that took. */
async function completeSome(
  server: FakeApiServer,
  units: readonly string[],
  finished: ReadonlySet<string>,
): Promise<{ ms: number; requests: number }> {
  const from = server.requests.length;
  const t0 = nowMs();
  const changed = units.slice(0, CHANGED);
  for (const u of changed) completeJob(server, jobNameOfUnit(u));
  await waitFor(
    'the changed units to finish',
    () => changed.every((u) => finished.has(u)) || null,
    30_000,
    2,
  );
  return { ms: nowMs() - t0, requests: apiRequests(server, from) };
}

/** Baseline: one GET per unit, 10 at a time. */
async function pollingPass(
  server: FakeApiServer,
  units: readonly string[],
): Promise<{ passMs: number; requests: number }> {
  const batch = server.kubeConfig({ namespace: NS }).makeApiClient(BatchV1Api);
  const from = server.requests.length;
  const t0 = nowMs();
  for (let i = 0; i < units.length; i += 10) {
    await Promise.all(
      units
        .slice(i, i + 10)
        .map((u) => batch.readNamespacedJob({ name: jobNameOfUnit(u), namespace: NS })),
    );
  }
  return { passMs: nowMs() - t0, requests: apiRequests(server, from) };
}

export const k8sReconcile: Benchmark = {
  name: 'k8s-reconcile',
  async run(ctx: BenchContext, cleanup: Cleanup) {
    const counts = ctx.quick ? [20, 200] : [100, 1000];
    const idleMs = ctx.quick ? 2000 : 5000;
    const results: Measured[] = [];
    for (const n of counts) {
      ctx.note(`k8s-reconcile: ${n} active tasks`);
      const scope = cleanup.child(`k8s-reconcile ${n}`);
      results.push(await measure(n, idleMs, scope, n === counts[counts.length - 1]));
      await scope.run();
    }
    const small = results[0]!;
    const large = results[results.length - 1]!;
    const unchangedCostsNothing = results.every(
      (r) => r.requestsPerPass === 0 && r.idleRequests === 0,
    );
    return {
      unit: 'ms',
      byActiveTasks: Object.fromEntries(results.map((r) => [String(r.activeTasks), r])),
      requestsPerPass: {
        [small.activeTasks]: small.requestsPerPass,
        [large.activeTasks]: large.requestsPerPass,
      },
      passMsPerUnitGrowth: round(large.passMsPerUnit / small.passMsPerUnit, 2),
      baseline: {
        design: 'one GET per unit per pass (polling)',
        activeTasks: large.activeTasks,
        passMs: large.pollPassMs,
        requestsPerPass: large.pollRequestsPerPass,
      },
      ratio: round(large.requestsPerPass / (large.pollRequestsPerPass ?? large.activeTasks), 3),
      ratioOf: `API requests per reconcile pass at ${large.activeTasks} active tasks: backend (cached) / polling`,
      target: 'requests per pass and while idle: 0, at every count',
      met: unchangedCostsNothing,
    };
  },
};
