import { describe, expect, it } from 'vitest';
import { emptyProgress, type TaskProgress } from '../../common/model.js';
import { decodeProgress, encodeProgress } from '../../common/progress.js';
import type { ProgressStore, ProgressWrite, Timers } from '../../worker/progress-store.js';
import { decodeMetricPoint, type MetricPoint } from '../../common/metric-history.js';
import { MetricHistory } from '../../worker/metric-history.js';
import { TaskReporter } from '../../worker/reporter.js';

/** A clock and interval timers that move only when told to. */
class FakeClock implements Timers {
  now = Date.parse('2025-01-01T00:00:00.000Z');
  private seq = 0;
  private readonly intervals = new Map<number, { fn: () => void; ms: number; next: number }>();

  readonly clock = (): number => this.now;

  setInterval(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.intervals.set(id, { fn, ms, next: this.now + ms });
    return id;
  }

  clearInterval(handle: unknown): void {
    this.intervals.delete(handle as number);
  }

  get activeTimers(): number {
    return this.intervals.size;
  }

  /** Move time forward, firing due intervals in order and letting their writes run. */
  async advance(ms: number): Promise<void> {
    const target = this.now + ms;
    for (;;) {
      let due: { fn: () => void; ms: number; next: number } | undefined;
      for (const t of this.intervals.values())
        if (t.next <= target && (!due || t.next < due.next)) due = t;
      if (!due) break;
      this.now = due.next;
      due.next += due.ms;
      due.fn();
      await settle();
    }
    this.now = target;
    await settle();
  }
}

const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** The in-memory store: records every write; interceptors make writes fail or wait. */
class FakeStore implements ProgressStore {
  readonly writes: ProgressWrite[] = [];
  hash: Record<string, string> = {};
  failNext = 0;
  gate: Promise<void> | null = null;

  constructor(initial: Partial<TaskProgress> = {}) {
    this.hash = encodeProgress(initial);
  }

  async write(w: ProgressWrite): Promise<void> {
    if (this.gate) await this.gate;
    if (this.failNext > 0) {
      this.failNext -= 1;
      throw new Error("READONLY You can't write against a read only replica.");
    }
    this.writes.push(structuredClone(w));
    Object.assign(this.hash, w.fields);
  }

  async read(): Promise<TaskProgress> {
    return decodeProgress(this.hash);
  }

  get progress(): TaskProgress {
    return decodeProgress(this.hash);
  }
  get events(): ProgressWrite['events'] {
    return this.writes.flatMap((w) => w.events);
  }
  eventsOf(type: string): ProgressWrite['events'] {
    return this.events.filter((e) => e.type === type);
  }
}

async function started(opts: { initial?: Partial<TaskProgress>; attempt?: number } = {}) {
  const clock = new FakeClock();
  const store = new FakeStore(opts.initial);
  const reporter = new TaskReporter({
    store,
    clock: clock.clock,
    timers: clock,
    flushIntervalMs: 250,
    heartbeatIntervalMs: 2000,
  });
  await reporter.beginAttempt(opts.attempt ?? 1);
  store.writes.length = 0; // the attempt's own write is checked separately
  return { clock, store, reporter };
}

