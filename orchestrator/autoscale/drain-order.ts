/**
 * Which workers a pool gives up first when its desired count drops (both backends call
 * it: local.ts ensurePool, kubernetes/pools.ts planPool). Pure.
 *
 *   0. draining already (it said so itself: it is leaving anyway)
 *   1. not busy and cold: starting (no state yet, or `starting`), or idle with no shard
 *      done (its server, hence its model, not loaded); idle before starting
 *   2. idle and warm: its model loaded, nothing running
 *   3. busy and cold: its first shard, with the model still loading
 *   4. busy and warm: the one whose shard started most recently first (the rule:
 *      nearest its start)
 * Ties: the newest worker first (the ReplicaSet's habit: older ones have warmer caches).
 *
 * A busy worker is only picked when there are not enough others, and it is never cut
 * short: it is asked to drain (SIGTERM), finishes its shard, then exits. So 0 shards are
 * lost or run twice by a scale-down.
 */
export interface DrainCandidate {
  id: string;
  /** What the worker published (null: nothing yet). */
  state: 'starting' | 'idle' | 'busy' | 'draining' | null;
  shardsDone: number;
  /** When its current shard started (ms; null: none or not known). */
  shardSinceMs: number | null;
  /** When the worker was started (ms; 0 if not known). */
  startedMs: number;
}

function rank(c: DrainCandidate): number {
  const warm = c.shardsDone > 0;
  if (c.state === 'draining') return 0;
  if (c.state === 'busy') return warm ? 4 : 3;
  if (c.state === 'idle') return warm ? 2 : 1;
  return 1.5; // starting, or no state yet
}

/** The first `count` candidates to drain, in order. */
export function drainOrder<T extends DrainCandidate>(candidates: readonly T[], count: number): T[] {
  if (count <= 0) return [];
  return [...candidates]
    .sort(
      (a, b) =>
        rank(a) - rank(b) ||
        (b.shardSinceMs ?? 0) - (a.shardSinceMs ?? 0) ||
        b.startedMs - a.startedMs,
    )
    .slice(0, count);
}
