/**
 * Pools on Kubernetes (pulled execution): one Job per worker, sized from the caches.
 * pools.ts has the rules (planPool, pure); this is the part that observes and converges.
 *
 *   ensure  run `replicas` workers of the pool: finished Jobs are deleted, missing
 *           workers created with fresh ids, a surplus drained by deleting the Jobs of
 *           idle workers first. Reads only the caches (and the workers' states in Redis):
 *           a pass over a pool whose Jobs did not change sends no request
 *   stop    at shutdown. force: every worker is killed (Jobs and pods deleted with no
 *           grace; their shards are redelivered). Otherwise, where pools outlive the
 *           controller (a real cluster), nothing is done: the workers keep serving the
 *           queue and the next leader's ensure adopts them by label. Where they do not
 *           (the simulated cluster of `--simulate` dies with the process), every worker
 *           is asked to drain (its Job deleted) and waited for, up to drainMs (default
 *           60 s); whatever still runs then is killed
 *
 * The two run one at a time. A Job this backend deleted is remembered until the cache
 * no longer shows it, so that no pass counts it or deletes it again.
 */
import { randomBytes } from 'node:crypto';
import type { V1ConfigMap, V1Job, V1Pod } from '@kubernetes/client-node';
import type { Logger } from '../../../common/logger.js';
import type { PoolSpec } from '../types.js';
import { isHttpStatus } from './api-gate.js';
import type { BackendParts } from './cache.js';
import { poolWorkerIdFor } from './names.js';
import { ownedByJob } from './train-job.js';
import {
  isPodRunning,
  isPoolWorkerObject,
  planPool,
  poolOf,
  workerIdOf,
  type PublishedState,
} from './pools.js';

/** What the backend needs to size pools, beyond the API server. */
export interface PoolSupport {
  /**
   * The Job of one worker of the pool (objects.ts buildPoolWorkerJob) and the ConfigMap
   * of its run's files (run-files.ts, owned by the Job once created), or null when the
   * stage its pods are built from is gone (nothing can be started then).
   */
  build(
    pool: PoolSpec,
    workerId: string,
  ): Promise<{ job: V1Job; configMap?: V1ConfigMap | undefined } | null>;
  /** Worker id -> what the worker published (pool:{name}:workers). */
  workerStates(pool: string): Promise<Map<string, PublishedState>>;
  /** Drop the records of workers that are gone. */
  forgetWorkers(pool: string, workerIds: string[]): Promise<void>;
  /**
   * Pool workers outlive the controller (default true, as train Jobs do): a normal stop
   * leaves them running. False where the cluster itself stops with this process.
   */
  outliveController?: boolean;
}

