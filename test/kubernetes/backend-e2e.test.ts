/**
 * The kubernetes backend end to end against the simulated cluster: the real
 * @kubernetes/client-node over HTTP to the fake API server, whose kubelet runs each pod's
 * `stoker worker` as a local process.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { V1Job, V1Pod } from '@kubernetes/client-node';
import { afterEach, describe, expect, it } from 'vitest';
import { createKubernetesBackend } from '../../orchestrator/backends/kubernetes/compose.js';
import { startFakeCluster, type FakeCluster } from '../../testing/kube-sim/cluster.js';
import { simulatedSettings } from '../../testing/kube-sim/simulated-settings.js';
import { eventually } from '../util/redis-server.js';
import { nodePayloadRun, specFrom, startTestSystem, type TestSystem } from '../util/system.js';

let sys: TestSystem | undefined;
let cluster: FakeCluster | undefined;
afterEach(async () => {
  await sys?.cleanup();
  await cluster?.stop();
  sys = undefined;
  cluster = undefined;
});

async function start(
  kubelet: Parameters<typeof startFakeCluster>[0] extends infer O
    ? O extends { kubelet?: infer K }
      ? K
      : never
    : never = {},
) {
  cluster = await startFakeCluster({ kubelet: { inheritEnv: 'all', gpus: 8, ...(kubelet ?? {}) } });
  const c = cluster;
  const settings = simulatedSettings(c);
  sys = await startTestSystem({
    backend: async ({ store, log, redisUrl, keys }) => {
      c.store.create('secrets', {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: settings.redisUrlSecret.name, namespace: 'stoker' },
        stringData: { [settings.redisUrlSecret.key]: redisUrl },
      });
      return createKubernetesBackend({
        kc: c.kubeConfig({ namespace: 'stoker' }),
        settings,
        store,
        log,
        workerEnv: { STOKER_PREFIX: keys.prefix },
      });
    },
  });
  return { cluster: c, sys };
}

function dump(c: FakeCluster): string {
  const jobs = c.store.list<V1Job>('jobs', { namespace: 'stoker' });
  const pods = c.store.list<V1Pod>('pods', { namespace: 'stoker' });
  return JSON.stringify(
    {
      jobs: jobs.map((j) => ({ name: j.metadata?.name, status: j.status })),
      pods: pods.map((p) => ({ name: p.metadata?.name, status: p.status })),
    },
    null,
    1,
  ).slice(0, 6000);
}

describe('the kubernetes backend on a simulated cluster', () => {
  it('runs a training task as a Job to completion', async () => {
    const { cluster: c, sys: s } = await start();
    const runId = await s.submit(
      nodePayloadRun('k8s-ok', 'train-sim.mjs', { STEPS: 6, STEP_MS: 5 }),
    );
    const view = await s
      .waitForPhase(runId, ['Succeeded', 'Failed'], 25_000)
      .catch(async (err: Error) => {
        throw new Error(
          `${err.message}\n${JSON.stringify(await s.view(runId), null, 1).slice(0, 3000)}\n${dump(c)}`,
        );
      });
    expect(view.phase, dump(c)).toBe('Succeeded');
    expect(view.stages[0]?.tasks[0]?.progress.step).toBe(6);
  });

  it('runs a 2-node training stage as 2 pods that rendezvous (torch.distributed, gloo) and train together', async () => {
    const { cluster: c, sys: s } = await start();
    const spec = specFrom({
      apiVersion: 'stoker/v1',
      kind: 'TrainingRun',
      metadata: { name: 'gang' },
      spec: {
        payload: {
          command: [
            '/usr/bin/python3',
            '-m',
            'stoker_examples.smoke_train',
            '--steps',
            '40',
            '--checkpoint-every',
            '20',
            '--output-dir',
            '${stage.outputDir}',
          ],
        },
        resources: { gpus: 0, nodes: 2 },
        kubernetes: { cpuDistributed: true },
        retry: { attempts: 1 },
      },
    });
    const runId = await s.submit(spec);
    const view = await s
      .waitForPhase(runId, ['Succeeded', 'Failed'], 120_000)
      .catch(async (err: Error) => {
        throw new Error(`${err.message}\n${dump(c)}`);
      });
    const task = view.stages[0]?.tasks[0];
    expect(view.phase, `${task?.message} ${task?.stderrTail.join('\n')}`).toBe('Succeeded');
    expect(task?.result).toMatchObject({ worldSize: 2, lossFell: true });
    const pods = c.store.list<V1Pod>('pods', { namespace: 'stoker' });
    expect(pods).toHaveLength(2);
    expect(pods.every((p) => p.status?.phase === 'Succeeded')).toBe(true);
    const services = c.store.list('services', { namespace: 'stoker' });
    expect(services).toHaveLength(1);
  });

  it('fails fast, without retrying, when the image cannot be pulled', async () => {
    const { sys: s } = await start({ imagePullFailure: /does-not-exist/ });
    const runId = await s.submit(
      nodePayloadRun('pull', 'train-sim.mjs', {}, { image: 'registry.example/does-not-exist:1' }),
    );
    const view = await s.waitForPhase(runId, ['Succeeded', 'Failed'], 60_000);
    expect(view.phase).toBe('Failed');
    const task = view.stages[0]?.tasks[0];
    expect(task?.reason).toBe('ImagePullFailed');
    expect(task?.attempt).toBe(1);
    expect(task?.message).toContain('does-not-exist');
  });

  it('retries an OOMKilled pod and surfaces why', async () => {
    const { cluster: c, sys: s } = await start();
    const runId = await s.submit(
      nodePayloadRun('oom', 'train-sim.mjs', { STEPS: 40, STEP_MS: 50 }),
    );
    const podName = await eventually(
      'a running pod',
      () =>
        c.store
          .list<V1Pod>('pods', { namespace: 'stoker' })
          .find((p) => p.status?.phase === 'Running')?.metadata?.name,
      30_000,
    );
    c.kubelet.oomKill(podName);
    const view = await s.waitForPhase(runId, ['Succeeded', 'Failed'], 90_000);
    expect(view.phase).toBe('Succeeded');
    const task = view.stages[0]?.tasks[0];
    expect(task?.attempt).toBe(2);
    expect(task?.history[0]?.reason).toBe('OOMKilled');
  });

  it('survives an evicted pod without spending an attempt', async () => {
    const { cluster: c, sys: s } = await start();
    const runId = await s.submit(
      nodePayloadRun(
        'evict',
        'train-sim.mjs',
        { STEPS: 40, STEP_MS: 50 },
        { retry: { attempts: 1 } },
      ),
    );
    const podName = await eventually(
      'a running pod',
      () =>
        c.store
          .list<V1Pod>('pods', { namespace: 'stoker' })
          .find((p) => p.status?.phase === 'Running')?.metadata?.name,
      30_000,
    );
    // Some steps in: the SIGTERM's checkpoint is not step 0.
    await eventually(
      'the payload at step 8',
      async () => ((await s.view(runId)).stages[0]?.tasks[0]?.progress.step ?? 0) >= 8,
      30_000,
    );
    c.kubelet.evict(podName, { reason: 'PreemptionByScheduler', gracePeriodSeconds: 5 });
    const view = await s.waitForPhase(runId, ['Succeeded', 'Failed'], 90_000);
    expect(view.phase, JSON.stringify(view.stages[0]?.tasks[0])).toBe('Succeeded');
    // The Job's podFailurePolicy ignores the disruption: the Job itself replaces the pod,
    // which resumes from the checkpoint; stoker's one attempt is not spent.
    expect(view.stages[0]?.tasks[0]?.attempt).toBe(1);
    expect(c.server.countRequests({ verb: 'create', resource: 'jobs' })).toBe(1);
    // Resumed from the checkpoint the evicted payload wrote on SIGTERM, not from step 0,
    // and the step count at the end is exact.
    const out = join(view.runDir, 'stages', 'train');
    const sigtermStep = Number(readFileSync(join(out, 'sigterm-1'), 'utf8'));
    expect(sigtermStep).toBeGreaterThanOrEqual(8);
    const starts = readFileSync(join(out, 'starts.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { resumeFrom: string | null; step: number });
    expect(starts.map((x) => x.step)).toEqual([0, sigtermStep]);
    expect(starts[1]?.resumeFrom).toMatch(new RegExp(`ckpt-${sigtermStep}\\.json$`));
    expect(JSON.parse(readFileSync(join(out, 'final.json'), 'utf8'))).toEqual({ step: 40 });
  });

  it('refuses a stage in another namespace before anything starts, naming the field', async () => {
    const { cluster: c, sys: s } = await start();
    const stage = (name: string, extra: Record<string, unknown> = {}) => ({
      name,
      kind: 'train',
      payload: { command: [process.execPath, '-e', ''] },
      ...extra,
    });
    const runId = await s.submit(
      specFrom({
        apiVersion: 'stoker/v1',
        kind: 'Pipeline',
        metadata: { name: 'elsewhere' },
        spec: {
          stages: [
            stage('first'),
            stage('second', { dependsOn: ['first'], kubernetes: { namespace: 'other' } }),
          ],
        },
      }),
    );
    const view = await s.waitForPhase(runId, ['Succeeded', 'Failed'], 20_000);
    expect(view.phase).toBe('Failed');
    const second = view.stages.find((st) => st.name === 'second');
    expect(second?.conditions.find((co) => co.type === 'Failed')?.reason).toBe('InvalidSpec');
    expect(second?.message).toContain('spec.stages[1].kubernetes.namespace');
    expect(second?.message).toContain('"other"');
    expect(view.message).toContain('spec.stages[1].kubernetes.namespace');
    // Nothing of the run started: not even its first stage, which was fine.
    expect(view.stages.find((st) => st.name === 'first')?.tasks).toEqual([]);
    expect(c.server.countRequests({ verb: 'create', resource: 'jobs' })).toBe(0);
  });

  it('refuses a spec that breaks its rules (spec-rules.ts), though the loader had none', async () => {
    const { cluster: c, sys: s } = await start();
    // Loaded without the backend's rules (as by a client that knows no backend): 16 GPUs
    // on one node is more than the nodes have (gpusPerNodeMax, 8 by default).
    const runId = await s.submit(
      specFrom({
        apiVersion: 'stoker/v1',
        kind: 'Pipeline',
        metadata: { name: 'too-wide' },
        spec: {
          defaults: { resources: { gpus: 16 } },
          stages: [{ name: 'train', kind: 'train', payload: { command: [process.execPath] } }],
        },
      }),
    );
    const view = await s.waitForPhase(runId, ['Succeeded', 'Failed'], 20_000);
    expect(view.phase).toBe('Failed');
    const train = view.stages.find((st) => st.name === 'train');
    expect(train?.conditions.find((co) => co.type === 'Failed')?.reason).toBe('InvalidSpec');
    expect(train?.message).toContain('spec.stages[0].resources.gpus: gpus is per node: 16 GPUs');
    expect(train?.message).toContain('kubernetes.gpusPerNodeMax (8)');
    expect(train?.tasks).toEqual([]);
    expect(c.server.countRequests({ verb: 'create', resource: 'jobs' })).toBe(0);
  });
});
