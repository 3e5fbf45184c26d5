/**
 * The gated suite for a real cluster (README, "Kubernetes"): skipped unless
 * STOKER_E2E_KUBECONFIG points at a kubeconfig of a cluster where stoker is installed
 * (`kubectl apply -k k8s/overlays/kind`: Redis, the controller, its Role). Run it with
 *
 *   STOKER_E2E_KUBECONFIG=/tmp/kind.kubeconfig npm run test:e2e
 *
 * (.github/workflows/e2e-kind.yml does that on kind; this project's own machines have no
 * Docker and do not run it). STOKER_E2E_NAMESPACE is stoker's namespace (default stoker).
 * It submits the smoke spec through the installed controller (`stoker submit` inside its
 * pod, where REDIS_URL and the spec file are), waits for it, and checks what the cluster
 * holds: one Job for the one attempt, labelled and owned as stoker makes them, complete.
 */
import { BatchV1Api, CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { labelValueFor } from '../../orchestrator/backends/kubernetes/names.js';

const kubeconfig = process.env.STOKER_E2E_KUBECONFIG;
const namespace = process.env.STOKER_E2E_NAMESPACE ?? 'stoker';

describe.skipIf(!kubeconfig)('a real cluster (STOKER_E2E_KUBECONFIG)', () => {
  it(
    'runs the smoke spec end to end through the installed controller',
    async () => {
      const kubectl = (...args: string[]) =>
        execa('kubectl', ['--kubeconfig', kubeconfig!, '-n', namespace, ...args], {
          timeout: 20 * 60_000,
          reject: false,
        });
      const sub = await kubectl(
        'exec',
        'deploy/stoker-controller',
        '--',
        'node',
        'bin/stoker.js',
        'submit',
        'training-configs/smoke-cpu.yaml',
        '--set',
        'spec.params.steps=60',
        '--wait',
        '--json',
      );
      expect(sub.exitCode, `${sub.stdout}\n${sub.stderr}`).toBe(0);
      const view = JSON.parse(sub.stdout) as {
        id: string;
        phase: string;
        stages: { tasks: { attempt: number; result: Record<string, unknown> | null }[] }[];
      };
      expect(view.phase).toBe('Succeeded');
      expect(view.stages[0]?.tasks[0]?.attempt).toBe(1);

      const kc = new KubeConfig();
      kc.loadFromFile(kubeconfig!);
      const batch = kc.makeApiClient(BatchV1Api);
      const core = kc.makeApiClient(CoreV1Api);
      const selector = `app.kubernetes.io/managed-by=stoker,stoker.dev/run=${labelValueFor(view.id)}`;
      const jobs = (await batch.listNamespacedJob({ namespace, labelSelector: selector })).items;
      expect(jobs).toHaveLength(1);
      const job = jobs[0]!;
      expect(job.spec?.backoffLimit).toBe(0);
      expect(
        job.status?.conditions?.some((c) => c.type === 'Complete' && c.status === 'True'),
      ).toBe(true);
      const pods = (await core.listNamespacedPod({ namespace, labelSelector: selector })).items;
      expect(pods.length).toBeGreaterThanOrEqual(1);
      expect(pods.every((p) => p.spec?.securityContext?.runAsNonRoot === true)).toBe(true);
      expect(pods.some((p) => p.status?.phase === 'Succeeded')).toBe(true);
    },
    25 * 60_000,
  );
});
