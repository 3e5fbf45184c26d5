/**
 * k8s/base/admission-policy.yaml, the cluster's copy of the deny list, against the code:
 *
 *   - every expression of every ValidatingAdmissionPolicy the kustomizations render
 *     compiles (parsed and type-checked by @marcbachmann/cel-js, the library the
 *     simulated API server evaluates them with), and a broken one is reported at its path;
 *   - it agrees with the controller's deny list (access-rules.ts with the base's
 *     settings): for each probe name, a rendered pod that uses it as a Secret, a PVC or a
 *     service account is denied exactly when a spec naming it is refused, but for what
 *     the backend renders itself (the runs claim; stoker-redis as STOKER_REDIS_URL);
 *   - every worker pod the controller renders with each overlay's settings is admitted;
 *   - the names it holds are the settings of controller-config.yaml;
 *   - what keeps the namespace's service accounts from making pods the policy leaves out:
 *     the controller's Role creates no Deployments, ReplicaSets, StatefulSets or pods.
 * The hostile Jobs and pods, through the real client and HTTP: test/kubernetes/
 * admission-policy.test.ts.
 */
import type { V1Job, V1Pod } from '@kubernetes/client-node';
import { afterEach, describe, expect, it } from 'vitest';
import type { NormalizedSpec } from '../../common/spec/schema.js';
import { storedPaths } from '../../common/spec/rules.js';
import { accessPolicy, accessRule } from '../../orchestrator/backends/kubernetes/access-rules.js';
import { buildAll } from '../../orchestrator/backends/kubernetes/objects.js';
import {
  settingsFromEnv,
  type KubernetesSettings,
} from '../../orchestrator/backends/kubernetes/settings.js';
import { KubeApiError } from '../../testing/kube-sim/objects/meta.js';
import { IN_PROCESS_USER, type UserInfo } from '../../testing/kube-sim/store/admission.js';
import {
  compilePolicy,
  enforceAdmissionPolicies,
  PolicyCompileError,
  type AdmissionPolicy,
} from '../../testing/kube-sim/store/admission-policy.js';
import { FakeKubeStore } from '../../testing/kube-sim/store/store.js';
import { runIdFor } from '../builders/k8s.js';
import { makePipeline } from '../builders/spec.js';
import { controllerRole } from '../util/rbac.js';
import { dataOf, find, K8S, render, type Obj } from '../util/kustomize.js';

const OVERLAYS = ['base', 'overlays/kind', 'overlays/production'];
const CONTROLLER: UserInfo = {
  username: 'system:serviceaccount:stoker:stoker-controller',
  groups: ['system:serviceaccounts', 'system:serviceaccounts:stoker', 'system:authenticated'],
};

const settingsOf = (overlay: string): KubernetesSettings =>
  settingsFromEnv(dataOf(find(render(`${K8S}/${overlay}`), 'ConfigMap', 'stoker-config')));

const policiesOf = (overlay: string): Obj[] =>
  render(`${K8S}/${overlay}`).filter((o) => o.apiVersion === 'admissionregistration.k8s.io/v1');

let store: FakeKubeStore | undefined;
afterEach(() => {
  store?.close();
  store = undefined;
});

/** A store enforcing the overlay's policies: create() answers 'admitted' or the denial. */
function admission(overlay = 'base') {
  const s = new FakeKubeStore();
  store = s;
  for (const o of policiesOf(overlay))
    s.create(
      o.kind === 'ValidatingAdmissionPolicy'
        ? 'validatingadmissionpolicies'
        : 'validatingadmissionpolicybindings',
      o,
    );
  // What else admission checks: the worker pods' PriorityClass.
  for (const o of render(`${K8S}/${overlay}`).filter((x) => x.kind === 'PriorityClass'))
    s.create('priorityclasses', o);
  enforceAdmissionPolicies(s);
  return (resource: 'jobs' | 'pods', obj: V1Job | V1Pod, user = CONTROLLER): string => {
    try {
      s.validating.asUser(user, () => s.create(resource, obj, { namespace: 'stoker' }));
      s.delete(resource, 'stoker', obj.metadata!.name!);
      return 'admitted';
    } catch (err) {
      if (!(err instanceof KubeApiError)) throw err;
      return err.message;
    }
  };
}

