/**
 * The simulated node's Node object: 16 CPUs, 128 GiB, 110 pods and the GPUs it was given
 * (`nvidia.com/gpu`), Ready, reachable at 127.0.0.1, with its labels (kubernetes.io/
 * hostname, os, arch and the test's own). Registering twice (a second kubelet for the
 * same node name) keeps the first.
 */
import type { Clock } from '../clock.js';
import { KubeApiError, kubeTime } from '../objects/meta.js';
import { GPU_RESOURCE } from '../objects/resources.js';
import type { FakeKubeStore } from '../store/store.js';

export function nodeLabels(
  nodeName: string,
  extra: Record<string, string> | undefined,
): Record<string, string> {
  return {
    'kubernetes.io/hostname': nodeName,
    'kubernetes.io/os': 'linux',
    'kubernetes.io/arch': process.arch === 'arm64' ? 'arm64' : 'amd64',
    ...(extra ?? {}),
  };
}

export function registerNode(
  store: FakeKubeStore,
  clock: Clock,
  node: { name: string; labels: Record<string, string>; gpus: number },
): void {
  const obj = {
    metadata: { name: node.name, labels: node.labels },
    spec: {},
    status: {
      capacity: {
        cpu: '16',
        memory: '128Gi',
        pods: '110',
        [GPU_RESOURCE]: String(node.gpus),
      },
      allocatable: {
        cpu: '16',
        memory: '128Gi',
        pods: '110',
        [GPU_RESOURCE]: String(node.gpus),
      },
      conditions: [
        {
          type: 'Ready',
          status: 'True',
          reason: 'KubeletReady',
          message: 'kubelet is posting ready status',
          lastHeartbeatTime: kubeTime(clock.now()),
          lastTransitionTime: kubeTime(clock.now()),
        },
      ],
      addresses: [
        { type: 'InternalIP', address: '127.0.0.1' },
        { type: 'Hostname', address: node.name },
      ],
      nodeInfo: {
        machineID: 'fake',
        systemUUID: 'fake',
        bootID: 'fake',
        kernelVersion: 'fake',
        osImage: 'fake',
        containerRuntimeVersion: 'fake://1.0',
        kubeletVersion: 'v1.31.0-fake',
        kubeProxyVersion: 'v1.31.0-fake',
        operatingSystem: 'linux',
        architecture: 'amd64',
      },
    },
  };
  try {
    store.create('nodes', obj);
  } catch (err) {
    if (!(err instanceof KubeApiError && err.code === 409)) throw err;
  }
}
