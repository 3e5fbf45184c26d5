/**
 * The API server's rules for one write, as pure functions on the objects involved (the
 * store applies them in store.ts):
 *
 * - create: where the object's namespace comes from (the URL wins; a different one in
 *   the body is 400; cluster-scoped objects have none);
 * - update: which parts of the request are kept (a main-resource write keeps the stored
 *   status, a status write keeps everything but the status), and the fields the server
 *   owns (name, namespace, uid, creationTimestamp, generateName, deletion fields,
 *   apiVersion, kind; generation counts changes outside metadata and status);
 * - delete: preconditions on uid and resourceVersion (409), and the grace period a pod
 *   gets (the request's, else its terminationGracePeriodSeconds, else 30 s).
 */
import {
  type Dict,
  type KubeObject,
  type ObjectMeta,
  apiError,
  asDict,
  clone,
  deepEqual,
} from '../objects/meta.js';
import { type ResourceType, apiVersionOf } from '../objects/resources.js';

/** Set meta.namespace for a create of rt with `fromUrl` the namespace in the request path. */
export function namespaceOnCreate(
  rt: ResourceType,
  meta: ObjectMeta,
  fromUrl: string | undefined,
): void {
  if (!rt.namespaced) {
    delete meta.namespace;
    return;
  }
  const ns = fromUrl ?? meta.namespace ?? 'default';
  if (meta.namespace && fromUrl && meta.namespace !== fromUrl)
    throw apiError(
      400,
      'the namespace of the provided object does not match the namespace sent on the request',
    );
  meta.namespace = ns;
}

/** What an update of cur with input writes, before the server's own fields are set. */
export function withSubresource(
  rt: ResourceType,
  cur: KubeObject,
  input: KubeObject,
  subresource: 'status' | 'all' | undefined,
): KubeObject {
  if (subresource === 'status') {
    const obj = clone(cur);
    obj['status'] = clone(input['status']);
    return obj;
  }
  const obj = clone(input);
  if (subresource !== 'all' && rt.hasStatus) {
    if (cur['status'] === undefined) delete obj['status'];
    else obj['status'] = clone(cur['status']);
  }
  return obj;
}

/** Put back on obj the fields the server owns, from cur; count a spec change in generation. */
export function keepServerFields(
  rt: ResourceType,
  obj: KubeObject,
  cur: KubeObject,
  subresource: 'status' | 'all' | undefined,
): void {
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
  m.generation = (cm.generation ?? 1) + (deepEqual(specOf(obj), specOf(cur)) ? 0 : 1);
}

/** Everything but metadata, status, apiVersion and kind: what generation counts changes of. */
function specOf(o: KubeObject): Dict {
  const rest: Dict = { ...o };
  delete rest['metadata'];
  delete rest['status'];
  delete rest['apiVersion'];
  delete rest['kind'];
  return rest;
}

/** 409 Conflict when a delete's preconditions do not hold for cur. */
export function checkPreconditions(
  cur: KubeObject,
  pre: { uid?: string; resourceVersion?: string } | undefined,
): void {
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
}

/** Seconds a delete gives cur to stop: pods only (the request's, else the pod's own, else 30). */
export function gracePeriodOnDelete(
  rt: ResourceType,
  cur: KubeObject,
  requested: number | undefined,
): number {
  if (rt.resource !== 'pods') return 0;
  const spec = asDict(cur['spec']);
  return (
    requested ??
    (typeof spec['terminationGracePeriodSeconds'] === 'number'
      ? spec['terminationGracePeriodSeconds']
      : 30)
  );
}

/** A pod bound to a node and not finished: its kubelet has processes to stop. */
export function runsOnANode(pod: KubeObject): boolean {
  const phase = asDict(pod['status'])['phase'];
  return (
    typeof asDict(pod['spec'])['nodeName'] === 'string' &&
    phase !== 'Succeeded' &&
    phase !== 'Failed'
  );
}
