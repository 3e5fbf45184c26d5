/**
 * Autoscaled pools on the local backend, end to end: real Redis (the suite's, on a free
 * port), a real controller, real `stoker worker --pool` processes and a server-mode
 * payload. A pool of 0 to 4 grows from 0 with its backlog, drains it, and goes back to 0
 * after its idle timeout, every item once; a pin holds it and ends; a spec that declares a
 * live pool otherwise is refused at submit unless it takes the pool over.
 *
 * Every wait is for a condition (the pool's record, its workers, the run's phase), never
 * for a time.
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { UsageError } from '../../common/errors.js';
import { PoolConflictError } from '../../orchestrator/pool-settings.js';
import { readPool, readWorkers, scalePool } from '../../orchestrator/pools.js';
import { stoker } from '../util/cli.js';
import { eventually } from '../util/redis-server.js';
import { autoscaledGenerateSpec } from '../util/autoscale-spec.js';
import { startTestSystem, type TestSystem } from '../util/system.js';

let sys: TestSystem | undefined;
afterEach(async () => {
  await sys?.cleanup();
  sys = undefined;
});

const ITEMS = 400;

/** A Pipeline with one generate stage of `items` one-item shards over pool `pool`. */
function autoscaledRun(
  name: string,
  o: {
    items?: number;
    pool?: Record<string, unknown>;
    autoscale?: Record<string, unknown>;
    env?: Record<string, string>;
  },
) {
  const dir = join(sys!.home, name);
  mkdirSync(dir, { recursive: true });
  const items = o.items ?? ITEMS;
  const lines = Array.from({ length: items }, (_, i) =>
    JSON.stringify({ id: `item-${String(i).padStart(4, '0')}` }),
  );
  writeFileSync(join(dir, 'items.jsonl'), `${lines.join('\n')}\n`);
  const pool = `auto-${name}`;
  const spec = autoscaledGenerateSpec({
    name,
    pool,
    dir,
    stateDir: dir,
    ...(o.autoscale ? { autoscale: o.autoscale } : {}),
    ...(o.pool ? { poolExtra: o.pool } : {}),
    ...(o.env ? { env: o.env } : {}),
  });
  return { spec, dir, pool };
}

/** Every item id in the stage's shard outputs, as a consumer reads them. */
function outputIds(runDir: string): string[] {
  const dir = join(runDir, 'stages', 'gen', 'shards');
  return readdirSync(dir).flatMap((f) =>
    readFileSync(join(dir, f), 'utf8')
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((l) => (JSON.parse(l) as { id: string }).id),
  );
}