export class PoolWorkers {
  /** Pool worker Jobs this backend deleted that the Job cache may still show. */
  private readonly deleting = new Set<string>();
  /** Pools whose pods cannot be built (logged once). */
  private readonly unbuildable = new Set<string>();
  /** ensure() and stop() run one at a time. */
  private turn: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly parts: BackendParts,
    private readonly support: PoolSupport | undefined,
  ) {}

  async ensure(pool: PoolSpec, replicas: number): Promise<void> {
    const support = this.support;
    if (!support) throw new Error('this kubernetes backend was created without pool support');
    await this.inTurn(async () => {
      if (this.parts.closed()) return;
      this.pruneDeleting();
      const plan = planPool({
        jobs: this.poolJobs(pool.name),
        pods: this.poolPods(pool.name),
        deleting: this.deleting,
        states: await support.workerStates(pool.name),
        replicas,
      });
      const log = this.parts.log.child({ pool: pool.name });
      if (plan.forget.length) await support.forgetWorkers(pool.name, plan.forget);
      for (const job of plan.finished) {
        log.info({ workerId: workerIdOf(job), job: job.metadata?.name }, 'pool worker ended');
        await this.deleteJob(job);
      }
      for (const job of plan.victims) {
        log.info(
          { workerId: workerIdOf(job), job: job.metadata?.name, replicas },
          'scaling down: draining worker',
        );
        await this.deleteJob(job);
      }
      await this.startWorkers(support, pool, plan.create, { log, replicas });
    });
  }

  async stop(opts: { force?: boolean; drainMs?: number }): Promise<void> {
    await this.inTurn(async () => {
      if (this.parts.closed()) return;
      this.pruneDeleting();
      const { log, api } = this.parts;
      const outlive = this.support?.outliveController ?? true;
      const jobs = this.poolJobs().filter(
        (j) => !this.deleting.has(j.metadata?.name ?? '') && !j.metadata?.deletionTimestamp,
      );
      if (!opts.force && outlive) {
        if (jobs.length)
          log.info(
            { workers: jobs.length },
            'leaving pool workers running for the next controller',
          );
        return;
      }
      for (const job of jobs) await this.deleteJob(job, opts.force ? 0 : undefined);
      if (!opts.force) {
        const deadline = Date.now() + (opts.drainMs ?? 60_000);
        while (this.poolPods().some(isPodRunning) && Date.now() < deadline)
          await new Promise((r) => setTimeout(r, 100));
      }
      // A Job's grace period does not reach its pods: kill what still runs.
      for (const pod of this.poolPods().filter(isPodRunning)) {
        if (!opts.force)
          log.warn({ pod: pod.metadata?.name }, 'pool worker did not drain in time; killed');
        await api.deletePod(pod.metadata?.name ?? '', { gracePeriodSeconds: 0 });
      }
    });
  }

  private inTurn<T>(fn: () => Promise<T>): Promise<T> {
    const turn = this.turn.then(fn);
    this.turn = turn.catch(() => undefined);
    return turn;
  }

  /** Start `count` workers with fresh ids; none when the pool's pods cannot be built. */
  private async startWorkers(
    support: PoolSupport,
    pool: PoolSpec,
    count: number,
    ctx: { log: Logger; replicas: number },
  ): Promise<void> {
    for (let i = 0; i < count; i++) {
      const workerId = poolWorkerIdFor(pool.name, randomBytes(3).toString('hex'));
      const built = await support.build(pool, workerId);
      if (!built) {
        if (!this.unbuildable.has(pool.name))
          ctx.log.warn(
            { declaredBy: pool.declaredBy },
            'cannot start pool workers: the stage that declares the pool is gone',
          );
        this.unbuildable.add(pool.name);
        break;
      }
      this.unbuildable.delete(pool.name);
      const { job, configMap } = built;
      const uid = await this.createJob(job);
      if (configMap) {
        const name = job.metadata?.name ?? '';
        await this.parts.api.createConfigMap(
          uid ? ownedByJob(configMap, { name, uid }) : configMap,
        );
      }
      ctx.log.info(
        { workerId, job: job.metadata?.name, replicas: ctx.replicas },
        'started pool worker',
      );
    }
  }

  /** Worker Jobs (of one pool, or of all): the cache, plus ones created a moment ago. */
  private poolJobs(pool?: string): V1Job[] {
    return this.parts.cache
      .jobsWithFresh()
      .filter((j) => isPoolWorkerObject(j) && (pool === undefined || poolOf(j) === pool));
  }

  private poolPods(pool?: string): V1Pod[] {
    return this.parts.cache
      .listPods()
      .filter((p) => isPoolWorkerObject(p) && (pool === undefined || poolOf(p) === pool));
  }

  /** Forget deletions the cache has caught up with. */
  private pruneDeleting(): void {
    for (const name of this.deleting)
      if (!this.parts.cache.cachedJob(name)) this.deleting.delete(name);
  }

  /** Creates a worker's Job; its uid (what the ConfigMap of its files is owned by). */
  private async createJob(job: V1Job): Promise<string | undefined> {
    const { api, cache } = this.parts;
    const name = job.metadata?.name ?? '';
    try {
      const created = await api.createJob(job);
      cache.noteCreated(name, created);
      return created.metadata?.uid;
    } catch (err) {
      // The same create, retried after its answer was lost: it is there.
      if (!isHttpStatus(err, 409)) throw err;
      const existing = cache.cachedJob(name) ?? (await api.readJob(name));
      if (existing) cache.noteCreated(name, existing);
      return existing?.metadata?.uid;
    }
  }

  /**
   * Delete a worker's Job (Background): its pod gets SIGTERM and drains within its grace
   * period (0: killed at once). Marked first, so that no pass counts or deletes it again.
   */
  private async deleteJob(job: V1Job, graceSeconds?: number): Promise<void> {
    const name = job.metadata?.name ?? '';
    this.deleting.add(name);
    this.parts.cache.forgetCreated(name);
    try {
      await this.parts.api.deleteJob(name, graceSeconds);
    } catch (err) {
      this.deleting.delete(name);
      throw err;
    }
  }
}
