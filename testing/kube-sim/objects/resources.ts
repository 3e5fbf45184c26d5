/**
 * The resource types the fake API server serves (plural name, group, version, kind,
 * namespaced, status subresource), how the real server names them in messages, and the
 * errors it answers about one object of a type (NotFound, AlreadyExists, Conflict,
 * Invalid, Forbidden) with the real server's reasons, messages and details.
 */
import { type StatusCause, type KubeApiError, apiError } from './meta.js';

/** The finalizer the Job controller tracks its pods with until it has counted them. */
export const JOB_TRACKING_FINALIZER = 'batch.kubernetes.io/job-tracking';
/** The finalizer an owner carries while its dependents go first (propagationPolicy Foreground). */
export const FOREGROUND_FINALIZER = 'foregroundDeletion';
/** The extended resource a GPU is requested as. */
export const GPU_RESOURCE = 'nvidia.com/gpu';

export interface ResourceType {
  /** Plural, as in the URL: `jobs`, `pods`. The store's key for the type. */
  resource: string;
  group: string;
  version: string;
  kind: string;
  namespaced: boolean;
  /** Has a status subresource (main-resource writes ignore status, /status writes only status). */
  hasStatus: boolean;
}

export const RESOURCE_TYPES: readonly ResourceType[] = [
  { resource: 'pods', group: '', version: 'v1', kind: 'Pod', namespaced: true, hasStatus: true },
  {
    resource: 'services',
    group: '',
    version: 'v1',
    kind: 'Service',
    namespaced: true,
    hasStatus: true,
  },
  {
    resource: 'secrets',
    group: '',
    version: 'v1',
    kind: 'Secret',
    namespaced: true,
    hasStatus: false,
  },
  {
    resource: 'configmaps',
    group: '',
    version: 'v1',
    kind: 'ConfigMap',
    namespaced: true,
    hasStatus: false,
  },
  {
    resource: 'persistentvolumeclaims',
    group: '',
    version: 'v1',
    kind: 'PersistentVolumeClaim',
    namespaced: true,
    hasStatus: true,
  },
  {
    resource: 'events',
    group: '',
    version: 'v1',
    kind: 'Event',
    namespaced: true,
    hasStatus: false,
  },
  {
    resource: 'serviceaccounts',
    group: '',
    version: 'v1',
    kind: 'ServiceAccount',
    namespaced: true,
    hasStatus: false,
  },
  { resource: 'nodes', group: '', version: 'v1', kind: 'Node', namespaced: false, hasStatus: true },
  {
    resource: 'jobs',
    group: 'batch',
    version: 'v1',
    kind: 'Job',
    namespaced: true,
    hasStatus: true,
  },
  {
    resource: 'leases',
    group: 'coordination.k8s.io',
    version: 'v1',
    kind: 'Lease',
    namespaced: true,
    hasStatus: false,
  },
  {
    resource: 'priorityclasses',
    group: 'scheduling.k8s.io',
    version: 'v1',
    kind: 'PriorityClass',
    namespaced: false,
    hasStatus: false,
  },
  {
    resource: 'validatingadmissionpolicies',
    group: 'admissionregistration.k8s.io',
    version: 'v1',
    kind: 'ValidatingAdmissionPolicy',
    namespaced: false,
    hasStatus: true,
  },
  {
    resource: 'validatingadmissionpolicybindings',
    group: 'admissionregistration.k8s.io',
    version: 'v1',
    kind: 'ValidatingAdmissionPolicyBinding',
    namespaced: false,
    hasStatus: false,
  },
  {
    resource: 'deployments',
    group: 'apps',
    version: 'v1',
    kind: 'Deployment',
    namespaced: true,
    hasStatus: true,
  },
  {
    resource: 'statefulsets',
    group: 'apps',
    version: 'v1',
    kind: 'StatefulSet',
    namespaced: true,
    hasStatus: true,
  },
];

export function apiVersionOf(rt: ResourceType): string {
  return rt.group ? `${rt.group}/${rt.version}` : rt.version;
}

/** `jobs.batch`, `pods`: how the API server names a resource in messages. */
export function qualifiedResource(rt: ResourceType): string {
  return rt.group ? `${rt.resource}.${rt.group}` : rt.resource;
}

/** `Job.batch`, `Pod`: how the API server names a kind in validation messages. */
export function qualifiedKind(rt: ResourceType): string {
  return rt.group ? `${rt.kind}.${rt.group}` : rt.kind;
}

export function notFound(rt: ResourceType, name: string): KubeApiError {
  return apiError(404, `${qualifiedResource(rt)} "${name}" not found`, 'NotFound', {
    name,
    group: rt.group,
    kind: rt.resource,
  });
}

export function alreadyExists(rt: ResourceType, name: string): KubeApiError {
  return apiError(409, `${qualifiedResource(rt)} "${name}" already exists`, 'AlreadyExists', {
    name,
    group: rt.group,
    kind: rt.resource,
  });
}

export function conflict(rt: ResourceType, name: string): KubeApiError {
  return apiError(
    409,
    `Operation cannot be fulfilled on ${qualifiedResource(rt)} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
    'Conflict',
    { name, group: rt.group, kind: rt.resource },
  );
}

export function invalid(rt: ResourceType, name: string, causes: StatusCause[]): KubeApiError {
  const parts = causes.map((c) => `${c.field ? `${c.field}: ` : ''}${c.message ?? ''}`);
  const list = parts.length === 1 ? parts[0] : `[${parts.join(', ')}]`;
  return apiError(422, `${qualifiedKind(rt)} "${name}" is invalid: ${list}`, 'Invalid', {
    name,
    group: rt.group,
    kind: rt.kind,
    causes,
  });
}

export function forbidden(rt: ResourceType, name: string, why: string): KubeApiError {
  return apiError(403, `${qualifiedResource(rt)} "${name}" is forbidden: ${why}`, 'Forbidden', {
    name,
    group: rt.group,
    kind: rt.resource,
  });
}
