/**
 * A run whose pods need something the cluster does not have (a Secret, a
 * PersistentVolumeClaim, a PriorityClass) fails with that reason, at once and without
 * retrying, instead of waiting for ever (issue 4, "bad input and faults"). End to end:
 * a whole stoker on the simulated cluster, whose Job controller and kubelet report these
 * the way Kubernetes does (a FailedCreate event on the Job, a pod stuck in
 * CreateContainerConfigError, an Unschedulable pod).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '../util/redis-server.js';
import { payloadFixture, specFrom } from '../util/system.js';
import { startK8sCluster, type K8sHarness, type K8sSystem } from './harness.js';

let h: K8sHarness;
let s: K8sSystem;
beforeAll(async () => {
  h = await startK8sCluster();
  s = await h.system();
});
afterAll(async () => {
  await h.stop();
});

function runNeeding(
  name: string,
  needs: { kubernetes?: Record<string, unknown>; secretEnv?: Record<string, string>[] },
) {
  return specFrom({
    apiVersion: 'stoker/v1',
    kind: 'TrainingRun',
    metadata: { name },
    spec: {
      payload: {
        command: [process.execPath, payloadFixture('train-sim.mjs')],
        env: { STEPS: '3', STEP_MS: '10' },
        ...(needs.secretEnv ? { secretEnv: needs.secretEnv } : {}),
      },
      retry: { attempts: 3, backoff: { type: 'fixed', delay: '100ms' } },
      ...(needs.kubernetes ? { kubernetes: needs.kubernetes } : {}),
    },
  });
}

describe('a run needing what the cluster lacks fails with the reason, not a hang', () => {
  it.each([
    [
      'a PriorityClass',
      { kubernetes: { priorityClassName: 'no-such-class' } },
      'MissingPriorityClass',
      'no PriorityClass with name no-such-class was found',
    ],
    [
      'a Secret',
      { secretEnv: [{ name: 'HF_TOKEN', secret: 'hf-missing', key: 'token' }] },
      'ConfigError',
      'secret "hf-missing" not found',
    ],
    [
      'a PersistentVolumeClaim',
      { kubernetes: { volumes: { pvc: [{ claimName: 'datasets-missing', mountPath: '/data' }] } } },
      'MissingVolume',
      'persistentvolumeclaim "datasets-missing" not found',
    ],
  ])(
    'missing %s: Failed with that reason, one attempt, the Job deleted',
    async (_what, needs, reason, text) => {
      const t0 = Date.now();
      const runId = await s.submit(runNeeding(`missing-${reason.toLowerCase()}`, needs));
      const view = await s
        .waitForPhase(runId, ['Succeeded', 'Failed'], 30_000)
        .catch((err: Error) => {
          throw new Error(`${err.message}\n${h.dump()}`);
        });
      const task = view.stages[0]?.tasks[0];
      expect(view.phase, h.dump()).toBe('Failed');
      expect(task?.reason).toBe(reason);
      expect(task?.message).toContain(text);
      expect(task?.attempt).toBe(1);
      expect(Date.now() - t0).toBeLessThan(30_000);
      // Failed fast: the Job that could never run is deleted.
      await eventually('the Job to be deleted', () =>
        h.jobs().every((j) => j.metadata?.annotations?.['stoker.dev/run-id'] !== runId),
      );
    },
  );
});
