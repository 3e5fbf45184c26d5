/**
 * The shapes of ValidatingAdmissionPolicies and their bindings (the fields the simulated
 * API server uses), and their compilation: every expression parsed and type-checked by
 * @marcbachmann/cel-js in the environment the server gives a policy (object, oldObject,
 * request, params, namespaceObject, variables; no `authorizer`). admission-policy.ts
 * evaluates and enforces them.
 */
import { Environment, type ParseResult } from '@marcbachmann/cel-js';
import type { KubeObject } from '../objects/meta.js';

// ---------------------------------------------------------------------------------------
// The API's shapes (the fields used here)

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: string; values?: string[] }[];
}

export interface ResourceRule {
  apiGroups?: string[];
  apiVersions?: string[];
  resources?: string[];
  resourceNames?: string[];
  operations?: string[];
  scope?: string;
}

export interface MatchResources {
  namespaceSelector?: LabelSelector;
  objectSelector?: LabelSelector;
  resourceRules?: ResourceRule[];
  excludeResourceRules?: ResourceRule[];
}

export interface Validation {
  expression: string;
  message?: string;
  messageExpression?: string;
  reason?: string;
}

export interface AdmissionPolicy extends KubeObject {
  spec: {
    failurePolicy?: 'Fail' | 'Ignore';
    paramKind?: unknown;
    matchConstraints?: MatchResources;
    matchConditions?: { name: string; expression: string }[];
    variables?: { name: string; expression: string }[];
    validations?: Validation[];
  };
}

export interface AdmissionPolicyBinding extends KubeObject {
  spec: {
    policyName: string;
    validationActions?: string[];
    matchResources?: MatchResources;
    paramRef?: unknown;
  };
}

// ---------------------------------------------------------------------------------------
// Compiling

/** One expression of a policy, compiled: `where` is its field path in the policy. */
export interface CompiledExpression {
  where: string;
  source: string;
  run: ParseResult;
}

export interface CompiledPolicy {
  name: string;
  failurePolicy: 'Fail' | 'Ignore';
  matchConditions: (CompiledExpression & { name: string })[];
  variables: (CompiledExpression & { name: string })[];
  validations: {
    expression: CompiledExpression;
    messageExpression: CompiledExpression | undefined;
    message: string | undefined;
    reason: string;
  }[];
}

/** Every expression of the policy that does not compile, with its path and the error. */
export class PolicyCompileError extends Error {
  constructor(
    readonly policy: string,
    readonly problems: string[],
  ) {
    super(`ValidatingAdmissionPolicy ${policy}: ${problems.join('; ')}`);
    this.name = 'PolicyCompileError';
  }
}

/** The environment the server gives a policy's expressions, as far as it is simulated. */
function policyEnvironment(): Environment {
  return new Environment({ homogeneousAggregateLiterals: false })
    .registerVariable('object', 'dyn')
    .registerVariable('oldObject', 'dyn')
    .registerVariable('request', 'dyn')
    .registerVariable('params', 'dyn')
    .registerVariable('namespaceObject', 'dyn')
    .registerVariable('variables', 'dyn');
}

/**
 * Compile every expression of policy (parse + type check); a PolicyCompileError lists all
 * that fail, and a matchCondition or validation whose type is not bool, or a
 * messageExpression whose type is not string, fails too.
 */
export function compilePolicy(policy: AdmissionPolicy): CompiledPolicy {
  const env = policyEnvironment();
  const problems: string[] = [];
  const name = policy.metadata.name ?? '';
  if (policy.spec.paramKind !== undefined)
    problems.push('spec.paramKind: parameters are not simulated');
  const compile = (
    where: string,
    source: string,
    want: 'bool' | 'string' | null,
  ): CompiledExpression => {
    const fail = (why: string): CompiledExpression => {
      problems.push(`${where}: ${why}`);
      return { where, source, run: (() => undefined) as unknown as ParseResult };
    };
    let run: ParseResult;
    try {
      run = env.parse(source);
    } catch (err) {
      return fail(`does not parse: ${firstLine(err)}`);
    }
    const checked = run.check();
    if (!checked.valid) return fail(`does not type-check: ${firstLine(checked.error)}`);
    if (want && checked.type !== want && checked.type !== 'dyn')
      return fail(`is ${checked.type ?? 'untyped'}, not ${want}`);
    return { where, source, run };
  };
  const compiled: CompiledPolicy = {
    name,
    failurePolicy: policy.spec.failurePolicy ?? 'Fail',
    matchConditions: (policy.spec.matchConditions ?? []).map((c, i) => ({
      name: c.name,
      ...compile(`spec.matchConditions[${i}].expression`, c.expression, 'bool'),
    })),
    variables: (policy.spec.variables ?? []).map((v, i) => ({
      name: v.name,
      ...compile(`spec.variables[${i}].expression`, v.expression, null),
    })),
    validations: (policy.spec.validations ?? []).map((v, i) => ({
      expression: compile(`spec.validations[${i}].expression`, v.expression, 'bool'),
      messageExpression:
        v.messageExpression === undefined
          ? undefined
          : compile(`spec.validations[${i}].messageExpression`, v.messageExpression, 'string'),
      message: v.message,
      reason: v.reason ?? 'Invalid',
    })),
  };
  if (problems.length) throw new PolicyCompileError(name, problems);
  return compiled;
}

export function firstLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.split('\n')[0] ?? text;
}
