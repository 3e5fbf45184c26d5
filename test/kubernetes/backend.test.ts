/**
 * The kubernetes backend's parts, on their own: the API gate (rate limit, Retry-After,
 * retries) on a fake clock, the wake-ups of wait() against the fake API server (no Job
 * controller or kubelet: the test writes Job status itself), and the reading of
 * FailedCreate events.
 */
import type { CoreV1Event, V1Job } from '@kubernetes/client-node';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../common/logger.js';
import {
  ApiGate,
  isTransient,
  retryAfterMs,
  type GateClock,
} from '../../orchestrator/backends/kubernetes/api-gate.js';
import { KubernetesBackend } from '../../orchestrator/backends/kubernetes/backend.js';
import {
  classifyFailedCreate,
  observeJob,
} from '../../orchestrator/backends/kubernetes/observe.js';
import { startFakeApiServer } from '../../testing/kube-sim/apiserver/server.js';
import type { FakeApiServer } from '../../testing/kube-sim/apiserver/types.js';
import { eventually } from '../util/redis-server.js';

/** Virtual time: sleep() moves it at once, so a test of minutes of backoff takes none. */
function virtualClock(): GateClock & { slept: number[] } {
  let t = 1_000_000;
  const slept: number[] = [];
  return {
    slept,
    now: () => t,
    sleep: async (ms) => {
      slept.push(Math.round(ms));
      t += ms;
    },
  };
}

const httpError = (code: number, headers: Record<string, string> = {}) =>
  Object.assign(new Error(`HTTP ${code}`), { code, headers });
const netError = (code: string) => Object.assign(new Error(code), { code });

describe('the API gate', () => {
  it('sends at most burst at once, then qps per second', async () => {
    const clock = virtualClock();
    const gate = new ApiGate({ qps: 10, burst: 5, clock });
    const t0 = clock.now();
    const at: number[] = [];
    await Promise.all(
      Array.from({ length: 25 }, () =>
        gate.call('get jobs', async () => {
          at.push(clock.now() - t0);
        }),
      ),
    );
    expect(at.slice(0, 5)).toEqual([0, 0, 0, 0, 0]);
    // The other 20 at 10 per second: the last about 2 s after the start.
    expect(at[24]).toBeGreaterThanOrEqual(1990);
    expect(at[24]).toBeLessThanOrEqual(2100);
    expect(gate.sent.get('get jobs')).toBe(25);
  });

  it('honours Retry-After on 429 for every request, then retries', async () => {
    const clock = virtualClock();
    const gate = new ApiGate({ clock });
    let calls = 0;
    const t0 = clock.now();
    const first = gate.call('create jobs', async () => {
      calls += 1;
      if (calls === 1) throw httpError(429, { 'retry-after': '3' });
      return clock.now() - t0;
    });
    expect(await first).toBeGreaterThanOrEqual(3000);
    // A request after the 429 also waited for the pause (it was over by now).
    expect(await gate.call('get jobs', async () => clock.now() - t0)).toBeGreaterThanOrEqual(3000);
    expect(calls).toBe(2);
    expect(gate.retries).toBe(1);
  });

  it('retries connection errors and 5xx with exponential backoff, up to retryForMs', async () => {
    const clock = virtualClock();
    const gate = new ApiGate({ clock, backoffMs: 100, retryForMs: 5000 });
    const failures = [netError('ECONNREFUSED'), netError('ECONNRESET'), httpError(503)];
    expect(
      await gate.call('list pods', async () => {
        const f = failures.shift();
        if (f) throw f;
        return 'ok';
      }),
    ).toBe('ok');
    // 100, 200, 400 ms, each within ±25%.
    expect(clock.slept).toHaveLength(3);
    clock.slept.forEach((ms, i) => {
      expect(ms).toBeGreaterThanOrEqual(0.75 * 100 * 2 ** i);
      expect(ms).toBeLessThanOrEqual(1.25 * 100 * 2 ** i);
    });
    // Down for good: given up after retryForMs, with the last error.
    await expect(
      gate.call('list pods', async () => {
        throw netError('ECONNREFUSED');
      }),
    ).rejects.toThrow('ECONNREFUSED');
    expect(clock.slept.slice(3).reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(5000);
  });

  it('hands other errors (404, 409, 422) back at once, and sends nothing once closed', async () => {
    const clock = virtualClock();
    const gate = new ApiGate({ clock });
    for (const code of [400, 404, 409, 422]) {
      let calls = 0;
      await expect(
        gate.call('create jobs', async () => {
          calls += 1;
          throw httpError(code);
        }),
      ).rejects.toMatchObject({ code });
      expect(calls).toBe(1);
    }
    gate.close();
    let called = false;
    await expect(gate.call('get jobs', async () => (called = true))).rejects.toThrow('closed');
    expect(called).toBe(false);
  });

  it.each([
    [{ code: 429 }, true],
    [{ code: 500 }, true],
    [{ code: 501 }, false],
    [{ statusCode: 503 }, true],
    [{ code: 'EPIPE' }, true],
    [{ name: 'FetchError', type: 'system' }, true],
    [{ code: 403 }, false],
    [new Error('boom'), false],
  ])('transient: %j -> %s', (err, transient) => {
    expect(isTransient(err)).toBe(transient);
  });

  it('reads Retry-After as seconds or as a date', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(retryAfterMs(httpError(429, { 'retry-after': '2' }), now)).toBe(2000);
    expect(
      retryAfterMs(httpError(429, { 'retry-after': 'Thu, 01 Jan 2026 00:00:05 GMT' }), now),
    ).toBe(5000);
    expect(retryAfterMs(httpError(429), now)).toBeUndefined();
  });
});

