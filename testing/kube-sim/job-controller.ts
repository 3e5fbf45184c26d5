/**
 * The fake cluster's Job controller (batch/v1), in-process on the fake API server's store
 * and driven by its events (no polling): creates pods from a Job's template (NonIndexed,
 * or Indexed with stable hostnames and JOB_COMPLETION_INDEX), tracks them with the
 * `batch.kubernetes.io/job-tracking` finalizer like the real controller, and writes Job
 * status (active/ready/terminating/succeeded/failed, startTime, completionTime,
 * completedIndexes) and conditions:
 *
 * - Complete (with SuccessCriteriaMet) when enough pods succeeded;
 * - Failed (after FailureTarget, once no pod is still terminating) with reason
 *   BackoffLimitExceeded, DeadlineExceeded (activeDeadlineSeconds) or PodFailurePolicy
 *   (a FailJob rule matched exit codes or pod conditions); Ignore rules (e.g. on
 *   DisruptionTarget) neither count the failure nor stop a replacement;
 * - Suspended while spec.suspend (no pods; running pods are deleted).
 *
 * A rejected pod create (e.g. a missing PriorityClass) is a Warning event FailedCreate
 * on the Job, retried with backoff and when a PriorityClass appears.
 * ttlSecondsAfterFinished deletes a finished Job (propagationPolicy Background).
 */
import type { IJob } from 'kubernetes-models/batch/v1/Job';
import type { IJobCondition } from 'kubernetes-models/batch/v1/JobCondition';
import type { IJobStatus } from 'kubernetes-models/batch/v1/JobStatus';
import type { IPod } from 'kubernetes-models/v1/Pod';
import type { Clock, ClockTimer } from './clock.js';
import type { FakeApiServer } from './kube-apiserver.js';
import { type KubeObject, KubeApiError, clone, deepEqual, kubeTime } from './kube-objects.js';
import { type FakeKubeStore, JOB_TRACKING_FINALIZER, type StoreEvent } from './kube-store.js';

export const COMPLETION_INDEX = 'batch.kubernetes.io/job-completion-index';

export interface FakeJobControllerOptions {
  /** Time for startTime/completionTime, activeDeadlineSeconds and TTLs (default: the server's clock). */
  clock?: Clock;
  /** Delete finished Jobs after ttlSecondsAfterFinished (default true). */
  ttlAfterFinished?: boolean;
  /** First retry delay after a rejected pod create, doubling up to 10 s (real ms; default 500). */
  createRetryMs?: number;
}

export interface FakeJobController {
  /** Reconcile every Job now (normally event-driven; for tests that changed the clock). */
  resync(): void;
  stop(): void;
}

type Outcome =
  | { kind: 'succeeded' }
  | { kind: 'failed' }
  | { kind: 'ignored' }
  | { kind: 'failJob'; message: string };

interface JobMemory {
  deadline?: ClockTimer;
  deadlineAt?: number;
  ttl?: ClockTimer;
  retry?: NodeJS.Timeout;
  retryDelay: number;
  createFailing: boolean;
  /** Pods this controller deleted (suspension, failure, success): not counted as failures. */
  deletedByUs: Set<string>;
  /** Terminating pods already counted as failed (no podFailurePolicy: they count at once). */
  countedEarly: Set<string>;
}

const isTerminal = (p: IPod): boolean =>
  p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed';

function condTrue(status: IJobStatus | undefined, type: string): IJobCondition | undefined {
  return (status?.conditions ?? []).find((c) => c.type === type && c.status === 'True');
}

function parseIndexes(s: string | undefined): Set<number> {
  const out = new Set<number>();
  for (const part of (s ?? '').split(',').filter((p) => p.length > 0)) {
    const [a, b] = part.split('-').map(Number);
    if (a === undefined || Number.isNaN(a)) continue;
    for (let i = a; i <= (b ?? a); i++) out.add(i);
  }
  return out;
}

function formatIndexes(set: Set<number>): string | undefined {
  const xs = [...set].sort((a, b) => a - b);
  if (xs.length === 0) return undefined;
  const parts: string[] = [];
  let start = xs[0]!;
  let prev = start;
  for (const x of xs.slice(1).concat([Number.NaN])) {
    if (x === prev + 1) {
      prev = x;
      continue;
    }
    parts.push(start === prev ? String(start) : `${start}-${prev}`);
    start = x;
    prev = x;
  }
  return parts.join(',');
}

