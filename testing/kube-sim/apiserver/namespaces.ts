/**
 * Namespaces: every namespace exists in the simulated cluster (objects may be created in
 * any), so `/api/v1/namespaces` lists those that hold an object, `default`, and the ones
 * a client created; GET of any name answers an Active namespace. POST records a name
 * (409 AlreadyExists the second time), DELETE forgets it and answers it Terminating.
 * Deleting a namespace does not delete what is in it.
 */
import type { ServerResponse } from 'node:http';
import type { Clock } from '../clock.js';
import { type KubeObject, apiError, isPlainObject, kubeTime } from '../objects/meta.js';
import type { FakeKubeStore } from '../store/store.js';
import type { Responder } from './respond.js';

export interface NamespaceContext {
  store: FakeKubeStore;
  clock: Clock;
  respond: Responder;
  /** Names clients created with POST. */
  created: Set<string>;
}

export function serveNamespaces(
  ctx: NamespaceContext,
  res: ServerResponse,
  method: string,
  routeName: string | undefined,
  body: unknown,
): void {
  const nsObj = (name: string): KubeObject => ({
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name, labels: { 'kubernetes.io/metadata.name': name } },
    spec: { finalizers: ['kubernetes'] },
    status: { phase: 'Active' },
  });
  if (method === 'GET' && !routeName) {
    const names = new Set([...ctx.store.namespaces(), ...ctx.created]);
    ctx.respond.send(res, 200, {
      apiVersion: 'v1',
      kind: 'NamespaceList',
      metadata: { resourceVersion: String(ctx.store.resourceVersion) },
      items: [...names].sort().map(nsObj),
    });
    return;
  }
  if (method === 'GET') {
    ctx.respond.send(res, 200, nsObj(routeName!));
    return;
  }
  if (method === 'POST') {
    const name =
      isPlainObject(body) && isPlainObject(body['metadata'])
        ? String(body['metadata']['name'] ?? '')
        : '';
    if (!name)
      throw apiError(
        422,
        'Namespace "" is invalid: metadata.name: Required value: name or generateName is required',
        'Invalid',
      );
    if (ctx.created.has(name))
      throw apiError(409, `namespaces "${name}" already exists`, 'AlreadyExists', {
        name,
        kind: 'namespaces',
      });
    ctx.created.add(name);
    const o = nsObj(name);
    o.metadata.creationTimestamp = kubeTime(ctx.clock.now());
    ctx.respond.send(res, 201, o);
    return;
  }
  if (method === 'DELETE' && routeName) {
    ctx.created.delete(routeName);
    ctx.respond.send(res, 200, { ...nsObj(routeName), status: { phase: 'Terminating' } });
    return;
  }
  throw apiError(
    405,
    'the server does not allow this method on the requested resource',
    'MethodNotAllowed',
  );
}
