/**
 * The install manifests under k8s/ (kustomize base + overlays).
 *
 * Every YAML document is validated against the Kubernetes OpenAPI schemas
 * (kubernetes-models) by apiVersion and kind. Kueue's kinds are CRDs that
 * kubernetes-models does not have: they get a structural check of the fields the
 * example uses and of their references (LocalQueue -> ClusterQueue -> ResourceFlavors).
 *
 * Each kustomization is rendered by a small renderer that does what ours use
 * (test/util/kustomize.ts), so that the overlays' results are validated too and a patch
 * whose path does not exist fails here. Where `kubectl` is installed, `kubectl
 * kustomize` renders each one as well, and both must give the same objects.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { ValidatingAdmissionPolicy } from 'kubernetes-models/admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy';
import { ValidatingAdmissionPolicyBinding } from 'kubernetes-models/admissionregistration.k8s.io/v1/ValidatingAdmissionPolicyBinding';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import type { V1Job } from '@kubernetes/client-node';
import { makePoolWorkers, makeTrainJob, runIdFor } from '../builders/k8s.js';
import { makePipeline } from '../builders/spec.js';
import { KEDA, kedaProblems } from '../util/keda.js';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { Role } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role';
import { RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding';
import { PriorityClass } from 'kubernetes-models/scheduling.k8s.io/v1/PriorityClass';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { PersistentVolumeClaim } from 'kubernetes-models/v1/PersistentVolumeClaim';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { isPinnedImage } from '../../orchestrator/backends/kubernetes/images.js';
import { buildAll } from '../../orchestrator/backends/kubernetes/objects.js';
import {
  DEFAULT_GPU_TYPES,
  kubernetesSettings,
  settingsFromEnv,
} from '../../orchestrator/backends/kubernetes/settings.js';
import {
  CLUSTER_SCOPED,
  containersOf,
  dataOf,
  documents,
  find,
  isObj,
  K8S,
  podSpecsOf,
  render,
  yamlFiles,
  type Obj,
} from '../util/kustomize.js';
import { BASE_ACL, fillAcl, readAcl } from '../util/redis-acl.js';
import { address, inCidr, networkPolicies, podIn, type Endpoint } from '../util/network-policy.js';

const OVERLAYS = ['base', 'overlays/kind', 'overlays/production'];

// ---------------------------------------------------------------------------------------
// Reading and validating

type Model = new (data: never) => { validate(): void };
const MODELS = new Map<string, Model>([
  ['v1/Namespace', Namespace],
  ['v1/ServiceAccount', ServiceAccount],
  ['v1/ConfigMap', ConfigMap],
  ['v1/Secret', Secret],
  ['v1/Service', Service],
  ['v1/PersistentVolumeClaim', PersistentVolumeClaim],
  ['apps/v1/Deployment', Deployment],
  ['apps/v1/StatefulSet', StatefulSet],
  ['rbac.authorization.k8s.io/v1/Role', Role],
  ['rbac.authorization.k8s.io/v1/RoleBinding', RoleBinding],
  ['scheduling.k8s.io/v1/PriorityClass', PriorityClass],
  ['networking.k8s.io/v1/NetworkPolicy', NetworkPolicy],
  ['policy/v1/PodDisruptionBudget', PodDisruptionBudget],
  ['admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy', ValidatingAdmissionPolicy],
  [
    'admissionregistration.k8s.io/v1/ValidatingAdmissionPolicyBinding',
    ValidatingAdmissionPolicyBinding,
  ],
]);
const KUEUE = 'kueue.x-k8s.io/v1beta1';
const QUANTITY = /^\d+(\.\d+)?(m|Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$/;

/** Problems with one object: its schema, or for Kueue's CRDs the fields the example uses. */
function problems(obj: Obj): string[] {
  const where = `${obj.kind}/${obj.metadata?.name}`;
  if (obj.apiVersion === KUEUE) return kueueProblems(obj).map((p) => `${where}: ${p}`);
  if (obj.apiVersion === KEDA) return kedaProblems(obj).map((p) => `${where}: ${p}`);
  if (obj.apiVersion === 'monitoring.coreos.com/v1' && obj.kind === 'ServiceMonitor')
    return serviceMonitorProblems(obj).map((p) => `${where}: ${p}`);
  const model = MODELS.get(`${obj.apiVersion}/${obj.kind}`);
  if (!model) return [`${where}: no schema for ${obj.apiVersion} ${obj.kind}`];
  try {
    new model(obj as never).validate();
    return [];
  } catch (err) {
    return [`${where}: ${(err as Error).message}`];
  }
}

