/**
 * What the kubernetes backend knows of the cluster without asking: three reflectors
 * (reflector.ts) cache stoker's Jobs and pods (label `app.kubernetes.io/managed-by=stoker`)
 * and the FailedCreate events of Jobs (a pod the Job controller could not create: a
 * missing PriorityClass, a Pod Security violation). Reading an unchanged object from
 * here costs no request; pods and events are indexed by their Job's name.
 *
 * Jobs created a moment ago: the watch is a few milliseconds behind a create's answer,
 * so the answer is kept (noteCreated) until the Job cache shows the Job, or a relist
 * replaces the cache (a Job created and deleted before the watch showed it must not stay
 * "just created").
 *
 * Waking: each cached change wakes only the waits of the Job it concerns (the Job
 * itself, its pods by their job-name label, its events), and a relist wakes every wait.
 * versionOf(job) moves with each of those; a wait notes it before it observes and
 * observes again if it moved meanwhile, so a change that lands while it reads (a GET in
 * flight) is never lost. That race was the root cause of "the informer missed a Job's
 * Complete update": the update was in the cache, but the wait that should have seen it
 * was between reading and listening, and nothing woke it until a 5 s poll of the Job.
 * The poll is gone; a watch that stalls is caught by the reflectors (no event or
 * bookmark for quietMs: relist).
 */
import type { CoreV1Event, V1Job, V1Pod } from '@kubernetes/client-node';
import type { Logger } from '../../../common/logger.js';
import type { ClusterApi } from './api.js';
import { FAILED_CREATE_SELECTOR, LABELS, MANAGED_BY_SELECTOR } from './names.js';
import { Reflector, type ReflectorStats, type WatchLike } from './reflector.js';

export type CacheStats = Record<'jobs' | 'pods' | 'events', ReflectorStats & { cached: number }>;

/** What the backend's parts (units.ts, pool-workers.ts, collector.ts) work with. */
export interface BackendParts {
  api: ClusterApi;
  cache: ClusterCache;
  log: Logger;
  /** The backend was closed: answer nothing more, start nothing more. */
  closed(): boolean;
}

const jobNameOfPod = (p: V1Pod): string | undefined =>
  p.metadata?.labels?.['batch.kubernetes.io/job-name'] ??
  p.metadata?.labels?.['job-name'] ??
  p.metadata?.labels?.[LABELS.job];

export class ClusterCache {
  private readonly jobs: Reflector<V1Job>;
  private readonly pods: Reflector<V1Pod>;
  private readonly events: Reflector<CoreV1Event>;
  private readonly namespace: string;
  /** Waits, by Job name. */
  private readonly waiters = new Map<string, Set<() => void>>();
  /** A change counter per Job name, and one for relists (which concern every Job). */
  private readonly versions = new Map<string, number>();
  private epoch = 0;
  /** Jobs created a moment ago that the Job cache has not shown yet: their create's answer. */
  private readonly justCreated = new Map<string, V1Job>();

  constructor(
    api: ClusterApi,
    opts: { watch: WatchLike; quietMs?: number | undefined; log: Logger },
  ) {
    const ns = (this.namespace = api.namespace);
    const common = {
      watch: opts.watch,
      ...(opts.quietMs === undefined ? {} : { quietMs: opts.quietMs }),
      onRelist: () => this.wakeAll(),
      onWarning: (message: string, fields: Record<string, unknown>) =>
        opts.log.warn(fields, message),
    };
    this.jobs = new Reflector<V1Job>({
      ...common,
      name: 'jobs',
      path: `/apis/batch/v1/namespaces/${ns}/jobs`,
      labelSelector: MANAGED_BY_SELECTOR,
      list: () => api.listJobs(),
      onRelist: () => {
        // The list is the truth now (a Job created and deleted before the watch showed
        // it must not stay "just created").
        this.justCreated.clear();
        this.wakeAll();
      },
      onChange: (type, job) => {
        const name = job.metadata?.name;
        if (!name) return;
        this.justCreated.delete(name);
        this.bump(name);
        if (type === 'DELETED') this.versions.delete(name);
      },
    });
    this.pods = new Reflector<V1Pod>({
      ...common,
      name: 'pods',
      path: `/api/v1/namespaces/${ns}/pods`,
      labelSelector: MANAGED_BY_SELECTOR,
      list: () => api.listPods(),
      indexBy: jobNameOfPod,
      onChange: (type, pod, prev) => {
        const name = jobNameOfPod(pod) ?? (prev && jobNameOfPod(prev));
        if (!name) return;
        this.bump(name);
        if (type === 'DELETED' && !this.jobs.get(name, ns)) this.versions.delete(name);
      },
    });
    this.events = new Reflector<CoreV1Event>({
      ...common,
      name: 'events',
      path: `/api/v1/namespaces/${ns}/events`,
      fieldSelector: FAILED_CREATE_SELECTOR,
      list: () => api.listEvents(),
      indexBy: (e) => e.involvedObject?.name,
      onChange: (_type, e) => {
        if (e.involvedObject?.name) this.bump(e.involvedObject.name);
      },
    });
  }

