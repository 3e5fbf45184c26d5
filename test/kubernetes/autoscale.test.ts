/**
 * Autoscaled pools on the simulated cluster (one Job of one pod per worker, through the
 * real @kubernetes/client-node to the fake API server, whose kubelet runs each pod's
 * `stoker worker --pool` as a local process):
 *
 *   - the local integration test's run (test/integration/autoscale.test.ts) here: a pool
 *     of 0 to 4 grows from 0 with a backlog of 400 shards, drains it, and goes back to 0
 *     after its idle timeout; its worker Jobs are created, then all removed; every item
 *     once, every shard once on its first attempt, every worker pod ended by a drain
 *     (exit 0), none killed busy;
 *   - with fewer GPUs than its backlog asks for: the scheduler leaves the extra worker
 *     pods Pending (PodScheduled=False, Unschedulable, "Insufficient nvidia.com/gpu");
 *     they count as capacity on the way, so the pool asks for no more, and once they have
 *     been unschedulable past the setting they are no longer counted and the decision says
 *     why with the scheduler's message. The run still finishes, every item once.
 *
 * Every wait is for a condition, never for a time.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterEach, expect, it } from 'vitest';
import { ANNOTATIONS } from '../../orchestrator/backends/kubernetes/names.js';
import { readPool, readWorkers } from '../../orchestrator/pools.js';
import { eventually } from '../util/redis-server.js';
import { autoscaledGenerateSpec } from '../util/autoscale-spec.js';
import { startK8sCluster, type K8sHarness } from './harness.js';

let k: K8sHarness | undefined;
let dir: string | undefined;
afterEach(async () => {
  await k?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
  k = undefined;
  dir = undefined;
});

/** Every id in the stage's shard outputs, as a consumer reads them. */
function outputIds(runDir: string): string[] {
  const out = join(runDir, 'stages', 'gen', 'shards');
  return readdirSync(out)
    .filter((f) => f.endsWith('.jsonl'))
    .flatMap((f) => readFileSync(join(out, f), 'utf8').trim().split('\n').filter(Boolean))
    .map((l) => (JSON.parse(l) as { id: string }).id);
}

