/**
 * Volumes on the simulated node, where a pod's paths are host directories:
 *
 * - bindClaim: the volume provisioner: a new PersistentVolumeClaim is Bound at once (a
 *   volumeName, its access modes, the requested capacity).
 * - setUpVolumes: one host directory per volume under mountRoot (a claim's,
 *   mountRoot/pvc/NS/CLAIM, is shared by every pod that mounts it; emptyDir and the
 *   files of a Secret or ConfigMap are the pod's own: a ConfigMap's data and binaryData,
 *   every key or the `items` listed at their paths; hostPath is the path itself), and
 *   where each container's volumeMounts land (subPath included). A missing Secret or
 *   ConfigMap that is not optional is a ConfigError (`MountVolume.SetUp failed ...`).
 * - remapPaths: a mountPath where it prefixes a path in a string (env values, command,
 *   args, workingDir) becomes the host directory it maps to.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { IPod } from 'kubernetes-models/v1/Pod';
import { type KubeObject, isPlainObject } from '../objects/meta.js';
import type { FakeKubeStore } from '../store/store.js';
import { ConfigError, type PodRun } from './types.js';

export interface Mount {
  mountPath: string;
  hostPath: string;
}

export function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export function bindClaim(store: FakeKubeStore, claim: KubeObject): void {
  const status = isPlainObject(claim['status']) ? claim['status'] : {};
  if (status['phase'] === 'Bound') return;
  store.mutate(
    'persistentvolumeclaims',
    claim.metadata.namespace,
    claim.metadata.name!,
    (c: KubeObject) => {
      const spec = isPlainObject(c['spec']) ? c['spec'] : {};
      const req =
        isPlainObject(spec['resources']) && isPlainObject(spec['resources']['requests'])
          ? spec['resources']['requests']
          : {};
      if (!spec['volumeName']) spec['volumeName'] = `pvc-${c.metadata.uid ?? ''}`;
      c['spec'] = spec;
      c['status'] = {
        phase: 'Bound',
        accessModes: Array.isArray(spec['accessModes']) ? spec['accessModes'] : ['ReadWriteOnce'],
        capacity: { storage: typeof req['storage'] === 'string' ? req['storage'] : '1Gi' },
      };
    },
  );
}

/** Host directories for the pod's volumes; its mounts, longest mountPath first. */
export function setUpVolumes(
  store: FakeKubeStore,
  mountRoot: string,
  pod: IPod,
  run: PodRun,
): Mount[] {
  const ns = run.namespace;
  const volumes = new Map<string, string>();
  for (const v of pod.spec?.volumes ?? []) {
    let host: string;
    if (v.persistentVolumeClaim) {
      host = join(mountRoot, 'pvc', ns, v.persistentVolumeClaim.claimName);
    } else if (v.hostPath) {
      host = v.hostPath.path;
      if (v.hostPath.type === 'DirectoryOrCreate') mkdirSync(host, { recursive: true });
    } else if (v.secret) {
      host = join(mountRoot, 'pods', run.uid, 'volumes', v.name);
      const s = store.get('secrets', ns, v.secret.secretName ?? '');
      if (!s && !v.secret.optional)
        throw new ConfigError(
          `MountVolume.SetUp failed for volume "${v.name}" : secret "${v.secret.secretName ?? ''}" not found`,
        );
      mkdirSync(host, { recursive: true });
      const data = s && isPlainObject(s['data']) ? s['data'] : {};
      for (const [k, val] of Object.entries(data))
        writeFileSync(join(host, k), Buffer.from(String(val), 'base64'));
    } else if (v.configMap) {
      host = join(mountRoot, 'pods', run.uid, 'volumes', v.name);
      const cm = store.get('configmaps', ns, v.configMap.name ?? '');
      if (!cm && !v.configMap.optional)
        throw new ConfigError(
          `MountVolume.SetUp failed for volume "${v.name}" : configmap "${v.configMap.name ?? ''}" not found`,
        );
      mkdirSync(host, { recursive: true });
      const files = new Map<string, Buffer>();
      const data = cm && isPlainObject(cm['data']) ? cm['data'] : {};
      for (const [k, val] of Object.entries(data)) files.set(k, Buffer.from(String(val), 'utf8'));
      const binary = cm && isPlainObject(cm['binaryData']) ? cm['binaryData'] : {};
      for (const [k, val] of Object.entries(binary))
        files.set(k, Buffer.from(String(val), 'base64'));
      writeProjected(
        host,
        files,
        v.configMap.items,
        `configmap "${v.configMap.name ?? ''}"`,
        v.name,
      );
    } else {
      host = join(mountRoot, 'pods', run.uid, 'volumes', v.name);
    }
    mkdirSync(host, { recursive: true });
    volumes.set(v.name, host);
  }
  const mounts: Mount[] = [];
  for (const c of pod.spec?.containers ?? []) {
    for (const m of c.volumeMounts ?? []) {
      const base = volumes.get(m.name);
      if (!base) continue;
      const hostPath = m.subPath ? join(base, m.subPath) : base;
      if (m.subPath) mkdirSync(hostPath, { recursive: true });
      if (!mounts.some((x) => x.mountPath === m.mountPath))
        mounts.push({ mountPath: m.mountPath, hostPath });
    }
  }
  mounts.sort((a, b) => b.mountPath.length - a.mountPath.length);
  return mounts;
}

/**
 * A ConfigMap's keys as files: every key at its own name, or with `items` only the keys
 * listed, each at its `path` (folders made); a listed key the ConfigMap lacks is a
 * ConfigError, as the kubelet's FailedMount.
 */
function writeProjected(
  host: string,
  files: Map<string, Buffer>,
  items: { key: string; path: string }[] | undefined,
  what: string,
  volume: string,
): void {
  const chosen = items ?? [...files.keys()].map((key) => ({ key, path: key }));
  for (const { key, path } of chosen) {
    const bytes = files.get(key);
    if (!bytes)
      throw new ConfigError(
        `MountVolume.SetUp failed for volume "${volume}" : ${what}: key "${key}" not found`,
      );
    const at = join(host, path);
    mkdirSync(dirname(at), { recursive: true });
    writeFileSync(at, bytes);
  }
}

export function remapPaths(s: string, run: PodRun): string {
  let out = s;
  for (const m of run.mounts) {
    if (m.mountPath === m.hostPath) continue;
    const re = new RegExp(
      `(^|[=:\\s,"'(])${escapeRe(m.mountPath.replace(/\/+$/, ''))}(?=/|$|[\\s:,"')])`,
      'g',
    );
    out = out.replace(re, (_all, pre: string) => `${pre}${m.hostPath}`);
  }
  return out;
}
