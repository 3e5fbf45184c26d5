/**
 * Redis killed (SIGKILL, AOF on) under `stoker up` while a payload runs: the controller
 * loses its lock, its drain ends although no outcome can be recorded (bounded by the
 * payloads' grace period plus a margin), and it goes back to waiting for the lock while
 * Redis is still down. Once Redis is back on the same port with its AOF, it leads again,
 * the worker, its payload checkpointed, records the preemption then: the attempt is not
 * spent, the next resumes from the SIGTERM checkpoint's step, and the step count is exact;
 * `stoker up` never exits by itself, and one SIGTERM ends it with 0.
 *
 * Without the drain's bound, "waiting to lead again" never appears while Redis is down
 * (the BullMQ workers' close waits for Redis) and the first wait below fails.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { makeKeys } from '../../common/keys.js';
import { readTaskProgress } from '../../common/progress.js';
import { scratchArgs, startRedisServer, stopRedisServer } from '../../orchestrator/redis-server.js';
import { RunStore } from '../../orchestrator/store.js';
import { stoker } from '../util/cli.js';
import { eventually } from '../util/redis-server.js';
import { shortLockEnv, submitTrainSim } from '../util/lock-loss.js';

const STEPS = 200;
let home: string;
let dir: string;
let server: { child: ChildProcess; port: number; url: string };
let redis: Redis;
const keys = makeKeys('stoker:');

/** AOF with an fsync per write: what a SIGKILL leaves is everything acknowledged. */
const args = (port: number) => [
  ...scratchArgs(dir, { appendonly: true })(port),
  '--appendfsync',
  'always',
];

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), 'stoker-redis-killed-'));
  dir = mkdtempSync(join(tmpdir(), 'stoker-redis-killed-data-'));
  server = await startRedisServer({ args, label: 'test redis-server' });
  redis = new Redis(server.url, { maxRetriesPerRequest: null });
  redis.on('error', () => undefined);
});
afterAll(async () => {
  redis.disconnect();
  await stopRedisServer(server.child);
  rmSync(home, { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
});

it('drains within its bound while Redis is dead, waits for the lock, then leads again and resumes the run', async () => {
  const env = shortLockEnv(home, server.url);
  const up = stoker(['up'], env, { timeoutMs: 240_000 });
  let exited = false;
  void up.then(() => (exited = true));
  let stderr = '';
  up.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));

  const runId = await submitTrainSim(
    env,
    'redis-killed',
    { STEPS: String(STEPS), STEP_MS: '40', CKPT_EVERY: '10' },
    '2s',
  );
  const taskId = `${runId}.train`;
  await eventually(
    'the run past its first checkpoint',
    async () => ((await readTaskProgress(redis, keys, taskId)).step ?? 0) >= 25 || null,
    90_000,
  );

  // Redis dies; nothing it acknowledged is lost (AOF, fsync always).
  server.child.kill('SIGKILL');
  await new Promise((r) => server.child.once('exit', r));

  // While it is down: the lock is lost, the drain ends, and `stoker up` waits again.
  await eventually(
    'stoker up back to waiting for the lock while Redis is down',
    () => /waiting to lead again/.test(stderr) || null,
    120_000,
  ).catch((err: Error) => {
    throw new Error(`${err.message}\nstoker up wrote:\n${stderr}`);
  });
  expect(exited).toBe(false);
  // An outage is logged, not dumped: no unheard client errors.
  expect(stderr).not.toContain('Unhandled error event');
  expect(stderr).not.toMatch(/^Error: /m);

  // Redis back on its port with its data: the controller leads again and finishes the run.
  server = await startRedisServer({
    args,
    preferredPort: server.port,
    label: 'test redis-server (restart)',
  });
  expect(server.url).toBe(env.redisUrl);
  const store = new RunStore(redis, keys);
  const run = await eventually(
    'the run to finish',
    async () => {
      const r = await store.getRun(runId).catch(() => null);
      return r && ['Succeeded', 'Failed', 'Cancelled'].includes(r.phase) ? r : null;
    },
    180_000,
  );
  expect(run.phase, stderr).toBe('Succeeded');
  expect(stderr).toContain('leading again');
  expect(exited).toBe(false);

  // The worker, its payload stopped, waited for Redis to record the preemption: the attempt
  // was not spent, and the next one resumed from the SIGTERM checkpoint's step, not from 0.
  const task = await store.getTask(taskId);
  expect(task?.status.history?.map((h) => [h.attempt, h.reason])).toEqual([
    [1, 'PREEMPTED'],
    [2, 'SUCCESS'],
  ]);
  const outDir = join(run.runDir, 'stages', 'train');
  const sigtermStep = Number(readFileSync(join(outDir, 'sigterm-1'), 'utf8'));
  expect(sigtermStep).toBeGreaterThanOrEqual(25);
  const starts = readFileSync(join(outDir, 'starts.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { resumeFrom: string | null; step: number });
  expect(starts).toHaveLength(2);
  expect(starts[1]?.resumeFrom).toMatch(new RegExp(`ckpt-${sigtermStep}\\.json$`));
  expect(starts[1]?.step).toBe(sigtermStep);
  const final = JSON.parse(readFileSync(join(outDir, 'final.json'), 'utf8')) as { step: number };
  expect(final.step).toBe(STEPS);

  // process.kill, not up.kill: execa's kill follows up with SIGKILL after 5 s.
  process.kill(up.pid as number, 'SIGTERM');
  const result = await up;
  expect(result.exitCode, `${result.signal ?? ''} ${stderr}`).toBe(0);
}, 420_000);
