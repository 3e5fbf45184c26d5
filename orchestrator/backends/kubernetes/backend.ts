/**
 * The `kubernetes` backend: a dispatched task attempt becomes a Job (one pod, or an
 * Indexed Job with one pod per node plus a headless Service for rendezvous), built in
 * code by objects.ts. Launch is idempotent: the Job's name is deterministic
 * (`jobNameFor(taskId, attempt)`), and 409 AlreadyExists means "re-attach".
 *
 * Observation goes through informers on Jobs and Pods filtered by stoker's label (one
 * list, then a watch; relist on 410; restarted with backoff on errors), never by
 * polling every object. observe.ts turns what they cache into a UnitState.
 */
import {
  BatchV1Api,
  CoreV1Api,
  makeInformer,
  type Informer,
  type KubeConfig,
  type KubernetesObject,
  type ObjectCache,
  type V1Job,
  type V1Pod,
  type V1Service,
} from '@kubernetes/client-node';
import type { Logger } from '../../../common/logger.js';
import type { Backend, LaunchRequest, UnitState } from '../types.js';
import { observeJob } from './observe.js';

export const MANAGED_BY_SELECTOR = 'app.kubernetes.io/managed-by=stoker';

/** A wait with no informer event for this long reads its Job directly once. */
const QUIET_MS = 5000;

export interface KubernetesBackendOptions {
  kc: KubeConfig;
  namespace: string;
  log: Logger;
  /** Builds the objects of one attempt (objects.ts), given what the dispatcher knows. */
  build(
    req: LaunchRequest,
  ): Promise<{ job: V1Job; service?: V1Service }> | { job: V1Job; service?: V1Service };
  /** Job name of a unit: the unit name is `${taskId}-a${attempt}`; the Job name is DNS-safe. */
  jobName(unitName: string): string;
  clock?: () => number;
}

type Cached<T extends KubernetesObject> = Informer<T> & ObjectCache<T>;

const isStatus = (err: unknown, code: number): boolean =>
  typeof err === 'object' &&
  err !== null &&
  'code' in err &&
  (err as { code: unknown }).code === code;

export class KubernetesBackend implements Backend {
  readonly name = 'kubernetes';
  readonly unitsOutliveController = true;
  private readonly batch: BatchV1Api;
  private readonly core: CoreV1Api;
  private jobs!: Cached<V1Job>;
  private pods!: Cached<V1Pod>;
  private readonly waiters = new Set<() => void>();
  private stopped = false;
  /** API requests this backend made, by kind (for tests and the reconcile benchmark). */
  readonly requests = { create: 0, delete: 0, get: 0, list: 0 };

  constructor(private readonly opts: KubernetesBackendOptions) {
    this.batch = opts.kc.makeApiClient(BatchV1Api);
    this.core = opts.kc.makeApiClient(CoreV1Api);
  }

  /** Start the informers and wait for their first list. */
  async start(): Promise<void> {
    const ns = this.opts.namespace;
    this.jobs = makeInformer(
      this.opts.kc,
      `/apis/batch/v1/namespaces/${ns}/jobs`,
      () => {
        this.requests.list++;
        return this.batch.listNamespacedJob({ namespace: ns, labelSelector: MANAGED_BY_SELECTOR });
      },
      MANAGED_BY_SELECTOR,
    );
    this.pods = makeInformer(
      this.opts.kc,
      `/api/v1/namespaces/${ns}/pods`,
      () => {
        this.requests.list++;
        return this.core.listNamespacedPod({ namespace: ns, labelSelector: MANAGED_BY_SELECTOR });
      },
      MANAGED_BY_SELECTOR,
    );
    for (const inf of [this.jobs, this.pods] as Array<Cached<KubernetesObject>>) {
      const notify = () => {
        for (const w of [...this.waiters]) w();
      };
      inf.on('add', notify);
      inf.on('update', notify);
      inf.on('delete', notify);
      let backoff = 500;
      inf.on('error', (err) => {
        if (this.stopped) return;
        this.opts.log.warn(
          { err: (err as Error)?.message ?? err, backoffMs: backoff },
          'informer error; restarting',
        );
        setTimeout(() => {
          if (!this.stopped)
            void inf.start().then(
              () => (backoff = 500),
              () => undefined,
            );
        }, backoff).unref();
        backoff = Math.min(backoff * 2, 30_000);
      });
    }
    await Promise.all([this.jobs.start(), this.pods.start()]);
  }