describe('an autoscaled pool on the local backend', () => {
  it('grows from 0 with 400 shards, drains them, and shrinks back to 0 after its idle timeout; every item once', async () => {
    sys = await startTestSystem();
    const s = sys;
    const { spec, pool } = autoscaledRun('grow', {});
    const runId = await s.submit(spec);

    // The pool is registered at its minimum, 0, then asked for workers by its backlog.
    const asked = await eventually(
      'the autoscaler to ask for workers',
      async () => {
        const p = await readPool(s.redis, s.keys, pool);
        return p?.decision && p.desired > 0 ? p : null;
      },
      30_000,
    );
    expect(asked.decision?.inputs.backlog).toBeGreaterThan(0);
    expect(asked.autoscale).not.toBeNull();
    const grown = await eventually(
      'at least two workers up',
      async () => (await readWorkers(s.redis, s.keys, pool)).length >= 2,
      60_000,
    );
    expect(grown).toBe(true);
    // Each worker records when it started and when its payload server first was ready:
    // the pool's start-to-ready time, which the scale-up counts on (autoscale/startup.ts).
    const loaded = await eventually(
      'a worker whose payload server has loaded',
      async () =>
        (await readWorkers(s.redis, s.keys, pool)).find((w) => w.startedAt && w.loadedAt) ?? null,
      60_000,
    );
    expect(Date.parse(loaded.loadedAt as string)).toBeGreaterThanOrEqual(
      Date.parse(loaded.startedAt as string),
    );

    const view = await s.waitForPhase(runId, ['Succeeded', 'Failed'], 120_000);
    expect(view.phase, view.message ?? '').toBe('Succeeded');
    expect(view.stages[0]?.shards).toMatchObject({
      total: ITEMS,
      succeeded: ITEMS,
      failed: 0,
      items: ITEMS,
    });

    // Back to 0 once the queue has been empty for the idle timeout; the workers leave.
    const idle = await eventually(
      'the pool to go back to 0 workers',
      async () => {
        const p = await readPool(s.redis, s.keys, pool);
        if (p?.desired !== 0 || p.decision?.reason !== 'IdleTimeout') return null;
        const workers = await readWorkers(s.redis, s.keys, pool);
        const procs = await s.redis.hlen(s.keys.poolProcs(pool));
        return workers.length === 0 && procs === 0 ? p : null;
      },
      60_000,
      100,
    );
    expect(idle.decision?.message).toMatch(/past idleTimeout 2s: minReplicas 0/);
    // The service time was measured from shard durations; the start-to-ready time from the
    // workers, and kept once none is up.
    expect(idle.memory?.service.samples).toBeGreaterThan(0);
    expect(idle.memory?.startupSeconds).toBeGreaterThan(0);
    expect(idle.decision?.inputs.startupSource).toBe('measured');

    // Every item exactly once; every shard once, on its first attempt: none lost, none
    // run twice.
    const ids = outputIds(view.runDir);
    expect(ids).toHaveLength(ITEMS);
    expect(new Set(ids).size).toBe(ITEMS);
    const completions = await s.redis.zrange(s.keys.poolCompletions(pool), '0', '-1');
    expect(completions).toHaveLength(ITEMS);
    expect(completions.every((c) => /:1:\d+$/.test(c))).toBe(true);
  });

  it('holds a pin over the autoscaler, draining busy workers only after their shard, until it is removed', async () => {
    sys = await startTestSystem();
    const s = sys;
    // Shards wait for a gate file: the backlog stays, and every worker holds a shard.
    const dir = join(s.home, 'pin-gate');
    mkdirSync(dir, { recursive: true });
    const gate = join(dir, 'open');
    const { spec, pool } = autoscaledRun('pin', {
      items: 20,
      autoscale: { target: { shardsPerWorker: 5 } },
      env: { GATE_ON: `shard-:${gate}` },
    });
    const runId = await s.submit(spec);
    await eventually(
      'the autoscaler to ask for 4 workers, all busy',
      async () => {
        const p = await readPool(s.redis, s.keys, pool);
        const busy = (await readWorkers(s.redis, s.keys, pool)).filter((w) => w.state === 'busy');
        return p?.desired === 4 && p.decision?.reason === 'ValidBacklog' && busy.length === 4;
      },
      60_000,
    );
    await expect(scalePool(s.redis, s.keys, pool, 5)).rejects.toThrow(UsageError);
    // Through the real CLI: a pin for an hour.
    const cli = { home: s.home, redisUrl: s.redisUrl, prefix: s.prefix };
    const bad = await stoker(['scale', pool, '--replicas', '1', '--for', 'soon'], cli);
    expect(bad.exitCode, bad.all).toBe(2);
    expect(bad.stderr).toMatch(/--for soon: "soon" is not a duration/);
    const set = await stoker(['scale', pool, '--replicas', '1', '--for', '1h'], cli);
    expect(set.exitCode, set.all).toBe(0);
    expect(set.stdout).toMatch(new RegExp(`pool ${pool}: pinned at 1 until \\d{4}-`));
    const pinned = await eventually('the pin to hold the pool at 1', async () => {
      const p = await readPool(s.redis, s.keys, pool);
      return p?.desired === 1 && p.decision?.reason === 'Pinned' ? p : null;
    });
    expect(pinned.pin).toMatchObject({ replicas: 1, by: expect.stringMatching(/^cli:/) });
    expect(pinned.decision?.message).toMatch(/pinned to 1 by stoker scale until .*asks for 4/);
    const shown = await stoker(['pools'], cli);
    expect(shown.exitCode, shown.all).toBe(0);
    expect(shown.stdout).toMatch(/SCALING\s+REASON/);
    // An hour from now, as a duration: 59m59s down to 59m00s, or 1h00m at the very start.
    expect(shown.stdout).toMatch(
      /pinned 1 until \d\d:\d\d:\d\dZ \(in (59m\d*s?|60m\d*s?|1h00m)\)\s+Pinned/,
    );
    // Three are asked to drain; busy with a gated shard, they stay until it is done.
    const draining = async () =>
      Object.values(await s.redis.hgetall(s.keys.poolProcs(pool))).filter(
        (v) => (JSON.parse(v) as { draining?: boolean }).draining,
      ).length;
    await eventually('three workers draining', async () => (await draining()) === 3, 60_000);
    const auto = await stoker(['scale', pool, '--auto'], cli);
    expect(auto.stdout).toMatch(`pool ${pool}: automatic again (bounds 0-4)`);
    await eventually(
      'the autoscaler to decide again',
      async () => {
        const p = await readPool(s.redis, s.keys, pool);
        return p?.pin === null && p.desired === 4 && p.decision?.reason !== 'Pinned';
      },
      60_000,
    );
    writeFileSync(gate, '');
    const view = await s.waitForPhase(runId, ['Succeeded', 'Failed'], 60_000);
    expect(view.phase, view.message ?? '').toBe('Succeeded');
    // The drained workers finished their shards: every one ran once, on its first attempt.
    expect(new Set(outputIds(view.runDir)).size).toBe(20);
    const completions = await s.redis.zrange(s.keys.poolCompletions(pool), '0', '-1');
    expect(completions).toHaveLength(20);
    expect(completions.every((c) => /:1:\d+$/.test(c))).toBe(true);
  });
});

