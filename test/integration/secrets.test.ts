/**
 * Secrets stay secret on the local backend (README, "Untrusted specs and payloads"): a
 * payload that reads its ancestors' /proc/PID/environ and cmdline (test/fixtures/payloads/
 * read-ancestors.mjs) finds neither the Redis password nor a secret of the controller's
 * environment, for a dispatched task and for a pool worker, while a `secretEnv` copy of
 * that secret still reaches it. The worker gets them on descriptor 3
 * (orchestrator/backends/local.ts, worker/secrets-fd.ts); a malformed descriptor is exit
 * 2 with a message, and a secret left in a worker's own environment gets a warning.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { makeKeys } from '../../common/keys.js';
import { stokerBin } from '../../common/paths.js';
import { connectRedis } from '../../common/redis.js';
import { deleteKeysWithPrefix } from '../../testing/redis-keys.js';
import { EXPOSED_WARNING } from '../../worker/secrets-fd.js';
import {
  expectNothingLeaked,
  poolProbeRun,
  readAncestors,
  type AncestorsReport,
} from '../util/ancestors.js';
import { eventually, startTestRedis, uniquePrefix, type TestRedis } from '../util/redis-server.js';
import { payloadFixture, specFrom, startTestSystem, type TestSystem } from '../util/system.js';

const password = `pw${randomBytes(12).toString('hex')}`;
/** In the controller's environment under a secret-looking name, copied by secretEnv. */
const token = `hf_${randomBytes(12).toString('hex')}`;
/** In the controller's environment under a name that looks harmless, outside the allowlist. */
const plain = `plain${randomBytes(12).toString('hex')}`;

let redis: TestRedis;
let sys: TestSystem | undefined;
beforeAll(async () => {
  redis = await startTestRedis({ password });
});
afterAll(async () => {
  await redis?.stop();
});
afterEach(async () => {
  await sys?.cleanup();
  sys = undefined;
});

async function startSystem(): Promise<TestSystem> {
  return startTestSystem({
    redisUrl: redis.url,
    workerEnv: {
      ...process.env,
      HF_TOKEN: token,
      PROBE_EXTRA_SETTING: plain,
      STOKER_LOCK_DURATION_MS: '4000',
      STOKER_STALLED_INTERVAL_MS: '1000',
    },
  });
}

const probePayload = (env: Record<string, string>) => ({
  command: [process.execPath, payloadFixture('read-ancestors.mjs')],
  env: { STOP_PID: String(process.pid), SECRET_VAR: 'HF_TOKEN', ...env },
  secretEnv: [{ name: 'HF_TOKEN', fromEnv: 'HF_TOKEN' }],
});

const expectClean = (report: AncestorsReport, prefix: string) =>
  expectNothingLeaked(report, { prefix, secrets: [password, token, plain], expected: token });

describe('the local backend hands workers their secrets on a descriptor', () => {
  it("a dispatched task's payload finds no secret in its ancestors' environ or cmdline", async () => {
    sys = await startSystem();
    const spec = specFrom({
      apiVersion: 'stoker/v1',
      kind: 'TrainingRun',
      metadata: { name: 'probe' },
      spec: { payload: probePayload({}) },
    });
    const runId = await sys.submit(spec);
    const view = await sys.waitForPhase(runId, ['Succeeded', 'Failed'], 60_000);
    expect(view.phase, view.message ?? '').toBe('Succeeded');
    const outputDir = join(view.runDir, 'stages', 'train');
    expectClean(readAncestors(join(outputDir, 'ancestors.json')), sys.prefix);
    // The worker had nothing to warn about: no secret in its own environment.
    const workerLog = readFileSync(
      join(view.runDir, 'logs', `${view.stages[0]?.tasks[0]?.id}.attempt-1.worker.log`),
      'utf8',
    );
    expect(workerLog).not.toContain('secret-looking');
  });

  it("a pool worker's payload finds no secret in its ancestors' environ or cmdline", async () => {
    sys = await startSystem();
    const { spec, probeOut } = poolProbeRun(join(sys.home, 'pool-probe'), probePayload);
    const runId = await sys.submit(spec);
    const view = await sys.waitForPhase(runId, ['Succeeded', 'Failed'], 90_000);
    expect(view.phase, view.message ?? '').toBe('Succeeded');
    expectClean(readAncestors(probeOut), sys.prefix);
  });
});

