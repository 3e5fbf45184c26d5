/**
 * The kubernetes settings a stoker on the simulated cluster runs with, and what the
 * install manifests would have put in a real cluster for them: `stoker run --simulate`,
 * the kubernetes test suite and its harness share this.
 *
 * Pods run this checkout's stoker (the simulated kubelet starts them as local processes
 * here, so there is no image and no runs volume) through this checkout's launcher
 * (worker/bin/stoker-env-fd, as the images have it on PATH), in namespace `stoker`, and
 * the PriorityClass the settings name exists.
 *
 * The root file system stays writable: a simulated container is a host process, with no
 * root file system of its own to make read-only, and an emptyDir at /tmp would turn every
 * host path under /tmp in the pod's own values (a test's STOKER_HOME) into the pod's
 * volume directory. The read-only pods are checked where they are built
 * (test/unit/pod-security.test.ts).
 */
import { join } from 'node:path';
import { payloadBinDir, stokerBin } from '../../common/paths.js';
import {
  kubernetesSettings,
  type KubernetesSettings,
} from '../../orchestrator/backends/kubernetes/settings.js';
import type { FakeCluster } from './cluster.js';

export function simulatedSettings(
  cluster: Pick<FakeCluster, 'store'>,
  overrides: Partial<KubernetesSettings> = {},
): KubernetesSettings {
  const settings = kubernetesSettings({
    namespace: 'stoker',
    workerCommand: [process.execPath, stokerBin()],
    workerLauncher: join(payloadBinDir(), 'stoker-env-fd'),
    runsVolume: undefined,
    readOnlyRootFilesystem: false,
    ...overrides,
  });
  if (settings.priorityClassName)
    cluster.store.create('priorityclasses', {
      apiVersion: 'scheduling.k8s.io/v1',
      kind: 'PriorityClass',
      metadata: { name: settings.priorityClassName },
      value: 100,
    });
  return settings;
}
