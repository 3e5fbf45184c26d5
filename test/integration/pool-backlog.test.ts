/**
 * GET /api/v1/pools/NAME/backlog (orchestrator/http/backlog.ts), the figure KEDA's
 * metrics-api scaler reads: real BullMQ jobs in a pool's queue on a real redis-server,
 * read through the real HTTP server with the read token, as KEDA's ScaledObject in
 * k8s/keda/ is set up to (valueLocation: backlog, authMode: bearer).
 */
import { Queue } from 'bullmq';
import { afterEach, expect, it } from 'vitest';
import { parse } from 'yaml';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { poolQueueName } from '../../common/keys.js';
import { packageRoot } from '../../common/paths.js';
import { bullConnection } from '../../common/redis.js';
import { PoolBacklog } from '../../orchestrator/http/backlog.js';
import type { RunningHttp } from '../../orchestrator/http/start.js';
import { registerIdlePool, startTestHttp } from '../util/http.js';
import type { TestSystem } from '../util/system.js';

let sys: TestSystem | undefined;
let http: RunningHttp | undefined;
let queue: Queue | undefined;
afterEach(async () => {
  await queue?.close();
  await http?.close();
  await sys?.cleanup();
  queue = http = sys = undefined;
});

/** What KEDA's ScaledObject in k8s/keda/ asks for: the metrics-api trigger's metadata. */
function kedaTrigger(): { url: string; valueLocation: string; authMode: string } {
  const docs = readFileSync(join(packageRoot(), 'k8s', 'keda', 'pool-gen.yaml'), 'utf8')
    .split(/^---$/m)
    .map((d) => parse(d) as { kind: string; spec: { triggers?: Array<{ metadata: never }> } });
  const so = docs.find((d) => d.kind === 'ScaledObject');
  return so?.spec.triggers?.[0]?.metadata as never;
}

it('gives the true backlog of a pool as one number, for a read token, as KEDA reads it', async () => {
  ({ sys, http } = await startTestHttp());
  const s = sys;
  await registerIdlePool(s, 'gen');
  queue = new Queue(poolQueueName('gen'), {
    connection: bullConnection(s.redisUrl),
    prefix: s.keys.bullPrefix,
  });
  for (let i = 0; i < 5; i++) await queue.add('generate', {}, { jobId: `w${i}` });
  await queue.add('generate', {}, { jobId: 'p0', priority: 3 });
  await queue.add('generate', {}, { jobId: 'd0', delay: 3600_000 });

  const trigger = kedaTrigger();
  expect(trigger.authMode).toBe('bearer');
  const path = new URL(trigger.url).pathname;
  expect(path).toBe('/api/v1/pools/gen/backlog');
  const get = async (token: string | null, p = path) => {
    const res = await fetch(`${http!.url}${p}`, {
      headers: token ? { authorization: `Bearer ${token}` } : {},
    });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  };
  const read = http.tokens.tokens.read;
  const got = await get(read);
  expect(got.status).toBe(200);
  const b = PoolBacklog.parse(got.json);
  expect(b).toMatchObject({
    pool: 'gen',
    backlog: 7,
    waiting: 5,
    prioritized: 1,
    delayed: 1,
    active: 0,
    paused: false,
  });
  // KEDA's valueLocation (a GJSON path; here a top-level field) lands on that number.
  expect(got.json[trigger.valueLocation]).toBe(7);

  // A paused queue: nothing waiting can be taken, so nothing to scale for.
  await queue.pause();
  expect((await get(read)).json).toMatchObject({ backlog: 0, waiting: 5, paused: true });
  await queue.resume();

  // No token, another pool: refused, said why.
  expect((await get(null)).status).toBe(401);
  const missing = await get(read, '/api/v1/pools/nope/backlog');
  expect(missing.status).toBe(404);
  expect((missing.json.error as { message: string }).message).toContain('no pool "nope"');
});
