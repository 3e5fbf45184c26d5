/**
 * API-server faults against the real kubernetes backend, end to end (issue 4, "faults"):
 * a whole stoker on the simulated cluster, with the fake API server misbehaving. Each
 * test checks that the run converges, and counts the requests the backend sent (the
 * fake API server records every one) to show that the request rate stays bounded.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { eventually } from '../util/redis-server.js';
import { nodePayloadRun } from '../util/system.js';
import { NS, startK8sCluster, type K8sHarness, type K8sSystem } from './harness.js';

let h: K8sHarness | undefined;
afterEach(async () => {
  await h?.stop();
  h = undefined;
});

/** A training run whose payload takes about steps × stepMs. */
const run = (name: string, steps = 10, stepMs = 50, attempts = 1) =>
  nodePayloadRun(
    name,
    'train-sim.mjs',
    { STEPS: steps, STEP_MS: stepMs },
    { retry: { attempts, backoff: { type: 'fixed', delay: '100ms' } } },
  );

async function succeeded(s: K8sSystem, runId: string, timeoutMs = 60_000) {
  const view = await s
    .waitForPhase(runId, ['Succeeded', 'Failed'], timeoutMs)
    .catch((err: Error) => {
      throw new Error(`${err.message}\n${h?.dump()}`);
    });
  const task = view.stages[0]?.tasks[0];
  expect(view.phase, `${task?.message ?? ''}\n${h?.dump()}`).toBe('Succeeded');
  return { view, task: task! };
}

const jobCreates = () =>
  h!.cluster.server.requests.filter((r) => r.verb === 'create' && r.resource === 'jobs');

