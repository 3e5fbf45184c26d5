/**
 * Redis out of reach for longer than the controller lock's TTL (the server paused with
 * SIGSTOP, as a stalled or partitioned Redis would be): `stoker up` stops its work, waits
 * for the lock, leads again and finishes the run; it never exits by itself. Then one
 * SIGTERM ends it (exit 0).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { makeKeys } from '../../common/keys.js';
import { readTaskProgress } from '../../common/progress.js';
import { RunStore } from '../../orchestrator/store.js';
import { stoker } from '../util/cli.js';
import { eventually, startTestRedis, type TestRedis } from '../util/redis-server.js';
import { payloadFixture } from '../util/system.js';

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
  const env = {
    home,
    redisUrl: server.url,
    extra: {
      STOKER_LEADER_TTL_MS: '2000',
      STOKER_LOCK_DURATION_MS: '3000',
      STOKER_STALLED_INTERVAL_MS: '1000',
      STOKER_RESYNC_MS: '500',
      STOKER_HTTP_PORT: '0',
    },
  };
  const up = stoker(['up'], env, { timeoutMs: 170_000 });
  let exited = false;
  void up.then(() => (exited = true));
  const spec = join(home, 'long.yaml');
  writeFileSync(
    spec,
    [
      'apiVersion: stoker/v1',
      'kind: TrainingRun',
      'metadata: {name: paused}',
      'spec:',
      `  payload: {command: ["${process.execPath}", "${payloadFixture('train-sim.mjs')}"], env: {STEPS: "300", STEP_MS: "30", CKPT_EVERY: "20"}}`,
      '  terminationGracePeriod: 10s',
      '',
    ].join('\n'),
  );
  const submitted = await stoker(['submit', spec, '--json'], env);
  expect(submitted.exitCode, submitted.all).toBe(0);
  const runId = String((JSON.parse(submitted.stdout) as { id: string }).id);
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
