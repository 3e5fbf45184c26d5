/** planPool(): sizing a pool's worker Jobs from the caches and the workers' states. */
import type { V1Job, V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { buildPoolWorkerJob } from '../../orchestrator/backends/kubernetes/objects.js';
import { planPool, workerIdOf } from '../../orchestrator/backends/kubernetes/pools.js';
import { kubernetesSettings } from '../../orchestrator/backends/kubernetes/settings.js';
import { specFrom } from '../util/system.js';

const spec = specFrom({
  apiVersion: 'stoker/v1',
  kind: 'SelfPlay',
  metadata: { name: 'p' },
  spec: {
    input: { file: '/data/items.jsonl', shardSize: 10 },
    pool: { name: 'gen', maxReplicas: 8 },
    payload: { command: ['python', '-m', 'gen'] },
  },
});
const stage = spec.stages[0]!;

/** A worker Job as the backend builds it, created at second `t`. */
function job(
  id: string,
  t: number,
  o: { finished?: 'Complete' | 'Failed'; deleting?: boolean } = {},
): V1Job {
  const j = buildPoolWorkerJob({ name: 'gen', resources: stage.resources }, id, {
    stageSpec: stage,
    image: 'img',
    namespace: 'stoker',
    workerCommand: ['stoker'],
    env: {},
    settings: kubernetesSettings(),
  });
  j.metadata!.creationTimestamp = new Date(t * 1000);
  if (o.deleting) j.metadata!.deletionTimestamp = new Date();
  if (o.finished) j.status = { conditions: [{ type: o.finished, status: 'True' }] };
  return j;
}

function pod(of: V1Job, phase: string): V1Pod {
  return {
    metadata: {
      name: `${of.metadata?.name}-x`,
      annotations: of.spec?.template.metadata?.annotations,
    },
    status: { phase },
  };
}

const ids = (jobs: V1Job[]) => jobs.map((j) => workerIdOf(j));

describe('planPool', () => {
  it('scales down idle workers first, then starting ones, then busy ones; the newest first among equals', () => {
    const jobs = [
      job('gen-a', 1),
      job('gen-b', 2),
      job('gen-c', 3),
      job('gen-d', 4),
      job('gen-e', 5),
    ];
    const states = new Map([
      ['gen-a', 'busy'],
      ['gen-b', 'idle'],
      ['gen-c', 'busy'],
      ['gen-d', 'idle'],
      // gen-e has not published a state yet: starting
    ]);
    const plan = (replicas: number) =>
      planPool({ jobs, pods: [], deleting: new Set(), states, replicas });
    expect(ids(plan(4).victims)).toEqual(['gen-d']);
    expect(ids(plan(2).victims)).toEqual(['gen-d', 'gen-b', 'gen-e']);
    expect(ids(plan(0).victims)).toEqual(['gen-d', 'gen-b', 'gen-e', 'gen-c', 'gen-a']);
    expect(plan(5)).toMatchObject({ victims: [], create: 0 });
    expect(plan(7)).toMatchObject({ victims: [], create: 2 });
  });

  it('keeps warm workers before cold ones, and of busy ones drains the one whose shard started last', () => {
    const jobs = [job('gen-a', 1), job('gen-b', 2), job('gen-c', 3), job('gen-d', 4)];
    const at = (s: number) => new Date(s * 1000).toISOString();
    const states = new Map([
      ['gen-a', { state: 'busy', shardsDone: 9, shardSince: at(50) }],
      ['gen-b', { state: 'busy', shardsDone: 9, shardSince: at(60) }],
      ['gen-c', { state: 'busy', shardsDone: 0, shardSince: at(10) }], // loading its model
      ['gen-d', { state: 'idle', shardsDone: 4, shardSince: null }],
    ]);
    const plan = planPool({ jobs, pods: [], deleting: new Set(), states, replicas: 0 });
    expect(ids(plan.victims)).toEqual(['gen-d', 'gen-c', 'gen-b', 'gen-a']);
  });

  it('neither counts nor deletes again a worker whose Job is being deleted, and replaces it', () => {
    const jobs = [job('gen-a', 1), job('gen-b', 2), job('gen-c', 3, { deleting: true })];
    const plan = planPool({
      jobs,
      pods: jobs.map((j) => pod(j, 'Running')),
      deleting: new Set([jobs[1]!.metadata!.name!]),
      states: new Map([
        ['gen-a', 'busy'],
        ['gen-b', 'draining'],
        ['gen-c', 'busy'],
      ]),
      replicas: 2,
    });
    expect(ids(plan.active)).toEqual(['gen-a']);
    expect(plan.victims).toEqual([]);
    expect(plan.create).toBe(1);
    // Their pods still run (draining): their records stay.
    expect(plan.forget).toEqual([]);
  });

  it('deletes finished Jobs, starts others in their place, and forgets workers with nothing left running', () => {
    const crashed = job('gen-a', 1, { finished: 'Failed' });
    const drained = job('gen-b', 2, { finished: 'Complete' });
    const live = job('gen-c', 3);
    const plan = planPool({
      jobs: [crashed, drained, live],
      pods: [pod(crashed, 'Failed'), pod(drained, 'Succeeded'), pod(live, 'Running')],
      deleting: new Set(),
      // gen-z: a worker whose Job and pod are gone (killed after its Job was deleted).
      states: new Map([
        ['gen-a', 'busy'],
        ['gen-c', 'idle'],
        ['gen-z', 'busy'],
      ]),
      replicas: 3,
    });
    expect(ids(plan.finished)).toEqual(['gen-a', 'gen-b']);
    expect(ids(plan.active)).toEqual(['gen-c']);
    expect(plan.create).toBe(2);
    expect(plan.forget.sort()).toEqual(['gen-a', 'gen-z']);
  });
});
