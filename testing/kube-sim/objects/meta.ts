/**
 * The wire shapes every part of the simulated cluster shares: objects and their metadata,
 * the meta/v1 Status every error answers with (KubeApiError carries one), and small
 * helpers on plain JSON objects (copies, deep equality, timestamps, generated names).
 * Statuses, reasons and messages follow the real API server closely enough that a
 * backend written against the fake works against a cluster.
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
// Small helpers

/** A JSON object as the store and the controllers read it. */
export type Dict = Record<string, unknown>;

/** v when it is a plain object, else a new empty one (a missing `spec` reads as `{}`). */
export const asDict = (v: unknown): Dict => (isPlainObject(v) ? v : {});

/** The plain objects in v when it is an array, else none. */
export const asList = (v: unknown): Dict[] => (Array.isArray(v) ? v.filter(isPlainObject) : []);

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
