/**
 * Schema validation: each kind the store serves checked against the Kubernetes OpenAPI
 * schema that kubernetes-models generates from (wrong types, unknown enum values,
 * missing required fields). schemaCauses() turns the schema errors into Status causes
 * with the field path the API server would name (`spec.template.spec.containers[0].name`).
 */
import { Pod } from 'kubernetes-models/v1/Pod';
import { Service } from 'kubernetes-models/v1/Service';
import { Secret } from 'kubernetes-models/v1/Secret';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { PersistentVolumeClaim } from 'kubernetes-models/v1/PersistentVolumeClaim';
import { Event } from 'kubernetes-models/v1/Event';
import { Node } from 'kubernetes-models/v1/Node';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { Job } from 'kubernetes-models/batch/v1/Job';
import { Lease } from 'kubernetes-models/coordination.k8s.io/v1/Lease';
import { PriorityClass } from 'kubernetes-models/scheduling.k8s.io/v1/PriorityClass';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { ValidatingAdmissionPolicy } from 'kubernetes-models/admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy';
import { ValidatingAdmissionPolicyBinding } from 'kubernetes-models/admissionregistration.k8s.io/v1/ValidatingAdmissionPolicyBinding';

const MODEL_VALIDATORS: Record<string, (o: unknown) => void> = {
  Pod: (o) => new Pod(o as ConstructorParameters<typeof Pod>[0]).validate(),
  Service: (o) => new Service(o as ConstructorParameters<typeof Service>[0]).validate(),
  Secret: (o) => new Secret(o as ConstructorParameters<typeof Secret>[0]).validate(),
  ConfigMap: (o) => new ConfigMap(o as ConstructorParameters<typeof ConfigMap>[0]).validate(),
  PersistentVolumeClaim: (o) =>
    new PersistentVolumeClaim(
      o as ConstructorParameters<typeof PersistentVolumeClaim>[0],
    ).validate(),
  Event: (o) => new Event(o as ConstructorParameters<typeof Event>[0]).validate(),
  Node: (o) => new Node(o as ConstructorParameters<typeof Node>[0]).validate(),
  ServiceAccount: (o) =>
    new ServiceAccount(o as ConstructorParameters<typeof ServiceAccount>[0]).validate(),
  Job: (o) => new Job(o as ConstructorParameters<typeof Job>[0]).validate(),
  Lease: (o) => new Lease(o as ConstructorParameters<typeof Lease>[0]).validate(),
  PriorityClass: (o) =>
    new PriorityClass(o as ConstructorParameters<typeof PriorityClass>[0]).validate(),
  Deployment: (o) => new Deployment(o as ConstructorParameters<typeof Deployment>[0]).validate(),
  StatefulSet: (o) => new StatefulSet(o as ConstructorParameters<typeof StatefulSet>[0]).validate(),
  ValidatingAdmissionPolicy: (o) =>
    new ValidatingAdmissionPolicy(
      o as ConstructorParameters<typeof ValidatingAdmissionPolicy>[0],
    ).validate(),
  ValidatingAdmissionPolicyBinding: (o) =>
    new ValidatingAdmissionPolicyBinding(
      o as ConstructorParameters<typeof ValidatingAdmissionPolicyBinding>[0],
    ).validate(),
};

/**
 * Where obj breaks its kind's schema: one `{field, message}` per schema error, none when it
 * conforms or the kind has no schema here. An error that is not a schema error is thrown.
 */
export function schemaCauses(kind: string, obj: unknown): { field: string; message: string }[] {
  const v = MODEL_VALIDATORS[kind];
  if (!v) return [];
  try {
    v(obj);
    return [];
  } catch (err) {
    const errors = (err as { errors?: { instancePath?: string; message?: string }[] }).errors;
    if (!errors) throw err;
    return errors.map((e) => {
      const field = (e.instancePath ?? '')
        .replace(/^\//, '')
        .replace(/\/(\d+)(?=\/|$)/g, '[$1]')
        .replace(/\//g, '.');
      return { field: field || '<root>', message: `Invalid value: ${e.message ?? 'invalid'}` };
    });
  }
}
