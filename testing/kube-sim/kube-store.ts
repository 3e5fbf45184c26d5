/**
 * The fake API server's storage: objects by resource type, a global monotonic
 * resourceVersion, a bounded event history for watches (older versions answer 410),
 * defaulting / validation / admission like the real API server, graceful deletion,
 * finalizers and the garbage collector's ownerReference cascades.
 *
 * Controllers (the fake Job controller and kubelet) use the store in-process: subscribe()
 * to its events, then write with create/update/mutate/delete. Each write produces one
 * event, seen by HTTP watches and in-process subscribers alike.
 */
import { Pod } from 'kubernetes-models/v1/Pod';
import { Service } from 'kubernetes-models/v1/Service';
import { Secret } from 'kubernetes-models/v1/Secret';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { PersistentVolumeClaim } from 'kubernetes-models/v1/PersistentVolumeClaim';
import { Event } from 'kubernetes-models/v1/Event';
import { Node } from 'kubernetes-models/v1/Node';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { Job } from 'kubernetes-models/batch/v1/Job';
import { Lease } from 'kubernetes-models/coordination.k8s.io/v1/Lease';
import { PriorityClass } from 'kubernetes-models/scheduling.k8s.io/v1/PriorityClass';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { type Clock, realClock } from './clock.js';
import {
  type FieldRequirement,
  type KubeObject,
  type LabelRequirement,
  type ObjectMeta,
  type ResourceType,
  type StatusCause,
  KubeApiError,
  PATCH_TYPES,
  RESOURCE_TYPES,
  alreadyExists,
  apiError,
  apiVersionOf,
  clone,
  conflict,
  deepEqual,
  forbidden,
  invalid,
  isPlainObject,
  jsonPatch,
  kubeTime,
  matchesFields,
  matchesLabels,
  mergePatch,
  newUid,
  notFound,
  parseFieldSelector,
  parseLabelSelector,
  randomSuffix,
  strategicMergePatch,
} from './kube-objects.js';

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface StoreEvent {
  type: WatchEventType;
  resource: string;
  object: KubeObject;
  /** The object before this change (MODIFIED, DELETED). */
  previous?: KubeObject;
  resourceVersion: number;
}

export type PropagationPolicy = 'Background' | 'Foreground' | 'Orphan';

export interface DeleteOptions {
  gracePeriodSeconds?: number;
  propagationPolicy?: PropagationPolicy;
  preconditions?: { uid?: string; resourceVersion?: string };
}

export interface ListOptions {
  namespace?: string | undefined;
  labelSelector?: string | undefined;
  fieldSelector?: string | undefined;
}

export interface WriteOptions {
  /** Write the status subresource: only `.status` changes are kept. */
  subresource?: 'status';
}

export interface StoreOptions {
  clock?: Clock;
  /** Events kept for watch resumption; a watch from an older version gets 410 Gone. */
  historyLimit?: number;
  /** Validate objects against the Kubernetes OpenAPI schemas (kubernetes-models). Default true. */
  validateSchemas?: boolean;
  /** Run the garbage collector (ownerReference cascades). Default true. */
  garbageCollector?: boolean;
}

type Admission = (
  op: 'create' | 'update',
  rt: ResourceType,
  obj: KubeObject,
  old?: KubeObject,
) => void;

const MODEL_VALIDATORS: Record<string, (o: unknown) => void> = {
  Pod: (o) => new Pod(o as ConstructorParameters<typeof Pod>[0]).validate(),
  Service: (o) => new Service(o as ConstructorParameters<typeof Service>[0]).validate(),
  Secret: (o) => new Secret(o as ConstructorParameters<typeof Secret>[0]).validate(),
  ConfigMap: (o) => new ConfigMap(o as ConstructorParameters<typeof ConfigMap>[0]).validate(),
  PersistentVolumeClaim: (o) =>
    new PersistentVolumeClaim(
      o as ConstructorParameters<typeof PersistentVolumeClaim>[0],
    ).validate(),
  Event: (o) => new Event(o as ConstructorParameters<typeof Event>[0]).validate(),
  Node: (o) => new Node(o as ConstructorParameters<typeof Node>[0]).validate(),
  ServiceAccount: (o) =>
    new ServiceAccount(o as ConstructorParameters<typeof ServiceAccount>[0]).validate(),
  Job: (o) => new Job(o as ConstructorParameters<typeof Job>[0]).validate(),
  Lease: (o) => new Lease(o as ConstructorParameters<typeof Lease>[0]).validate(),
  PriorityClass: (o) =>
    new PriorityClass(o as ConstructorParameters<typeof PriorityClass>[0]).validate(),
  Deployment: (o) => new Deployment(o as ConstructorParameters<typeof Deployment>[0]).validate(),
  StatefulSet: (o) => new StatefulSet(o as ConstructorParameters<typeof StatefulSet>[0]).validate(),
};

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const LABEL_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const ENV_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;

export const JOB_TRACKING_FINALIZER = 'batch.kubernetes.io/job-tracking';
export const FOREGROUND_FINALIZER = 'foregroundDeletion';
export const GPU_RESOURCE = 'nvidia.com/gpu';

type Dict = Record<string, unknown>;
const asDict = (v: unknown): Dict => (isPlainObject(v) ? v : {});
const asList = (v: unknown): Dict[] => (Array.isArray(v) ? v.filter(isPlainObject) : []);

export class FakeKubeStore {
  readonly clock: Clock;
  private readonly types = new Map<string, ResourceType>();
  private readonly objects = new Map<string, Map<string, KubeObject>>();
  private rv = 0;
  private readonly historyLimit: number;
  private readonly log: StoreEvent[] = [];
  /** Versions at or below this are gone from history (410 for a watch starting there). */
  private compacted = 0;
  private readonly listeners = new Set<(ev: StoreEvent) => void>();
  private readonly admissions: Admission[] = [];
  private readonly validateSchemas: boolean;
  private readonly gcEnabled: boolean;
  private serviceIp = 10;
  private readonly pending: StoreEvent[] = [];
  private delivering = false;
  private closed = false;

  constructor(opts: StoreOptions = {}) {
    this.clock = opts.clock ?? realClock;
    this.historyLimit = opts.historyLimit ?? 5000;
    this.validateSchemas = opts.validateSchemas ?? true;
    this.gcEnabled = opts.garbageCollector ?? true;
    for (const rt of RESOURCE_TYPES) this.registerType(rt);
  }

