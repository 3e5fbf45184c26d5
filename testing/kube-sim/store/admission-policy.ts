/**
 * ValidatingAdmissionPolicies (admissionregistration.k8s.io/v1) on the simulated API
 * server: the policies and bindings stored in it are enforced on every write, as the real
 * server's admission plugin does, once enforceAdmissionPolicies(store) is called (the
 * kubernetes tests' harness does, with k8s/base/admission-policy.yaml created in the
 * store). The CEL is evaluated by @marcbachmann/cel-js; what is hand-written here is the
 * plugin's dispatch, which no library implements:
 *
 *   matching      a binding applies when its policy exists and both the policy's
 *                 matchConstraints and the binding's matchResources match: resourceRules
 *                 (apiGroups, apiVersions, resources with `*`, `pods/status`, `pods/*`,
 *                 resourceNames, operations, scope), excludeResourceRules,
 *                 namespaceSelector (on the namespace's labels, which here are
 *                 kubernetes.io/metadata.name only) and objectSelector; then every
 *                 matchCondition must be true
 *   variables     object, oldObject (null on CREATE), request (kind, resource,
 *                 subResource, name, namespace, operation, userInfo, dryRun),
 *                 namespaceObject, params (always null: paramKind is not simulated, and a
 *                 policy with one is refused when compiled), `variables` in order.
 *                 `authorizer` is not declared: an expression using it does not compile.
 *                 JSON integers are CEL ints, other numbers doubles, as the server types
 *                 them. Variables are evaluated eagerly, in order (the server evaluates
 *                 each when first used): here a variable that fails fails the policy even
 *                 when no expression uses it
 *   validations   false: the message is messageExpression's (when it evaluates to a
 *                 non-empty string), else `message`, else `failed expression: EXPR`; an
 *                 error in an expression is `expression 'EXPR' resulted in error: ERR`
 *                 and, like a compile error, is applied per failurePolicy (Fail, the
 *                 default: a denial; Ignore: the policy is skipped)
 *   denial        with Deny in the binding's validationActions (Warn and Audit are not
 *                 simulated: nothing is reported), the first failure answers as the real
 *                 server does: code from the validation's reason (Invalid, the default:
 *                 422; Forbidden 403; Unauthorized 401; RequestEntityTooLarge 413),
 *                 message `<resource> "<name>" is forbidden: ValidatingAdmissionPolicy
 *                 '<policy>' with binding '<binding>' denied request: <message>`, that
 *                 last part also as the Status's one cause
 *
 * compilePolicy() (admission-policy-compile.ts) compiles every expression of a policy (parse and type check), reporting
 * all failures with their field paths: test/unit/admission-policy.test.ts fails on a
 * policy in k8s/ that does not compile.
 */
import { apiError, type KubeObject, type KubeApiError } from '../objects/meta.js';
import { qualifiedResource, type ResourceType } from '../objects/resources.js';
import { matchesLabels, type LabelRequirement } from '../objects/selectors.js';
import type { AdmissionAttributes } from './admission.js';
import {
  compilePolicy,
  firstLine,
  PolicyCompileError,
  type AdmissionPolicy,
  type AdmissionPolicyBinding,
  type CompiledExpression,
  type CompiledPolicy,
  type LabelSelector,
  type MatchResources,
  type ResourceRule,
} from './admission-policy-compile.js';
import type { FakeKubeStore } from './store.js';

export {
  compilePolicy,
  PolicyCompileError,
  type AdmissionPolicy,
  type AdmissionPolicyBinding,
} from './admission-policy-compile.js';

// ---------------------------------------------------------------------------------------
// Matching

function selectorRequirements(sel: LabelSelector): LabelRequirement[] {
  const reqs: LabelRequirement[] = Object.entries(sel.matchLabels ?? {}).map(([key, v]) => ({
    key,
    op: 'eq',
    values: [v],
  }));
  for (const e of sel.matchExpressions ?? []) {
    const op = { In: 'in', NotIn: 'notin', Exists: 'exists', DoesNotExist: 'notexists' }[
      e.operator
    ] as LabelRequirement['op'] | undefined;
    if (!op)
      throw new Error(
        `label selector operator ${e.operator} is not one of In, NotIn, Exists, DoesNotExist`,
      );
    reqs.push({ key: e.key, op, values: e.values ?? [] });
  }
  return reqs;
}

const anyOf = (list: string[] | undefined, value: string): boolean =>
  (list ?? []).some((x) => x === '*' || x === value);

function resourceMatches(
  patterns: string[] | undefined,
  rt: ResourceType,
  sub: string | undefined,
): boolean {
  return (patterns ?? []).some((p) => {
    const [res, subPattern] = p.split('/', 2) as [string, string | undefined];
    if (res !== '*' && res !== rt.resource) return false;
    if (subPattern === undefined) return sub === undefined;
    return subPattern === '*' || subPattern === sub;
  });
}

