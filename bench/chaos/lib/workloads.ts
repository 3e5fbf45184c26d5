/**
 * The two workloads the scenarios break, and how each is counted from what the system
 * reported and from what is really on disk.
 *
 * Training (dispatched): a TrainingRun of test/fixtures/payloads/train-sim.mjs, STEPS
 *   steps, a checkpoint every CKPT_EVERY. Counted in steps:
 *     acked       the step count of the task's `result` event (what stoker recorded)
 *     completed   the step in the payload's own final.json (what the outputs hold)
 *     lost        STEPS - completed (all of them when the run did not succeed)
 *     duplicated  the payload's `overlap` marker (two attempts alive at once: every
 *                 step of the second one ran twice, counted as 1) plus steps past STEPS
 *     resumed     the step the last attempt started at (starts.jsonl, the payload's record)
 * Sharded (pulled): a Pipeline with one `generate` stage over a pool, running
 *   test/fixtures/payloads/server.mjs in server mode. Counted in items:
 *     acked       items of the shards whose outcome is Succeeded (stoker's shard outcomes)
 *     completed   item ids in the final shard files (stages/gen/shards/shard-*.jsonl)
 *     lost        input ids found in no output file
 *     duplicated  ids found more than once across the output files
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { readTaskProgress } from '../../../common/progress.js';
import { parseSpec } from '../../../common/spec/load.js';
import type { NormalizedSpec } from '../../../common/spec/schema.js';
import { buildRunView } from '../../../orchestrator/views.js';
import { waitFor } from '../../lib/harness.js';
import type { ChaosStack } from './stack.js';

const fixture = (root: string, name: string) => join(root, 'test', 'fixtures', 'payloads', name);

/** What every scenario line reports (README, "Chaos"). */
export interface Counts {
  unit: 'steps' | 'items';
  acked: number;
  completed: number;
  lost: number;
  duplicated: number;
  /** The step the last attempt started at (training); null for sharded work. */
  resumedFromStep: number | null;
  runPhase: string;
}

// ---------------------------------------------------------------------------------------
// Training

export interface Training {
  steps: number;
  stepMs: number;
  ckptEvery: number;
}

export function trainingSpec(root: string, name: string, t: Training): NormalizedSpec {
  return parseSpec(
    stringify({
      apiVersion: 'stoker/v1',
      kind: 'TrainingRun',
      metadata: { name },
      spec: {
        payload: {
          command: [process.execPath, fixture(root, 'train-sim.mjs')],
          env: {
            STEPS: String(t.steps),
            STEP_MS: String(t.stepMs),
            CKPT_EVERY: String(t.ckptEvery),
          },
        },
        retry: { attempts: 3, backoff: { type: 'fixed', delay: '100ms' } },
        terminationGracePeriod: '5s',
      },
    }),
  );
}

export const trainTask = (runId: string) => `${runId}.train`;

/** Wait until the task's recorded progress reaches `step` (and a checkpoint `ckpt`, if given). */
export async function waitStep(
  s: ChaosStack,
  runId: string,
  step: number,
  ckpt = 0,
  timeoutMs = 60_000,
): Promise<{ step: number; checkpoint: number }> {
  return waitFor(
    `task ${trainTask(runId)} at step ${step}, checkpoint ${ckpt}`,
    async () => {
      const p = await readTaskProgress(s.probe, s.keys, trainTask(runId));
      const cur = { step: p.step ?? 0, checkpoint: p.checkpoint?.step ?? 0 };
      return cur.step >= step && cur.checkpoint >= ckpt ? cur : null;
    },
    timeoutMs,
    20,
  );
}

export interface Start {
  attempt: number;
  pid: number;
  resumeFrom: string | null;
  step: number;
}

export interface TrainingCounts extends Counts {
  starts: Start[];
  attempt: number;
  history: Array<{ attempt: number; reason: string }>;
}