  registerType(rt: ResourceType): void {
    this.types.set(rt.resource, rt);
    if (!this.objects.has(rt.resource)) this.objects.set(rt.resource, new Map());
  }

  resourceTypes(): ResourceType[] {
    return [...this.types.values()];
  }

  type(resource: string): ResourceType {
    const rt = this.types.get(resource);
    if (!rt) throw apiError(404, `the server could not find the requested resource (${resource})`);
    return rt;
  }

  typeOfKind(kind: string): ResourceType | undefined {
    return [...this.types.values()].find((t) => t.kind === kind);
  }

  /** The newest resourceVersion (what a list returns). */
  get resourceVersion(): number {
    return this.rv;
  }

  /** The oldest version a watch may start from without 410. */
  get oldestWatchableVersion(): number {
    return this.compacted;
  }

  /** Register an admission check (throw a KubeApiError to refuse the write). */
  addAdmission(fn: Admission): () => void {
    this.admissions.push(fn);
    return () => {
      const i = this.admissions.indexOf(fn);
      if (i >= 0) this.admissions.splice(i, 1);
    };
  }

  /** In-process subscription to every committed change, in order. */
  subscribe(fn: (ev: StoreEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Retained events after `fromVersion` (exclusive); 410 when that is older than history. */
  eventsSince(fromVersion: number): StoreEvent[] {
    if (fromVersion < this.compacted) {
      throw apiError(
        410,
        `too old resource version: ${fromVersion} (${this.compacted + 1})`,
        'Expired',
      );
    }
    return this.log.filter((e) => e.resourceVersion > fromVersion);
  }

  /**
   * Drop the watch history, as etcd compaction does: the resourceVersion moves on (other
   * writes in the cluster) and every version seen so far is too old to watch from.
   */
  expireHistory(): void {
    this.rv += 1;
    this.compacted = this.rv;
    this.log.length = 0;
  }

  private key(ns: string | undefined, name: string): string {
    return `${ns ?? ''}/${name}`;
  }

  private bucket(resource: string): Map<string, KubeObject> {
    this.type(resource);
    return this.objects.get(resource)!;
  }

  // -------------------------------------------------------------------------------------
  // Reads

  get<T = KubeObject>(
    resource: string,
    namespace: string | undefined,
    name: string,
  ): T | undefined {
    const rt = this.type(resource);
    const o = this.bucket(resource).get(this.key(rt.namespaced ? namespace : undefined, name));
    return o ? (clone(o) as T) : undefined;
  }

  getOrThrow<T = KubeObject>(resource: string, namespace: string | undefined, name: string): T {
    const o = this.get<T>(resource, namespace, name);
    if (!o) throw notFound(this.type(resource), name);
    return o;
  }

  list<T = KubeObject>(resource: string, opts: ListOptions = {}): T[] {
    const labels: LabelRequirement[] = parseLabelSelector(opts.labelSelector);
    const fields: FieldRequirement[] = parseFieldSelector(opts.fieldSelector);
    const out: KubeObject[] = [];
    for (const o of this.bucket(resource).values()) {
      if (opts.namespace && o.metadata.namespace !== opts.namespace) continue;
      if (!matchesLabels(labels, o.metadata.labels)) continue;
      if (!matchesFields(fields, o)) continue;
      out.push(clone(o));
    }
    out.sort((a, b) =>
      `${a.metadata.namespace ?? ''}/${a.metadata.name ?? ''}`.localeCompare(
        `${b.metadata.namespace ?? ''}/${b.metadata.name ?? ''}`,
      ),
    );
    return out as T[];
  }

  /** Every namespace that holds an object, plus `default`. */
  namespaces(): string[] {
    const s = new Set<string>(['default']);
    for (const b of this.objects.values())
      for (const o of b.values()) if (o.metadata.namespace) s.add(o.metadata.namespace);
    return [...s].sort();
  }

  /**
   * Resolve when `predicate` holds for the object (undefined once it is gone), checked
   * now and on each change to it; rejects after timeoutMs naming what it waited for.
   */
  waitFor<T = KubeObject>(
    resource: string,
    namespace: string | undefined,
    name: string,
    predicate: (obj: T | undefined) => boolean,
    opts: { timeoutMs?: number; what?: string } = {},
  ): Promise<T | undefined> {
    const timeoutMs = opts.timeoutMs ?? 20_000;
    const what = opts.what ?? `${resource} ${namespace ? `${namespace}/` : ''}${name}`;
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const o = this.get<T>(resource, namespace, name);
        if (predicate(o)) {
          cleanup();
          resolve(o);
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        cleanup();
        const o = this.get(resource, namespace, name);
        reject(
          new Error(
            `timed out after ${timeoutMs} ms waiting for: ${what}; last state: ${
              o ? JSON.stringify({ metadata: o.metadata, status: o['status'] }) : 'absent'
            }`,
          ),
        );
      }, timeoutMs);
      const unsubscribe = this.subscribe((ev) => {
        if (
          ev.resource === resource &&
          ev.object.metadata.name === name &&
          (!namespace || ev.object.metadata.namespace === namespace)
        )
          check();
      });
      function cleanup(): void {
        clearTimeout(timer);
        unsubscribe();
      }
      check();
    });
  }

  // -------------------------------------------------------------------------------------
  // Writes

  create<T = KubeObject>(resource: string, input: unknown, opts: { namespace?: string } = {}): T {
    const rt = this.type(resource);
    if (!isPlainObject(input) || !isPlainObject(input['metadata']))
      throw apiError(
        400,
        `the body of the request was in an unknown format: ${rt.kind} without metadata`,
      );
    const obj = clone(input) as KubeObject;
    const meta = obj.metadata;
    if (rt.namespaced) {
      const ns = opts.namespace ?? meta.namespace ?? 'default';
      if (meta.namespace && opts.namespace && meta.namespace !== opts.namespace)
        throw apiError(
          400,
          'the namespace of the provided object does not match the namespace sent on the request',
        );
      meta.namespace = ns;
    } else delete meta.namespace;
    if (obj.kind !== undefined && obj.kind !== rt.kind)
      throw apiError(
        400,
        `the API version in the data (${String(obj.apiVersion)}) / kind ${obj.kind} does not match the expected ${rt.kind}`,
      );
    obj.apiVersion = apiVersionOf(rt);
    obj.kind = rt.kind;
    if (!meta.name) {
      if (!meta.generateName)
        throw invalid(rt, '', [
          {
            reason: 'FieldValueRequired',
            message: 'Required value: name or generateName is required',
            field: 'metadata.name',
          },
        ]);
      // Admission sees the generateName (so messages read `pods "job-" is forbidden`).
    }
    const displayName = meta.name ?? meta.generateName ?? '';
    for (const a of this.admissions) a('create', rt, obj);
    this.builtinAdmission('create', rt, obj, displayName);
    if (!meta.name) meta.name = `${meta.generateName ?? ''}${randomSuffix()}`;
    const bucket = this.bucket(resource);
    const k = this.key(meta.namespace, meta.name);
    if (bucket.has(k)) throw alreadyExists(rt, meta.name);
    const now = this.clock.now();
    meta.uid = newUid();
    meta.creationTimestamp = kubeTime(now);
    meta.generation = 1;
    delete meta.deletionTimestamp;
    delete meta.deletionGracePeriodSeconds;
    this.applyDefaults(rt, obj);
    this.validate(rt, obj);
    return clone(this.commit('ADDED', rt, obj, undefined)) as T;
  }

  /** PUT: optimistic concurrency on metadata.resourceVersion (absent: unconditional). */
  update<T = KubeObject>(
    resource: string,
    input: unknown,
    opts: WriteOptions & { namespace?: string } = {},
  ): T {
    const rt = this.type(resource);
    if (!isPlainObject(input) || !isPlainObject(input['metadata']))
      throw apiError(
        400,
        `the body of the request was in an unknown format: ${rt.kind} without metadata`,
      );
    const obj = clone(input) as KubeObject;
    const name = obj.metadata.name;
    if (!name)
      throw invalid(rt, '', [
        {
          reason: 'FieldValueRequired',
          message: 'Required value: name is required',
          field: 'metadata.name',
        },
      ]);
    const ns = rt.namespaced ? (opts.namespace ?? obj.metadata.namespace ?? 'default') : undefined;
    if (
      rt.namespaced &&
      obj.metadata.namespace &&
      opts.namespace &&
      obj.metadata.namespace !== opts.namespace
    )
      throw apiError(
        400,
        'the namespace of the provided object does not match the namespace sent on the request',
      );
    const cur = this.bucket(resource).get(this.key(ns, name));
    if (!cur) throw notFound(rt, name);
    if (
      obj.metadata.resourceVersion &&
      obj.metadata.resourceVersion !== cur.metadata.resourceVersion
    )
      throw conflict(rt, name);
    return clone(this.replace(rt, cur, obj, opts.subresource, true)) as T;
  }

  /** PATCH with one of the four patch content types (apply is refused with 415). */
  patch<T = KubeObject>(
    resource: string,
    namespace: string | undefined,
    name: string,
    body: unknown,
    contentType: string,
    opts: WriteOptions = {},
  ): T {
    const rt = this.type(resource);
    const cur = this.bucket(resource).get(this.key(rt.namespaced ? namespace : undefined, name));
    if (!cur) throw notFound(rt, name);
    let next: unknown;
    const ct = contentType.split(';')[0]!.trim().toLowerCase();
    if (ct === PATCH_TYPES.json) {
      try {
        next = jsonPatch(cur, body);
      } catch (err) {
        throw apiError(422, (err as Error).message, 'Invalid');
      }
    } else if (ct === PATCH_TYPES.merge) {
      next = mergePatch(cur, body);
    } else if (ct === PATCH_TYPES.strategic) {
      next = strategicMergePatch(cur, body);
    } else {
      throw apiError(
        415,
        `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (fake apiserver: ${ct} not supported)`,
      );
    }
    if (!isPlainObject(next) || !isPlainObject(next['metadata']))
      throw apiError(422, "the patch removed the object's metadata", 'Invalid');
    const obj = next as KubeObject;
    const patchedRv =
      isPlainObject(body) && isPlainObject(body['metadata'])
        ? body['metadata']['resourceVersion']
        : undefined;
    if (typeof patchedRv === 'string' && patchedRv !== cur.metadata.resourceVersion)
      throw conflict(rt, name);
    if (
      obj.metadata.name !== name ||
      (rt.namespaced && obj.metadata.namespace !== cur.metadata.namespace)
    )
      throw apiError(400, 'the name of the object does not match the name on the URL');
    return clone(this.replace(rt, cur, obj, opts.subresource, true)) as T;
  }

  /**
   * Read-modify-write for in-process controllers: fn edits a copy (return false to skip);
   * no version check, no immutability checks; nothing is written when nothing changed.
   * Returns the stored object (undefined when it does not exist).
   */
  mutate<T = KubeObject>(
    resource: string,
    namespace: string | undefined,
    name: string,
    fn: (obj: T) => void | boolean,
  ): T | undefined {
    const rt = this.type(resource);
    const cur = this.bucket(resource).get(this.key(rt.namespaced ? namespace : undefined, name));
    if (!cur) return undefined;
    const copy = clone(cur) as unknown as T;
    if (fn(copy) === false) return clone(cur) as unknown as T;
    const next = copy as unknown as KubeObject;
    if (deepEqual(next, cur)) return clone(cur) as unknown as T;
    return clone(this.replace(rt, cur, next, 'all', false)) as unknown as T;
  }

  private replace(
    rt: ResourceType,
    cur: KubeObject,
    input: KubeObject,
    subresource: 'status' | 'all' | undefined,
    external: boolean,
  ): KubeObject {
    let obj: KubeObject;
    if (subresource === 'status') {
      obj = clone(cur);
      obj['status'] = clone(input['status']);
    } else if (subresource === 'all') {
      obj = clone(input);
    } else {
      obj = clone(input);
      if (rt.hasStatus) {
        if (cur['status'] === undefined) delete obj['status'];
        else obj['status'] = clone(cur['status']);
      }
    }
    // Fields the server owns.
    const m = obj.metadata;
    const cm = cur.metadata;
    m.name = cm.name;
    if (cm.namespace !== undefined) m.namespace = cm.namespace;
    m.uid = cm.uid;
    m.creationTimestamp = cm.creationTimestamp;
    if (cm.generateName !== undefined) m.generateName = cm.generateName;
    if (cm.deletionTimestamp !== undefined) {
      m.deletionTimestamp = cm.deletionTimestamp;
      m.deletionGracePeriodSeconds = cm.deletionGracePeriodSeconds;
    } else if (subresource !== 'all') {
      delete m.deletionTimestamp;
      delete m.deletionGracePeriodSeconds;
    }
    obj.apiVersion = apiVersionOf(rt);
    obj.kind = rt.kind;
    const specOf = (o: KubeObject): Dict => {
      const rest: Dict = { ...o };
      delete rest['metadata'];
      delete rest['status'];
      delete rest['apiVersion'];
      delete rest['kind'];
      return rest;
    };
    m.generation = (cm.generation ?? 1) + (deepEqual(specOf(obj), specOf(cur)) ? 0 : 1);
    if (external) {
      for (const a of this.admissions) a('update', rt, obj, cur);
      this.builtinAdmission('update', rt, obj, m.name ?? '');
      this.checkImmutable(rt, obj, cur);
      this.applyDefaults(rt, obj);
      this.validate(rt, obj);
    }
    if (
      deepEqual(obj, {
        ...cur,
        metadata: { ...cur.metadata, resourceVersion: obj.metadata.resourceVersion },
      }) &&
      external
    ) {
      // A no-op write: the API server answers with the stored object and writes nothing.
      return cur;
    }
    if (
      m.deletionTimestamp &&
      (m.finalizers ?? []).length === 0 &&
      (m.deletionGracePeriodSeconds ?? 0) === 0
    ) {
      // The last finalizer is gone: the object goes (watchers see DELETED with its final state).
      return this.remove(rt, obj, 'Background', cur);
    }
    return this.commit('MODIFIED', rt, obj, cur);
  }

  delete(
    resource: string,
    namespace: string | undefined,
    name: string,
    opts: DeleteOptions = {},
  ): { object: KubeObject; removed: boolean } {
    const rt = this.type(resource);
    const ns = rt.namespaced ? namespace : undefined;
    const cur = this.bucket(resource).get(this.key(ns, name));
    if (!cur) throw notFound(rt, name);
    const pre = opts.preconditions;
    if (pre?.uid && pre.uid !== cur.metadata.uid)
      throw apiError(
        409,
        `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${cur.metadata.uid ?? ''}`,
        'Conflict',
      );
    if (pre?.resourceVersion && pre.resourceVersion !== cur.metadata.resourceVersion)
      throw apiError(
        409,
        `Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in object meta: ${cur.metadata.resourceVersion ?? ''}`,
        'Conflict',
      );
    // batch/v1 Jobs orphan their pods unless told otherwise, like the real API.
    const policy: PropagationPolicy =
      opts.propagationPolicy ?? (resource === 'jobs' ? 'Orphan' : 'Background');
    const now = this.clock.now();
    const finalizers = cur.metadata.finalizers ?? [];
    const spec = asDict(cur['spec']);
    const isPod = resource === 'pods';
    const phase = asDict(cur['status'])['phase'];
    const grace = isPod
      ? (opts.gracePeriodSeconds ??
        (typeof spec['terminationGracePeriodSeconds'] === 'number'
          ? spec['terminationGracePeriodSeconds']
          : 30))
      : 0;
    if (cur.metadata.deletionTimestamp) {
      // Already terminating: a shorter grace period wins (kubectl delete --grace-period=0 --force).
      const curGrace = cur.metadata.deletionGracePeriodSeconds ?? 0;
      if (isPod && opts.gracePeriodSeconds !== undefined && opts.gracePeriodSeconds < curGrace) {
        const next = clone(cur);
        next.metadata.deletionGracePeriodSeconds = opts.gracePeriodSeconds;
        next.metadata.deletionTimestamp = kubeTime(now + opts.gracePeriodSeconds * 1000);
        if (opts.gracePeriodSeconds === 0 && finalizers.length === 0)
          return { object: clone(this.remove(rt, next, policy, cur)), removed: true };
        return { object: clone(this.commit('MODIFIED', rt, next, cur)), removed: false };
      }
      return { object: clone(cur), removed: false };
    }
    const graceful =
      isPod &&
      typeof spec['nodeName'] === 'string' &&
      phase !== 'Succeeded' &&
      phase !== 'Failed' &&
      grace > 0;
    const dependents = this.dependentsOf(cur);
    if (policy === 'Orphan') for (const d of dependents) this.orphan(d, cur.metadata.uid!);
    const foreground = policy === 'Foreground' && dependents.length > 0;
    if (graceful || finalizers.length > 0 || foreground) {
      const next = clone(cur);
      next.metadata.deletionTimestamp = kubeTime(now + (graceful ? grace * 1000 : 0));
      next.metadata.deletionGracePeriodSeconds = graceful ? grace : 0;
      if (foreground && !finalizers.includes(FOREGROUND_FINALIZER))
        next.metadata.finalizers = [...finalizers, FOREGROUND_FINALIZER];
      const stored = this.commit('MODIFIED', rt, next, cur);
      if (foreground) this.schedule(() => this.collectDependents(stored, 'Background'));
      return { object: clone(stored), removed: false };
    }
    return { object: clone(this.remove(rt, cur, policy)), removed: true };
  }

  deleteCollection(resource: string, opts: ListOptions & DeleteOptions = {}): KubeObject[] {
    const out: KubeObject[] = [];
    for (const o of this.list(resource, opts)) {
      try {
        out.push(this.delete(resource, o.metadata.namespace, o.metadata.name!, opts).object);
      } catch (err) {
        if (!(err instanceof KubeApiError && err.code === 404)) throw err;
      }
    }
    return out;
  }

  /**
   * Evict a pod as the Eviction API or the scheduler's preemption does: a DisruptionTarget
   * condition on its status, then a graceful delete.
   */
  evictPod(
    namespace: string,
    name: string,
    opts: { reason?: string; message?: string; gracePeriodSeconds?: number } = {},
  ): { object: KubeObject; removed: boolean } {
    this.getOrThrow('pods', namespace, name);
    const reason = opts.reason ?? 'EvictionByEvictionAPI';
    const message =
      opts.message ??
      (reason === 'PreemptionByScheduler'
        ? 'default-scheduler: preempting to accommodate a higher priority pod'
        : reason === 'DeletionByTaintManager'
          ? 'Taint manager: deleting due to NoExecute taint'
          : 'Eviction API: evicting');
    const now = kubeTime(this.clock.now());
    this.mutate('pods', namespace, name, (pod: KubeObject) => {
      const status = asDict(pod['status']);
      pod['status'] = status;
      const conds = asList(status['conditions']).filter((c) => c['type'] !== 'DisruptionTarget');
      conds.push({
        type: 'DisruptionTarget',
        status: 'True',
        reason,
        message,
        lastTransitionTime: now,
      });
      status['conditions'] = conds;
    });
    const del: DeleteOptions = {};
    if (opts.gracePeriodSeconds !== undefined) del.gracePeriodSeconds = opts.gracePeriodSeconds;
    return this.delete('pods', namespace, name, del);
  }

  /** Record a core/v1 Event about an object (repeats are aggregated with a count). */
  recordEvent(
    involved: KubeObject,
    type: 'Normal' | 'Warning',
    reason: string,
    message: string,
    component: string,
  ): void {
    if (this.closed) return;
    const ns = involved.metadata.namespace ?? 'default';
    const now = kubeTime(this.clock.now());
    const existing = this.list('events', { namespace: ns }).find((e) => {
      const io = asDict(e['involvedObject']);
      return (
        io['uid'] === involved.metadata.uid && e['reason'] === reason && e['message'] === message
      );
    });
    if (existing) {
      this.mutate('events', ns, existing.metadata.name!, (e: KubeObject) => {
        e['count'] = (typeof e['count'] === 'number' ? e['count'] : 1) + 1;
        e['lastTimestamp'] = now;
      });
      return;
    }
    const hex = Math.floor(Math.random() * 0xffffffff)
      .toString(16)
      .padStart(8, '0');
    this.create('events', {
      metadata: {
        name: `${involved.metadata.name ?? 'unknown'}.${this.clock.now().toString(16)}${hex}`,
        namespace: ns,
      },
      involvedObject: {
        apiVersion: involved.apiVersion,
        kind: involved.kind,
        name: involved.metadata.name,
        namespace: ns,
        uid: involved.metadata.uid,
        resourceVersion: involved.metadata.resourceVersion,
      },
      type,
      reason,
      message,
      source: { component },
      reportingComponent: component,
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    });
  }

  /** Stop emitting and collecting (the server is shutting down). */
  close(): void {
    this.closed = true;
    this.listeners.clear();
  }

  // -------------------------------------------------------------------------------------
  // Internals

  private commit(
    type: WatchEventType,
    rt: ResourceType,
    obj: KubeObject,
    previous: KubeObject | undefined,
  ): KubeObject {
    this.rv += 1;
    obj.metadata.resourceVersion = String(this.rv);
    const bucket = this.bucket(rt.resource);
    const k = this.key(obj.metadata.namespace, obj.metadata.name!);
    if (type === 'DELETED') bucket.delete(k);
    else bucket.set(k, obj);
    const ev: StoreEvent = {
      type,
      resource: rt.resource,
      object: clone(obj),
      resourceVersion: this.rv,
    };
    if (previous) ev.previous = clone(previous);
    this.log.push(ev);
    if (this.log.length > this.historyLimit) {
      const dropped = this.log.splice(0, this.log.length - this.historyLimit);
      this.compacted = Math.max(this.compacted, dropped[dropped.length - 1]!.resourceVersion);
    }
    this.deliver(ev);
    return obj;
  }

  /**
   * Every listener sees every event in resourceVersion order, as a real watch does. A
   * listener that writes while it handles an event (the kubelet binding a claim as it is
   * added) queues its event behind the one being delivered, instead of delivering it
   * first to the listeners after itself (an HTTP watch would then see version n+1 before
   * n, and an informer cache would go back to the older object).
   */
  private deliver(ev: StoreEvent): void {
    this.pending.push(ev);
    if (this.delivering) return;
    this.delivering = true;
    try {
      for (let next = this.pending.shift(); next; next = this.pending.shift()) {
        for (const l of [...this.listeners]) {
          try {
            l(next);
          } catch (err) {
            // A broken listener must not break the write; surface it where a test sees it.
            process.emitWarning(
              `fake kube store listener failed: ${(err as Error).stack ?? String(err)}`,
            );
          }
        }
      }
    } finally {
      this.delivering = false;
    }
  }

  private remove(
    rt: ResourceType,
    obj: KubeObject,
    policy: PropagationPolicy,
    previous: KubeObject = obj,
  ): KubeObject {
    const cur = obj;
    const gone = clone(obj);
    this.commit('DELETED', rt, gone, previous);
    if (policy === 'Background') this.schedule(() => this.collectDependents(gone, 'Background'));
    // An owner waiting in foreground deletion may be free to go now.
    for (const ref of cur.metadata.ownerReferences ?? [])
      this.schedule(() => this.finishForeground(ref.uid, cur.metadata.namespace));
    return gone;
  }

  private schedule(fn: () => void): void {
    if (!this.gcEnabled) return;
    setImmediate(() => {
      if (this.closed) return;
      try {
        fn();
      } catch (err) {
        if (!(err instanceof KubeApiError && err.code === 404))
          process.emitWarning(
            `fake kube garbage collector failed: ${(err as Error).stack ?? String(err)}`,
          );
      }
    });
  }

  private dependentsOf(owner: KubeObject): { rt: ResourceType; obj: KubeObject }[] {
    const uid = owner.metadata.uid;
    const out: { rt: ResourceType; obj: KubeObject }[] = [];
    if (!uid) return out;
    for (const rt of this.types.values()) {
      for (const o of this.bucket(rt.resource).values()) {
        if (
          owner.metadata.namespace &&
          rt.namespaced &&
          o.metadata.namespace !== owner.metadata.namespace
        )
          continue;
        if ((o.metadata.ownerReferences ?? []).some((r) => r.uid === uid)) out.push({ rt, obj: o });
      }
    }
    return out;
  }

  private orphan(d: { rt: ResourceType; obj: KubeObject }, uid: string): void {
    this.mutate(d.rt.resource, d.obj.metadata.namespace, d.obj.metadata.name!, (o: KubeObject) => {
      const refs = (o.metadata.ownerReferences ?? []).filter((r) => r.uid !== uid);
      if (refs.length) o.metadata.ownerReferences = refs;
      else delete o.metadata.ownerReferences;
    });
  }

  private collectDependents(owner: KubeObject, policy: PropagationPolicy): void {
    for (const d of this.dependentsOf(owner)) {
      if (d.obj.metadata.deletionTimestamp) continue;
      // Only when no other owner is still alive.
      const liveOwners = (d.obj.metadata.ownerReferences ?? []).filter(
        (r) => r.uid !== owner.metadata.uid && this.findByUid(r.uid),
      );
      if (liveOwners.length > 0) continue;
      try {
        this.delete(d.rt.resource, d.obj.metadata.namespace, d.obj.metadata.name!, {
          propagationPolicy: policy,
        });
      } catch (err) {
        if (!(err instanceof KubeApiError && err.code === 404)) throw err;
      }
    }
    this.finishForeground(owner.metadata.uid!, owner.metadata.namespace);
  }

  private finishForeground(ownerUid: string, namespace: string | undefined): void {
    const found = this.findByUid(ownerUid, namespace);
    if (!found) return;
    const { rt, obj } = found;
    if (
      !obj.metadata.deletionTimestamp ||
      !(obj.metadata.finalizers ?? []).includes(FOREGROUND_FINALIZER)
    )
      return;
    if (this.dependentsOf(obj).length > 0) return;
    this.mutate(rt.resource, obj.metadata.namespace, obj.metadata.name!, (o: KubeObject) => {
      o.metadata.finalizers = (o.metadata.finalizers ?? []).filter(
        (f) => f !== FOREGROUND_FINALIZER,
      );
    });
  }

  findByUid(uid: string, namespace?: string): { rt: ResourceType; obj: KubeObject } | undefined {
    for (const rt of this.types.values()) {
      for (const o of this.bucket(rt.resource).values()) {
        if (namespace && o.metadata.namespace && o.metadata.namespace !== namespace) continue;
        if (o.metadata.uid === uid) return { rt, obj: o };
      }
    }
    return undefined;
  }

  // -------------------------------------------------------------------------------------
  // Defaulting, validation, admission

  private builtinAdmission(
    op: 'create' | 'update',
    rt: ResourceType,
    obj: KubeObject,
    name: string,
  ): void {
    if (rt.resource === 'pods' && op === 'create') {
      const spec = asDict(obj['spec']);
      const pcName = spec['priorityClassName'];
      if (typeof pcName === 'string' && pcName) {
        const pc = this.get('priorityclasses', undefined, pcName);
        if (!pc) throw forbidden(rt, name, `no PriorityClass with name ${pcName} was found`);
        spec['priority'] = typeof pc['value'] === 'number' ? pc['value'] : 0;
      }
    }
  }

  private applyDefaults(rt: ResourceType, obj: KubeObject): void {
    const meta = obj.metadata;
    switch (rt.kind) {
      case 'Pod': {
        const spec = asDict(obj['spec']);
        obj['spec'] = spec;
        defaultPodSpec(spec);
        if (!isPlainObject(obj['status']))
          obj['status'] = { phase: 'Pending', qosClass: qosClass(spec) };
        break;
      }
      case 'Job': {
        const spec = asDict(obj['spec']);
        obj['spec'] = spec;
        const uid = meta.uid!;
        if (spec['parallelism'] === undefined) spec['parallelism'] = 1;
        if (
          spec['completions'] === undefined &&
          spec['completionMode'] !== 'Indexed' &&
          spec['parallelism'] === 1
        )
          spec['completions'] = 1;
        if (spec['backoffLimit'] === undefined) spec['backoffLimit'] = 6;
        if (spec['completionMode'] === undefined) spec['completionMode'] = 'NonIndexed';
        if (spec['suspend'] === undefined) spec['suspend'] = false;
        if (spec['podReplacementPolicy'] === undefined)
          spec['podReplacementPolicy'] = spec['podFailurePolicy']
            ? 'Failed'
            : 'TerminatingOrFailed';
        if (spec['manualSelector'] !== true && spec['selector'] === undefined)
          spec['selector'] = { matchLabels: { 'batch.kubernetes.io/controller-uid': uid } };
        const tpl = asDict(spec['template']);
        spec['template'] = tpl;
        const tmeta = asDict(tpl['metadata']);
        tpl['metadata'] = tmeta;
        if (spec['manualSelector'] !== true) {
          tmeta['labels'] = {
            ...asDict(tmeta['labels']),
            'batch.kubernetes.io/controller-uid': uid,
            'batch.kubernetes.io/job-name': meta.name!,
            'controller-uid': uid,
            'job-name': meta.name!,
          };
        }
        const pspec = asDict(tpl['spec']);
        tpl['spec'] = pspec;
        defaultPodSpec(pspec);
        if (!isPlainObject(obj['status'])) obj['status'] = {};
        break;
      }
      case 'Service': {
        const spec = asDict(obj['spec']);
        obj['spec'] = spec;
        if (spec['type'] === undefined) spec['type'] = 'ClusterIP';
        if (spec['sessionAffinity'] === undefined) spec['sessionAffinity'] = 'None';
        if (spec['clusterIP'] === undefined || spec['clusterIP'] === '') {
          this.serviceIp += 1;
          spec['clusterIP'] = `10.96.${Math.floor(this.serviceIp / 250)}.${this.serviceIp % 250}`;
        }
        if (spec['clusterIPs'] === undefined) spec['clusterIPs'] = [spec['clusterIP']];
        for (const p of asList(spec['ports'])) {
          if (p['protocol'] === undefined) p['protocol'] = 'TCP';
          if (p['targetPort'] === undefined) p['targetPort'] = p['port'];
        }
        if (!isPlainObject(obj['status'])) obj['status'] = { loadBalancer: {} };
        break;
      }
      case 'Secret': {
        if (obj['type'] === undefined) obj['type'] = 'Opaque';
        const sd = obj['stringData'];
        if (isPlainObject(sd)) {
          const data = asDict(obj['data']);
          for (const [k, v] of Object.entries(sd))
            data[k] = Buffer.from(String(v)).toString('base64');
          obj['data'] = data;
          delete obj['stringData'];
        }
        break;
      }
      case 'PersistentVolumeClaim': {
        const spec = asDict(obj['spec']);
        obj['spec'] = spec;
        if (spec['volumeMode'] === undefined) spec['volumeMode'] = 'Filesystem';
        if (!isPlainObject(obj['status'])) obj['status'] = { phase: 'Pending' };
        break;
      }
      default:
        break;
    }
  }

  private checkImmutable(rt: ResourceType, obj: KubeObject, cur: KubeObject): void {
    const name = cur.metadata.name ?? '';
    const spec = asDict(obj['spec']);
    const old = asDict(cur['spec']);
    const causes: StatusCause[] = [];
    const immutable = (field: string, a: unknown, b: unknown): void => {
      if (!deepEqual(a, b))
        causes.push({
          reason: 'FieldValueInvalid',
          message: `Invalid value: ${JSON.stringify(a)}: field is immutable`,
          field,
        });
    };
    if (rt.kind === 'Job') {
      immutable('spec.selector', spec['selector'], old['selector']);
      immutable('spec.completionMode', spec['completionMode'], old['completionMode']);
      immutable('spec.podFailurePolicy', spec['podFailurePolicy'], old['podFailurePolicy']);
      const startedBefore = asDict(cur['status'])['startTime'] !== undefined;
      if (!(old['suspend'] === true && !startedBefore))
        immutable('spec.template', spec['template'], old['template']);
      if (spec['completionMode'] !== 'Indexed')
        immutable('spec.completions', spec['completions'], old['completions']);
    } else if (rt.kind === 'Pod') {
      // Only images, activeDeadlineSeconds and tolerations may change in a pod's spec.
      const strip = (s: Dict): Dict => {
        const c = clone(s);
        delete c['activeDeadlineSeconds'];
        delete c['tolerations'];
        for (const ctr of [...asList(c['containers']), ...asList(c['initContainers'])])
          delete ctr['image'];
        return c;
      };
      if (!deepEqual(strip(spec), strip(old)))
        causes.push({
          reason: 'FieldValueForbidden',
          message:
            'Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)',
          field: 'spec',
        });
    } else if (rt.kind === 'Service') {
      if (old['clusterIP'] !== undefined && spec['clusterIP'] !== undefined)
        immutable('spec.clusterIP', spec['clusterIP'], old['clusterIP']);
    } else if (rt.kind === 'Secret' || rt.kind === 'ConfigMap') {
      if (cur['immutable'] === true) {
        immutable('data', obj['data'], cur['data']);
      }
    }
    if (causes.length) throw invalid(rt, name, causes);
  }

  private validate(rt: ResourceType, obj: KubeObject): void {
    const meta: ObjectMeta = obj.metadata;
    const name = meta.name ?? '';
    const causes: StatusCause[] = [];
    const add = (field: string, message: string, reason = 'FieldValueInvalid'): void => {
      causes.push({ field, message, reason });
    };
    // Names: most kinds are DNS-1123 subdomains; Services are DNS-1035 labels.
    if (rt.kind === 'Service') {
      if (!DNS1035_LABEL.test(name) || name.length > 63)
        add(
          'metadata.name',
          `Invalid value: "${name}": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')`,
        );
    } else if (rt.kind !== 'Event' && (!DNS1123_SUBDOMAIN.test(name) || name.length > 253)) {
      add(
        'metadata.name',
        `Invalid value: "${name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
      );
    }
    if (rt.kind === 'Job' && name.length > 63)
      add('metadata.name', `Invalid value: "${name}": must be no more than 63 characters`);
    validateLabels(meta.labels, 'metadata.labels', add);
    if (rt.kind === 'Pod') validatePodSpec(asDict(obj['spec']), 'spec', add);
    if (rt.kind === 'Job') {
      const spec = asDict(obj['spec']);
      const tpl = asDict(spec['template']);
      validateLabels(
        asDict(asDict(tpl['metadata'])['labels']) as Record<string, string>,
        'spec.template.metadata.labels',
        add,
      );
      const pspec = asDict(tpl['spec']);
      validatePodSpec(pspec, 'spec.template.spec', add);
      const rp = pspec['restartPolicy'];
      if (rp !== 'Never' && rp !== 'OnFailure')
        add(
          'spec.template.spec.restartPolicy',
          `Unsupported value: "${String(rp)}": supported values: "OnFailure", "Never"`,
          'FieldValueNotSupported',
        );
      if (spec['podFailurePolicy'] !== undefined && rp !== 'Never')
        add(
          'spec.template.spec.restartPolicy',
          `Invalid value: "${String(rp)}": only "Never" is supported when podFailurePolicy is specified`,
        );
      if (spec['completionMode'] === 'Indexed' && typeof spec['completions'] !== 'number')
        add(
          'spec.completions',
          'Required value: when completion mode is Indexed',
          'FieldValueRequired',
        );
      for (const f of [
        'parallelism',
        'completions',
        'backoffLimit',
        'activeDeadlineSeconds',
        'ttlSecondsAfterFinished',
      ]) {
        const v = spec[f];
        if (typeof v === 'number' && (v < 0 || (f === 'activeDeadlineSeconds' && v <= 0)))
          add(
            `spec.${f}`,
            `Invalid value: ${v}: must be greater than${f === 'activeDeadlineSeconds' ? '' : ' or equal to'} 0`,
          );
      }
      const pfp = asDict(spec['podFailurePolicy']);
      asList(pfp['rules']).forEach((r, i) => {
        const a = r['action'];
        if (!['FailJob', 'Ignore', 'Count', 'FailIndex'].includes(String(a)))
          add(
            `spec.podFailurePolicy.rules[${i}].action`,
            `Unsupported value: "${String(a)}": supported values: "Count", "FailIndex", "FailJob", "Ignore"`,
            'FieldValueNotSupported',
          );
        const oe = asDict(r['onExitCodes']);
        if (oe['operator'] === 'In' && Array.isArray(oe['values']) && oe['values'].includes(0))
          add(
            `spec.podFailurePolicy.rules[${i}].onExitCodes.values[${oe['values'].indexOf(0)}]`,
            'Invalid value: 0: must not be 0 for the In operator',
          );
        if (r['onExitCodes'] !== undefined && r['onPodConditions'] !== undefined)
          add(
            `spec.podFailurePolicy.rules[${i}]`,
            'Invalid value: specifying both OnExitCodes and OnPodConditions is not supported',
          );
      });
    }
    if (rt.kind === 'Secret') {
      for (const [k, v] of Object.entries(asDict(obj['data']))) {
        if (typeof v !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(v))
          add(`data[${k}]`, 'Invalid value: "<secret contents redacted>": illegal base64 data');
      }
    }
    if (this.validateSchemas) {
      const v = MODEL_VALIDATORS[rt.kind];
      if (v) {
        try {
          v(obj);
        } catch (err) {
          const errors = (err as { errors?: { instancePath?: string; message?: string }[] }).errors;
          if (!errors) throw err;
          for (const e of errors) {
            const field = (e.instancePath ?? '')
              .replace(/^\//, '')
              .replace(/\/(\d+)(?=\/|$)/g, '[$1]')
              .replace(/\//g, '.');
            add(field || '<root>', `Invalid value: ${e.message ?? 'invalid'}`);
          }
        }
      }
    }
    if (causes.length) throw invalid(rt, name, causes);
  }
}

function defaultPodSpec(spec: Dict): void {
  if (spec['restartPolicy'] === undefined) spec['restartPolicy'] = 'Always';
  if (spec['terminationGracePeriodSeconds'] === undefined)
    spec['terminationGracePeriodSeconds'] = 30;
  if (spec['dnsPolicy'] === undefined) spec['dnsPolicy'] = 'ClusterFirst';
  if (spec['schedulerName'] === undefined) spec['schedulerName'] = 'default-scheduler';
  if (spec['securityContext'] === undefined) spec['securityContext'] = {};
  for (const c of [...asList(spec['containers']), ...asList(spec['initContainers'])]) {
    if (c['imagePullPolicy'] === undefined) {
      const image = String(c['image'] ?? '');
      c['imagePullPolicy'] =
        image.endsWith(':latest') || !/:[^/]+$/.test(image) ? 'Always' : 'IfNotPresent';
    }
    if (c['terminationMessagePath'] === undefined)
      c['terminationMessagePath'] = '/dev/termination-log';
    if (c['terminationMessagePolicy'] === undefined) c['terminationMessagePolicy'] = 'File';
    // Extended resources: a limit without a request requests the limit.
    const res = asDict(c['resources']);
    const limits = asDict(res['limits']);
    if (Object.keys(limits).length > 0) {
      const requests = asDict(res['requests']);
      for (const [k, v] of Object.entries(limits)) if (requests[k] === undefined) requests[k] = v;
      res['requests'] = requests;
      c['resources'] = res;
    }
  }
}

function qosClass(spec: Dict): string {
  const cs = asList(spec['containers']);
  const any = cs.some((c) => Object.keys(asDict(asDict(c['resources'])['requests'])).length > 0);
  return any ? 'Burstable' : 'BestEffort';
}

function validateLabels(
  labels: Record<string, string> | undefined,
  field: string,
  add: (field: string, message: string) => void,
): void {
  for (const [k, v] of Object.entries(labels ?? {})) {
    const [prefix, name] = k.includes('/')
      ? [k.slice(0, k.indexOf('/')), k.slice(k.indexOf('/') + 1)]
      : [undefined, k];
    if (prefix !== undefined && (!DNS1123_SUBDOMAIN.test(prefix) || prefix.length > 253))
      add(
        field,
        `Invalid value: "${k}": prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'`,
      );
    if (!LABEL_NAME.test(name ?? '') || (name ?? '').length > 63)
      add(
        field,
        `Invalid value: "${k}": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character`,
      );
    if (typeof v !== 'string' || v.length > 63 || !LABEL_VALUE.test(v))
      add(
        `${field}`,
        `Invalid value: "${String(v)}": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character, and must be no more than 63 characters`,
      );
  }
}

