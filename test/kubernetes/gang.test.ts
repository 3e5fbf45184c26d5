/**
 * Gangs (a `nodes: 2` stage) on the simulated cluster: one node's failure fails the gang's
 * attempt once, named in the task's message whichever pod the Job controller stopped after
 * it; each node's log is read with `stoker logs --node N`. The payload is
 * test/fixtures/payloads/gang-node.mjs, started on every node with its NODE_RANK.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ExitCode } from '../../common/exit-codes.js';
import { stoker } from '../util/cli.js';
import { nodePayloadRun } from '../util/system.js';
import { startK8sCluster, type K8sHarness } from './harness.js';

let h: K8sHarness | undefined;
afterEach(async () => {
  await h?.stop();
  h = undefined;
});

const gang = (name: string, env: Record<string, string | number>) =>
  nodePayloadRun(name, 'gang-node.mjs', env, {
    resources: { gpus: 0, nodes: 2 },
    kubernetes: { cpuDistributed: true },
    retry: { attempts: 3, backoff: { type: 'fixed', delay: '100ms' } },
  });

describe('a 2-node gang on the simulated cluster', () => {
  it('fails its attempt once when node 1 fails, names node 1, and the retry succeeds', async () => {
    h = await startK8sCluster();
    const s = await h.system();
    const runId = await s.submit(gang('gang-retry', { FAIL_NODE: 1, FAIL_ATTEMPTS: 1 }));
    const view = await s.waitForPhase(runId, ['Succeeded', 'Failed'], 120_000);
    const task = view.stages[0]?.tasks[0];
    expect(view.phase, `${task?.message}\n${h.dump()}`).toBe('Succeeded');
    expect(task?.attempt).toBe(2); // one attempt for the gang, not one per node
    expect(task?.result).toMatchObject({ nodes: 2 });
    expect(task?.history.map((e) => e.attempt)).toEqual([1, 2]);
    const failed = task?.history[0];
    expect(failed?.exitCode).toBe(1);
    expect(failed?.message).toMatch(/node 1 of 2 \(pod [^)]+\) exited with code 1/);
    // both attempts ran both nodes: 2 Jobs of 2 pods
    expect(h.jobs()).toHaveLength(2);
  });

  it("fails without a retry on node 1's non-retryable exit, and each node's log is its own", async () => {
    h = await startK8sCluster();
    const s = await h.system();
    const runId = await s.submit(
      gang('gang-fail', {
        FAIL_NODE: 1,
        FAIL_ATTEMPTS: 9,
        FAIL_CODE: ExitCode.MISSING_DEPENDENCY,
      }),
    );
    const view = await s.waitForPhase(runId, ['Succeeded', 'Failed'], 120_000);
    const task = view.stages[0]?.tasks[0];
    expect(view.phase, `${task?.message}\n${h.dump()}`).toBe('Failed');
    expect(task).toMatchObject({
      attempt: 1,
      exitCode: ExitCode.MISSING_DEPENDENCY,
      reason: 'MISSING_DEPENDENCY',
    });
    expect(task?.message).toMatch(/node 1 of 2 \(pod [^)]+\) exited with code 68/);
    expect(task?.message).toContain('stoker logs RUN --node 1');

    const env = { redisUrl: s.redisUrl, prefix: s.prefix, home: s.home };
    const node1 = await stoker(['logs', runId, '--node', '1'], env);
    expect(node1.exitCode, node1.all).toBe(0);
    expect(node1.stdout).toContain('node 1 of 2, attempt 1');
    expect(node1.stdout).toContain('node 1 fails');
    const node0 = await stoker(['logs', runId], env);
    expect(node0.stdout).toContain('node 0 of 2, attempt 1');
    expect(node0.stdout).not.toContain('node 1 of 2');
    const none = await stoker(['logs', runId, '--node', '2'], env);
    expect(none.exitCode).not.toBe(0);
    expect(none.all).toContain('no log of node 2');
  });
});
