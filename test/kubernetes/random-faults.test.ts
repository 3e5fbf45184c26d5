/**
 * Seeded random API-server faults (testing/kube-sim/apiserver/random-faults.ts): the same
 * seed decides the same faults, and a whole stoker on the simulated cluster finishes a
 * run with a dispatched stage and a pulled (pool) stage while its API server answers
 * 500s, 429s with Retry-After, drops connections before and after serving, holds
 * requests, answers creates 409 after making the object, and cuts watches mid-stream:
 * every item exactly once, the steps exact, one Job (and one pod) per attempt and per
 * pool worker.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  parseFaultSpec,
  randomFaults,
  type RandomFaultOptions,
} from '../../testing/kube-sim/apiserver/random-faults.js';
import type { InterceptedRequest } from '../../testing/kube-sim/apiserver/types.js';
import { payloadFixture, specFrom } from '../util/system.js';
import { startK8sCluster, type K8sHarness } from './harness.js';

let h: K8sHarness | undefined;
let dir: string | undefined;
afterEach(async () => {
  await h?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
  h = undefined;
  dir = undefined;
});

const request = (verb: InterceptedRequest['verb'], name: string): InterceptedRequest => ({
  seq: 0,
  method: verb === 'create' ? 'POST' : 'GET',
  path: `/apis/batch/v1/namespaces/stoker/jobs${verb === 'create' ? '' : `/${name}`}`,
  query: new URLSearchParams(),
  headers: {},
  verb,
  resource: 'jobs',
  namespace: 'stoker',
  name: verb === 'create' ? undefined : name,
});

/** The faults one interceptor gives a fixed sequence of requests. */
function decisions(opts: RandomFaultOptions): string[] {
  const f = randomFaults(opts);
  const out: string[] = [];
  for (let i = 0; i < 200; i++) {
    const r = f.interceptor(request(i % 3 === 0 ? 'create' : 'get', `job-${i % 7}`));
    out.push(r ? JSON.stringify(r) : '-');
  }
  return out;
}

describe('seeded random faults', () => {
  it('decide the same faults for the same seed, other faults for another, exactly at the rate asked', () => {
    const opts = { seed: 7, rate: 0.3 };
    const a = decisions(opts);
    expect(decisions(opts)).toEqual(a);
    expect(decisions({ ...opts, seed: 8 })).not.toEqual(a);
    // Exactly the rate, evenly spread: 60 of 200, never more than 4 in a row without one.
    expect(a.filter((d) => d !== '-')).toHaveLength(60);
    expect(a.join(' ')).not.toMatch(/(- ){4}-/);
  });

  it('take the kinds asked for in turn, and answer 409 only to creates', () => {
    const f = randomFaults({ seed: 3, rate: 1, kinds: ['reset', 'error500'] });
    for (let i = 0; i < 50; i++) f.interceptor(request('get', `g-${i}`));
    expect(f.counts).toMatchObject({ reset: 25, error500: 25, timeout: 0, throttle429: 0 });
    const c = randomFaults({ seed: 3, rate: 0, conflictRate: 1 });
    for (let i = 0; i < 20; i++) {
      expect(c.interceptor(request('create', `c-${i}`))).toEqual({ replaceAnswer: 409 });
      expect(c.interceptor(request('get', `g-${i}`))).toBeUndefined();
    }
    expect(c.counts.conflict).toBe(20);
  });

  it('reads a fault spec and refuses an unknown key or kind', () => {
    expect(
      parseFaultSpec(
        'seed=7,rate=0.1,conflictRate=0.5,watchRate=0.5,holdMs=3000,kinds=error500+reset',
      ),
    ).toEqual({
      seed: 7,
      rate: 0.1,
      conflictRate: 0.5,
      watchRate: 0.5,
      holdMs: 3000,
      watchCutMs: [1000, 10_000],
      kinds: ['error500', 'reset'],
    });
    expect(() => parseFaultSpec('seed=1,rate=0.1,colour=red')).toThrow(/unknown colour/);
    expect(() => parseFaultSpec('seed=1,rate=0.1,kinds=fire')).toThrow(/unknown fault fire/);
    expect(() => parseFaultSpec('rate=0.1')).toThrow(/seed is required/);
  });
});

