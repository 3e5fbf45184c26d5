/**
 * The fake API server's storage: the writes on top of the object table (object-table.ts)
 * with the real API server's rules: admission (admission.ts), defaulting (defaults.ts)
 * and validation (validation.ts) on every external write, optimistic concurrency on
 * resourceVersion, the status subresource, graceful deletion of pods bound to a node,
 * finalizers, and the garbage collector's ownerReference cascades
 * (garbage-collector.ts).
 *
 * Controllers (the fake Job controller and kubelet) use the store in-process: subscribe()
 * to its events, then write with create/update/mutate/delete. Each write produces one
 * event, seen by HTTP watches and in-process subscribers alike. Writes return copies.
 */
import {
  type KubeObject,
  KubeApiError,
  apiError,
  clone,
  deepEqual,
  isPlainObject,
  kubeTime,
  newUid,
  randomSuffix,
} from '../objects/meta.js';
import { patchByContentType } from '../objects/patches.js';
import {
  type ResourceType,
  FOREGROUND_FINALIZER,
  alreadyExists,
  apiVersionOf,
  conflict,
  invalid,
  notFound,
} from '../objects/resources.js';
import { type Admission, ValidatingChecks, admitPriority, checkImmutable } from './admission.js';
import { applyDefaults } from './defaults.js';
import { evictPod, recordEvent, type EvictOptions } from './events.js';
import { GarbageCollector } from './garbage-collector.js';
import { type ListOptions, ObjectTable, type ObjectTableOptions } from './object-table.js';
import {
  checkPreconditions,
  gracePeriodOnDelete,
  keepServerFields,
  namespaceOnCreate,
  runsOnANode,
  withSubresource,
} from './write-rules.js';
import { validateObject } from './validation.js';

export type PropagationPolicy = 'Background' | 'Foreground' | 'Orphan';

export interface DeleteOptions {
  gracePeriodSeconds?: number;
  propagationPolicy?: PropagationPolicy;
  preconditions?: { uid?: string; resourceVersion?: string };
}

export interface WriteOptions {
  /** Write the status subresource: only `.status` changes are kept. */
  subresource?: 'status';
}

export interface StoreOptions extends ObjectTableOptions {
  /** Validate objects against the Kubernetes OpenAPI schemas (kubernetes-models). Default true. */
  validateSchemas?: boolean;
  /** Run the garbage collector (ownerReference cascades). Default true. */
  garbageCollector?: boolean;
}

export class FakeKubeStore extends ObjectTable {
  private readonly admissions: Admission[] = [];
  /** Validating admission, after defaulting and validation (admission.ts). */
  readonly validating = new ValidatingChecks();
  private readonly validateSchemas: boolean;
  private readonly gc: GarbageCollector;
  private serviceIp = 10;

  constructor(opts: StoreOptions = {}) {
    super(opts);
    this.validateSchemas = opts.validateSchemas ?? true;
    this.gc = new GarbageCollector(this, opts.garbageCollector ?? true);
  }

  /** Register an admission check (throw a KubeApiError to refuse the write). */
  addAdmission(fn: Admission): () => void {
    this.admissions.push(fn);
    return () => {
      const i = this.admissions.indexOf(fn);
      if (i >= 0) this.admissions.splice(i, 1);
    };
  }