function validatePodSpec(
  spec: Dict,
  field: string,
  add: (field: string, message: string, reason?: string) => void,
): void {
  const containers = asList(spec['containers']);
  if (containers.length === 0) add(`${field}.containers`, 'Required value', 'FieldValueRequired');
  const names = new Set<string>();
  containers.forEach((c, i) => {
    const n = String(c['name'] ?? '');
    if (!DNS1123_LABEL.test(n) || n.length > 63)
      add(
        `${field}.containers[${i}].name`,
        `Invalid value: "${n}": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character`,
      );
    if (names.has(n))
      add(`${field}.containers[${i}].name`, `Duplicate value: "${n}"`, 'FieldValueDuplicate');
    names.add(n);
    if (!c['image']) add(`${field}.containers[${i}].image`, 'Required value', 'FieldValueRequired');
    asList(c['env']).forEach((e, j) => {
      const en = String(e['name'] ?? '');
      if (!ENV_NAME.test(en))
        add(
          `${field}.containers[${i}].env[${j}].name`,
          `Invalid value: "${en}": a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit`,
        );
    });
    const res = asDict(c['resources']);
    const req = asDict(res['requests'])[GPU_RESOURCE];
    const lim = asDict(res['limits'])[GPU_RESOURCE];
    if (req !== undefined && lim === undefined)
      add(
        `${field}.containers[${i}].resources.limits`,
        `Required value: Limit must be set for non overcommitable resources`,
        'FieldValueRequired',
      );
    if (req !== undefined && lim !== undefined && String(req) !== String(lim))
      add(
        `${field}.containers[${i}].resources.requests[${GPU_RESOURCE}]`,
        `Invalid value: "${String(req)}": must be equal to ${GPU_RESOURCE} limit of ${String(lim)}`,
      );
  });
  for (const f of ['hostname', 'subdomain']) {
    const v = spec[f];
    if (typeof v === 'string' && (!DNS1123_LABEL.test(v) || v.length > 63))
      add(
        `${field}.${f}`,
        `Invalid value: "${v}": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character`,
      );
  }
  const rp = spec['restartPolicy'];
  if (rp !== undefined && !['Always', 'OnFailure', 'Never'].includes(String(rp)))
    add(
      `${field}.restartPolicy`,
      `Unsupported value: "${String(rp)}": supported values: "Always", "OnFailure", "Never"`,
      'FieldValueNotSupported',
    );
}