// ---------------------------------------------------------------------------------------

const NS = 'wake';
let server: FakeApiServer | undefined;
let backend: KubernetesBackend | undefined;
afterEach(async () => {
  await backend?.close();
  await server?.stop();
  backend = undefined;
  server = undefined;
});

function jobNamed(name: string): V1Job {
  const labels = { 'app.kubernetes.io/managed-by': 'stoker' };
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name, namespace: NS, labels },
    spec: {
      backoffLimit: 0,
      template: {
        metadata: { labels },
        spec: {
          restartPolicy: 'Never',
          containers: [{ name: 'w', image: 'x:1', command: ['true'] }],
        },
      },
    },
  };
}

const complete = (s: FakeApiServer, name: string) =>
  s.store.mutate<V1Job>('jobs', NS, name, (j) => {
    j.status = {
      conditions: [
        {
          type: 'Complete',
          status: 'True',
          reason: 'CompletionsReached',
          lastTransitionTime: new Date(),
        },
      ],
    };
  });

async function startBackend(quietMs = 60_000): Promise<{ s: FakeApiServer; b: KubernetesBackend }> {
  server = await startFakeApiServer({ bookmarkIntervalMs: 100 });
  const s = server;
  backend = new KubernetesBackend({
    kc: s.kubeConfig({ namespace: NS }),
    namespace: NS,
    log: silentLogger(),
    jobName: (u) => u,
    build: (req) => ({ job: jobNamed(req.unitName) }),
    quietMs,
  });
  await backend.start();
  return { s, b: backend };
}

const within = <T>(p: Promise<T>, ms: number, what: string): Promise<T> =>
  Promise.race([
    p,
    new Promise<T>((_, reject) =>
      setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms).unref(),
    ),
  ]);

