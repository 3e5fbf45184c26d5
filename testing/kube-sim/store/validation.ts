/**
 * Validation: what the API server refuses with 422 Invalid after defaulting, every
 * problem of an object at once, each a Status cause naming its field, with the real
 * server's messages.
 *
 * - Names: DNS-1123 subdomains (Services: DNS-1035 labels; Jobs at most 63 characters).
 * - Labels: qualified names and label values.
 * - Pod specs (a Pod's, a Job's template): container names unique DNS-1123 labels, an
 *   image each, environment variable names, nvidia.com/gpu requests equal to limits,
 *   hostname and subdomain, restartPolicy.
 * - Jobs: template restartPolicy Never or OnFailure (Never with a podFailurePolicy),
 *   completions when Indexed, non-negative counts, a positive activeDeadlineSeconds,
 *   podFailurePolicy rules (known actions, no exit code 0 under In, not both exit codes
 *   and pod conditions).
 * - Secrets: base64 data.
 * - Every kind: its OpenAPI schema, when the store validates schemas (schemas.ts).
 */
import { type Dict, type KubeObject, type StatusCause, asDict, asList } from '../objects/meta.js';
import { GPU_RESOURCE, type ResourceType, invalid } from '../objects/resources.js';
import { schemaCauses } from './schemas.js';

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const LABEL_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const ENV_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;

/** Record one problem: its field, the message, the Status cause reason. */
type AddCause = (field: string, message: string, reason?: string) => void;

/** Throw 422 Invalid with every problem of obj, or return when it has none. */
export function validateObject(
  rt: ResourceType,
  obj: KubeObject,
  opts: { schemas: boolean },
): void {
  const name = obj.metadata.name ?? '';
  const causes: StatusCause[] = [];
  const add: AddCause = (field, message, reason = 'FieldValueInvalid') => {
    causes.push({ field, message, reason });
  };
  validateName(rt, name, add);
  validateLabels(obj.metadata.labels, 'metadata.labels', add);
  if (rt.kind === 'Pod') validatePodSpec(asDict(obj['spec']), 'spec', add);
  if (rt.kind === 'Job') validateJobSpec(asDict(obj['spec']), add);
  if (rt.kind === 'Secret') validateSecretData(asDict(obj['data']), add);
  if (opts.schemas) for (const c of schemaCauses(rt.kind, obj)) add(c.field, c.message);
  if (causes.length) throw invalid(rt, name, causes);
}

