/**
 * Secrets stay secret on the kubernetes backend, against the simulated cluster: each pod
 * runs [stoker-env-fd, stoker, worker, ...] (this checkout's launcher, as the images have
 * it on PATH) with STOKER_SECRET_ENV naming its secretKeyRef variables, so the worker's
 * /proc/PID/environ holds neither the Redis URL (password included) nor a secretEnv
 * secret. A payload that reads its ancestors' environ and cmdline
 * (test/fixtures/payloads/read-ancestors.mjs) finds none of them, on a dispatched task and
 * on a pool worker, and still gets its secretEnv value.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { payloadBinDir } from '../../common/paths.js';
import { expectNothingLeaked, poolProbeRun, readAncestors } from '../util/ancestors.js';
import { eventually, startTestRedis, type TestRedis } from '../util/redis-server.js';
import { payloadFixture, specFrom } from '../util/system.js';
import { NS, startK8sCluster, type K8sHarness, type K8sSystem } from './harness.js';

const password = `pw${randomBytes(12).toString('hex')}`;
const token = `hf_${randomBytes(12).toString('hex')}`;

let redis: TestRedis;
let k: K8sHarness | undefined;
let dir: string | undefined;
beforeAll(async () => {
  redis = await startTestRedis({ password });
});
afterAll(async () => {
  await redis?.stop();
});
afterEach(async () => {
  await k?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
  k = undefined;
  dir = undefined;
});

/** A controller on the password Redis; the payload Secret holds HF_TOKEN. */
async function start(): Promise<K8sSystem> {
  dir = mkdtempSync(join(tmpdir(), 'stoker-k8s-secrets-'));
  k = await startK8sCluster({ kubelet: { extraEnv: { STOKER_HOME: join(dir, 'home') } } });
  k.cluster.store.create('secrets', {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'stoker-payload-secrets', namespace: NS },
    stringData: { HF_TOKEN: token },
  });
  return k.system({ redisUrl: redis.url });
}

const probePayload = (env: Record<string, string>) => ({
  command: [process.execPath, payloadFixture('read-ancestors.mjs')],
  env: { STOP_PID: String(process.pid), SECRET_VAR: 'HF_TOKEN', ...env },
  secretEnv: [{ name: 'HF_TOKEN' }],
});

/** Every worker pod ran through the launcher, told to move the Secret-fed variables. */
function expectLaunched(pods: V1Pod[]): void {
  expect(pods.length).toBeGreaterThan(0);
  for (const pod of pods) {
    const c = pod.spec?.containers[0];
    expect(c?.command?.[0]).toBe(join(payloadBinDir(), 'stoker-env-fd'));
    expect(c?.env?.find((e) => e.name === 'STOKER_SECRET_ENV')?.value).toBe(
      'STOKER_REDIS_URL HF_TOKEN',
    );
  }
}

describe('worker pods start through stoker-env-fd', () => {
  it("a dispatched task's payload finds no secret in its ancestors' environ or cmdline", async () => {
    const s = await start();
    const spec = specFrom({
      apiVersion: 'stoker/v1',
      kind: 'TrainingRun',
      metadata: { name: 'probe' },
      spec: { payload: probePayload({}) },
    });
    const runId = await s.submit(spec);
    const view = await s.waitForPhase(runId, ['Succeeded', 'Failed'], 60_000);
    expect(view.phase, `${view.stages[0]?.tasks[0]?.message ?? ''}\n${k?.dump()}`).toBe(
      'Succeeded',
    );
    expectLaunched(k!.pods());
    expectNothingLeaked(readAncestors(join(view.runDir, 'stages', 'train', 'ancestors.json')), {
      prefix: s.prefix,
      secrets: [password, token],
      expected: token,
    });
  });

  it("a pool worker's payload finds no secret in its ancestors' environ or cmdline", async () => {
    const s = await start();
    const { spec, probeOut } = poolProbeRun(join(dir as string, 'pool'), probePayload);
    const runId = await s.submit(spec);
    // The pool's pods, seen while they exist: the pool shrinks back once the stage ends.
    const pods = await eventually('a pool worker pod', () => {
      const p = k!.pods();
      return p.length > 0 ? p : null;
    });
    const view = await s.waitForPhase(runId, ['Succeeded', 'Failed'], 90_000);
    expect(view.phase, `${view.message ?? ''}\n${k?.dump()}`).toBe('Succeeded');
    expectLaunched(pods);
    expectNothingLeaked(readAncestors(probeOut), {
      prefix: s.prefix,
      secrets: [password, token],
      expected: token,
    });
  });
});
