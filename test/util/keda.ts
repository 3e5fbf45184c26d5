/**
 * KEDA's kinds are CRDs that kubernetes-models does not have: a structural check of the
 * fields stoker's example (k8s/keda/) uses, after KEDA's documented schema for
 * ScaledObject and TriggerAuthentication (keda.sh/v1alpha1) and its metrics-api trigger.
 */
export const KEDA = 'keda.sh/v1alpha1';

const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

export function kedaProblems(obj: Record<string, unknown>): string[] {
  const out: string[] = [];
  const meta = obj['metadata'];
  if (!isObj(meta) || typeof meta['name'] !== 'string') out.push('metadata.name is required');
  const spec = obj['spec'];
  if (!isObj(spec)) return [...out, 'spec must be a mapping'];
  if (obj['kind'] === 'TriggerAuthentication') {
    const refs = spec['secretTargetRef'];
    if (!Array.isArray(refs) || refs.length === 0) out.push('spec.secretTargetRef is required');
    else
      refs.forEach((r, i) => {
        for (const f of ['parameter', 'name', 'key'])
          if (!isObj(r) || typeof r[f] !== 'string' || r[f] === '')
            out.push(`spec.secretTargetRef[${i}].${f} must be a non-empty string`);
      });
    return out;
  }
  if (obj['kind'] !== 'ScaledObject') return [...out, `unknown KEDA kind ${String(obj['kind'])}`];
  const target = spec['scaleTargetRef'];
  if (!isObj(target) || typeof target['name'] !== 'string')
    out.push('spec.scaleTargetRef.name is required');
  for (const f of ['minReplicaCount', 'maxReplicaCount', 'pollingInterval', 'cooldownPeriod'])
    if (spec[f] !== undefined && !(Number.isInteger(spec[f]) && (spec[f] as number) >= 0))
      out.push(`spec.${f} must be a whole number >= 0`);
  if (
    Number.isInteger(spec['minReplicaCount']) &&
    Number.isInteger(spec['maxReplicaCount']) &&
    (spec['minReplicaCount'] as number) > (spec['maxReplicaCount'] as number)
  )
    out.push('spec.minReplicaCount is above spec.maxReplicaCount');
  const triggers = spec['triggers'];
  if (!Array.isArray(triggers) || triggers.length === 0)
    return [...out, 'spec.triggers is required'];
  triggers.forEach((t, i) => {
    const at = `spec.triggers[${i}]`;
    if (!isObj(t) || typeof t['type'] !== 'string') return void out.push(`${at}.type is required`);
    const md = t['metadata'];
    if (!isObj(md)) return void out.push(`${at}.metadata must be a mapping`);
    // KEDA reads every metadata value as a string.
    for (const [k, v] of Object.entries(md))
      if (typeof v !== 'string') out.push(`${at}.metadata.${k} must be a string`);
    if (t['type'] === 'metrics-api') {
      for (const f of ['url', 'valueLocation', 'targetValue'])
        if (md[f] === undefined || md[f] === '') out.push(`${at}.metadata.${f} is required`);
      if (typeof md['targetValue'] === 'string' && !(Number(md['targetValue']) > 0))
        out.push(`${at}.metadata.targetValue must be a number > 0`);
      const mode = md['authMode'];
      if (mode !== undefined && !['apiKey', 'basic', 'tls', 'bearer'].includes(String(mode)))
        out.push(`${at}.metadata.authMode must be apiKey, basic, tls or bearer`);
      if (mode !== undefined && !isObj(t['authenticationRef']))
        out.push(`${at}.authenticationRef is required with authMode`);
    }
  });
  return out;
}
