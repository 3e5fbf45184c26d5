/**
 * What a spec may reach in the cluster (orchestrator/backends/kubernetes/access-rules.ts):
 * never stoker's own Secrets, PVCs or service account, and with the operator's
 * allowlists only what they name. Refused at the field's path and line, as `stoker
 * validate` reports it, and by the controller's checkSpec for a stored run.
 */
import { describe, expect, it } from 'vitest';
import { SpecError } from '../../common/errors.js';
import { parseSpec } from '../../common/spec/load.js';
import { storedPaths } from '../../common/spec/rules.js';
import { accessPolicy, accessRule } from '../../orchestrator/backends/kubernetes/access-rules.js';
import {
  kubernetesSettings,
  settingsFromEnv,
} from '../../orchestrator/backends/kubernetes/settings.js';
import { kubernetesSpecRules } from '../../orchestrator/backends/kubernetes/spec-rules.js';

const spec = (k: string, secret = 'hf-token') =>
  [
    'apiVersion: stoker/v1',
    'kind: TrainingRun',
    'metadata: {name: access}',
    'spec:',
    '  payload:',
    '    command: [python3, train.py]',
    `    secretEnv: [{name: HF_TOKEN, secret: ${secret}, key: token}]`,
    `  kubernetes: ${k}`,
    '',
  ].join('\n');

const issues = (text: string) => {
  try {
    parseSpec(text, { rules: [kubernetesSpecRules] });
    return [];
  } catch (err) {
    if (!(err instanceof SpecError)) throw err;
    return err.issues.map((i) => `${i.path} (line ${i.line}): ${i.message}`);
  }
};

describe("a spec cannot use stoker's own objects", () => {
  it('refuses stoker-* Secrets, stoker PVCs and the controller account, at their lines', () => {
    expect(issues(spec('{}', 'stoker-redis'))).toEqual([
      `spec.payload.secretEnv[0].secret (line 7): Secret "stoker-redis" is stoker's own: a spec may not use it`,
    ]);
    expect(
      issues(
        spec(
          '{volumes: {pvc: [{claimName: data-stoker-redis-0, mountPath: /r}, {claimName: stoker-runs, mountPath: /s}]}}',
        ),
      ),
    ).toEqual([
      `spec.kubernetes.volumes.pvc[0].claimName (line 8): PVC "data-stoker-redis-0" is stoker's own: a spec may not use it`,
      `spec.kubernetes.volumes.pvc[1].claimName (line 8): PVC "stoker-runs" is stoker's own: a spec may not use it`,
    ]);
    expect(issues(spec('{serviceAccountName: stoker-controller}'))).toEqual([
      `spec.kubernetes.serviceAccountName (line 8): service account "stoker-controller" is stoker's own: a spec may not use it`,
    ]);
  });

  it("lets through the payloads' own Secret, the worker account and other names", () => {
    expect(
      issues(
        spec(
          '{serviceAccountName: stoker-worker, volumes: {pvc: [{claimName: datasets, mountPath: /data}]}}',
          'stoker-payload-secrets',
        ),
      ),
    ).toEqual([]);
    expect(issues(spec('{serviceAccountName: trainer}'))).toEqual([]);
  });

  it("holds a stored run to the controller's names and its operator's allowlists", () => {
    const s = parseSpec(
      spec(
        '{serviceAccountName: trainer, volumes: {pvc: [{claimName: datasets, mountPath: /data}, {claimName: scratch-1, mountPath: /s}]}}',
        'my-redis',
      ),
    );
    const settings = settingsFromEnv({
      STOKER_K8S_REDIS_SECRET: 'my-redis',
      STOKER_K8S_ALLOWED_PVCS: 'datasets, models',
      STOKER_K8S_ALLOWED_SERVICE_ACCOUNTS: 'stoker-worker',
    });
    const found = accessRule(accessPolicy(settings))(s, storedPaths(s)).map(
      (i) => `${i.path.join('.')}: ${i.message}`,
    );
    expect(found).toEqual([
      `spec.payload.secretEnv.0.secret: Secret "my-redis" is stoker's own: a spec may not use it`,
      `spec.kubernetes.volumes.pvc.1.claimName: PVC "scratch-1" is not one this controller lets runs use (datasets, models; the operator's allowlist)`,
      `spec.kubernetes.serviceAccountName: service account "trainer" is not one this controller lets runs use (stoker-worker; the operator's allowlist)`,
    ]);
    // No allowlist: only stoker's own names are refused.
    const open = accessRule(accessPolicy(kubernetesSettings()))(s, storedPaths(s));
    expect(open).toEqual([]);
  });
});
