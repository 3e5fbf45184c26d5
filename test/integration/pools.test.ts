/**
 * Pulled execution on the local backend: sharded generate stages over pools of warm
 * worker processes (`stoker worker --pool`), a resident server payload, faults.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { stokerBin } from '../../common/paths.js';
import { afterEach, describe, expect, it } from 'vitest';
import { UsageError } from '../../common/errors.js';
import { shardTaskId } from '../../common/keys.js';
import { readTaskEvents, readTaskProgress } from '../../common/progress.js';
import { buildPoolView, readWorkers, scalePool } from '../../orchestrator/pools.js';
import { eventually } from '../util/redis-server.js';
import { payloadFixture, specFrom, startTestSystem, type TestSystem } from '../util/system.js';

let sys: TestSystem | undefined;
afterEach(async () => {
  await sys?.cleanup();
  sys = undefined;
});

interface GenOpts {
  items?: number;
  shardSize?: number;
  env?: Record<string, string | number>;
  pool?: Record<string, unknown>;
  maxFailedShards?: number;
  attempts?: number;
  badLineAt?: number;
  stallTimeout?: string;
}

/** Write an input file and a Pipeline with one generate stage over pool `gen`. */
function generateRun(name: string, o: GenOpts = {}) {
  const dir = join(sys!.home, name);
  mkdirSync(dir, { recursive: true });
  const items = o.items ?? 40;
  const lines = Array.from({ length: items }, (_, i) =>
    JSON.stringify({ id: `item-${String(i).padStart(4, '0')}` }),
  );
  if (o.badLineAt !== undefined) lines.splice(o.badLineAt, 0, '{not json');
  writeFileSync(join(dir, 'items.jsonl'), `${lines.join('\n')}\n`);
  const spec = specFrom({
    apiVersion: 'stoker/v1',
    kind: 'Pipeline',
    metadata: { name },
    spec: {
      stages: [
        {
          name: 'gen',
          kind: 'generate',
          input: { file: join(dir, 'items.jsonl'), shardSize: o.shardSize ?? 5 },
          pool: { name: `gen-${name}`, maxReplicas: 4, replicas: 2, ...(o.pool ?? {}) },
          failurePolicy: { maxFailedShards: o.maxFailedShards ?? 0 },
          retry: { attempts: o.attempts ?? 3, backoff: { type: 'fixed', delay: '100ms' } },
          terminationGracePeriod: '5s',
          ...(o.stallTimeout ? { stallTimeout: o.stallTimeout } : {}),
          payload: {
            command: [process.execPath, payloadFixture('server.mjs')],
            env: { STATE_DIR: dir, ...(o.env ?? {}) },
          },
        },
      ],
    },
  });
  return { spec, dir, pool: `gen-${name}` };
}

/**
 * The stage's shards folder as a consumer reads it: every file's lines (a partial file
 * there would be counted), and whether `.partial/` is still there.
 */
function outputs(runDir: string): {
  ids: string[];
  workers: Set<number>;
  files: string[];
  partialLeft: boolean;
} {
  const dir = join(runDir, 'stages', 'gen', 'shards');
  const files = readdirSync(dir);
  const rows = files
    .flatMap((f) => readFileSync(join(dir, f), 'utf8').trim().split('\n').filter(Boolean))
    .map((l) => JSON.parse(l) as { id: string; worker: number });
  const partialLeft = existsSync(join(runDir, 'stages', 'gen', '.partial'));
  return {
    ids: rows.map((r) => r.id),
    workers: new Set(rows.map((r) => r.worker)),
    files,
    partialLeft,
  };
}

/** A completion's `${taskId}:${attempt}`, without the shard's duration that follows. */
const taskAttempt = (member: string) => member.replace(/:\d+$/, '');

const loads = (dir: string) =>
  readFileSync(join(dir, 'loads.jsonl'), 'utf8').trim().split('\n').length;

