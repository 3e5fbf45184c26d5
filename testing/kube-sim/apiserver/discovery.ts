/**
 * The paths that name no resource: `/version` (v1.31.0-fake), the health checks
 * (`/healthz`, `/readyz`, `/livez`: "ok"), and discovery, as a client's discovery
 * cache reads it: `/api` (the core versions), `/apis` (one APIGroup per group the store
 * serves) and `/api/v1`, `/apis/GROUP/VERSION` (an APIResourceList with every verb, and
 * the status subresources). Anything else is 404.
 */
import type { ServerResponse } from 'node:http';
import { apiError } from '../objects/meta.js';
import { type ResourceType, notFound } from '../objects/resources.js';
import type { Responder } from './respond.js';

const VERBS = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];

export function serveNonResource(
  types: readonly ResourceType[],
  respond: Responder,
  res: ServerResponse,
  path: string,
): void {
  const p = path.replace(/\/+$/, '') || '/';
  if (p === '/version') {
    respond.send(res, 200, {
      major: '1',
      minor: '31',
      gitVersion: 'v1.31.0-fake',
      platform: 'linux/amd64',
    });
    return;
  }
  if (p === '/healthz' || p === '/readyz' || p === '/livez') {
    respond.send(res, 200, 'ok');
    return;
  }
  if (p === '/api') {
    respond.send(res, 200, {
      kind: 'APIVersions',
      versions: ['v1'],
      serverAddressByClientCIDRs: [],
    });
    return;
  }
  if (p === '/apis') {
    respond.send(res, 200, { kind: 'APIGroupList', apiVersion: 'v1', groups: apiGroups(types) });
    return;
  }
  const m = p.match(/^\/(?:api\/(v1)|apis\/([^/]+)\/([^/]+))$/);
  if (m) {
    const group = m[1] ? '' : m[2]!;
    const version = m[1] ?? m[3]!;
    respond.send(res, 200, apiResourceList(types, group, version));
    return;
  }
  throw apiError(404, 'the server could not find the requested resource', 'NotFound');
}

function apiGroups(types: readonly ResourceType[]): unknown[] {
  return [...new Set(types.filter((t) => t.group).map((t) => `${t.group}/${t.version}`))].map(
    (gv) => {
      const [name, version] = gv.split('/') as [string, string];
      return {
        name,
        versions: [{ groupVersion: gv, version }],
        preferredVersion: { groupVersion: gv, version },
      };
    },
  );
}

/** The resources of one group and version; 404 (about the group) when it has none. */
function apiResourceList(types: readonly ResourceType[], group: string, version: string): unknown {
  const resources = types
    .filter((t) => t.group === group && t.version === version)
    .flatMap((t) => {
      const main = {
        name: t.resource,
        singularName: t.kind.toLowerCase(),
        namespaced: t.namespaced,
        kind: t.kind,
        verbs: [...VERBS],
      };
      return t.hasStatus
        ? [
            main,
            {
              name: `${t.resource}/status`,
              singularName: '',
              namespaced: t.namespaced,
              kind: t.kind,
              verbs: ['get', 'patch', 'update'],
            },
          ]
        : [main];
    });
  if (resources.length === 0)
    throw notFound(
      {
        resource: 'groups',
        group: '',
        version: 'v1',
        kind: 'APIGroup',
        namespaced: false,
        hasStatus: false,
      },
      group,
    );
  return {
    kind: 'APIResourceList',
    apiVersion: 'v1',
    groupVersion: group ? `${group}/${version}` : version,
    resources,
  };
}
