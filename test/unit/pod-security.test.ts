/**
 * Pod Security "restricted" for every pod stoker runs: the worker pods the kubernetes
 * backend builds (train attempts, gangs, pool workers, CPU steps, with the settings of
 * each overlay) and the controller and Redis pods of the install manifests, checked with
 * test/util/pod-security.ts, the standard's rules written out. The namespace enforces
 * restricted, so a pod that failed here would be refused by the API server.
 *
 * Beyond restricted: worker containers have a read-only root file system unless the
 * stage opts out, and the paths a payload writes (/tmp, HOME) are emptyDirs.
 */
import type { V1Job, V1PodSpec } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { buildAll } from '../../orchestrator/backends/kubernetes/objects.js';
import { writablePaths } from '../../orchestrator/backends/kubernetes/pod-spec.js';
import {
  kubernetesSettings,
  settingsFromEnv,
  type KubernetesSettings,
} from '../../orchestrator/backends/kubernetes/settings.js';
import { makePipeline } from '../builders/spec.js';
import { runIdFor } from '../builders/k8s.js';
import { dataOf, find, K8S, podSpecsOf, render, type Obj } from '../util/kustomize.js';
import { podSecurityViolations, type PodLike } from '../util/pod-security.js';

const OVERLAYS = ['base', 'overlays/kind', 'overlays/production'];

/** A pod that restricted admits: the starting point of the checker's own cases. */
function compliantPod(): PodLike {
  return {
    metadata: { annotations: {} },
    spec: {
      securityContext: { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } },
      containers: [
        {
          name: 'c',
          image: 'x',
          securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
        },
      ],
      volumes: [{ name: 'tmp', emptyDir: {} }],
    },
  };
}

describe('the Pod Security checker', () => {
  it('admits a pod that meets restricted', () => {
    expect(podSecurityViolations(compliantPod(), 'restricted')).toEqual([]);
  });

  it.each<[string, (p: PodLike) => void, RegExp, 'baseline' | 'restricted']>([
    ['host network', (p) => (p.spec.hostNetwork = true), /hostNetwork/, 'baseline'],
    ['host PID', (p) => (p.spec.hostPID = true), /hostPID/, 'baseline'],
    [
      'a privileged container',
      (p) => (p.spec.containers[0]!.securityContext!.privileged = true),
      /privileged/,
      'baseline',
    ],
    [
      'SYS_ADMIN added',
      (p) => (p.spec.containers[0]!.securityContext!.capabilities!.add = ['SYS_ADMIN']),
      /capabilities.add: SYS_ADMIN/,
      'baseline',
    ],
    [
      'a hostPath volume',
      (p) => p.spec.volumes!.push({ name: 'h', hostPath: { path: '/var/run' } }),
      /hostPath/,
      'baseline',
    ],
    [
      'a host port',
      (p) => (p.spec.containers[0]!.ports = [{ containerPort: 80, hostPort: 80 }]),
      /hostPort/,
      'baseline',
    ],
    [
      'an unsafe sysctl',
      (p) => (p.spec.securityContext!.sysctls = [{ name: 'kernel.msgmax', value: '1' }]),
      /kernel.msgmax/,
      'baseline',
    ],
    [
      'an unconfined AppArmor annotation',
      (p) =>
        (p.metadata!.annotations!['container.apparmor.security.beta.kubernetes.io/c'] =
          'unconfined'),
      /AppArmor/,
      'baseline',
    ],
    [
      'a custom SELinux user',
      (p) => (p.spec.securityContext!.seLinuxOptions = { user: 'system_u' }),
      /seLinuxOptions.user/,
      'baseline',
    ],
    [
      'an unmasked /proc',
      (p) => (p.spec.containers[0]!.securityContext!.procMount = 'Unmasked'),
      /procMount/,
      'baseline',
    ],
    [
      'an unconfined seccomp profile in a container',
      (p) => (p.spec.containers[0]!.securityContext!.seccompProfile = { type: 'Unconfined' }),
      /seccompProfile.type must not be Unconfined/,
      'baseline',
    ],
    [
      'privilege escalation left unset',
      (p) => delete p.spec.containers[0]!.securityContext!.allowPrivilegeEscalation,
      /allowPrivilegeEscalation must be false/,
      'restricted',
    ],
    [
      'runAsNonRoot set nowhere',
      (p) => delete p.spec.securityContext!.runAsNonRoot,
      /runAsNonRoot must be true/,
      'restricted',
    ],
    [
      'a container that says runAsNonRoot: false',
      (p) => (p.spec.containers[0]!.securityContext!.runAsNonRoot = false),
      /runAsNonRoot must not be false/,
      'restricted',
    ],
    [
      'uid 0',
      (p) => (p.spec.containers[0]!.securityContext!.runAsUser = 0),
      /runAsUser must not be 0/,
      'restricted',
    ],
    [
      'no seccomp profile',
      (p) => delete p.spec.securityContext!.seccompProfile,
      /seccompProfile.type must be RuntimeDefault/,
      'restricted',
    ],
    [
      'capabilities not dropped',
      (p) => (p.spec.containers[0]!.securityContext!.capabilities = {}),
      /drop must include ALL/,
      'restricted',
    ],
    [
      'CHOWN added (baseline allows it, restricted does not)',
      (p) => (p.spec.containers[0]!.securityContext!.capabilities!.add = ['CHOWN']),
      /only NET_BIND_SERVICE/,
      'restricted',
    ],
    [
      'an init container that escalates',
      (p) => (p.spec.initContainers = [{ name: 'init', image: 'x' }]),
      /initContainers\[0\].securityContext.allowPrivilegeEscalation/,
      'restricted',
    ],
    [
      'an NFS volume',
      (p) => p.spec.volumes!.push({ name: 'n', nfs: { server: 'nfs', path: '/' } }),
      /nfs volumes are not allowed/,
      'restricted',
    ],
  ])('refuses %s', (_name, mutate, message, level) => {
    const pod = compliantPod();
    mutate(pod);
    const found = podSecurityViolations(pod, 'restricted');
    expect(
      found.some((v) => message.test(v)),
      found.join('\n'),
    ).toBe(true);
    // A baseline rule is refused at baseline too; a restricted-only one is not.
    expect(podSecurityViolations(pod, 'baseline').length > 0).toBe(level === 'baseline');
  });
});

