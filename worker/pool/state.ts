/**
 * The pool worker's own state (common/worker-state.ts) as it publishes it in
 * `pool:{name}:workers`: `starting` until BullMQ is ready, then `idle` / `busy` per
 * shard, `draining` after the first SIGTERM. A heartbeat re-publishes it every
 * heartbeatMs so the controller can tell a live worker from a dead one.
 *
 * The shard's begin and finish scripts write the state in the same round trip as the
 * shard's status (TaskStore.beginShard / finishShard). The state kept here is the truth
 * those scripts write: shardBegins() and shardEnds() change it at once, before the
 * script is sent, so that with one shard in hand (lookahead.ts) the next shard's begin
 * and the last one's outcome, sent in either order on the one connection, leave the
 * state right (busy with the next shard, one more done).
 */
import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import type { Keys } from '../../common/keys.js';
import type { Logger } from '../../common/logger.js';
import { nowIso } from '../../common/model.js';
import type { WorkerState } from '../../common/worker-state.js';

export class WorkerStatePublisher {
  private state: WorkerState;
  /** Shards begun and not over, oldest first. */
  private readonly begun: string[] = [];
  private heartbeat: NodeJS.Timeout | null = null;

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    readonly pool: string,
    readonly workerId: string,
    private readonly log: Logger,
  ) {
    const now = nowIso();
    this.state = {
      workerId,
      pid: process.pid,
      host: hostname(),
      state: 'starting',
      shard: null,
      shardSince: null,
      since: now,
      heartbeatAt: now,
      shardsDone: 0,
      startedAt: now,
      loadedAt: null,
    };
  }

  get current(): WorkerState {
    return this.state;
  }

  /**
   * The state after `patch`: heartbeatAt now, `since` moved when the state changed,
   * `shardSince` when the shard did.
   */
  next(patch: Partial<WorkerState>): WorkerState {
    const now = nowIso();
    const changed = patch.state !== undefined && patch.state !== this.state.state;
    const shard = patch.shard === undefined ? this.state.shard : patch.shard;
    const shardSince =
      shard === null ? null : shard === this.state.shard ? (this.state.shardSince ?? now) : now;
    return {
      ...this.state,
      ...patch,
      heartbeatAt: now,
      shardSince,
      ...(changed ? { since: now } : {}),
    };
  }

  /**
   * A shard begins: busy. The state names the oldest shard begun and not over (the one
   * on the server; a shard in hand begins while the last one ends: lookahead.ts).
   */
  shardBegins(shard: string): WorkerState {
    this.begun.push(shard);
    this.state = this.next({ state: 'busy', shard: this.begun[0] ?? shard });
    return this.state;
  }

  /**
   * A shard is over, whatever its outcome (`counted`: it ran; false for one that began
   * but did not run): idle, or draining, once no other shard is begun.
   */
  shardEnds(shard: string, draining: boolean, counted = true): WorkerState {
    const i = this.begun.indexOf(shard);
    if (i >= 0) this.begun.splice(i, 1);
    const first = this.begun[0];
    this.state = this.next({
      ...(first !== undefined
        ? { state: 'busy', shard: first }
        : { state: draining ? 'draining' : 'idle', shard: null }),
      shardsDone: this.state.shardsDone + (counted ? 1 : 0),
    });
    return this.state;
  }

  /** The payload server is ready for the first time (its model loaded): kept as loadedAt. */
  loaded(): void {
    if (!this.state.loadedAt) this.state = { ...this.state, loadedAt: nowIso() };
  }

  /** BullMQ is ready: idle, unless a shard has begun already (BullMQ starts at once). */
  async ready(): Promise<void> {
    if (this.state.state === 'starting') await this.publish({ state: 'idle' });
  }

  /** Write the state after `patch`; a Redis error is logged, never thrown. */
  async publish(patch: Partial<WorkerState>): Promise<void> {
    this.state = this.next(patch);
    await this.redis
      .hset(this.keys.poolWorkers(this.pool), this.workerId, JSON.stringify(this.state))
      .catch((err: unknown) => this.log.warn({ err }, 'cannot publish worker state'));
  }

  startHeartbeat(everyMs: number): void {
    this.heartbeat = setInterval(() => void this.publish({}), everyMs);
  }

  /** Stop the heartbeat and take the worker out of the pool's list. */
  async remove(): Promise<void> {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
    await this.redis.hdel(this.keys.poolWorkers(this.pool), this.workerId);
  }
}
