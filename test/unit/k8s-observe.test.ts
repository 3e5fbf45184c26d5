import type { V1Job, V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { observeJob } from '../../orchestrator/backends/kubernetes/observe.js';

const job = (status: V1Job['status'] = {}, spec: V1Job['spec'] = { template: {} }): V1Job => ({
  metadata: { name: 'j' },
  spec,
  status,
});
const pod = (status: V1Pod['status']): V1Pod => ({ metadata: { name: 'j-0-abc' }, status });

describe('observeJob: cluster states in words a user understands', () => {
  it('no Job is NotFound', () => {
    expect(observeJob(undefined, []).state.phase).toBe('NotFound');
  });

  it('a complete Job succeeded', () => {
    const o = observeJob(job({ conditions: [{ type: 'Complete', status: 'True' }] }), []);
    expect(o.state).toMatchObject({ phase: 'Succeeded', exitCode: 0 });
  });

  it('a failed Job reports its container exit code', () => {
    const o = observeJob(
      job({
        failed: 1,
        conditions: [{ type: 'Failed', status: 'True', reason: 'PodFailurePolicy' }],
      }),
      [
        pod({
          phase: 'Failed',
          containerStatuses: [
            {
              name: 'w',
              image: 'i',
              imageID: '',
              ready: false,
              restartCount: 0,
              state: { terminated: { exitCode: 65 } },
            },
          ],
        }),
      ],
    );
    expect(o.state).toMatchObject({ phase: 'Failed', exitCode: 65 });
  });

  describe('a gang (an Indexed Job of 2 nodes) that fails', () => {
    const gangJob = job(
      {
        failed: 1,
        conditions: [{ type: 'Failed', status: 'True', reason: 'BackoffLimitExceeded' }],
      },
      { template: {}, completions: 2, parallelism: 2, completionMode: 'Indexed' },
    );
    const node = (index: number, exitCode: number, finishedAt: string): V1Pod => ({
      metadata: {
        name: `j-${index}-x${index}`,
        annotations: { 'batch.kubernetes.io/job-completion-index': String(index) },
      },
      status: {
        phase: 'Failed',
        containerStatuses: [
          {
            name: 'w',
            image: 'i',
            imageID: '',
            ready: false,
            restartCount: 0,
            state: { terminated: { exitCode, finishedAt: new Date(finishedAt) } },
          },
        ],
      },
    });

    it.each([
      [
        'node 1 failed first; node 0 was stopped after it (143)',
        [node(0, 143, '2025-01-01T00:00:09Z'), node(1, 68, '2025-01-01T00:00:05Z')],
        1,
        68,
      ],
      [
        'node 1 failed; node 0 then lost its peer and failed too',
        [node(1, 1, '2025-01-01T00:00:05Z'), node(0, 1, '2025-01-01T00:00:07Z')],
        1,
        1,
      ],
      [
        'in the same second, the exit of its own before the one by a signal',
        [node(0, 143, '2025-01-01T00:00:05Z'), node(1, 76, '2025-01-01T00:00:05Z')],
        1,
        76,
      ],
      ['node 0 failed alone', [node(0, 1, '2025-01-01T00:00:05Z')], 0, 1],
    ])('%s: names that node', (_what, pods, index, exitCode) => {
      const o = observeJob(gangJob, pods);
      expect(o.state).toMatchObject({ phase: 'Failed', exitCode });
      expect(o.state.message).toContain(
        `node ${index} of 2 (pod j-${index}-x${index}) exited with code ${exitCode}`,
      );
      expect(o.state.message).toContain(`stoker logs RUN --node ${index}`);
    });
  });

  it('an OOMKilled pod is retried and says to raise memory', () => {
    const o = observeJob(job({ failed: 1 }), [
      pod({
        containerStatuses: [
          {
            name: 'w',
            image: 'i',
            imageID: '',
            ready: false,
            restartCount: 0,
            state: { terminated: { exitCode: 137, reason: 'OOMKilled' } },
          },
        ],
      }),
    ]);
    expect(o.state).toMatchObject({
      phase: 'Failed',
      reason: 'OOMKilled',
      exitCode: 137,
      retryable: true,
    });
    expect(o.state.message).toContain('memory');
  });

  it('an evicted or preempted pod is retried without spending an attempt', () => {
    const o = observeJob(job({ failed: 1 }), [
      pod({
        conditions: [
          {
            type: 'DisruptionTarget',
            status: 'True',
            reason: 'PreemptionByScheduler',
            message: 'preempted by a higher priority pod',
          },
        ],
      }),
    ]);
    expect(o.state).toMatchObject({ phase: 'Failed', reason: 'Preempted', freeRetry: true });
  });

  it('the deadline is not retried', () => {
    const o = observeJob(
      job({
        conditions: [
          {
            type: 'Failed',
            status: 'True',
            reason: 'DeadlineExceeded',
            message: 'Job was active longer than specified deadline',
          },
        ],
      }),
      [],
    );
    expect(o.state).toMatchObject({
      phase: 'Failed',
      reason: 'DeadlineExceeded',
      retryable: false,
    });
  });

  it('an image that cannot be pulled fails fast with the reason', () => {
    const o = observeJob(job({ active: 1 }), [
      pod({
        phase: 'Pending',
        containerStatuses: [
          {
            name: 'w',
            image: 'ghcr.io/x/y:nope',
            imageID: '',
            ready: false,
            restartCount: 0,
            state: {
              waiting: {
                reason: 'ImagePullBackOff',
                message: 'Back-off pulling image "ghcr.io/x/y:nope"',
              },
            },
          },
        ],
      }),
    ]);
    expect(o.state).toMatchObject({ phase: 'Failed', reason: 'ImagePullFailed', retryable: false });
    expect(o.state.message).toContain('ghcr.io/x/y:nope');
  });

  it('a missing Secret fails with the reason', () => {
    const o = observeJob(job({ active: 1 }), [
      pod({
        phase: 'Pending',
        containerStatuses: [
          {
            name: 'w',
            image: 'i',
            imageID: '',
            ready: false,
            restartCount: 0,
            state: {
              waiting: { reason: 'CreateContainerConfigError', message: 'secret "hf" not found' },
            },
          },
        ],
      }),
    ]);
    expect(o.state).toMatchObject({ phase: 'Failed', reason: 'ConfigError', retryable: false });
    expect(o.state.message).toContain('secret "hf" not found');
  });

  it('an unschedulable pod keeps waiting and shows the scheduler message', () => {
    const msg = '0/4 nodes are available: 4 Insufficient nvidia.com/gpu.';
    const o = observeJob(job({ active: 1 }), [
      pod({
        phase: 'Pending',
        conditions: [
          { type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: msg },
        ],
      }),
    ]);
    expect(o.state.phase).toBe('Running');
    expect(o.note).toBe(`Unschedulable: ${msg}`);
  });

  it('a missing PVC fails, not retried', () => {
    const o = observeJob(job({ active: 1 }), [
      pod({
        phase: 'Pending',
        conditions: [
          {
            type: 'PodScheduled',
            status: 'False',
            reason: 'Unschedulable',
            message: 'persistentvolumeclaim "data" not found',
          },
        ],
      }),
    ]);
    expect(o.state).toMatchObject({ phase: 'Failed', reason: 'MissingVolume', retryable: false });
  });

  it('a suspended Job waits for admission', () => {
    const o = observeJob(job({}, { suspend: true, template: {} }), []);
    expect(o.state.phase).toBe('Running');
    expect(o.note).toContain('Kueue');
  });
});
