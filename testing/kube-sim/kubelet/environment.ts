/**
 * A container's environment and the names in it, as the simulated node resolves them:
 *
 * - Host variables under everything (inheritEnv: 'all' or names; default PATH, HOME,
 *   TMPDIR, LANG, PYTHONPATH, VIRTUAL_ENV, ...), then extraEnv, then what a kubelet sets
 *   (HOSTNAME, KUBERNETES_SERVICE_HOST/PORT, NVIDIA_VISIBLE_DEVICES from the GPUs the pod
 *   got, CUDA_VISIBLE_DEVICES too with exposeGpus) and FAKE_KUBELET=1.
 * - The container's own: envFrom (Secrets, ConfigMaps, with a prefix), then env in order
 *   (value with `$(VAR)` expansion; valueFrom secretKeyRef, configMapKeyRef, fieldRef,
 *   resourceFieldRef). A missing Secret, ConfigMap or key that is not optional is a
 *   ConfigError with the real kubelet's message.
 * - In the container's own values, pod and Service DNS names become 127.0.0.1
 *   (rewriteNames: `HOST.SUBDOMAIN[.NS[.svc[.cluster.local]]]`, `SVC.NS[.svc...]`, for
 *   Services that exist) and mount paths become host directories (volumes.ts).
 */
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IEnvVarSource } from 'kubernetes-models/v1/EnvVarSource';
import type { IPod } from 'kubernetes-models/v1/Pod';
import { apiError, isPlainObject } from '../objects/meta.js';
import type { FakeKubeStore } from '../store/store.js';
import { ConfigError, type KubeletContext, type PodRun } from './types.js';
import { escapeRe, remapPaths } from './volumes.js';

const DEFAULT_INHERIT = [
  'PATH',
  'HOME',
  'USER',
  'SHELL',
  'TMPDIR',
  'TEMP',
  'TMP',
  'LANG',
  'LC_ALL',
  'TZ',
  'NODE_PATH',
  'PYTHONPATH',
  'PYTHONHOME',
  'VIRTUAL_ENV',
  'CONDA_PREFIX',
  'LD_LIBRARY_PATH',
];

/** Kubernetes `$(VAR)` expansion (`$$` escapes, unknown references stay as written). */
/** Kubernetes `$(VAR)` expansion (`$$` escapes, unknown references stay as written). */
export function expandVars(s: string, env: Record<string, string>): string {
  return s.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (m, name: string | undefined) => {
    if (m === '$$') return '$';
    return name !== undefined && Object.prototype.hasOwnProperty.call(env, name) ? env[name]! : m;
  });
}

/** Pod and Service DNS names in s as 127.0.0.1 (for the Services that exist in ns). */
export function rewriteNames(
  ctx: Pick<KubeletContext, 'store' | 'opts'>,
  s: string,
  ns: string,
): string {
  if (ctx.opts.resolveServiceNames === false) return s;
  let out = s;
  for (const svc of ctx.store.list('services', { namespace: ns })) {
    const n = escapeRe(svc.metadata.name!);
    const nsRe = escapeRe(ns);
    // HOST.SVC[.NS[.svc[.cluster.local]]] or SVC.NS[.svc[.cluster.local]]
    const re = new RegExp(
      `(?<![\\w.-])(?:[a-z0-9](?:[-a-z0-9]*[a-z0-9])?\\.${n}(?:\\.${nsRe}(?:\\.svc(?:\\.cluster\\.local)?)?)?|${n}\\.${nsRe}(?:\\.svc(?:\\.cluster\\.local)?)?)(?![\\w-]|\\.[\\w])`,
      'g',
    );
    out = out.replace(re, '127.0.0.1');
  }
  return out;
}

/** The environment a container of the pod run starts with. */
export function containerEnvironment(
  ctx: KubeletContext,
  pod: IPod,
  c: IContainer,
  run: PodRun,
): Record<string, string> {
  const ns = run.namespace;
  const env = hostEnvironment(ctx, pod, run);
  const own: Record<string, string> = {};
  addEnvFrom(ctx.store, ns, c, own);
  for (const e of c.env ?? []) {
    if (e.valueFrom === undefined) {
      own[e.name] = expandVars(e.value ?? '', { ...env, ...own });
      continue;
    }
    const v = valueFrom(ctx.store, ns, pod, c, e.valueFrom);
    if (v !== undefined) own[e.name] = v;
  }
  const out = { ...env, ...own };
  for (const k of Object.keys(own)) out[k] = remapPaths(rewriteNames(ctx, own[k]!, ns), run);
  return out;
}

