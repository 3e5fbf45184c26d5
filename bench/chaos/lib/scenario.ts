/**
 * The scenario contract: run(ctx, cleanup) starts its own system (ChaosStack), breaks
 * it, lets the run finish, and resolves with the counts plus named checks (did the fault
 * really happen where it was meant to: a kill mid-shard, a resume from a checkpoint, the
 * controller still up). A scenario passes when the run Succeeded, lost and duplicated
 * are 0 and every check holds. `skip` says why a scenario cannot run here.
 */
import type { Cleanup } from '../../lib/harness.js';
import type { ChaosContext } from './stack.js';
import type { Counts } from './workloads.js';

export interface Check {
  what: string;
  ok: boolean;
  /** What was seen, when it is not obvious from `what`. */
  seen?: unknown;
}

export interface Outcome {
  counts: Counts;
  checks: Check[];
  details?: Record<string, unknown>;
}

export interface Scenario {
  name: string;
  /** One sentence: the fault and when it strikes. */
  fault: string;
  /** Why it cannot run here, or null. */
  skip?(ctx: ChaosContext): string | null;
  run(ctx: ChaosContext, cleanup: Cleanup): Promise<Outcome>;
}

export const check = (what: string, ok: boolean, seen?: unknown): Check =>
  seen === undefined ? { what, ok } : { what, ok, seen };

/** The line of a finished scenario: its verdict and every failed check named. */
export function verdict(o: Outcome): { ok: boolean; failures: string[] } {
  const failures: string[] = [];
  const c = o.counts;
  if (c.runPhase !== 'Succeeded') failures.push(`run ended ${c.runPhase}`);
  if (c.lost !== 0) failures.push(`lost ${c.lost} ${c.unit}`);
  if (c.duplicated !== 0) failures.push(`duplicated ${c.duplicated} ${c.unit}`);
  if (c.acked !== c.completed) failures.push(`acked ${c.acked} != completed ${c.completed}`);
  for (const k of o.checks)
    if (!k.ok)
      failures.push(k.seen === undefined ? k.what : `${k.what} (saw ${JSON.stringify(k.seen)})`);
  return { ok: failures.length === 0, failures };
}