class JobControllerImpl implements FakeJobController {
  private readonly store: FakeKubeStore;
  private readonly clock: Clock;
  private readonly ttlEnabled: boolean;
  private readonly createRetryMs: number;
  private readonly queue = new Set<string>();
  private scheduled = false;
  private stopped = false;
  private readonly memory = new Map<string, JobMemory>();
  private readonly unsubscribe: () => void;

  constructor(server: FakeApiServer, opts: FakeJobControllerOptions) {
    this.store = server.store;
    this.clock = opts.clock ?? server.clock;
    this.ttlEnabled = opts.ttlAfterFinished ?? true;
    this.createRetryMs = opts.createRetryMs ?? 500;
    this.unsubscribe = this.store.subscribe((ev) => this.onEvent(ev));
    this.resync();
  }

  resync(): void {
    for (const j of this.store.list('jobs')) this.enqueue(j.metadata.namespace!, j.metadata.name!);
  }

  stop(): void {
    this.stopped = true;
    this.unsubscribe();
    for (const m of this.memory.values()) this.forget(m);
    this.memory.clear();
  }

  private forget(m: JobMemory): void {
    m.deadline?.cancel();
    m.ttl?.cancel();
    if (m.retry) clearTimeout(m.retry);
  }

  private mem(uid: string): JobMemory {
    let m = this.memory.get(uid);
    if (!m) {
      m = {
        retryDelay: this.createRetryMs,
        createFailing: false,
        deletedByUs: new Set(),
        countedEarly: new Set(),
      };
      this.memory.set(uid, m);
    }
    return m;
  }

  private onEvent(ev: StoreEvent): void {
    if (ev.resource === 'jobs') {
      if (ev.type === 'DELETED') {
        const m = this.memory.get(ev.object.metadata.uid ?? '');
        if (m) this.forget(m);
        this.memory.delete(ev.object.metadata.uid ?? '');
        // Its pods may still carry our finalizer: release them.
        this.releaseOrphans(ev.object);
        return;
      }
      this.enqueue(ev.object.metadata.namespace!, ev.object.metadata.name!);
    } else if (ev.resource === 'pods') {
      const owner = (ev.object.metadata.ownerReferences ?? []).find(
        (r) => r.controller && r.kind === 'Job',
      );
      const ns = ev.object.metadata.namespace!;
      const ownerAlive =
        !!owner && this.store.get('jobs', ns, owner.name)?.metadata.uid === owner.uid;
      if (owner && ownerAlive) this.enqueue(ns, owner.name);
      else if (
        (ev.object.metadata.finalizers ?? []).includes(JOB_TRACKING_FINALIZER) &&
        ev.type !== 'DELETED'
      )
        this.releasePod(ev.object as unknown as IPod);
    } else if (ev.resource === 'priorityclasses' && ev.type === 'ADDED') {
      for (const j of this.store.list('jobs')) {
        if (this.memory.get(j.metadata.uid!)?.createFailing)
          this.enqueue(j.metadata.namespace!, j.metadata.name!);
      }
    }
  }

