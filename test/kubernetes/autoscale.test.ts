/**
 * An autoscaled pool on the simulated cluster, with fewer GPUs than its backlog asks for:
 * the scheduler leaves the extra worker pods Pending (PodScheduled=False, Unschedulable,
 * "Insufficient nvidia.com/gpu"); they count as capacity on the way, so the pool asks for
 * no more, and once they have been unschedulable past the setting they are no longer
 * counted and the decision says why with the scheduler's message. The run still finishes,
 * every item once.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { readPool } from '../../orchestrator/pools.js';
import { eventually } from '../util/redis-server.js';
import { payloadFixture, specFrom } from '../util/system.js';
import { startK8sCluster, type K8sHarness } from './harness.js';

let k: K8sHarness | undefined;
let dir: string | undefined;
afterEach(async () => {
  await k?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
  k = undefined;
  dir = undefined;
});

it('counts pending pods, reports the unschedulable ones with the scheduler’s reason, and finishes', async () => {
  dir = mkdtempSync(join(tmpdir(), 'stoker-k8s-autoscale-'));
  // Two GPUs on the node; each worker asks for one.
  k = await startK8sCluster({ kubelet: { gpus: 2, extraEnv: { STOKER_HOME: join(dir, 'home') } } });
  const s = await k.system({
    autoscale: { budget: { controller: null, queues: {} }, unschedulableAfterSeconds: 1 },
  });
  const items = Array.from({ length: 16 }, (_, i) => JSON.stringify({ id: `i-${i}` }));
  writeFileSync(join(dir, 'items.jsonl'), `${items.join('\n')}\n`);
  mkdirSync(join(dir, 'state'), { recursive: true });
  const pool = 'gpu-gen';
  const spec = specFrom({
    apiVersion: 'stoker/v1',
    kind: 'Pipeline',
    metadata: { name: 'unsched' },
    spec: {
      stages: [
        {
          name: 'gen',
          kind: 'generate',
          input: { file: join(dir, 'items.jsonl'), shardSize: 1 },
          pool: {
            name: pool,
            minReplicas: 0,
            maxReplicas: 4,
            resources: { gpus: 1 },
            autoscale: {
              target: { backlogSecondsPerWorker: 1 },
              assumeShardDuration: '1s',
              idleTimeout: '30s',
            },
          },
          retry: { attempts: 3, backoff: { type: 'fixed', delay: '100ms' } },
          terminationGracePeriod: '10s',
          payload: {
            command: [process.execPath, payloadFixture('server.mjs')],
            env: { STATE_DIR: join(dir, 'state'), ITEM_MS: 400 },
          },
        },
      ],
    },
  });
  const runId = await s.submit(spec);
  const reasons = new Set<string>();
  const limited = await eventually(
    'the decision to say the scheduler cannot place a worker',
    async () => {
      const p = await readPool(s.redis, s.keys, pool);
      if (p?.decision) reasons.add(p.decision.reason);
      const c = p?.decision?.conditions.find(
        (x) => x.type === 'ScalingLimited' && x.reason === 'Unschedulable',
      );
      return c ? { pool: p, condition: c } : null;
    },
    60_000,
  );
  expect(limited.condition.message).toContain('Insufficient nvidia.com/gpu');
  // Counted what can run, plus the one kept waiting for a node: never 4 again while stuck.
  expect(limited.pool?.desired).toBeLessThanOrEqual(3);
  const view = await s.waitForPhase(runId, ['Succeeded', 'Failed'], 120_000).catch((err: Error) => {
    throw new Error(`${err.message}\n${k?.dump()}`);
  });
  expect(view.phase, view.message ?? '').toBe('Succeeded');
  const out = join(view.runDir, 'stages', 'gen', 'shards');
  const ids = readdirSync(out)
    .filter((f) => f.endsWith('.jsonl'))
    .flatMap((f) => readFileSync(join(out, f), 'utf8').trim().split('\n').filter(Boolean));
  expect(ids).toHaveLength(16);
  expect(new Set(ids).size).toBe(16);
});
