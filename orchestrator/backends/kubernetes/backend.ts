/**
 * The `kubernetes` backend: a dispatched task attempt becomes a Job (one pod, or an
 * Indexed Job with one pod per node plus a headless Service for rendezvous), built in
 * code by objects.ts. Launch is idempotent: the Job's name is deterministic
 * (`jobNameFor(taskId, attempt)`), and 409 AlreadyExists means "re-attach".
 *
 * Reading: three reflectors (reflector.ts) cache stoker's Jobs and pods (label
 * `app.kubernetes.io/managed-by=stoker`) and the FailedCreate events of Jobs (a pod the
 * Job controller could not create: a missing PriorityClass, a Pod Security violation).
 * observe() and wait() read these caches, so an unchanged unit costs no request; the
 * only direct read is one GET of a Job created a moment ago and not yet in the cache.
 * observe.ts turns what is cached into a UnitState.
 *
 * Waking: each cached change wakes only the waits of the Job it concerns (the Job
 * itself, its pods by their job-name label, its events), and a relist wakes every wait.
 * A wait notes the version of its Job before it observes and observes again if that
 * moved meanwhile, so a change that lands while it reads (a GET in flight) is never lost.
 * That race was the root cause of "the informer missed a Job's Complete update": the
 * update was in the cache, but the wait that should have seen it was between reading and
 * listening, and nothing woke it until a 5 s poll of the Job. The poll is gone; a watch
 * that stalls is caught by the reflectors (no event or bookmark for quietMs: relist).
 *
 * Writing: every request goes through one ApiGate (api-gate.ts): a token bucket, the
 * API server's Retry-After on 429, retries of transient failures (the API server
 * restarting, 5xx). A create retried after its response was lost gets 409: re-attach.
 *
 * At start, collectGarbage() deletes what earlier controllers left behind (gc.ts), and
 * collectGarbageEvery() repeats it while this controller leads.
 *
 * Pools: ensurePool() sizes a pool as one Job per worker (pools.ts has the rules), from
 * the same caches: a pass over a pool whose Jobs did not change sends no request.
 * stopPools() leaves pool workers running for the next leader, which adopts them by label
 * (they keep pulling shards meanwhile), unless the pools do not outlive this controller
 * (the simulated cluster of `--simulate` dies with the process: they drain) or the stop
 * is forced (killed, like the train Jobs of a forced stop). checkSpec() refuses what the
 * backend cannot run (spec-rules.ts), a stage in another namespace than the controller's
 * included.
 */
import {
  BatchV1Api,
  CoreV1Api,
  Watch,
  type CoreV1Event,
  type KubeConfig,
  type V1Job,
  type V1Pod,
  type V1Service,
} from '@kubernetes/client-node';
import { randomBytes } from 'node:crypto';
import type { SpecIssue } from '../../../common/errors.js';
import type { Logger } from '../../../common/logger.js';
import { runRules, storedPaths } from '../../../common/spec/rules.js';
import type { NormalizedSpec } from '../../../common/spec/schema.js';
import { formatPath } from '../../../common/spec/values.js';
import type { Backend, LaunchRequest, PoolSpec, UnitState } from '../types.js';
import { ApiGate, isHttpStatus, type ApiGateOptions } from './api-gate.js';
import {
  attemptVerdict,
  jobAttemptOf,
  planGarbage,
  type AttemptVerdict,
  type GarbageItem,
  type JobAttempt,
} from './gc.js';
import { LABELS, poolWorkerIdFor } from './names.js';
import { ownedByJob } from './objects.js';
import { observeJob, type Observed } from './observe.js';
import { isPodRunning, isPoolWorkerObject, planPool, poolOf, workerIdOf } from './pools.js';
import { Reflector, type ReflectorStats, type WatchLike } from './reflector.js';
import { kubernetesSpecRules, namespaceRule } from './spec-rules.js';

