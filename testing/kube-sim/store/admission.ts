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
