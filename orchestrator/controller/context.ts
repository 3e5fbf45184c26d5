/**
 * What the controller's parts share: its options (the connections, the run store, the
 * queues, the backend) and the one status write they all make, failing a stage that
 * cannot start.
 *
 *   controller.ts    the loop (wake-ups, resync) and reconcileRun's numbered steps
 *   plan.ts          the pure planner: status and actions from what was observed
 *   start-stage.ts   the createTask action: resolve the payload, then queue the stage
 *   dispatched.ts    a dispatched stage's task on `train` or `steps`: queue, re-add, cancel
 *   pulled.ts        a pulled stage's shards: split, queue, cancel, manifest
 *   pool-sizing.ts   pools in use by stages, and sizing them through the backend
 *   run-lineage.ts   what stages consumed and produced, and lineage.json
 *   unrunnable.ts    a run the backend cannot run fails before anything starts
 */
import type { Queue, ConnectionOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import type { DispatchQueue, Keys } from '../../common/keys.js';
import type { Logger } from '../../common/logger.js';
import { nowIso, type StageStatus } from '../../common/model.js';
import type { AutoscaleSettings } from '../autoscale/settings.js';
import type { Backend } from '../backends/types.js';
import type { DispatchJobData } from '../dispatcher.js';
import type { RunStore } from '../store.js';
import { setCondition } from './plan.js';

export interface ControllerOptions {
  redis: Redis;
  /** A separate connection for SUBSCRIBE. */
  subscriber: Redis;
  keys: Keys;
  store: RunStore;
  queues: Record<DispatchQueue, Queue<DispatchJobData>>;
  /** BullMQ connection, for the queues of pools. */
  connection: ConnectionOptions;
  /** Sizes pools (pulled execution). */
  backend?: Backend;
  /** The GPU budget and the provisioning setting of the pools (autoscale/settings.ts). */
  autoscale?: AutoscaleSettings;
  log: Logger;
  resyncMs?: number;
  clock?: () => number;
}

/** The options as the controller's parts see them: a clock always set. */
export type ControllerContext = ControllerOptions & { clock: () => number };

/** A stage that cannot start (its payload or input cannot be resolved) fails with the reason. */
export async function failStage(
  ctx: ControllerContext,
  runId: string,
  status: StageStatus,
  reason: string,
  message: string,
): Promise<void> {
  const now = nowIso(ctx.clock);
  await ctx.store.writeStageIfChanged(runId, status, {
    ...status,
    phase: 'Failed',
    message,
    finishedAt: now,
    conditions: setCondition(
      status.conditions,
      { type: 'Failed', status: 'True', reason, message },
      now,
    ),
  });
}
