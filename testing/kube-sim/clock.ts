/**
 * Time for the fake cluster (API server timestamps, Job deadlines and TTLs, kubelet
 * grace periods). `realClock` by default; tests that must not wait for a deadline use
 * ManualClock and move it with advance().
 */

export interface ClockTimer {
  cancel(): void;
}

export interface Clock {
  now(): number;
  /** Run fn after ms of this clock's time. */
  setTimeout(fn: () => void, ms: number): ClockTimer;
}

export const realClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    const h = setTimeout(fn, Math.max(0, ms));
    h.unref();
    return { cancel: () => clearTimeout(h) };
  },
};

/** A clock that only moves when told to; due timers fire in order inside advance(). */
export class ManualClock implements Clock {
  private current: number;
  private seq = 0;
  private readonly timers = new Map<number, { at: number; fn: () => void }>();

  constructor(start = Date.parse('2025-01-01T00:00:00.000Z')) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  setTimeout(fn: () => void, ms: number): ClockTimer {
    const id = ++this.seq;
    this.timers.set(id, { at: this.current + Math.max(0, ms), fn });
    return { cancel: () => this.timers.delete(id) };
  }

  get pendingTimers(): number {
    return this.timers.size;
  }

  /** Move time forward by ms, firing due timers (and letting their async work start). */
  async advance(ms: number): Promise<void> {
    const target = this.current + ms;
    for (;;) {
      let dueId: number | undefined;
      let due: { at: number; fn: () => void } | undefined;
      for (const [id, t] of this.timers) {
        if (t.at <= target && (!due || t.at < due.at)) {
          due = t;
          dueId = id;
        }
      }
      if (!due || dueId === undefined) break;
      this.timers.delete(dueId);
      this.current = Math.max(this.current, due.at);
      due.fn();
      await new Promise((r) => setImmediate(r));
    }
    this.current = target;
    await new Promise((r) => setImmediate(r));
  }
}
