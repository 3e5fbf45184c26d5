/**
 * Two-stage shutdown of a whole stoker (what `stoker up` does on Ctrl-C): the first stop
 * drains (running payloads get SIGTERM and their grace period), a force during that
 * drain kills what it waits for instead of waiting out the grace period.
 */
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { isRunning } from '../../common/proc.js';
import { eventually } from '../util/redis-server.js';
import { nodePayloadRun, startTestSystem, type TestSystem } from '../util/system.js';

let sys: TestSystem | undefined;
afterEach(async () => {
  await sys?.cleanup();
  sys = undefined;
});

describe('System.stop', () => {
  it('a force during a drain kills the payload that ignores SIGTERM, and the drain ends', async () => {
    sys = await startTestSystem();
    // A grace period far longer than this test may take: only the force can end the drain.
    const spec = nodePayloadRun(
      'stubborn',
      'ignore-sigterm.mjs',
      {},
      { terminationGracePeriod: '1h' },
    );
    const runId = await sys.submit(spec);
    const view = await sys.waitForPhase(runId, ['Running']);
    const taskId = view.stages[0]?.tasks[0]?.id as string;
    // The fixture reports step 1 once its SIGTERM handler is in place.
    await eventually('the payload ignoring SIGTERM', async () => {
      const v = await sys!.view(runId);
      return (v.stages[0]?.tasks[0]?.progress.step ?? 0) >= 1;
    });
    const s = (await sys.store.getTaskStatuses([taskId]))[taskId];
    const unit = await sys.redis.hgetall(sys.keys.unit(s?.unit as string));
    const payload = Number(unit.payloadPgid);
    expect(isRunning(payload)).toBe(true);

    const drain = sys.stop('preempt');
    // The drain waits for the payload's grace period (an hour): it is still running.
    await eventually('the payload to get its SIGTERM', () =>
      readFileSync(unit.logFile as string, 'utf8').includes('got SIGTERM, ignoring it'),
    );
    expect(isRunning(payload)).toBe(true);
    const force = sys.stop('force');
    await Promise.all([drain, force]);
    expect(isRunning(payload)).toBe(false);
  });
});
