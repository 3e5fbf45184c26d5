/**
 * Pools on the kubernetes backend, against the simulated cluster: a pulled generate stage
 * whose workers are Jobs (one pod each) that the controller sizes, through the real
 * @kubernetes/client-node over HTTP to the fake API server, whose kubelet runs each pod's
 * `stoker worker --pool` as a local process. The payload is the Node server fixture
 * (test/fixtures/payloads/server.mjs): no torch, a few seconds per test.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1Job, V1Pod } from '@kubernetes/client-node';
import { afterEach, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { stringify } from 'yaml';
import { makeKeys, shardTaskId } from '../../common/keys.js';
import { ANNOTATIONS, COMPONENTS, LABELS } from '../../orchestrator/backends/kubernetes/names.js';
import { readWorkers, scalePool, unpinPool } from '../../orchestrator/pools.js';
import { stoker } from '../util/cli.js';
import { eventually, testRedisUrl, uniquePrefix } from '../util/redis-server.js';
import { payloadFixture, specFrom } from '../util/system.js';
import { startK8sCluster, type K8sHarness, type K8sSystem } from './harness.js';

let k: K8sHarness | undefined;
let dir: string | undefined;
afterEach(async () => {
  await k?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
  k = undefined;
  dir = undefined;
});

async function start(): Promise<K8sHarness> {
  dir = mkdtempSync(join(tmpdir(), 'stoker-k8s-pools-'));
  k = await startK8sCluster({
    kubelet: {
      extraEnv: {
        // Pool worker logs under the test's directory; a killed worker's shard comes back fast.
        STOKER_HOME: join(dir, 'home'),
        STOKER_LOCK_DURATION_MS: '4000',
        STOKER_STALLED_INTERVAL_MS: '1000',
      },
    },
  });
  return k;
}

const ids = (prefix: string, n: number) =>
  Array.from({ length: n }, (_, i) => `${prefix}-${String(i).padStart(3, '0')}`);

/**
 * A Pipeline with one generate stage over pool `pool`, whose shards are the given files
 * (explicit shards: sizes chosen by the test, so one can be slow while others are quick).
 */
function generateRun(name: string, shards: string[][], env: Record<string, string | number>) {
  const base = join(dir as string, name);
  mkdirSync(base, { recursive: true });
  const files = shards.map((items, i) => {
    const f = join(base, `in-${i}.jsonl`);
    writeFileSync(f, `${items.map((id) => JSON.stringify({ id })).join('\n')}\n`);
    return f;
  });
  const pool = `gen-${name}`;
  const spec = specFrom({
    apiVersion: 'stoker/v1',
    kind: 'Pipeline',
    metadata: { name },
    spec: {
      stages: [
        {
          name: 'gen',
          kind: 'generate',
          input: { shards: files },
          pool: { name: pool, minReplicas: 0, maxReplicas: 2, replicas: 2 },
          retry: { attempts: 3, backoff: { type: 'fixed', delay: '100ms' } },
          terminationGracePeriod: '20s',
          payload: {
            command: [process.execPath, payloadFixture('server.mjs')],
            env: { STATE_DIR: base, ...env },
          },
        },
      ],
    },
  });
  return { spec, pool, items: shards.flat() };
}

/** Every id in the stage's shard outputs (one line per item processed and kept). */
function outputIds(runDir: string): string[] {
  const out = join(runDir, 'stages', 'gen', 'shards');
  return readdirSync(out)
    .filter((f) => f.endsWith('.jsonl'))
    .flatMap((f) => readFileSync(join(out, f), 'utf8').trim().split('\n').filter(Boolean))
    .map((l) => (JSON.parse(l) as { id: string }).id);
}

const poolJobs = (h: K8sHarness, pool: string): V1Job[] =>
  h.jobs().filter((j) => j.metadata?.annotations?.[ANNOTATIONS.pool] === pool);
const poolPods = (h: K8sHarness, pool: string): V1Pod[] =>
  h.pods().filter((p) => p.metadata?.annotations?.[ANNOTATIONS.pool] === pool);
const running = (pods: V1Pod[]) =>
  pods.filter((p) => p.status?.phase !== 'Succeeded' && p.status?.phase !== 'Failed');
const workerOf = (o: V1Job | V1Pod) => o.metadata?.annotations?.[ANNOTATIONS.workerId];

async function waitForRun(h: K8sHarness, s: K8sSystem, runId: string, timeoutMs = 60_000) {
  return s.waitForPhase(runId, ['Succeeded', 'Failed'], timeoutMs).catch((err: Error) => {
    throw new Error(`${err.message}\n${h.dump()}`);
  });
}

