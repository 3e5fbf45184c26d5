/**
 * The backend interface: how units of execution are started and observed. `local`
 * runs worker processes on this machine; `kubernetes` creates Jobs (and a headless
 * Service for a multi-node gang). The dispatcher only talks to this interface.
 *
 * A *unit* is one attempt of one dispatched task: a process group here, a Job (with one
 * pod per node) on Kubernetes. Unit names are deterministic (`${taskId}-a${attempt}`),
 * so launch() is idempotent: launching a unit that exists re-attaches to it, which is
 * how a restarted controller picks up work that kept running while it was down.
 *
 * Pools (pulled execution): ensurePool(pool, replicas) sizes a pool's workers (processes
 * here, one Job per worker on Kubernetes); stopPools() stops them at shutdown.
 */
import type { V1Pod } from '@kubernetes/client-node';
import type { SpecIssue } from '../../common/errors.js';
import type { NormalizedSpec, Resources } from '../../common/spec/schema.js';

/** A pool as the backend sizes it (pulled execution). */
export interface PoolSpec {
  name: string;
  resources: Resources;
  /**
   * `${runId}/${stage}` of the stage that last registered the pool (pools.ts). A backend
   * that starts workers from an image (kubernetes) builds them from that stage's spec:
   * its image, kubernetes block, secretEnv and grace. Absent in pools registered before
   * it existed.
   */
  declaredBy?: string | undefined;
}

export interface LaunchRequest {
  unitName: string;
  taskId: string;
  runId: string;
  stage: string;
  attempt: number;
  runDir: string;
  resources: Resources;
  image?: string | undefined;
  activeDeadlineSeconds?: number | undefined;
  terminationGracePeriodSeconds: number;
}

export type UnitPhase = 'Running' | 'Succeeded' | 'Failed' | 'NotFound';

export interface UnitState {
  phase: UnitPhase;
  exitCode: number | null;
  signal: string | null;
  /** Machine-readable reason for a failure seen by the backend (WorkerLost, DeadlineExceeded...). */
  reason: string | null;
  message: string | null;
  stderrTail: string[];
  logFile: string | null;
  /** Set by a backend that knows better than the exit code (an image that cannot be pulled: false). */
  retryable?: boolean;
  /** Disrupted by the cluster (eviction, preemption): retry without spending an attempt. */
  freeRetry?: boolean;
}

export interface Backend {
  readonly name: string;
  /**
   * Units outlive the controller (Kubernetes Jobs): a controller that stops leaves them
   * running for the next leader instead of preempting them.
   */
  readonly unitsOutliveController?: boolean;
  /**
   * What in a spec this backend cannot run, each with its YAML path (none: fine). The
   * controller fails such a run before any of its stages starts.
   */
  checkSpec?(spec: NormalizedSpec): SpecIssue[];
  /** Create the unit, or re-attach if it already exists. `attached` tells which. */
  launch(req: LaunchRequest): Promise<{ attached: boolean }>;
  /** The unit's state now. */
  observe(unitName: string): Promise<UnitState>;
  /** Resolve when the unit has finished (or `signal` aborts the wait: NotFound is not returned then). */
  wait(unitName: string, signal?: AbortSignal, onNote?: (note: string) => void): Promise<UnitState>;
  /** Stop the unit: SIGTERM (the payload checkpoints), then kill after the grace period. */
  terminate(unitName: string, opts: { graceSeconds: number; force?: boolean }): Promise<void>;
  /**
   * Run `replicas` workers of the pool (`stoker worker --pool NAME`). Scaling down asks
   * idle workers to stop first, then busy ones; a busy worker finishes its shard before
   * it exits (SIGTERM drains): no shard is killed half-way.
   */
  ensurePool?(pool: PoolSpec, replicas: number): Promise<void>;
  /**
   * A pool's worker pods (Kubernetes): pending ones count as capacity on the way, and one
   * the scheduler cannot place is reported (orchestrator/autoscale/provisioning.ts).
   */
  poolPods?(pool: string): V1Pod[];
  /** Stop every worker of every pool (drain; force kills). */
  stopPools?(opts: { force?: boolean; drainMs?: number }): Promise<void>;
  close(): Promise<void>;
}

/** A unit's state with nothing known but its phase (and `extra`). */
export function unitState(phase: UnitPhase, extra: Partial<UnitState> = {}): UnitState {
  return {
    phase,
    exitCode: null,
    signal: null,
    reason: null,
    message: null,
    stderrTail: [],
    logFile: null,
    ...extra,
  };
}

/** The worker command's arguments for one unit: `worker --task ID --unit NAME --attempt N`. */
export function taskWorkerArgs(
  req: Pick<LaunchRequest, 'taskId' | 'unitName' | 'attempt'>,
): string[] {
  return ['--task', req.taskId, '--unit', req.unitName, '--attempt', String(req.attempt)];
}
