/**
 * The fake Kubernetes API server and simulated node, exercised through the real
 * @kubernetes/client-node over HTTP: the semantics a kubernetes backend depends on
 * (404/409/410, watches, informers, throttling) and a node that really runs pods.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  ApiException,
  BatchV1Api,
  CoordinationV1Api,
  CoreV1Api,
  PatchStrategy,
  SchedulingV1Api,
  Watch,
  makeInformer,
  setHeaderOptions,
  type KubeConfig,
  type V1ConfigMap,
  type V1Job,
  type V1Pod,
} from '@kubernetes/client-node';
import { ManualClock } from '../../testing/kube-sim/clock.js';
import { startFakeApiServer } from '../../testing/kube-sim/apiserver/server.js';
import type { FakeApiServer } from '../../testing/kube-sim/apiserver/types.js';
import {
  startFakeCluster,
  type FakeCluster,
  type FakeClusterOptions,
} from '../../testing/kube-sim/cluster.js';
import { COMPLETION_INDEX } from '../../testing/kube-sim/jobs/indexes.js';
import type { KubeStatus } from '../../testing/kube-sim/objects/meta.js';

const NODE = process.execPath;

/** Poll until fn returns something truthy; the timeout is named in the failure. */
async function eventually<T>(
  what: string,
  fn: () => Promise<T> | T,
  timeoutMs = 15_000,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for: ${what}${last ? ` (last error: ${String(last)})` : ''}`,
      );
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function apiError(
  p: Promise<unknown>,
): Promise<{ code: number; status: KubeStatus; headers: Record<string, string> }> {
  try {
    await p;
  } catch (err) {
    if (!(err instanceof ApiException)) throw err;
    const e = err as ApiException<string>;
    // The client drops the body of a 401.
    const status = (
      typeof e.body === 'string' ? JSON.parse(e.body) : { kind: 'Status', code: e.code }
    ) as KubeStatus;
    return { code: e.code, status, headers: e.headers };
  }
  throw new Error('expected the request to fail');
}

interface Collected {
  events: {
    type: string;
    object: { metadata?: { name?: string; resourceVersion?: string }; code?: number } & Record<
      string,
      unknown
    >;
  }[];
  done: Promise<unknown>;
  abort(): void;
}

async function collectWatch(
  kc: KubeConfig,
  path: string,
  query: Record<string, string | number | boolean | undefined>,
): Promise<Collected> {
  const events: Collected['events'] = [];
  let resolveDone!: (v: unknown) => void;
  const done = new Promise((r) => (resolveDone = r));
  const ctl = await new Watch(kc).watch(
    path,
    query,
    (type, object) =>
      events.push({ type, object: object as Collected['events'][number]['object'] }),
    (err) => resolveDone(err ?? 'closed'),
  );
  return { events, done, abort: () => ctl.abort() };
}

function job(
  name: string,
  script: string,
  extra: Partial<NonNullable<V1Job['spec']>> = {},
  podExtra: Partial<NonNullable<NonNullable<V1Job['spec']>['template']['spec']>> = {},
): V1Job {
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: {
      name,
      labels: { 'app.kubernetes.io/managed-by': 'stoker', 'stoker.dev/run': 'r1' },
    },
    spec: {
      backoffLimit: 0,
      ...extra,
      template: {
        metadata: { labels: { 'stoker.dev/run': 'r1' } },
        spec: {
          restartPolicy: 'Never',
          terminationGracePeriodSeconds: 5,
          containers: [
            { name: 'main', image: 'stoker-worker:test', command: [NODE, '-e', script] },
          ],
          ...podExtra,
        },
      },
    },
  };
}

function condition(
  j: V1Job | undefined,
  type: string,
): { reason?: string; message?: string } | undefined {
  return j?.status?.conditions?.find((c) => c.type === type && c.status === 'True');
}

// ---------------------------------------------------------------------------------------

describe('fake API server: REST semantics through the real client', () => {
  let server: FakeApiServer;
  let core: CoreV1Api;
  let batch: BatchV1Api;
  const namespace = 'rest';

  beforeAll(async () => {
    server = await startFakeApiServer();
    core = server.kubeConfig().makeApiClient(CoreV1Api);
    batch = server.kubeConfig().makeApiClient(BatchV1Api);
  });
  afterAll(async () => {
    await server.stop();
  });

  it('creates, gets and lists with label selectors; a second create is 409 AlreadyExists, a missing object 404 NotFound', async () => {
    for (const [name, tier] of [
      ['a', 'gold'],
      ['b', 'silver'],
      ['c', 'bronze'],
    ] as const) {
      const created = await core.createNamespacedConfigMap({
        namespace,
        body: { metadata: { name, labels: { tier, app: 'x' } }, data: { k: name } },
      });
      expect(created.metadata?.uid).toBeTruthy();
      expect(created.metadata?.resourceVersion).toMatch(/^\d+$/);
      expect(created.metadata?.creationTimestamp).toBeInstanceOf(Date);
    }
    const got = await core.readNamespacedConfigMap({ namespace, name: 'b' });
    expect(got.data).toEqual({ k: 'b' });

    const names = async (labelSelector: string): Promise<string[]> =>
      (await core.listNamespacedConfigMap({ namespace, labelSelector })).items.map(
        (i) => i.metadata!.name!,
      );
    expect(await names('tier=gold')).toEqual(['a']);
    expect(await names('tier in (gold,bronze)')).toEqual(['a', 'c']);
    expect(await names('tier!=gold,app=x')).toEqual(['b', 'c']);
    expect(await names('tier notin (gold),!missing')).toEqual(['b', 'c']);
    const list = await core.listNamespacedConfigMap({ namespace });
    expect(Number(list.metadata?.resourceVersion)).toBeGreaterThanOrEqual(3);
    const byName = await core.listNamespacedConfigMap({
      namespace,
      fieldSelector: 'metadata.name=c',
    });
    expect(byName.items.map((i) => i.metadata?.name)).toEqual(['c']);

    const dup = await apiError(
      core.createNamespacedConfigMap({ namespace, body: { metadata: { name: 'a' } } }),
    );
    expect(dup.code).toBe(409);
    expect(dup.status).toMatchObject({
      kind: 'Status',
      status: 'Failure',
      reason: 'AlreadyExists',
      code: 409,
      message: 'configmaps "a" already exists',
    });

    const missing = await apiError(batch.readNamespacedJob({ namespace, name: 'nope' }));
    expect(missing.code).toBe(404);
    expect(missing.status).toMatchObject({
      reason: 'NotFound',
      message: 'jobs.batch "nope" not found',
      details: { name: 'nope', group: 'batch', kind: 'jobs' },
    });
  });

  it('rejects a stale update with 409 Conflict and applies JSON and merge patches', async () => {
    const cm = await core.createNamespacedConfigMap({
      namespace,
      body: { metadata: { name: 'upd' }, data: { v: '1' } },
    });
    const fresh = await core.replaceNamespacedConfigMap({
      namespace,
      name: 'upd',
      body: { ...cm, data: { v: '2' } },
    });
    expect(fresh.data).toEqual({ v: '2' });
    expect(Number(fresh.metadata!.resourceVersion)).toBeGreaterThan(
      Number(cm.metadata!.resourceVersion),
    );
    const stale = await apiError(
      core.replaceNamespacedConfigMap({
        namespace,
        name: 'upd',
        body: { ...cm, data: { v: '3' } },
      }),
    );
    expect(stale.code).toBe(409);
    expect(stale.status.reason).toBe('Conflict');
    expect(stale.status.message).toContain('the object has been modified');

    // The 1.x client sends JSON patch unless told otherwise.
    const p1 = await core.patchNamespacedConfigMap({
      namespace,
      name: 'upd',
      body: [{ op: 'add', path: '/data/w', value: 'x' }],
    });
    expect(p1.data).toEqual({ v: '2', w: 'x' });
    const p2 = await core.patchNamespacedConfigMap(
      { namespace, name: 'upd', body: { data: { v: null, z: 'y' } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    expect(p2.data).toEqual({ w: 'x', z: 'y' });
  });

  it('defaults and validates Jobs like the API server (422 with causes)', async () => {
    const created = await batch.createNamespacedJob({ namespace, body: job('valid', 'null') });
    expect(created.spec?.completions).toBe(1);
    expect(created.spec?.template.metadata?.labels?.['job-name']).toBe('valid');
    expect(created.spec?.selector?.matchLabels?.['batch.kubernetes.io/controller-uid']).toBe(
      created.metadata?.uid,
    );

    const bad = job('x'.repeat(64), 'null');
    bad.spec!.template.spec!.restartPolicy = 'Always';
    const err = await apiError(batch.createNamespacedJob({ namespace, body: bad }));
    expect(err.code).toBe(422);
    expect(err.status.reason).toBe('Invalid');
    const fields = err.status.details?.causes?.map((c) => c.field);
    expect(fields).toContain('metadata.name');
    expect(fields).toContain('spec.template.spec.restartPolicy');

    // The pod template is immutable once the Job exists.
    const cur = await batch.readNamespacedJob({ namespace, name: 'valid' });
    cur.spec!.template.spec!.containers[0]!.image = 'other:1';
    const imm = await apiError(batch.replaceNamespacedJob({ namespace, name: 'valid', body: cur }));
    expect(imm.code).toBe(422);
    expect(imm.status.message).toContain('field is immutable');
  });

  it('deletes with a Status body, and a Lease update races like optimistic concurrency', async () => {
    const coord = server.kubeConfig().makeApiClient(CoordinationV1Api);
    const lease = await coord.createNamespacedLease({
      namespace,
      body: {
        metadata: { name: 'leader' },
        spec: { holderIdentity: 'a', leaseDurationSeconds: 15 },
      },
    });
    await coord.replaceNamespacedLease({
      namespace,
      name: 'leader',
      body: { ...lease, spec: { ...lease.spec, holderIdentity: 'b' } },
    });
    const lost = await apiError(
      coord.replaceNamespacedLease({
        namespace,
        name: 'leader',
        body: { ...lease, spec: { ...lease.spec, holderIdentity: 'c' } },
      }),
    );
    expect(lost.code).toBe(409);
    const del = await batch.deleteNamespacedJob({
      namespace,
      name: 'valid',
      propagationPolicy: 'Background',
    });
    expect(del).toMatchObject({ status: 'Success' });
    expect((await apiError(batch.readNamespacedJob({ namespace, name: 'valid' }))).code).toBe(404);
  });

  it('answers 429 with Retry-After through an interceptor, once', async () => {
    server.throttle({ verb: 'list', resource: 'pods' }, 2);
    const err = await apiError(core.listNamespacedPod({ namespace }));
    expect(err.code).toBe(429);
    expect(err.headers['retry-after']).toBe('2');
    expect(err.status).toMatchObject({
      reason: 'TooManyRequests',
      details: { retryAfterSeconds: 2 },
    });
    const ok = await core.listNamespacedPod({ namespace });
    expect(ok.items).toEqual([]);
    expect(
      server.countRequests({ verb: 'list', resource: 'pods', status: 429, intercepted: true }),
    ).toBe(1);
    expect(server.countRequests({ verb: 'list', resource: 'pods', status: 200 })).toBe(1);

    // Any status, for any match: a 503 on the next job create, then normal service.
    server.failNext({ verb: 'create', resource: 'jobs' }, { status: 503 });
    expect(
      (await apiError(batch.createNamespacedJob({ namespace, body: job('after-503', 'null') })))
        .code,
    ).toBe(503);
    await batch.createNamespacedJob({ namespace, body: job('after-503', 'null') });
    expect(server.verbCounts()['create']).toBeGreaterThan(0);
  });

  it('deletes a collection by label, and injects a one-shot 409 on an update', async () => {
    for (const n of ['dc-1', 'dc-2', 'dc-keep'])
      await core.createNamespacedConfigMap({
        namespace,
        body: { metadata: { name: n, labels: { batch: n === 'dc-keep' ? 'keep' : 'drop' } } },
      });
    await core.deleteCollectionNamespacedConfigMap({ namespace, labelSelector: 'batch=drop' });
    const left = await core.listNamespacedConfigMap({ namespace, labelSelector: 'batch' });
    expect(left.items.map((i) => i.metadata?.name)).toEqual(['dc-keep']);

    server.failNext({ verb: 'update', resource: 'configmaps', name: 'dc-keep' }, { status: 409 });
    const cur = await core.readNamespacedConfigMap({ namespace, name: 'dc-keep' });
    const once = await apiError(
      core.replaceNamespacedConfigMap({ namespace, name: 'dc-keep', body: cur }),
    );
    expect(once.status).toMatchObject({ code: 409, reason: 'Conflict' });
    await core.replaceNamespacedConfigMap({
      namespace,
      name: 'dc-keep',
      body: { ...cur, data: { a: 'b' } },
    });
  });

  it('refuses a wrong token with 401', async () => {
    const bad = server.kubeConfig({ token: 'wrong' }).makeApiClient(CoreV1Api);
    expect((await apiError(bad.listNamespacedPod({ namespace }))).code).toBe(401);
  });
});

describe('fake API server: watches and informers', () => {
  let server: FakeApiServer;
  let kc: KubeConfig;
  let core: CoreV1Api;
  const namespace = 'watch';
  const cm = (name: string, labels: Record<string, string> = { w: '1' }): V1ConfigMap => ({
    metadata: { name, labels },
    data: { v: '0' },
  });

  beforeAll(async () => {
    server = await startFakeApiServer({ bookmarkIntervalMs: 0 });
    kc = server.kubeConfig();
    core = kc.makeApiClient(CoreV1Api);
  });
  afterAll(async () => {
    await server.stop();
  });

  it('streams ADDED, MODIFIED, DELETED and BOOKMARK from a resourceVersion', async () => {
    await core.createNamespacedConfigMap({ namespace, body: cm('before') });
    const rv = (await core.listNamespacedConfigMap({ namespace })).metadata!.resourceVersion!;
    const w = await collectWatch(kc, `/api/v1/namespaces/${namespace}/configmaps`, {
      resourceVersion: rv,
      allowWatchBookmarks: true,
      labelSelector: 'w=1',
    });
    await core.createNamespacedConfigMap({ namespace, body: cm('one') });
    await core.patchNamespacedConfigMap(
      { namespace, name: 'one', body: { data: { v: '1' } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    await core.createNamespacedConfigMap({ namespace, body: cm('unlabelled', { w: '2' }) });
    await core.deleteNamespacedConfigMap({ namespace, name: 'one' });
    server.sendBookmarks();
    await eventually('four watch events', () => w.events.length >= 4);
    expect(w.events.map((e) => `${e.type} ${e.object.metadata?.name ?? ''}`)).toEqual([
      'ADDED one',
      'MODIFIED one',
      'DELETED one',
      'BOOKMARK ',
    ]);
    expect(w.events[3]!.object.metadata?.resourceVersion).toBe(
      String(server.store.resourceVersion),
    );
    w.abort();
    await eventually('the watch to close on the server', () => server.activeWatches === 0);
  });

  it('answers a watch from an expired resourceVersion with an ERROR event carrying a 410 Status', async () => {
    const rv = (await core.listNamespacedConfigMap({ namespace })).metadata!.resourceVersion!;
    server.expireHistory();
    const w = await collectWatch(kc, `/api/v1/namespaces/${namespace}/configmaps`, {
      resourceVersion: rv,
    });
    await w.done;
    expect(w.events).toHaveLength(1);
    expect(w.events[0]!.type).toBe('ERROR');
    expect(w.events[0]!.object).toMatchObject({ kind: 'Status', code: 410, reason: 'Expired' });
  });

  it('ends watches after timeoutSeconds', async () => {
    const w = await collectWatch(kc, `/api/v1/namespaces/${namespace}/configmaps`, {
      timeoutSeconds: 1,
      resourceVersion: String(server.store.resourceVersion),
    });
    expect(await w.done).toBe('closed');
  });

  it('keeps an informer in sync, and it relists after 410 Gone', async () => {
    const ns = 'informer';
    await core.createNamespacedConfigMap({ namespace: ns, body: cm('i-1') });
    const informer = makeInformer(
      kc,
      `/api/v1/namespaces/${ns}/configmaps`,
      () => core.listNamespacedConfigMap({ namespace: ns, labelSelector: 'w=1' }),
      'w=1',
    );
    const seen: string[] = [];
    informer.on('add', (o) => seen.push(`add ${o.metadata!.name!}`));
    informer.on('update', (o) => seen.push(`update ${o.metadata!.name!} ${o.data?.['v'] ?? ''}`));
    informer.on('delete', (o) => seen.push(`delete ${o.metadata!.name!}`));
    const errors: unknown[] = [];
    informer.on('error', (e) => errors.push(e));
    await informer.start();
    try {
      await eventually('the initial list', () => seen.includes('add i-1'));
      await core.createNamespacedConfigMap({ namespace: ns, body: cm('i-2') });
      await eventually('i-2 added', () => seen.includes('add i-2'));
      await core.replaceNamespacedConfigMap({
        namespace: ns,
        name: 'i-1',
        body: { ...cm('i-1'), data: { v: '9' } },
      });
      await eventually('i-1 updated', () => seen.includes('update i-1 9'));

      // History compacted while the watch is down: the resumed watch gets 410 and the
      // informer lists again, seeing what changed in between.
      const listsBefore = server.countRequests({
        verb: 'list',
        resource: 'configmaps',
        namespace: ns,
      });
      const stall = server.stallWatches();
      await core.deleteNamespacedConfigMap({ namespace: ns, name: 'i-2' });
      await core.createNamespacedConfigMap({ namespace: ns, body: cm('i-3') });
      server.expireHistory();
      stall();
      await eventually(
        'the relist after 410',
        () =>
          server.countRequests({ verb: 'list', resource: 'configmaps', namespace: ns }) >
          listsBefore,
      );
      await eventually(
        'i-2 deleted and i-3 added',
        () => seen.includes('delete i-2') && seen.includes('add i-3'),
      );
      expect(
        informer
          .list(ns)
          .map((o) => o.metadata!.name)
          .sort(),
      ).toEqual(['i-1', 'i-3']);
      expect(errors).toEqual([]);
      await core.createNamespacedConfigMap({ namespace: ns, body: cm('i-4') });
      await eventually('i-4 added after the relist', () => seen.includes('add i-4'));
    } finally {
      await informer.stop();
    }
  });

  it('keeps state across restart(); requests fail while it is down', async () => {
    await core.createNamespacedConfigMap({ namespace, body: cm('survivor') });
    const back = server.restart(300);
    await expect(core.readNamespacedConfigMap({ namespace, name: 'survivor' })).rejects.toThrow();
    await back;
    expect(
      (await core.readNamespacedConfigMap({ namespace, name: 'survivor' })).metadata?.name,
    ).toBe('survivor');
  });
});

// ---------------------------------------------------------------------------------------

describe('fake node: pods run as local processes', () => {
  let cluster: FakeCluster | undefined;
  const namespace = 'default';
  const start = async (
    opts: FakeClusterOptions = {},
  ): Promise<{ cluster: FakeCluster; core: CoreV1Api; batch: BatchV1Api }> => {
    cluster = await startFakeCluster(opts);
    const kc = cluster.kubeConfig();
    return { cluster, core: kc.makeApiClient(CoreV1Api), batch: kc.makeApiClient(BatchV1Api) };
  };
  const podsOf = (c: FakeCluster, jobName: string): V1Pod[] =>
    c.store.list<V1Pod>('pods', { namespace, labelSelector: `job-name=${jobName}` });
  const waitJob = (c: FakeCluster, name: string, type: string): Promise<V1Job> =>
    c.store.waitFor<V1Job>('jobs', namespace, name, (j) => !!condition(j, type), {
      what: `job ${name} ${type}`,
    }) as Promise<V1Job>;

  afterEach(async () => {
    if (!cluster) return;
    const k = cluster.kubelet;
    await cluster.stop();
    expect(k.processes()).toEqual([]);
    cluster = undefined;
  });

  it('runs a Job to completion: pod Succeeded, Job Complete, logs over pods/log', async () => {
    const { cluster: c, core, batch } = await start();
    await batch.createNamespacedJob({
      namespace,
      body: job(
        'hello',
        'console.log("hello from " + process.env.HOSTNAME); console.error("to stderr")',
      ),
    });
    const done = await waitJob(c, 'hello', 'Complete');
    expect(done.status).toMatchObject({ succeeded: 1 });
    expect(done.status?.completionTime).toBeTruthy();
    expect(condition(done, 'SuccessCriteriaMet')).toBeTruthy();
    const [pod] = podsOf(c, 'hello');
    expect(pod?.status?.phase).toBe('Succeeded');
    expect(pod?.status?.containerStatuses?.[0]?.state?.terminated).toMatchObject({
      exitCode: 0,
      reason: 'Completed',
    });
    expect(pod?.metadata?.ownerReferences?.[0]).toMatchObject({
      kind: 'Job',
      name: 'hello',
      controller: true,
    });
    expect(pod?.metadata?.finalizers ?? []).toEqual([]);
    const log = await core.readNamespacedPodLog({ namespace, name: pod!.metadata!.name! });
    expect(log).toContain(`hello from ${pod!.metadata!.name!}`);
    expect(log).toContain('to stderr');
    const events = (await core.listNamespacedEvent({ namespace })).items.map((e) => e.reason);
    expect(events).toEqual(
      expect.arrayContaining(['SuccessfulCreate', 'Scheduled', 'Started', 'Completed']),
    );
  });

  it('runs an Indexed Job: one pod per index with JOB_COMPLETION_INDEX, stable hostnames resolving to 127.0.0.1', async () => {
    const { cluster: c, core, batch } = await start();
    await core.createNamespacedService({
      namespace,
      body: {
        metadata: { name: 'ranks' },
        spec: { clusterIP: 'None', selector: { 'job-name': 'ddp' }, ports: [{ port: 29500 }] },
      },
    });
    const body = job(
      'ddp',
      'console.log(`index=${process.env.JOB_COMPLETION_INDEX} host=${process.env.HOSTNAME} master=${process.env.MASTER_ADDR}`)',
      { completionMode: 'Indexed', completions: 2, parallelism: 2 },
      { subdomain: 'ranks' },
    );
    body.spec!.template.spec!.containers[0]!.env = [{ name: 'MASTER_ADDR', value: 'ddp-0.ranks' }];
    await batch.createNamespacedJob({ namespace, body });
    const done = await waitJob(c, 'ddp', 'Complete');
    expect(done.status).toMatchObject({ succeeded: 2, completedIndexes: '0-1' });
    const pods = podsOf(c, 'ddp').sort((a, b) =>
      a.metadata!.name!.localeCompare(b.metadata!.name!),
    );
    expect(pods.map((p) => p.metadata?.annotations?.[COMPLETION_INDEX])).toEqual(['0', '1']);
    expect(pods.map((p) => p.spec?.hostname)).toEqual(['ddp-0', 'ddp-1']);
    expect(pods[0]!.metadata!.name).toMatch(/^ddp-0-[a-z0-9]{5}$/);
    const logs = await Promise.all(
      pods.map((p) => core.readNamespacedPodLog({ namespace, name: p.metadata!.name! })),
    );
    expect(logs[0]).toContain('index=0 host=ddp-0 master=127.0.0.1');
    expect(logs[1]).toContain('index=1 host=ddp-1 master=127.0.0.1');
  });

  it('deletes a pod gracefully: SIGTERM to a process that traps it, SIGKILL after the grace period', async () => {
    const { cluster: c, core, batch } = await start();
    await batch.createNamespacedJob({
      namespace,
      body: job(
        'stubborn',
        'process.on("SIGTERM", () => console.log("got SIGTERM, ignoring")); console.log("ready"); setInterval(() => {}, 1000)',
      ),
    });
    const pod = await eventually('the pod to print ready', () => {
      const p = podsOf(c, 'stubborn')[0];
      return p?.status?.phase === 'Running' && c.kubelet.logs(p.metadata!.name!).includes('ready')
        ? p
        : undefined;
    });
    const name = pod.metadata!.name!;
    const w = await collectWatch(c.kubeConfig(), `/api/v1/namespaces/${namespace}/pods`, {
      resourceVersion: String(c.store.resourceVersion),
      fieldSelector: `metadata.name=${name}`,
    });
    const deleted = await core.deleteNamespacedPod({ namespace, name, gracePeriodSeconds: 1 });
    expect(deleted.metadata?.deletionTimestamp).toBeTruthy();
    expect(deleted.metadata?.deletionGracePeriodSeconds).toBe(1);
    await eventually('the pod to be removed', () => w.events.some((e) => e.type === 'DELETED'));
    expect(c.kubelet.logs(name)).toContain('got SIGTERM, ignoring');
    const last = w.events[w.events.length - 1]!.object as unknown as V1Pod;
    expect(last.status?.phase).toBe('Failed');
    expect(last.status?.containerStatuses?.[0]?.state?.terminated).toMatchObject({
      exitCode: 137,
      reason: 'Error',
    });
    w.abort();
    // backoffLimit 0: the Job failed with that pod.
    const failed = await waitJob(c, 'stubborn', 'Failed');
    expect(condition(failed, 'Failed')?.reason).toBe('BackoffLimitExceeded');
  });

  it('deleting a Job with propagationPolicy Background terminates and removes its pods', async () => {
    const { cluster: c, batch } = await start();
    await batch.createNamespacedJob({
      namespace,
      body: job('long', 'console.log("up"); setInterval(() => {}, 1000)'),
    });
    await eventually('the pod running', () => podsOf(c, 'long')[0]?.status?.phase === 'Running');
    await batch.deleteNamespacedJob({ namespace, name: 'long', propagationPolicy: 'Background' });
    await eventually('the pods gone', () => podsOf(c, 'long').length === 0);
    expect(c.kubelet.processes()).toEqual([]);
  });

  it('evicts a pod (DisruptionTarget); podFailurePolicy Ignore replaces it without failing the Job', async () => {
    const { cluster: c, batch } = await start();
    const body = job(
      'evictable',
      'if (process.env.ATTEMPT_MARK) {} ; setInterval(() => {}, 1000)',
      {
        podFailurePolicy: {
          rules: [
            { action: 'Ignore', onPodConditions: [{ type: 'DisruptionTarget', status: 'True' }] },
          ],
        },
      },
    );
    await batch.createNamespacedJob({ namespace, body });
    const first = await eventually('the first pod running', () =>
      podsOf(c, 'evictable').find((p) => p.status?.phase === 'Running'),
    );
    const firstName = first.metadata!.name!;
    const seen: V1Pod[] = [];
    const unsub = c.store.subscribe((ev) => {
      if (ev.resource === 'pods' && ev.object.metadata.name === firstName)
        seen.push(ev.object as unknown as V1Pod);
    });
    c.kubelet.evict(firstName);
    const replacement = await eventually('a replacement pod running', () =>
      podsOf(c, 'evictable').find(
        (p) => p.metadata!.name !== firstName && p.status?.phase === 'Running',
      ),
    );
    unsub();
    expect(replacement).toBeTruthy();
    const disrupted = seen.find((p) =>
      p.status?.conditions?.some((x) => x.type === 'DisruptionTarget'),
    );
    expect(disrupted?.status?.conditions?.find((x) => x.type === 'DisruptionTarget')).toMatchObject(
      { status: 'True', reason: 'EvictionByEvictionAPI' },
    );
    const j = c.store.get<V1Job>('jobs', namespace, 'evictable');
    expect(condition(j, 'Failed')).toBeUndefined();
    expect(j?.status?.failed ?? 0).toBe(0);
  });

  it('OOM-kills a container: terminated OOMKilled with exit 137, the Job fails (backoffLimit 0)', async () => {
    const { cluster: c, batch } = await start();
    await batch.createNamespacedJob({
      namespace,
      body: job('hungry', 'setInterval(() => {}, 1000)'),
    });
    const pod = await eventually('the pod running', () =>
      podsOf(c, 'hungry').find((p) => p.status?.phase === 'Running'),
    );
    c.kubelet.oomKill(pod.metadata!.name!);
    const failed = await waitJob(c, 'hungry', 'Failed');
    expect(condition(failed, 'Failed')).toMatchObject({
      reason: 'BackoffLimitExceeded',
      message: 'Job has reached the specified backoff limit',
    });
    const p = c.store.get<V1Pod>('pods', namespace, pod.metadata!.name!);
    expect(p?.status?.phase).toBe('Failed');
    expect(p?.status?.containerStatuses?.[0]?.state?.terminated).toMatchObject({
      exitCode: 137,
      reason: 'OOMKilled',
    });
  });

  it('fails the Job at once on a podFailurePolicy FailJob exit code', async () => {
    const { cluster: c, batch } = await start();
    await batch.createNamespacedJob({
      namespace,
      body: job('badconfig', 'process.exit(3)', {
        backoffLimit: 5,
        podFailurePolicy: {
          rules: [
            {
              action: 'FailJob',
              onExitCodes: { containerName: 'main', operator: 'In', values: [3] },
            },
          ],
        },
      }),
    });
    const failed = await waitJob(c, 'badconfig', 'Failed');
    expect(condition(failed, 'Failed')?.reason).toBe('PodFailurePolicy');
    expect(condition(failed, 'Failed')?.message).toMatch(
      /failed with exit code 3 matching FailJob rule at index 0/,
    );
    expect(podsOf(c, 'badconfig')).toHaveLength(1);
  });

  it('surfaces image pull failures, unschedulable GPU requests, missing secrets, PVCs and PriorityClasses', async () => {
    const {
      cluster: c,
      core,
      batch,
    } = await start({ kubelet: { gpus: 8, imagePullFailure: /does-not-exist/ } });
    const sched = c.kubeConfig().makeApiClient(SchedulingV1Api);

    const pull = job('pull', 'null');
    pull.spec!.template.spec!.containers[0]!.image = 'registry.example/does-not-exist:1';
    const gpu = job('greedy', 'null');
    gpu.spec!.template.spec!.containers[0]!.resources = { limits: { 'nvidia.com/gpu': '16' } };
    const secret = job('needs-secret', 'console.log("token=" + process.env.HF_TOKEN)');
    secret.spec!.template.spec!.containers[0]!.env = [
      { name: 'HF_TOKEN', valueFrom: { secretKeyRef: { name: 'hf', key: 'token' } } },
    ];
    const pvc = job('needs-pvc', 'null');
    pvc.spec!.template.spec!.volumes = [
      { name: 'data', persistentVolumeClaim: { claimName: 'runs' } },
    ];
    const prio = job('needs-prio', 'null');
    prio.spec!.template.spec!.priorityClassName = 'training';
    // ErrImagePull is brief (then ImagePullBackOff): record every waiting state as it is written.
    const pullStates: { reason: string; message: string }[] = [];
    const unsub = c.store.subscribe((ev) => {
      const p = ev.object as unknown as V1Pod;
      const w = p.status?.containerStatuses?.[0]?.state?.waiting;
      if (ev.resource === 'pods' && p.metadata?.labels?.['job-name'] === 'pull' && w?.reason)
        pullStates.push({ reason: w.reason, message: w.message ?? '' });
    });
    for (const b of [pull, gpu, secret, pvc, prio])
      await batch.createNamespacedJob({ namespace, body: b });

    const waiting = (jobName: string, reason: string) =>
      eventually(`${jobName}'s container waiting with ${reason}`, () =>
        podsOf(c, jobName).find(
          (p) => p.status?.containerStatuses?.[0]?.state?.waiting?.reason === reason,
        ),
      );
    const pulled = await waiting('pull', 'ImagePullBackOff');
    unsub();
    const reasons = [...new Set(pullStates.map((x) => x.reason))];
    expect(reasons).toEqual(['ContainerCreating', 'ErrImagePull', 'ImagePullBackOff']);
    expect(pullStates.find((x) => x.reason === 'ErrImagePull')?.message).toContain(
      'failed to pull and unpack image "registry.example/does-not-exist:1"',
    );
    expect(podsOf(c, 'pull')[0]?.status?.phase).toBe('Pending');
    const logErr = await apiError(
      core.readNamespacedPodLog({ namespace, name: pulled.metadata!.name! }),
    );
    expect(logErr.code).toBe(400);

    const unsched = (jobName: string) =>
      eventually(`${jobName} unschedulable`, () =>
        podsOf(c, jobName)
          .flatMap((p) => p.status?.conditions ?? [])
          .find(
            (x) =>
              x.type === 'PodScheduled' && x.status === 'False' && x.reason === 'Unschedulable',
          ),
      );
    expect((await unsched('greedy')).message).toBe(
      '0/1 nodes are available: 1 Insufficient nvidia.com/gpu.',
    );
    expect((await unsched('needs-pvc')).message).toBe(
      '0/1 nodes are available: persistentvolumeclaim "runs" not found.',
    );

    const cfg = await waiting('needs-secret', 'CreateContainerConfigError');
    expect(cfg.status?.containerStatuses?.[0]?.state?.waiting?.message).toBe(
      'secret "hf" not found',
    );
    expect(cfg.status?.phase).toBe('Pending');

    const failedCreate = await eventually('a FailedCreate event on needs-prio', async () =>
      (
        await core.listNamespacedEvent({
          namespace,
          fieldSelector: 'involvedObject.name=needs-prio',
        })
      ).items.find((e) => e.reason === 'FailedCreate'),
    );
    expect(failedCreate.type).toBe('Warning');
    expect(failedCreate.message).toBe(
      'Error creating: pods "needs-prio-" is forbidden: no PriorityClass with name training was found',
    );
    expect(podsOf(c, 'needs-prio')).toEqual([]);

    // Fixing each cause lets the pod run.
    await core.createNamespacedSecret({
      namespace,
      body: { metadata: { name: 'hf' }, stringData: { token: 's3cret' } },
    });
    await core.createNamespacedPersistentVolumeClaim({
      namespace,
      body: {
        metadata: { name: 'runs' },
        spec: { accessModes: ['ReadWriteMany'], resources: { requests: { storage: '1Gi' } } },
      },
    });
    await sched.createPriorityClass({ body: { metadata: { name: 'training' }, value: 1000 } });
    for (const name of ['needs-secret', 'needs-pvc', 'needs-prio'])
      await waitJob(c, name, 'Complete');
    const sPod = podsOf(c, 'needs-secret')[0]!;
    expect(c.kubelet.logs(sPod.metadata!.name!)).toContain('token=s3cret');
    expect(podsOf(c, 'needs-prio')[0]?.spec?.priority).toBe(1000);
    expect(podsOf(c, 'greedy')[0]?.status?.phase).toBe('Pending');
  });

  it('writes status only through the status subresource', async () => {
    const { cluster: c, batch } = await start();
    await batch.createNamespacedJob({ namespace, body: job('statusy', 'null', { suspend: true }) });
    await waitJob(c, 'statusy', 'Suspended');
    const cur = await batch.readNamespacedJob({ namespace, name: 'statusy' });
    const viaMain = await batch.replaceNamespacedJob({
      namespace,
      name: 'statusy',
      body: { ...cur, status: { ...cur.status, failed: 42 } },
    });
    expect(viaMain.status?.failed).toBeUndefined();
    const viaStatus = await batch.patchNamespacedJobStatus(
      { namespace, name: 'statusy', body: { status: { failed: 42 } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    expect(viaStatus.status?.failed).toBe(42);
    expect(viaStatus.metadata?.generation).toBe(1);
  });

  it("orphans a Job's pods by default, like the real API; Foreground waits for them", async () => {
    const { cluster: c, batch } = await start();
    await batch.createNamespacedJob({
      namespace,
      body: job('orphaner', 'setInterval(() => {}, 1000)'),
    });
    await eventually(
      'the pod running',
      () => podsOf(c, 'orphaner')[0]?.status?.phase === 'Running',
    );
    await batch.deleteNamespacedJob({ namespace, name: 'orphaner' });
    const orphan = await eventually('the pod orphaned', () => {
      const p = podsOf(c, 'orphaner')[0];
      return p && !p.metadata?.ownerReferences ? p : undefined;
    });
    expect(orphan.status?.phase).toBe('Running');
    await c
      .kubeConfig()
      .makeApiClient(CoreV1Api)
      .deleteNamespacedPod({ namespace, name: orphan.metadata!.name!, gracePeriodSeconds: 0 });
    await eventually('the orphan gone', () => podsOf(c, 'orphaner').length === 0);

    await batch.createNamespacedJob({ namespace, body: job('fg', 'setInterval(() => {}, 1000)') });
    await eventually('the fg pod running', () => podsOf(c, 'fg')[0]?.status?.phase === 'Running');
    const order: string[] = [];
    const unsub = c.store.subscribe((ev) => {
      const fin = ev.object.metadata.finalizers ?? [];
      if (ev.resource === 'jobs' && ev.object.metadata.name === 'fg')
        order.push(
          `job ${ev.type}${fin.includes('foregroundDeletion') ? ' foregroundDeletion' : ''}`,
        );
      if (ev.resource === 'pods' && ev.type === 'DELETED') order.push('pod DELETED');
    });
    await batch.deleteNamespacedJob({ namespace, name: 'fg', propagationPolicy: 'Foreground' });
    await c.store.waitFor('jobs', namespace, 'fg', (j) => j === undefined, {
      what: 'the fg job gone',
    });
    unsub();
    // The Job's own status may change just before the delete (a MODIFIED without the
    // finalizer); what Foreground means: the finalizer is set, then the pods go, then the Job.
    const marked = order.indexOf('job MODIFIED foregroundDeletion');
    expect(marked, order.join(', ')).toBeGreaterThanOrEqual(0);
    expect(
      order.slice(0, marked).every((e) => e === 'job MODIFIED'),
      order.join(', '),
    ).toBe(true);
    expect(marked).toBeLessThan(order.indexOf('pod DELETED'));
    expect(order.indexOf('pod DELETED')).toBeLessThan(order.indexOf('job DELETED'));
    expect(podsOf(c, 'fg')).toEqual([]);
  });

  it('maps a PVC mount to a host directory shared by pods, and streams logs with follow', async () => {
    const { cluster: c, core, batch } = await start();
    await core.createNamespacedPersistentVolumeClaim({
      namespace,
      body: {
        metadata: { name: 'store' },
        spec: { accessModes: ['ReadWriteMany'], resources: { requests: { storage: '1Gi' } } },
      },
    });
    const body = job(
      'writer',
      'const fs = require("fs"); fs.mkdirSync(require("path").dirname(process.env.OUT), { recursive: true }); fs.writeFileSync(process.env.OUT, "checkpoint"); console.log("wrote " + process.env.OUT); setTimeout(() => console.log("bye"), 300)',
    );
    const spec = body.spec!.template.spec!;
    spec.volumes = [{ name: 'runs', persistentVolumeClaim: { claimName: 'store' } }];
    spec.containers[0]!.volumeMounts = [{ name: 'runs', mountPath: '/runs' }];
    spec.containers[0]!.env = [{ name: 'OUT', value: '/runs/r1/ckpt.txt' }];
    spec.containers[0]!.workingDir = '/runs';
    await core.createNamespacedConfigMap({
      namespace,
      body: { metadata: { name: 'placeholder' } },
    });
    await batch.createNamespacedJob({ namespace, body });
    const pod = await eventually('the writer pod started', () =>
      podsOf(c, 'writer').find(
        (p) => p.status?.phase === 'Running' || p.status?.phase === 'Succeeded',
      ),
    );
    const name = pod.metadata!.name!;
    const res = await fetch(
      `${c.url}/api/v1/namespaces/${namespace}/pods/${name}/log?follow=true`,
      {
        headers: { authorization: 'Bearer fake-token' },
      },
    );
    expect(res.status).toBe(200);
    const followed = await res.text();
    expect(followed).toContain('bye');
    await waitJob(c, 'writer', 'Complete');
    const host = c.kubelet.hostPathFor(name, '/runs');
    expect(host).toBeTruthy();
    expect(readFileSync(join(host!, 'r1', 'ckpt.txt'), 'utf8')).toBe('checkpoint');
    expect(c.kubelet.logs(name)).toContain(`wrote ${join(host!, 'r1', 'ckpt.txt')}`);
  });

  it('keeps a suspended Job without pods until it is resumed', async () => {
    const { cluster: c, batch } = await start();
    await batch.createNamespacedJob({
      namespace,
      body: job('queued', 'console.log("ran")', { suspend: true }),
    });
    const suspended = await waitJob(c, 'queued', 'Suspended');
    expect(suspended.status?.startTime).toBeUndefined();
    expect(podsOf(c, 'queued')).toEqual([]);
    await batch.patchNamespacedJob(
      { namespace, name: 'queued', body: { spec: { suspend: false } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    await waitJob(c, 'queued', 'Complete');
  });

  it('deletes a finished Job and its pods after ttlSecondsAfterFinished (fake clock)', async () => {
    const clock = new ManualClock(Date.now());
    const { cluster: c } = await start({ server: { clock } });
    await c
      .kubeConfig()
      .makeApiClient(BatchV1Api)
      .createNamespacedJob({
        namespace,
        body: job('short-lived', 'null', { ttlSecondsAfterFinished: 60 }),
      });
    await waitJob(c, 'short-lived', 'Complete');
    expect(podsOf(c, 'short-lived')).toHaveLength(1);
    await clock.advance(61_000);
    await c.store.waitFor('jobs', namespace, 'short-lived', (j) => j === undefined, {
      what: 'the TTL delete',
    });
    await eventually('its pod collected', () => podsOf(c, 'short-lived').length === 0);
  });

  it('fails a Job past activeDeadlineSeconds on a fake clock, terminating its pod', async () => {
    const clock = new ManualClock(Date.now());
    const { cluster: c } = await start({ server: { clock } });
    await c
      .kubeConfig()
      .makeApiClient(BatchV1Api)
      .createNamespacedJob({
        namespace,
        body: job('slow', 'setInterval(() => {}, 1000)', { activeDeadlineSeconds: 600 }),
      });
    await eventually('the pod running', () =>
      podsOf(c, 'slow').find((p) => p.status?.phase === 'Running'),
    );
    await clock.advance(601_000);
    const failed = await waitJob(c, 'slow', 'Failed');
    expect(condition(failed, 'Failed')).toMatchObject({
      reason: 'DeadlineExceeded',
      message: 'Job was active longer than specified deadline',
    });
    expect(c.kubelet.processes()).toEqual([]);
  });
});