describe('wait() wake-ups', () => {
  it('does not lose a change that lands while it reads (the "missed Complete" root cause)', async () => {
    const { s, b } = await startBackend();
    // The cache does not know the Job yet (watches stalled), so wait() reads it with a GET;
    // the GET's answer is held, and stale, while the Job completes and the watch says so.
    const release = s.stallWatches();
    s.store.create('jobs', jobNamed('race'), { namespace: NS });
    let held = false;
    let answer!: () => void;
    const answered = new Promise<void>((r) => (answer = r));
    s.intercept(async (req) => {
      if (req.verb !== 'get' || req.name !== 'race' || held) return undefined;
      const stale = s.store.get('jobs', NS, 'race');
      held = true;
      await answered;
      return { status: 200, body: stale };
    });
    expect(await b.launch({ unitName: 'race' } as never)).toEqual({ attached: true });
    const waited = b.wait('race');
    await eventually('the GET to be held', () => held);
    release();
    await eventually('the cache to hold the Job', () => b.stats().reflectors.jobs.cached === 1);
    complete(s, 'race');
    await eventually(
      'the cache to see the Job complete',
      async () => (await b.observe('race')).phase === 'Succeeded',
    );
    answer();
    // Before the fix, this wait slept until the next event about anything, or a 5 s poll.
    expect((await within(waited, 3000, 'wait')).phase).toBe('Succeeded');
  });

  it('wakes only the wait whose Job changed, and costs no request while nothing changes', async () => {
    const { s, b } = await startBackend();
    const names = Array.from({ length: 40 }, (_, i) => `idle-${i}`);
    for (const n of names) await b.launch({ unitName: n } as never);
    await eventually('the cache to hold every Job', () =>
      names.every((n) => s.store.get('jobs', NS, n)),
    );
    const done: string[] = [];
    const waits = names.map((n) => b.wait(n).then((st) => done.push(`${n} ${st.phase}`)));
    await new Promise((r) => setTimeout(r, 300));
    s.clearRequests();
    await new Promise((r) => setTimeout(r, 2000));
    // 40 units waiting for 2 s: not one request (bookmarks keep the watches alive).
    expect(s.requests.filter((r) => r.verb !== 'watch')).toEqual([]);
    complete(s, 'idle-7');
    await eventually('idle-7 to finish', () => done.length === 1);
    expect(done).toEqual(['idle-7 Succeeded']);
    for (const n of names) if (n !== 'idle-7') complete(s, n);
    await within(Promise.all(waits), 5000, 'the other waits');
    expect(s.requests.filter((r) => r.verb !== 'watch')).toEqual([]);
  });
});

describe('FailedCreate events', () => {
  const event = (message: string, at: string): CoreV1Event =>
    ({
      metadata: { name: `e-${at}` },
      involvedObject: { kind: 'Job', name: 'j' },
      reason: 'FailedCreate',
      type: 'Warning',
      message,
      lastTimestamp: at,
    }) as unknown as CoreV1Event;
  const job = { metadata: { name: 'j', uid: 'u' }, status: {} } as V1Job;

  it.each([
    [
      'Error creating: pods "j-" is forbidden: no PriorityClass with name training was found',
      'MissingPriorityClass',
    ],
    [
      'Error creating: pods "j-x" is forbidden: violates PodSecurity "restricted:latest": privileged',
      'PodSecurityViolation',
    ],
    [
      'Error creating: pods "j-" is forbidden: error looking up service account stoker/worker: serviceaccount "worker" not found',
      'MissingServiceAccount',
    ],
  ])('%s -> Failed, not retried (%s)', (message, reason) => {
    const o = observeJob(job, [], [event(message, '2026-01-01T00:00:00Z')]);
    expect(o.state).toMatchObject({ phase: 'Failed', reason, retryable: false });
    expect(o.state.message).toContain(message);
  });

  it('an exceeded quota keeps waiting, with the message; the newest event counts; pods that exist win', () => {
    const quota =
      'Error creating: pods "j-" is forbidden: exceeded quota: gpu, requested: nvidia.com/gpu=8';
    const o = observeJob(job, [], [event(quota, '2026-01-01T00:00:00Z')]);
    expect(o.state.phase).toBe('Running');
    expect(o.note).toBe(`FailedCreate: ${quota}`);
    expect(
      classifyFailedCreate([
        event('no PriorityClass with name x was found', '2026-01-01T00:00:00Z'),
        event(quota, '2026-01-01T00:01:00Z'),
      ])?.reason,
    ).toBeNull();
    const pod = { metadata: { name: 'j-1' }, status: { phase: 'Running' } };
    expect(
      observeJob(
        job,
        [pod],
        [event('no PriorityClass with name x was found', '2026-01-01T00:00:00Z')],
      ).state.phase,
    ).toBe('Running');
  });
});