  private enqueue(ns: string, name: string): void {
    if (this.stopped) return;
    this.queue.add(`${ns}/${name}`);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      const keys = [...this.queue];
      this.queue.clear();
      for (const k of keys) {
        if (this.stopped) return;
        const [ns2, name2] = k.split('/') as [string, string];
        try {
          this.reconcile(ns2, name2);
        } catch (err) {
          if (!(err instanceof KubeApiError && err.code === 404))
            process.emitWarning(`fake job controller: ${(err as Error).stack ?? String(err)}`);
        }
      }
    });
  }

  private releaseOrphans(job: KubeObject): void {
    setImmediate(() => {
      if (this.stopped) return;
      for (const p of this.store.list<IPod>('pods', { namespace: job.metadata.namespace })) {
        const owned = (p.metadata?.ownerReferences ?? []).some((r) => r.uid === job.metadata.uid);
        if (owned) this.releasePod(p);
      }
    });
  }

  /** Drop our finalizer from a pod nobody will count any more, once it is finished or going. */
  private releasePod(p: IPod): void {
    if (!isTerminal(p) && !p.metadata?.deletionTimestamp) return;
    if (!p.spec?.nodeName && !isTerminal(p)) this.failUnscheduled(p);
    this.store.mutate<IPod>('pods', p.metadata!.namespace, p.metadata!.name!, (o) => {
      o.metadata!.finalizers = (o.metadata!.finalizers ?? []).filter(
        (f) => f !== JOB_TRACKING_FINALIZER,
      );
    });
  }

  /** Pod GC: a deleted pod that never got a node is marked Failed so it can be counted. */
  private failUnscheduled(p: IPod): void {
    this.store.mutate<IPod>('pods', p.metadata!.namespace, p.metadata!.name!, (o) => {
      const status = (o.status ??= {});
      status.phase = 'Failed';
      const conds = (status.conditions ?? []).filter((c) => c.type !== 'DisruptionTarget');
      conds.push({
        type: 'DisruptionTarget',
        status: 'True',
        reason: 'DeletionByPodGC',
        message: 'PodGC: node no longer exists',
        lastTransitionTime: kubeTime(this.clock.now()),
      });
      status.conditions = conds;
    });
  }

  private classify(job: IJob, pod: IPod): Outcome {
    if (pod.status?.phase === 'Succeeded') return { kind: 'succeeded' };
    const ns = pod.metadata?.namespace ?? '';
    const name = pod.metadata?.name ?? '';
    const rules = job.spec?.podFailurePolicy?.rules ?? [];
    for (const [i, rule] of rules.entries()) {
      let matched: string | undefined;
      if (rule.onExitCodes) {
        const { containerName, operator, values } = rule.onExitCodes;
        for (const cs of pod.status?.containerStatuses ?? []) {
          if (containerName && cs.name !== containerName) continue;
          const code = cs.state?.terminated?.exitCode;
          if (code === undefined || code === 0) continue;
          const inValues = values.includes(code);
          if ((operator === 'In' && inValues) || (operator === 'NotIn' && !inValues)) {
            matched = `Container ${cs.name} for pod ${ns}/${name} failed with exit code ${code} matching ${rule.action} rule at index ${i}`;
            break;
          }
        }
      } else if (rule.onPodConditions) {
        for (const pat of rule.onPodConditions) {
          const c = (pod.status?.conditions ?? []).find(
            (x) => x.type === pat.type && x.status === (pat.status ?? 'True'),
          );
          if (c) {
            matched = `Pod ${ns}/${name} has condition ${pat.type} matching ${rule.action} rule at index ${i}`;
            break;
          }
        }
      }
      if (matched === undefined) continue;
      if (rule.action === 'Ignore') return { kind: 'ignored' };
      if (rule.action === 'FailJob') return { kind: 'failJob', message: matched };
      return { kind: 'failed' };
    }
    return { kind: 'failed' };
  }

  private reconcile(ns: string, name: string): void {
    const job = this.store.get<IJob>('jobs', ns, name);
    if (!job) return;
    const uid = job.metadata!.uid!;
    const m = this.mem(uid);
    const spec = job.spec!;
    const now = this.clock.now();
    const pods = this.store
      .list<IPod>('pods', { namespace: ns })
      .filter((p) =>
        (p.metadata?.ownerReferences ?? []).some((r) => r.uid === uid && r.controller),
      );

    if (job.metadata?.deletionTimestamp) {
      for (const p of pods) this.releasePod(p);
      return;
    }

    const status: IJobStatus = clone(job.status ?? {});
    const conditions: IJobCondition[] = [...(status.conditions ?? [])];
    const setCondition = (
      type: string,
      value: 'True' | 'False',
      reason: string,
      message: string,
    ): void => {
      const i = conditions.findIndex((c) => c.type === type);
      const prev = i >= 0 ? conditions[i] : undefined;
      if (prev && prev.status === value && prev.reason === reason && prev.message === message)
        return;
      const t = kubeTime(now);
      const c: IJobCondition = {
        type,
        status: value,
        reason,
        message,
        lastProbeTime: t,
        lastTransitionTime: prev && prev.status === value ? (prev.lastTransitionTime ?? t) : t,
      };
      if (i >= 0) conditions[i] = c;
      else conditions.push(c);
    };
    const indexed = spec.completionMode === 'Indexed';
    const completed = parseIndexes(status.completedIndexes);
    let succeeded = status.succeeded ?? 0;
    let failed = status.failed ?? 0;
    let failJob: string | undefined;

    // 1. Count pods that finished (once: our finalizer marks the uncounted ones).
    for (const p of pods) {
      const tracked = (p.metadata?.finalizers ?? []).includes(JOB_TRACKING_FINALIZER);
      if (!tracked) continue;
      const puid = p.metadata!.uid!;
      if (!isTerminal(p)) {
        if (p.metadata?.deletionTimestamp && !p.spec?.nodeName) this.failUnscheduled(p);
        else if (
          p.metadata?.deletionTimestamp &&
          !spec.podFailurePolicy &&
          !m.deletedByUs.has(puid) &&
          !m.countedEarly.has(puid)
        ) {
          // Without a podFailurePolicy a terminating pod is a failure at once (as in the real controller).
          m.countedEarly.add(puid);
          failed += 1;
        }
        continue;
      }
      if (m.countedEarly.has(puid)) {
        m.countedEarly.delete(puid);
      } else if (!m.deletedByUs.has(puid) || p.status?.phase === 'Succeeded') {
        const outcome = this.classify(job, p);
        const idx = Number(p.metadata?.annotations?.[COMPLETION_INDEX]);
        if (outcome.kind === 'succeeded') {
          if (indexed && Number.isInteger(idx)) completed.add(idx);
          else succeeded += 1;
        } else if (outcome.kind === 'failed') failed += 1;
        else if (outcome.kind === 'failJob') {
          failed += 1;
          failJob ??= outcome.message;
        }
      }
      m.deletedByUs.delete(puid);
      this.store.mutate<IPod>('pods', ns, p.metadata!.name!, (o) => {
        o.metadata!.finalizers = (o.metadata!.finalizers ?? []).filter(
          (f) => f !== JOB_TRACKING_FINALIZER,
        );
      });
    }
    if (indexed) succeeded = completed.size;

    const live = this.store
      .list<IPod>('pods', { namespace: ns })
      .filter((p) =>
        (p.metadata?.ownerReferences ?? []).some((r) => r.uid === uid && r.controller),
      );
    const active = live.filter((p) => !isTerminal(p) && !p.metadata?.deletionTimestamp);
    const terminating = live.filter((p) => !isTerminal(p) && !!p.metadata?.deletionTimestamp);
    const deleteActive = (): void => {
      for (const p of active) {
        m.deletedByUs.add(p.metadata!.uid!);
        try {
          this.store.delete('pods', ns, p.metadata!.name!);
        } catch (err) {
          if (!(err instanceof KubeApiError && err.code === 404)) throw err;
        }
      }
    };

    const finishedCond = condTrue(status, 'Complete') ?? condTrue(status, 'Failed');
    let failureTarget = condTrue(status, 'FailureTarget');
    const suspended = spec.suspend === true;

    if (!finishedCond) {
      if (suspended) {
        deleteActive();
        if (!condTrue(status, 'Suspended'))
          setCondition('Suspended', 'True', 'JobSuspended', 'Job suspended');
        m.deadline?.cancel();
        delete m.deadline;
      } else {
        if (condTrue(status, 'Suspended')) {
          setCondition('Suspended', 'False', 'JobResumed', 'Job resumed');
          status.startTime = kubeTime(now);
        }
        status.startTime ??= kubeTime(now);
        // Failure decisions (the first one wins; the Job fails once no pod is terminating).
        if (!failureTarget) {
          let reason: string | undefined;
          let message = '';
          const start = Date.parse(status.startTime);
          const ads = spec.activeDeadlineSeconds;
          if (failJob) {
            reason = 'PodFailurePolicy';
            message = failJob;
          } else if (failed > (spec.backoffLimit ?? 6)) {
            reason = 'BackoffLimitExceeded';
            message = 'Job has reached the specified backoff limit';
          } else if (ads !== undefined && now - start >= ads * 1000) {
            reason = 'DeadlineExceeded';
            message = 'Job was active longer than specified deadline';
          } else if (ads !== undefined && m.deadlineAt !== start + ads * 1000) {
            m.deadline?.cancel();
            m.deadlineAt = start + ads * 1000;
            m.deadline = this.clock.setTimeout(
              () => this.enqueue(ns, name),
              start + ads * 1000 - now,
            );
          }
          if (reason) {
            setCondition('FailureTarget', 'True', reason, message);
            failureTarget = conditions.find((c) => c.type === 'FailureTarget');
            this.store.recordEvent(
              job as unknown as KubeObject,
              'Warning',
              reason,
              message,
              'job-controller',
            );
          }
        }
        if (failureTarget) {
          deleteActive();
          if (active.length === 0 && terminating.length === 0) {
            setCondition(
              'Failed',
              'True',
              failureTarget.reason ?? 'Failed',
              failureTarget.message ?? '',
            );
            m.deadline?.cancel();
          }
        } else {
          const completions = spec.completions;
          const parallelism = spec.parallelism ?? 1;
          const done = indexed
            ? completions !== undefined && completed.size >= completions
            : completions !== undefined
              ? succeeded >= completions
              : succeeded > 0 && active.length === 0;
          if (done) {
            deleteActive();
            setCondition(
              'SuccessCriteriaMet',
              'True',
              'CompletionsReached',
              'Reached expected number of succeeded pods',
            );
            setCondition(
              'Complete',
              'True',
              'CompletionsReached',
              'Reached expected number of succeeded pods',
            );
            status.completionTime = kubeTime(now);
            m.deadline?.cancel();
            this.store.recordEvent(
              job as unknown as KubeObject,
              'Normal',
              'Completed',
              'Job completed',
              'job-controller',
            );
          } else if (!m.retry) {
            this.createPods(job, m, live, active, terminating, completed, succeeded, parallelism);
          }
        }
      }
    } else if (condTrue(status, 'Failed')) {
      deleteActive();
    }

    // 3. Status.
    const after = this.store
      .list<IPod>('pods', { namespace: ns })
      .filter((p) =>
        (p.metadata?.ownerReferences ?? []).some((r) => r.uid === uid && r.controller),
      );
    const nowActive = after.filter((p) => !isTerminal(p) && !p.metadata?.deletionTimestamp);
    status.active = nowActive.length;
    status.ready = nowActive.filter((p) =>
      (p.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True'),
    ).length;
    status.terminating = after.filter(
      (p) => !isTerminal(p) && !!p.metadata?.deletionTimestamp,
    ).length;
    status.succeeded = succeeded;
    status.failed = failed;
    const ci = formatIndexes(completed);
    if (indexed && ci !== undefined) status.completedIndexes = ci;
    status.uncountedTerminatedPods = {};
    if (conditions.length) status.conditions = conditions;
    if (!status.active) delete status.active;
    if (!status.succeeded) delete status.succeeded;
    if (!status.failed) delete status.failed;
    if (!deepEqual(status, job.status ?? {})) {
      this.store.mutate<IJob>('jobs', ns, name, (j) => {
        j.status = status;
      });
    }

    // 4. TTL after finished.
    const finishedNow = condTrue(status, 'Complete') ?? condTrue(status, 'Failed');
    const ttl = spec.ttlSecondsAfterFinished;
    if (this.ttlEnabled && finishedNow && ttl !== undefined && !m.ttl) {
      const at = Date.parse(finishedNow.lastTransitionTime ?? kubeTime(now)) + ttl * 1000;
      m.ttl = this.clock.setTimeout(() => {
        if (this.stopped) return;
        try {
          const cur = this.store.get<IJob>('jobs', ns, name);
          if (cur?.metadata?.uid === uid)
            this.store.delete('jobs', ns, name, {
              propagationPolicy: 'Background',
              preconditions: { uid },
            });
        } catch (err) {
          if (!(err instanceof KubeApiError)) throw err;
        }
      }, at - now);
    }
  }

  private createPods(
    job: IJob,
    m: JobMemory,
    live: IPod[],
    active: IPod[],
    terminating: IPod[],
    completed: Set<number>,
    succeeded: number,
    parallelism: number,
  ): void {
    const spec = job.spec!;
    const name = job.metadata!.name!;
    const ns = job.metadata!.namespace!;
    // Replacements wait for terminating pods with podReplacementPolicy Failed.
    const busy = active.length + (spec.podReplacementPolicy === 'Failed' ? terminating.length : 0);
    const wanted: (number | undefined)[] = [];
    if (spec.completionMode === 'Indexed') {
      const taken = new Set(
        live
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
    for (const index of wanted) {
      const pod = this.podFor(job, index);
      try {
        const created = this.store.create<IPod>('pods', pod, { namespace: ns });
        m.createFailing = false;
        m.retryDelay = this.createRetryMs;
        this.store.recordEvent(
          job as unknown as KubeObject,
          'Normal',
          'SuccessfulCreate',
          `Created pod: ${created.metadata!.name!}`,
          'job-controller',
        );
      } catch (err) {
        if (!(err instanceof KubeApiError)) throw err;
        m.createFailing = true;
        this.store.recordEvent(
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
          this.enqueue(ns, name);
        }, delay);
        m.retry.unref();
        return;
      }
    }
  }

  private podFor(job: IJob, index: number | undefined): KubeObject {
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
}

export function startJobController(
  server: FakeApiServer,
  opts: FakeJobControllerOptions = {},
): FakeJobController {
  return new JobControllerImpl(server, opts);
}
