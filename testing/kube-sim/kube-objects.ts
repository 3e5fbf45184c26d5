/**
 * Building blocks of the fake Kubernetes API server: object and Status shapes, the
 * resource table, label/field selectors, merge / strategic-merge / JSON patches.
 * Behaviour follows the real API server closely enough that a backend written against
 * the fake works against a cluster (same status codes, reasons and message formats).
 */
import { randomUUID } from 'node:crypto';

// ---------------------------------------------------------------------------------------
// Object shapes (JSON, as on the wire)

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

export interface ObjectMeta {
  name?: string;
  generateName?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  deletionGracePeriodSeconds?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: OwnerReference[];
  finalizers?: string[];
  [key: string]: unknown;
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  [key: string]: unknown;
}

export interface StatusCause {
  reason?: string;
  message?: string;
  field?: string;
}

/** meta/v1 Status, the body of every error response (and of some deletes). */
export interface KubeStatus {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, unknown>;
  status: 'Success' | 'Failure';
  message?: string;
  reason?: string;
  details?: {
    name?: string;
    group?: string;
    kind?: string;
    uid?: string;
    causes?: StatusCause[];
    retryAfterSeconds?: number;
  };
  code: number;
}

/** A request the API server refuses: carries the Status it answers with. */
export class KubeApiError extends Error {
  readonly status: KubeStatus;
  constructor(status: KubeStatus) {
    super(status.message ?? status.reason ?? `HTTP ${status.code}`);
    this.name = 'KubeApiError';
    this.status = status;
  }
  get code(): number {
    return this.status.code;
  }
}

const REASONS: Record<number, string> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  405: 'MethodNotAllowed',
  409: 'Conflict',
  410: 'Expired',
  415: 'UnsupportedMediaType',
  422: 'Invalid',
  429: 'TooManyRequests',
  500: 'InternalError',
  503: 'ServiceUnavailable',
  504: 'Timeout',
};

export function statusBody(
  code: number,
  message?: string,
  reason?: string,
  details?: KubeStatus['details'],
): KubeStatus {
  const s: KubeStatus = {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: code < 400 ? 'Success' : 'Failure',
    code,
  };
  const msg =
    message ??
    (code === 429
      ? 'Too many requests, please try again later.'
      : code === 503
        ? 'the server is currently unable to handle the request'
        : code === 500
          ? 'an error on the server ("fake apiserver: injected fault") has prevented the request from succeeding'
          : undefined);
  if (msg !== undefined) s.message = msg;
  const r = reason ?? REASONS[code];
  if (r !== undefined) s.reason = r;
  if (details !== undefined) s.details = details;
  return s;
}

export function apiError(
  code: number,
  message?: string,
  reason?: string,
  details?: KubeStatus['details'],
): KubeApiError {
  return new KubeApiError(statusBody(code, message, reason, details));
}

// ---------------------------------------------------------------------------------------
// Resources

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

// ---------------------------------------------------------------------------------------
// Small helpers

export function clone<T>(v: T): T {
  return structuredClone(v);
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    return a.every((x, i) => deepEqual(x, b[i]));
  }
  if (isPlainObject(a)) {
    if (!isPlainObject(b)) return false;
    const ka = Object.keys(a).filter((k) => a[k] !== undefined);
    const kb = Object.keys(b).filter((k) => b[k] !== undefined);
    if (ka.length !== kb.length) return false;
    return ka.every((k) => deepEqual(a[k], b[k]));
  }
  return false;
}

/** RFC 3339 at second precision, as the API server writes metav1.Time. */
export function kubeTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

const NAME_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789';
export function randomSuffix(n = 5): string {
  let s = '';
  for (let i = 0; i < n; i++) s += NAME_ALPHABET[Math.floor(Math.random() * NAME_ALPHABET.length)];
  return s;
}

export function newUid(): string {
  return randomUUID();
}

/** Read a dotted path (`status.phase`, `metadata.name`) from an object. */
export function getPath(obj: unknown, path: string): unknown {
  let cur: unknown = obj;
  for (const part of path.split('.')) {
    if (!isPlainObject(cur)) return undefined;
    cur = cur[part];
  }
  return cur;
}

// ---------------------------------------------------------------------------------------
// Selectors

export type LabelOp = 'eq' | 'neq' | 'in' | 'notin' | 'exists' | 'notexists';
export interface LabelRequirement {
  key: string;
  op: LabelOp;
  values: string[];
}

const KEY = String.raw`[A-Za-z0-9](?:[-A-Za-z0-9_./]*[A-Za-z0-9])?`;
const VALUE = String.raw`(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?`;

function splitTopLevel(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out.map((p) => p.trim()).filter((p) => p.length > 0);
}

