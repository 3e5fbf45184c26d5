/**
 * Admission on the store's writes: what the API server checks between the request and
 * defaulting, besides the hooks tests add with FakeKubeStore.addAdmission().
 *
 * - Priority (pods, on create): a pod naming a priorityClassName gets that class's value
 *   as spec.priority; a class that does not exist is 403 Forbidden with the real message
 *   (`pods "x" is forbidden: no PriorityClass with name y was found`).
 * - Immutable fields (on update): a Job's selector, completionMode, podFailurePolicy,
 *   completions (non-indexed) and template (unless it is suspended and never started); a
 *   Pod's spec beyond container images, activeDeadlineSeconds and tolerations; a
 *   Service's clusterIP once set; the data of an immutable Secret or ConfigMap. Changes
 *   are 422 Invalid, one cause per field.
 * - Validating admission (FakeKubeStore.validating): checks that run where
 *   the real server runs its validating admission, after defaulting and validation, and
 *   see who asked (ValidatingAdmission). admission-policy.ts enforces
 *   ValidatingAdmissionPolicies with one.
 */
import {
  type Dict,
  type KubeObject,
  type StatusCause,
  asDict,
  asList,
  clone,
  deepEqual,
} from '../objects/meta.js';
import { type ResourceType, forbidden, invalid } from '../objects/resources.js';

/** A check on a write; throw a KubeApiError to refuse it. */
export type Admission = (
  op: 'create' | 'update',
  rt: ResourceType,
  obj: KubeObject,
  old?: KubeObject,
) => void;

/** Who made a request, as admission sees it (the AdmissionRequest's userInfo). */
export interface UserInfo {
  username: string;
  groups: string[];
}

/**
 * Whom a write made in-process is attributed to: the controllers that write that way (the
 * Job controller's pods, the kubelet's status), as kube-controller-manager's Job
 * controller with --use-service-account-credentials.
 */
export const IN_PROCESS_USER: Readonly<UserInfo> = {
  username: 'system:serviceaccount:kube-system:job-controller',
  groups: ['system:serviceaccounts', 'system:serviceaccounts:kube-system', 'system:authenticated'],
};

/** What a validating admission check sees of a write. */
export interface AdmissionAttributes {
  operation: 'CREATE' | 'UPDATE';
  rt: ResourceType;
  /** `status` for a write of the status subresource. */
  subresource?: 'status';
  /** The object as it would be stored: defaulted and valid. */
  object: KubeObject;
  /** The stored object an update replaces. */
  oldObject: KubeObject | undefined;
  user: UserInfo;
}

/** A validating admission check; throw a KubeApiError to refuse the write. */
export type ValidatingAdmission = (a: AdmissionAttributes) => void;

/** Whom a token the server does not know otherwise authenticates as: an administrator. */
export const DEFAULT_USER: Readonly<UserInfo> = {
  username: 'system:admin',
  groups: ['system:masters', 'system:authenticated'],
};

/**
 * The store's validating admission: the checks, and who the write in progress is for
 * (asUser; the API server sets it for each request, whose writes are synchronous, and an
 * in-process write is IN_PROCESS_USER's).
 */
export class ValidatingChecks {
  private readonly checks: ValidatingAdmission[] = [];
  private user: UserInfo | undefined;

  /** Add a check, run on every external write after defaulting and validation. */
  add(fn: ValidatingAdmission): () => void {
    this.checks.push(fn);
    return () => {
      const i = this.checks.indexOf(fn);
      if (i >= 0) this.checks.splice(i, 1);
    };
  }

  /** Run fn's writes as made by user. */
  asUser<T>(user: UserInfo, fn: () => T): T {
    const before = this.user;
    this.user = user;
    try {
      return fn();
    } finally {
      this.user = before;
    }
  }

  /** Run the checks on a write (subresource: the replace's, `all` being in-process). */
  run(a: Omit<AdmissionAttributes, 'user' | 'subresource'> & { subresource?: string }): void {
    const { subresource, ...rest } = a;
    const write: AdmissionAttributes = {
      ...rest,
      ...(subresource === 'status' ? { subresource } : {}),
      object: clone(a.object),
      oldObject: a.oldObject && clone(a.oldObject),
      user: this.user ?? IN_PROCESS_USER,
    };
    for (const fn of this.checks) fn(write);
  }
}

/** The Priority admission plugin; `priorityClass` looks a PriorityClass up by name. */
export function admitPriority(
  op: 'create' | 'update',
  rt: ResourceType,
  obj: KubeObject,
  name: string,
  priorityClass: (name: string) => KubeObject | undefined,
): void {
  if (rt.resource === 'pods' && op === 'create') {
    const spec = asDict(obj['spec']);
    const pcName = spec['priorityClassName'];
    if (typeof pcName === 'string' && pcName) {
      const pc = priorityClass(pcName);
      if (!pc) throw forbidden(rt, name, `no PriorityClass with name ${pcName} was found`);
      spec['priority'] = typeof pc['value'] === 'number' ? pc['value'] : 0;
    }
  }
}

/** Refuse an update (obj over cur) that changes a field the real API server keeps fixed. */
export function checkImmutable(rt: ResourceType, obj: KubeObject, cur: KubeObject): void {
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
