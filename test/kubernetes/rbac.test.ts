/**
 * The controller's Role (k8s/base/rbac.yaml) is exactly what the code uses. The harness
 * answers 403 to any request the Role does not permit (every scenario in test/kubernetes
 * that uses it checks that direction); this scenario makes every kind of request the
 * kubernetes backend sends, and checks the other direction: each grant of the Role was
 * used by some request. A grant nothing uses fails here (remove it from the Role); a call
 * the Role lacks fails here and in the scenario that makes it.
 *
 * The scenario, on the simulated cluster through the real @kubernetes/client-node:
 *   - garbage collection at start, with an orphaned gang Service and a pod whose Job was
 *     deleted with propagationPolicy Orphan: list services, delete services, delete pods
 *   - the caches: list + watch of jobs, pods and events
 *   - a 2-node gang whose Job's create answer is lost while the watches are stalled: the
 *     retried create gets 409 and the backend reads the Job (get jobs) for the uid its
 *     headless Service and the ConfigMap of the spec's files are owned by (create
 *     services, create configmaps)
 *   - a pulled stage's pool worker (create jobs), scaled to 0 afterwards (delete jobs)
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { CoreV1Api } from '@kubernetes/client-node';
import { afterEach, describe, expect, it } from 'vitest';
import { scalePool } from '../../orchestrator/pools.js';
import { makeTrainJob } from '../builders/k8s.js';
import {
  attributesOf,
  controllerRole,
  grantOf,
  grantsOf,
  permits,
  type RbacRule,
} from '../util/rbac.js';
import { eventually } from '../util/redis-server.js';
import { payloadFixture, specFrom } from '../util/system.js';
import { NS, startK8sCluster, type K8sHarness } from './harness.js';

let h: K8sHarness | undefined;
let dir: string | undefined;
afterEach(async () => {
  await h?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
  h = undefined;
  dir = undefined;
});

const SLEEP = 'setTimeout(() => {}, 120000)';

describe('the RBAC authorizer of the tests', () => {
  const rules: RbacRule[] = [
    { apiGroups: ['batch'], resources: ['jobs'], verbs: ['create', 'list'] },
    { apiGroups: [''], resources: ['pods/log'], verbs: ['get'] },
  ];
  it.each([
    [{ group: 'batch', resource: 'jobs', verb: 'create' }, true],
    [{ group: 'batch', resource: 'jobs', verb: 'delete' }, false],
    [{ group: '', resource: 'jobs', verb: 'create' }, false], // another API group
    [{ group: '', resource: 'pods', subresource: 'log', verb: 'get' }, true],
    [{ group: '', resource: 'pods', verb: 'get' }, false], // pods/log is not pods
    [{ group: '', resource: 'secrets', verb: 'get' }, false],
  ])('%j -> %s', (request, allowed) => {
    expect(permits(rules, request)).toBe(allowed);
  });

  it('reads a request as the API server does', () => {
    expect(
      attributesOf({
        path: '/apis/batch/v1/namespaces/stoker/jobs/j',
        verb: 'delete',
        resource: 'jobs',
        name: 'j',
      }),
    ).toMatchObject({ group: 'batch', resource: 'jobs', verb: 'delete' });
    expect(
      attributesOf({
        path: '/api/v1/namespaces/stoker/pods/p/log',
        verb: 'get',
        resource: 'pods',
        subresource: 'log',
      }),
    ).toMatchObject({ group: '', resource: 'pods', subresource: 'log' });
    expect(attributesOf({ path: '/version', verb: 'get' })).toBeNull();
  });
});

describe("the controller's Role", () => {
  it('grants no Secrets, nothing cluster-wide, and refuses what it does not grant with 403', async () => {
    expect(grantsOf(controllerRole()).filter((g) => g.startsWith('/secrets'))).toEqual([]);
    h = await startK8sCluster();
    const core = h.cluster.kubeConfig({ namespace: NS }).makeApiClient(CoreV1Api);
    await expect(
      core.readNamespacedSecret({ name: 'stoker-redis', namespace: NS }),
    ).rejects.toMatchObject({
      code: 403,
    });
    // Taken, so that the harness's stop() does not fail the test for it: it was the point.
    expect(h.takeForbidden()).toEqual(['/secrets get']);
  });

  it('is exactly what the kubernetes backend uses: every request permitted, every grant used', async () => {
    dir = mkdtempSync(join(tmpdir(), 'stoker-k8s-rbac-'));
    h = await startK8sCluster({ kubelet: { extraEnv: { STOKER_HOME: join(dir, 'home') } } });
    const k = h;
    const { store } = k.cluster;

    // What an earlier controller left: a gang's Service without its Job, and a pod whose
    // Job was deleted with propagationPolicy Orphan.
    const gang = makeTrainJob().run('orphan').kubernetes({ cpuDistributed: true });
    gang.stage((s) => s.set('resources', { nodes: 2, cpu: 1 }));
    const { service: orphanService } = gang.simulated(SLEEP).build();
    store.create('services', orphanService!, { namespace: NS });
    const { job: orphanJob } = makeTrainJob().run('orphan-pod').simulated(SLEEP).build();
    store.create('jobs', orphanJob, { namespace: NS });
    const orphanPods = () =>
      store
        .list<V1Pod>('pods', { namespace: NS })
        .filter((p) => p.metadata?.labels?.['job-name'] === orphanJob.metadata?.name);
    await eventually('the orphan pod to run', () =>
      orphanPods().some((p) => p.status?.phase === 'Running'),
    );
    store.delete('jobs', NS, orphanJob.metadata!.name!, { propagationPolicy: 'Orphan' });

    const s = await k.system();
    await eventually('the orphans collected', () => orphanPods().length === 0);

    // A gang whose create answer is lost while no watch event arrives: the backend must
    // read the Job to own the Service by it.
    const release = k.cluster.server.stallWatches();
    k.cluster.server.failNext({ verb: 'create', resource: 'jobs' }, { dropAnswer: true });
    const input = join(dir, 'in.jsonl');
    mkdirSync(dir, { recursive: true });
    writeFileSync(input, `${JSON.stringify({ id: 'a' })}\n`);
    // A spec that lists a file: each Job gets a ConfigMap of it.
    mkdirSync(join(dir, 'spec'), { recursive: true });
    writeFileSync(join(dir, 'spec', 'options.yaml'), 'steps: 3\n');
    const runId = await s.submit(
      specFrom(
        {
          apiVersion: 'stoker/v1',
          kind: 'Pipeline',
          metadata: { name: 'rbac' },
          spec: {
            files: ['options.yaml'],
            defaults: { retry: { attempts: 1 } },
            stages: [
              {
                name: 'gang',
                kind: 'train',
                resources: { nodes: 2 },
                kubernetes: { cpuDistributed: true },
                payload: {
                  command: [process.execPath, payloadFixture('train-sim.mjs')],
                  env: { STEPS: 3, STEP_MS: 5 },
                },
              },
              {
                name: 'gen',
                kind: 'generate',
                dependsOn: ['gang'],
                input: { shards: [input] },
                pool: { name: 'rbac-gen', minReplicas: 0, maxReplicas: 1, replicas: 1 },
                payload: {
                  command: [process.execPath, payloadFixture('server.mjs')],
                  env: { STATE_DIR: dir },
                },
              },
            ],
          },
        },
        join(dir, 'spec'),
      ),
    );
    await eventually('the gang Service, owned by its Job', () =>
      store
        .list('services', { namespace: NS })
        .some((svc) => (svc.metadata?.ownerReferences ?? []).some((o) => o.kind === 'Job')),
    );
    release();
    const view = await s
      .waitForPhase(runId, ['Succeeded', 'Failed'], 90_000)
      .catch((err: Error) => {
        throw new Error(`${err.message}\n${k.dump()}`);
      });
    expect(view.phase, k.dump()).toBe('Succeeded');
    await scalePool(s.redis, s.keys, 'rbac-gen', 0);
    await eventually('the pool worker Job deleted', () =>
      k.cluster.server.requests.some((r) => r.verb === 'delete' && r.resource === 'jobs'),
    );

    const used = new Set(
      k.cluster.server.requests.flatMap((r) => {
        const a = attributesOf(r);
        return a ? [grantOf(a)] : [];
      }),
    );
    expect(k.forbidden()).toEqual([]);
    expect([...used].sort()).toEqual([...new Set(grantsOf(controllerRole()))].sort());
  });
});