/** The Prometheus Operator's CRD is not in kubernetes-models: the fields ours uses. */
function serviceMonitorProblems(obj: Obj): string[] {
  const out: string[] = [];
  const spec = (obj as { spec?: unknown }).spec;
  if (!obj.metadata?.name) out.push('metadata.name is required');
  if (!isObj(spec)) return [...out, 'spec must be a mapping'];
  const selector = spec['selector'];
  if (!isObj(selector) || !isObj(selector['matchLabels']))
    out.push('spec.selector.matchLabels is required');
  const endpoints = spec['endpoints'];
  if (!Array.isArray(endpoints) || endpoints.length === 0) out.push('spec.endpoints is required');
  else
    for (const [i, e] of endpoints.entries()) {
      if (!isObj(e) || typeof e['port'] !== 'string')
        out.push(`spec.endpoints[${i}].port must be a port name`);
      if (isObj(e) && e['path'] !== undefined && typeof e['path'] !== 'string')
        out.push(`spec.endpoints[${i}].path must be a string`);
    }
  return out;
}

function kueueProblems(obj: Obj): string[] {
  const out: string[] = [];
  const spec = (obj as { spec?: unknown }).spec;
  if (!obj.metadata?.name) out.push('metadata.name is required');
  switch (obj.kind) {
    case 'ResourceFlavor':
      if (spec !== undefined && !isObj(spec)) out.push('spec must be a mapping');
      if (isObj(spec) && spec['nodeLabels'] !== undefined && !isObj(spec['nodeLabels']))
        out.push('spec.nodeLabels must be a mapping');
      break;
    case 'ClusterQueue': {
      const groups = isObj(spec) ? spec['resourceGroups'] : undefined;
      if (!Array.isArray(groups) || groups.length === 0) {
        out.push('spec.resourceGroups is required');
        break;
      }
      for (const g of groups as Record<string, unknown>[]) {
        const covered = g['coveredResources'];
        const flavors = g['flavors'];
        if (!Array.isArray(covered) || !Array.isArray(flavors)) {
          out.push('a resource group needs coveredResources and flavors');
          continue;
        }
        for (const f of flavors as Record<string, unknown>[]) {
          const resources = (f['resources'] as Record<string, unknown>[] | undefined) ?? [];
          // Kueue requires each flavor to list the covered resources, in order.
          if (JSON.stringify(resources.map((r) => r['name'])) !== JSON.stringify(covered))
            out.push(`flavor ${String(f['name'])} must list ${covered.join(', ')} in that order`);
          for (const r of resources)
            if (!QUANTITY.test(String(r['nominalQuota'])))
              out.push(`flavor ${String(f['name'])}: ${String(r['name'])} quota is no quantity`);
        }
      }
      break;
    }
    case 'LocalQueue':
      if (!isObj(spec) || typeof spec['clusterQueue'] !== 'string')
        out.push('spec.clusterQueue is required');
      if (!obj.metadata?.namespace) out.push('a LocalQueue is namespaced');
      break;
    default:
      out.push(`unknown Kueue kind ${obj.kind}`);
  }
  if (CLUSTER_SCOPED.has(obj.kind ?? '') && obj.metadata?.namespace)
    out.push('a cluster-scoped object has no namespace');
  return out;
}

// ---------------------------------------------------------------------------------------
// Tests