describe('a generate stage over a pool', () => {
  it('runs every shard once on warm workers that load their payload once', async () => {
    sys = await startTestSystem();
    const { spec, dir, pool } = generateRun('basic', {
      items: 60,
      shardSize: 5,
      env: { LOAD_MS: 300, ITEM_MS: 5 },
    });
    const runId = await sys.submit(spec);
    const view = await sys.waitForPhase(runId, ['Succeeded', 'Failed'], 90_000);
    expect(view.phase, view.message ?? '').toBe('Succeeded');
    const stage = view.stages[0];
    expect(stage?.shards).toMatchObject({ total: 12, succeeded: 12, failed: 0, items: 60, pool });
    const out = outputs(view.runDir);
    expect(out.ids.sort()).toEqual(
      Array.from({ length: 60 }, (_, i) => `item-${String(i).padStart(4, '0')}`),
    );
    expect(out.files.filter((f) => !/^shard-\d{5}\.jsonl$/.test(f))).toEqual([]);
    expect(out.partialLeft).toBe(false);
    // 12 shards, 2 workers: the server was loaded once per worker, not once per shard
    expect(loads(dir)).toBe(2);
    const manifest = JSON.parse(readFileSync(stage?.outputs.shards ?? '', 'utf8')) as {
      shards: Array<{ path: string }>;
    };
    expect(manifest.shards).toHaveLength(12);
    expect(manifest.shards.every((s) => existsSync(s.path))).toBe(true);
    // Each shard's records: its status from start to end, its attempt and progress
    // events, its progress, and one completion on its first attempt.
    const ids = Array.from({ length: 12 }, (_, i) => shardTaskId(runId, 'gen', i));
    const statuses = await sys.store.getTaskStatuses(ids);
    for (const id of ids) {
      const st = statuses[id];
      expect(st).toMatchObject({ phase: 'Succeeded', attempt: 1, reason: 'Completed' });
      expect(st?.unit).toMatch(new RegExp(`^${pool}`));
      expect(Date.parse(st?.startedAt ?? '')).toBeLessThanOrEqual(Date.parse(st?.finishedAt ?? ''));
      const events = await readTaskEvents(sys.redis, sys.keys, id);
      expect(events[0]).toMatchObject({ type: 'attempt', data: { attempt: 1 } });
      expect(events.at(-1)).toMatchObject({ type: 'progress', data: { step: 5, totalSteps: 5 } });
      expect(await readTaskProgress(sys.redis, sys.keys, id)).toMatchObject({
        attempt: 1,
        step: 5,
      });
    }
    const completions = await sys.redis.zrange(sys.keys.poolCompletions(pool), '0', '-1');
    expect(completions.map(taskAttempt).sort()).toEqual(ids.map((id) => `${id}:1`));
  });

  it('cancels a run mid-shard: the running shard stops, the queued ones never start, nothing is retried', async () => {
    sys = await startTestSystem();
    const { spec, pool } = generateRun('cancel', {
      items: 20,
      shardSize: 5,
      pool: { replicas: 1, maxReplicas: 1 },
      env: { HANG_ON: 'shard-00001' },
    });
    const runId = await sys.submit(spec);
    const hung = shardTaskId(runId, 'gen', 1);
    await eventually(
      'the second shard to hang',
      async () => (await sys!.store.getTaskStatuses([hung]))[hung]?.phase === 'Running',
      60_000,
    );
    await sys.store.requestCancel(runId);
    const view = await sys.waitForPhase(runId, ['Succeeded', 'Failed', 'Cancelled'], 60_000);
    expect(view.phase).toBe('Cancelled');
    const outcomes = await eventually(
      'an outcome for every shard',
      async () => {
        const o = await sys!.store.shardOutcomes(runId, 'gen');
        return o.length === 4 ? o : null;
      },
      30_000,
    );
    expect(outcomes.map((o) => [o.index, o.phase, o.reason])).toEqual([
      [0, 'Succeeded', 'Completed'],
      [1, 'Cancelled', 'CancelRequested'],
      [2, 'Cancelled', 'CancelRequested'],
      [3, 'Cancelled', 'CancelRequested'],
    ]);
    expect(outcomes[1]?.message).toBe('cancelled while running');
    expect((await sys.store.getTaskStatuses([hung]))[hung]).toMatchObject({
      phase: 'Cancelled',
      attempt: 1,
    });
    expect(outputs(view.runDir).files.filter((f) => !/^shard-\d{5}\.jsonl$/.test(f))).toEqual([]);
    // The worker let go of the shard (it may also have left: the pool is no longer used).
    await eventually(
      'no busy worker',
      async () => (await readWorkers(sys!.redis, sys!.keys, pool)).every((w) => w.state !== 'busy'),
      30_000,
    );
  });

  it('holds the next shard while shards are short, and gives it back, unspent, when the running one turns long', async () => {
    sys = await startTestSystem();
    // One worker; shard 0 is quick (so the worker takes one more in hand), shard 1 takes
    // 6 s (longer than a job is held), shard 2 is quick.
    const { spec, pool } = generateRun('hand', {
      items: 15,
      shardSize: 5,
      pool: { replicas: 1, maxReplicas: 1 },
      env: { SLOW_ON: 'shard-00001:6000' },
    });
    const runId = await sys.submit(spec);
    const [first, slow, held] = [0, 1, 2].map((i) => shardTaskId(runId, 'gen', i));
    // While the slow shard runs, the shard in hand went back to the queue: Pending again.
    await eventually(
      'the shard in hand back in the queue while the slow one runs',
      async () => {
        const st = await sys!.store.getTaskStatuses([slow!, held!]);
        return st[slow!]?.phase === 'Running' && st[held!]?.reason === 'Requeued'
          ? st[held!]
          : null;
      },
      60_000,
    ).then((st) => expect(st).toMatchObject({ phase: 'Pending', startedAt: null, attempt: 1 }));
    const workers = await readWorkers(sys.redis, sys.keys, pool);
    expect(workers.map((w) => [w.state, w.shard])).toEqual([['busy', slow]]);

    const view = await sys.waitForPhase(runId, ['Succeeded', 'Failed', 'Cancelled'], 60_000);
    expect(view.phase).toBe('Succeeded');
    // Every shard once, on its first attempt: giving the shard back spent nothing.
    const completions = await sys.redis.zrange(sys.keys.poolCompletions(pool), '0', '-1');
    expect(completions.map(taskAttempt).sort()).toEqual([first, slow, held].map((id) => `${id}:1`));
    const statuses = await sys.store.getTaskStatuses([first!, slow!, held!]);
    for (const st of Object.values(statuses)) {
      expect(st).toMatchObject({ phase: 'Succeeded', attempt: 1 });
    }
    const out = outputs(view.runDir);
    expect(out.ids).toHaveLength(15);
    expect(new Set(out.ids).size).toBe(15);
    expect(out.files.filter((f) => !/^shard-\d{5}\.jsonl$/.test(f))).toEqual([]);
    expect(out.partialLeft).toBe(false);
  });

  it('retries the shard of a pool worker killed with SIGKILL; its output appears exactly once', async () => {
    sys = await startTestSystem();
    const { spec, dir, pool } = generateRun('kill9', {
      items: 30,
      shardSize: 5,
      pool: { replicas: 1, maxReplicas: 1 },
      env: { ITEM_MS: 150 },
    });
    const runId = await sys.submit(spec);
    // Busy, with its server loaded: a worker killed before it spawned its server would
    // leave a single load behind.
    const busy = await eventually(
      'a busy worker with its server loaded',
      async () =>
        existsSync(join(dir, 'loads.jsonl'))
          ? (await readWorkers(sys!.redis, sys!.keys, pool)).find((w) => w.state === 'busy')
          : undefined,
      60_000,
    );
    const held = busy.shard;
    process.kill(busy.pid, 'SIGKILL');
    const view = await sys.waitForPhase(runId, ['Succeeded', 'Failed'], 120_000);
    expect(view.phase).toBe('Succeeded');
    // The shard the killed worker held came back (BullMQ: stalled) as a new attempt.
    expect(held).not.toBeNull();
    const outcome = await sys.redis.hget(sys.keys.stageShards(runId, 'gen'), held as string);
    expect(JSON.parse(outcome ?? '{}')).toMatchObject({ phase: 'Succeeded', attempt: 2 });
    // Its status says what became of the first attempt.
    const heldTask = await sys.store.getTask(held as string);
    expect(heldTask?.status.history.map((h) => [h.attempt, h.reason])).toEqual([[1, 'WorkerLost']]);
    const out = outputs(view.runDir);
    expect(out.ids).toHaveLength(30);
    expect(new Set(out.ids).size).toBe(30);
    expect(out.files.filter((f) => !/^shard-\d{5}\.jsonl$/.test(f))).toEqual([]);
    expect(out.partialLeft).toBe(false);
    expect(loads(dir)).toBeGreaterThanOrEqual(2); // a new worker took over
  });

  it('fails the shard of a crashed server, restarts the server, and the next shards run', async () => {
    sys = await startTestSystem();
    const { spec, dir } = generateRun('crash', {
      items: 20,
      shardSize: 5,
      pool: { replicas: 1 },
      env: { CRASH_ON: 'shard-00001' },
    });
    const runId = await sys.submit(spec);
    const view = await sys.waitForPhase(runId, ['Succeeded', 'Failed'], 90_000);
    expect(view.phase).toBe('Succeeded');
    expect(outputs(view.runDir).ids).toHaveLength(20);
    expect(loads(dir)).toBe(2); // restarted once
    const task = await sys.store.getTask(`${runId}.gen.s00001`);
    expect(task?.status.attempt).toBe(2);
    // The success did not erase why the first attempt failed.
    expect(task?.status.history).toHaveLength(1);
    expect(task?.status.history[0]).toMatchObject({ attempt: 1 });
    expect(task?.status.history[0]?.reason).not.toBe('');
    const attempts = await sys.redis.hget(
      sys.keys.stageShards(runId, 'gen'),
      `${runId}.gen.s00001`,
    );
    expect(JSON.parse(attempts ?? '{}')).toMatchObject({ phase: 'Succeeded', attempt: 2 });
  });

  it('fails a shard that makes no progress for its stallTimeout, restarts the server, and retries it', async () => {
    sys = await startTestSystem();
    const { spec, dir } = generateRun('stall', {
      items: 15,
      shardSize: 5,
      pool: { replicas: 1 },
      stallTimeout: '2s',
      env: { HANG_ONCE_ON: 'shard-00001' },
    });
    const runId = await sys.submit(spec);
    const view = await sys.waitForPhase(runId, ['Succeeded', 'Failed'], 90_000);
    expect(view.phase).toBe('Succeeded');
    const ids = outputs(view.runDir).ids;
    expect(ids).toHaveLength(15);
    expect(new Set(ids).size).toBe(15);
    expect(loads(dir)).toBe(2); // the hung server was killed, a new one started
    const task = await sys.store.getTask(`${runId}.gen.s00001`);
    expect(task?.status.attempt).toBe(2);
    // The first attempt was given up after the stall timeout (without it, the shard
    // would wait forever and the run never finish).
    const starts = (await readTaskEvents(sys.redis, sys.keys, `${runId}.gen.s00001`))
      .filter((e) => e.type === 'attempt')
      .map((e) => Date.parse(String(e.at)));
    expect(starts).toHaveLength(2);
    expect((starts[1] as number) - (starts[0] as number)).toBeGreaterThanOrEqual(1900);
  });

  it('treats a malformed response as a failed attempt and restarts the server', async () => {
    sys = await startTestSystem();
    const { spec, dir } = generateRun('malformed', {
      items: 15,
      shardSize: 5,
      pool: { replicas: 1 },
      env: { MALFORMED_ON: 'shard-00000' },
    });
    const runId = await sys.submit(spec);
    const view = await sys.waitForPhase(runId, ['Succeeded', 'Failed'], 90_000);
    expect(view.phase).toBe('Succeeded');
    expect(outputs(view.runDir).ids).toHaveLength(15);
    expect(loads(dir)).toBe(2);
    const status = await sys.store.getTask(`${runId}.gen.s00000`);
    expect(status?.status.attempt).toBe(2);
    // The first attempt's failure is kept in the history after the retry succeeded.
    expect(status?.status.history).toHaveLength(1);
    expect(status?.status.history[0]?.attempt).toBe(1);
    expect(status?.status.history[0]?.message).toMatch(/malformed|invalid|response/i);
  });

  it('fails a shard with bad input without retrying it; the others finish within the failure policy', async () => {
    sys = await startTestSystem();
    const { spec } = generateRun('baddata', {
      items: 20,
      shardSize: 5,
      badLineAt: 7,
      maxFailedShards: 1,
    });
    const runId = await sys.submit(spec);
    const view = await sys.waitForPhase(runId, ['Succeeded', 'Failed'], 90_000);
    expect(view.phase).toBe('Succeeded');
    const sh = view.stages[0]?.shards;
    expect(sh).toMatchObject({ total: 5, succeeded: 4, failed: 1 });
    expect(sh?.failures[0]).toMatchObject({ index: 1, reason: 'BAD_DATA' });
    expect(sh?.failures[0]?.message).toContain('input line 3');
    expect((await sys.store.getTask(`${runId}.gen.s00001`))?.status.attempt).toBe(1);
  });

  it('fails the stage when more shards fail than its policy allows', async () => {
    sys = await startTestSystem();
    const { spec } = generateRun('policy', {
      items: 20,
      shardSize: 5,
      badLineAt: 7,
      maxFailedShards: 0,
    });
    const runId = await sys.submit(spec);
    const view = await sys.waitForPhase(runId, ['Succeeded', 'Failed'], 90_000);
    expect(view.phase).toBe('Failed');
    expect(view.stages[0]?.conditions.find((c) => c.type === 'Failed')?.reason).toBe(
      'TooManyShardsFailed',
    );
    // A job retried from outside once its stage ended (Bull Board's Retry) does not run:
    // its shard is not begun, and nothing of it changes.
    const taskId = shardTaskId(runId, 'gen', 1);
    const before = await sys.store.getTask(taskId);
    const begin = await sys.store.beginShard({
      runId,
      stage: 'gen',
      taskId,
      status: { ...before!.status, phase: 'Running', attempt: 9 },
      progress: { fields: {}, events: [], logs: [] },
      worker: {
        pool: 'gen-policy',
        workerId: 'outsider',
        state: { state: 'busy' } as unknown as Parameters<
          typeof sys.store.beginShard
        >[0]['worker']['state'],
      },
    });
    expect(begin).toEqual({ kind: 'stageEnded' });
    expect((await sys.store.getTask(taskId))?.status).toEqual(before!.status);
    expect(await sys.redis.hget(sys.keys.poolWorkers('gen-policy'), 'outsider')).toBeNull();
  });
});

