/**
 * The pool worker's own state (common/worker-state.ts) as it publishes it in
 * `pool:{name}:workers`: `starting` until BullMQ is ready, then `idle` / `busy` per
 * shard, `draining` after the first SIGTERM. A heartbeat re-publishes it every
 * heartbeatMs so the controller can tell a live worker from a dead one.
 *
 * The shard's begin and finish scripts write the state in the same round trip as the
 * shard's status (TaskStore.beginShard / finishShard): those callers compute the next
 * state with next() and record it with adopt() once the script has run.
 */
import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import type { Keys } from '../../common/keys.js';
import type { Logger } from '../../common/logger.js';
import { nowIso } from '../../common/model.js';
import type { WorkerState } from '../../common/worker-state.js';

export class WorkerStatePublisher {
  private state: WorkerState;
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
      since: now,
      heartbeatAt: now,
      shardsDone: 0,
    };
  }

  get current(): WorkerState {
    return this.state;
  }

  /** The state after `patch`: heartbeatAt now, `since` moved when the state changed. */
  next(patch: Partial<WorkerState>): WorkerState {
    const now = nowIso();
    const changed = patch.state !== undefined && patch.state !== this.state.state;
    return { ...this.state, ...patch, heartbeatAt: now, ...(changed ? { since: now } : {}) };
  }

  /** Take a state that a shard script has already written. */
  adopt(state: WorkerState): void {
    this.state = state;
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