export const MANAGED_BY_SELECTOR = 'app.kubernetes.io/managed-by=stoker';
/** The Job controller's pod-creation failures (core/v1 events support these field selectors). */
export const FAILED_CREATE_SELECTOR = 'involvedObject.kind=Job,reason=FailedCreate';

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
  /**
   * A watch that heard nothing (no event, no bookmark) for this long is presumed dead and
   * its collection listed again (default 90 s: the API server sends a bookmark about
   * every minute to a watch that asks for them).
   */
  quietMs?: number;
  /** Rate limit and retries of the backend's requests (default 20/s, burst 40). */
  gate?: ApiGateOptions;
  /** A Watch to use instead of client-node's (tests). */
  watch?: WatchLike;
  /** What pools need (compose.ts); without it ensurePool() refuses. */
  pools?: PoolSupport;
}

/** What the backend needs to size pools, beyond the API server. */
export interface PoolSupport {
  /**
   * The Job of one worker of the pool (objects.ts buildPoolWorkerJob), or null when the
   * stage its pods are built from is gone (nothing can be started then).
   */
  build(pool: PoolSpec, workerId: string): Promise<V1Job | null>;
  /** Worker id -> the state the worker published (pool:{name}:workers). */
  workerStates(pool: string): Promise<Map<string, string>>;
  /** Drop the records of workers that are gone. */
  forgetWorkers(pool: string, workerIds: string[]): Promise<void>;
  /**
   * Pool workers outlive the controller (default true, as train Jobs do): a normal stop
   * leaves them running. False where the cluster itself stops with this process.
   */
  outliveController?: boolean;
}

/** What the run store says of attempts, for garbage collection. */
export type AttemptLookup = (attempt: JobAttempt) => Promise<AttemptVerdict>;

export interface BackendStats {
  /** Requests this backend sent, by `verb resource` (retries included; watches apart). */
  requests: Record<string, number>;
  retries: number;
  reflectors: Record<'jobs' | 'pods' | 'events', ReflectorStats & { cached: number }>;
}

const jobNameOfPod = (p: V1Pod): string | undefined =>
  p.metadata?.labels?.['batch.kubernetes.io/job-name'] ??
  p.metadata?.labels?.['job-name'] ??
  p.metadata?.labels?.[LABELS.job];

export class KubernetesBackend implements Backend {
  readonly name = 'kubernetes';
  readonly unitsOutliveController = true;
  readonly gate: ApiGate;
  private readonly batch: BatchV1Api;
  private readonly core: CoreV1Api;
  private readonly jobs: Reflector<V1Job>;
  private readonly pods: Reflector<V1Pod>;
  private readonly events: Reflector<CoreV1Event>;
  /** Waits, by Job name. */
  private readonly waiters = new Map<string, Set<() => void>>();
  /** A change counter per Job name, and one for relists (which concern every Job). */
  private readonly versions = new Map<string, number>();
  private epoch = 0;
  /**
   * Jobs this backend created that the Job cache has not shown yet (the watch is a few
   * milliseconds behind the create's answer): read from here instead of a GET.
   */
  private readonly justCreated = new Map<string, V1Job>();
  private started = false;
  private closed = false;
  /** Pool worker Jobs this backend deleted that the Job cache may still show. */
  private readonly deletingPoolJobs = new Set<string>();
  /** Pools whose pods cannot be built (logged once). */
  private readonly unbuildablePools = new Set<string>();
  /** ensurePool() and stopPools() run one at a time. */
  private poolTurn: Promise<unknown> = Promise.resolve();
  private gcTimer: NodeJS.Timeout | undefined;
  private gcRunning: Promise<unknown> | undefined;