  create<T = KubeObject>(resource: string, input: unknown, opts: { namespace?: string } = {}): T {
    const rt = this.type(resource);
    const obj = bodyObject(rt, input);
    const meta = obj.metadata;
    namespaceOnCreate(rt, meta, opts.namespace);
    if (obj.kind !== undefined && obj.kind !== rt.kind)
      throw apiError(
        400,
        `the API version in the data (${String(obj.apiVersion)}) / kind ${obj.kind} does not match the expected ${rt.kind}`,
      );
    obj.apiVersion = apiVersionOf(rt);
    obj.kind = rt.kind;
    if (!meta.name && !meta.generateName)
      throw invalid(rt, '', [
        {
          reason: 'FieldValueRequired',
          message: 'Required value: name or generateName is required',
          field: 'metadata.name',
        },
      ]);
    // Admission sees the generateName (so messages read `pods "job-" is forbidden`).
    this.admit('create', rt, obj, meta.name ?? meta.generateName ?? '');
    if (!meta.name) meta.name = `${meta.generateName ?? ''}${randomSuffix()}`;
    if (this.bucket(resource).has(this.key(meta.namespace, meta.name)))
      throw alreadyExists(rt, meta.name);
    meta.uid = newUid();
    meta.creationTimestamp = kubeTime(this.clock.now());
    meta.generation = 1;
    delete meta.deletionTimestamp;
    delete meta.deletionGracePeriodSeconds;
    this.defaultAndValidate(rt, obj);
    this.validating.run({ operation: 'CREATE', rt, object: obj, oldObject: undefined });
    return clone(this.commit('ADDED', rt, obj, undefined)) as T;
  }

  /** PUT: optimistic concurrency on metadata.resourceVersion (absent: unconditional). */
  update<T = KubeObject>(
    resource: string,
    input: unknown,
    opts: WriteOptions & { namespace?: string } = {},
  ): T {
    const rt = this.type(resource);
    const obj = bodyObject(rt, input);
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
    const cur = this.stored(rt, ns, name);
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
    const cur = this.stored(rt, namespace, name);
    if (!cur) throw notFound(rt, name);
    const next = patchByContentType(cur, body, contentType);
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
    const cur = this.stored(rt, namespace, name);
    if (!cur) return undefined;
    const copy = clone(cur) as unknown as T;
    if (fn(copy) === false) return clone(cur) as unknown as T;
    const next = copy as unknown as KubeObject;
    if (deepEqual(next, cur)) return clone(cur) as unknown as T;
    return clone(this.replace(rt, cur, next, 'all', false)) as unknown as T;
  }

