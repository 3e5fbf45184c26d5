/**
 * A whole simulated cluster in one call: the fake API server (apiserver/), the Job
 * controller (jobs/) and one node (kubelet/), all on the server's store in this process.
 * What `stoker run --simulate` (index.ts) and the kubernetes tests start.
 *
 *   const cluster = await startFakeCluster({ kubelet: { gpus: 8 } });
 *   const kc = cluster.kubeConfig({ namespace: 'stoker' });   // for @kubernetes/client-node
 *   ...
 *   await cluster.stop();   // kills every pod's processes, then stops the server
 */
import { startFakeApiServer } from './apiserver/server.js';
import type { FakeApiServer, FakeApiServerOptions } from './apiserver/types.js';
import {
  startJobController,
  type FakeJobController,
  type FakeJobControllerOptions,
} from './jobs/controller.js';
import { startKubelet } from './kubelet/kubelet.js';
import type { FakeKubelet, FakeKubeletOptions } from './kubelet/types.js';

export interface FakeClusterOptions {
  server?: FakeApiServerOptions;
  kubelet?: FakeKubeletOptions;
  jobs?: FakeJobControllerOptions;
}

/** Server + Job controller + one node. */
export interface FakeCluster {
  readonly server: FakeApiServer;
  readonly kubelet: FakeKubelet;
  readonly jobs: FakeJobController;
  readonly store: FakeApiServer['store'];
  readonly url: string;
  kubeConfig: FakeApiServer['kubeConfig'];
  /** Kill every process, stop the controllers and the server. */
  stop(): Promise<void>;
}

export async function startFakeCluster(opts: FakeClusterOptions = {}): Promise<FakeCluster> {
  const server = await startFakeApiServer(opts.server ?? {});
  const jobs = startJobController(server, opts.jobs ?? {});
  const kubelet = startKubelet(server, opts.kubelet ?? {});
  return {
    server,
    kubelet,
    jobs,
    store: server.store,
    url: server.url,
    kubeConfig: (o) => server.kubeConfig(o),
    async stop() {
      jobs.stop();
      await kubelet.stop();
      await server.stop();
    },
  };
}
