/**
 * A duration that reaches a timer is held to what a Node timer holds (2^31-1 ms): a
 * 30-day grace period must not become an immediate SIGKILL (Node fires an overflowing
 * timer after 1 ms). The spec refuses such values; this is the second line.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { PayloadEvent } from '../../common/events.js';
import { MAX_TIMER_MS, timerDelay } from '../../common/timers.js';
import { runPayload, type PayloadSink } from '../../worker/runner.js';

describe('timerDelay', () => {
  it.each<[string, number, number, boolean]>([
    ['a delay a timer holds', 30_000, 30_000, false],
    ['the longest a timer holds', MAX_TIMER_MS, MAX_TIMER_MS, false],
    ['30 days', 30 * 86_400_000, MAX_TIMER_MS, true],
    ['1e308 seconds', 1e308 * 1000, MAX_TIMER_MS, true],
    ['Infinity', Infinity, MAX_TIMER_MS, true],
    ['a negative delay', -5, 0, true],
    ['NaN', NaN, 0, true],
  ])('holds %s as %d', (_name, asked, ms, clamped) => {
    expect(timerDelay(asked)).toEqual({ ms, clamped });
  });
});

class LinesSink implements PayloadSink {
  readonly lines: string[] = [];
  event(_event: PayloadEvent): void {}
  log(line: string): void {
    this.lines.push(line);
  }
  warn(): void {}
}

describe('runPayload with a grace period longer than a timer holds', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'stoker-timers-'));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('gives the payload its grace (it checkpoints and exits), not an immediate SIGKILL', async () => {
    // Traps SIGTERM, "checkpoints" for 300 ms, then exits 77 (PREEMPTED) by itself.
    const script = [
      "process.on('SIGTERM', () => {",
      "  console.log('got SIGTERM, checkpointing');",
      "  setTimeout(() => { console.log('checkpoint written'); process.exit(77); }, 300);",
      '});',
      "console.log('ready');",
      'setInterval(() => {}, 1000);',
    ].join('\n');
    const sink = new LinesSink();
    const ac = new AbortController();
    const logFile = join(dir, 'attempt.log');
    const running = runPayload({
      argv: [process.execPath, '-e', script],
      cwd: dir,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      logFile,
      sink,
      signal: ac.signal,
      terminationGraceMs: 30 * 86_400_000,
    });
    const deadline = Date.now() + 30_000;
    while (!sink.lines.includes('ready')) {
      if (Date.now() > deadline) throw new Error('the payload never printed "ready"');
      await new Promise((r) => setTimeout(r, 20));
    }
    ac.abort();
    const outcome = await running;
    expect(outcome).toMatchObject({ terminated: 'abort', exitCode: 77, signal: null });
    expect(sink.lines).toContain('checkpoint written');
    expect(readFileSync(logFile, 'utf8')).not.toMatch(/SIGKILL to process group/);
  });
});
