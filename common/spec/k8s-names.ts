/**
 * Kubernetes names and labels: one set of functions for the spec checks (schema.ts,
 * graph.ts, the kubernetes backend's spec-rules.ts) and the object builders
 * (orchestrator/backends/kubernetes), so that what submit accepts is exactly what the
 * backend will create. Re-exported by schema.ts.
 */
import { createHash } from 'node:crypto';

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const K8S_LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$/;
const K8S_NAME_PART = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const K8S_DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** A DNS-1123 label: what Kubernetes requires of namespaces, hostnames and most names. */
export const isDnsLabel = (v: string): boolean => v.length <= 63 && DNS_LABEL.test(v);
export const isDnsSubdomain = (v: string): boolean => v.length <= 253 && K8S_DNS_SUBDOMAIN.test(v);
/** A label value: at most 63 of [A-Za-z0-9-_.], alphanumeric at both ends (or empty). */
export const isLabelValue = (v: string): boolean => v.length <= 63 && K8S_LABEL_VALUE.test(v);
/** A label key: an optional DNS-subdomain prefix and "/", then a name of at most 63. */
export function isLabelKey(k: string): boolean {
  const parts = k.split('/');
  if (parts.length > 2) return false;
  const name = parts[parts.length - 1] as string;
  const prefix = parts.length === 2 ? (parts[0] as string) : undefined;
  if (prefix !== undefined && !isDnsSubdomain(prefix)) return false;
  return name.length <= 63 && K8S_NAME_PART.test(name);
}

/** Names and label values Kubernetes accepts (DNS-1123 labels, label values). */
export const K8S_NAME_MAX = 63;
/**
 * Job names leave room for "-" and a completion index of up to 4 digits: the Job
 * controller names each pod of an Indexed Job `${job}-${index}` as its hostname, which is
 * a DNS label of at most 63 characters. (A gang of 10,000 nodes is refused at submit.)
 */
export const JOB_NAME_MAX = 58;
/** What makeRunId (orchestrator/store.ts) appends to a run's name: -YYYYMMDD-HHMMSS-xxxxxx. */
export const RUN_ID_SUFFIX_LENGTH = 23;

const shortHash = (text: string): string =>
  createHash('sha256').update(text).digest('hex').slice(0, 8);

/**
 * `base` + `suffix` as a DNS-1123 label of at most `max` characters, deterministically.
 * Stoker's ids (`${runId}.${stage}`) only need "." -> "-" and are kept whole when they
 * fit: `fire-20261126-100422-c373ab-teacher-a1`. Anything longer, or changed beyond the
 * dots, is cut and gets 8 hex characters of a hash of the original before the suffix, so
 * two ids that differ only past the cut still get different names. `suffix` (e.g. `-a3`)
 * is always kept whole.
 */
export function dnsLabelName(base: string, suffix = '', max: number = K8S_NAME_MAX): string {
  const cleaned = base
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-')
    .replace(/^-+|-+$/g, '');
  const whole = `${cleaned}${suffix}`;
  if (cleaned !== '' && cleaned === base.replaceAll('.', '-') && whole.length <= max) return whole;
  const tail = `${shortHash(base)}${suffix}`;
  const head = cleaned.slice(0, Math.max(0, max - tail.length - 1)).replace(/-+$/, '');
  return head ? `${head}-${tail}` : tail.slice(0, max);
}

/** A label value for `value`: itself when valid, else a cut, cleaned prefix and a hash. */
export function labelValueFor(value: string): string {
  if (isLabelValue(value)) return value;
  const tail = shortHash(value);
  const head = value
    .replace(/[^A-Za-z0-9_.-]/g, '-')
    .slice(0, K8S_NAME_MAX - tail.length - 1)
    .replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, '');
  return head ? `${head}-${tail}` : tail;
}

/**
 * The Job of one attempt of a dispatched task (the backend's unit
 * `${taskId}-a${attempt}`), at most JOB_NAME_MAX characters.
 */
export function jobNameFor(taskId: string, attempt: number): string {
  return dnsLabelName(taskId, `-a${attempt}`, JOB_NAME_MAX);
}

/** Label keys stoker (or Kubernetes, or Kueue) sets on the objects it builds. */
const RESERVED_LABEL_PREFIXES = ['stoker.dev/', 'kueue.x-k8s.io/', 'batch.kubernetes.io/'];
const RESERVED_LABEL_KEYS = [
  'app.kubernetes.io/managed-by',
  'app.kubernetes.io/name',
  'app.kubernetes.io/component',
  'job-name',
  'controller-uid',
];
export const isReservedLabelKey = (key: string): boolean =>
  RESERVED_LABEL_KEYS.includes(key) || RESERVED_LABEL_PREFIXES.some((p) => key.startsWith(p));
