/**
 * The HTTP server of a running stoker (orchestrator/http/) against a real system on the
 * suite's Redis: open health routes, bearer tokens and roles, API v1 (runs, pools,
 * queues), refusals as JSON that change nothing, and /metrics through a real Prometheus
 * text-format parser.
 */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compileErrors, validate } from '@readme/openapi-parser';
import { Ajv2020 } from 'ajv/dist/2020.js';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { afterEach, describe, expect, it } from 'vitest';
import { attemptLogFile, attemptMetricsFile } from '../../common/paths.js';
import { describeRun } from '../../orchestrator/cli/format.js';
import type { RunningHttp } from '../../orchestrator/http/start.js';
import { loadOrCreateTokens, tokenFilePath } from '../../orchestrator/http/tokens.js';
import { eventually } from '../util/redis-server.js';
import { registerIdlePool, startTestHttp } from '../util/http.js';
import { fireReportSpec } from '../util/fire-report-run.js';
import { nodePayloadYaml, type TestSystem } from '../util/system.js';

let sys: TestSystem | undefined;
let http: RunningHttp | undefined;
afterEach(async () => {
  await http?.close();
  await sys?.cleanup();
  http = undefined;
  sys = undefined;
});

async function start(env: NodeJS.ProcessEnv = {}) {
  ({ sys, http } = await startTestHttp(env));
  const { admin, read } = http.tokens.tokens;
  const call = async (
    method: string,
    path: string,
    o: { token?: string | null; body?: string | object; type?: string } = {},
  ) => {
    const headers: Record<string, string> = {};
    const token = o.token === undefined ? read : o.token;
    if (token) headers.authorization = `Bearer ${token}`;
    let body: string | undefined;
    if (typeof o.body === 'string') {
      body = o.body;
      headers['content-type'] = o.type ?? 'application/yaml';
    } else if (o.body !== undefined) {
      body = JSON.stringify(o.body);
      headers['content-type'] = o.type ?? 'application/json';
    }
    const res = await fetch(`${http!.url}${path}`, { method, headers, body });
    const text = await res.text();
    const json = res.headers.get('content-type')?.includes('json')
      ? (JSON.parse(text) as Record<string, unknown>)
      : null;
    return { status: res.status, json, text, type: res.headers.get('content-type') };
  };
  return { call, admin, read, sys, http };
}

type RunViewJson = {
  phase: string;
  stages: Array<{
    queue: { name: string; paused: boolean; wait: Record<string, unknown> | null } | null;
  }>;
};

const trainSpec = (name: string, steps = 3) =>
  nodePayloadYaml(name, 'train-sim.mjs', { STEPS: steps, STEP_MS: 1 });

