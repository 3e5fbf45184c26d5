/**
 * Provisioning awareness (orchestrator/autoscale/provisioning.ts): pending pods count as
 * capacity on the way; a pod unschedulable past the setting is not counted, is reported
 * with the scheduler's message, and stops the pool from asking for pods that would only
 * wait behind it.
 */
import type { V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import {
  limitByProvisioning,
  observeProvisioning,
  podStartSeconds,
  podView,
  type WorkerPodView,
} from '../../orchestrator/autoscale/provisioning.js';

const NO_GPU = '0/4 nodes are available: 4 Insufficient nvidia.com/gpu.';
const NOW = 1_000_000;

/** A worker pod as the cache shows it, `age` seconds old. */
const running = (name: string): WorkerPodView => ({
  name,
  phase: 'Running',
  createdMs: NOW - 300_000,
  scheduled: { status: 'True' },
});
const pulling = (name: string, age = 5): WorkerPodView => ({
  name,
  phase: 'Pending',
  createdMs: NOW - age * 1000,
  scheduled: { status: 'True', sinceMs: NOW - age * 1000 },
});
const unseen = (name: string): WorkerPodView => ({ name, phase: 'Pending', createdMs: NOW - 500 });
const unschedulable = (name: string, forS: number, message = NO_GPU): WorkerPodView => ({
  name,
  phase: 'Pending',
  createdMs: NOW - (forS + 1) * 1000,
  scheduled: { status: 'False', reason: 'Unschedulable', message, sinceMs: NOW - forS * 1000 },
});

describe('observeProvisioning', () => {
  it.each<[string, WorkerPodView[], { running: number; pending: number; stuck: number }]>([
    [
      'running pods are capacity',
      [running('a'), running('b')],
      { running: 2, pending: 0, stuck: 0 },
    ],
    [
      'pending pods, scheduled or not yet seen by the scheduler, are capacity on the way',
      [running('a'), pulling('b'), unseen('c')],
      { running: 1, pending: 2, stuck: 0 },
    ],
    [
      'a pod unschedulable for less than the setting is still on the way (a node may be coming)',
      [unschedulable('a', 119)],
      { running: 0, pending: 1, stuck: 0 },
    ],
    [
      'a pod unschedulable for longer than the setting is not counted',
      [running('a'), unschedulable('b', 121)],
      { running: 1, pending: 0, stuck: 1 },
    ],
    [
      'pods being deleted and finished pods are not capacity',
      [
        { ...running('a'), deleting: true },
        { ...running('b'), phase: 'Succeeded' },
        { ...running('c'), phase: 'Failed' },
      ],
      { running: 0, pending: 0, stuck: 0 },
    ],
  ])('%s', (_name, pods, want) => {
    const p = observeProvisioning(pods, NOW, 120);
    expect({ running: p.running, pending: p.pending, stuck: p.stuck.length }).toEqual(want);
    expect(p.capacity).toBe(want.running + want.pending);
  });

  it('reports stuck pods oldest first, with how long and the scheduler message', () => {
    const p = observeProvisioning(
      [unschedulable('young', 130), unschedulable('old', 400, 'no node has label gpu=h100')],
      NOW,
      120,
    );
    expect(p.stuck).toEqual([
      { name: 'old', seconds: 400, message: 'no node has label gpu=h100' },
      { name: 'young', seconds: 130, message: NO_GPU },
    ]);
  });

  it('takes the time from the condition, and from the pod creation when the condition has none', () => {
    const pod = { ...unschedulable('a', 0), createdMs: NOW - 200_000 };
    delete pod.scheduled?.sinceMs;
    expect(observeProvisioning([pod], NOW, 120).stuck.map((u) => u.seconds)).toEqual([200]);
  });

  it('reads a V1Pod as the API server returns it', () => {
    const pod: V1Pod = {
      metadata: { name: 'w-1', creationTimestamp: new Date(NOW - 200_000) },
      status: {
        phase: 'Pending',
        conditions: [
          {
            type: 'PodScheduled',
            status: 'False',
            reason: 'Unschedulable',
            message: NO_GPU,
            lastTransitionTime: new Date(NOW - 150_000),
          },
        ],
      },
    };
    expect(podView(pod)).toEqual({
      name: 'w-1',
      phase: 'Pending',
      createdMs: NOW - 200_000,
      scheduled: {
        status: 'False',
        reason: 'Unschedulable',
        message: NO_GPU,
        sinceMs: NOW - 150_000,
      },
      deleting: false,
    });
    expect(observeProvisioning([podView(pod)], NOW).stuck).toHaveLength(1);
  });
});

describe('limitByProvisioning', () => {
  it('lets a pool with pods still starting grow: they are on the way, not a reason to wait', () => {
    const p = observeProvisioning([running('a'), pulling('b'), pulling('c')], NOW);
    expect(limitByProvisioning(10, p)).toEqual({ desired: 10, release: [], condition: null });
  });

  it('asks for no new pod while one waits for a node: it would only wait behind it', () => {
    const p = observeProvisioning([running('a'), running('b'), unschedulable('c', 30)], NOW);
    const l = limitByProvisioning(10, p);
    expect(l.desired).toBe(3);
    expect(l.release).toEqual([]);
    expect(l.condition).toEqual({
      type: 'ScalingLimited',
      status: 'True',
      reason: 'PodsUnschedulable',
      message: `1 pod waiting for a node for up to 30s (${NO_GPU}); no new pods until they schedule: asking for 3, not 10`,
    });
  });

  it('stops counting pods stuck past the setting, keeps the oldest as the pool request and gives up the rest', () => {
    const p = observeProvisioning(
      [
        running('a'),
        running('b'),
        unschedulable('s1', 300),
        unschedulable('s2', 200),
        unschedulable('s3', 125),
      ],
      NOW,
      120,
    );
    const l = limitByProvisioning(20, p, 120);
    expect(l.desired).toBe(3);
    expect(l.release).toEqual(['s2', 's3']);
    expect(l.condition?.reason).toBe('Unschedulable');
    expect(l.condition?.message).toBe(
      `3 pods unschedulable for more than 120s, not counted (${NO_GPU}); asking for 3 (2 running or on the way, 1 kept waiting for a node), not 20, until one schedules`,
    );
  });

  it('gives up every stuck pod when the pool shrinks anyway, without a condition', () => {
    const p = observeProvisioning([running('a'), running('b'), unschedulable('s1', 300)], NOW, 120);
    expect(limitByProvisioning(1, p, 120)).toEqual({
      desired: 1,
      release: ['s1'],
      condition: null,
    });
  });

  it('grows again once nothing is unschedulable', () => {
    const p = observeProvisioning([running('a'), running('b'), running('s1')], NOW, 120);
    expect(limitByProvisioning(8, p, 120).desired).toBe(8);
  });
});

describe('podStartSeconds (the pod start in the pool’s start-to-ready time)', () => {
  it('is the median of scheduled to container started over the pods that have both', () => {
    const started = (name: string, scheduledS: number, startedS: number): WorkerPodView => ({
      ...running(name),
      scheduled: { status: 'True', sinceMs: NOW - scheduledS * 1000 },
      containerStartedMs: NOW - startedS * 1000,
    });
    expect(
      podStartSeconds([
        started('a', 100, 80), // 20 s
        started('b', 100, 75), // 25 s
        started('c', 300, 0), // 300 s: one slow image pull is not the estimate
        pulling('d'), // not started yet
        unschedulable('e', 30),
      ]),
    ).toBe(25);
    expect(podStartSeconds([pulling('d'), running('a')])).toBeNull();
  });

  it('reads the container’s start from the pod as the API server returns it', () => {
    const pod: V1Pod = {
      metadata: { name: 'w', creationTimestamp: new Date(NOW - 60_000) },
      status: {
        phase: 'Running',
        conditions: [
          { type: 'PodScheduled', status: 'True', lastTransitionTime: new Date(NOW - 50_000) },
        ],
        containerStatuses: [
          {
            name: 'worker',
            image: 'stoker',
            imageID: '',
            ready: true,
            restartCount: 0,
            state: { running: { startedAt: new Date(NOW - 30_000) } },
          },
        ],
      },
    };
    expect(podView(pod).containerStartedMs).toBe(NOW - 30_000);
    expect(podStartSeconds([podView(pod)])).toBe(20);
  });
});
