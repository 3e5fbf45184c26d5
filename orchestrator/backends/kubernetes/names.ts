/**
 * Names, labels and annotations of the objects the kubernetes backend creates.
 *
 * Names are deterministic (a restarted controller finds what it created: AlreadyExists
 * is success), DNS-1123 labels of at most 63 characters, cut with a hash when too long.
 * The functions that the spec checks also use (jobNameFor, dnsLabelName, labelValueFor)
 * live in common/spec/k8s-names.ts, so that submit and the builders agree; they are
 * re-exported here for the backend.
 *
 *   Job (train attempt)   jobNameFor(taskId, attempt)   `${runId}-${stage}-a${attempt}`
 *   Service (gang)        serviceNameFor(job)           the Job's name (DNS-1035: "s-" first
 *                                                       when it starts with a digit)
 *   Job (pool worker)     poolWorkerJobName(workerId)   `pool-${workerId}`
 *   worker id             poolWorkerIdFor(pool, n)      `${pool}-${n}` (n: a word of
 *                                                       [a-z0-9]; the backend picks it)
 *
 * Labels (values through labelValueFor: ids longer than 63 are cut and hashed) select
 * the objects: the backend watches `app.kubernetes.io/managed-by=stoker`. Annotations
 * carry the full ids.
 */
import { dnsLabelName, JOB_NAME_MAX } from '../../../common/spec/schema.js';

export {
  dnsLabelName,
  isDnsLabel,
  isLabelValue,
  JOB_NAME_MAX,
  jobNameFor,
  K8S_NAME_MAX,
  labelValueFor,
} from '../../../common/spec/schema.js';

export const LABELS = {
  managedBy: 'app.kubernetes.io/managed-by',
  name: 'app.kubernetes.io/name',
  component: 'app.kubernetes.io/component',
  run: 'stoker.dev/run',
  task: 'stoker.dev/task',
  stage: 'stoker.dev/stage',
  attempt: 'stoker.dev/attempt',
  /** On pods: the Job they belong to (the gang Service selects on it). */
  job: 'stoker.dev/job',
  pool: 'stoker.dev/pool',
  workerId: 'stoker.dev/worker-id',
  kueueQueue: 'kueue.x-k8s.io/queue-name',
} as const;

export const ANNOTATIONS = {
  runId: 'stoker.dev/run-id',
  taskId: 'stoker.dev/task-id',
  unit: 'stoker.dev/unit',
  stage: 'stoker.dev/stage',
  attempt: 'stoker.dev/attempt',
  pool: 'stoker.dev/pool',
  workerId: 'stoker.dev/worker-id',
} as const;

/** The annotation the Job controller puts on each pod of an Indexed Job. */
export const COMPLETION_INDEX_ANNOTATION = 'batch.kubernetes.io/job-completion-index';

export const MANAGED_BY = 'stoker';
export const COMPONENTS = { train: 'train-worker', pool: 'pool-worker' } as const;

/** The headless Service of a multi-node Job (DNS-1035: it must start with a letter). */
export function serviceNameFor(jobName: string): string {
  return /^[a-z]/.test(jobName) ? jobName : `s-${jobName}`;
}

/** The Job of one pool worker. */
export function poolWorkerJobName(workerId: string): string {
  return dnsLabelName(`pool-${workerId}`, '', JOB_NAME_MAX);
}

/** A pool worker's id: `${pool}-${suffix}` (suffix: random hex from the backend, or an index). */
export function poolWorkerIdFor(pool: string, suffix: string | number): string {
  return `${pool}-${suffix}`;
}

/** What the backend lists and watches: every object stoker labelled as its own. */
export const MANAGED_BY_SELECTOR = `${LABELS.managedBy}=${MANAGED_BY}`;
/** The Job controller's pod-creation failures (core/v1 events support these field selectors). */
export const FAILED_CREATE_SELECTOR = 'involvedObject.kind=Job,reason=FailedCreate';