describe('scaling a pool', () => {
  it("takes shards on a pool worker started by hand (docker-compose: a worker service) beside the backend's", async () => {
    sys = await startTestSystem();
    const { spec, pool } = generateRun('external', {
      items: 40,
      shardSize: 2,
      env: { ITEM_MS: 100 },
      pool: { replicas: 1, maxReplicas: 2 },
    });
    // No --worker-id: the default names the host as well as the pid (containers: pid 1).
    const external = spawn(process.execPath, [stokerBin(), 'worker', '--pool', pool], {
      env: {
        ...process.env,
        STOKER_REDIS_URL: sys.redisUrl,
        STOKER_PREFIX: sys.prefix,
        STOKER_HOME: sys.home,
      },
      stdio: 'ignore',
    });
    const exited = new Promise<number | null>((r) => external.once('exit', (code) => r(code)));
    const id = `${pool}-${hostname()}-${external.pid}`;
    await eventually('the external worker to wait for shards', async () =>
      (await readWorkers(sys!.redis, sys!.keys, pool)).some(
        (w) => w.workerId === id && w.state === 'idle',
      ),
    );
    const runId = await sys.submit(spec);
    const view = await sys.waitForPhase(runId, ['Succeeded', 'Failed'], 90_000);
    expect(view.phase, view.message ?? '').toBe('Succeeded');
    const out = outputs(view.runDir);
    expect(out.ids).toHaveLength(40);
    expect(new Set(out.ids).size).toBe(40);
    // Both the backend's worker and the external one ran shards, each with its server.
    expect(out.workers.size).toBe(2);
    const statuses = await sys.store.getTaskStatuses(
      Array.from({ length: 20 }, (_, i) => shardTaskId(runId, 'gen', i)),
    );
    expect(Object.values(statuses).some((st) => st?.unit === id)).toBe(true);
    // SIGTERM drains it: exit 0.
    external.kill('SIGTERM');
    expect(await exited).toBe(0);
  });

  it('refuses an unknown pool or replicas beyond its bounds, changing nothing', async () => {
    sys = await startTestSystem();
    await expect(scalePool(sys.redis, sys.keys, 'nope', 1)).rejects.toThrow(UsageError);
    const { spec, pool } = generateRun('bounds', {
      items: 5,
      shardSize: 5,
      pool: { minReplicas: 1, maxReplicas: 2, replicas: 1 },
    });
    await sys.waitForPhase(await sys.submit(spec), ['Succeeded']);
    await expect(scalePool(sys.redis, sys.keys, pool, 3)).rejects.toThrow(/1 to 2 replicas/);
    await expect(scalePool(sys.redis, sys.keys, pool, 0)).rejects.toThrow(/outside its bounds/);
    expect(await sys.redis.hget(sys.keys.pool(pool), 'desired')).toBe('1');
  });

  it('scales down under load without losing or repeating a shard', async () => {
    sys = await startTestSystem();
    const { spec, pool } = generateRun('down', {
      items: 120,
      shardSize: 4,
      pool: { replicas: 4, maxReplicas: 4 },
      env: { ITEM_MS: 100 },
    });
    const runId = await sys.submit(spec);
    await eventually(
      '4 busy workers',
      async () =>
        (await readWorkers(sys!.redis, sys!.keys, pool)).filter((w) => w.state === 'busy').length >=
        3,
      60_000,
    );
    await scalePool(sys.redis, sys.keys, pool, 1);
    await sys.controller.reconcileAll();
    await eventually(
      'three workers to drain and leave while shards still flow',
      async () => {
        const ws = await readWorkers(sys!.redis, sys!.keys, pool);
        return ws.length === 1 && (await sys!.view(runId)).phase === 'Running';
      },
      60_000,
    );
    const view = await sys.waitForPhase(runId, ['Succeeded', 'Failed'], 120_000);
    expect(view.phase).toBe('Succeeded');
    const out = outputs(view.runDir);
    expect(out.ids).toHaveLength(120);
    expect(new Set(out.ids).size).toBe(120);
    // every shard ran exactly once: one completion each, on its first attempt
    const completions = await sys.redis.zrange(sys.keys.poolCompletions(pool), '0', '-1');
    expect(completions).toHaveLength(30);
    expect(completions.every((c) => taskAttempt(c).endsWith(':1'))).toBe(true);
    // The pin holds after the stage, until `stoker scale --auto`.
    await sys.controller.reconcilePools();
    const pv = await buildPoolView(sys.redis, sys.keys, pool, async () => ({
      waiting: 0,
      prioritized: 0,
      delayed: 0,
      active: 0,
    }));
    expect(pv).toMatchObject({ desired: 1, pin: { replicas: 1, until: null } });
    expect(pv?.decision).toMatchObject({ reason: 'Pinned' });
  });
});
