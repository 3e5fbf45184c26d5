/** `stoker serve --simulate`: the controller with the kubernetes backend, as a process. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { makeKeys } from '../../common/keys.js';
import { stoker } from '../util/cli.js';
import { eventually, testRedisUrl, uniquePrefix } from '../util/redis-server.js';
import { payloadFixture } from '../util/system.js';

let home: string;
let redisUrl: string;
let redis: Redis;
const prefix = uniquePrefix('serve');

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), 'stoker-serve-'));
  redisUrl = await testRedisUrl();
  redis = new Redis(redisUrl);
});
afterAll(async () => {
  const found = await redis.keys(`${prefix}*`);
  if (found.length) await redis.del(...found);
  redis.disconnect();
  rmSync(home, { recursive: true, force: true });
});

it('runs submitted work as Jobs on the simulated cluster and stops cleanly on Ctrl-C', async () => {
  const env = { home, redisUrl, prefix };
  const serve = stoker(['serve', '--simulate'], env, { timeoutMs: 120_000 });
  await eventually(
    'a controller to be alive',
    async () => (await redis.get(makeKeys(prefix).controllerAlive())) !== null,
    30_000,
  );
  const spec = join(home, 'k8s.yaml');
  writeFileSync(
    spec,
    [
      'apiVersion: stoker/v1',
      'kind: TrainingRun',
      'metadata: {name: served}',
      'spec:',
      `  payload: {command: ["${process.execPath}", "${payloadFixture('train-sim.mjs')}"], env: {STEPS: "5", STEP_MS: "5"}}`,
      '',
    ].join('\n'),
  );
  const sub = await stoker(['submit', spec, '--wait', '--json'], env);
  expect(sub.exitCode, sub.all).toBe(0);
  expect((JSON.parse(sub.stdout) as { phase: string }).phase).toBe('Succeeded');
  serve.kill('SIGINT');
  const res = await serve;
  expect(res.exitCode, res.all).toBe(0);
  expect(res.stderr).toContain('kubernetes, simulated');
});
