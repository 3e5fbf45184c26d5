/**
 * The simulated cluster as `stoker run|up|serve --simulate` uses it (the contract is
 * orchestrator/backends/kubernetes/simulator.ts): a fake API server, the Job controller
 * and one simulated node with 8 GPUs whose kubelet runs pods as local processes of this
 * checkout, with the environment of the process that started it.
 */
import type {
  ClusterSimulator,
  SimulatedCluster,
} from '../../orchestrator/backends/kubernetes/simulator.js';
import { startFakeCluster } from './kubelet.js';
import { simulatedSettings } from './simulated-settings.js';

export const startSimulatedCluster: ClusterSimulator['startSimulatedCluster'] = async (
  opts,
): Promise<SimulatedCluster> => {
  const cluster = await startFakeCluster({ kubelet: { inheritEnv: 'all', gpus: 8 } });
  const settings = simulatedSettings(cluster, { workerEnv: opts.workerEnv });
  return {
    describe: `kubernetes, simulated (fake API server ${cluster.url}, one simulated node)`,
    kubeConfig: cluster.kubeConfig({ namespace: settings.namespace }),
    settings,
    putSecret(name, key, value) {
      cluster.store.create('secrets', {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name, namespace: settings.namespace },
        stringData: { [key]: value },
      });
    },
    stop: () => cluster.stop(),
  };
};
