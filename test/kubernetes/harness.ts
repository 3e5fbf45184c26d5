/**
 * A whole stoker (controller, dispatcher, the kubernetes backend) on the simulated cluster
 * and the suite's Redis, for the fault tests: the real @kubernetes/client-node over HTTP
 * to the fake API server, whose kubelet runs each pod's `stoker worker` as a local process.
 *
 *   const k = await startK8sCluster({ server: { bookmarkIntervalMs: 200 } });
 *   const s = await k.system({ quietMs: 1500 });      // a controller
 *   const again = await k.system({ prefix: s.prefix }); // the next one, same Redis keys
 *   ...
 *   await k.stop();                                     // every controller, then the cluster
 */
import type { V1Job, V1Pod } from '@kubernetes/client-node';
import type { KubernetesBackend } from '../../orchestrator/backends/kubernetes/backend.js';
import { createKubernetesBackend } from '../../orchestrator/backends/kubernetes/compose.js';
import type { KubernetesSettings } from '../../orchestrator/backends/kubernetes/settings.js';
import {
  startFakeCluster,
  type FakeCluster,
  type FakeClusterOptions,
} from '../../testing/kube-sim/cluster.js';
import type { RecordedRequest } from '../../testing/kube-sim/apiserver/types.js';
import { simulatedSettings } from '../../testing/kube-sim/simulated-settings.js';
import { startTestSystem, type TestSystem } from '../util/system.js';

export const NS = 'stoker';

export interface K8sSystem extends TestSystem {
  k8s: KubernetesBackend;
}

export interface K8sHarness {
  cluster: FakeCluster;
  settings: KubernetesSettings;
  /** Start a controller; `prefix` of an earlier one makes it that one's successor. */
  system(opts?: {
    prefix?: string;
    quietMs?: number;
    qps?: number;
    burst?: number;
    requestTimeoutMs?: number;
  }): Promise<K8sSystem>;
  /** Stop a controller as if its process died: no more requests, Jobs left running. */
  kill(s: K8sSystem): Promise<void>;
  jobs(): V1Job[];
  pods(): V1Pod[];
  /** The backend's requests (everything but watches) recorded by the fake API server. */
  backendRequests(): RecordedRequest[];
  /** Jobs, pods and requests, for a failure message. */
  dump(): string;
  stop(): Promise<void>;
}

export async function startK8sCluster(opts: FakeClusterOptions = {}): Promise<K8sHarness> {
  const cluster = await startFakeCluster({
    ...opts,
    kubelet: { inheritEnv: 'all', gpus: 8, ...(opts.kubelet ?? {}) },
  });
  const settings = simulatedSettings(cluster, { namespace: NS });
  const systems: K8sSystem[] = [];
  const stopped = new Set<K8sSystem>();
  const h: K8sHarness = {
    cluster,
    settings,
    async system(o = {}) {
      let backend: KubernetesBackend | undefined;
      const sys = await startTestSystem({
        ...(o.prefix ? { prefix: o.prefix } : {}),
        backend: async ({ store, log, redisUrl, keys }) => {
          if (!cluster.store.get('secrets', NS, 'stoker-redis'))
            cluster.store.create('secrets', {
              apiVersion: 'v1',
              kind: 'Secret',
              metadata: { name: 'stoker-redis', namespace: NS },
              stringData: { url: redisUrl },
            });
          backend = await createKubernetesBackend({
            kc: cluster.kubeConfig({ namespace: NS }),
            settings,
            store,
            log,
            workerEnv: { STOKER_PREFIX: keys.prefix },
            tuning: {
              ...(o.quietMs === undefined ? {} : { quietMs: o.quietMs }),
              gate: {
                ...(o.qps === undefined ? {} : { qps: o.qps }),
                ...(o.burst === undefined ? {} : { burst: o.burst }),
                ...(o.requestTimeoutMs === undefined
                  ? {}
                  : { requestTimeoutMs: o.requestTimeoutMs }),
              },
            },
          });
          return backend;
        },
      });
      const s = Object.assign(sys, { k8s: backend as KubernetesBackend });
      systems.push(s);
      return s;
    },
    async kill(s) {
      // The Redis lock and connections go, the backend sends nothing more, the BullMQ
      // jobs stall, and the Jobs keep running: what a dead controller leaves.
      stopped.add(s);
      await s.stop('preempt');
    },
    jobs: () => cluster.store.list<V1Job>('jobs', { namespace: NS }),
    pods: () => cluster.store.list<V1Pod>('pods', { namespace: NS }),
    backendRequests: () => cluster.server.requests.filter((r) => r.verb !== 'watch'),
    dump() {
      return JSON.stringify(
        {
          jobs: h.jobs().map((j) => ({ name: j.metadata?.name, status: j.status })),
          pods: h.pods().map((p) => ({ name: p.metadata?.name, phase: p.status?.phase })),
          requests: cluster.server.verbCounts(),
        },
        null,
        1,
      ).slice(0, 5000);
    },
    async stop() {
      for (const s of systems.reverse()) {
        if (!stopped.has(s)) await s.stop('force').catch(() => undefined);
        await s.cleanup().catch(() => undefined);
      }
      await cluster.stop();
    },
  };
  return h;
}