describe('API-server faults, end to end', () => {
  it('a create whose answer was lost is retried, answered 409, and re-attached: one Job, no attempt spent', async () => {
    h = await startK8sCluster();
    const s = await h.system();
    // The API server creates the Job, then the connection drops before the answer.
    h.cluster.server.failNext({ verb: 'create', resource: 'jobs' }, { dropAnswer: true });
    const runId = await s.submit(run('lost-answer'));
    const { task } = await succeeded(s, runId);
    expect(task.attempt).toBe(1);
    expect(h.jobs()).toHaveLength(1);
    const creates = jobCreates();
    expect(creates.map((r) => r.status)).toEqual([0, 409]);
    expect(s.k8s.stats().retries).toBe(1);
  });

  it('a create the API server never answers (the Job made, no answer) is aborted after the request timeout and retried: its 409 re-attaches, one Job', async () => {
    h = await startK8sCluster();
    const s = await h.system({ requestTimeoutMs: 1500 });
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let hung = false;
    // The first create of a Job is carried out, and then nothing: no answer, no close
    // (a hung API server, a network that drops packets). Without a timeout of its own
    // the launch waited on it forever.
    h.cluster.server.intercept(async (req) => {
      if (hung || req.verb !== 'create' || req.resource !== 'jobs') return undefined;
      hung = true;
      h!.cluster.store.create('jobs', req.body, { namespace: req.namespace });
      await held;
      return { dropConnection: true };
    });
    try {
      const runId = await s.submit(run('hung-create'));
      const { task } = await succeeded(s, runId);
      expect(task.attempt).toBe(1);
      expect(h.jobs()).toHaveLength(1);
      expect(jobCreates().map((r) => r.status)).toEqual([0, 409]);
      expect(s.k8s.stats().retries).toBe(1);
    } finally {
      release();
    }
  });

  it('the controller killed between taking a task and creating its Job, and again after: exactly one Job for the attempt', async () => {
    h = await startK8sCluster();
    const first = await h.system();
    // 1. The first controller takes the task and sends the create; it dies before the API
    //    server gets it (the request is held, then its connection dropped).
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let holding = false;
    const unhold = h.cluster.server.intercept(async (req) => {
      if (req.verb !== 'create' || req.resource !== 'jobs' || holding) return undefined;
      holding = true;
      await held;
      return { dropConnection: true };
    });
    const runId = await first.submit(run('killed', 30, 100, 2));
    await eventually('the first create to be in flight', () => holding, 30_000);
    await h.kill(first);
    release();
    unhold();
    expect(h.jobs()).toHaveLength(0);

    // 2. The second controller finds the task Running with attempt 1 and no Job: it
    //    launches attempt 1 (not 2). It dies once the Job runs.
    const second = await h.system({ prefix: first.prefix });
    await eventually(
      'a running pod',
      () => h!.pods().some((p) => p.status?.phase === 'Running'),
      60_000,
    );
    await h.kill(second);

    // 3. The third re-attaches to that Job and sees it through.
    const third = await h.system({ prefix: first.prefix });
    const { task } = await succeeded(third, runId, 90_000);
    expect(task.attempt).toBe(1);
    const names = h.jobs().map((j) => j.metadata?.name);
    expect(names).toHaveLength(1);
    expect(names[0]).toMatch(/-a1$/);
    // One create reached the API server and made the Job; none came after it.
    expect(jobCreates().filter((r) => r.status === 201)).toHaveLength(1);
    expect(jobCreates().filter((r) => r.status === 409)).toHaveLength(0);
  });

  it('a standby controller waits while the leader runs, then takes over its running Job when the leader dies', async () => {
    h = await startK8sCluster();
    const leader = await h.system();
    const runId = await leader.submit(run('standby', 40, 100));
    await eventually(
      'a running pod',
      () => h!.pods().some((p) => p.status?.phase === 'Running'),
      60_000,
    );
    // The standby starts now and blocks on the Redis lock: it creates no backend, so it
    // sends nothing to the API server and deletes nothing.
    const before = h.backendRequests().length;
    let standby: K8sSystem | undefined;
    const starting = h.system({ prefix: leader.prefix }).then((s) => (standby = s));
    await new Promise((r) => setTimeout(r, 1500));
    expect(standby).toBeUndefined();
    expect(h.backendRequests().length - before).toBeLessThan(5); // the leader's own
    await h.kill(leader);
    await starting;
    const { task } = await succeeded(standby!, runId, 90_000);
    // It re-attached to the Job the leader created: one Job, attempt 1, one create.
    expect(task.attempt).toBe(1);
    expect(h.jobs()).toHaveLength(1);
    expect(jobCreates()).toHaveLength(1);
  });

  it('a watch that stalls (no events, no bookmarks): the quiet-period relist still converges, one list per quiet period', async () => {
    h = await startK8sCluster({ server: { bookmarkIntervalMs: 200 } });
    const s = await h.system({ quietMs: 1500 });
    const listsBefore = h.cluster.server.countRequests({ verb: 'list' });
    const release = h.cluster.server.stallWatches();
    const t0 = Date.now();
    try {
      const runId = await s.submit(run('stalled', 10, 50));
      await succeeded(s, runId);
    } finally {
      release();
    }
    const seconds = (Date.now() - t0) / 1000;
    const stats = s.k8s.stats();
    expect(stats.reflectors.jobs.quietAborts).toBeGreaterThan(0);
    // Three reflectors, each at most one list per quiet period (1.5 s), plus slack.
    const lists = h.cluster.server.countRequests({ verb: 'list' }) - listsBefore;
    expect(lists).toBeLessThanOrEqual(3 * Math.ceil(seconds / 1.5) + 6);
    expect(h.cluster.server.peakRequests(1000, { verb: 'list' })).toBeLessThanOrEqual(6);
    // Nothing polls Jobs one by one.
    expect(h.cluster.server.countRequests({ verb: 'get', resource: 'jobs' })).toBeLessThanOrEqual(
      1,
    );
  });

  it('a watch answered 410 Gone lists again and converges', async () => {
    h = await startK8sCluster({ server: { bookmarkIntervalMs: 200 } });
    const s = await h.system();
    const runId = await s.submit(run('gone', 30, 50));
    await eventually(
      'a running pod',
      () => h!.pods().some((p) => p.status?.phase === 'Running'),
      30_000,
    );
    const lists = h.cluster.server.countRequests({ verb: 'list' });
    // History compacted while the watches are cut: each resumes from a version that is
    // too old, gets an ERROR event with a 410 Status, and lists again.
    h.cluster.server.expireHistory();
    h.cluster.server.closeWatches();
    await succeeded(s, runId);
    const stats = s.k8s.stats();
    for (const r of ['jobs', 'pods', 'events'] as const)
      expect(stats.reflectors[r].gone, r).toBeGreaterThanOrEqual(1);
    // One relist per reflector, not a storm.
    expect(h.cluster.server.countRequests({ verb: 'list' }) - lists).toBeLessThanOrEqual(6);
  });

  it('an API server that restarts mid-run (refused for 3 s, then a fresh watch cache) is reconnected to with backoff', async () => {
    h = await startK8sCluster({ server: { bookmarkIntervalMs: 200 } });
    const s = await h.system();
    const runId = await s.submit(run('restart', 40, 100));
    await eventually(
      'a running pod',
      () => h!.pods().some((p) => p.status?.phase === 'Running'),
      30_000,
    );
    const before = s.k8s.stats();
    await h.cluster.server.restart(3000, { freshWatchCache: true });
    await succeeded(s, runId);
    // The run can finish (through the jobs and pods watches) while the events watch is
    // still in its backoff: wait until every reflector has resumed and met the 410.
    await eventually('every reflector resumed after the restart', () =>
      (['jobs', 'pods', 'events'] as const).every(
        (r) => s.k8s.stats().reflectors[r].gone > before.reflectors[r].gone,
      ),
    );
    const after = s.k8s.stats();
    for (const r of ['jobs', 'pods', 'events'] as const) {
      const watches = after.reflectors[r].watches - before.reflectors[r].watches;
      // Backoff from 0.5 s doubling: about 3 tries in 3 s, then one resumed watch (410),
      // then one after the relist.
      expect(watches, r).toBeGreaterThanOrEqual(2);
      expect(watches, r).toBeLessThanOrEqual(8);
      expect(after.reflectors[r].gone - before.reflectors[r].gone, r).toBeGreaterThanOrEqual(1);
    }
    expect(h.cluster.server.peakRequests(1000)).toBeLessThanOrEqual(15);
  });

  it('a create refused while the API server is down is retried with backoff until it is back', async () => {
    h = await startK8sCluster();
    const s = await h.system();
    h.cluster.server.failNext({ verb: 'create', resource: 'jobs' }, { dropConnection: true }, 3);
    h.cluster.server.failNext({ verb: 'create', resource: 'jobs' }, { status: 503 }, 2);
    const runId = await s.submit(run('unavailable'));
    const { task } = await succeeded(s, runId);
    expect(task.attempt).toBe(1);
    expect(jobCreates().map((r) => r.status)).toEqual([0, 0, 0, 503, 503, 201]);
    // Exponential backoff from 250 ms: the six tries spread over more than 2 s.
    const creates = jobCreates();
    expect(creates[5]!.at - creates[0]!.at).toBeGreaterThan(2000);
  });

  it('429 with Retry-After is honoured: nothing is sent again before the server said, and the rate stays bounded', async () => {
    h = await startK8sCluster();
    const s = await h.system({ qps: 5, burst: 5 });
    const start = h.cluster.server.requests.length;
    // Every request the backend makes (not the watches) is refused twice with Retry-After 1.
    h.cluster.server.throttle((r) => r.verb !== 'watch', 1, 2);
    const runs = await Promise.all(
      ['a', 'b', 'c'].map((n) => s.submit(run(`throttled-${n}`, 5, 20))),
    );
    for (const id of runs) await succeeded(s, id);
    const sent = h.cluster.server.requests.slice(start).filter((r) => r.verb !== 'watch');
    const throttled = sent.filter((r) => r.status === 429);
    expect(throttled).toHaveLength(2);
    // After each 429 the gate paused everything for the Retry-After: nothing went out
    // (beyond what was already on its way) until a second had passed.
    for (const t of throttled) {
      const during = sent.filter((r) => r.at > t.at + 300 && r.at < t.at + 950);
      expect(during, JSON.stringify(during)).toEqual([]);
    }
    expect(
      sent.filter((r) => r.verb === 'create' && r.resource === 'jobs' && r.status === 201),
    ).toHaveLength(3);
    // 5 per second with a burst of 5: never more than 10 in any second.
    expect(
      h.cluster.server.peakRequests(1000, { namespace: NS, verb: 'create' }),
    ).toBeLessThanOrEqual(10);
    expect(s.k8s.stats().retries).toBe(2);
  });
});