describe('pools keep their settings across runs', () => {
  it('refuses a spec that declares a live pool otherwise, naming each difference, unless it takes the pool over', async () => {
    sys = await startTestSystem();
    const s = sys;
    const first = autoscaledRun('keep', { items: 4 });
    await s.waitForPhase(await s.submit(first.spec), ['Succeeded'], 60_000);
    await scalePool(s.redis, s.keys, first.pool, 2);

    // The same spec again: accepted, and the pin is kept.
    const again = await s.submit(first.spec);
    await s.waitForPhase(again, ['Succeeded'], 60_000);
    expect((await readPool(s.redis, s.keys, first.pool))?.pin?.replicas).toBe(2);

    // Other bounds and another target: refused, nothing written.
    const other = autoscaledRun('keep', {
      items: 4,
      pool: { maxReplicas: 3 },
      autoscale: { target: { shardsPerWorker: 2 } },
    });
    const runsBefore = await s.redis.zcard(s.keys.runIndex());
    const refused = await s.submit(other.spec).then(
      () => null,
      (err: unknown) => err,
    );
    expect(refused).toBeInstanceOf(PoolConflictError);
    const message = (refused as Error).message;
    expect(message).toMatch(/pool auto-keep \(stage gen\) is live with other settings/);
    expect(message).toMatch(/maxReplicas: 4 \(live\) vs 3 \(spec\)/);
    expect(message).toMatch(/autoscale\.target\.backlogSecondsPerWorker: 2 \(live\) vs none/);
    expect(message).toMatch(/autoscale\.target\.shardsPerWorker: none \(live\) vs 2 \(spec\)/);
    expect(message).toMatch(/--take-over-pools/);
    expect(await s.redis.zcard(s.keys.runIndex())).toBe(runsBefore);

    // Taken over: the stage's start gives the pool the spec's settings.
    const taken = await s.store.createRun(other.spec, { home: s.home, takeOverPools: true });
    await s.waitForPhase(taken.id, ['Succeeded'], 60_000);
    const p = await readPool(s.redis, s.keys, first.pool);
    expect(p).toMatchObject({ maxReplicas: 3, autoscale: { target: { shardsPerWorker: 2 } } });
    // The pin was within the new bounds: kept.
    expect(p?.pin?.replicas).toBe(2);
  });
});

describe('a GPU budget shared by autoscaled pools', () => {
  it('keeps two GPU pools within 2 GPUs together, each with a share, and both runs finish', async () => {
    sys = await startTestSystem({
      autoscale: { budget: { controller: 2, queues: {} }, unschedulableAfterSeconds: 120 },
    });
    const s = sys;
    const gpu = { resources: { gpus: 1 } };
    const a = autoscaledRun('budget-a', { items: 60, pool: gpu });
    const b = autoscaledRun('budget-b', { items: 60, pool: gpu });
    const runs = [await s.submit(a.spec), await s.submit(b.spec)];
    const seen = { a: 0, b: 0, sum: 0, cut: '' };
    const done = async () => {
      const [pa, pb] = [
        await readPool(s.redis, s.keys, a.pool),
        await readPool(s.redis, s.keys, b.pool),
      ];
      // Both sizes in one round trip: a pass writes them one after the other (the
      // shrinking pool first), and two reads could straddle a pass.
      const both = await s.redis
        .multi()
        .hget(s.keys.pool(a.pool), 'desired')
        .hget(s.keys.pool(b.pool), 'desired')
        .exec();
      const sum = (both ?? []).reduce((n, [, v]) => n + Number(v ?? 0), 0);
      seen.sum = Math.max(seen.sum, sum);
      seen.a = Math.max(seen.a, pa?.desired ?? 0);
      seen.b = Math.max(seen.b, pb?.desired ?? 0);
      for (const d of [pa?.decision, pb?.decision])
        if (d?.reason.startsWith('GpuBudget')) seen.cut = d.message;
      const views = await Promise.all(runs.map((r) => s.view(r)));
      return views.every((v) => v.phase === 'Succeeded' || v.phase === 'Failed') ? views : null;
    };
    const views = await eventually('both runs to end', done, 180_000, 50);
    for (const v of views) expect(v.phase, v.message ?? '').toBe('Succeeded');
    // Never more than the budget asked of the backend, whatever the backlogs asked for
    // (each alone would have had 3); each pool had its share; the cut said why.
    expect(seen.sum).toBeLessThanOrEqual(2);
    expect(seen.a).toBeGreaterThanOrEqual(1);
    expect(seen.b).toBeGreaterThanOrEqual(1);
    expect(seen.cut).toMatch(/GPU budget: \d+ of 2 GPUs/);
  });
});