describe('a run on the simulated cluster under seeded API-server faults', () => {
  it('finishes a training stage and a pool stage: every item once, the steps exact, one Job per attempt and per worker', async () => {
    dir = mkdtempSync(join(tmpdir(), 'stoker-k8s-random-faults-'));
    h = await startK8sCluster({
      server: {
        bookmarkIntervalMs: 200,
        faults: {
          seed: 20261207,
          rate: 0.4,
          conflictRate: 0.5,
          watchRate: 0.5,
          holdMs: 2000,
          watchCutMs: [300, 3000],
        },
      },
      kubelet: {
        extraEnv: {
          STOKER_HOME: join(dir, 'home'),
          STOKER_LOCK_DURATION_MS: '4000',
          STOKER_STALLED_INTERVAL_MS: '1000',
        },
      },
    });
    // Every Job and pod ever created, by name (they are deleted once finished).
    const created = { jobs: new Map<string, number>(), pods: new Map<string, string>() };
    h.cluster.store.subscribe((ev) => {
      if (ev.type !== 'ADDED') return;
      const name = ev.object.metadata?.name ?? '';
      if (ev.resource === 'jobs') created.jobs.set(name, (created.jobs.get(name) ?? 0) + 1);
      if (ev.resource === 'pods')
        created.pods.set(name, ev.object.metadata?.ownerReferences?.[0]?.name ?? '');
    });
    const s = await h.system();
    const items = Array.from({ length: 60 }, (_, i) => `item-${String(i).padStart(3, '0')}`);
    const input = join(dir, 'items.jsonl');
    mkdirSync(join(dir, 'state'));
    writeFileSync(input, items.map((id) => `${JSON.stringify({ id })}\n`).join(''));
    const retry = { attempts: 5, backoff: { type: 'fixed', delay: '100ms' } };
    const runId = await s.submit(
      specFrom({
        apiVersion: 'stoker/v1',
        kind: 'Pipeline',
        metadata: { name: 'random-faults' },
        spec: {
          stages: [
            {
              name: 'train',
              kind: 'train',
              retry,
              payload: {
                command: [process.execPath, payloadFixture('train-sim.mjs')],
                env: { STEPS: '60', STEP_MS: '50', CKPT_EVERY: '10' },
              },
            },
            {
              name: 'gen',
              kind: 'generate',
              input: { file: input, shardSize: 4 },
              pool: { name: 'gen-faults', minReplicas: 0, maxReplicas: 2, replicas: 2 },
              failurePolicy: { maxFailedShards: 0 },
              retry,
              terminationGracePeriod: '10s',
              payload: {
                command: [process.execPath, payloadFixture('server.mjs')],
                env: { ITEM_MS: '20', STATE_DIR: join(dir, 'state') },
              },
            },
          ],
        },
      }),
    );
    const view = await s
      .waitForPhase(runId, ['Succeeded', 'Failed'], 150_000)
      .catch((err: Error) => {
        throw new Error(`${err.message}\n${h?.dump()}`);
      });
    expect(view.phase, h.dump()).toBe('Succeeded');
    const counts = h.cluster.server.faultCounts!;
    // The faults happened: at least one of every request kind, and cut watches.
    for (const k of Object.keys(counts) as (keyof typeof counts)[])
      expect(counts[k], `${k}: ${JSON.stringify(counts)}`).toBeGreaterThan(0);

    // Every item once across the shard outputs.
    const out = join(view.runDir, 'stages', 'gen', 'shards');
    const ids = readdirSync(out)
      .filter((f) => /^shard-\d+\.jsonl$/.test(f))
      .flatMap((f) => readFileSync(join(out, f), 'utf8').split('\n').filter(Boolean))
      .map((l) => (JSON.parse(l) as { id: string }).id);
    expect(ids.sort()).toEqual(items);
    // The training's steps exact, its attempts never overlapping.
    const train = join(view.runDir, 'stages', 'train');
    expect(JSON.parse(readFileSync(join(train, 'final.json'), 'utf8'))).toMatchObject({ step: 60 });
    expect(readdirSync(train)).not.toContain('overlap');
    // One Job per attempt and per pool worker (each name created once), one pod each.
    const twice = [...created.jobs].filter(([, n]) => n > 1);
    expect(twice).toEqual([]);
    const podsPerJob = new Map<string, number>();
    for (const job of created.pods.values()) podsPerJob.set(job, (podsPerJob.get(job) ?? 0) + 1);
    expect([...podsPerJob].filter(([, n]) => n > 1)).toEqual([]);
    const trainJobs = [...created.jobs.keys()].filter((n) => !n.startsWith('pool-'));
    expect(trainJobs.length).toBe(view.stages[0]?.tasks[0]?.attempt);
  }, 200_000);
});