it('grows from 0 with 400 shards, drains them, and shrinks back to 0 after its idle timeout; every item once, no worker killed busy', async () => {
  dir = mkdtempSync(join(tmpdir(), 'stoker-k8s-autoscale-grow-'));
  const ITEMS = 400;
  const pool = 'auto-grow';
  k = await startK8sCluster({ kubelet: { extraEnv: { STOKER_HOME: join(dir, 'home') } } });
  const h = k;
  // What the cluster saw of the pool's workers: every Job and pod created, and how each
  // pod's container ended (the pods are removed once their Job is gone).
  const seen = { jobs: new Set<string>(), pods: new Set<string>() };
  const ended = new Map<string, { exitCode: number; reason: string | undefined }>();
  h.cluster.store.subscribe((ev) => {
    const o = ev.object as V1Pod;
    if (o.metadata?.annotations?.[ANNOTATIONS.pool] !== pool) return;
    const name = o.metadata.name ?? '';
    if (ev.type === 'ADDED' && ev.resource === 'jobs') seen.jobs.add(name);
    if (ev.resource !== 'pods') return;
    if (ev.type === 'ADDED') seen.pods.add(name);
    for (const c of o.status?.containerStatuses ?? [])
      if (c.state?.terminated)
        ended.set(name, {
          exitCode: c.state.terminated.exitCode,
          reason: c.state.terminated.reason,
        });
  });
  // The controller's log: each resize of the pool with its reason, as the leader decided it.
  const lines: Array<Record<string, unknown>> = [];
  const log = pino(
    { level: 'info' },
    { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) },
  );
  const resizes = () =>
    lines
      .filter((l) => l.msg === 'pool resized' && l.pool === pool)
      .map((l) => ({ from: l.from as number, to: l.to as number, reason: l.reason as string }));
  const s = await h.system({ log });

  const items = Array.from({ length: ITEMS }, (_, i) => `item-${String(i).padStart(4, '0')}`);
  writeFileSync(
    join(dir, 'items.jsonl'),
    `${items.map((id) => JSON.stringify({ id })).join('\n')}\n`,
  );
  mkdirSync(join(dir, 'state'), { recursive: true });
  const spec = autoscaledGenerateSpec({
    name: 'grow',
    pool,
    dir,
    stateDir: join(dir, 'state'),
  });
  const runId = await s.submit(spec);
  await eventually(
    'worker Jobs on the cluster and at least two workers up',
    async () => seen.jobs.size >= 2 && (await readWorkers(s.redis, s.keys, pool)).length >= 2,
    60_000,
  );
  const view = await s.waitForPhase(runId, ['Succeeded', 'Failed'], 180_000).catch((err: Error) => {
    throw new Error(`${err.message}\n${h.dump()}`);
  });
  expect(view.phase, view.message ?? '').toBe('Succeeded');
  expect(view.stages[0]?.shards).toMatchObject({ total: ITEMS, succeeded: ITEMS, failed: 0 });

  // Back to 0 once the queue has been empty for the idle timeout: no worker Job, no
  // running pod and no worker record of the pool left.
  const poolJobs = () =>
    h.jobs().filter((j) => j.metadata?.annotations?.[ANNOTATIONS.pool] === pool);
  const poolPods = () =>
    h.pods().filter((p) => p.metadata?.annotations?.[ANNOTATIONS.pool] === pool);
  const idle = await eventually(
    'the pool to go back to 0, its Jobs and pods gone',
    async () => {
      const p = await readPool(s.redis, s.keys, pool);
      if (p?.desired !== 0 || p.decision?.reason !== 'IdleTimeout') return null;
      const workers = await readWorkers(s.redis, s.keys, pool);
      return poolJobs().length === 0 && poolPods().length === 0 && workers.length === 0 ? p : null;
    },
    60_000,
    100,
  ).catch((err: Error) => {
    throw new Error(`${err.message}\n${h.dump()}`);
  });
  expect(idle.decision?.message).toMatch(/past idleTimeout 2s: minReplicas 0/);
  expect(idle.memory?.service.samples).toBeGreaterThan(0);

  // The decisions went 0 -> more -> 0: the first resize grew the pool from 0 on its
  // backlog, none went to 0 before the last, which did so on the idle timeout.
  const r = resizes();
  expect(r.length, JSON.stringify(r)).toBeGreaterThanOrEqual(2);
  // Grown on the backlog: as it asked (ValidBacklog), or as far as the scale-up policies
  // or maxReplicas allow at once.
  expect(r[0]?.from).toBe(0);
  expect(r[0]?.to).toBeGreaterThan(0);
  expect(['ValidBacklog', 'ScaleUpLimit', 'TooManyReplicas']).toContain(r[0]?.reason);
  expect(
    r.slice(0, -1).every((x) => x.to > 0),
    JSON.stringify(r),
  ).toBe(true);
  expect(r[r.length - 1]).toMatchObject({ to: 0, reason: 'IdleTimeout' });
  expect(Math.max(...r.map((x) => x.to))).toBeLessThanOrEqual(4);

  // Every worker Job created was removed; each of its pods ended by draining: the
  // worker exits 0 after SIGTERM, between shards. A pod killed busy (SIGKILL past its
  // grace period, or a crash) would end otherwise, and its shard would run again.
  expect(seen.jobs.size).toBeGreaterThanOrEqual(2);
  expect([...seen.pods].sort()).toEqual([...ended.keys()].sort());
  expect([...ended].filter(([, e]) => e.exitCode !== 0)).toEqual([]);
  expect(lines.filter((l) => /did not drain in time/.test(String(l.msg)))).toEqual([]);

  // Every item exactly once; every shard completed once, on its first attempt.
  const ids = outputIds(view.runDir);
  expect(ids).toHaveLength(ITEMS);
  expect(new Set(ids).size).toBe(ITEMS);
  const completions = await s.redis.zrange(s.keys.poolCompletions(pool), '0', '-1');
  expect(completions).toHaveLength(ITEMS);
  expect(completions.filter((c) => !/:1:\d+$/.test(c))).toEqual([]);
}, 300_000);

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
  const spec = autoscaledGenerateSpec({
    name: 'unsched',
    pool,
    dir,
    stateDir: join(dir, 'state'),
    autoscale: {
      target: { backlogSecondsPerWorker: 1 },
      assumeShardDuration: '1s',
      idleTimeout: '30s',
      behavior: undefined, // this test's pool has none: the GPU pool's defaults
    },
    poolExtra: { resources: { gpus: 1 } },
    env: { ITEM_MS: 400 },
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
