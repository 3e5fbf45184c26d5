/** The autoscaler's controller settings from the environment (orchestrator/autoscale/settings.ts). */
import { describe, expect, it } from 'vitest';
import { autoscaleSettingsFromEnv } from '../../orchestrator/autoscale/settings.js';

describe('autoscaleSettingsFromEnv', () => {
  it('has no budget and a 120 s unschedulable limit by default', () => {
    expect(autoscaleSettingsFromEnv({})).toEqual({
      budget: { controller: null, queues: {} },
      unschedulableAfterSeconds: 120,
    });
  });

  it('reads a controller budget, per-queue budgets and the unschedulable limit', () => {
    expect(
      autoscaleSettingsFromEnv({
        STOKER_GPU_BUDGET: '16',
        STOKER_GPU_BUDGET_QUEUES: '{"team-a": 8, "team-b": 4}',
        STOKER_UNSCHEDULABLE_AFTER_SECONDS: '300',
      }),
    ).toEqual({
      budget: { controller: 16, queues: { 'team-a': 8, 'team-b': 4 } },
      unschedulableAfterSeconds: 300,
    });
  });

  it.each([
    [{ STOKER_GPU_BUDGET: 'lots' }, /STOKER_GPU_BUDGET: "lots" is not a whole number of GPUs/],
    [{ STOKER_GPU_BUDGET: '-1' }, /STOKER_GPU_BUDGET: "-1"/],
    [{ STOKER_GPU_BUDGET: '1.5' }, /STOKER_GPU_BUDGET: "1.5"/],
    [{ STOKER_GPU_BUDGET_QUEUES: '{team: 1}' }, /STOKER_GPU_BUDGET_QUEUES: not JSON/],
    [{ STOKER_GPU_BUDGET_QUEUES: '[1]' }, /STOKER_GPU_BUDGET_QUEUES: expected an object/],
    [{ STOKER_GPU_BUDGET_QUEUES: '{"a": "x"}' }, /STOKER_GPU_BUDGET_QUEUES\.a: "x"/],
    [{ STOKER_UNSCHEDULABLE_AFTER_SECONDS: 'soon' }, /STOKER_UNSCHEDULABLE_AFTER_SECONDS/],
  ])('refuses %j, naming the variable', (env, message) => {
    expect(() => autoscaleSettingsFromEnv(env)).toThrow(message);
  });
});
