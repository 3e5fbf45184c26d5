/**
 * The autoscaler's controller settings (README, "GPU budget and provisioning"), from the
 * controller's environment:
 *
 *   STOKER_GPU_BUDGET                      GPUs the autoscaled pools and the training stages
 *                                          of this controller may hold together (unset: no
 *                                          budget)
 *   STOKER_GPU_BUDGET_QUEUES               JSON {"<Kueue LocalQueue>": GPUs, ...}: a budget
 *                                          per queue, for the pools and stages that name it
 *   STOKER_UNSCHEDULABLE_AFTER_SECONDS     how long a pool's pod may stay unschedulable
 *                                          before it is no longer counted (default 120)
 *
 * A bad value is a UsageError naming the variable: the controller does not start on a
 * budget it cannot read.
 */
import { UsageError } from '../../common/errors.js';
import { NO_BUDGET, type GpuBudget } from './budget.js';
import { DEFAULT_UNSCHEDULABLE_AFTER_SECONDS } from './provisioning.js';

export interface AutoscaleSettings {
  budget: GpuBudget;
  unschedulableAfterSeconds: number;
}

export const DEFAULT_AUTOSCALE_SETTINGS: AutoscaleSettings = {
  budget: NO_BUDGET,
  unschedulableAfterSeconds: DEFAULT_UNSCHEDULABLE_AFTER_SECONDS,
};

const MAX_GPUS = 1_000_000;

function gpus(name: string, raw: unknown): number {
  const n = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : raw;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > MAX_GPUS)
    throw new UsageError(
      `${name}: ${JSON.stringify(raw)} is not a whole number of GPUs (0 to ${MAX_GPUS})`,
    );
  return n;
}

export function autoscaleSettingsFromEnv(env: NodeJS.ProcessEnv): AutoscaleSettings {
  const controller =
    env.STOKER_GPU_BUDGET === undefined || env.STOKER_GPU_BUDGET === ''
      ? null
      : gpus('STOKER_GPU_BUDGET', env.STOKER_GPU_BUDGET);
  const queues: Record<string, number> = {};
  const rawQueues = env.STOKER_GPU_BUDGET_QUEUES;
  if (rawQueues !== undefined && rawQueues !== '') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(rawQueues);
    } catch {
      throw new UsageError(
        `STOKER_GPU_BUDGET_QUEUES: not JSON (expected {"queue-name": GPUs, ...}): ${rawQueues.slice(0, 80)}`,
      );
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
      throw new UsageError(
        'STOKER_GPU_BUDGET_QUEUES: expected an object {"queue-name": GPUs, ...}',
      );
    for (const [q, v] of Object.entries(parsed))
      queues[q] = gpus(`STOKER_GPU_BUDGET_QUEUES.${q}`, v);
  }
  const after = env.STOKER_UNSCHEDULABLE_AFTER_SECONDS;
  let unschedulableAfterSeconds = DEFAULT_UNSCHEDULABLE_AFTER_SECONDS;
  if (after !== undefined && after !== '') {
    const n = Number(after);
    if (!Number.isFinite(n) || n < 0 || n > 86_400)
      throw new UsageError(
        `STOKER_UNSCHEDULABLE_AFTER_SECONDS: ${JSON.stringify(after)} is not a number of seconds (0 to 86400)`,
      );
    unschedulableAfterSeconds = n;
  }
  return { budget: { controller, queues }, unschedulableAfterSeconds };
}
