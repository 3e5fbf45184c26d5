/**
 * Routing: which resource a request path names and which verb the request is, as the
 * real API server reads them. `/api/v1/...` is the core group, `/apis/GROUP/VERSION/...`
 * the others; then `namespaces/NS/RESOURCE[/NAME[/SUBRESOURCE]]` or, for cluster-scoped
 * resources and lists across namespaces, `RESOURCE[/NAME[/SUBRESOURCE]]`. The namespaces
 * themselves (`/api/v1/namespaces[/NAME]`) and every other path (`/version`, discovery)
 * have their own route kinds. A path naming no known resource has no route (404).
 */
import type { ResourceType } from '../objects/resources.js';
import type { Verb } from './types.js';

export interface Route {
  kind: 'resource' | 'namespaces' | 'nonresource';
  rt?: ResourceType;
  namespace?: string | undefined;
  name?: string | undefined;
  subresource?: string | undefined;
}

export function route(types: readonly ResourceType[], pathname: string): Route | undefined {
  const seg = pathname
    .split('/')
    .filter((s) => s.length > 0)
    .map(decodeURIComponent);
  let group: string;
  let version: string;
  let rest: string[];
  if (seg[0] === 'api' && seg.length >= 2) {
    group = '';
    version = seg[1]!;
    rest = seg.slice(2);
  } else if (seg[0] === 'apis' && seg.length >= 3) {
    group = seg[1]!;
    version = seg[2]!;
    rest = seg.slice(3);
  } else return { kind: 'nonresource' };
  if (rest.length === 0) return { kind: 'nonresource' };
  let namespace: string | undefined;
  let resource: string;
  let name: string | undefined;
  let subresource: string | undefined;
  if (rest[0] === 'namespaces' && rest.length >= 3) {
    namespace = rest[1];
    resource = rest[2]!;
    name = rest[3];
    subresource = rest[4];
  } else if (rest[0] === 'namespaces' && group === '') {
    return { kind: 'namespaces', name: rest[1], subresource: rest[2] };
  } else {
    resource = rest[0]!;
    name = rest[1];
    subresource = rest[2];
  }
  const rt = types.find(
    (t) => t.resource === resource && t.group === group && t.version === version,
  );
  if (!rt) return undefined;
  if (!rt.namespaced && namespace !== undefined) return undefined;
  return { kind: 'resource', rt, namespace, name, subresource };
}

export function verbOf(method: string, route: Route | undefined, q: URLSearchParams): Verb {
  if (!route || route.kind === 'nonresource') return method === 'GET' ? 'get' : 'other';
  const watch = q.get('watch') === 'true' || q.get('watch') === '1';
  switch (method) {
    case 'GET':
      return route.name ? 'get' : watch ? 'watch' : 'list';
    case 'POST':
      return route.name ? 'create' : 'create';
    case 'PUT':
      return 'update';
    case 'PATCH':
      return 'patch';
    case 'DELETE':
      return route.name ? 'delete' : 'deletecollection';
    default:
      return 'other';
  }
}
