/**
 * The pods a Job is missing, and creating them from its template.
 *
 * - How many: Indexed, one pod per index that is neither completed nor taken by a live
 *   pod, up to parallelism; NonIndexed, up to min(parallelism, completions - succeeded)
 *   live pods (without completions: parallelism until one succeeds). Pods still
 *   terminating hold their place with podReplacementPolicy Failed.
 * - Each pod: the template with the Job as controller owner, the job-tracking finalizer,
 *   `generateName` `JOB-` (Indexed: `JOB-INDEX-`, a hostname `JOB-INDEX`, the index as
 *   annotation and label, JOB_COMPLETION_INDEX from it in every container's env).
 * - A create the API server refuses (a missing PriorityClass, a failing admission) is a
 *   Warning event FailedCreate on the Job and a retry after a delay that doubles from
 *   createRetryMs up to 10 s; the first create that works resets the delay.
 */
import type { IJob } from 'kubernetes-models/batch/v1/Job';
import type { IPod } from 'kubernetes-models/v1/Pod';
import { type KubeObject, KubeApiError, clone } from '../objects/meta.js';
import { JOB_TRACKING_FINALIZER } from '../objects/resources.js';
import type { FakeKubeStore } from '../store/store.js';
import { COMPLETION_INDEX } from './indexes.js';
import type { JobMemory } from './memory.js';
import { isTerminal } from './progress.js';

/** The Job's pods by state, as this reconcile found them. */
export interface JobPods {
  live: IPod[];
  active: IPod[];
  terminating: IPod[];
}

/** Which pods to create: an index each (Indexed) or undefined each (NonIndexed). */
export function podsWanted(
  spec: NonNullable<IJob['spec']>,
  pods: JobPods,
  completed: Set<number>,
  succeeded: number,
): (number | undefined)[] {
  const parallelism = spec.parallelism ?? 1;
  // Replacements wait for terminating pods with podReplacementPolicy Failed.
  const busy =
    pods.active.length + (spec.podReplacementPolicy === 'Failed' ? pods.terminating.length : 0);
  const wanted: (number | undefined)[] = [];
  if (spec.completionMode === 'Indexed') {
    const taken = new Set(
      pods.live
        .filter(
          (p) =>
            !isTerminal(p) &&
            (!p.metadata?.deletionTimestamp || spec.podReplacementPolicy === 'Failed'),
        )
        .map((p) => Number(p.metadata?.annotations?.[COMPLETION_INDEX])),
    );
    for (let i = 0; i < (spec.completions ?? 0) && busy + wanted.length < parallelism; i++) {
      if (!completed.has(i) && !taken.has(i)) wanted.push(i);
    }
  } else {
    const remaining =
      spec.completions !== undefined
        ? spec.completions - succeeded
        : succeeded > 0
          ? 0
          : parallelism;
    const target = Math.min(parallelism, Math.max(0, remaining));
    for (let n = busy; n < target; n++) wanted.push(undefined);
  }
  return wanted;
}

/**
 * Create the pods for `wanted`; on the first refusal record it, arm m.retry to call
 * `retry` after the backoff, and stop.
 */
export function createPods(
  store: FakeKubeStore,
  job: IJob,
  m: JobMemory,
  wanted: (number | undefined)[],
  backoff: { firstMs: number; retry: () => void },
): void {
  const ns = job.metadata!.namespace!;
  for (const index of wanted) {
    const pod = podFor(job, index);
    try {
      const created = store.create<IPod>('pods', pod, { namespace: ns });
      m.createFailing = false;
      m.retryDelay = backoff.firstMs;
      store.recordEvent(
        job as unknown as KubeObject,
        'Normal',
        'SuccessfulCreate',
        `Created pod: ${created.metadata!.name!}`,
        'job-controller',
      );
    } catch (err) {
      if (!(err instanceof KubeApiError)) throw err;
      m.createFailing = true;
      store.recordEvent(
        job as unknown as KubeObject,
        'Warning',
        'FailedCreate',
        `Error creating: ${err.message}`,
        'job-controller',
      );
      const delay = m.retryDelay;
      m.retryDelay = Math.min(m.retryDelay * 2, 10_000);
      m.retry = setTimeout(() => {
        delete m.retry;
        backoff.retry();
      }, delay);
      m.retry.unref();
      return;
    }
  }
}

function podFor(job: IJob, index: number | undefined): KubeObject {
  const name = job.metadata!.name!;
  const tpl = clone(job.spec!.template);
  const labels: Record<string, string> = { ...(tpl.metadata?.labels ?? {}) };
  const annotations: Record<string, string> = { ...(tpl.metadata?.annotations ?? {}) };
  const podSpec = tpl.spec!;
  if (index !== undefined) {
    labels[COMPLETION_INDEX] = String(index);
    annotations[COMPLETION_INDEX] = String(index);
    podSpec.hostname ??= `${name}-${index}`;
    for (const c of [...podSpec.containers, ...(podSpec.initContainers ?? [])]) {
      const env = (c.env ?? []).filter((e) => e.name !== 'JOB_COMPLETION_INDEX');
      env.unshift({
        name: 'JOB_COMPLETION_INDEX',
        valueFrom: { fieldRef: { fieldPath: `metadata.annotations['${COMPLETION_INDEX}']` } },
      });
      c.env = env;
    }
  }
  const meta: KubeObject['metadata'] = {
    generateName: index !== undefined ? `${name}-${index}-` : `${name}-`,
    namespace: job.metadata!.namespace!,
    labels,
    ownerReferences: [
      {
        apiVersion: 'batch/v1',
        kind: 'Job',
        name,
        uid: job.metadata!.uid!,
        controller: true,
        blockOwnerDeletion: true,
      },
    ],
    finalizers: [JOB_TRACKING_FINALIZER],
  };
  if (Object.keys(annotations).length) meta.annotations = annotations;
  return { apiVersion: 'v1', kind: 'Pod', metadata: meta, spec: podSpec };
}