describe('the HTTP server', () => {
  it('serves health openly and everything else only with a token, by role', async () => {
    const { call, admin, read, sys: s } = await start();
    expect(await call('GET', '/healthz', { token: null })).toMatchObject({
      status: 200,
      json: { ok: true },
    });
    expect(await call('GET', '/readyz', { token: null })).toMatchObject({
      status: 200,
      json: { ready: true, redis: 'ok', leader: true },
    });

    // The dashboard's page and files are open (they hold no data), with a strict policy;
    // only the listed files are served.
    const page = await call('GET', '/', { token: null });
    expect(page).toMatchObject({ status: 200, type: expect.stringContaining('text/html') });
    expect(page.text).toContain('/assets/app.js');
    const script = await fetch(`${http!.url}/assets/app.js`);
    expect(script.status).toBe(200);
    expect(script.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(await call('GET', '/assets/..%2Fpackage.json', { token: null })).toMatchObject({
      status: 404,
    });
    expect(await call('GET', '/assets/secret.txt', { token: null })).toMatchObject({ status: 404 });

    const none = await call('GET', '/api/v1/runs', { token: null });
    expect(none.status).toBe(401);
    expect(none.json).toMatchObject({ error: { code: 'Unauthorized' } });
    expect(String((none.json?.error as { message: string }).message)).toMatch(/bearer token/);
    const wrong = await call('GET', '/api/v1/runs', { token: `${read}x` });
    expect(wrong).toMatchObject({ status: 401, json: { error: { message: 'unknown token' } } });
    expect(await call('GET', '/api/v1/runs')).toMatchObject({ status: 200, json: { runs: [] } });

    // A read-only token may not write; nothing is created.
    const denied = await call('POST', '/api/v1/runs', { body: trainSpec('ro') });
    expect(denied).toMatchObject({ status: 403, json: { error: { code: 'Forbidden' } } });
    expect(await s.store.runCount()).toBe(0);

    // The tokens: in the home, 0600, kept across starts, never in Redis.
    const file = tokenFilePath(s.home);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({ admin, read });
    expect(loadOrCreateTokens(s.home, {})).toMatchObject({ source: 'file', tokens: { admin } });
    const keys = await s.redis.keys(`${s.prefix}*`);
    for (const key of keys) {
      const type = await s.redis.type(key);
      const dump = type === 'string' ? await s.redis.get(key) : JSON.stringify(await dumpKey(key));
      expect(dump ?? '').not.toContain(admin);
      expect(dump ?? '').not.toContain(read);
    }
    async function dumpKey(key: string): Promise<unknown> {
      const t = await s.redis.type(key);
      if (t === 'hash') return s.redis.hgetall(key);
      if (t === 'set') return s.redis.smembers(key);
      if (t === 'zset') return s.redis.zrange(key, '0', '-1');
      if (t === 'list') return s.redis.lrange(key, 0, -1);
      return null;
    }
  });

  it('submits a spec (YAML or JSON), lists and pages runs, shows one, and cancels', async () => {
    const { call, admin } = await start();
    const a = await call('POST', '/api/v1/runs', { token: admin, body: trainSpec('api-a') });
    expect(a.status).toBe(201);
    const idA = String(a.json?.id);
    const asJson = JSON.parse(JSON.stringify((await import('yaml')).parse(trainSpec('api-b'))));
    const b = await call('POST', '/api/v1/runs', { token: admin, body: asJson });
    expect(b.status).toBe(201);
    const idB = String(b.json?.id);

    const done = await eventually(
      'both runs Succeeded',
      async () => {
        const r = await call('GET', '/api/v1/runs?phase=Succeeded');
        return (r.json?.runs as unknown[]).length === 2 ? r : null;
      },
      60_000,
    );
    expect((done.json?.runs as Array<{ id: string }>).map((r) => r.id).sort()).toEqual(
      [idA, idB].sort(),
    );
    // Paging: newest first, one at a time.
    const p1 = await call('GET', '/api/v1/runs?limit=1');
    expect(p1.json).toMatchObject({ runs: [{ id: idB }], next: 1 });
    const p2 = await call('GET', '/api/v1/runs?limit=1&cursor=1');
    expect(p2.json).toMatchObject({ runs: [{ id: idA }], next: null });
    expect(
      (await call('GET', `/api/v1/runs?name=api-a`)).json?.runs as Array<{ id: string }>,
    ).toMatchObject([{ id: idA }]);

    // Its log, a chunk at a time from an offset.
    const log = await call('GET', `/api/v1/runs/${idA}/logs`);
    expect(log.json).toMatchObject({
      task: `${idA}.train`,
      attempt: 1,
      source: 'file',
      done: true,
    });
    const next = Number(log.json?.next);
    expect(next).toBeGreaterThan(0);
    expect((log.json?.lines as string[]).some((l) => l.includes('::stoker::'))).toBe(false);
    expect((await call('GET', `/api/v1/runs/${idA}/logs?raw=1`)).json?.lines).toEqual(
      expect.arrayContaining([expect.stringContaining('::stoker::')]),
    );
    expect((await call('GET', `/api/v1/runs/${idA}/logs?offset=${next}`)).json).toMatchObject({
      lines: [],
      next,
      done: true,
    });
    expect(await call('GET', `/api/v1/runs/${idA}/logs?task=nope`)).toMatchObject({ status: 404 });
    // A gang node's own log, beside the leader's.
    const runDir = String((await call('GET', `/api/v1/runs/${idA}`)).json?.runDir);
    writeFileSync(attemptLogFile(runDir, `${idA}.train`, 1, 1), 'node 1 says hello\n');
    expect((await call('GET', `/api/v1/runs/${idA}/logs?node=1`)).json).toMatchObject({
      lines: ['node 1 says hello'],
    });
    expect(await call('GET', `/api/v1/runs/${idA}/logs?node=2`)).toMatchObject({ status: 404 });

    // Its metric history: every metrics event, from the file beside the log, else Redis.
    const hist = await call('GET', `/api/v1/runs/${idA}/metrics`);
    expect(hist.json).toMatchObject({
      task: `${idA}.train`,
      attempt: 1,
      source: 'file',
      x: 'step',
    });
    const loss = (hist.json?.series as Array<{ name: string }>).find((x) => x.name === 'loss');
    expect(loss).toMatchObject({ x: [1, 2, 3], y: [1, 0.5, 1 / 3], total: 3, last: 1 / 3 });
    rmSync(attemptMetricsFile(runDir, `${idA}.train`, 1));
    const fromRedis = await call('GET', `/api/v1/runs/${idA}/metrics?metric=loss`);
    expect(fromRedis.json).toMatchObject({ source: 'redis', series: [loss] });
    expect(await call('GET', `/api/v1/runs/${idA}/metrics?points=1`)).toMatchObject({
      status: 400,
      json: { error: { message: expect.stringContaining('query.points') } },
    });
    expect(await call('GET', `/api/v1/runs/${idA}/metrics?attempt=5`)).toMatchObject({
      status: 404,
    });

    const view = await call('GET', `/api/v1/runs/${idA}`);
    expect(view.json).toMatchObject({
      id: idA,
      phase: 'Succeeded',
      stages: [{ phase: 'Succeeded', tasks: [{ phase: 'Succeeded' }] }],
    });
    expect(await call('GET', '/api/v1/runs/no-such-run')).toMatchObject({
      status: 404,
      json: { error: { code: 'NotFound' } },
    });
    // A finished run cannot be cancelled; a running one can.
    expect((await call('POST', `/api/v1/runs/${idA}/cancel`, { token: admin })).status).toBe(409);
    const long = await call('POST', '/api/v1/runs', {
      token: admin,
      body: trainSpec('api-long', 100_000),
    });
    const idL = String(long.json?.id);
    expect(await call('POST', `/api/v1/runs/${idL}/cancel`)).toMatchObject({ status: 403 });
    expect(await call('POST', `/api/v1/runs/${idL}/cancel`, { token: admin })).toMatchObject({
      status: 202,
      json: { id: idL, cancelRequested: true },
    });
    await eventually(
      'the long run Cancelled',
      async () =>
        (await call('GET', `/api/v1/runs/${idL}`)).json?.phase === 'Cancelled' ? true : null,
      60_000,
    );
  });

  it("serves a FIRE run's report, and says what is wrong with a report file that is not one", async () => {
    const { call, admin } = await start();
    const sub = await call('POST', '/api/v1/runs', {
      token: admin,
      body: fireReportSpec('fire-mini'),
    });
    expect(sub.status).toBe(201);
    const id = String(sub.json?.id);
    expect(await call('GET', `/api/v1/runs/${id}/report`)).toMatchObject({ status: 404 });
    await eventually(
      'the pipeline Succeeded',
      async () => {
        const phase = (await call('GET', `/api/v1/runs/${id}`)).json?.phase;
        if (phase === 'Failed') throw new Error(`the pipeline failed`);
        return phase === 'Succeeded' ? true : null;
      },
      90_000,
    );
    const r = await call('GET', `/api/v1/runs/${id}/report`);
    expect(r.json).toMatchObject({
      run: id,
      stage: 'report',
      title: 'FIRE in miniature',
      baseline: 'base',
      models: [
        { name: 'base', dialogues: 3, atNormalised: 1, rr: 0 },
        { name: 'final', dialogues: 3, rr: 1 },
      ],
    });
    const models = r.json?.models as Array<{ accAt: Array<number | null> }>;
    expect(models[1]?.accAt[0]).toBeCloseTo(1 / 3);
    // A report file replaced by something else: a 422 naming the file and the field.
    writeFileSync(
      String(r.json?.file),
      JSON.stringify({ title: 'x', baseline: 'b', models: [{}] }),
    );
    expect(await call('GET', `/api/v1/runs/${id}/report`)).toMatchObject({
      status: 422,
      json: {
        error: { message: expect.stringMatching(/report\.json is not a FIRE report: models\[0\]/) },
      },
    });
  });

  it('refuses bad requests with a JSON error naming the problem, and changes nothing', async () => {
    const { call, admin, sys: s } = await start();
    const invalid = await call('POST', '/api/v1/runs', {
      token: admin,
      body: 'apiVersion: stoker/v1\nkind: TrainingRun\nmetadata: {name: bad}\nspec:\n  payload: {command: []}\n  retry: {attempts: zero}\n',
    });
    expect(invalid.status).toBe(422);
    expect(invalid.json).toMatchObject({ error: { code: 'InvalidSpec' } });
    const issues = (invalid.json?.error as { issues: Array<{ path: string; line?: number }> })
      .issues;
    expect(issues.map((i) => i.path)).toEqual(
      expect.arrayContaining(['spec.payload.command', 'spec.retry.attempts']),
    );
    expect(issues.find((i) => i.path === 'spec.retry.attempts')?.line).toBe(6);

    const malformed = await call('POST', '/api/v1/runs', { token: admin, body: 'a: [1, 2\n' });
    expect(malformed).toMatchObject({ status: 422, json: { error: { code: 'InvalidSpec' } } });
    const big = await call('POST', '/api/v1/runs', {
      token: admin,
      body: `# ${'x'.repeat(10 * 1024 * 1024)}\n`,
    });
    expect(big).toMatchObject({ status: 413, json: { error: { code: 'BodyTooLarge' } } });
    const octets = await call('POST', '/api/v1/runs', {
      token: admin,
      body: 'x',
      type: 'application/octet-stream',
    });
    expect(octets).toMatchObject({
      status: 415,
      json: { error: { code: 'UnsupportedMediaType' } },
    });
    const array = await call('POST', '/api/v1/runs', { token: admin, body: [1, 2] });
    expect(array).toMatchObject({ status: 400, json: { error: { code: 'BadRequest' } } });
    const query = await call('GET', '/api/v1/runs?limit=0&colour=red');
    expect(query.status).toBe(400);
    expect(String((query.json?.error as { message: string }).message)).toMatch(/query\.limit/);
    expect(await call('GET', '/api/v1/nothing')).toMatchObject({
      status: 404,
      json: { error: { code: 'NotFound' } },
    });
    expect(await s.store.runCount()).toBe(0);
  });

  it('shows pools and queues, and scales a pool within its bounds for admins only', async () => {
    const { call, admin, sys: s } = await start();
    await registerIdlePool(s, 'gen-api');
    const pools = await call('GET', '/api/v1/pools');
    expect(pools.json).toMatchObject({
      pools: [{ name: 'gen-api', desired: 0, minReplicas: 0, maxReplicas: 2, backlog: 0 }],
    });
    expect(
      await call('POST', '/api/v1/pools/gen-api/scale', { body: { replicas: 1 } }),
    ).toMatchObject({ status: 403 });
    const wrongType = await call('POST', '/api/v1/pools/gen-api/scale', {
      token: admin,
      body: { replicas: 'two' },
    });
    expect(wrongType.status).toBe(400);
    expect(String((wrongType.json?.error as { message: string }).message)).toMatch(
      /body\.replicas/,
    );
    const outside = await call('POST', '/api/v1/pools/gen-api/scale', {
      token: admin,
      body: { replicas: 5 },
    });
    expect(outside).toMatchObject({ status: 422, json: { error: { code: 'Invalid' } } });
    expect(
      await call('POST', '/api/v1/pools/nope/scale', { token: admin, body: { replicas: 0 } }),
    ).toMatchObject({ status: 404 });
    expect((await call('GET', '/api/v1/pools/gen-api')).json).toMatchObject({ desired: 0 });
    const queues = await call('GET', '/api/v1/queues');
    expect((queues.json?.queues as Array<{ name: string }>).map((q) => q.name)).toEqual([
      'train',
      'steps',
      'pool.gen-api',
    ]);
    expect(queues.json?.queues).toContainEqual({
      name: 'pool.gen-api',
      waiting: 0,
      prioritized: 0,
      delayed: 0,
      active: 0,
      completed: 0,
      failed: 0,
      paused: false,
      workers: 0,
    });
  });

  it('pauses and resumes a queue for admins; a run waiting in a paused queue says so', async () => {
    const { call, admin } = await start();
    expect(await call('POST', '/api/v1/queues/train/pause')).toMatchObject({ status: 403 });
    expect(await call('POST', '/api/v1/queues/nope/pause', { token: admin })).toMatchObject({
      status: 404,
      json: { error: { code: 'NotFound' } },
    });
    expect(await call('POST', '/api/v1/queues/train/pause', { token: admin })).toMatchObject({
      status: 200,
      json: { name: 'train', paused: true },
    });
    const created = await call('POST', '/api/v1/runs', { token: admin, body: trainSpec('held') });
    const id = String(created.json?.id);
    const waiting = await eventually(
      'the run waiting in the paused queue',
      async () => {
        const v = (await call('GET', `/api/v1/runs/${id}`)).json as RunViewJson;
        return v.stages[0]?.queue?.paused ? v : null;
      },
      30_000,
    );
    expect(waiting.stages[0]?.queue).toMatchObject({ name: 'train', paused: true });
    // Its place in the queue, and no estimate while the queue is paused.
    expect(waiting.stages[0]?.queue?.wait).toMatchObject({
      position: 1,
      startsInSeconds: null,
      basis: 'the queue is paused',
    });
    expect(describeRun(waiting as never)).toContain('queue train is paused');
    expect(await call('POST', '/api/v1/queues/train/resume', { token: admin })).toMatchObject({
      json: { name: 'train', paused: false },
    });
    await eventually(
      'the run Succeeded once the queue resumed',
      async () =>
        (await call('GET', `/api/v1/runs/${id}`)).json?.phase === 'Succeeded' ? true : null,
      60_000,
    );
    const done = (await call('GET', `/api/v1/runs/${id}`)).json as RunViewJson;
    expect(done.stages[0]?.queue).toBeNull();
    // Cleaning the finished jobs' records (admin; a bad body names the field).
    const badClean = await call('POST', '/api/v1/queues/train/clean', {
      token: admin,
      body: { state: 'active' },
    });
    expect(badClean.status).toBe(400);
    expect(String((badClean.json?.error as { message: string }).message)).toMatch(/body\.state/);
    expect(
      await call('POST', '/api/v1/queues/train/clean', {
        token: admin,
        body: { state: 'completed' },
      }),
    ).toMatchObject({ status: 200, json: { queue: 'train', state: 'completed', removed: 1 } });
    expect((await call('GET', '/api/v1/queues')).json?.queues).toContainEqual(
      expect.objectContaining({ name: 'train', completed: 0 }),
    );
  });

  it('streams run and pool changes as server-sent events', async () => {
    const { call, admin, read, http: h, sys: s } = await start();
    const res = await fetch(`${h.url}/api/v1/events`, {
      headers: { authorization: `Bearer ${read}` },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const reader = res.body!.getReader();
    const events: Array<{ event: string; data: Record<string, unknown> }> = [];
    let buffer = '';
    const pump = (async () => {
      const decoder = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer += decoder.decode(value, { stream: true });
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event && data)
            events.push({ event, data: JSON.parse(data) as Record<string, unknown> });
        }
      }
    })();
    const created = await call('POST', '/api/v1/runs', { token: admin, body: trainSpec('sse') });
    const id = String(created.json?.id);
    await eventually(
      'the run Succeeded on the stream',
      () =>
        events.some((e) => e.event === 'run' && e.data.id === id && e.data.phase === 'Succeeded')
          ? true
          : null,
      60_000,
    );
    expect(events.find((e) => e.event === 'run' && e.data.id === id)).toMatchObject({
      data: { name: 'sse', stages: { total: 1 } },
    });
    // The task's progress as its worker wrote it.
    await eventually('the task at its last step on the stream', () =>
      events.some(
        (e) =>
          e.event === 'task' &&
          e.data.id === `${id}.train` &&
          (e.data.progress as { step: number | null }).step === 3,
      )
        ? true
        : null,
    );
    expect(
      events.find(
        (e) => e.event === 'task' && (e.data.progress as { step: number | null }).step === 3,
      ),
    ).toMatchObject({
      data: { runId: id, stage: 'train', progress: { totalSteps: 3 } },
    });
    await registerIdlePool(s, 'gen-sse');
    await call('POST', '/api/v1/pools/gen-sse/scale', { token: admin, body: { replicas: 0 } });
    await eventually('the pool on the stream', () =>
      events.some((e) => e.event === 'pool' && e.data.name === 'gen-sse') ? true : null,
    );
    expect((await fetch(`${h.url}/api/v1/events`)).status).toBe(401);
    await reader.cancel();
    await pump.catch(() => undefined);
  });

  it('serves /metrics in the Prometheus text format, every family with HELP and TYPE', async () => {
    const { call, admin } = await start();
    await call('POST', '/api/v1/runs', { token: admin, body: trainSpec('metrics') });
    await eventually(
      'a Succeeded run counted',
      async () => {
        const m = await call('GET', '/metrics', { token: null });
        return m.text.includes('stoker_runs{phase="Succeeded"} 1') ? m : null;
      },
      60_000,
    );
    const m = await call('GET', '/metrics', { token: null });
    expect(m.status).toBe(200);
    expect(m.type).toMatch(/^text\/plain; version=0\.0\.4/);
    const families = parsePrometheusTextFormat(m.text);
    const byName = new Map(families.map((f) => [f.name, f]));
    for (const f of families) {
      expect(f.help, f.name).toBeTruthy();
      expect(f.type, f.name).toMatch(/^(GAUGE|COUNTER|HISTOGRAM|SUMMARY|UNTYPED)$/);
    }
    for (const name of [
      'stoker_leader',
      'stoker_runs',
      'stoker_queue_jobs',
      'stoker_redis_round_trip_seconds',
      'stoker_reconcile_duration_seconds',
      'process_cpu_seconds_total',
    ])
      expect(byName.has(name), name).toBe(true);
    expect(byName.get('stoker_leader')?.metrics[0]?.value).toBe('1');
    const trainCompleted = byName
      .get('stoker_queue_jobs')
      ?.metrics.find((x) => x.labels?.queue === 'train' && x.labels.state === 'completed');
    expect(Number(trainCompleted?.value)).toBeGreaterThanOrEqual(1);
    // The attempt's duration and queue wait, observed as the dispatcher ended it. (The
    // parser keeps a labelled histogram's buckets but not its labels, count or sum, when
    // `le` comes first as prom-client writes it: the series' own lines are checked too.)
    for (const name of ['stoker_task_duration_seconds', 'stoker_task_queue_wait_seconds'])
      expect(byName.get(name)?.metrics[0]?.buckets?.['+Inf'], name).toBe('1');
    expect(m.text).toContain(
      'stoker_task_duration_seconds_count{queue="train",phase="Succeeded"} 1',
    );
    expect(m.text).toContain('stoker_task_queue_wait_seconds_count{queue="train"} 1');
    // Every metric the shipped Grafana dashboard queries is one this server exports.
    const dashboard = JSON.parse(
      readFileSync(
        join(import.meta.dirname, '../../k8s/monitoring/grafana-dashboard.json'),
        'utf8',
      ),
    ) as { panels: Array<{ targets: Array<{ expr: string }> }> };
    const queried = new Set(
      dashboard.panels.flatMap((p) =>
        p.targets.flatMap((t) =>
          [...t.expr.matchAll(/\b((?:stoker|process|nodejs)_[a-z_]+)/g)].map((m) => m[1] as string),
        ),
      ),
    );
    const exported = new Set(families.map((f) => f.name));
    expect([...queried].filter((n) => !exported.has(n.replace(/_bucket$/, '')))).toEqual([]);
    expect(queried.size).toBeGreaterThan(10);
    expect(
      Number(byName.get('stoker_reconcile_duration_seconds')?.metrics[0]?.count),
    ).toBeGreaterThan(0);
  });

  it('puts /metrics behind its own token when one is set', async () => {
    const token = 'metrics-token-0123456789';
    const { call, read } = await start({ STOKER_METRICS_TOKEN: token });
    expect((await call('GET', '/metrics', { token: null })).status).toBe(401);
    expect((await call('GET', '/metrics', { token: 'metrics-token-wrong-0000' })).status).toBe(401);
    expect((await call('GET', '/metrics', { token })).status).toBe(200);
    expect((await call('GET', '/metrics', { token: read })).status).toBe(200);
    // The metrics token opens nothing else.
    expect((await call('GET', '/api/v1/runs', { token })).status).toBe(401);
  });

  it('describes itself in a valid OpenAPI 3.1 document whose schemas match what it sends', async () => {
    const { call, admin } = await start();
    const doc = await call('GET', '/api/v1/openapi.json');
    expect(doc.status).toBe(200);
    const result = await validate(structuredClone(doc.json) as never);
    expect(result.valid ? [] : compileErrors(result)).toEqual([]);
    expect(result.specification).toBe('OpenAPI');
    expect(doc.json).toMatchObject({ openapi: '3.1.0' });
    const paths = Object.keys((doc.json as { paths: object }).paths);
    expect(paths).toEqual([
      '/runs',
      '/runs/{run}',
      '/runs/{run}/cancel',
      '/runs/{run}/resume',
      '/runs/{run}/logs',
      '/runs/{run}/metrics',
      '/tasks/{task}',
      '/runs/{run}/report',
      '/whoami',
      '/pools',
      '/pools/{pool}',
      '/pools/{pool}/backlog',
      '/pools/{pool}/scale',
      '/queues',
      '/queues/{queue}/pause',
      '/queues/{queue}/resume',
      '/queues/{queue}/retry',
      '/queues/{queue}/clean',
      '/events',
    ]);
    // A response checked against the document's own schema (RunSummary, RunView).
    const schemas = (doc.json as { components: { schemas: Record<string, object> } }).components
      .schemas;
    const created = await call('POST', '/api/v1/runs', { token: admin, body: trainSpec('oas') });
    const id = String(created.json?.id);
    const view = await call('GET', `/api/v1/runs/${id}`);
    const ajv = new Ajv2020({ strict: false });
    for (const [name, schema] of Object.entries(schemas))
      ajv.addSchema(schema, `#/components/schemas/${name}`);
    const check = (name: string, value: unknown) => {
      const v = ajv.getSchema(`#/components/schemas/${name}`);
      expect(v?.(value), JSON.stringify(v?.errors)).toBe(true);
    };
    check('RunView', view.json);
    check('RunSummary', ((await call('GET', '/api/v1/runs')).json?.runs as unknown[])[0]);
    check('QueueRow', ((await call('GET', '/api/v1/queues')).json?.queues as unknown[])[0]);
    await eventually(
      'the run Succeeded',
      async () =>
        (await call('GET', `/api/v1/runs/${id}`)).json?.phase === 'Succeeded' ? true : null,
      60_000,
    );
    check('MetricHistory', (await call('GET', `/api/v1/runs/${id}/metrics`)).json);
    const task = await call('GET', `/api/v1/tasks/${id}.train`);
    check('TaskDetail', task.json);
    expect(task.json).toMatchObject({
      id: `${id}.train`,
      runId: id,
      stage: 'train',
      phase: 'Succeeded',
    });
    expect(await call('GET', '/api/v1/tasks/nope')).toMatchObject({ status: 404 });
    expect((await call('GET', '/api/v1/whoami')).json).toEqual({ role: 'read' });
    expect((await call('GET', '/api/v1/whoami', { token: admin })).json).toEqual({ role: 'admin' });
  });

  it('serves Bull Board at /queues to a logged-in browser: reads with the read token, actions with admin', async () => {
    const { call, admin, read, http: h } = await start();
    await call('POST', '/api/v1/runs', { token: admin, body: trainSpec('board') });
    expect(await call('GET', '/queues', { token: null })).toMatchObject({
      status: 401,
      json: { error: { code: 'Unauthorized' } },
    });
    expect((await fetch(`${h.url}/login?token=nope`, { redirect: 'manual' })).status).toBe(401);
    const login = await fetch(`${h.url}/login?token=${read}&next=//evil.example`, {
      redirect: 'manual',
    });
    expect(login.status).toBe(303);
    expect(login.headers.get('location')).toBe('/');
    const cookie = login.headers.get('set-cookie') ?? '';
    expect(cookie).toMatch(/^stoker_token=stk_r_[\w-]+; HttpOnly; SameSite=Strict; Path=\//);
    const asBrowser = (path: string, init: RequestInit = {}) =>
      fetch(`${h.url}${path}`, {
        ...init,
        headers: { cookie: cookie.split(';')[0] ?? '', ...(init.headers ?? {}) },
      });
    const page = await asBrowser('/queues');
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<html');
    // The board's own API: stoker's queues, the finished task's job at 100%.
    const jobs = await eventually(
      'the job completed on the board',
      async () => {
        const r = await asBrowser('/queues/api/queues?activeQueue=train&status=completed&page=1');
        const body = (await r.json()) as {
          queues: Array<{ name: string; jobs: Array<{ progress: unknown }> }>;
        };
        const train = body.queues.find((q) => q.name === 'train');
        return train && train.jobs.length > 0 ? body : null;
      },
      60_000,
    );
    expect(jobs.queues.map((q) => q.name).sort()).toEqual(['steps', 'train']);
    expect(jobs.queues.find((q) => q.name === 'train')?.jobs[0]?.progress).toBe(100);
    // An action needs admin.
    expect((await asBrowser('/queues/api/queues/steps/pause', { method: 'PUT' })).status).toBe(403);
    const paused = await fetch(`${h.url}/queues/api/queues/steps/pause`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${admin}` },
    });
    expect(paused.status).toBeLessThan(300);
    expect(
      (await call('GET', '/api/v1/queues')).json?.queues as Array<{
        name: string;
        paused: boolean;
      }>,
    ).toContainEqual(expect.objectContaining({ name: 'steps', paused: true }));
  });

  it('takes its tokens from the environment when set, and refuses half a pair', () => {
    const home = mkdtempSync(join(tmpdir(), 'stoker-tokens-'));
    try {
      const env = {
        STOKER_ADMIN_TOKEN: 'admin-token-0123456789',
        STOKER_READ_TOKEN: 'read-token-0123456789',
      };
      expect(loadOrCreateTokens(home, env)).toMatchObject({
        source: 'env',
        tokens: { admin: env.STOKER_ADMIN_TOKEN, read: env.STOKER_READ_TOKEN },
      });
      expect(() =>
        loadOrCreateTokens(home, { STOKER_ADMIN_TOKEN: env.STOKER_ADMIN_TOKEN }),
      ).toThrow(/must both be set/);
      const made = loadOrCreateTokens(home, {});
      expect(made.source).toBe('created');
      expect(made.tokens.admin).not.toBe(made.tokens.read);
      expect(loadOrCreateTokens(home, {}).tokens).toEqual(made.tokens);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
});
