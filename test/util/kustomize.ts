/**
 * The install manifests under k8s/ as the cluster would get them: a small renderer of
 * the kustomize features k8s/ uses (resources, namespace, labels, images with tags or
 * digests, JSON 6902 patches, secretGenerator literals and files), so that tests can
 * check the rendered base and overlays without kubectl. test/unit/k8s-manifests.test.ts
 * compares its output with `kubectl kustomize` where kubectl is installed.
 *
 *   const objects = render(join(K8S, 'overlays/kind'));
 *   const redis = find(objects, 'StatefulSet', 'stoker-redis');
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join, relative, resolve } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { packageRoot } from '../../common/paths.js';

export type Obj = Record<string, unknown> & {
  apiVersion?: string;
  kind?: string;
  metadata?: {
    name?: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
};

export const K8S = join(packageRoot(), 'k8s');
export const CLUSTER_SCOPED = new Set([
  'Namespace',
  'PriorityClass',
  'ClusterQueue',
  'ResourceFlavor',
  'ValidatingAdmissionPolicy',
  'ValidatingAdmissionPolicyBinding',
]);

export const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

export function yamlFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return yamlFiles(p);
    return /\.ya?ml$/.test(name) ? [p] : [];
  });
}

export function documents(file: string): Obj[] {
  return parseAllDocuments(readFileSync(file, 'utf8')).flatMap((doc) => {
    if (doc.errors.length) throw new Error(`${file}: ${doc.errors[0]?.message}`);
    const value = doc.toJS() as Obj | null;
    return value === null ? [] : [value];
  });
}

export interface Kustomization {
  namespace?: string;
  resources?: string[];
  labels?: { pairs: Record<string, string> }[];
  images?: { name: string; newName?: string; newTag?: string; digest?: string }[];
  patches?: { target: { kind: string; name: string }; patch: string }[];
  secretGenerator?: {
    name: string;
    namespace?: string;
    literals?: string[];
    /** `key=path` or `path` (the key is the file's name), relative to the kustomization. */
    files?: string[];
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

export function kustomization(dir: string): Kustomization {
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

export function podSpecsOf(obj: Obj): Record<string, unknown>[] {
  const template = (obj as { spec?: { template?: { spec?: Record<string, unknown> } } }).spec
    ?.template?.spec;
  return template ? [template] : [];
}

export function containersOf(obj: Obj): Record<string, unknown>[] {
  return podSpecsOf(obj).flatMap(
    (spec) => (spec['containers'] as Record<string, unknown>[] | undefined) ?? [],
  );
}

export function render(dir: string): Obj[] {
  const k = kustomization(dir);
  let objects: Obj[] = [];
  for (const r of k.resources ?? []) {
    const p = resolve(dir, r);
    if (!existsSync(p)) throw new Error(`${relative(K8S, dir)}: resource ${r} does not exist`);
    objects.push(...(statSync(p).isDirectory() ? render(p) : documents(p)));
  }
  objects = structuredClone(objects);
  for (const g of k.secretGenerator ?? []) {
    const data = Object.fromEntries([
      ...(g.files ?? []).map((f): [string, string] => {
        const [key, path = key] = f.includes('=') ? f.split('=') : [basename(f), f];
        const file = resolve(dir, path ?? '');
        if (!existsSync(file))
          throw new Error(`${relative(K8S, dir)}: secretGenerator file ${path} does not exist`);
        return [key ?? f, readFileSync(file, 'utf8')];
      }),
      ...(g.literals ?? []).map((l): [string, string] => [
        l.slice(0, l.indexOf('=')),
        l.slice(l.indexOf('=') + 1),
      ]),
    ]);
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
      // A digest replaces the tag (kustomize writes name@digest).
      c['image'] = image.digest
        ? `${image.newName ?? name}@${image.digest}`
        : `${image.newName ?? name}:${tag}`;
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

export const find = (objects: Obj[], kind: string, name: string): Obj => {
  const found = objects.find((o) => o.kind === kind && o.metadata?.name === name);
  if (!found) throw new Error(`no ${kind}/${name}`);
  return found;
};

export const dataOf = (obj: Obj): Record<string, string> =>
  ((obj as { data?: Record<string, string> }).data ?? {}) as Record<string, string>;
