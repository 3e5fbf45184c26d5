/**
 * api-server-faults: `stoker up --backend kubernetes --simulate` (the kubernetes backend
 * against the simulated API server, whose kubelet runs each pod as a local process) with
 * the API server misbehaving from the start, seeded (STOKER_SIMULATE_FAULTS:
 * testing/kube-sim/apiserver/random-faults.ts): 500s, 429 with Retry-After, connections
 * dropped before serving and after (a create done, its answer lost), requests held 3 s
 * then dropped, creates made and answered 409, watches cut mid-stream. The run has a
 * dispatched stage (train-sim.mjs, a Job per attempt) and a pulled stage (`gen`, a pool
 * of 2 worker Jobs) side by side; the pool is scaled to 3 and back to 1 while shards
 * flow, so Jobs are created and deleted under the faults too.
 *
 * Counted in items (the pulled stage, the line's figures); the training's steps and
 * every Job and pod the cluster created (STOKER_SIMULATE_RECORD: one line per Job, pod
 * and fault, deleted ones included) are held by checks: one Job per attempt and per pool
 * worker, one pod per Job, every fault kind met.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { parseSpec } from '../../common/spec/load.js';
import { readWorkers, scalePool } from '../../orchestrator/pools.js';
import { waitFor } from '../lib/harness.js';
import { check, type Scenario } from './lib/scenario.js';
import type { ChaosStack } from './lib/stack.js';
import { ChaosStack as Stack } from './lib/stack.js';
import {
  countSharded,
  countTraining,
  shardsDone,
  type ShardedRun,
  type Training,
} from './lib/workloads.js';

const SEED = 20261207;
const FAULTS = `seed=${SEED},rate=0.4,conflictRate=0.5,watchRate=0.6,holdMs=3000,cutMinMs=500,cutMaxMs=5000`;
const KINDS = ['error500', 'throttle429', 'reset', 'lostAnswer', 'timeout', 'conflict', 'watchCut'];

const fixture = (root: string, name: string) => join(root, 'test', 'fixtures', 'payloads', name);

/** A Pipeline: `train` (dispatched) and `gen` (pulled, pool of 2) side by side. */
async function submitBoth(s: ChaosStack, t: Training, items: number): Promise<ShardedRun> {
  const input = join(s.dir, 'items.jsonl');
  const ids = Array.from({ length: items }, (_, i) => `item-${String(i).padStart(6, '0')}`);
  writeFileSync(input, ids.map((id) => `${JSON.stringify({ id })}\n`).join(''));
  const retry = { attempts: 5, backoff: { type: 'fixed', delay: '100ms' } };
  const pool = 'chaos-api-faults';
  const spec = parseSpec(
    stringify({
      apiVersion: 'stoker/v1',
      kind: 'Pipeline',
      metadata: { name: 'chaos-api-faults' },
      spec: {
        stages: [
          {
            name: 'train',
            kind: 'train',
            retry,
            terminationGracePeriod: '5s',
            payload: {
              command: [process.execPath, fixture(s.ctx.root, 'train-sim.mjs')],
              env: {
                STEPS: String(t.steps),
                STEP_MS: String(t.stepMs),
                CKPT_EVERY: String(t.ckptEvery),
              },
            },
          },
          {
            name: 'gen',
            kind: 'generate',
            input: { file: input, shardSize: 4 },
            pool: { name: pool, minReplicas: 0, replicas: 2, maxReplicas: 3 },
            failurePolicy: { maxFailedShards: 0 },
            retry,
            terminationGracePeriod: '10s',
            payload: {
              command: [process.execPath, fixture(s.ctx.root, 'server.mjs')],
              env: { ITEM_MS: '80', STATE_DIR: s.dir },
            },
          },
        ],
      },
    }),
  );
  return { runId: await s.submit(spec), pool, ids, stateDir: s.dir };
}

interface Recorded {
  event: 'created' | 'fault';
  resource?: string;
  name?: string;
  owner?: string | null;
  kind?: string;
  annotations?: Record<string, string>;
}

/** What the simulated cluster recorded: Jobs created more than once, pods per Job, faults. */
function readRecord(file: string) {
  const lines = existsSync(file)
    ? readFileSync(file, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Recorded)
    : [];
  const jobs = new Map<string, number>();
  const podsOf = new Map<string, number>();
  const faults: Record<string, number> = Object.fromEntries(KINDS.map((k) => [k, 0]));
  let trainJobs = 0;
  for (const l of lines) {
    if (l.event === 'fault' && l.kind) faults[l.kind] = (faults[l.kind] ?? 0) + 1;
    if (l.event !== 'created' || !l.name) continue;
    if (l.resource === 'jobs') {
      jobs.set(l.name, (jobs.get(l.name) ?? 0) + 1);
      if (!l.annotations?.['stoker.dev/pool']) trainJobs += 1;
    }
    if (l.resource === 'pods' && l.owner) podsOf.set(l.owner, (podsOf.get(l.owner) ?? 0) + 1);
  }
  return {
    jobs: jobs.size,
    trainJobs,
    jobsCreatedTwice: [...jobs].filter(([, n]) => n > 1).map(([j]) => j),
    jobsWithTwoPods: [...podsOf].filter(([, n]) => n > 1).map(([j]) => j),
    pods: [...podsOf.values()].reduce((a, n) => a + n, 0),
    faults,
  };
}

