/**
 * The simulated cluster as `stoker run|up|serve --simulate` uses it (the contract is
 * orchestrator/backends/kubernetes/simulator.ts): a fake API server, the Job controller
 * and one simulated node with 8 GPUs whose kubelet runs pods as local processes of this
 * checkout, with the environment of the process that started it.
 *
 * The simulated cluster is a testing aid, not a Kubernetes: the real
 * @kubernetes/client-node talks HTTP to it, and it answers as a real API server would
 * (codes, Status bodies, watches, finalizers, garbage collection). Its parts:
 *
 *   cluster.ts            startFakeCluster: server + Job controller + one node
 *   simulated-settings.ts the stoker settings for a run on it
 *   clock.ts              real time, or a ManualClock tests move
 *   objects/              wire shapes, resource types, selectors, patches
 *   store/                the objects: reads and watch history, writes, admission,
 *                         defaulting, validation, garbage collection
 *   apiserver/            HTTP: routing, verbs, watch streams, pods/log, discovery,
 *                         fault interceptors, the request record
 *   jobs/                 the batch/v1 Job controller
 *   kubelet/              the node: scheduler, pod startup, containers as processes,
 *                         pod status, logs, termination, faults
 *
 * opts.faults (a spec string, apiserver/random-faults.ts) makes the API server misbehave
 * from the start, seeded; opts.recordTo gets one JSON line per Job and pod created and
 * per fault injected.
 */
import type {
  ClusterSimulator,
  SimulatedCluster,
} from '../../orchestrator/backends/kubernetes/simulator.js';
import { appendFileSync } from 'node:fs';
import { parseFaultSpec, type RandomFaultOptions } from './apiserver/random-faults.js';
import { startFakeCluster } from './cluster.js';
import { simulatedSettings } from './simulated-settings.js';

export const startSimulatedCluster: ClusterSimulator['startSimulatedCluster'] = async (
  opts,
): Promise<SimulatedCluster> => {
  const record = opts.recordTo
    ? (line: Record<string, unknown>) =>
        appendFileSync(opts.recordTo as string, `${JSON.stringify({ at: Date.now(), ...line })}\n`)
    : undefined;
  const faults: RandomFaultOptions | undefined = opts.faults
    ? {
        ...parseFaultSpec(opts.faults),
        ...(record
          ? {
              onFault: (kind, req) =>
                record({
                  event: 'fault',
                  kind,
                  verb: req.verb,
                  resource: req.resource,
                  name: req.name,
                }),
            }
          : {}),
      }
    : undefined;
  const cluster = await startFakeCluster({
    server: faults ? { faults } : {},
    kubelet: { inheritEnv: 'all', gpus: 8 },
  });
  // Every Job and pod created, with its owner (a pod's Job): deleted ones included.
  cluster.store.subscribe((ev) => {
    if (!record || ev.type !== 'ADDED' || (ev.resource !== 'jobs' && ev.resource !== 'pods'))
      return;
    const m = ev.object.metadata;
    record({
      event: 'created',
      resource: ev.resource,
      name: m?.name,
      owner: m?.ownerReferences?.[0]?.name ?? null,
      annotations: m?.annotations ?? {},
    });
  });
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
