/**
 * The seconds a shard takes on one worker, estimated from shard durations: each pool
 * worker measures the time its payload server spent on a shard (worker/pool/shard.ts;
 * the model load of a cold server is not in it) and records it with the shard's
 * completion (`pool:{name}:completions`, member `${taskId}:${attempt}:${ms}`).
 *
 * Why durations, not completions per minute over the pool: a pool's completions per
 * minute is (workers x per-worker rate) averaged over a minute, so right after the pool
 * grows from 1 to 4 workers it still reads the 1-worker rate (and the 4-worker rate for a
 * minute after it shrinks), and in the first minute it reads close to nothing. A shard's
 * duration is one worker's rate, whatever the pool's size or age: the first shard that
 * finishes gives a usable estimate, and a worker that dies or is still loading costs no
 * sample instead of dragging the rate down.
 *
 * The estimate is an EWMA over the durations in completion order (ALPHA per sample),
 * started at the first sample. It follows a change of shard cost (a heavier stage, CPU
 * contention after a scale-up on a small machine) within a few shards.
 */
import type { ServiceEstimate } from './records.js';

/** The weight of each new duration. 0.2: about the last 5-10 shards dominate. */
export const ALPHA = 0.2;

/** A completion member's duration in ms (`${taskId}:${attempt}:${ms}`), or null (an older worker's member). */
export function durationOfMember(member: string): number | null {
  const parts = member.split(':');
  if (parts.length < 3) return null;
  const ms = Number(parts[parts.length - 1]);
  return Number.isFinite(ms) && ms >= 0 ? ms : null;
}

/**
 * The estimate after the completions read since its cursor (`[member, scoreMs]`, oldest
 * first). Members without a duration only move the cursor.
 */
export function observeCompletions(
  prev: ServiceEstimate,
  completions: ReadonlyArray<readonly [string, number]>,
): ServiceEstimate {
  let { seconds, samples, cursorMs } = prev;
  for (const [member, atMs] of completions) {
    cursorMs = Math.max(cursorMs, atMs);
    const ms = durationOfMember(member);
    if (ms === null) continue;
    const x = ms / 1000;
    seconds = seconds === null ? x : seconds + ALPHA * (x - seconds);
    samples++;
  }
  return { seconds, samples, cursorMs };
}
