/**
 * What the lock-loss tests (leader-loss, redis-killed) share: `stoker up` with a short
 * lock, so that an outage of a few seconds outlasts it, and a train-sim run submitted to it.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { stoker, type CliEnv } from './cli.js';
import { payloadFixture } from './system.js';

/** A CLI environment whose controller loses its lock 2 s after Redis stops answering. */
export function shortLockEnv(home: string, redisUrl: string): CliEnv {
  return {
    home,
    redisUrl,
    extra: {
      STOKER_LEADER_TTL_MS: '2000',
      STOKER_LOCK_DURATION_MS: '3000',
      STOKER_STALLED_INTERVAL_MS: '1000',
      STOKER_RESYNC_MS: '500',
      STOKER_HTTP_PORT: '0',
    },
  };
}

/** Submit a TrainingRun of train-sim.mjs (its env: STEPS, STEP_MS, CKPT_EVERY); its run id. */
export async function submitTrainSim(
  env: CliEnv,
  name: string,
  payloadEnv: Record<string, string>,
  grace: string,
): Promise<string> {
  const spec = join(env.home, `${name}.yaml`);
  writeFileSync(
    spec,
    [
      'apiVersion: stoker/v1',
      'kind: TrainingRun',
      `metadata: {name: ${name}}`,
      'spec:',
      `  payload: {command: ["${process.execPath}", "${payloadFixture('train-sim.mjs')}"], env: ${JSON.stringify(payloadEnv)}}`,
      `  terminationGracePeriod: ${grace}`,
      '',
    ].join('\n'),
  );
  const submitted = await stoker(['submit', spec, '--json'], env);
  expect(submitted.exitCode, submitted.all).toBe(0);
  return String((JSON.parse(submitted.stdout) as { id: string }).id);
}