/** Names: most kinds are DNS-1123 subdomains; Services are DNS-1035 labels. */
function validateName(rt: ResourceType, name: string, add: AddCause): void {
  if (rt.kind === 'Service') {
    if (!DNS1035_LABEL.test(name) || name.length > 63)
      add(
        'metadata.name',
        `Invalid value: "${name}": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')`,
      );
  } else if (rt.kind !== 'Event' && (!DNS1123_SUBDOMAIN.test(name) || name.length > 253)) {
    add(
      'metadata.name',
      `Invalid value: "${name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
    );
  }
  if (rt.kind === 'Job' && name.length > 63)
    add('metadata.name', `Invalid value: "${name}": must be no more than 63 characters`);
}

function validateJobSpec(spec: Dict, add: AddCause): void {
  const tpl = asDict(spec['template']);
  validateLabels(
    asDict(asDict(tpl['metadata'])['labels']) as Record<string, string>,
    'spec.template.metadata.labels',
    add,
  );
  const pspec = asDict(tpl['spec']);
  validatePodSpec(pspec, 'spec.template.spec', add);
  const rp = pspec['restartPolicy'];
  if (rp !== 'Never' && rp !== 'OnFailure')
    add(
      'spec.template.spec.restartPolicy',
      `Unsupported value: "${String(rp)}": supported values: "OnFailure", "Never"`,
      'FieldValueNotSupported',
    );
  if (spec['podFailurePolicy'] !== undefined && rp !== 'Never')
    add(
      'spec.template.spec.restartPolicy',
      `Invalid value: "${String(rp)}": only "Never" is supported when podFailurePolicy is specified`,
    );
  if (spec['completionMode'] === 'Indexed' && typeof spec['completions'] !== 'number')
    add(
      'spec.completions',
      'Required value: when completion mode is Indexed',
      'FieldValueRequired',
    );
  for (const f of [
    'parallelism',
    'completions',
    'backoffLimit',
    'activeDeadlineSeconds',
    'ttlSecondsAfterFinished',
  ]) {
    const v = spec[f];
    if (typeof v === 'number' && (v < 0 || (f === 'activeDeadlineSeconds' && v <= 0)))
      add(
        `spec.${f}`,
        `Invalid value: ${v}: must be greater than${f === 'activeDeadlineSeconds' ? '' : ' or equal to'} 0`,
      );
  }
  validatePodFailurePolicy(asDict(spec['podFailurePolicy']), add);
}

function validatePodFailurePolicy(pfp: Dict, add: AddCause): void {
  asList(pfp['rules']).forEach((r, i) => {
    const a = r['action'];
    if (!['FailJob', 'Ignore', 'Count', 'FailIndex'].includes(String(a)))
      add(
        `spec.podFailurePolicy.rules[${i}].action`,
        `Unsupported value: "${String(a)}": supported values: "Count", "FailIndex", "FailJob", "Ignore"`,
        'FieldValueNotSupported',
      );
    const oe = asDict(r['onExitCodes']);
    if (oe['operator'] === 'In' && Array.isArray(oe['values']) && oe['values'].includes(0))
      add(
        `spec.podFailurePolicy.rules[${i}].onExitCodes.values[${oe['values'].indexOf(0)}]`,
        'Invalid value: 0: must not be 0 for the In operator',
      );
    if (r['onExitCodes'] !== undefined && r['onPodConditions'] !== undefined)
      add(
        `spec.podFailurePolicy.rules[${i}]`,
        'Invalid value: specifying both OnExitCodes and OnPodConditions is not supported',
      );
  });
}

function validateSecretData(data: Dict, add: AddCause): void {
  for (const [k, v] of Object.entries(data)) {
    if (typeof v !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(v))
      add(`data[${k}]`, 'Invalid value: "<secret contents redacted>": illegal base64 data');
  }
}

function validateLabels(
  labels: Record<string, string> | undefined,
  field: string,
  add: (field: string, message: string) => void,
): void {
  for (const [k, v] of Object.entries(labels ?? {})) {
    const [prefix, name] = k.includes('/')
      ? [k.slice(0, k.indexOf('/')), k.slice(k.indexOf('/') + 1)]
      : [undefined, k];
    if (prefix !== undefined && (!DNS1123_SUBDOMAIN.test(prefix) || prefix.length > 253))
      add(
        field,
        `Invalid value: "${k}": prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'`,
      );
    if (!LABEL_NAME.test(name ?? '') || (name ?? '').length > 63)
      add(
        field,
        `Invalid value: "${k}": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character`,
      );
    if (typeof v !== 'string' || v.length > 63 || !LABEL_VALUE.test(v))
      add(
        `${field}`,
        `Invalid value: "${String(v)}": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character, and must be no more than 63 characters`,
      );
  }
}

function validatePodSpec(
  spec: Dict,
  field: string,
  add: (field: string, message: string, reason?: string) => void,
): void {
  const containers = asList(spec['containers']);
  if (containers.length === 0) add(`${field}.containers`, 'Required value', 'FieldValueRequired');
  const names = new Set<string>();
  containers.forEach((c, i) => {
    const n = String(c['name'] ?? '');
    if (!DNS1123_LABEL.test(n) || n.length > 63)
      add(
        `${field}.containers[${i}].name`,
        `Invalid value: "${n}": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character`,
      );
    if (names.has(n))
      add(`${field}.containers[${i}].name`, `Duplicate value: "${n}"`, 'FieldValueDuplicate');
    names.add(n);
    if (!c['image']) add(`${field}.containers[${i}].image`, 'Required value', 'FieldValueRequired');
    asList(c['env']).forEach((e, j) => {
      const en = String(e['name'] ?? '');
      if (!ENV_NAME.test(en))
        add(
          `${field}.containers[${i}].env[${j}].name`,
          `Invalid value: "${en}": a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit`,
        );
    });
    const res = asDict(c['resources']);
    const req = asDict(res['requests'])[GPU_RESOURCE];
    const lim = asDict(res['limits'])[GPU_RESOURCE];
    if (req !== undefined && lim === undefined)
      add(
        `${field}.containers[${i}].resources.limits`,
        `Required value: Limit must be set for non overcommitable resources`,
        'FieldValueRequired',
      );
    if (req !== undefined && lim !== undefined && String(req) !== String(lim))
      add(
        `${field}.containers[${i}].resources.requests[${GPU_RESOURCE}]`,
        `Invalid value: "${String(req)}": must be equal to ${GPU_RESOURCE} limit of ${String(lim)}`,
      );
  });
  for (const f of ['hostname', 'subdomain']) {
    const v = spec[f];
    if (typeof v === 'string' && (!DNS1123_LABEL.test(v) || v.length > 63))
      add(
        `${field}.${f}`,
        `Invalid value: "${v}": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character`,
      );
  }
  const rp = spec['restartPolicy'];
  if (rp !== undefined && !['Always', 'OnFailure', 'Never'].includes(String(rp)))
    add(
      `${field}.restartPolicy`,
      `Unsupported value: "${String(rp)}": supported values: "Always", "OnFailure", "Never"`,
      'FieldValueNotSupported',
    );
}
