/**
 * The install manifests under k8s/ (kustomize base + overlays).
 *
 * Every YAML document is validated against the Kubernetes OpenAPI schemas
 * (kubernetes-models) by apiVersion and kind. Kueue's kinds are CRDs that
 * kubernetes-models does not have: they get a structural check of the fields the
 * example uses and of their references (LocalQueue -> ClusterQueue -> ResourceFlavors).
 *
 * Each kustomization is rendered by a small renderer that does what ours use (resources,
 * namespace, labels, images, JSON 6902 patches, secretGenerator literals), so that the
 * overlays' results are validated too and a patch whose path does not exist fails
 * here. Where `kubectl` is installed, `kubectl kustomize` renders each one as well, and
 * both must give the same objects.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { makeTrainJob } from '../builders/k8s.js';
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
import { packageRoot } from '../../common/paths.js';
import {
  DEFAULT_GPU_TYPES,
  settingsFromEnv,
} from '../../orchestrator/backends/kubernetes/settings.js';

type Obj = Record<string, unknown> & {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; labels?: Record<string, string> };
};

const K8S = join(packageRoot(), 'k8s');
const OVERLAYS = ['base', 'overlays/kind', 'overlays/production'];

// ---------------------------------------------------------------------------------------
// Reading and validating

function yamlFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return yamlFiles(p);
    return /\.ya?ml$/.test(name) ? [p] : [];
  });
}

function documents(file: string): Obj[] {
  return parseAllDocuments(readFileSync(file, 'utf8')).flatMap((doc) => {
    if (doc.errors.length) throw new Error(`${file}: ${doc.errors[0]?.message}`);
    const value = doc.toJS() as Obj | null;
    return value === null ? [] : [value];
  });
}

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
]);
const KUEUE = 'kueue.x-k8s.io/v1beta1';
const CLUSTER_SCOPED = new Set(['Namespace', 'PriorityClass', 'ClusterQueue', 'ResourceFlavor']);

const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
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
// Rendering a kustomization (the features k8s/ uses)

interface Kustomization {
  namespace?: string;
  resources?: string[];
  labels?: { pairs: Record<string, string> }[];
  images?: { name: string; newName?: string; newTag?: string }[];
  patches?: { target: { kind: string; name: string }; patch: string }[];
  secretGenerator?: {
    name: string;
    namespace?: string;
    literals?: string[];
    options?: { disableNameSuffixHash?: boolean };
  }[];
}

const KNOWN_FIELDS = new Set([
  'apiVersion',
  'kind',
  'namespace',
  'resources',
  'labels',
  'images',
  'patches',
  'secretGenerator',
]);

function kustomization(dir: string): Kustomization {
  const [doc] = documents(join(dir, 'kustomization.yaml'));
  if (!doc) throw new Error(`${dir}: empty kustomization.yaml`);
  const unknown = Object.keys(doc).filter((k) => !KNOWN_FIELDS.has(k));
  if (unknown.length) throw new Error(`${dir}: the test renderer does not know ${unknown}`);
  return doc as Kustomization;
}

function applyPatchOp(target: unknown, op: { op: string; path: string; value?: unknown }): void {
  const parts = op.path
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  const last = parts.pop();
  if (last === undefined) throw new Error(`patch path ${op.path}`);
  let parent: unknown = target;
  for (const p of parts) {
    parent = Array.isArray(parent) ? parent[Number(p)] : isObj(parent) ? parent[p] : undefined;
    if (parent === undefined) throw new Error(`patch path ${op.path}: ${p} does not exist`);
  }
  const list = Array.isArray(parent) ? (parent as unknown[]) : undefined;
  const map = isObj(parent) ? parent : undefined;
  if (!list && !map) throw new Error(`patch path ${op.path}: the parent is a scalar`);
  const exists = list ? Number(last) < list.length : last in (map ?? {});
  switch (op.op) {
    case 'replace':
      if (!exists) throw new Error(`patch path ${op.path} does not exist to replace`);
      if (list) list[Number(last)] = op.value;
      else if (map) map[last] = op.value;
      return;
    case 'add':
      if (list) list.splice(last === '-' ? list.length : Number(last), 0, op.value);
      else if (map) map[last] = op.value;
      return;
    case 'remove':
      if (!exists) throw new Error(`patch path ${op.path} does not exist to remove`);
      if (list) list.splice(Number(last), 1);
      else if (map) delete map[last];
      return;
    default:
      throw new Error(`patch op ${op.op} is not used here`);
  }
}

function podSpecsOf(obj: Obj): Record<string, unknown>[] {
  const template = (obj as { spec?: { template?: { spec?: Record<string, unknown> } } }).spec
    ?.template?.spec;
  return template ? [template] : [];
}

function containersOf(obj: Obj): Record<string, unknown>[] {
  return podSpecsOf(obj).flatMap(
    (spec) => (spec['containers'] as Record<string, unknown>[] | undefined) ?? [],
  );
}

function render(dir: string): Obj[] {
  const k = kustomization(dir);
  let objects: Obj[] = [];
  for (const r of k.resources ?? []) {
    const p = resolve(dir, r);
    if (!existsSync(p)) throw new Error(`${relative(K8S, dir)}: resource ${r} does not exist`);
    objects.push(...(statSync(p).isDirectory() ? render(p) : documents(p)));
  }
  objects = structuredClone(objects);
  for (const g of k.secretGenerator ?? []) {
    const data = Object.fromEntries(
      (g.literals ?? []).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    objects.push({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: g.name, ...(g.namespace ? { namespace: g.namespace } : {}) },
      type: 'Opaque',
      data: Object.fromEntries(
        Object.entries(data).map(([key, v]) => [key, Buffer.from(v).toString('base64')]),
      ),
    });
  }
  for (const obj of objects) {
    if (k.namespace && !CLUSTER_SCOPED.has(obj.kind ?? '') && obj.metadata)
      obj.metadata.namespace = k.namespace;
    for (const l of k.labels ?? []) {
      if (obj.metadata) obj.metadata.labels = { ...obj.metadata.labels, ...l.pairs };
    }
  }
  for (const image of k.images ?? []) {
    let used = false;
    for (const c of objects.flatMap(containersOf)) {
      const ref = String(c['image']);
      const name = ref.replace(/:[^:/]+$/, '');
      if (name !== image.name) continue;
      used = true;
      const tag = image.newTag ?? ref.slice(name.length + 1);
      c['image'] = `${image.newName ?? name}:${tag}`;
    }
    if (!used) throw new Error(`${relative(K8S, dir)}: images: no container uses ${image.name}`);
  }
  for (const p of k.patches ?? []) {
    const targets = objects.filter(
      (o) => o.kind === p.target.kind && o.metadata?.name === p.target.name,
    );
    if (targets.length !== 1)
      throw new Error(`${relative(K8S, dir)}: patch target ${p.target.kind}/${p.target.name}`);
    const [doc] = parseAllDocuments(p.patch);
    const ops = doc?.toJS() as { op: string; path: string; value?: unknown }[];
    for (const op of ops) applyPatchOp(targets[0], op);
  }
  return objects;
}

const find = (objects: Obj[], kind: string, name: string): Obj => {
  const found = objects.find((o) => o.kind === kind && o.metadata?.name === name);
  if (!found) throw new Error(`no ${kind}/${name}`);
  return found;
};

const dataOf = (obj: Obj): Record<string, string> =>
  ((obj as { data?: Record<string, string> }).data ?? {}) as Record<string, string>;

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
      expect(objects.flatMap(problems)).toEqual([]);
      const names = (list: Obj[]) => list.map((o) => `${o.kind}/${o.metadata?.name}`).sort();
      expect(names(objects)).toEqual(names(render(join(K8S, dir))));
    },
  );

  it('gives the controller only the verbs it uses, in its namespace, and no Secrets', () => {
    const objects = render(join(K8S, 'base'));
    const role = find(objects, 'Role', 'stoker-controller') as Obj & {
      rules: { apiGroups: string[]; resources: string[]; verbs: string[] }[];
    };
    const rules = Object.fromEntries(
      role.rules.flatMap((r) =>
        r.resources.map((res) => [`${r.apiGroups.join(',')}/${res}`, [...r.verbs].sort()]),
      ),
    );
    expect(rules).toEqual({
      'batch/jobs': ['create', 'delete', 'get', 'list', 'watch'],
      '/pods': ['delete', 'get', 'list', 'watch'],
      '/pods/log': ['get'],
      '/services': ['create', 'delete', 'get', 'list', 'watch'],
      '/events': ['list', 'watch'],
    });
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

  it('runs Redis with AOF and noeviction, on a volume, with its password from the Secret', () => {
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
      env: { name: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }[];
      volumeMounts: { name: string; mountPath: string }[];
    };
    expect(container.env.find((e) => e.name === 'REDIS_PASSWORD')?.valueFrom).toEqual({
      secretKeyRef: { name: 'stoker-redis', key: 'password' },
    });
    expect(container.volumeMounts).toContainEqual({ name: 'data', mountPath: '/data' });
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
      // The Redis URL: the controller's and the workers' come from the same Secret key.
      expect(container.env.find((e) => e.name === 'REDIS_URL')?.valueFrom?.secretKeyRef).toEqual(
        settings.redisUrlSecret,
      );
      find(objects, 'ServiceAccount', settings.workerServiceAccountName);
      find(objects, 'PriorityClass', settings.priorityClassName ?? '');
    },
  );

  it('denies ingress by default, and admits only the flows stoker needs, to the pods that serve them', () => {
    const objects = render(join(K8S, 'base'));
    type Policy = Obj & {
      spec: {
        podSelector: { matchLabels?: Record<string, string> };
        policyTypes: string[];
        ingress?: Array<{
          from?: Array<{ podSelector?: { matchLabels?: Record<string, string> } }>;
          ports?: Array<{ port: number }>;
        }>;
      };
    };
    const policies = objects.filter((o) => o.kind === 'NetworkPolicy') as Policy[];
    const selects = (
      sel: { matchLabels?: Record<string, string> } | undefined,
      labels: Record<string, string>,
    ) => Object.entries(sel?.matchLabels ?? {}).every(([k, v]) => labels[k] === v);
    const deny = policies.find(
      (p) => Object.keys(p.spec.podSelector.matchLabels ?? {}).length === 0,
    );
    expect(deny?.spec).toEqual({ podSelector: {}, policyTypes: ['Ingress'] });
    /** The ports `to` admits from a pod with `fromLabels` (null: any port). */
    const admitted = (to: Record<string, string>, fromLabels: Record<string, string>) =>
      policies
        .filter((p) => p !== deny && selects(p.spec.podSelector, to))
        .flatMap((p) => p.spec.ingress ?? [])
        .filter((r) => !r.from || r.from.some((f) => selects(f.podSelector, fromLabels)))
        .flatMap((r) => (r.ports ? r.ports.map((x) => x.port) : [null]));
    const labelsOf = (kind: string, name: string) =>
      (
        find(objects, kind, name) as {
          spec: { template: { metadata: { labels: Record<string, string> } } };
        }
      ).spec.template.metadata.labels;
    const redis = labelsOf('StatefulSet', 'stoker-redis');
    const controller = labelsOf('Deployment', 'stoker-controller');
    const worker =
      makeTrainJob().gpus(8).nodes(2).build().job.spec?.template.metadata?.labels ?? {};
    const outsider = { app: 'something-else' };
    expect(admitted(redis, controller)).toEqual([6379]);
    expect(admitted(redis, worker)).toEqual([6379]);
    expect(admitted(redis, outsider)).toEqual([]);
    expect(admitted(controller, outsider)).toEqual([8080]);
    expect(admitted(worker, worker)).toEqual([null]); // a gang's rendezvous and NCCL ports
    expect(admitted(worker, outsider)).toEqual([]);
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
    const secret = dataOf(find(objects, 'Secret', 'stoker-redis'));
    const decode = (v: string | undefined) => Buffer.from(v ?? '', 'base64').toString();
    expect(decode(secret['url'])).toBe(`redis://:${decode(secret['password'])}@stoker-redis:6379`);
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
    expect(settings.workerImage).toMatch(/stoker-worker-gpu:/);
    expect(objects.some((o) => o.kind === 'Secret')).toBe(false); // created out of band
  });

  it('documents each kustomization (a comment says how to use it)', () => {
    for (const dir of OVERLAYS) {
      const text = readFileSync(join(K8S, dir, 'kustomization.yaml'), 'utf8');
      expect(text.startsWith('#')).toBe(true);
    }
    expect(dirname(files[0] ?? K8S).startsWith(K8S)).toBe(true);
  });
});