describe('TaskReporter', () => {
  it('coalesces 1000 progress events over two seconds into a handful of writes, the last one recorded', async () => {
    const { clock, store, reporter } = await started();
    for (let step = 1; step <= 1000; step++) {
      reporter.event({ type: 'progress', step, totalSteps: 1000 });
      await clock.advance(2);
    }
    await reporter.close();
    const progressWrites = store.eventsOf('progress');
    expect(progressWrites.length).toBeGreaterThan(1);
    expect(progressWrites.length).toBeLessThanOrEqual(2000 / 250 + 1);
    expect(store.progress.step).toBe(1000);
    expect(store.progress.totalSteps).toBe(1000);
    expect(progressWrites.at(-1)?.data).toMatchObject({ step: 1000, totalSteps: 1000 });
  });

  it('writes one snapshot for a burst between ticks, and close() records it', async () => {
    const { store, reporter } = await started();
    for (let step = 1; step <= 1000; step++) reporter.event({ type: 'progress', step });
    await settle();
    expect(store.eventsOf('progress')).toHaveLength(0);
    await reporter.close();
    expect(store.eventsOf('progress')).toHaveLength(1);
    expect(store.progress.step).toBe(1000);
  });

  it('merges metrics key by key, keeping the latest value of each', async () => {
    const { clock, store, reporter } = await started();
    reporter.event({ type: 'metrics', loss: 2, lr: 0.1 });
    reporter.event({ type: 'metrics', tokensPerSec: 900 });
    reporter.event({ type: 'metrics', step: 7, loss: 1.5 });
    await clock.advance(250);
    expect(store.progress.metrics).toEqual({ loss: 1.5, lr: 0.1, tokensPerSec: 900 });
    expect(store.progress.step).toBe(7);
    await reporter.close();
  });

  it('writes a checkpoint at once, after the progress that preceded it', async () => {
    const { store, reporter } = await started();
    reporter.event({ type: 'progress', step: 10 });
    reporter.event({ type: 'checkpoint', path: '/ckpt/10', step: 10 });
    await settle();
    expect(store.events.map((e) => e.type)).toEqual(['progress', 'checkpoint']);
    expect(store.progress.checkpoint).toEqual({ path: '/ckpt/10', step: 10 });
    await reporter.close();
  });

  it('keeps the order of immediate events even when the store is slow', async () => {
    const { store, reporter } = await started();
    let open!: () => void;
    store.gate = new Promise((resolve) => (open = resolve));
    reporter.event({ type: 'checkpoint', path: '/ckpt/1', step: 1 });
    reporter.event({ type: 'progress', step: 2 });
    reporter.event({ type: 'checkpoint', path: '/ckpt/2', step: 2 });
    reporter.event({ type: 'artifact', name: 'model', path: '/out/model' });
    reporter.event({ type: 'result', accuracy: 0.5 });
    reporter.event({ type: 'artifact', name: 'tokenizer', path: '/out/tok' });
    await settle();
    expect(store.writes).toHaveLength(0);
    store.gate = null;
    open();
    await reporter.close();
    expect(store.events.map((e) => `${e.type}:${JSON.stringify(e.data)}`)).toEqual([
      'checkpoint:{"path":"/ckpt/1","step":1}',
      expect.stringMatching(/^progress:\{"step":2/),
      'checkpoint:{"path":"/ckpt/2","step":2}',
      'artifact:{"name":"model","path":"/out/model"}',
      'result:{"accuracy":0.5}',
      'artifact:{"name":"tokenizer","path":"/out/tok"}',
    ]);
    expect(store.progress).toMatchObject({
      checkpoint: { path: '/ckpt/2', step: 2 },
      artifacts: { model: '/out/model', tokenizer: '/out/tok' },
      result: { accuracy: 0.5 },
    });
  });

  it('queues at most one timer flush while the store is stuck, then writes the newest snapshot', async () => {
    const { clock, store, reporter } = await started();
    let open!: () => void;
    store.gate = new Promise((resolve) => (open = resolve));
    for (let step = 1; step <= 100; step++) {
      reporter.event({ type: 'progress', step });
      await clock.advance(50);
    }
    store.gate = null;
    open();
    await reporter.close();
    const steps = store.eventsOf('progress').map((e) => (e.data as { step: number }).step);
    expect(steps.length).toBeLessThanOrEqual(3);
    expect(steps.at(-1)).toBe(100);
  });

  it('sends a heartbeat with the current step even when nothing changed', async () => {
    const { clock, store, reporter } = await started();
    reporter.event({ type: 'progress', step: 5 });
    await clock.advance(250);
    const before = store.writes.length;
    const t0 = clock.now;
    await clock.advance(2000);
    const beats = store.writes
      .slice(before)
      .filter((w) => 'heartbeatAt' in w.fields && w.events.length === 0);
    expect(beats.length).toBeGreaterThanOrEqual(1);
    expect(beats.at(-1)?.fields.step).toBe('5');
    expect(Date.parse(store.progress.heartbeatAt ?? '')).toBeGreaterThan(t0);
    await reporter.close();
  });

  it('computes a smoothed steps-per-second from step deltas', async () => {
    const { clock, store, reporter } = await started();
    for (let step = 1; step <= 100; step++) {
      reporter.event({ type: 'progress', step });
      await clock.advance(25); // 40 steps/s
    }
    await reporter.close();
    expect(store.progress.stepsPerSec).toBeGreaterThan(35);
    expect(store.progress.stepsPerSec).toBeLessThan(45);
  });

  it('beginAttempt keeps checkpoint and artifacts but resets step, metrics, result and warnings', async () => {
    const { store } = await started({
      initial: {
        ...emptyProgress(),
        step: 50,
        metrics: { loss: 0.3 },
        checkpoint: { path: '/ckpt/40', step: 40 },
        artifacts: { model: '/out/model' },
        result: { ok: true },
        warnings: ['old warning'],
        attempt: 1,
      },
      attempt: 2,
    });
    expect(store.progress).toMatchObject({
      step: null,
      metrics: {},
      result: null,
      warnings: [],
      attempt: 2,
      checkpoint: { path: '/ckpt/40', step: 40 },
      artifacts: { model: '/out/model' },
    });
  });

  it('keeps going after a failed write', async () => {
    const { clock, store, reporter } = await started();
    store.failNext = 1;
    reporter.event({ type: 'progress', step: 1 });
    await clock.advance(250);
    reporter.event({ type: 'progress', step: 2 });
    await reporter.close();
    expect(reporter.stats.failedWrites).toBe(1);
    expect(store.progress.step).toBe(2);
  });

  it('batches log lines and keeps only the tail', async () => {
    const clock = new FakeClock();
    const store = new FakeStore();
    const reporter = new TaskReporter({
      store,
      clock: clock.clock,
      timers: clock,
      logTailLines: 10,
    });
    await reporter.beginAttempt(1);
    for (let i = 0; i < 1000; i++) reporter.log(`line ${i}`);
    reporter.event({ type: 'log', level: 'warn', message: 'structured' });
    await clock.advance(250);
    const logs = store.writes.flatMap((w) => w.logs);
    expect(logs.at(-1)).toBe('[warn] structured');
    expect(logs.length).toBeLessThanOrEqual(11);
    await reporter.close();
  });

  it('records a warning at once, and close() stops its timers', async () => {
    const { clock, store, reporter } = await started();
    reporter.warn('malformed marker line ignored');
    await settle();
    expect(store.eventsOf('warning')).toHaveLength(1);
    expect(store.progress.warnings).toEqual(['malformed marker line ignored']);
    await reporter.close();
    expect(clock.activeTimers).toBe(0);
  });

  it('keeps every metrics event as a history point, in the file at once and in the next write', async () => {
    const { clock, store, reporter } = await started({ attempt: 3 });
    const lines: string[] = [];
    const history = new MetricHistory(3, {
      write: (text) => lines.push(text),
      close: async () => undefined,
    });
    reporter.setHistory(history);
    reporter.event({ type: 'progress', step: 4 });
    reporter.event({ type: 'metrics', loss: 2, lr: null });
    reporter.event({ type: 'metrics', step: 5, loss: 1.5, lr: 0.1 });
    reporter.event({ type: 'metrics', step: 6 }); // no numbers: no point
    expect(lines.map((l) => decodeMetricPoint(l.trimEnd()))).toEqual([
      { a: 3, s: 4, t: clock.now, m: { loss: 2 } },
      { a: 3, s: 5, t: clock.now, m: { loss: 1.5, lr: 0.1 } },
    ]);
    await clock.advance(250);
    const points = store.writes.flatMap((w) => w.points ?? []);
    // The two events, and the measured rate once there is one (none yet: one sample).
    expect(points.filter((p: MetricPoint) => 'loss' in p.m)).toHaveLength(2);
    expect(store.progress.metrics).toEqual({ loss: 1.5, lr: 0.1 });
    await reporter.close();
  });

  it('records the measured steps per second in the history at most once a second', async () => {
    const { clock, store, reporter } = await started();
    reporter.setHistory(new MetricHistory(1, null));
    for (let step = 1; step <= 40; step++) {
      reporter.event({ type: 'progress', step });
      await clock.advance(100);
    }
    await reporter.close();
    const rates = store.writes.flatMap((w) => w.points ?? []).filter((p) => 'stepsPerSec' in p.m);
    expect(rates.length).toBeGreaterThanOrEqual(3);
    expect(rates.length).toBeLessThanOrEqual(4);
    expect(rates.at(-1)?.m.stepsPerSec).toBeCloseTo(10, 0);
  });

  it('bounds the points waiting for Redis, and counts those it leaves out', () => {
    const lines: string[] = [];
    const h = new MetricHistory(1, { write: (t) => lines.push(t), close: async () => undefined });
    for (let i = 0; i < 6000; i++) h.record(i, i, { loss: i });
    const taken = h.take();
    expect(taken).toHaveLength(5000);
    expect(taken[0]?.s).toBe(1000);
    expect(h.dropped).toBe(1000);
    expect(lines).toHaveLength(6000);
    expect(h.take()).toEqual([]);
  });
});
