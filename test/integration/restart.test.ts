/**
 * `kill -9` of `stoker up` mid-run, then start it again: the run continues, re-attached
 * to the worker that kept running, with never two attempts of one task at once.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { makeKeys } from '../../common/keys.js';
import { readTaskProgress } from '../../common/progress.js';
import { RunStore } from '../../orchestrator/store.js';
import { stoker } from '../util/cli.js';
import { eventually, testRedisUrl, uniquePrefix } from '../util/redis-server.js';
import { payloadFixture } from '../util/system.js';

let home: string;
let redisUrl: string;
let redis: Redis;
const prefix = uniquePrefix('restart');
const keys = makeKeys(prefix);

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), 'stoker-restart-'));
  redisUrl = await testRedisUrl();
  redis = new Redis(redisUrl);
});
afterAll(async () => {
  const found = await redis.keys(`${prefix}*`);
  if (found.length) await redis.del(...found);
  redis.disconnect();
  rmSync(home, { recursive: true, force: true });
});

const fast = {
  STOKER_LEADER_TTL_MS: '2000',
  STOKER_LOCK_DURATION_MS: '3000',
  STOKER_STALLED_INTERVAL_MS: '1000',
  STOKER_RESYNC_MS: '500',
};

it('re-attaches to running work after the controller is killed with SIGKILL', async () => {
  const env = { home, redisUrl, prefix, extra: fast };
  const up1 = stoker(['up'], env, { timeoutMs: 120_000 });
  const spec = join(home, 'long.yaml');
  writeFileSync(
    spec,
    [
      'apiVersion: stoker/v1',
      'kind: TrainingRun',
      'metadata: {name: survivor}',
      'spec:',
      `  payload: {command: ["${process.execPath}", "${payloadFixture('train-sim.mjs')}"], env: {STEPS: "60", STEP_MS: "100", CKPT_EVERY: "10"}}`,
      '',
    ].join('\n'),
  );
  await eventually(
    'a controller to be alive',
    async () => (await redis.get(keys.controllerAlive())) !== null,
    30_000,
  );
  const sub = await stoker(['submit', spec, '--json'], env);
  expect(sub.exitCode, sub.all).toBe(0);
  const runId = (JSON.parse(sub.stdout) as { id: string }).id;
  const taskId = `${runId}.train`;
  await eventually(
    'progress past step 10',
    async () => ((await readTaskProgress(redis, keys, taskId)).step ?? 0) >= 10,
    60_000,
  );

  up1.kill('SIGKILL');
  await up1;
  const stepAtKill = (await readTaskProgress(redis, keys, taskId)).step ?? 0;
  // The worker keeps training while no controller runs.
  await eventually(
    'the orphaned worker to keep making progress',
    async () => ((await readTaskProgress(redis, keys, taskId)).step ?? 0) > stepAtKill + 3,
    30_000,
  );

  const up2 = stoker(['up'], env, { timeoutMs: 120_000 });
  const store = new RunStore(redis, keys);
  const run = await eventually(
    'the run to finish',
    async () => {
      const r = await store.getRun(runId);
      return r && ['Succeeded', 'Failed', 'Cancelled'].includes(r.phase) ? r : null;
    },
    90_000,
    200,
  );
  expect(run.phase).toBe('Succeeded');
  const task = (await store.getTaskStatuses([taskId]))[taskId];
  expect(task?.attempt).toBe(1);
  const outDir = join(run.runDir, 'stages', 'train');
  const starts = readFileSync(join(outDir, 'starts.jsonl'), 'utf8').trim().split('\n');
  expect(starts).toHaveLength(1);
  expect(existsSync(join(outDir, 'overlap'))).toBe(false);

  // Ctrl-C drains and stops cleanly.
  up2.kill('SIGINT');
  const res = await up2;
  expect(res.exitCode, res.all).toBe(0);
  expect(await redis.get(keys.controllerLock())).toBeNull();
});