  /** Fill the caches (one list each), then keep them current through watches. */
  async start(): Promise<void> {
    await Promise.all([this.jobs.start(), this.pods.start(), this.events.start()]);
  }

  async stop(): Promise<void> {
    await Promise.all([this.jobs.stop(), this.pods.stop(), this.events.stop()]);
  }

  stats(): CacheStats {
    const r = (x: { stats: ReflectorStats; size: number }) => ({ ...x.stats, cached: x.size });
    return { jobs: r(this.jobs), pods: r(this.pods), events: r(this.events) };
  }

  // -------------------------------------------------------------------------------------
  // Reading

  /** The Job as the Job cache holds it (never one only just created). */
  cachedJob(name: string): V1Job | undefined {
    return this.jobs.get(name, this.namespace);
  }

  /** The Job as cached, else as its create answered a moment ago. */
  job(name: string): V1Job | undefined {
    return this.cachedJob(name) ?? this.justCreated.get(name);
  }

  /** Every cached Job, plus the ones created a moment ago. */
  jobsWithFresh(): V1Job[] {
    const cached = this.listJobs();
    const names = new Set(cached.map((j) => j.metadata?.name));
    const fresh = [...this.justCreated.values()].filter((j) => !names.has(j.metadata?.name));
    return [...cached, ...fresh];
  }

  listJobs(): V1Job[] {
    return this.jobs.list(this.namespace);
  }

  listPods(): V1Pod[] {
    return this.pods.list(this.namespace);
  }

  podsOf(jobName: string): V1Pod[] {
    return this.pods.byIndex(jobName);
  }

  /** The FailedCreate events of the Job (of this uid, when both sides know it). */
  failedCreatesOf(jobName: string, uid: string | undefined): CoreV1Event[] {
    return this.events
      .byIndex(jobName)
      .filter((e) => !uid || !e.involvedObject?.uid || e.involvedObject.uid === uid);
  }

  /** Keep a create's answer until the cache shows the Job. */
  noteCreated(name: string, job: V1Job): void {
    if (!this.cachedJob(name)) this.justCreated.set(name, job);
  }

  forgetCreated(name: string): void {
    this.justCreated.delete(name);
  }

  // -------------------------------------------------------------------------------------
  // Waking

  /** Moves with every change to the Job, its pods, its events, and with every relist. */
  versionOf(jobName: string): string {
    return `${this.epoch}:${this.versions.get(jobName) ?? 0}`;
  }

  /** Resolves at the next change that concerns the Job (see versionOf), or when `signal` aborts. */
  nextChange(jobName: string, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      let set = this.waiters.get(jobName);
      if (!set) this.waiters.set(jobName, (set = new Set()));
      const wake = (): void => {
        set.delete(wake);
        if (set.size === 0 && this.waiters.get(jobName) === set) this.waiters.delete(jobName);
        signal?.removeEventListener('abort', wake);
        resolve();
      };
      set.add(wake);
      signal?.addEventListener('abort', wake, { once: true });
    });
  }

  private bump(jobName: string): void {
    this.versions.set(jobName, (this.versions.get(jobName) ?? 0) + 1);
    for (const w of [...(this.waiters.get(jobName) ?? [])]) w();
  }

  private wakeAll(): void {
    this.epoch += 1;
    for (const set of [...this.waiters.values()]) for (const w of [...set]) w();
  }
}
