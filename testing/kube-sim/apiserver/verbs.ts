/**
 * The verbs on a resource path, each answered from the store with the real server's
 * codes and bodies:
 *
 * - get (200 the object; pods/log through the kubelet's log source), list (a `KindList`
 *   with the store's resourceVersion; `limit` pages with a `continue` token, which
 *   answers 410 once the history it was taken at is gone), watch (watch.ts);
 * - create (201; 405 on a path with a name; pods/eviction evicts and answers 201 Success),
 *   update (PUT; the body's name must match the path), patch, the status subresource for
 *   both;
 * - delete (200 with the object while it is terminating, or for pods; otherwise a
 *   Success Status naming it) and deletecollection (a list of what was deleted), with
 *   gracePeriodSeconds, propagationPolicy (or the old orphanDependents) and
 *   preconditions from the query or a DeleteOptions body.
 *
 * A subresource other than status (for types that have it), pods/log and pods/eviction is
 * 404, an unknown verb 405.
 */
import type { ServerResponse } from 'node:http';
import { KubeApiError, apiError, isPlainObject, statusBody } from '../objects/meta.js';
import { type ResourceType, apiVersionOf } from '../objects/resources.js';
import type { DeleteOptions, FakeKubeStore, PropagationPolicy } from '../store/store.js';
import { servePodLog } from './pod-log.js';
import type { Responder } from './respond.js';
import type { PodLogSource, RecordedRequest, Verb } from './types.js';
import type { WatchStreams } from './watch.js';

export interface VerbContext {
  store: FakeKubeStore;
  respond: Responder;
  watches: WatchStreams;
  logSource: PodLogSource | undefined;
}

/** One request on a resource path, routed. */
export interface ResourceRequest {
  res: ServerResponse;
  rt: ResourceType;
  /** The namespace in the path (undefined for cluster-scoped types and across namespaces). */
  ns: string | undefined;
  name: string | undefined;
  subresource: string | undefined;
  verb: Verb;
  q: URLSearchParams;
  body: unknown;
  contentType: string;
  rec: RecordedRequest;
}

const METHOD_NOT_ALLOWED = 'the server does not allow this method on the requested resource';

export function serveResource(ctx: VerbContext, r: ResourceRequest): void {
  const { rt, subresource: sub } = r;
  if (
    sub !== undefined &&
    !(sub === 'status' && rt.hasStatus) &&
    !(rt.resource === 'pods' && (sub === 'log' || sub === 'eviction'))
  )
    throw apiError(404, 'the server could not find the requested resource', 'NotFound');
  switch (r.verb) {
    case 'get':
      if (sub === 'log')
        return servePodLog(
          ctx.store,
          ctx.logSource,
          ctx.respond,
          r.res,
          r.ns ?? 'default',
          r.name!,
          r.q,
        );
      return ctx.respond.send(r.res, 200, ctx.store.getOrThrow(rt.resource, r.ns, r.name!));
    case 'list':
      return serveList(ctx, r);
    case 'watch':
      return ctx.watches.open(r.res, rt, r.ns, r.q, r.rec);
    case 'create':
      return serveCreate(ctx, r);
    case 'update':
      return serveUpdate(ctx, r);
    case 'patch': {
      const opts: { subresource?: 'status' } = {};
      if (sub === 'status') opts.subresource = 'status';
      const patched = ctx.store.patch(rt.resource, r.ns, r.name!, r.body, r.contentType, opts);
      return ctx.respond.send(r.res, 200, patched);
    }
    case 'delete':
      return serveDelete(ctx, r);
    case 'deletecollection':
      return serveDeleteCollection(ctx, r);
    default:
      throw apiError(405, METHOD_NOT_ALLOWED, 'MethodNotAllowed');
  }
}

function serveCreate(ctx: VerbContext, r: ResourceRequest): void {
  if (r.subresource === 'eviction') {
    const opts =
      isPlainObject(r.body) && isPlainObject(r.body['deleteOptions'])
        ? r.body['deleteOptions']
        : {};
    const evictOpts: { gracePeriodSeconds?: number } = {};
    if (typeof opts['gracePeriodSeconds'] === 'number')
      evictOpts.gracePeriodSeconds = opts['gracePeriodSeconds'];
    ctx.store.evictPod(r.ns ?? 'default', r.name!, evictOpts);
    ctx.respond.send(r.res, 201, statusBody(201, undefined, undefined));
    return;
  }
  if (r.name) throw apiError(405, METHOD_NOT_ALLOWED, 'MethodNotAllowed');
  const created = ctx.store.create(r.rt.resource, r.body, r.ns ? { namespace: r.ns } : {});
  ctx.respond.send(r.res, 201, created);
}

function serveUpdate(ctx: VerbContext, r: ResourceRequest): void {
  const opts: { subresource?: 'status'; namespace?: string } = {};
  if (r.subresource === 'status') opts.subresource = 'status';
  if (r.ns) opts.namespace = r.ns;
  if (
    isPlainObject(r.body) &&
    isPlainObject(r.body['metadata']) &&
    r.body['metadata']['name'] !== r.name
  )
    throw apiError(400, 'the name of the object does not match the name on the URL');
  ctx.respond.send(r.res, 200, ctx.store.update(r.rt.resource, r.body, opts));
}

