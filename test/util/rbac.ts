/**
 * The controller's Role (k8s/base/rbac.yaml) as the API server's RBAC authorizer reads it,
 * for the simulated cluster: the kubernetes tests' harness answers 403 to any request the
 * Role does not permit (as a real cluster would), and test/kubernetes/rbac.test.ts checks
 * that every grant of the Role is used by some request the code sends.
 *
 *   const rules = controllerRole();
 *   permits(rules, { group: 'batch', resource: 'jobs', verb: 'create' })  -> true
 *   attributesOf({ method: 'GET', path: '/api/v1/namespaces/stoker/pods/p/log', ... })
 *     -> { group: '', resource: 'pods', subresource: 'log', verb: 'get' }
 */
import { join } from 'node:path';
import { find, K8S, render } from './kustomize.js';

export interface RbacRule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
}

/** What the authorizer decides on: the request's group, resource, subresource and verb. */
export interface RequestAttributes {
  group: string;
  resource: string;
  subresource?: string | undefined;
  verb: string;
  name?: string | undefined;
}

/** The rules of the Role `stoker-controller` in the rendered base. */
export function controllerRole(): RbacRule[] {
  const role = find(render(join(K8S, 'base')), 'Role', 'stoker-controller') as {
    rules?: RbacRule[];
  };
  return role.rules ?? [];
}

const matches = (list: readonly string[], value: string): boolean =>
  list.includes('*') || list.includes(value);

/** Whether the rules allow the request (RBAC: any rule that matches all its parts). */
export function permits(rules: readonly RbacRule[], a: RequestAttributes): boolean {
  const resource = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
  return rules.some(
    (r) =>
      matches(r.apiGroups, a.group) &&
      matches(r.resources, resource) &&
      matches(r.verbs, a.verb) &&
      (!r.resourceNames?.length || (a.name !== undefined && r.resourceNames.includes(a.name))),
  );
}

/** `group/resource[/subresource] verb`: one grant, or one request, as a string. */
export const grantOf = (a: RequestAttributes): string =>
  `${a.group}/${a.resource}${a.subresource ? `/${a.subresource}` : ''} ${a.verb}`;

/** Every grant the rules make, expanded (wildcards are not used by ours: refused here). */
export function grantsOf(rules: readonly RbacRule[]): string[] {
  return rules.flatMap((r) => {
    for (const list of [r.apiGroups, r.resources, r.verbs])
      if (list.includes('*')) throw new Error(`a wildcard in the Role: ${JSON.stringify(r)}`);
    return r.apiGroups.flatMap((group) =>
      r.resources.flatMap((res) => {
        const [resource = '', subresource] = res.split('/');
        return r.verbs.map((verb) => grantOf({ group, resource, subresource, verb }));
      }),
    );
  });
}

/**
 * A request's attributes from its path and verb (the fake API server's record: verb as
 * the server read it, watch included); null for a non-resource path (/version, discovery).
 */
export function attributesOf(req: {
  path: string;
  verb: string;
  resource?: string | undefined;
  subresource?: string | undefined;
  name?: string | undefined;
}): RequestAttributes | null {
  const seg = req.path.split('/').filter(Boolean);
  const group = seg[0] === 'api' ? '' : seg[0] === 'apis' ? seg[1] : undefined;
  if (group === undefined || req.resource === undefined) return null;
  return {
    group,
    resource: req.resource,
    subresource: req.subresource,
    verb: req.verb,
    name: req.name,
  };
}
