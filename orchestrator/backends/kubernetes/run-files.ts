/**
 * A run's files (`spec.files`, common/spec/files.ts) in its pods: one ConfigMap per Job,
 * `${job}-files`, holding every file, mounted read-only at RUN_FILES_MOUNT in the Job's
 * pods, with the files at their paths relative to the spec file (the volume's `items`
 * map each key to its path: a ConfigMap key cannot hold "/"). The pod's environment
 * names the mount and the run (RUN_FILES_ENV), and the worker runs that run's payloads
 * there (worker/env.ts payloadWorkingDir), so relative paths resolve as they did beside
 * the spec file, and as in `<runDir>/files` on the local backend.
 *
 * Why one ConfigMap per Job rather than one per run: the ConfigMap is created after its
 * Job and owned by it (ownerReferences, with the uid the API server gave the Job), like
 * a gang's Service, so the cluster's garbage collector deletes it with the Job (its TTL,
 * a terminate, a pool's scale-down) and the controller needs only `create` on
 * configmaps. One per run would need its owners patched as Jobs come and go, or a
 * collector of its own. The cost is a copy per Job, at most 1 MiB each (the bound on a
 * spec's files). Until the ConfigMap exists the kubelet holds the pod in
 * ContainerCreating and retries the mount (a moment: it is created right after the Job).
 */
import type { V1ConfigMap, V1Job, V1PodSpec } from '@kubernetes/client-node';
import { RUN_FILES_ENV, type SpecFile } from '../../../common/spec/files.js';
import { WORKER_CONTAINER } from './pod-spec.js';

/** Where a pod finds its run's files, and where the worker runs the run's payloads. */
export const RUN_FILES_MOUNT = '/stoker/files';
const VOLUME = 'run-files';

/** What a run's pods carry: its files, and whose they are. */
export interface RunFiles {
  runId: string;
  files: readonly SpecFile[];
}

export const runFilesConfigMapName = (jobName: string): string => `${jobName}-files`;

/** A ConfigMap key for the file at `index`: `[-._a-zA-Z0-9]`, unique by its index. */
function keyOf(index: number, path: string): string {
  const base = (path.split('/').pop() ?? '').replace(/[^-._a-zA-Z0-9]/g, '_');
  return `${index}-${base}`.slice(0, 253);
}

/** The ConfigMap of a Job's pods (owned by the Job once it exists: ownedByJob). */
export function runFilesConfigMap(job: V1Job, rf: RunFiles): V1ConfigMap {
  const data: Record<string, string> = {};
  const binaryData: Record<string, string> = {};
  rf.files.forEach((f, i) => {
    (f.encoding === 'utf8' ? data : binaryData)[keyOf(i, f.path)] = f.data;
  });
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name: runFilesConfigMapName(job.metadata?.name ?? ''),
      namespace: job.metadata?.namespace,
      labels: { ...job.metadata?.labels },
      annotations: { ...job.metadata?.annotations },
    },
    immutable: true,
    ...(Object.keys(data).length ? { data } : {}),
    ...(Object.keys(binaryData).length ? { binaryData } : {}),
  };
}

/** Mounts the Job's ConfigMap in its pod template, read-only, and names it in the environment. */
export function mountRunFiles(podSpec: V1PodSpec, jobName: string, rf: RunFiles): void {
  const container = podSpec.containers.find((c) => c.name === WORKER_CONTAINER);
  if (!container) throw new Error(`the pod has no ${WORKER_CONTAINER} container`);
  const taken = (container.volumeMounts ?? []).find((m) => m.mountPath === RUN_FILES_MOUNT);
  if (taken)
    throw new Error(
      `${RUN_FILES_MOUNT} is mounted twice (${taken.name} and the run's files): it is where a run's spec.files are`,
    );
  podSpec.volumes = [
    ...(podSpec.volumes ?? []),
    {
      name: VOLUME,
      configMap: {
        name: runFilesConfigMapName(jobName),
        items: rf.files.map((f, i) => ({ key: keyOf(i, f.path), path: f.path })),
      },
    },
  ];
  container.volumeMounts = [
    ...(container.volumeMounts ?? []),
    { name: VOLUME, mountPath: RUN_FILES_MOUNT, readOnly: true },
  ];
  container.env = [
    ...(container.env ?? []),
    { name: RUN_FILES_ENV.dir, value: RUN_FILES_MOUNT },
    { name: RUN_FILES_ENV.run, value: rf.runId },
  ];
}

/** The run's files, when its spec lists any. */
export function runFilesOf(runId: string, spec: { files?: readonly SpecFile[] | undefined }) {
  return spec.files?.length ? { runId, files: spec.files } : undefined;
}
