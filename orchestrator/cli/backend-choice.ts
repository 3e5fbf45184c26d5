/**
 * `--backend local|kubernetes [--simulate]`: the backend factory a command passes to
 * startSystem, and what to stop afterwards.
 *
 * kubernetes: in-cluster config when running in a pod, else the kubeconfig
 * (KUBECONFIG or ~/.kube/config); settings from STOKER_K8S_* (the install's ConfigMap).
 * --simulate: a fake API server and a simulated kubelet in this process, which run each
 * pod's command as a local process: a testing aid to try the kubernetes path without a
 * cluster, not a way to run on one. The cluster stops with this process, so pool workers
 * do not outlive the controller there: a normal stop drains them (the backend deletes
 * their Jobs and waits for the pods) before the cluster goes. For tests of stoker itself
 * (npm run chaos), STOKER_SIMULATE_FAULTS makes its API server misbehave (seeded) and
 * STOKER_SIMULATE_RECORD names a file where it records what it created and injected.
 */
import { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from '../../common/logger.js';
import { UsageError } from '../../common/errors.js';
import type { SystemOptions } from '../system.js';

export interface BackendChoice {
  factory: SystemOptions['backend'];
  stop(): Promise<void>;
  describe: string;
}

export async function chooseBackend(opts: {
  backend: string;
  simulate: boolean;
  env: NodeJS.ProcessEnv;
  prefix: string;
  log: Logger;
  /** stoker home: simulated pods (whose processes run here) get it as STOKER_HOME. */
  home?: string;
}): Promise<BackendChoice | null> {
  if (opts.backend === 'local') {
    if (opts.simulate) throw new UsageError('--simulate goes with --backend kubernetes');
    return null;
  }
  if (opts.backend !== 'kubernetes')
    throw new UsageError(`unknown backend "${opts.backend}" (local or kubernetes)`);
  const [{ createKubernetesBackend }, { settingsFromEnv }, { loadClusterSimulator }] =
    await Promise.all([
      import('../backends/kubernetes/compose.js'),
      import('../backends/kubernetes/settings.js'),
      import('../backends/kubernetes/simulator.js'),
    ]);
  if (!opts.simulate) {
    const kc = new KubeConfig();
    kc.loadFromDefault();
    const settings = settingsFromEnv(opts.env);
    return {
      describe: `kubernetes (${kc.getCurrentCluster()?.server ?? 'in-cluster'}, namespace ${settings.namespace})`,
      factory: ({ store, log }) =>
        createKubernetesBackend({
          kc,
          settings,
          store,
          log,
          workerEnv: { STOKER_PREFIX: opts.prefix },
        }),
      stop: async () => undefined,
    };
  }
  const { startSimulatedCluster } = await loadClusterSimulator();
  // The simulated kubelet runs pods here: stoker is this checkout, runs live in its home.
  const cluster = await startSimulatedCluster({
    workerEnv: { STOKER_PREFIX: opts.prefix, ...(opts.home ? { STOKER_HOME: opts.home } : {}) },
    ...(opts.env.STOKER_SIMULATE_FAULTS ? { faults: opts.env.STOKER_SIMULATE_FAULTS } : {}),
    ...(opts.env.STOKER_SIMULATE_RECORD ? { recordTo: opts.env.STOKER_SIMULATE_RECORD } : {}),
  });
  const { settings } = cluster;
  return {
    describe: cluster.describe,
    factory: async ({ store, log, redisUrl }) => {
      cluster.putSecret(settings.redisUrlSecret.name, settings.redisUrlSecret.key, redisUrl);
      return createKubernetesBackend({
        kc: cluster.kubeConfig,
        settings,
        store,
        log,
        workerEnv: { STOKER_PREFIX: opts.prefix },
        poolsOutliveController: false,
      });
    },
    stop: () => cluster.stop(),
  };
}