  async launch(req: LaunchRequest): Promise<{ attached: boolean }> {
    const ns = this.opts.namespace;
    const { job, service } = await this.opts.build(req);
    if (service) {
      try {
        this.requests.create++;
        await this.core.createNamespacedService({ namespace: ns, body: service });
      } catch (err) {
        if (!isStatus(err, 409)) throw err;
      }
    }
    try {
      this.requests.create++;
      await this.batch.createNamespacedJob({ namespace: ns, body: job });
      this.opts.log.info({ job: job.metadata?.name }, 'created Job');
      return { attached: false };
    } catch (err) {
      if (isStatus(err, 409)) return { attached: true };
      throw err;
    }
  }

  private podsOf(jobName: string): V1Pod[] {
    return this.pods
      .list(this.opts.namespace)
      .filter(
        (p) =>
          p.metadata?.labels?.['job-name'] === jobName ||
          p.metadata?.labels?.['batch.kubernetes.io/job-name'] === jobName,
      );
  }

  async observe(unitName: string): Promise<UnitState> {
    return (await this.observeWithNote(unitName)).state;
  }

  private async observeWithNote(unitName: string): Promise<ReturnType<typeof observeJob>> {
    const name = this.opts.jobName(unitName);
    let job = this.jobs.get(name, this.opts.namespace);
    if (!job) {
      // Not (yet) in the cache: ask once, so a Job created a moment ago is not "NotFound".
      try {
        this.requests.get++;
        job = await this.batch.readNamespacedJob({ name, namespace: this.opts.namespace });
      } catch (err) {
        if (!isStatus(err, 404)) throw err;
      }
    }
    return observeJob(job, this.podsOf(name));
  }

  async wait(
    unitName: string,
    signal?: AbortSignal,
    onNote?: (note: string) => void,
  ): Promise<UnitState> {
    let quiet = false;
    for (;;) {
      // After a quiet period (no informer event for this wait), read the Job directly once:
      // a watch that silently missed an update must not leave a finished unit "running".
      // This costs one GET per waiting unit per quiet period, not a poll of every object.
      const { state, note } = quiet
        ? await this.observeFresh(unitName)
        : await this.observeWithNote(unitName);
      this.opts.log.debug({ unit: unitName, phase: state.phase, quiet, note }, 'unit observed');
      if (note) onNote?.(note);
      if (state.phase !== 'Running' || signal?.aborted) {
        if (state.phase === 'Failed' && state.retryable === false) {
          // Fail fast: a Job whose pods cannot start would otherwise wait forever.
          await this.deleteJob(unitName, 0).catch(() => undefined);
        }
        return state;
      }
      // Woken by any informer event, or after a quiet period.
      quiet = await new Promise<boolean>((resolve) => {
        const done = (timedOut: boolean) => {
          clearTimeout(t);
          this.waiters.delete(wake);
          signal?.removeEventListener('abort', wake);
          resolve(timedOut);
        };
        const wake = () => done(false);
        const t = setTimeout(() => done(true), QUIET_MS);
        this.waiters.add(wake);
        signal?.addEventListener('abort', wake, { once: true });
      });
    }
  }

  private async observeFresh(unitName: string): Promise<ReturnType<typeof observeJob>> {
    const name = this.opts.jobName(unitName);
    let job: V1Job | undefined;
    try {
      this.requests.get++;
      job = await this.batch.readNamespacedJob({ name, namespace: this.opts.namespace });
    } catch (err) {
      if (!isStatus(err, 404)) throw err;
    }
    const cached = this.jobs.get(name, this.opts.namespace);
    if (job && cached && job.metadata?.resourceVersion !== cached.metadata?.resourceVersion) {
      this.opts.log.warn({ job: name }, 'the Job informer cache was behind the API server');
    }
    return observeJob(job, this.podsOf(name));
  }

  private async deleteJob(unitName: string, graceSeconds: number): Promise<void> {
    this.requests.delete++;
    try {
      await this.batch.deleteNamespacedJob({
        name: this.opts.jobName(unitName),
        namespace: this.opts.namespace,
        propagationPolicy: 'Background',
        gracePeriodSeconds: graceSeconds,
      });
    } catch (err) {
      if (!isStatus(err, 404)) throw err;
    }
  }

  async terminate(
    unitName: string,
    opts: { graceSeconds: number; force?: boolean },
  ): Promise<void> {
    await this.deleteJob(unitName, opts.force ? 0 : opts.graceSeconds);
  }

  async close(): Promise<void> {
    this.stopped = true;
    await Promise.all([this.jobs?.stop(), this.pods?.stop()]);
    for (const w of [...this.waiters]) w();
  }
}