function jobsOf(spec: NormalizedSpec, settings: KubernetesSettings): V1Job[] {
  return buildAll(spec, runIdFor('probe'), settings).filter((o): o is V1Job => o.kind === 'Job');
}

/** Every kind of worker pod: a gang, a pool, a CPU step, a secretEnv, PVCs. */
function everyKindOfPod(): NormalizedSpec {
  return makePipeline('admission')
    .defaults({ resources: { gpuType: 'h100' } })
    .stage('prepare', (s) => s.kind('prepare'))
    .stage('teacher', (s) =>
      s
        .gpus(8)
        .nodes(2)
        .dependsOn('prepare')
        .secretEnv('HF_TOKEN')
        .secretEnv('WANDB_API_KEY', { secret: 'wandb', key: 'key' })
        .set('kubernetes', {
          volumes: {
            pvc: [{ claimName: 'datasets', mountPath: '/data', readOnly: true }],
            shmSize: '8Gi',
          },
          serviceAccountName: 'team-a',
        }),
    )
    .stage('selfplay', (s) =>
      s
        .kind('generate')
        .dependsOn('teacher')
        .gpus(1)
        .set('input', { shards: ['a.jsonl'] })
        .set('pool', { name: 'gen-h100', maxReplicas: 2, replicas: 1 }),
    )
    .stage('judge', (s) =>
      s
        .kind('evaluate')
        .dependsOn('teacher')
        .set('input', { shards: ['b.jsonl'] })
        .set('pool', { name: 'judge-cpu', maxReplicas: 1 })
        .set('kubernetes', { security: { writableRoot: true } }),
    )
    .normalize();
}