/** Parse `a=b,c!=d,e in (f,g),h notin (i),j,!k`; a bad selector is a 400 like the real one. */
export function parseLabelSelector(s: string | null | undefined): LabelRequirement[] {
  if (!s) return [];
  const reqs: LabelRequirement[] = [];
  for (const part of splitTopLevel(s)) {
    let m: RegExpMatchArray | null;
    if ((m = part.match(new RegExp(`^!\\s*(${KEY})$`)))) {
      reqs.push({ key: m[1]!, op: 'notexists', values: [] });
    } else if ((m = part.match(new RegExp(`^(${KEY})\\s+(in|notin)\\s*\\((.*)\\)$`)))) {
      const values = m[3]!
        .split(',')
        .map((v) => v.trim())
        .filter((v) => v.length > 0);
      if (!values.every((v) => new RegExp(`^${VALUE}$`).test(v)))
        throw apiError(400, `unable to parse requirement: invalid label value in "${part}"`);
      reqs.push({ key: m[1]!, op: m[2] === 'in' ? 'in' : 'notin', values });
    } else if ((m = part.match(new RegExp(`^(${KEY})\\s*(==|=|!=)\\s*(${VALUE})$`)))) {
      reqs.push({ key: m[1]!, op: m[2] === '!=' ? 'neq' : 'eq', values: [m[3]!] });
    } else if ((m = part.match(new RegExp(`^(${KEY})$`)))) {
      reqs.push({ key: m[1]!, op: 'exists', values: [] });
    } else {
      throw apiError(
        400,
        `unable to parse requirement: found '${part}', expected a label requirement`,
      );
    }
  }
  return reqs;
}

export function matchesLabels(
  reqs: readonly LabelRequirement[],
  labels: Record<string, string> | undefined,
): boolean {
  const l = labels ?? {};
  return reqs.every((r) => {
    const has = Object.prototype.hasOwnProperty.call(l, r.key);
    const v = l[r.key];
    switch (r.op) {
      case 'eq':
        return has && v === r.values[0];
      case 'neq':
        return !has || v !== r.values[0];
      case 'in':
        return has && r.values.includes(v!);
      case 'notin':
        return !has || !r.values.includes(v!);
      case 'exists':
        return has;
      case 'notexists':
        return !has;
    }
  });
}

export interface FieldRequirement {
  path: string;
  negate: boolean;
  value: string;
}

export function parseFieldSelector(s: string | null | undefined): FieldRequirement[] {
  if (!s) return [];
  return splitTopLevel(s).map((part) => {
    const m = part.match(/^([A-Za-z0-9_.[\]-]+)\s*(==|=|!=)\s*(.*)$/);
    if (!m) throw apiError(400, `invalid selector: '${part}'; can't understand '${part}'`);
    return { path: m[1]!, negate: m[2] === '!=', value: m[3]! };
  });
}

export function matchesFields(reqs: readonly FieldRequirement[], obj: KubeObject): boolean {
  return reqs.every((r) => {
    const raw = getPath(obj, r.path);
    const v = raw === undefined || raw === null ? '' : String(raw);
    return r.negate ? v !== r.value : v === r.value;
  });
}

// ---------------------------------------------------------------------------------------
// Patches

export const PATCH_TYPES = {
  json: 'application/json-patch+json',
  merge: 'application/merge-patch+json',
  strategic: 'application/strategic-merge-patch+json',
  apply: 'application/apply-patch+yaml',
} as const;

/** RFC 7386 JSON merge patch. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isPlainObject(patch)) return clone(patch);
  const out: Record<string, unknown> = isPlainObject(target) ? clone(target) : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** Lists merged by key under strategic merge patch (the common ones of the core types). */
function mergeKeyFor(field: string, parent: string): string | undefined {
  switch (field) {
    case 'containers':
    case 'initContainers':
    case 'ephemeralContainers':
    case 'env':
    case 'volumes':
    case 'imagePullSecrets':
      return 'name';
    case 'volumeMounts':
      return 'mountPath';
    case 'conditions':
      return 'type';
    case 'ownerReferences':
      return 'uid';
    case 'ports':
      return parent === 'containers' || parent === 'initContainers' ? 'containerPort' : 'port';
    default:
      return undefined;
  }
}

const PRIMITIVE_MERGE_LISTS = new Set(['finalizers']);

/**
 * Strategic merge patch, the subset that matters here: merge patch, plus lists of
 * containers/env/volumes/conditions/... merged by their key (with `$patch: delete`
 * elements), and `finalizers` merged as a set (`$deleteFromPrimitiveList/finalizers`).
 */
