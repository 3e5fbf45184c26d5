/**
 * What a spec may reach in the cluster (spec rules, common/spec/rules.ts): the Secrets its
 * `secretEnv` reads, the PVCs it mounts and the service account its pods run as. A spec
 * is untrusted; stoker's own objects would hand it the installation:
 *   - Secrets: the Redis URL with its password (stoker-redis), the API tokens
 *     (stoker-api-tokens): any `stoker-*` Secret but the payloads' own
 *     (stoker-payload-secrets);
 *   - PVCs: the runs volume (stoker-runs: the backend mounts it itself, where it
 *     belongs) and Redis's data (`*stoker-redis*`): any `stoker-*` claim;
 *   - the controller's service account (stoker-controller), which may create Jobs.
 * These are refused everywhere (`stoker validate` too). The controller adds the names
 * its settings give (the Redis Secret, the runs claim) and, when the operator sets them,
 * allowlists (STOKER_K8S_ALLOWED_SECRETS, _PVCS, _SERVICE_ACCOUNTS: comma-separated
 * names, a trailing `*` for a prefix): then nothing else is allowed.
 */
import type { NormalizedSpec } from '../../../common/spec/schema.js';
import type { SpecPaths, SpecRule, SpecRuleIssue } from '../../../common/spec/rules.js';
import type { KubernetesSettings } from './settings.js';

export interface AccessPolicy {
  deniedSecrets: string[];
  deniedClaims: string[];
  deniedServiceAccounts: string[];
  /** null: any name not denied. */
  allowedSecrets: string[] | null;
  allowedClaims: string[] | null;
  allowedServiceAccounts: string[] | null;
}

/** What every spec is held to, whatever the controller's settings. */
export const BUILT_IN_ACCESS: AccessPolicy = {
  deniedSecrets: ['stoker-*'],
  deniedClaims: ['stoker-*', '*stoker-redis*'],
  deniedServiceAccounts: ['stoker-controller'],
  allowedSecrets: null,
  allowedClaims: null,
  allowedServiceAccounts: null,
};

/** Names the payloads may use although they look like stoker's. */
const PAYLOAD_SECRET = 'stoker-payload-secrets';
const WORKER_ACCOUNT = 'stoker-worker';

const matches = (name: string, patterns: readonly string[]): boolean =>
  patterns.some((p) => {
    if (p.startsWith('*') && p.endsWith('*') && p.length > 1) return name.includes(p.slice(1, -1));
    if (p.endsWith('*')) return name.startsWith(p.slice(0, -1));
    return name === p;
  });

/** A comma-separated list of names (a trailing `*`: a prefix); null when unset. */
export function nameList(value: string | undefined): string[] | null {
  if (value === undefined || value.trim() === '') return null;
  return value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

function refusal(
  what: string,
  name: string,
  allowed: string[] | null,
  denied: readonly string[],
  exempt: string | null,
): string | null {
  if (name !== exempt && matches(name, denied))
    return `${what} "${name}" is stoker's own: a spec may not use it`;
  if (allowed && !matches(name, allowed))
    return `${what} "${name}" is not one this controller lets runs use (${allowed.join(', ')}; the operator's allowlist)`;
  return null;
}

export const accessRule =
  (policy: AccessPolicy): SpecRule =>
  (spec: NormalizedSpec, paths: SpecPaths): SpecRuleIssue[] =>
    spec.stages.flatMap((stage, i) => {
      const issues: SpecRuleIssue[] = [];
      stage.payload.secretEnv.forEach((s, j) => {
        if (s.secret === undefined) return;
        const why = refusal(
          'Secret',
          s.secret,
          policy.allowedSecrets,
          policy.deniedSecrets,
          PAYLOAD_SECRET,
        );
        if (why)
          issues.push({
            path: [...paths.stage(i), 'payload', 'secretEnv', j, 'secret'],
            message: why,
          });
      });
      for (const list of paths.pvcLists(i))
        list.mounts.forEach((m, j) => {
          const why = refusal('PVC', m.claimName, policy.allowedClaims, policy.deniedClaims, null);
          if (why) issues.push({ path: [...list.path, j, 'claimName'], message: why });
        });
      const account = stage.kubernetes.serviceAccountName;
      if (account !== undefined) {
        const why = refusal(
          'service account',
          account,
          policy.allowedServiceAccounts,
          policy.deniedServiceAccounts,
          WORKER_ACCOUNT,
        );
        if (why)
          issues.push({
            path: paths.setting(i, ['kubernetes', 'serviceAccountName']).path,
            message: why,
          });
      }
      return issues;
    });

/** The built-in policy, plus the names this controller's settings give and its allowlists. */
export function accessPolicy(
  settings: Pick<KubernetesSettings, 'redisUrlSecret' | 'runsVolume' | 'allowed'>,
): AccessPolicy {
  return {
    deniedSecrets: [
      ...BUILT_IN_ACCESS.deniedSecrets,
      settings.redisUrlSecret.name,
      'stoker-api-tokens',
    ],
    deniedClaims: [
      ...BUILT_IN_ACCESS.deniedClaims,
      ...(settings.runsVolume ? [settings.runsVolume.claimName] : []),
    ],
    deniedServiceAccounts: [...BUILT_IN_ACCESS.deniedServiceAccounts],
    allowedSecrets: settings.allowed.secrets,
    allowedClaims: settings.allowed.claims,
    allowedServiceAccounts: settings.allowed.serviceAccounts,
  };
}