function ruleMatches(rule: ResourceRule, a: AdmissionAttributes): boolean {
  const scope = rule.scope ?? '*';
  return (
    anyOf(rule.operations, a.operation) &&
    anyOf(rule.apiGroups, a.rt.group) &&
    anyOf(rule.apiVersions, a.rt.version) &&
    resourceMatches(rule.resources, a.rt, a.subresource) &&
    (!rule.resourceNames?.length || rule.resourceNames.includes(a.object.metadata.name ?? '')) &&
    (scope === '*' || (scope === 'Namespaced') === a.rt.namespaced)
  );
}

/** Whether m selects the write; resourceRules absent (a binding's) select everything. */
function matchesResources(m: MatchResources | undefined, a: AdmissionAttributes): boolean {
  if (!m) return true;
  const ns = a.object.metadata.namespace;
  if (m.namespaceSelector && a.rt.namespaced && ns !== undefined) {
    const labels = { 'kubernetes.io/metadata.name': ns };
    if (!matchesLabels(selectorRequirements(m.namespaceSelector), labels)) return false;
  }
  if (m.objectSelector) {
    const reqs = selectorRequirements(m.objectSelector);
    const own = (o: KubeObject | undefined) =>
      o !== undefined && matchesLabels(reqs, o.metadata.labels);
    if (!own(a.object) && !own(a.oldObject)) return false;
  }
  if (m.resourceRules && !m.resourceRules.some((r) => ruleMatches(r, a))) return false;
  return !(m.excludeResourceRules ?? []).some((r) => ruleMatches(r, a));
}

// ---------------------------------------------------------------------------------------
// Evaluating

/** JSON as the server's CEL sees it: integers are ints (bigint in cel-js). */
function celValue(v: unknown): unknown {
  if (typeof v === 'number') return Number.isInteger(v) ? BigInt(v) : v;
  if (Array.isArray(v)) return v.map(celValue);
  if (v !== null && typeof v === 'object')
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, celValue(x)]));
  return v;
}

function requestOf(a: AdmissionAttributes): Record<string, unknown> {
  const { rt } = a;
  return {
    kind: { group: rt.group, version: rt.version, kind: rt.kind },
    resource: { group: rt.group, version: rt.version, resource: rt.resource },
    ...(a.subresource ? { subResource: a.subresource } : {}),
    name: a.object.metadata.name ?? '',
    namespace: a.object.metadata.namespace ?? '',
    operation: a.operation,
    userInfo: { username: a.user.username, groups: [...a.user.groups] },
    dryRun: false,
  };
}

/** A failure of one policy for one write: a message, or why an expression failed. */
type Outcome =
  | { kind: 'admit' }
  | { kind: 'excluded' }
  | { kind: 'deny'; message: string; reason: string }
  | { kind: 'error'; message: string };

function run(
  e: CompiledExpression,
  ctx: Record<string, unknown>,
): { value: unknown } | { error: string } {
  try {
    return { value: e.run(ctx) };
  } catch (err) {
    return { error: `expression '${e.source}' resulted in error: ${firstLine(err)}` };
  }
}

function evaluate(p: CompiledPolicy, a: AdmissionAttributes): Outcome {
  const ns = a.object.metadata.namespace;
  const ctx: Record<string, unknown> = {
    object: celValue(a.object),
    oldObject: a.oldObject ? celValue(a.oldObject) : null,
    request: celValue(requestOf(a)),
    params: null,
    namespaceObject:
      ns === undefined
        ? null
        : { metadata: { name: ns, labels: { 'kubernetes.io/metadata.name': ns } } },
  };
  for (const c of p.matchConditions) {
    const r = run(c, { ...ctx, variables: {} });
    if ('error' in r) return { kind: 'error', message: r.error };
    if (r.value !== true) return { kind: 'excluded' };
  }
  const variables: Record<string, unknown> = {};
  for (const v of p.variables) {
    const r = run(v, { ...ctx, variables });
    if ('error' in r) return { kind: 'error', message: r.error };
    variables[v.name] = r.value;
  }
  const full = { ...ctx, variables };
  for (const v of p.validations) {
    const r = run(v.expression, full);
    if ('error' in r) return { kind: 'error', message: r.error };
    if (r.value === true) continue;
    if (r.value !== false)
      return {
        kind: 'error',
        message: `expression '${v.expression.source}' resulted in error: not a bool`,
      };
    let message = v.message ?? `failed expression: ${v.expression.source}`;
    if (v.messageExpression) {
      const m = run(v.messageExpression, full);
      if ('value' in m && typeof m.value === 'string' && m.value.trim() !== '') message = m.value;
    }
    return { kind: 'deny', message, reason: v.reason };
  }
  return { kind: 'admit' };
}

