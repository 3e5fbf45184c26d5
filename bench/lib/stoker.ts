/**
 * A whole stoker (controller, dispatcher, local backend) on the bench's Redis, as
 * `stoker up` composes it, with default timings: the numbers are the product's, not a
 * test configuration's. Workers start from compiled dist/ (see bench/index.ts). Each
 * benchmark gets its own key prefix and home directory.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { silentLogger } from '../../common/logger.js';
import type { RunRecord } from '../../orchestrator/run-record.js';
import { parseSpec } from '../../common/spec/load.js';
import type { NormalizedSpec } from '../../common/spec/schema.js';
import { unitNameFor } from '../../orchestrator/dispatcher.js';
import { taskIdFor } from '../../orchestrator/store.js';
import { startSystem, type System } from '../../orchestrator/system.js';
import { deleteKeysWithPrefix } from '../../testing/redis-keys.js';
import { type BenchContext, type Cleanup, nowMs, waitFor } from './harness.js';

export interface BenchSystem {
  sys: System;
  prefix: string;
  home: string;
  /** Submit a run; `submittedAt` is nowMs() just before the submit call. */
  submit(spec: NormalizedSpec): Promise<{ runId: string; submittedAt: number }>;
  /** Poll the run record until its phase is terminal. */
  waitTerminal(runId: string, timeoutMs: number, everyMs?: number): Promise<RunRecord>;
}

const TERMINAL = new Set(['Succeeded', 'Failed', 'Cancelled']);

export async function startBenchSystem(
  ctx: BenchContext,
  cleanup: Cleanup,
  label: string,
  concurrency: { train: number; steps: number },
): Promise<BenchSystem> {
  const prefix = `bench-${label}-${process.pid}-${Math.random().toString(36).slice(2, 8)}:`;
  const home = mkdtempSync(join(ctx.tmpRoot, `${label}-home-`));
  cleanup.defer(`remove ${home}`, () => rmSync(home, { recursive: true, force: true }));
  cleanup.defer(`delete keys ${prefix}*`, () => deleteKeysWithPrefix(ctx.redisUrl, prefix));
  const sys = await startSystem({
    redisUrl: ctx.redisUrl,
    prefix,
    log: silentLogger(),
    concurrency,
    stokerCommand: ctx.stokerCommand,
  });
  cleanup.defer(`stop stoker ${label}`, () => sys.stop('force'));
  return benchSystemHandle(sys, prefix, home);
}

/** submit/waitTerminal around a started system (shared with bench/lib/pools.ts). */
export function benchSystemHandle(sys: System, prefix: string, home: string): BenchSystem {
  return {
    sys,
    prefix,
    home,
    async submit(spec) {
      const submittedAt = nowMs();
      const run = await sys.store.createRun(spec, { home });
      return { runId: run.id, submittedAt };
    },
    waitTerminal(runId, timeoutMs, everyMs = 20) {
      return waitFor(
        `run ${runId} to finish`,
        async () => {
          const run = await sys.store.getRun(runId);
          return run && TERMINAL.has(run.phase) ? run : null;
        },
        timeoutMs,
        everyMs,
      );
    },
  };
}

/** The unit (first attempt) of a TrainingRun's single `train` stage. */
export function trainUnit(runId: string): { taskId: string; unit: string } {
  const taskId = taskIdFor(runId, 'train');
  return { taskId, unit: unitNameFor(taskId, 1) };
}

/**
 * A TrainingRun through the real spec loader. One attempt: a benchmark must see a
 * failure, not a retried success with the retry's time folded into the number.
 */
export function benchRun(
  name: string,
  command: string[],
  env: Record<string, string> = {},
): NormalizedSpec {
  return parseSpec(
    stringify({
      apiVersion: 'stoker/v1',
      kind: 'TrainingRun',
      metadata: { name },
      spec: {
        payload: { command, env },
        retry: { attempts: 1 },
        terminationGracePeriod: '5s',
      },
    }),
  );
}

/** Describe why a run did not succeed, from its record and its task's status. */
export async function failureOf(b: BenchSystem, run: RunRecord): Promise<string> {
  const { taskId } = trainUnit(run.id);
  const task = await b.sys.store.getTask(taskId);
  const s = task?.status;
  return `run ${run.id} ended ${run.phase}: ${run.message ?? ''}${s ? ` (task ${s.phase} ${s.reason ?? ''}: ${s.message ?? ''})` : ''}`;
}