describe('k8s/ manifests', () => {
  const files = yamlFiles(K8S);

  it('has a base and two overlays', () => {
    for (const dir of OVERLAYS) expect(existsSync(join(K8S, dir, 'kustomization.yaml'))).toBe(true);
  });

  it.each(files.filter((f) => !f.endsWith('kustomization.yaml')).map((f) => [relative(K8S, f), f]))(
    '%s: every document is valid for its apiVersion and kind',
    (_name, file) => {
      const docs = documents(file);
      expect(docs.length).toBeGreaterThan(0);
      expect(docs.flatMap(problems)).toEqual([]);
    },
  );

  it('monitoring: the ServiceMonitor selects the controller Service by its labels and port', () => {
    const [sm] = documents(join(K8S, 'monitoring', 'servicemonitor.yaml')) as Array<
      Obj & {
        spec: {
          selector: { matchLabels: Record<string, string> };
          endpoints: Array<{ port: string }>;
        };
      }
    >;
    const service = documents(join(K8S, 'base', 'controller.yaml')).find(
      (o) => o.kind === 'Service',
    ) as Obj & { spec: { ports: Array<{ name: string }> } };
    for (const [k, v] of Object.entries(sm?.spec.selector.matchLabels ?? {}))
      expect(service.metadata?.labels?.[k]).toBe(v);
    expect(service.spec.ports.map((p) => p.name)).toContain(sm?.spec.endpoints[0]?.port);
  });

  it.each(OVERLAYS)(
    '%s: what the kustomization references exists, and the result is valid',
    (dir) => {
      const objects = render(join(K8S, dir));
      expect(objects.flatMap(problems)).toEqual([]);
      const keys = objects.map(
        (o) => `${o.kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name}`,
      );
      expect(new Set(keys).size).toBe(keys.length);
    },
  );

  const kubectl = (() => {
    try {
      execFileSync('kubectl', ['version', '--client'], { stdio: 'ignore', timeout: 10_000 });
      return true;
    } catch {
      return false;
    }
  })();
  // Without kubectl (the usual CI image) the renderer above stands alone.
  it.skipIf(!kubectl).each(OVERLAYS)(
    '%s: `kubectl kustomize` renders the same objects, all valid',
    (dir) => {
      const out = execFileSync('kubectl', ['kustomize', join(K8S, dir)], {
        encoding: 'utf8',
        timeout: 30_000,
      });
      const objects = parseAllDocuments(out).map((d) => d.toJS() as Obj);
      // kubectl folds a long base64 value over lines; the value is the same.
      for (const o of objects)
        if (o.kind === 'Secret' && isObj(o['data']))
          for (const [k, v] of Object.entries(o['data']))
            o['data'][k] = String(v).replace(/\s+/g, '');
      expect(objects.flatMap(problems)).toEqual([]);
      const names = (list: Obj[]) => list.map((o) => `${o.kind}/${o.metadata?.name}`).sort();
      expect(names(objects)).toEqual(names(render(join(K8S, dir))));
      const images = (list: Obj[]) =>
        list.flatMap(containersOf).map((c) => `${String(c['name'])}=${String(c['image'])}`);
      expect(images(objects).sort()).toEqual(images(render(join(K8S, dir))).sort());
    },
  );

  // Which verbs: exactly those the code uses, derived from its requests in
  // test/kubernetes/rbac.test.ts. Here: where the Role applies, and what it never grants.
  it('gives the controller a Role in its namespace only, with no Secrets and no wildcards', () => {
    const objects = render(join(K8S, 'base'));
    const role = find(objects, 'Role', 'stoker-controller') as Obj & {
      rules: { apiGroups: string[]; resources: string[]; verbs: string[] }[];
    };
    for (const r of role.rules) {
      expect(r.resources).not.toContain('secrets');
      for (const list of [r.apiGroups, r.resources, r.verbs]) expect(list).not.toContain('*');
    }
    expect(objects.some((o) => o.kind === 'ClusterRole' || o.kind === 'ClusterRoleBinding')).toBe(
      false,
    );
    const binding = find(objects, 'RoleBinding', 'stoker-controller') as Obj & {
      subjects: { kind: string; name: string; namespace: string }[];
    };
    expect(binding.subjects).toEqual([
      { kind: 'ServiceAccount', name: 'stoker-controller', namespace: 'stoker' },
    ]);
    expect(find(objects, 'ServiceAccount', 'stoker-worker')).toMatchObject({
      automountServiceAccountToken: false,
    });
  });

  it('runs Redis with AOF and noeviction, on a volume, with its users from the Secret', () => {
    const objects = render(join(K8S, 'base'));
    const conf = dataOf(find(objects, 'ConfigMap', 'stoker-redis-config'))['redis.conf'] ?? '';
    expect(conf).toMatch(/^appendonly yes$/m);
    expect(conf).toMatch(/^maxmemory-policy noeviction$/m);
    expect(conf).toMatch(/^dir \/data$/m);
    const redis = find(objects, 'StatefulSet', 'stoker-redis') as Obj & {
      spec: { volumeClaimTemplates: { metadata: { name: string } }[] };
    };
    expect(redis.spec.volumeClaimTemplates.map((t) => t.metadata.name)).toEqual(['data']);
    const container = containersOf(redis)[0] as {
      command: string[];
      env: { name: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }[];
      volumeMounts: { name: string; mountPath: string }[];
      readinessProbe: { exec: { command: string[] } };
    };
    expect(container.volumeMounts).toContainEqual({ name: 'data', mountPath: '/data' });
    // The users: the ACL file the config names is the Secret's users.acl; no requirepass.
    const aclFile = /^aclfile (\S+)$/m.exec(conf)?.[1] ?? '';
    const mount = container.volumeMounts
      .filter((m) => aclFile.startsWith(`${m.mountPath}/`))
      .sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
    const volume = (podSpecsOf(redis)[0]?.['volumes'] as Record<string, unknown>[]).find(
      (v) => v['name'] === mount?.name,
    );
    expect(volume?.['secret']).toMatchObject({
      secretName: 'stoker-redis',
      items: [{ key: 'users.acl', path: aclFile.slice((mount?.mountPath.length ?? 0) + 1) }],
    });
    expect(container.command.join(' ')).not.toMatch(/requirepass/);
    expect(conf).not.toMatch(/requirepass/);
    // The readiness probe logs in as `worker` and wants PONG itself.
    expect(container.env.find((e) => e.name === 'REDISCLI_AUTH')?.valueFrom).toEqual({
      secretKeyRef: { name: 'stoker-redis', key: 'worker-password' },
    });
    expect(container.readinessProbe.exec.command.join(' ')).toMatch(/--user worker .*= PONG/);
  });

  it.each(OVERLAYS)(
    '%s: the controller settings parse, and agree with the objects they name',
    (dir) => {
      const objects = render(join(K8S, dir));
      const config = dataOf(find(objects, 'ConfigMap', 'stoker-config'));
      const settings = settingsFromEnv(config);
      const controller = find(objects, 'Deployment', 'stoker-controller');
      const pod = podSpecsOf(controller)[0] as {
        serviceAccountName: string;
        volumes: { name: string; persistentVolumeClaim?: { claimName: string } }[];
      };
      const container = containersOf(controller)[0] as {
        args: string[];
        env: { name: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }[];
        volumeMounts: { name: string; mountPath: string }[];
        envFrom: { configMapRef: { name: string } }[];
      };
      expect(container.args).toEqual(['serve']);
      expect(container.envFrom).toEqual([{ configMapRef: { name: 'stoker-config' } }]);
      expect(pod.serviceAccountName).toBe('stoker-controller');

      // One path for the runs volume: STOKER_HOME, the workers' mount, the controller's.
      const runs = pod.volumes.find((v) => v.persistentVolumeClaim)?.persistentVolumeClaim;
      expect(settings.runsVolume).toEqual({
        claimName: runs?.claimName,
        mountPath: config['STOKER_HOME'],
      });
      expect(container.volumeMounts).toContainEqual({
        name: 'runs',
        mountPath: settings.runsVolume?.mountPath,
      });
      find(objects, 'PersistentVolumeClaim', settings.runsVolume?.claimName ?? '');
      // The Redis URLs: one Secret, the controller's user and the workers' own.
      expect(container.env.find((e) => e.name === 'REDIS_URL')?.valueFrom?.secretKeyRef).toEqual({
        name: settings.redisUrlSecret.name,
        key: 'controller-url',
      });
      expect(settings.redisUrlSecret).toEqual({ name: 'stoker-redis', key: 'worker-url' });
      find(objects, 'ServiceAccount', settings.workerServiceAccountName);
      find(objects, 'PriorityClass', settings.priorityClassName ?? '');
    },
  );

  describe('network policy: default deny, and only the flows stoker needs', () => {
    const labelsOf = (objects: Obj[], kind: string, name: string) =>
      (
        find(objects, kind, name) as {
          spec: { template: { metadata: { labels: Record<string, string> } } };
        }
      ).spec.template.metadata.labels;
    const podLabels = (job: V1Job | undefined) => job?.spec?.template.metadata?.labels ?? {};
    /** Pods as stoker builds them: a gang's, a pool worker's, one of a run with egress. */
    const workers = () => {
      const spec = makePipeline('net')
        .label('egress.stoker.dev/public', 'true')
        .stage('gang', (st) => st.gpus(8).nodes(2))
        .normalize();
      const [egressJob] = buildAll(spec, runIdFor('net'), kubernetesSettings()) as V1Job[];
      return {
        gang: podLabels(makeTrainJob().gpus(8).nodes(2).build().job),
        pool: podLabels(makePoolWorkers('gen').gpus(1).build()[0]),
        withEgress: podLabels(egressJob),
      };
    };
    const DNS = ['kube-system', { 'k8s-app': 'kube-dns' }] as const;
    const PUBLIC = address('52.216.8.2'); // an object store
    const METADATA = address('169.254.169.254'); // a cloud's metadata server
    const IN_CLUSTER = address('10.4.0.7');
    const API_SERVER = address('172.18.0.2');

    it.each(OVERLAYS)('%s', (dir) => {
      const objects = render(join(K8S, dir));
      const net = networkPolicies(objects, 'stoker');
      const deny = net.policies.find((p) => p.metadata?.name === 'stoker-default-deny');
      expect(deny?.spec).toEqual({ podSelector: {}, policyTypes: ['Ingress', 'Egress'] });
      const pod = (labels: Record<string, string>) => podIn('stoker', labels);
      const redis = pod(labelsOf(objects, 'StatefulSet', 'stoker-redis'));
      const controller = pod(labelsOf(objects, 'Deployment', 'stoker-controller'));
      const w = workers();
      const gang = pod(w.gang);
      const poolWorker = pod(w.pool);
      const withEgress = pod(w.withEgress);
      const outsider = podIn('default', { app: 'something-else' });
      const dns = podIn(...DNS);
      const production = dir === 'overlays/production';
      // [what, from, to, port, protocol, allowed]
      const flows: [string, Endpoint, Endpoint, number, string, boolean][] = [
        ['controller -> Redis', controller, redis, 6379, 'TCP', true],
        ['gang worker -> Redis', gang, redis, 6379, 'TCP', true],
        ['pool worker -> Redis', poolWorker, redis, 6379, 'TCP', true],
        ['another namespace -> Redis', outsider, redis, 6379, 'TCP', false],
        ['gang worker -> Redis on another port', gang, redis, 6380, 'TCP', false],
        ['every pod -> DNS (UDP)', poolWorker, dns, 53, 'UDP', true],
        ['every pod -> DNS (TCP)', redis, dns, 53, 'TCP', true],
        [
          'a pod -> DNS elsewhere',
          gang,
          podIn('default', { 'k8s-app': 'kube-dns' }),
          53,
          'UDP',
          false,
        ],
        ['controller -> API server', controller, API_SERVER, 6443, 'TCP', true],
        ['gang worker -> API server', gang, API_SERVER, 6443, 'TCP', false],
        ['anyone -> controller HTTP', outsider, controller, 8080, 'TCP', true],
        ['anyone -> controller, another port', outsider, controller, 9000, 'TCP', false],
        ['gang <-> gang, rendezvous', gang, gang, 29500, 'TCP', true],
        ['gang <-> gang, NCCL ephemeral port', gang, gang, 41234, 'TCP', true],
        ['pool worker -> gang', poolWorker, gang, 29500, 'TCP', false],
        ['gang -> pool worker', gang, poolWorker, 8000, 'TCP', false],
        ['controller -> a worker', controller, gang, 29500, 'TCP', false],
        ['Redis -> anywhere', redis, PUBLIC, 443, 'TCP', false],
        ['a worker -> the internet', gang, PUBLIC, 443, 'TCP', false],
        ['a labelled run -> the internet (HTTPS)', withEgress, PUBLIC, 443, 'TCP', production],
        ['a labelled run -> the internet (HTTP)', withEgress, PUBLIC, 80, 'TCP', false],
        ['a labelled run -> the metadata server', withEgress, METADATA, 443, 'TCP', false],
        ['a labelled run -> the cluster network', withEgress, IN_CLUSTER, 443, 'TCP', false],
        ['a labelled run -> another namespace', withEgress, outsider, 443, 'TCP', false],
      ];
      const wrong = flows.filter(
        ([, from, to, port, protocol, allowed]) => net.allows(from, to, port, protocol) !== allowed,
      );
      expect(wrong.map(([what, , , , , allowed]) => `${what}: expected ${allowed}`)).toEqual([]);
    });

    it('the evaluator itself: a policy-free namespace allows everything, a deny-all nothing', () => {
      const a = podIn('x', { app: 'a' });
      const b = podIn('x', { app: 'b' });
      expect(networkPolicies([], 'x').allows(a, b, 1)).toBe(true);
      const denyAll = networkPolicies(
        [{ kind: 'NetworkPolicy', spec: { podSelector: {}, policyTypes: ['Egress'] } }],
        'x',
      );
      expect(denyAll.allows(a, b, 1)).toBe(false);
      expect(denyAll.allows(podIn('y', { app: 'a' }), b, 1)).toBe(true);
      expect(inCidr('10.1.2.3', '10.0.0.0/8')).toBe(true);
      expect(inCidr('11.1.2.3', '10.0.0.0/8')).toBe(false);
    });
  });

  it('runs every pod as non-root with a restricted security context', () => {
    const objects = render(join(K8S, 'base'));
    const workloads = objects.filter((o) => o.kind === 'Deployment' || o.kind === 'StatefulSet');
    expect(workloads).toHaveLength(2);
    for (const w of workloads) {
      expect(podSpecsOf(w)[0]?.['securityContext']).toMatchObject({
        runAsNonRoot: true,
        seccompProfile: { type: 'RuntimeDefault' },
      });
      for (const c of containersOf(w)) {
        expect(c['securityContext']).toEqual({
          allowPrivilegeEscalation: false,
          readOnlyRootFilesystem: true,
          capabilities: { drop: ['ALL'] },
        });
        expect(c['resources']).toMatchObject({
          requests: {},
          limits: { memory: expect.any(String) },
        });
      }
    }
  });

  it('kind overlay: one controller, images never pulled, small volumes, a consistent dev Secret', () => {
    const objects = render(join(K8S, 'overlays/kind'));
    const controller = find(objects, 'Deployment', 'stoker-controller') as Obj & {
      spec: { replicas: number };
    };
    expect(controller.spec.replicas).toBe(1);
    expect(containersOf(controller)[0]).toMatchObject({
      image: 'stoker:kind',
      imagePullPolicy: 'IfNotPresent',
    });
    const settings = settingsFromEnv(dataOf(find(objects, 'ConfigMap', 'stoker-config')));
    expect(settings).toMatchObject({ workerImage: 'stoker:kind', imagePullPolicy: 'IfNotPresent' });
    expect(find(objects, 'PersistentVolumeClaim', 'stoker-runs')).toMatchObject({
      spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '2Gi' } } },
    });
    // The dev Redis Secret hangs together: its users.acl is the base's file with the
    // SHA-256 of the passwords its URLs carry, and the probe's password is the worker's.
    const secret = dataOf(find(objects, 'Secret', 'stoker-redis'));
    const decode = (v: string | undefined) => Buffer.from(v ?? '', 'base64').toString();
    const controllerUrl = new URL(decode(secret['controller-url']));
    const workerUrl = new URL(decode(secret['worker-url']));
    expect([controllerUrl.username, controllerUrl.host]).toEqual([
      'controller',
      'stoker-redis:6379',
    ]);
    expect([workerUrl.username, workerUrl.host]).toEqual(['worker', 'stoker-redis:6379']);
    expect(decode(secret['worker-password'])).toBe(workerUrl.password);
    expect(decode(secret['users.acl'])).toBe(
      fillAcl(readAcl(BASE_ACL), {
        controller: controllerUrl.password,
        worker: workerUrl.password,
      }),
    );
  });

  it('production overlay: the Kueue example hangs together and matches the GPU node label', () => {
    const objects = render(join(K8S, 'overlays/production'));
    const local = find(objects, 'LocalQueue', 'stoker') as Obj & { spec: { clusterQueue: string } };
    expect(local.metadata?.namespace).toBe('stoker');
    const cluster = find(objects, 'ClusterQueue', local.spec.clusterQueue) as Obj & {
      spec: { resourceGroups: { flavors: { name: string }[] }[] };
    };
    const flavors = cluster.spec.resourceGroups.flatMap((g) => g.flavors.map((f) => f.name));
    for (const f of flavors) find(objects, 'ResourceFlavor', f);
    const h100 = find(objects, 'ResourceFlavor', 'h100') as Obj & {
      spec: { nodeLabels: Record<string, string> };
    };
    const settings = settingsFromEnv(dataOf(find(objects, 'ConfigMap', 'stoker-config')));
    expect(h100.spec.nodeLabels).toEqual({ [settings.gpuNodeLabel]: DEFAULT_GPU_TYPES['h100'] });
    expect(settings.workerImage).toMatch(/stoker-worker-gpu@sha256:/);
    expect(objects.some((o) => o.kind === 'Secret')).toBe(false); // created out of band
  });

  it('production overlay: every image is pinned by digest, and the controller requires it of workers', () => {
    const objects = render(join(K8S, 'overlays/production'));
    const images = objects.flatMap(containersOf).map((c) => String(c['image']));
    expect(images.length).toBeGreaterThan(1);
    for (const image of images) expect(isPinnedImage(image), image).toBe(true);
    const settings = settingsFromEnv(dataOf(find(objects, 'ConfigMap', 'stoker-config')));
    expect(settings.requireImageDigests).toBe(true);
    expect(isPinnedImage(settings.workerImage)).toBe(true);
    // The other overlays run tags (kind loads its images into the node).
    const kind = settingsFromEnv(
      dataOf(find(render(join(K8S, 'overlays/kind')), 'ConfigMap', 'stoker-config')),
    );
    expect(kind.requireImageDigests).toBe(false);
  });

  it('documents each kustomization (a comment says how to use it)', () => {
    for (const dir of OVERLAYS) {
      const text = readFileSync(join(K8S, dir, 'kustomization.yaml'), 'utf8');
      expect(text.startsWith('#')).toBe(true);
    }
    expect(dirname(files[0] ?? K8S).startsWith(K8S)).toBe(true);
  });
});
