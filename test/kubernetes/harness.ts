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
 *
 * The API server authorizes the backend's requests with the controller's Role from
 * k8s/base/rbac.yaml (test/util/rbac.ts), as a cluster would: a request the Role does not
 * permit is answered 403 Forbidden and recorded, and stop() fails the test that sent it.
 * So every scenario here also checks that the Role grants what the code does.
 *
 * The API server also enforces k8s/base/admission-policy.yaml (the ValidatingAdmission-
 * Policy that keeps pods off stoker's own Secrets, PVCs and service account), evaluated by
 * testing/kube-sim/store/admission-policy.ts, unless `admissionPolicies: false`: every
 * Job and pod a scenario's stoker creates must pass it. The backend's token is the
 * controller's service account (USERS.controller); tests may act as the other USERS with
 * their tokens, which the Role does not bind.
 */
import type { Logger } from '../../common/logger.js';
import type { AutoscaleSettings } from '../../orchestrator/autoscale/settings.js';
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
import type { UserInfo } from '../../testing/kube-sim/store/admission.js';
import {
  enforceAdmissionPolicies,
  type AdmissionDecision,
} from '../../testing/kube-sim/store/admission-policy.js';
import { documents, K8S } from '../util/kustomize.js';
import { join } from 'node:path';
import { attributesOf, controllerRole, grantOf, permits } from '../util/rbac.js';
import { startTestSystem, type TestSystem } from '../util/system.js';

export const NS = 'stoker';

const serviceAccount = (name: string, ns = NS): UserInfo => ({
  username: `system:serviceaccount:${ns}:${name}`,
  groups: ['system:serviceaccounts', `system:serviceaccounts:${ns}`, 'system:authenticated'],
});

/** Who the tests' bearer tokens are (the fake API server's `users`). */
export const USERS = {
  /** The kubernetes backend's: the controller's service account, held to its Role. */
  controller: { token: 'fake-token', user: serviceAccount('stoker-controller') },
  /** Another service account of the namespace (as if an overlay let it create pods). */
  namespaceAccount: { token: 'namespace-sa-token', user: serviceAccount('ci') },
  /** A cluster administrator. */
  admin: {
    token: 'admin-token',
    user: {
      username: 'kubernetes-admin',
      groups: ['kubeadm:cluster-admins', 'system:authenticated'],
    },
  },
} satisfies Record<string, { token: string; user: UserInfo }>;

export interface K8sClusterOptions extends FakeClusterOptions {
  /** Enforce k8s/base/admission-policy.yaml (default true). */
  admissionPolicies?: boolean;
}

export interface K8sSystem extends TestSystem {
  k8s: KubernetesBackend;
}

export interface K8sHarness {
  cluster: FakeCluster;
  settings: KubernetesSettings;
  /** Start a controller; `prefix` of an earlier one makes it that one's successor. */
  system(opts?: {
    prefix?: string;
    /** A Redis of the test's own (its URL goes in the stoker-redis Secret). */
    redisUrl?: string;
    quietMs?: number;
    qps?: number;
    burst?: number;
    /** The pools' GPU budget and provisioning setting. */
    autoscale?: AutoscaleSettings;
    requestTimeoutMs?: number;
    /** The controller's logger (default: silent, or STOKER_TEST_LOG's level). */
    log?: Logger;
  }): Promise<K8sSystem>;
  /** Stop a controller as if its process died: no more requests, Jobs left running. */
  kill(s: K8sSystem): Promise<void>;
  jobs(): V1Job[];
  pods(): V1Pod[];
  /** The backend's requests (everything but watches) recorded by the fake API server. */
  backendRequests(): RecordedRequest[];
  /** Requests the controller's Role did not permit (answered 403), as `group/resource verb`. */
  forbidden(): string[];
  /** forbidden(), emptied: for a test that sends one on purpose (stop() fails otherwise). */
  takeForbidden(): string[];
  /** What the admission policy decided about each write it matched, in order. */
  admissionDecisions(): AdmissionDecision[];
  /**
   * The writes the admission policy denied, emptied: for a test that sends them on purpose
   * (stop() fails the test otherwise: every Job and pod stoker creates must be admitted).
   */
  takeDenials(): AdmissionDecision[];
  /** Jobs, pods and requests, for a failure message. */
  dump(): string;
  stop(): Promise<void>;
}

export async function startK8sCluster(opts: K8sClusterOptions = {}): Promise<K8sHarness> {
  const { admissionPolicies = true, ...clusterOpts } = opts;
  const cluster = await startFakeCluster({
    ...clusterOpts,
    server: {
      ...(clusterOpts.server ?? {}),
      users: Object.fromEntries(Object.values(USERS).map((u) => [u.token, u.user])),
    },
    kubelet: { inheritEnv: 'all', gpus: 8, ...(clusterOpts.kubelet ?? {}) },
  });
  const decisions: AdmissionDecision[] = [];
  let denialsTaken = 0;
  if (admissionPolicies) installAdmissionPolicies(cluster, (d) => decisions.push(d));
  // The Redis URL as the base installs it: the Secret's key for the Redis user `worker`.
  const settings = simulatedSettings(cluster, {
    namespace: NS,
    redisUrlSecret: { name: 'stoker-redis', key: 'worker-url' },
  });
  const role = controllerRole();
  const forbidden: string[] = [];
  cluster.server.intercept((req) => {
    if (req.headers.authorization !== `Bearer ${USERS.controller.token}`) return undefined;
    const a = attributesOf(req);
    if (!a || permits(role, a)) return undefined;
    forbidden.push(grantOf(a));
    const what = `${a.resource}${a.group ? `.${a.group}` : ''}`;
    return {
      status: 403,
      body: {
        kind: 'Status',
        apiVersion: 'v1',
        status: 'Failure',
        reason: 'Forbidden',
        code: 403,
        message: `${what} "${a.name ?? ''}" is forbidden: User "system:serviceaccount:${NS}:stoker-controller" cannot ${a.verb} resource "${a.subresource ? `${a.resource}/${a.subresource}` : a.resource}" in API group "${a.group}" in the namespace "${req.namespace ?? ''}"`,
      },
    };
  });
  const systems: K8sSystem[] = [];
  const stopped = new Set<K8sSystem>();
  const h: K8sHarness = {
    cluster,
    settings,
    async system(o = {}) {
      let backend: KubernetesBackend | undefined;
      const sys = await startTestSystem({
        ...(o.prefix ? { prefix: o.prefix } : {}),
        ...(o.redisUrl ? { redisUrl: o.redisUrl } : {}),
        ...(o.autoscale ? { autoscale: o.autoscale } : {}),
        ...(o.log ? { log: o.log } : {}),
        backend: async ({ store, log, redisUrl, keys }) => {
          if (!cluster.store.get('secrets', NS, 'stoker-redis'))
            cluster.store.create('secrets', {
              apiVersion: 'v1',
              kind: 'Secret',
              metadata: { name: 'stoker-redis', namespace: NS },
              stringData: { [settings.redisUrlSecret.key]: redisUrl },
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
    forbidden: () => [...forbidden],
    takeForbidden: () => forbidden.splice(0),
    admissionDecisions: () => [...decisions],
    takeDenials() {
      const denied = decisions.slice(denialsTaken).filter((d) => d.decision === 'denied');
      denialsTaken = decisions.length;
      return denied;
    },
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
      const denied = decisions.slice(denialsTaken).filter((d) => d.decision === 'denied');
      if (denied.length)
        throw new Error(
          `the admission policy (k8s/base/admission-policy.yaml) denied: ${denied
            .map((d) => `${d.resource}/${d.name}: ${d.message ?? ''}`)
            .join('; ')}`,
        );
      if (forbidden.length)
        throw new Error(
          `the controller sent requests its Role (k8s/base/rbac.yaml) does not permit: ${[...new Set(forbidden)].join(', ')}`,
        );
    },
  };
  return h;
}

/** The base's ValidatingAdmissionPolicies and bindings, created and enforced. */
export function installAdmissionPolicies(
  cluster: FakeCluster,
  onDecision?: (d: AdmissionDecision) => void,
): void {
  for (const doc of documents(join(K8S, 'base', 'admission-policy.yaml'))) {
    const resource =
      doc.kind === 'ValidatingAdmissionPolicy'
        ? 'validatingadmissionpolicies'
        : 'validatingadmissionpolicybindings';
    cluster.store.create(resource, doc);
  }
  enforceAdmissionPolicies(cluster.store, onDecision ? { onDecision } : {});
}