// ---------------------------------------------------------------------------------------
// Worker pods

/** A pipeline with every kind of worker pod the backend builds. */
function everyKindOfPod() {
  return makePipeline('posture')
    .defaults({ resources: { gpuType: 'h100' } })
    .stage('prepare', (s) => s.kind('prepare'))
    .stage('teacher', (s) =>
      s
        .gpus(8)
        .nodes(2)
        .dependsOn('prepare')
        .set('kubernetes', {
          volumes: { pvc: [{ claimName: 'datasets', mountPath: '/data', readOnly: true }] },
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
    .stage('report', (s) => s.kind('report').dependsOn('selfplay', 'judge'))
    .normalize();
}

function workerPods(settings: KubernetesSettings): { name: string; pod: PodLike }[] {
  return buildAll(everyKindOfPod(), runIdFor('posture'), settings)
    .filter((o): o is V1Job => o.kind === 'Job')
    .map((job) => ({
      name: job.metadata?.name ?? '',
      pod: {
        metadata: job.spec?.template.metadata,
        spec: job.spec?.template.spec as V1PodSpec,
      },
    }));
}

const settingsOf = (overlay: string): KubernetesSettings =>
  settingsFromEnv(dataOf(find(render(`${K8S}/${overlay}`), 'ConfigMap', 'stoker-config')));

describe('worker pods', () => {
  it.each([
    ['the built-in settings', () => kubernetesSettings()],
    ...OVERLAYS.map((o): [string, () => KubernetesSettings] => [
      `the settings of ${o}`,
      () => settingsOf(o),
    ]),
  ])('meet restricted with %s', (_name, settings) => {
    const pods = workerPods(settings());
    expect(pods.length).toBe(5); // prepare, teacher, one selfplay worker, one judge worker, report
    for (const { name, pod } of pods)
      expect(podSecurityViolations(pod, 'restricted'), name).toEqual([]);
  });

  it.each(OVERLAYS)(
    'have a read-only root with emptyDirs at /tmp and HOME unless the stage opts out (%s)',
    (overlay) => {
      const settings = settingsOf(overlay);
      expect(settings.readOnlyRootFilesystem).toBe(true);
      for (const { name, pod } of workerPods(settings)) {
        const [container] = pod.spec.containers;
        const writable = name.startsWith('pool-judge-cpu');
        expect(container?.securityContext?.readOnlyRootFilesystem, name).toBe(!writable);
        const mounted = new Map(
          (container?.volumeMounts ?? []).map((m) => [m.mountPath, m.name] as const),
        );
        for (const { path } of writablePaths(settings)) {
          const volume = pod.spec.volumes?.find((v) => v.name === mounted.get(path));
          if (writable) expect(volume, `${name} ${path}`).toBeUndefined();
          else expect(volume?.emptyDir, `${name} ${path}`).toEqual({});
        }
      }
    },
  );
});

// ---------------------------------------------------------------------------------------
// The install manifests

describe('the install manifests', () => {
  it.each(OVERLAYS)('%s: the namespace enforces restricted', (overlay) => {
    const ns = find(render(`${K8S}/${overlay}`), 'Namespace', 'stoker');
    expect(ns.metadata?.labels).toMatchObject({
      'pod-security.kubernetes.io/enforce': 'restricted',
      'pod-security.kubernetes.io/warn': 'restricted',
    });
  });

  it.each(OVERLAYS)('%s: the controller and Redis pods meet restricted', (overlay) => {
    const workloads = render(`${K8S}/${overlay}`).filter((o: Obj) =>
      ['Deployment', 'StatefulSet', 'DaemonSet', 'Job', 'CronJob'].includes(o.kind ?? ''),
    );
    expect(workloads.map((w) => `${w.kind}/${w.metadata?.name}`).sort()).toEqual([
      'Deployment/stoker-controller',
      'StatefulSet/stoker-redis',
    ]);
    for (const w of workloads) {
      const template = (w as { spec: { template: { metadata?: PodLike['metadata'] } } }).spec
        .template;
      const spec = podSpecsOf(w)[0] as unknown as V1PodSpec;
      expect(
        podSecurityViolations({ metadata: template.metadata, spec }, 'restricted'),
        `${w.kind}/${w.metadata?.name}`,
      ).toEqual([]);
      for (const c of [...spec.containers, ...(spec.initContainers ?? [])])
        expect(c.securityContext?.readOnlyRootFilesystem, c.name).toBe(true);
    }
  });
});