describe('stoker worker and STOKER_SECRETS_FD', () => {
  /** `stoker worker --pool NAME` with `env` only and `data` written to its descriptor 3. */
  function worker(env: Record<string, string>, data: string | null) {
    const child = spawn(
      process.execPath,
      [stokerBin(), 'worker', '--pool', 'fd-test', '--worker-id', 'fd-test-1'],
      {
        env: { PATH: process.env.PATH ?? '', ...env },
        stdio: ['ignore', 'pipe', 'pipe', data === null ? 'ignore' : 'pipe'],
      },
    );
    if (data !== null) (child.stdio[3] as Writable).end(data);
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => child.once('close', (code) => r(code)));
    return { child, exited, stderr: () => stderr };
  }

  it.each([
    [
      'a value that is not base64',
      'STOKER_REDIS_URL not*base64\nEND\n',
      /line 1: the value of STOKER_REDIS_URL is not base64/,
    ],
    [
      'a payload cut short (no END line)',
      'STOKER_REDIS_URL cmVkaXM6Ly8=\n',
      /no END line after 1 line/,
    ],
    ['nothing at all', '', /empty/],
    [
      'a name that is not a variable name',
      '1X YQ==\nEND\n',
      /line 1: the name is not a variable name/,
    ],
  ])('exits 2 naming what is wrong: %s', async (_name, data, message) => {
    const w = worker({ STOKER_SECRETS_FD: '3', STOKER_PREFIX: uniquePrefix('fd') }, data);
    expect(await w.exited).toBe(2);
    expect(w.stderr()).toMatch(/^stoker worker: STOKER_SECRETS_FD=3: /);
    expect(w.stderr()).toMatch(message);
    expect(w.stderr()).not.toMatch(/at .*\.ts:\d+/); // a message, not a stack
  });

  it('exits 2 when the descriptor is not open', async () => {
    const w = worker({ STOKER_SECRETS_FD: '7' }, null);
    expect(await w.exited).toBe(2);
    expect(w.stderr()).toContain('STOKER_SECRETS_FD=7: cannot read it: the descriptor is not open');
  });

  it('warns once when the Redis URL is in its own environment, saying how to avoid it', async () => {
    const prefix = uniquePrefix('fd');
    const w = worker({ STOKER_REDIS_URL: redis.url, STOKER_PREFIX: prefix }, null);
    await eventually('the warning', () => w.stderr().includes('secret-looking'), 30_000);
    // SIGTERM drains once the worker serves the pool (its handler is set by then).
    const client = await connectRedis(redis.url, { name: 'stoker-test-fd' });
    try {
      await eventually(
        'the worker to serve its pool',
        async () => (await client.hlen(makeKeys(prefix).poolWorkers('fd-test'))) > 0,
        30_000,
      );
    } finally {
      await deleteKeysWithPrefix(redis.url, prefix);
      client.disconnect();
    }
    w.child.kill('SIGTERM');
    expect(await w.exited).toBe(0);
    const warnings = w
      .stderr()
      .split('\n')
      .filter((l) => l.includes('secret-looking'));
    expect(warnings).toHaveLength(1);
    const line = JSON.parse(warnings[0] as string) as { msg: string; names: string[] };
    expect(line.msg).toBe(EXPOSED_WARNING);
    expect(line.msg).toContain('stoker-env-fd');
    expect(line.names).toEqual(['STOKER_REDIS_URL']);
    expect(w.stderr()).not.toContain(password);
  });
});
