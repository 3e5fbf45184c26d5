/**
 * Garbage collection on Kubernetes, the part that reads and deletes (gc.ts has the rules,
 * pure): stoker's Jobs, Services and pods that no live attempt owns.
 *
 *   collect  once (at controller start, before the dispatcher takes work): Jobs and pods
 *            from the caches, Services with one list; each Job's attempt judged by the
 *            run store (an AttemptLookup, once per attempt); what planGarbage names is
 *            deleted (propagationPolicy Background; already gone is fine)
 *   every    again every `everyMs` while the backend runs. Safe beside the dispatcher:
 *            attemptVerdict() keeps a Job whose attempt is newer than the task's record
 *            (created a moment before the record moved on) and the current attempt
 *            while it runs. A failed pass is logged; the next one tries again
 */
import type { V1Job } from '@kubernetes/client-node';
import type { BackendParts } from './cache.js';
import {
  attemptVerdict,
  jobAttemptOf,
  planGarbage,
  type AttemptVerdict,
  type GarbageItem,
  type JobAttempt,
} from './gc.js';

/** What the run store says of attempts, for garbage collection. */
export type AttemptLookup = (attempt: JobAttempt) => Promise<AttemptVerdict>;

/** A store lookup for collect(): what the run store says of each attempt. */
export function attemptLookup(
  getTask: (taskId: string) => Promise<{ status: { phase: string; attempt: number } } | null>,
  runExists: (runId: string) => Promise<boolean>,
): AttemptLookup {
  return async ({ runId, taskId, attempt }) => {
    if (!(await runExists(runId))) return 'gone';
    const task = await getTask(taskId);
    return attemptVerdict(attempt, task?.status ?? null);
  };
}

export class GarbageCollector {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;

  constructor(
    private readonly parts: BackendParts,
    /** Whether the caches were filled (collecting from empty caches would find nothing). */
    private readonly started: () => boolean,
  ) {}

  /** Delete what no live attempt owns; returns what was deleted. */
  async collect(lookup: AttemptLookup): Promise<GarbageItem[]> {
    if (!this.started()) throw new Error('collectGarbage() before start()');
    const { api, cache, log } = this.parts;
    const jobs = cache.listJobs();
    const verdicts = await verdictsOf(jobs, lookup);
    const services = await api.listServices();
    const plan = planGarbage({ jobs, pods: cache.listPods(), services, verdicts });
    for (const item of plan) {
      log.info({ kind: item.kind, name: item.name, why: item.why }, 'deleting orphan');
      if (item.kind === 'Job') await api.deleteJob(item.name);
      else if (item.kind === 'Service') await api.deleteService(item.name);
      else await api.deletePod(item.name, { propagationPolicy: 'Background' });
    }
    return plan;
  }

  every(everyMs: number, lookup: AttemptLookup): void {
    clearInterval(this.timer);
    if (!(everyMs > 0)) return;
    const { log } = this.parts;
    this.timer = setInterval(() => {
      if (this.parts.closed() || this.running) return;
      this.running = this.collect(lookup)
        .then((collected) => {
          if (collected.length > 0) log.info({ collected: collected.length }, 'orphans collected');
        })
        .catch((err: unknown) => {
          if (!this.parts.closed()) log.error({ err }, 'periodic garbage collection failed');
        })
        .finally(() => {
          this.running = undefined;
        });
    }, everyMs);
    this.timer.unref();
  }

  /** No more passes; waits for one under way. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }
}

/** The verdict on each recognised Job, by name (the lookup asked once per attempt). */
async function verdictsOf(
  jobs: V1Job[],
  lookup: AttemptLookup,
): Promise<Map<string, AttemptVerdict>> {
  const verdicts = new Map<string, AttemptVerdict>();
  const byTask = new Map<string, AttemptVerdict>();
  for (const job of jobs) {
    const a = jobAttemptOf(job);
    if (!a) continue;
    const k = `${a.taskId}#${a.attempt}`;
    let v = byTask.get(k);
    if (v === undefined) byTask.set(k, (v = await lookup(a)));
    verdicts.set(job.metadata?.name ?? '', v);
  }
  return verdicts;
}