/** What every container of the pod gets before its own variables. */
function hostEnvironment(ctx: KubeletContext, pod: IPod, run: PodRun): Record<string, string> {
  const env: Record<string, string> = {};
  const inherit = ctx.opts.inheritEnv ?? DEFAULT_INHERIT;
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && (inherit === 'all' || inherit.includes(k))) env[k] = v;
  }
  Object.assign(env, ctx.opts.extraEnv ?? {});
  env['HOSTNAME'] = pod.spec?.hostname ?? pod.metadata!.name!;
  env['FAKE_KUBELET'] = '1';
  env['KUBERNETES_SERVICE_HOST'] = '127.0.0.1';
  env['KUBERNETES_SERVICE_PORT'] = String(ctx.apiPort);
  env['NVIDIA_VISIBLE_DEVICES'] = run.gpuIds.length ? run.gpuIds.join(',') : 'void';
  if (ctx.opts.exposeGpus) env['CUDA_VISIBLE_DEVICES'] = run.gpuIds.join(',');
  return env;
}

/** envFrom: every key of the Secrets and ConfigMaps named, with their prefix. */
function addEnvFrom(
  store: FakeKubeStore,
  ns: string,
  c: IContainer,
  own: Record<string, string>,
): void {
  for (const from of c.envFrom ?? []) {
    const prefix = from.prefix ?? '';
    if (from.secretRef) {
      const s = store.get('secrets', ns, from.secretRef.name ?? '');
      if (!s) {
        if (from.secretRef.optional) continue;
        throw new ConfigError(`secret "${from.secretRef.name ?? ''}" not found`);
      }
      for (const [k, v] of Object.entries(isPlainObject(s['data']) ? s['data'] : {}))
        own[prefix + k] = Buffer.from(String(v), 'base64').toString('utf8');
    }
    if (from.configMapRef) {
      const cm = store.get('configmaps', ns, from.configMapRef.name ?? '');
      if (!cm) {
        if (from.configMapRef.optional) continue;
        throw new ConfigError(`configmap "${from.configMapRef.name ?? ''}" not found`);
      }
      for (const [k, v] of Object.entries(isPlainObject(cm['data']) ? cm['data'] : {}))
        own[prefix + k] = String(v);
    }
  }
}

/** One env var's valueFrom; undefined when an optional source is missing (no variable). */
function valueFrom(
  store: FakeKubeStore,
  ns: string,
  pod: IPod,
  c: IContainer,
  vf: IEnvVarSource,
): string | undefined {
  if (vf.secretKeyRef) {
    const ref = vf.secretKeyRef;
    const s = store.get('secrets', ns, ref.name ?? '');
    if (!s) {
      if (ref.optional) return undefined;
      throw new ConfigError(`secret "${ref.name ?? ''}" not found`);
    }
    const data = isPlainObject(s['data']) ? s['data'] : {};
    if (data[ref.key] === undefined) {
      if (ref.optional) return undefined;
      throw new ConfigError(`couldn't find key ${ref.key} in Secret ${ns}/${ref.name ?? ''}`);
    }
    return Buffer.from(String(data[ref.key]), 'base64').toString('utf8');
  } else if (vf.configMapKeyRef) {
    const ref = vf.configMapKeyRef;
    const cm = store.get('configmaps', ns, ref.name ?? '');
    if (!cm) {
      if (ref.optional) return undefined;
      throw new ConfigError(`configmap "${ref.name ?? ''}" not found`);
    }
    const data = isPlainObject(cm['data']) ? cm['data'] : {};
    if (data[ref.key] === undefined) {
      if (ref.optional) return undefined;
      throw new ConfigError(`couldn't find key ${ref.key} in ConfigMap ${ns}/${ref.name ?? ''}`);
    }
    return String(data[ref.key]);
  } else if (vf.fieldRef) {
    return fieldRef(pod, vf.fieldRef.fieldPath);
  } else if (vf.resourceFieldRef) {
    const r = c.resources;
    const res = vf.resourceFieldRef.resource;
    const [kind, what] = res.split('.') as [string, string];
    const src = kind === 'limits' ? r?.limits : r?.requests;
    return String(src?.[what] ?? '0');
  }
  return undefined;
}

function fieldRef(pod: IPod, path: string): string {
  const m = path.match(/^metadata\.(labels|annotations)\['(.*)'\]$/);
  if (m) {
    const map = m[1] === 'labels' ? pod.metadata?.labels : pod.metadata?.annotations;
    return map?.[m[2]!] ?? '';
  }
  switch (path) {
    case 'metadata.name':
      return pod.metadata?.name ?? '';
    case 'metadata.namespace':
      return pod.metadata?.namespace ?? '';
    case 'metadata.uid':
      return pod.metadata?.uid ?? '';
    case 'spec.nodeName':
      return pod.spec?.nodeName ?? '';
    case 'spec.serviceAccountName':
      return pod.spec?.serviceAccountName ?? 'default';
    case 'status.hostIP':
    case 'status.hostIPs':
    case 'status.podIP':
    case 'status.podIPs':
      return '127.0.0.1';
    default:
      throw apiError(400, `unsupported fieldRef ${path}`);
  }
}
