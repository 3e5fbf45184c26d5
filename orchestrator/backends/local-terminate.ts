/**
 * How the local backend stops a worker (LocalBackend.terminate): SIGTERM, which the worker
 * forwards to its payload (the payload checkpoints; the worker kills the payload's group
 * after the grace period itself), and a SIGKILL of both only when the worker has not
 * ended 10 s after the grace period.
 *
 * One exception: when Redis is out of reach (the unit's record could not be read: the
 * usual reason a controller stops) and the payload is gone, the worker is waiting to
 * record the outcome, its checkpoint and an attempt not spent. Killing it would lose both
 * (the attempt would end as WorkerLost and resume from an older checkpoint), so it is
 * left to finish once Redis answers.
 */
import type { Logger } from '../../common/logger.js';
import { hasLiveChild, isRunning, killGroup, killPid } from '../../common/proc.js';

export interface WorkerToStop {
  unit: string;
  pid: number;
  pidStartTime: string | null;
  /** The payload's process group, when the record said. */
  pgid: number | null;
  /** Whether the unit's record could be read (Redis in reach). */
  recordRead: boolean;
}

export function stopWorker(
  w: WorkerToStop,
  opts: { graceSeconds: number; force?: boolean; clock: () => number; log: Logger },
): void {
  if (opts.force) {
    if (w.pgid) killGroup(w.pgid, 'SIGKILL');
    killGroup(w.pid, 'SIGKILL');
    return;
  }
  killPid(w.pid, 'SIGTERM');
  const deadline = opts.clock() + (opts.graceSeconds + 10) * 1000;
  const timer = setInterval(() => {
    if (!isRunning(w.pid, w.pidStartTime)) return clearInterval(timer);
    if (opts.clock() <= deadline) return;
    clearInterval(timer);
    if (!w.recordRead && !hasLiveChild(w.pid)) {
      opts.log.warn({ unit: w.unit, pid: w.pid }, 'worker left to record its outcome');
      return;
    }
    if (w.pgid) killGroup(w.pgid, 'SIGKILL');
    killGroup(w.pid, 'SIGKILL');
    opts.log.warn(
      { unit: w.unit, pid: w.pid },
      'worker ignored SIGTERM past its grace period; killed',
    );
  }, 500);
  timer.unref();
}
