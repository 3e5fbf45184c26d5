/**
 * What the fake Job controller keeps about one Job between reconciles (not in the Job's
 * status, as the real controller keeps it in its expectations and timers): the deadline
 * and TTL timers, the retry after a rejected pod create with its backoff, and which pods
 * it deleted itself (not failures) or already counted as failed while they terminate.
 */
import type { ClockTimer } from '../clock.js';

export interface JobMemory {
  deadline?: ClockTimer;
  deadlineAt?: number;
  ttl?: ClockTimer;
  retry?: NodeJS.Timeout;
  retryDelay: number;
  createFailing: boolean;
  /** Pods this controller deleted (suspension, failure, success): not counted as failures. */
  deletedByUs: Set<string>;
  /** Terminating pods already counted as failed (no podFailurePolicy: they count at once). */
  countedEarly: Set<string>;
}

export function newJobMemory(retryDelay: number): JobMemory {
  return { retryDelay, createFailing: false, deletedByUs: new Set(), countedEarly: new Set() };
}

/** Cancel the Job's timers (it is gone, or the controller stops). */
export function forgetJob(m: JobMemory): void {
  m.deadline?.cancel();
  m.ttl?.cancel();
  if (m.retry) clearTimeout(m.retry);
}
