/**
 * A dispatched task's progress mirrored into its BullMQ job's `progress`, as a percentage
 * (step / totalSteps), so Bull Board and any other BullMQ tool show how far it is. The
 * dispatcher calls sync() while it supervises the unit and once more when the unit has
 * ended; the job is written only when the percentage changed.
 */
import type { Redis } from 'ioredis';
import type { Keys } from '../common/keys.js';
import { readTaskProgress } from '../common/progress.js';

export interface ProgressTarget {
  updateProgress(progress: number): Promise<void>;
}

export class JobProgressMirror {
  private last: number | null = null;

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly taskId: string,
    private readonly job: ProgressTarget,
  ) {}

  /** The percentage now (one decimal), or null without a step and a total. */
  async percent(): Promise<number | null> {
    const p = await readTaskProgress(this.redis, this.keys, this.taskId);
    if (p.step === null || !p.totalSteps || p.totalSteps <= 0) return null;
    return Math.min(100, Math.max(0, Math.round((1000 * p.step) / p.totalSteps) / 10));
  }

  async sync(): Promise<void> {
    const pct = await this.percent();
    if (pct === null || pct === this.last) return;
    this.last = pct;
    await this.job.updateProgress(pct);
  }
}