describe('a pool on the kubernetes backend', () => {
  it('runs a generate stage on 2 worker pods; scaling down 2 -> 1 while a shard is busy drains the idle worker first', async () => {
    const h = await start();
    const s = await h.system();
    // Shard 1 takes ~8 s (80 items, 100 ms each); shards 0 and 2 are quick. Whichever
    // worker takes shard 1 is busy while the other goes idle.
    const { spec, pool, items } = generateRun('down', [ids('a', 1), ids('b', 80), ids('c', 1)], {
      ITEM_MS: 100,
    });
    const runId = await s.submit(spec);
    const slow = shardTaskId(runId, 'gen', 1);

    // The pool became 2 worker Jobs of one pod each, labelled and annotated as the pool's.
    const quick = [0, 2].map((i) => shardTaskId(runId, 'gen', i));
    const busy = await eventually(
      'the quick shards done, one worker busy with the slow one, the other idle',
      async () => {
        const ws = await readWorkers(s.redis, s.keys, pool);
        const b = ws.find((w) => w.state === 'busy' && w.shard === slow);
        const done = await s.store.getTaskStatuses(quick);
        return b &&
          ws.some((w) => w.state === 'idle') &&
          quick.every((id) => done[id]?.phase === 'Succeeded')
          ? b
          : null;
      },
      60_000,
    );
    const workers = await readWorkers(s.redis, s.keys, pool);
    const idle = workers.find((w) => w.state === 'idle');
    expect(workers).toHaveLength(2);
    const jobs = poolJobs(h, pool);
    expect(jobs.map(workerOf).sort()).toEqual(workers.map((w) => w.workerId).sort());
    for (const j of jobs) {
      expect(j.metadata?.labels?.[LABELS.component]).toBe(COMPONENTS.pool);
      expect(j.spec?.template.spec?.containers[0]?.command?.slice(-4)).toEqual([
        '--pool',
        pool,
        '--worker-id',
        workerOf(j),
      ]);
      // The stage's grace plus the backend's margin: the drain's bound.
      expect(j.spec?.template.spec?.terminationGracePeriodSeconds).toBe(
        20 + h.settings.graceMarginSeconds,
      );
    }
    expect(h.cluster.server.countRequests({ verb: 'create', resource: 'jobs' })).toBe(2);

    // A pass over a pool that did not change sends nothing to the API server.
    const before = h.backendRequests().length;
    for (let i = 0; i < 3; i++) await s.controller.reconcilePools();
    expect(h.backendRequests().slice(before)).toEqual([]);

    // Scale down while the slow shard runs: the idle worker's Job goes, the busy one stays.
    const deletesBefore = h.backendRequests().filter((r) => r.verb === 'delete').length;
    await scalePool(s.redis, s.keys, pool, 1);
    await s.controller.reconcilePools();
    const deletes = h
      .backendRequests()
      .filter((r) => r.verb === 'delete' && r.resource === 'jobs')
      .slice(deletesBefore);
    expect(deletes.map((r) => r.name)).toEqual([`pool-${idle?.workerId}`]);
    expect(poolJobs(h, pool).map(workerOf)).toEqual([busy.workerId]);
    // Passes while the idle worker drains neither count nor replace it.
    for (let i = 0; i < 3; i++) await s.controller.reconcilePools();
    expect(h.cluster.server.countRequests({ verb: 'create', resource: 'jobs' })).toBe(2);
    await eventually(
      'the idle worker to drain and leave, the busy one still on its shard',
      async () => {
        const ws = await readWorkers(s.redis, s.keys, pool);
        return (
          ws.length === 1 &&
          ws[0]?.workerId === busy.workerId &&
          ws[0].state === 'busy' &&
          running(poolPods(h, pool)).length === 1
        );
      },
      30_000,
    );

    const view = await waitForRun(h, s, runId);
    expect(view.phase, h.dump()).toBe('Succeeded');
    expect(view.stages[0]?.shards).toMatchObject({ total: 3, succeeded: 3, failed: 0 });
    // Every item once; every shard ran once, on its first attempt; the slow one on the
    // worker that was busy with it when the pool shrank.
    const out = outputIds(view.runDir);
    expect(out.sort()).toEqual([...items].sort());
    const completions = await s.redis.zrange(s.keys.poolCompletions(pool), '0', '-1');
    // A completion is `${taskId}:${attempt}:${serviceMs}`.
    expect(completions.map((c) => c.replace(/:\d+$/, '')).sort()).toEqual(
      [0, 1, 2].map((i) => `${shardTaskId(runId, 'gen', i)}:1`),
    );
    expect((await s.store.getTaskStatuses([slow]))[slow]).toMatchObject({
      phase: 'Succeeded',
      attempt: 1,
      unit: busy.workerId,
    });

    // The stage is over and the pin ended: the pool shrinks to its minimum (0); its
    // workers drain and go.
    await unpinPool(s.redis, s.keys, pool);
    await eventually(
      'no pool worker left',
      async () =>
        poolJobs(h, pool).length === 0 &&
        running(poolPods(h, pool)).length === 0 &&
        (await readWorkers(s.redis, s.keys, pool)).length === 0,
      30_000,
    );
    expect(h.cluster.server.countRequests({ verb: 'create', resource: 'jobs' })).toBe(2);
  });

  it('replaces a worker whose pod was killed; its shard is retried and appears once', async () => {
    const h = await start();
    const s = await h.system();
    const { spec, pool, items } = generateRun('kill', [ids('a', 40), ids('b', 40)], {
      ITEM_MS: 100,
    });
    const runId = await s.submit(spec);
    const victim = await eventually(
      'a busy worker',
      async () => (await readWorkers(s.redis, s.keys, pool)).find((w) => w.state === 'busy'),
      60_000,
    );
    const pod = poolPods(h, pool).find((p) => workerOf(p) === victim.workerId);
    h.cluster.kubelet.kill(pod?.metadata?.name ?? '');

    const view = await waitForRun(h, s, runId, 90_000);
    expect(view.phase, h.dump()).toBe('Succeeded');
    const out = outputIds(view.runDir);
    expect(out.sort()).toEqual([...items].sort());
    // The killed worker's failed Job was deleted and a new worker started in its place.
    expect(h.cluster.server.countRequests({ verb: 'create', resource: 'jobs' })).toBe(3);
    const deleted = h
      .backendRequests()
      .filter((r) => r.verb === 'delete' && r.resource === 'jobs')
      .map((r) => r.name);
    expect(deleted).toContain(`pool-${victim.workerId}`);
    await eventually(
      'no pool worker left, no stale worker record',
      async () =>
        running(poolPods(h, pool)).length === 0 &&
        (await readWorkers(s.redis, s.keys, pool)).length === 0,
      30_000,
    );
  });

  it('leaves its workers to the next controller, which adopts them instead of starting others', async () => {
    const h = await start();
    const first = await h.system();
    const { spec, pool, items } = generateRun('adopt', [ids('a', 30), ids('b', 30), ids('c', 5)], {
      ITEM_MS: 100,
    });
    const runId = await first.submit(spec);
    await eventually(
      'two busy workers',
      async () =>
        (await readWorkers(first.redis, first.keys, pool)).filter((w) => w.state === 'busy')
          .length === 2,
      60_000,
    );
    await h.kill(first);
    // A normal stop of a controller leaves the pool's Jobs and pods running.
    expect(poolJobs(h, pool)).toHaveLength(2);
    expect(running(poolPods(h, pool))).toHaveLength(2);

    const next = await h.system({ prefix: first.prefix });
    const view = await waitForRun(h, next, runId, 90_000);
    expect(view.phase, h.dump()).toBe('Succeeded');
    expect(outputIds(view.runDir).sort()).toEqual([...items].sort());
    // Adopted by label: no worker was started twice.
    expect(h.cluster.server.countRequests({ verb: 'create', resource: 'jobs' })).toBe(2);
    await eventually('no pool worker left', () => running(poolPods(h, pool)).length === 0, 30_000);
  });

  it('`stoker run --backend kubernetes --simulate` drains its pool workers before the simulated cluster stops', async () => {
    dir = mkdtempSync(join(tmpdir(), 'stoker-k8s-pools-cli-'));
    const items = ids('item', 30);
    writeFileSync(
      join(dir, 'items.jsonl'),
      `${items.map((id) => JSON.stringify({ id })).join('\n')}\n`,
    );
    const file = join(dir, 'gen.yaml');
    // minReplicas 2: both workers still run when the run ends (the pool keeps its
    // minimum), and only stopPools() can let them drain before the cluster (and its
    // kubelet's processes) go.
    writeFileSync(
      file,
      stringify({
        apiVersion: 'stoker/v1',
        kind: 'Pipeline',
        metadata: { name: 'cli' },
        spec: {
          stages: [
            {
              name: 'gen',
              kind: 'generate',
              input: { file: join(dir, 'items.jsonl'), shardSize: 5 },
              pool: { name: 'gen-cli', minReplicas: 2, maxReplicas: 2, replicas: 2 },
              terminationGracePeriod: '10s',
              payload: {
                command: [process.execPath, payloadFixture('server.mjs')],
                env: { STATE_DIR: dir, ITEM_MS: 10 },
              },
            },
          ],
        },
      }),
    );
    const redisUrl = await testRedisUrl();
    const prefix = uniquePrefix('k8s-pools-cli');
    const redis = new Redis(redisUrl);
    try {
      const res = await stoker(
        ['run', file, '--backend', 'kubernetes', '--simulate', '--json'],
        { home: join(dir, 'home'), redisUrl, prefix },
        { timeoutMs: 120_000 },
      );
      expect(res.exitCode, res.all).toBe(0);
      const view = JSON.parse(res.stdout) as { phase: string; runDir: string };
      expect(view.phase).toBe('Succeeded');
      expect(outputIds(view.runDir).sort()).toEqual(items);
      // A worker that drained removed its own record as it exited; a killed one would not.
      expect(await redis.hgetall(makeKeys(prefix).poolWorkers('gen-cli'))).toEqual({});
    } finally {
      const found = await redis.keys(`${prefix}*`);
      if (found.length) await redis.del(...found);
      redis.disconnect();
    }
  });
});