describe('the admission policy in k8s/', () => {
  it.each(OVERLAYS)('%s: every expression compiles with the CEL library', (overlay) => {
    const policies = policiesOf(overlay).filter((o) => o.kind === 'ValidatingAdmissionPolicy');
    expect(policies.map((p) => p.metadata?.name)).toEqual(['stoker-worker-pods']);
    for (const p of policies) {
      const c = compilePolicy(p as AdmissionPolicy);
      const count =
        c.matchConditions.length +
        c.variables.length +
        c.validations.reduce((n, v) => n + 1 + (v.messageExpression ? 1 : 0), 0);
      expect(count).toBeGreaterThan(20);
    }
  });

  it('a policy whose expressions do not compile is reported at each of their paths', () => {
    const [policy] = policiesOf('base') as AdmissionPolicy[];
    const broken = structuredClone(policy!);
    broken.spec.validations![1]!.expression = 'size(variables.envSecrets) ==';
    broken.spec.validations![2]!.messageExpression = "'a' + 1";
    broken.spec.variables![0]!.expression = 'object.spec.(';
    broken.spec.matchConditions![0]!.expression = "'not a bool'";
    expect(() => compilePolicy(broken)).toThrow(PolicyCompileError);
    try {
      compilePolicy(broken);
    } catch (err) {
      expect((err as PolicyCompileError).problems.map((p) => p.split(':')[0])).toEqual([
        'spec.matchConditions[0].expression',
        'spec.variables[0].expression',
        'spec.validations[1].expression',
        'spec.validations[2].messageExpression',
      ]);
    }
  });

  it.each(OVERLAYS)(
    'admits every worker Job the controller renders with the settings of %s',
    (overlay) => {
      const admit = admission(overlay);
      const jobs = jobsOf(everyKindOfPod(), settingsOf(overlay));
      expect(jobs.length).toBe(4);
      for (const job of jobs) expect(admit('jobs', job)).toBe('admitted');
      // And their pods, as the Job controller creates them.
      for (const job of jobs) {
        const pod: V1Pod = {
          metadata: {
            name: `${job.metadata!.name}-0`,
            labels: job.spec!.template.metadata!.labels!,
          },
          spec: job.spec!.template.spec!,
        };
        expect(admit('pods', pod, IN_PROCESS_USER)).toBe('admitted');
      }
    },
  );

  it("holds the names of controller-config.yaml's settings", () => {
    const s = settingsOf('base');
    const [policy] = policiesOf('base') as AdmissionPolicy[];
    const variable = (name: string): unknown => {
      const v = compilePolicy(policy!).variables.find((x) => x.name === name);
      return v?.run({});
    };
    expect(variable('redisUrl')).toEqual({
      env: 'STOKER_REDIS_URL',
      secret: s.redisUrlSecret.name,
      key: s.redisUrlSecret.key,
    });
    expect(variable('runsClaim')).toBe(s.runsVolume?.claimName);
    expect(variable('secretExceptions')).toEqual([s.payloadSecretName]);
    expect(variable('deniedServiceAccounts')).toEqual(accessPolicy(s).deniedServiceAccounts);
  });

  describe("agrees with the controller's deny list (access-rules.ts, the base's settings)", () => {
    const settings = settingsOf('base');
    const rule = accessRule(accessPolicy(settings));
    const refused = (spec: NormalizedSpec) => rule(spec, storedPaths(spec)).length > 0;
    const stage = (fn: Parameters<ReturnType<typeof makePipeline>['stage']>[1]) =>
      makePipeline('probe').stage('train', fn).normalize();

    it.each([
      'stoker-redis',
      'stoker-api-tokens',
      'stoker-anything',
      'stoker-payload-secrets',
      'hf-token',
      'my-stoker-redis',
      'stoker',
    ])('Secret %s', (name) => {
      const admit = admission();
      const spec = stage((s) => s.secretEnv('TOKEN', { secret: name, key: 'token' }));
      const [job] = jobsOf(spec, settings);
      const verdict = admit('jobs', job!);
      expect(verdict === 'admitted').toBe(!refused(spec));
      // The same Secret as a volume and in a projected volume.
      for (const volume of [
        { name: 'v', secret: { secretName: name } },
        { name: 'v', projected: { sources: [{ secret: { name } }] } },
      ]) {
        const [other] = jobsOf(
          stage(() => undefined),
          settings,
        );
        other!.spec!.template.spec!.volumes!.push(volume);
        expect(admit('jobs', other!) === 'admitted').toBe(!refused(spec));
      }
    });

    it.each([
      'data-stoker-redis-0',
      'stoker-runs',
      'stoker-models',
      'backup-of-stoker-redis',
      'datasets',
      'models-stoker',
    ])('PVC %s', (name) => {
      const admit = admission();
      const spec = stage((s) =>
        s.set('kubernetes', { volumes: { pvc: [{ claimName: name, mountPath: '/x' }] } }),
      );
      const [job] = jobsOf(spec, settings);
      const verdict = admit('jobs', job!);
      // The runs claim: no spec may name it, and the backend mounts it in every pod.
      if (name === settings.runsVolume?.claimName) {
        expect(refused(spec)).toBe(true);
        expect(verdict).toBe('admitted');
      } else expect(verdict === 'admitted').toBe(!refused(spec));
    });

    it.each(['stoker-controller', 'stoker-worker', 'default', 'team-a'])(
      'service account %s',
      (name) => {
        const admit = admission();
        const spec = stage((s) => s.set('kubernetes', { serviceAccountName: name }));
        const [job] = jobsOf(spec, settings);
        expect(admit('jobs', job!) === 'admitted').toBe(!refused(spec));
      },
    );
  });

  it("the controller's Role creates no pods and no workload that makes pods the policy leaves out", () => {
    const grants = controllerRole().flatMap((r) =>
      r.verbs.includes('create') || r.verbs.includes('*')
        ? r.resources.map((res) => `${r.apiGroups.join(',')}/${res}`)
        : [],
    );
    expect(grants).not.toContain('/pods');
    for (const g of grants) expect(g.startsWith('apps/') || g.startsWith('*/')).toBe(false);
  });
});