function serveDelete(ctx: VerbContext, r: ResourceRequest): void {
  const { rt } = r;
  const opts = deleteOptions(r.q, r.body);
  const { object, removed } = ctx.store.delete(rt.resource, r.ns, r.name!, opts);
  if (rt.resource === 'pods' || !removed) ctx.respond.send(r.res, 200, object);
  else
    ctx.respond.send(r.res, 200, {
      ...statusBody(200),
      details: { name: r.name, group: rt.group, kind: rt.resource, uid: object.metadata.uid },
    });
}

function serveDeleteCollection(ctx: VerbContext, r: ResourceRequest): void {
  const opts = {
    ...deleteOptions(r.q, r.body),
    namespace: r.ns,
    labelSelector: r.q.get('labelSelector') ?? undefined,
    fieldSelector: r.q.get('fieldSelector') ?? undefined,
  };
  const items = ctx.store.deleteCollection(r.rt.resource, opts);
  ctx.respond.send(r.res, 200, {
    apiVersion: apiVersionOf(r.rt),
    kind: `${r.rt.kind}List`,
    metadata: { resourceVersion: String(ctx.store.resourceVersion) },
    items,
  });
}

/** DeleteOptions from the query, else from the body; an unknown propagationPolicy is 422. */
function deleteOptions(q: URLSearchParams, body: unknown): DeleteOptions {
  const b = isPlainObject(body) ? body : {};
  const opts: DeleteOptions = {};
  const g =
    q.get('gracePeriodSeconds') ??
    (typeof b['gracePeriodSeconds'] === 'number' ? String(b['gracePeriodSeconds']) : null);
  if (g !== null && g !== '') opts.gracePeriodSeconds = Number(g);
  const p =
    q.get('propagationPolicy') ??
    (typeof b['propagationPolicy'] === 'string' ? b['propagationPolicy'] : null);
  if (p !== null) {
    if (p !== 'Background' && p !== 'Foreground' && p !== 'Orphan')
      throw apiError(
        422,
        `DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported value: "${p}": supported values: "Foreground", "Background", "Orphan", "nil"`,
        'Invalid',
      );
    opts.propagationPolicy = p as PropagationPolicy;
  } else if (b['orphanDependents'] === true || q.get('orphanDependents') === 'true')
    opts.propagationPolicy = 'Orphan';
  else if (b['orphanDependents'] === false || q.get('orphanDependents') === 'false')
    opts.propagationPolicy = 'Background';
  if (isPlainObject(b['preconditions'])) {
    const pre = b['preconditions'];
    opts.preconditions = {};
    if (typeof pre['uid'] === 'string') opts.preconditions.uid = pre['uid'];
    if (typeof pre['resourceVersion'] === 'string')
      opts.preconditions.resourceVersion = pre['resourceVersion'];
  }
  return opts;
}

function serveList(ctx: VerbContext, r: ResourceRequest): void {
  const { store } = ctx;
  const items = store.list(r.rt.resource, {
    namespace: r.ns,
    labelSelector: r.q.get('labelSelector') ?? undefined,
    fieldSelector: r.q.get('fieldSelector') ?? undefined,
  });
  const metadata: Record<string, unknown> = { resourceVersion: String(store.resourceVersion) };
  let page = items;
  const limit = Number(r.q.get('limit') ?? 0);
  const cont = r.q.get('continue');
  let offset = 0;
  if (cont) {
    const token = readContinue(store, cont);
    offset = token.offset;
    metadata['resourceVersion'] = String(token.rv);
  }
  if (limit > 0 || offset > 0) {
    page = items.slice(offset, limit > 0 ? offset + limit : undefined);
    const next = offset + page.length;
    if (limit > 0 && next < items.length) {
      metadata['continue'] = Buffer.from(
        JSON.stringify({ rv: store.resourceVersion, offset: next }),
      ).toString('base64url');
      metadata['remainingItemCount'] = items.length - next;
    }
  }
  ctx.respond.send(r.res, 200, {
    apiVersion: apiVersionOf(r.rt),
    kind: `${r.rt.kind}List`,
    metadata,
    items: page,
  });
}

/** A list's continue token: where the page starts; 410 once its version left the history. */
function readContinue(store: FakeKubeStore, cont: string): { rv: number; offset: number } {
  try {
    const parsed = JSON.parse(Buffer.from(cont, 'base64url').toString('utf8')) as {
      rv: number;
      offset: number;
    };
    if (parsed.rv < store.oldestWatchableVersion)
      throw apiError(
        410,
        'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.',
        'Expired',
      );
    return parsed;
  } catch (err) {
    if (err instanceof KubeApiError) throw err;
    throw apiError(400, 'continue key is not valid: illegal base64 data');
  }
}