export async function countTraining(
  s: ChaosStack,
  runId: string,
  t: Training,
  timeoutMs: number,
): Promise<TrainingCounts> {
  const run = await s.waitTerminalOrNow(runId, timeoutMs);
  const view = await buildRunView(s.store, s.probe, s.keys, runId);
  const task = view.stages[0]?.tasks[0];
  const out = join(run.runDir, 'stages', 'train');
  const starts = readLines(join(out, 'starts.jsonl')).map((l) => JSON.parse(l) as Start);
  const finalFile = join(out, 'final.json');
  const completed = existsSync(finalFile)
    ? (JSON.parse(readFileSync(finalFile, 'utf8')) as { step: number }).step
    : 0;
  const resultSteps = (task?.result as { steps?: number } | null)?.steps;
  const overlap = existsSync(join(out, 'overlap')) ? 1 : 0;
  return {
    unit: 'steps',
    acked: typeof resultSteps === 'number' ? resultSteps : 0,
    completed,
    lost: run.phase === 'Succeeded' ? Math.max(0, t.steps - completed) : t.steps - completed,
    duplicated: overlap + Math.max(0, completed - t.steps),
    resumedFromStep: starts.at(-1)?.step ?? null,
    runPhase: run.phase,
    starts,
    attempt: task?.attempt ?? 0,
    history: (task?.history ?? []).map((h) => ({ attempt: h.attempt, reason: h.reason })),
  };
}

// ---------------------------------------------------------------------------------------
// Sharded

export interface Sharded {
  items: number;
  shardSize: number;
  itemMs: number;
  workers: number;
  /** Pool bounds (scale-down needs room). */
  maxReplicas?: number;
  /** More environment for server.mjs (GATE_ON, SLOW_ON ...). */
  env?: Record<string, string>;
}

export interface ShardedRun {
  runId: string;
  pool: string;
  ids: string[];
  stateDir: string;
}

/** Write the input, submit the stage; the pool is named after the scenario. */
export async function submitSharded(s: ChaosStack, label: string, w: Sharded): Promise<ShardedRun> {
  const input = join(s.dir, 'items.jsonl');
  const ids = Array.from({ length: w.items }, (_, i) => `item-${String(i).padStart(6, '0')}`);
  writeFileSync(input, ids.map((id) => `${JSON.stringify({ id })}\n`).join(''));
  const pool = `chaos-${label}`;
  const spec = parseSpec(
    stringify({
      apiVersion: 'stoker/v1',
      kind: 'Pipeline',
      metadata: { name: `chaos-${label}` },
      spec: {
        stages: [
          {
            name: 'gen',
            kind: 'generate',
            input: { file: input, shardSize: w.shardSize },
            pool: {
              name: pool,
              minReplicas: 0,
              replicas: w.workers,
              maxReplicas: w.maxReplicas ?? w.workers,
            },
            failurePolicy: { maxFailedShards: 0 },
            retry: { attempts: 5, backoff: { type: 'fixed', delay: '100ms' } },
            terminationGracePeriod: '5s',
            payload: {
              command: [process.execPath, fixture(s.ctx.root, 'server.mjs')],
              env: { ITEM_MS: String(w.itemMs), STATE_DIR: s.dir, ...w.env },
            },
          },
        ],
      },
    }),
  );
  return { runId: await s.submit(spec), pool, ids, stateDir: s.dir };
}

/** Shards the pool has completed so far (its completions zset). */
export async function shardsDone(s: ChaosStack, r: ShardedRun): Promise<number> {
  return s.probe.zcard(s.keys.poolCompletions(r.pool));
}

export interface ShardedCounts extends Counts {
  shards: number;
  /** Shards whose successful attempt was not their first (a kill made them run again). */
  shardsRetried: number;
}

export async function countSharded(
  s: ChaosStack,
  r: ShardedRun,
  timeoutMs: number,
): Promise<ShardedCounts> {
  const run = await s.waitTerminalOrNow(r.runId, timeoutMs);
  const outcomes = await s.store.shardOutcomes(r.runId, 'gen');
  const succeeded = outcomes.filter((o) => o.phase === 'Succeeded');
  const dir = join(run.runDir, 'stages', 'gen', 'shards');
  const files = existsSync(dir) ? readdirSync(dir).filter((f) => /^shard-\d+\.jsonl$/.test(f)) : [];
  const seen = new Map<string, number>();
  for (const f of files) {
    for (const line of readLines(join(dir, f))) {
      const id = (JSON.parse(line) as { id: string }).id;
      seen.set(id, (seen.get(id) ?? 0) + 1);
    }
  }
  let completed = 0;
  let duplicated = 0;
  for (const n of seen.values()) {
    completed += n;
    duplicated += n - 1;
  }
  return {
    unit: 'items',
    acked: succeeded.reduce((a, o) => a + o.items, 0),
    completed,
    lost: r.ids.filter((id) => !seen.has(id)).length,
    duplicated,
    resumedFromStep: null,
    runPhase: run.phase,
    shards: outcomes.length,
    shardsRetried: succeeded.filter((o) => o.attempt > 1).length,
  };
}

function readLines(file: string): string[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '');
}
