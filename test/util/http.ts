/** A test system with its HTTP server (orchestrator/http/), for the API, CLI and browser tests. */
import { silentLogger } from '../../common/logger.js';
import { httpSettings, startHttp, type RunningHttp } from '../../orchestrator/http/start.js';
import { registerPool } from '../../orchestrator/pools.js';
import { startTestSystem, type TestSystem } from './system.js';

/** The system and its server on a free port of 127.0.0.1, with `env` as its settings. */
export async function startTestHttp(
  env: NodeJS.ProcessEnv = {},
): Promise<{ sys: TestSystem; http: RunningHttp }> {
  const sys = await startTestSystem();
  const http = await startHttp({
    sys,
    redisUrl: sys.redisUrl,
    home: sys.home,
    env,
    settings: httpSettings({ port: 0, host: '127.0.0.1' }, env),
    log: silentLogger(),
  });
  return { sys, http };
}

/** A pool of 0 to 2 CPU workers at 0 replicas, so that no worker starts. */
export async function registerIdlePool(sys: TestSystem, name: string): Promise<void> {
  await registerPool(
    sys.redis,
    sys.keys,
    {
      name,
      minReplicas: 0,
      maxReplicas: 2,
      replicas: 0,
      resources: { gpus: 0, cpu: '1', memory: '1Gi', nodes: 1 },
    } as Parameters<typeof registerPool>[2],
    'none/none',
  );
}