export function strategicMergePatch(target: unknown, patch: unknown, parent = ''): unknown {
  if (!isPlainObject(patch)) return clone(patch);
  if (patch['$patch'] === 'replace') {
    const rest = { ...patch };
    delete rest['$patch'];
    return clone(rest);
  }
  const out: Record<string, unknown> = isPlainObject(target) ? clone(target) : {};
  const deletions: Record<string, unknown[]> = {};
  for (const [k, v] of Object.entries(patch)) {
    if (k.startsWith('$deleteFromPrimitiveList/')) {
      deletions[k.slice('$deleteFromPrimitiveList/'.length)] = Array.isArray(v) ? v : [];
      continue;
    }
    if (k.startsWith('$')) continue;
    if (v === null) {
      delete out[k];
      continue;
    }
    const cur = out[k];
    const mk = mergeKeyFor(k, parent);
    if (Array.isArray(v) && mk && Array.isArray(cur)) {
      const merged: unknown[] = clone(cur);
      for (const el of v) {
        if (!isPlainObject(el)) continue;
        const idx = merged.findIndex((m) => isPlainObject(m) && m[mk] === el[mk]);
        if (el['$patch'] === 'delete') {
          if (idx >= 0) merged.splice(idx, 1);
        } else if (idx >= 0) merged[idx] = strategicMergePatch(merged[idx], el, k);
        else merged.push(strategicMergePatch(undefined, el, k));
      }
      out[k] = merged;
    } else if (Array.isArray(v) && PRIMITIVE_MERGE_LISTS.has(k) && Array.isArray(cur)) {
      out[k] = [...cur, ...v.filter((x) => !cur.includes(x))];
    } else if (Array.isArray(v)) {
      out[k] = v.map((el) => (isPlainObject(el) ? strategicMergePatch(undefined, el, k) : el));
    } else {
      out[k] = strategicMergePatch(cur, v, k);
    }
  }
  for (const [k, vals] of Object.entries(deletions)) {
    const cur = out[k];
    if (Array.isArray(cur)) out[k] = cur.filter((x) => !vals.includes(x));
  }
  return out;
}

export interface JsonPatchOp {
  op: 'add' | 'remove' | 'replace' | 'move' | 'copy' | 'test';
  path: string;
  value?: unknown;
  from?: string;
}

function pointer(path: string): string[] {
  if (path === '') return [];
  if (!path.startsWith('/')) throw new Error(`invalid JSON pointer "${path}"`);
  return path
    .slice(1)
    .split('/')
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function parentOf(
  doc: unknown,
  tokens: string[],
  path: string,
): { container: unknown; key: string } {
  let cur = doc;
  for (const t of tokens.slice(0, -1)) {
    if (Array.isArray(cur)) cur = cur[Number(t)];
    else if (isPlainObject(cur)) cur = cur[t];
    else cur = undefined;
    if (cur === undefined) throw new Error(`doc is missing path: "${path}"`);
  }
  return { container: cur, key: tokens[tokens.length - 1] ?? '' };
}

function readPointer(doc: unknown, path: string): unknown {
  let cur = doc;
  for (const t of pointer(path)) {
    if (Array.isArray(cur)) cur = cur[Number(t)];
    else if (isPlainObject(cur)) cur = cur[t];
    else cur = undefined;
    if (cur === undefined) throw new Error(`doc is missing path: "${path}"`);
  }
  return cur;
}

/** RFC 6902 JSON patch; a failing op is an Error (the server answers 422). */
export function jsonPatch(doc: unknown, ops: unknown): unknown {
  if (!Array.isArray(ops)) throw new Error('a JSON patch must be an array of operations');
  let out = clone(doc);
  for (const raw of ops) {
    if (!isPlainObject(raw) || typeof raw['op'] !== 'string' || typeof raw['path'] !== 'string')
      throw new Error(`invalid JSON patch operation: ${JSON.stringify(raw)}`);
    const op = raw as unknown as JsonPatchOp;
    const tokens = pointer(op.path);
    const add = (value: unknown): void => {
      if (tokens.length === 0) {
        out = clone(value);
        return;
      }
      const { container, key } = parentOf(out, tokens, op.path);
      if (Array.isArray(container)) {
        const i = key === '-' ? container.length : Number(key);
        if (!Number.isInteger(i) || i < 0 || i > container.length)
          throw new Error(`index out of bounds at "${op.path}"`);
        container.splice(i, 0, clone(value));
      } else if (isPlainObject(container)) container[key] = clone(value);
      else throw new Error(`doc is missing path: "${op.path}"`);
    };
    const remove = (path: string): unknown => {
      const t = pointer(path);
      const { container, key } = parentOf(out, t, path);
      if (Array.isArray(container)) {
        const i = Number(key);
        if (!Number.isInteger(i) || i < 0 || i >= container.length)
          throw new Error(`index out of bounds at "${path}"`);
        return container.splice(i, 1)[0];
      }
      if (isPlainObject(container) && key in container) {
        const v = container[key];
        delete container[key];
        return v;
      }
      throw new Error(`unable to remove nonexistent key: ${key}: missing value`);
    };
    switch (op.op) {
      case 'add':
        add(op.value);
        break;
      case 'remove':
        remove(op.path);
        break;
      case 'replace':
        remove(op.path);
        add(op.value);
        break;
      case 'move': {
        const v = remove(op.from ?? '');
        add(v);
        break;
      }
      case 'copy':
        add(readPointer(out, op.from ?? ''));
        break;
      case 'test':
        if (!deepEqual(readPointer(out, op.path), op.value))
          throw new Error(`testing value ${op.path} failed`);
        break;
      default:
        throw new Error(`unexpected JSON patch operation "${String(raw['op'])}"`);
    }
  }
  return out;
}