/**
 * Scale the pool 2 -> 3 -> 1 -> 3 -> 1 while shards flow, each step once its share of
 * the shards is done and the pool has reached the last size (workers registered): Jobs
 * created and deleted under the faults. Returns the sizes reached (it stops early if the
 * stage ends first).
 */
async function churnPool(s: ChaosStack, r: ShardedRun, total: number): Promise<number[]> {
  const reached: number[] = [];
  const ended = async () =>
    ['Succeeded', 'Failed', 'Cancelled'].includes((await s.store.getRun(r.runId))?.phase ?? '');
  for (const [share, replicas] of [
    [1 / 8, 3],
    [2 / 8, 1],
    [4 / 8, 3],
    [6 / 8, 1],
  ] as const) {
    await waitFor(
      `${Math.ceil(total * share)} shards done`,
      async () => ((await shardsDone(s, r)) >= total * share || (await ended()) ? true : null),
      120_000,
      50,
    );
    if (await ended()) break;
    await scalePool(s.probe, s.keys, r.pool, replicas);
    const n = await waitFor(
      `the pool at ${replicas} workers`,
      async () => {
        const live = (await readWorkers(s.probe, s.keys, r.pool)).length;
        return live === replicas || (await ended()) ? live : null;
      },
      120_000,
      50,
    );
    reached.push(n);
  }
  return reached;
}

export const apiServerFaults: Scenario = {
  name: 'api-server-faults',
  fault: `the simulated Kubernetes API server answering 500, 429 (Retry-After), dropped connections and answers, 3 s holds, 409 on create and cut watches (seed ${SEED}: 40% of requests, half the creates, 60% of the watches) under a training stage and a pool stage`,
  async run(ctx, cleanup) {
    const s = await Stack.start(ctx, cleanup, 'api-server-faults');
    const recordFile = join(s.dir, 'kube-record.jsonl');
    const up = await s.up({ STOKER_SIMULATE_FAULTS: FAULTS, STOKER_SIMULATE_RECORD: recordFile }, [
      '--backend',
      'kubernetes',
      '--simulate',
    ]);
    const t: Training = ctx.quick
      ? { steps: 100, stepMs: 30, ckptEvery: 10 }
      : { steps: 300, stepMs: 30, ckptEvery: 20 };
    const items = ctx.quick ? 120 : 400;
    const r = await submitBoth(s, t, items);
    const poolSizes = await churnPool(s, r, items / 4);
    const c = await countSharded(s, r, 240_000);
    const tr = await countTraining(s, r.runId, t, 60_000);
    const rec = readRecord(recordFile);
    const missing = KINDS.filter((k) => (rec.faults[k] ?? 0) === 0);
    return {
      counts: c,
      checks: [
        check(
          'the training: steps exact, one start per attempt, never two at once',
          tr.completed === t.steps &&
            tr.duplicated === 0 &&
            tr.starts.length === tr.attempt &&
            tr.acked === t.steps,
          {
            completed: tr.completed,
            acked: tr.acked,
            attempt: tr.attempt,
            starts: tr.starts.length,
          },
        ),
        check('one Job per attempt: train Jobs = attempts', rec.trainJobs === tr.attempt, {
          trainJobs: rec.trainJobs,
          attempts: tr.attempt,
        }),
        check('no Job created twice', rec.jobsCreatedTwice.length === 0, rec.jobsCreatedTwice),
        check('no Job with two pods', rec.jobsWithTwoPods.length === 0, rec.jobsWithTwoPods),
        check('every fault kind was injected', missing.length === 0, { missing }),
        check('stoker up never exited', !up.hasExited()),
      ],
      details: {
        faults: rec.faults,
        poolSizes,
        jobs: rec.jobs,
        pods: rec.pods,
        trainAttempts: tr.attempt,
        trainSteps: tr.completed,
        shards: c.shards,
        shardsRetried: c.shardsRetried,
        ...(c.runPhase === 'Succeeded' ? {} : { upStderr: up.stderr().slice(-3000) }),
      },
    };
  },
};