  constructor(private readonly opts: KubernetesBackendOptions) {
    this.batch = opts.kc.makeApiClient(BatchV1Api);
    this.core = opts.kc.makeApiClient(CoreV1Api);
    this.gate = new ApiGate({
      ...opts.gate,
      onRetry: (info) => {
        opts.log.warn(
          { what: info.what, attempt: info.attempt, delayMs: info.delayMs, err: errText(info.err) },
          'API request failed; retrying',
        );
        opts.gate?.onRetry?.(info);
      },
    });
    const ns = opts.namespace;
    const watch: WatchLike = opts.watch ?? new Watch(opts.kc);
    const common = {
      watch,
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
      list: () =>
        this.gate.call('list jobs', () =>
          this.batch.listNamespacedJob({ namespace: ns, labelSelector: MANAGED_BY_SELECTOR }),
        ),
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
      list: () =>
        this.gate.call('list pods', () =>
          this.core.listNamespacedPod({ namespace: ns, labelSelector: MANAGED_BY_SELECTOR }),
        ),
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
      list: () =>
        this.gate.call('list events', () =>
          this.core.listNamespacedEvent({ namespace: ns, fieldSelector: FAILED_CREATE_SELECTOR }),
        ),
      indexBy: (e) => e.involvedObject?.name,
      onChange: (_type, e) => {
        if (e.involvedObject?.name) this.bump(e.involvedObject.name);
      },
    });
  }

  /** Fill the caches (one list each), then keep them current through watches. */
  async start(): Promise<void> {
    await Promise.all([this.jobs.start(), this.pods.start(), this.events.start()]);
    this.started = true;
  }

  stats(): BackendStats {
    const r = (x: { stats: ReflectorStats; size: number }) => ({ ...x.stats, cached: x.size });
    return {
      requests: Object.fromEntries(this.gate.sent),
      retries: this.gate.retries,
      reflectors: { jobs: r(this.jobs), pods: r(this.pods), events: r(this.events) },
    };
  }

  // -------------------------------------------------------------------------------------
  // Wake-ups

  private bump(jobName: string): void {
    this.versions.set(jobName, (this.versions.get(jobName) ?? 0) + 1);
    for (const w of [...(this.waiters.get(jobName) ?? [])]) w();
  }

  private wakeAll(): void {
    this.epoch += 1;
    for (const set of [...this.waiters.values()]) for (const w of [...set]) w();
  }

  private versionOf(jobName: string): string {
    return `${this.epoch}:${this.versions.get(jobName) ?? 0}`;
  }

  // -------------------------------------------------------------------------------------
  // Launch, observe, wait, terminate

  /**
   * What this backend cannot run (spec-rules.ts), each with the field's path: the rules
   * `stoker validate` applies too, and a stage namespace other than this controller's.
   * Why not create a stage's Jobs in the namespace it names: the controller's Role covers
   * Jobs, pods and Services in its own namespace only (least privilege, k8s/base), and its
   * caches watch that one namespace; reaching others would take a Role in each and a set
   * of watches per namespace (three more lists and watches each, on every controller
   * start). A run that names another namespace is refused before anything of it starts,
   * with the field's path, instead of its Jobs silently landing in the controller's
   * namespace.
   */
  checkSpec(spec: NormalizedSpec): SpecIssue[] {
    const rules = [namespaceRule(this.opts.namespace), kubernetesSpecRules];
    return runRules(rules, spec, storedPaths(spec)).map((i) => ({
      path: formatPath(i.path),
      message: i.message,
    }));
  }

  async launch(req: LaunchRequest): Promise<{ attached: boolean }> {
    const ns = this.opts.namespace;
    const { job, service } = await this.opts.build(req);
    const name = job.metadata?.name ?? this.opts.jobName(req.unitName);
    let uid: string | undefined;
    let attached = false;
    try {
      const created = await this.gate.call('create jobs', () =>
        this.batch.createNamespacedJob({ namespace: ns, body: job }),
      );
      uid = created.metadata?.uid;
      if (!this.jobs.get(name, ns)) this.justCreated.set(name, created);
      this.opts.log.info({ job: name }, 'created Job');
    } catch (err) {
      // AlreadyExists: created before (by a controller that died, or by this request
      // before its answer was lost): the same attempt, so re-attach.
      if (!isHttpStatus(err, 409)) throw err;
      attached = true;
    }
    if (service) {
      // Created after its Job and owned by it, so that deleting the Job (or its TTL)
      // deletes the Service. A crash between the two is mended here on re-attach.
      uid ??= (this.jobs.get(name, ns) ?? (await this.readJob(name)))?.metadata?.uid;
      const body = uid ? ownedByJob(service, { name, uid }) : service;
      try {
        await this.gate.call('create services', () =>
          this.core.createNamespacedService({ namespace: ns, body }),
        );
      } catch (err) {
        if (!isHttpStatus(err, 409)) throw err;
      }
    }
    return { attached };
  }

  private async readJob(name: string): Promise<V1Job | undefined> {
    try {
      return await this.gate.call('get jobs', () =>
        this.batch.readNamespacedJob({ name, namespace: this.opts.namespace }),
      );
    } catch (err) {
      if (isHttpStatus(err, 404)) return undefined;
      throw err;
    }
  }

  /**
   * What the caches say of a Job. One not cached yet is the one this backend just created
   * (the create's answer), or else is read once (re-attaching to a Job created by an
   * earlier controller a moment before it died).
   */
  private async observeName(name: string): Promise<Observed> {
    const ns = this.opts.namespace;
    const job = this.jobs.get(name, ns) ?? this.justCreated.get(name) ?? (await this.readJob(name));
    const uid = job?.metadata?.uid;
    const failedCreates = this.events
      .byIndex(name)
      .filter((e) => !uid || !e.involvedObject?.uid || e.involvedObject.uid === uid);
    return observeJob(job, this.pods.byIndex(name), failedCreates);
  }

  async observe(unitName: string): Promise<UnitState> {
    return (await this.observeName(this.opts.jobName(unitName))).state;
  }

  async wait(
    unitName: string,
    signal?: AbortSignal,
    onNote?: (note: string) => void,
  ): Promise<UnitState> {
    const name = this.opts.jobName(unitName);
    for (;;) {
      // Closed (this controller stops; units outlive it): never answer, or the dispatcher
      // would record an outcome for a unit that goes on running. The next leader re-attaches.
      if (this.closed) await new Promise<never>(() => undefined);
      const seen = this.versionOf(name);
      const { state, note } = await this.observeName(name);
      this.opts.log.debug({ unit: unitName, phase: state.phase, note }, 'unit observed');
      if (note) onNote?.(note);
      if (state.phase !== 'Running' || signal?.aborted) {
        if (state.phase === 'Failed' && state.retryable === false) {
          // Fail fast: a Job whose pods cannot start would otherwise wait for ever.
          await this.deleteJob(name, 0).catch(() => undefined);
        }
        return state;
      }
      // Something changed while we read: read again before sleeping.
      if (this.versionOf(name) !== seen) continue;
      await new Promise<void>((resolve) => {
        let set = this.waiters.get(name);
        if (!set) this.waiters.set(name, (set = new Set()));
        const wake = (): void => {
          set.delete(wake);
          if (set.size === 0 && this.waiters.get(name) === set) this.waiters.delete(name);
          signal?.removeEventListener('abort', wake);
          resolve();
        };
        set.add(wake);
        signal?.addEventListener('abort', wake, { once: true });
      });
    }
  }

  private async deleteJob(name: string, graceSeconds?: number): Promise<void> {
    try {
      await this.gate.call('delete jobs', () =>
        this.batch.deleteNamespacedJob({
          name,
          namespace: this.opts.namespace,
          propagationPolicy: 'Background',
          ...(graceSeconds === undefined ? {} : { gracePeriodSeconds: graceSeconds }),
        }),
      );
    } catch (err) {
      if (!isHttpStatus(err, 404)) throw err;
    }
  }

  async terminate(
    unitName: string,
    opts: { graceSeconds: number; force?: boolean },
  ): Promise<void> {
    await this.deleteJob(this.opts.jobName(unitName), opts.force ? 0 : opts.graceSeconds);
  }

  // -------------------------------------------------------------------------------------
  // Garbage collection (at controller start, before the dispatcher takes work)

  /**
   * Delete stoker's Jobs, Services and pods that no live attempt owns (gc.ts has the
   * rules). Jobs and pods come from the caches; Services cost one list. Returns what was
   * deleted.
   */
  async collectGarbage(lookup: AttemptLookup): Promise<GarbageItem[]> {
    if (!this.started) throw new Error('collectGarbage() before start()');
    const ns = this.opts.namespace;
    const jobs = this.jobs.list(ns);
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
    const services = (
      await this.gate.call('list services', () =>
        this.core.listNamespacedService({ namespace: ns, labelSelector: MANAGED_BY_SELECTOR }),
      )
    ).items;
    const plan = planGarbage({ jobs, pods: this.pods.list(ns), services, verdicts });
    for (const item of plan) {
      this.opts.log.info({ kind: item.kind, name: item.name, why: item.why }, 'deleting orphan');
      try {
        if (item.kind === 'Job') await this.deleteJob(item.name);
        else if (item.kind === 'Service')
          await this.gate.call('delete services', () =>
            this.core.deleteNamespacedService({
              name: item.name,
              namespace: ns,
              propagationPolicy: 'Background',
            }),
          );
        else
          await this.gate.call('delete pods', () =>
            this.core.deleteNamespacedPod({
              name: item.name,
              namespace: ns,
              propagationPolicy: 'Background',
            }),
          );
      } catch (err) {
        if (!isHttpStatus(err, 404)) throw err;
      }
    }
    return plan;
  }

  // -------------------------------------------------------------------------------------
  // Pools (pulled execution): one Job per worker

  private inPoolTurn<T>(fn: () => Promise<T>): Promise<T> {
    const turn = this.poolTurn.then(fn);
    this.poolTurn = turn.catch(() => undefined);
    return turn;
  }

  /** Worker Jobs (of one pool, or of all): the cache, plus ones created a moment ago. */
  private poolJobs(pool?: string): V1Job[] {
    const ns = this.opts.namespace;
    const cached = this.jobs.list(ns);
    const names = new Set(cached.map((j) => j.metadata?.name));
    const fresh = [...this.justCreated.values()].filter((j) => !names.has(j.metadata?.name));
    return [...cached, ...fresh].filter(
      (j) => isPoolWorkerObject(j) && (pool === undefined || poolOf(j) === pool),
    );
  }

  private poolPods(pool?: string): V1Pod[] {
    return this.pods
      .list(this.opts.namespace)
      .filter((p) => isPoolWorkerObject(p) && (pool === undefined || poolOf(p) === pool));
  }

  /** Forget deletions the cache has caught up with. */
  private pruneDeleting(): void {
    for (const name of this.deletingPoolJobs)
      if (!this.jobs.get(name, this.opts.namespace)) this.deletingPoolJobs.delete(name);
  }

  /**
   * Run `replicas` workers of the pool (pools.ts has the rules): finished Jobs are
   * deleted, missing workers created with fresh ids, and a surplus drained by deleting
   * the Jobs of idle workers first. Reads only the caches (and the workers' states in
   * Redis); requests go out only for what changes.
   */
  async ensurePool(pool: PoolSpec, replicas: number): Promise<void> {
    const support = this.opts.pools;
    if (!support) throw new Error('this kubernetes backend was created without pool support');
    await this.inPoolTurn(async () => {
      if (this.closed) return;
      this.pruneDeleting();
      const plan = planPool({
        jobs: this.poolJobs(pool.name),
        pods: this.poolPods(pool.name),
        deleting: this.deletingPoolJobs,
        states: await support.workerStates(pool.name),
        replicas,
      });
      const log = this.opts.log.child({ pool: pool.name });
      if (plan.forget.length) await support.forgetWorkers(pool.name, plan.forget);
      for (const job of plan.finished) {
        log.info({ workerId: workerIdOf(job), job: job.metadata?.name }, 'pool worker ended');
        await this.deletePoolJob(job);
      }
      for (const job of plan.victims) {
        log.info(
          { workerId: workerIdOf(job), job: job.metadata?.name, replicas },
          'scaling down: draining worker',
        );
        await this.deletePoolJob(job);
      }
      for (let i = 0; i < plan.create; i++) {
        const workerId = poolWorkerIdFor(pool.name, randomBytes(3).toString('hex'));
        const job = await support.build(pool, workerId);
        if (!job) {
          if (!this.unbuildablePools.has(pool.name))
            log.warn(
              { declaredBy: pool.declaredBy },
              'cannot start pool workers: the stage that declares the pool is gone',
            );
          this.unbuildablePools.add(pool.name);
          break;
        }
        this.unbuildablePools.delete(pool.name);
        await this.createPoolJob(job);
        log.info({ workerId, job: job.metadata?.name, replicas }, 'started pool worker');
      }
    });
  }

  private async createPoolJob(job: V1Job): Promise<void> {
    const ns = this.opts.namespace;
    const name = job.metadata?.name ?? '';
    try {
      const created = await this.gate.call('create jobs', () =>
        this.batch.createNamespacedJob({ namespace: ns, body: job }),
      );
      if (!this.jobs.get(name, ns)) this.justCreated.set(name, created);
    } catch (err) {
      // The same create, retried after its answer was lost: it is there.
      if (!isHttpStatus(err, 409)) throw err;
      const existing = this.jobs.get(name, ns) ?? (await this.readJob(name));
      if (existing && !this.jobs.get(name, ns)) this.justCreated.set(name, existing);
    }
  }

  /**
   * Delete a worker's Job (Background): its pod gets SIGTERM and drains within its grace
   * period (0: killed at once). Marked first, so that no pass counts or deletes it again.
   */
  private async deletePoolJob(job: V1Job, graceSeconds?: number): Promise<void> {
    const name = job.metadata?.name ?? '';
    this.deletingPoolJobs.add(name);
    this.justCreated.delete(name);
    try {
      await this.deleteJob(name, graceSeconds);
    } catch (err) {
      this.deletingPoolJobs.delete(name);
      throw err;
    }
  }

  /**
   * At shutdown. force: every worker is killed (Jobs and pods deleted with no grace; their
   * shards are redelivered). Otherwise, where pools outlive the controller (a real
   * cluster), nothing is done: the workers keep serving the queue and the next leader's
   * ensurePool() adopts them by label. Where they do not (the simulated cluster), every
   * worker is asked to drain (its Job deleted) and waited for, up to drainMs (default
   * 60 s); whatever still runs then is killed.
   */
  async stopPools(opts: { force?: boolean; drainMs?: number }): Promise<void> {
    await this.inPoolTurn(async () => {
      if (this.closed) return;
      this.pruneDeleting();
      const outlive = this.opts.pools?.outliveController ?? true;
      const jobs = this.poolJobs().filter(
        (j) => !this.deletingPoolJobs.has(j.metadata?.name ?? '') && !j.metadata?.deletionTimestamp,
      );
      if (!opts.force && outlive) {
        if (jobs.length)
          this.opts.log.info(
            { workers: jobs.length },
            'leaving pool workers running for the next controller',
          );
        return;
      }
      for (const job of jobs) await this.deletePoolJob(job, opts.force ? 0 : undefined);
      if (!opts.force) {
        const deadline = Date.now() + (opts.drainMs ?? 60_000);
        while (this.poolPods().some(isPodRunning) && Date.now() < deadline)
          await new Promise((r) => setTimeout(r, 100));
      }
      // A Job's grace period does not reach its pods: kill what still runs.
      for (const pod of this.poolPods().filter(isPodRunning)) {
        if (!opts.force)
          this.opts.log.warn(
            { pod: pod.metadata?.name },
            'pool worker did not drain in time; killed',
          );
        await this.deletePod(pod.metadata?.name ?? '', 0);
      }
    });
  }

  private async deletePod(name: string, graceSeconds: number): Promise<void> {
    try {
      await this.gate.call('delete pods', () =>
        this.core.deleteNamespacedPod({
          name,
          namespace: this.opts.namespace,
          gracePeriodSeconds: graceSeconds,
        }),
      );
    } catch (err) {
      if (!isHttpStatus(err, 404)) throw err;
    }
  }

  /**
   * Collect orphans again every `everyMs` while this backend runs (after the collection
   * at start). Safe beside the dispatcher: attemptVerdict() keeps a Job whose attempt is
   * newer than the task's record (created a moment before the record moved on) and the
   * current attempt while it runs. A failed pass is logged; the next one tries again.
   */
  collectGarbageEvery(everyMs: number, lookup: AttemptLookup): void {
    clearInterval(this.gcTimer);
    if (!(everyMs > 0)) return;
    this.gcTimer = setInterval(() => {
      if (this.closed || this.gcRunning) return;
      this.gcRunning = this.collectGarbage(lookup)
        .then((collected) => {
          if (collected.length > 0)
            this.opts.log.info({ collected: collected.length }, 'orphans collected');
        })
        .catch((err: unknown) => {
          if (!this.closed) this.opts.log.error({ err }, 'periodic garbage collection failed');
        })
        .finally(() => {
          this.gcRunning = undefined;
        });
    }, everyMs);
    this.gcTimer.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.gcTimer);
    await this.gcRunning;
    this.gate.close();
    await Promise.all([this.jobs.stop(), this.pods.stop(), this.events.stop()]);
  }
}

/** A store lookup for collectGarbage(): what the run store says of each attempt. */
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

function errText(err: unknown): string {
  if (err instanceof Error) return err.message.split('\n')[0] ?? err.message;
  return String(err);
}