  delete(
    resource: string,
    namespace: string | undefined,
    name: string,
    opts: DeleteOptions = {},
  ): { object: KubeObject; removed: boolean } {
    const rt = this.type(resource);
    const cur = this.stored(rt, namespace, name);
    if (!cur) throw notFound(rt, name);
    checkPreconditions(cur, opts.preconditions);
    // batch/v1 Jobs orphan their pods unless told otherwise, like the real API.
    const policy: PropagationPolicy =
      opts.propagationPolicy ?? (resource === 'jobs' ? 'Orphan' : 'Background');
    const now = this.clock.now();
    const finalizers = cur.metadata.finalizers ?? [];
    if (cur.metadata.deletionTimestamp) return this.deleteAgain(rt, cur, policy, opts, now);
    const grace = gracePeriodOnDelete(rt, cur, opts.gracePeriodSeconds);
    const graceful = grace > 0 && runsOnANode(cur);
    const dependents = this.gc.dependentsOf(cur);
    if (policy === 'Orphan') for (const d of dependents) this.gc.orphan(d, cur.metadata.uid!);
    const foreground = policy === 'Foreground' && dependents.length > 0;
    if (graceful || finalizers.length > 0 || foreground) {
      const next = clone(cur);
      next.metadata.deletionTimestamp = kubeTime(now + (graceful ? grace * 1000 : 0));
      next.metadata.deletionGracePeriodSeconds = graceful ? grace : 0;
      if (foreground && !finalizers.includes(FOREGROUND_FINALIZER))
        next.metadata.finalizers = [...finalizers, FOREGROUND_FINALIZER];
      const stored = this.commit('MODIFIED', rt, next, cur);
      if (foreground) this.gc.collectLater(stored, 'Background');
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
    opts: EvictOptions = {},
  ): { object: KubeObject; removed: boolean } {
    return evictPod(this, namespace, name, opts);
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
    recordEvent(this, involved, type, reason, message, component);
  }

  // -------------------------------------------------------------------------------------
  // Internals

  /** The caller's admission hooks, then the built-in ones. */
  private admit(
    op: 'create' | 'update',
    rt: ResourceType,
    obj: KubeObject,
    name: string,
    old?: KubeObject,
  ): void {
    for (const a of this.admissions) a(op, rt, obj, old);
    admitPriority(op, rt, obj, name, (pc) => this.get('priorityclasses', undefined, pc));
  }

  private defaultAndValidate(rt: ResourceType, obj: KubeObject): void {
    applyDefaults(rt, obj, () => {
      this.serviceIp += 1;
      return `10.96.${Math.floor(this.serviceIp / 250)}.${this.serviceIp % 250}`;
    });
    validateObject(rt, obj, { schemas: this.validateSchemas });
  }

  /**
   * Write input over cur: the whole object, or only its status (`status`), or everything
   * including status and deletion fields (`all`: in-process controllers). External writes
   * go through admission, immutability, defaulting and validation, and one that changes
   * nothing writes nothing. An object whose last finalizer is gone while it is being
   * deleted is removed (watchers see DELETED with its final state).
   */
  private replace(
    rt: ResourceType,
    cur: KubeObject,
    input: KubeObject,
    subresource: 'status' | 'all' | undefined,
    external: boolean,
  ): KubeObject {
    const obj = withSubresource(rt, cur, input, subresource);
    keepServerFields(rt, obj, cur, subresource);
    const m = obj.metadata;
    if (external) {
      this.admit('update', rt, obj, m.name ?? '', cur);
      checkImmutable(rt, obj, cur);
      this.defaultAndValidate(rt, obj);
      this.validating.run({ operation: 'UPDATE', rt, object: obj, oldObject: cur, subresource });
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
      return this.remove(rt, obj, 'Background', cur);
    }
    return this.commit('MODIFIED', rt, obj, cur);
  }

  /** A delete of an object already being deleted: a shorter grace period for a pod wins. */
  private deleteAgain(
    rt: ResourceType,
    cur: KubeObject,
    policy: PropagationPolicy,
    opts: DeleteOptions,
    now: number,
  ): { object: KubeObject; removed: boolean } {
    // kubectl delete --grace-period=0 --force on a terminating pod.
    const curGrace = cur.metadata.deletionGracePeriodSeconds ?? 0;
    const requested = opts.gracePeriodSeconds;
    if (rt.resource === 'pods' && requested !== undefined && requested < curGrace) {
      const next = clone(cur);
      next.metadata.deletionGracePeriodSeconds = requested;
      next.metadata.deletionTimestamp = kubeTime(now + requested * 1000);
      if (requested === 0 && (cur.metadata.finalizers ?? []).length === 0)
        return { object: clone(this.remove(rt, next, policy, cur)), removed: true };
      return { object: clone(this.commit('MODIFIED', rt, next, cur)), removed: false };
    }
    return { object: clone(cur), removed: false };
  }

  private remove(
    rt: ResourceType,
    obj: KubeObject,
    policy: PropagationPolicy,
    previous: KubeObject = obj,
  ): KubeObject {
    const gone = clone(obj);
    this.commit('DELETED', rt, gone, previous);
    if (policy === 'Background') this.gc.collectLater(gone, 'Background');
    // An owner waiting in foreground deletion may be free to go now.
    for (const ref of obj.metadata.ownerReferences ?? [])
      this.gc.releaseOwnerLater(ref.uid, obj.metadata.namespace);
    return gone;
  }
}

/** A write's body as an object of rt; 400 when it is not one (no metadata). */
function bodyObject(rt: ResourceType, input: unknown): KubeObject {
  if (!isPlainObject(input) || !isPlainObject(input['metadata']))
    throw apiError(
      400,
      `the body of the request was in an unknown format: ${rt.kind} without metadata`,
    );
  return clone(input) as KubeObject;
}