const CODES: Record<string, number> = {
  Invalid: 422,
  Forbidden: 403,
  Unauthorized: 401,
  RequestEntityTooLarge: 413,
};

function denial(
  a: AdmissionAttributes,
  policy: string,
  binding: string,
  message: string,
  reason: string,
): KubeApiError {
  const why = `ValidatingAdmissionPolicy '${policy}' with binding '${binding}' denied request: ${message}`;
  const name = a.object.metadata.name ?? '';
  return apiError(
    CODES[reason] ?? 422,
    `${qualifiedResource(a.rt)} "${name}" is forbidden: ${why}`,
    reason,
    { name, group: a.rt.group, kind: a.rt.resource, causes: [{ message: why }] },
  );
}

// ---------------------------------------------------------------------------------------
// The plugin

/**
 * Enforce the ValidatingAdmissionPolicies and bindings in store on its writes from now
 * on (each write reads them anew, so creating or deleting one takes effect at once).
 * Returns the removal.
 */
/** What a binding decided about one write (enforceAdmissionPolicies' onDecision). */
export interface AdmissionDecision {
  operation: 'CREATE' | 'UPDATE';
  resource: string;
  namespace: string | undefined;
  name: string;
  username: string;
  policy: string;
  binding: string;
  /** admitted: every validation held; excluded: a matchCondition was false. */
  decision: 'admitted' | 'excluded' | 'denied' | 'ignored';
  /** Why it was denied (or, ignored, the error failurePolicy Ignore let through). */
  message?: string;
}

export function enforceAdmissionPolicies(
  store: FakeKubeStore,
  opts: { onDecision?: (d: AdmissionDecision) => void } = {},
): () => void {
  const cache = new Map<
    string,
    { version: string; compiled: CompiledPolicy | PolicyCompileError }
  >();
  const compiled = (p: AdmissionPolicy): CompiledPolicy | PolicyCompileError => {
    const key = p.metadata.uid ?? p.metadata.name ?? '';
    const version = p.metadata.resourceVersion ?? '';
    const hit = cache.get(key);
    if (hit && hit.version === version) return hit.compiled;
    let c: CompiledPolicy | PolicyCompileError;
    try {
      c = compilePolicy(p);
    } catch (err) {
      if (!(err instanceof PolicyCompileError)) throw err;
      c = err;
    }
    cache.set(key, { version, compiled: c });
    return c;
  };
  return store.validating.add((a) => {
    if (a.rt.group === 'admissionregistration.k8s.io') return;
    const policies = new Map(
      store
        .list<AdmissionPolicy>('validatingadmissionpolicies')
        .map((p) => [p.metadata.name ?? '', p]),
    );
    for (const b of store.list<AdmissionPolicyBinding>('validatingadmissionpolicybindings')) {
      const policy = policies.get(b.spec.policyName);
      if (!policy) continue; // a binding whose policy does not exist is ignored
      if (!matchesResources(policy.spec.matchConstraints ?? { resourceRules: [] }, a)) continue;
      if (!matchesResources(b.spec.matchResources, a)) continue;
      const c = compiled(policy);
      const outcome: Outcome =
        c instanceof PolicyCompileError ? { kind: 'error', message: c.message } : evaluate(c, a);
      const report = (decision: AdmissionDecision['decision'], message?: string): void =>
        opts.onDecision?.({
          operation: a.operation,
          resource: a.rt.resource,
          namespace: a.object.metadata.namespace,
          name: a.object.metadata.name ?? '',
          username: a.user.username,
          policy: policy.metadata.name ?? '',
          binding: b.metadata.name ?? '',
          decision,
          ...(message === undefined ? {} : { message }),
        });
      if (outcome.kind === 'admit' || outcome.kind === 'excluded') {
        report(outcome.kind === 'admit' ? 'admitted' : 'excluded');
        continue;
      }
      const failurePolicy =
        c instanceof PolicyCompileError ? (policy.spec.failurePolicy ?? 'Fail') : c.failurePolicy;
      if (
        (outcome.kind === 'error' && failurePolicy === 'Ignore') ||
        !(b.spec.validationActions ?? []).includes('Deny')
      ) {
        report('ignored', outcome.message);
        continue;
      }
      report('denied', outcome.message);
      throw denial(
        a,
        policy.metadata.name ?? '',
        b.metadata.name ?? '',
        outcome.message,
        outcome.kind === 'deny' ? outcome.reason : 'Invalid',
      );
    }
  });
}
