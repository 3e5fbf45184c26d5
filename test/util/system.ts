/** Start a whole stoker (controller, dispatcher, local backend) for a test, on the suite's Redis. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { silentLogger, createLogger } from '../../common/logger.js';
import { parseSpec } from '../../common/spec/load.js';
import type { NormalizedSpec } from '../../common/spec/schema.js';
import { startSystem, type System, type SystemOptions } from '../../orchestrator/system.js';
import { deleteKeysWithPrefix } from '../../testing/redis-keys.js';
import { buildRunView, type RunView } from '../../orchestrator/views.js';
import { eventually, testRedisUrl, uniquePrefix } from './redis-server.js';

export const FIXTURES = join(import.meta.dirname, '..', 'fixtures');
export const payloadFixture = (name: string) => join(FIXTURES, 'payloads', name);

export interface TestSystem extends System {
  home: string;
  prefix: string;
  redisUrl: string;
  submit(spec: NormalizedSpec): Promise<string>;
  view(runId: string): Promise<RunView>;
  waitForPhase(runId: string, phases: string[], timeoutMs?: number): Promise<RunView>;
  cleanup(): Promise<void>;
}

/** A stoker on the suite's Redis, or on `extra.redisUrl` (a server of the test's own: its own users, its own prefix). */
export async function startTestSystem(extra: Partial<SystemOptions> = {}): Promise<TestSystem> {
  const redisUrl = extra.redisUrl ?? (await testRedisUrl());
  const prefix = extra.prefix ?? uniquePrefix('sys');
  const home = mkdtempSync(join(tmpdir(), 'stoker-test-home-'));
  const log = process.env.STOKER_TEST_LOG
    ? createLogger({ level: process.env.STOKER_TEST_LOG })
    : silentLogger();
  const sys = await startSystem({
    redisUrl,
    prefix,
    log,
    leaderWaitMs: 5000,
    leaderTtlMs: 3000,
    lockDurationMs: 4000,
    stalledIntervalMs: 1000,
    resyncMs: 500,
    // Worker processes (pool workers read these): a killed worker's shard comes back fast.
    workerEnv: {
      ...process.env,
      STOKER_LOCK_DURATION_MS: '4000',
      STOKER_STALLED_INTERVAL_MS: '1000',
    },
    ...extra,
  });
  const ts: TestSystem = {
    ...sys,
    home,
    prefix,
    redisUrl,
    async submit(spec) {
      return (await sys.store.createRun(spec, { home })).id;
    },
    view: (runId) => buildRunView(sys.store, sys.redis, sys.keys, runId),
    async waitForPhase(runId, phases, timeoutMs = 60_000) {
      return eventually(
        `run ${runId} to reach ${phases.join('|')}`,
        async () => {
          const v = await buildRunView(sys.store, sys.redis, sys.keys, runId);
          return phases.includes(v.phase) ? v : null;
        },
        timeoutMs,
        100,
      );
    },
    async cleanup() {
      await sys.stop('force');
      await deleteKeysWithPrefix(redisUrl, prefix);
      rmSync(home, { recursive: true, force: true });
    },
  };
  return ts;
}

/** A spec from a plain object, through the real loader (so tests use validated specs). */
/** A spec document, parsed; `baseDir` stands for the spec file's directory (spec.files). */
export function specFrom(doc: unknown, baseDir?: string): NormalizedSpec {
  return parseSpec(stringify(doc), baseDir === undefined ? {} : { baseDir });
}

/** A TrainingRun whose payload is a Node fixture script. */
/** A TrainingRun document whose payload is a node fixture, with no other setting but `spec`. */
export function nodePayloadDoc(
  name: string,
  fixture: string,
  env: Record<string, string | number> = {},
  spec: Record<string, unknown> = {},
) {
  return {
    apiVersion: 'stoker/v1',
    kind: 'TrainingRun',
    metadata: { name },
    spec: { payload: { command: [process.execPath, payloadFixture(fixture)], env }, ...spec },
  };
}

/** nodePayloadDoc as YAML: a spec file's text, or an API request's body. */
export const nodePayloadYaml = (...args: Parameters<typeof nodePayloadDoc>): string =>
  stringify(nodePayloadDoc(...args));

export function nodePayloadRun(
  name: string,
  fixture: string,
  env: Record<string, string | number> = {},
  extra: Record<string, unknown> = {},
): NormalizedSpec {
  return specFrom(
    nodePayloadDoc(name, fixture, env, {
      retry: { attempts: 3, backoff: { type: 'fixed', delay: '100ms' } },
      terminationGracePeriod: '5s',
      ...extra,
    }),
  );
}
