/**
 * Redis out of reach for longer than the controller lock's TTL (the server paused with
 * SIGSTOP, as a stalled or partitioned Redis would be): `stoker up` stops its work, waits
 * for the lock, leads again and finishes the run; it never exits by itself. Then one
 * SIGTERM ends it (exit 0).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { makeKeys } from '../../common/keys.js';
import { readTaskProgress } from '../../common/progress.js';
import { RunStore } from '../../orchestrator/store.js';
import { stoker } from '../util/cli.js';
import { eventually, startTestRedis, type TestRedis } from '../util/redis-server.js';
import { shortLockEnv, submitTrainSim } from '../util/lock-loss.js';

let home: string;
let server: TestRedis;
let redis: Redis;
const keys = makeKeys('stoker:');

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), 'stoker-leader-loss-'));
  server = await startTestRedis();
  redis = new Redis(server.url, { maxRetriesPerRequest: null });
  redis.on('error', () => undefined);
});
afterAll(async () => {
  process.kill(server.pid, 'SIGCONT');
  redis.disconnect();
  await server.stop();
  rmSync(home, { recursive: true, force: true });
});

it('keeps running through a Redis pause longer than its lock, leads again and finishes the run', async () => {
  const env = shortLockEnv(home, server.url);
  const up = stoker(['up'], env, { timeoutMs: 170_000 });
  let exited = false;
  void up.then(() => (exited = true));
  const runId = await submitTrainSim(
    env,
    'paused',
    { STEPS: '300', STEP_MS: '30', CKPT_EVERY: '20' },
    '10s',
  );
  await eventually(
    'the run at step 30',
    async () => ((await readTaskProgress(redis, keys, `${runId}.train`)).step ?? 0) >= 30 || null,
    60_000,
  );

  // Redis stops answering for 2.5 times the lock's TTL.
  process.kill(server.pid, 'SIGSTOP');
  await new Promise((r) => setTimeout(r, 5000));
  process.kill(server.pid, 'SIGCONT');

  const store = new RunStore(redis, keys);
  const run = await eventually(
    'the run to finish',
    async () => {
      const r = await store.getRun(runId);
      return r && ['Succeeded', 'Failed', 'Cancelled'].includes(r.phase) ? r : null;
    },
    120_000,
  );
  expect(run.phase).toBe('Succeeded');
  expect(exited).toBe(false);
  up.kill('SIGTERM');
  const result = await up;
  expect(result.stderr).toContain('lost its lock');
  expect(result.stderr).toContain('leading again');
  expect(result.exitCode, result.all).toBe(0);
});
