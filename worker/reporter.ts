/**
 * TaskReporter: the PayloadSink that records a task's events in Redis (layout in
 * common/progress.ts; the design's rule: "throttle progress writes but never lose the
 * last one or a checkpoint event").
 *
 * Rules
 *   progress, metrics  coalesced in memory (latest progress; metrics merged key by key)
 *                      and written at most every flushIntervalMs (default 250) as one
 *                      HSET of the progress hash plus one XADD of the snapshot.
 *   checkpoint, artifact, result, warning
 *                      written at once (HSET + XADD), after any pending progress, so the
 *                      stream is in the order the payload printed.
 *   log lines          the last LOG_TAIL_LINES kept in memory, RPUSHed (LTRIM to the
 *                      tail) with the next write.
 *   heartbeat          every heartbeatIntervalMs (default 2000): heartbeatAt, the current
 *                      step and stepsPerSec, even when nothing changed, so liveness
 *                      checks can tell "slow step" from "dead worker".
 *   stepsPerSec        step delta over time between writes, smoothed (EMA).
 *
 * Every write goes through one promise chain, each as one MULTI: writes never overtake
 * one another, and a reader never sees half a write. Handler calls (event, log, warn)
 * are synchronous and do no I/O, so the runner can feed tens of thousands of lines a
 * second; a slow Redis delays writes (at most one timer flush is queued at a time)
 * rather than queueing one per event. A failed write is logged and the next one goes
 * on: losing a progress snapshot must not kill a training run.
 *
 * Lifecycle: beginAttempt(attempt) (resets step, metrics, result, warnings; keeps
 * checkpoint and artifacts so RESUME_FROM survives; starts the timers) -> events ->
 * close() (stops the timers, writes everything pending, waits for the writes). A caller
 * that batches the attempt's first write with its own (the pool worker) splits
 * beginAttempt into openAttempt() and attemptOpened().
 *
 * Side effects are injected: the store (Redis or a fake), the clock and the timers
 * (worker/progress-store.ts).
 */
import type { Redis } from 'ioredis';
import type { PayloadEvent } from '../common/events.js';
import { LOG_TAIL_LINES, type Keys } from '../common/keys.js';
import type { Logger } from '../common/logger.js';
import { silentLogger } from '../common/logger.js';
import { emptyProgress, nowIso, type TaskProgress } from '../common/model.js';
import { encodeProgress, type TaskStreamEventType } from '../common/progress.js';
import type { MetricHistory } from './metric-history.js';
import { PendingLines } from './pending-lines.js';
import {
  realTimers,
  redisProgressStore,
  type ProgressStore,
  type ProgressWrite,
  type Timers,
} from './progress-store.js';
import type { PayloadSink } from './runner.js';

export interface TaskReporterOptions {
  store: ProgressStore;
  flushIntervalMs?: number;
  heartbeatIntervalMs?: number;
  clock?: () => number;
  timers?: Timers;
  log?: Logger;
  logTailLines?: number;
  /** Smoothing of stepsPerSec: weight of the newest measurement (0..1]. */
  rateAlpha?: number;
}

export const DEFAULT_FLUSH_INTERVAL_MS = 250;
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 2000;
const MAX_WARNINGS = 50;

export class TaskReporter implements PayloadSink {
  private readonly store: ProgressStore;
  private readonly clock: () => number;
  private readonly timers: Timers;
  private readonly logger: Logger;
  private readonly flushIntervalMs: number;
  private readonly heartbeatIntervalMs: number;
  private readonly alpha: number;

  private progress: TaskProgress = emptyProgress();
  private dirty = false;
  private readonly logTail: PendingLines;
  private chain: Promise<void> = Promise.resolve();
  private flushQueued = false;
  private heartbeatQueued = false;
  private rateAnchor: { step: number; at: number } | null = null;
  private flushTimer: unknown = null;
  private heartbeatTimer: unknown = null;
  private closed = false;
  private history: MetricHistory | null = null;
  private rateRecordedAt = -Infinity;

  /** Writes done and failed, for tests and the benchmark. */
  readonly stats = { writes: 0, failedWrites: 0, progressWrites: 0 };

  constructor(opts: TaskReporterOptions) {
    this.store = opts.store;
    this.clock = opts.clock ?? Date.now;
    this.timers = opts.timers ?? realTimers;
    this.logger = opts.log ?? silentLogger();
    this.flushIntervalMs = opts.flushIntervalMs ?? DEFAULT_FLUSH_INTERVAL_MS;
    this.heartbeatIntervalMs = opts.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS;
    this.logTail = new PendingLines(opts.logTailLines ?? LOG_TAIL_LINES);
    this.alpha = opts.rateAlpha ?? 0.3;
  }

  /** A reporter writing to Redis (the usual case). */
  static forRedis(
    redis: Redis,
    keys: Keys,
    taskId: string,
    opts: Omit<TaskReporterOptions, 'store'> & { eventsMaxLen?: number; changes?: boolean } = {},
  ): TaskReporter {
    const store = redisProgressStore(redis, keys, taskId, {
      eventsMaxLen: opts.eventsMaxLen,
      logTailLines: opts.logTailLines,
      changes: opts.changes,
    });
    return new TaskReporter({ ...opts, store });
  }

  /**
   * Keep every metrics event of this attempt as a point of its history (and the
   * measured steps/s, at most once a second), written with the reporter's writes.
   */
  setHistory(history: MetricHistory | null): void {
    this.history = history;
    this.rateRecordedAt = -Infinity;
  }

  /** The in-memory record (a copy): what has been, or is about to be, written. */
  snapshot(): TaskProgress {
    return structuredClone(this.progress);
  }

  /**
   * Start an attempt: read the record, reset step, metrics, result and warnings, keep
   * checkpoint and artifacts, write it, and start the flush and heartbeat timers.
   */
  async beginAttempt(attempt: number): Promise<void> {
    const existing = await this.store.read();
    await this.enqueue(this.openAttempt(attempt));
    this.attemptOpened(existing);
  }

  /**
   * The first half of beginAttempt, for a caller that commits the attempt's first write
   * itself, batched with its own writes (the pool worker's begin-shard script: one round
   * trip per shard start instead of three): resets the record in memory and returns the
   * write. The caller commits it before any other write of this reporter, then calls
   * attemptOpened() with what the store held.
   */
  openAttempt(attempt: number): ProgressWrite {
    const now = nowIso(this.clock);
    this.progress = {
      ...emptyProgress(),
      attempt,
      updatedAt: now,
      heartbeatAt: now,
    };
    this.dirty = false;
    this.rateAnchor = null;
    const fields = encodeProgress({
      step: null,
      totalSteps: null,
      epoch: null,
      stepsPerSec: null,
      metrics: {},
      result: null,
      warnings: [],
      attempt,
      updatedAt: now,
      heartbeatAt: now,
    });
    this.logTail.push(`[stoker] attempt ${attempt} started at ${now}`);
    const logs = this.logTail.take();
    return { fields, events: [{ type: 'attempt', at: now, data: { attempt } }], logs };
  }

  /**
   * The second half: keep the checkpoint and artifacts the store held (RESUME_FROM
   * survives a retry) and start the timers.
   */
  attemptOpened(existing: Pick<TaskProgress, 'checkpoint' | 'artifacts'>): void {
    this.progress.checkpoint = existing.checkpoint;
    this.progress.artifacts = existing.artifacts;
    this.startTimers();
  }

  // --- PayloadSink: synchronous, no I/O ----------------------------------------------

  event(ev: PayloadEvent): void {
    const p = this.progress;
    switch (ev.type) {
      case 'progress':
        p.step = ev.step;
        if (ev.totalSteps !== undefined) p.totalSteps = ev.totalSteps;
        if (ev.epoch !== undefined) p.epoch = ev.epoch;
        this.dirty = true;
        return;
      case 'metrics': {
        const values: Record<string, number> = {};
        for (const [k, v] of Object.entries(ev)) {
          if (k === 'type' || k === 'step') continue;
          if (v === null || typeof v === 'number') p.metrics[k] = v;
          if (typeof v === 'number') values[k] = v;
        }
        const step = ev.step;
        if (typeof step === 'number' && (p.step === null || step > p.step)) p.step = step;
        this.history?.record(typeof step === 'number' ? step : p.step, this.clock(), values);
        this.dirty = true;
        return;
      }
      case 'checkpoint': {
        p.checkpoint = { path: ev.path, step: ev.step };
        this.immediate({ checkpoint: p.checkpoint }, 'checkpoint', p.checkpoint);
        return;
      }
      case 'artifact':
        p.artifacts[ev.name] = ev.path;
        this.immediate({ artifacts: p.artifacts }, 'artifact', { name: ev.name, path: ev.path });
        return;
      case 'result': {
        const { type: _type, ...rest } = ev;
        p.result = rest;
        this.immediate({ result: p.result }, 'result', p.result);
        return;
      }
      case 'log':
        this.logTail.push(`[${ev.level}] ${ev.message}`);
        return;
    }
  }

  log(line: string): void {
    this.logTail.push(line);
  }

  warn(message: string): void {
    const p = this.progress;
    p.warnings.push(message);
    if (p.warnings.length > MAX_WARNINGS) p.warnings.splice(0, p.warnings.length - MAX_WARNINGS);
    this.logTail.push(`[stoker] warning: ${message}`);
    this.immediate({ warnings: p.warnings }, 'warning', { message });
  }

  // --- writes ------------------------------------------------------------------------

  /** Write whatever is pending now (progress, logs); resolves when all writes are done. */
  async flush(): Promise<void> {
    const w = this.collect();
    if (w) void this.enqueue(w);
    await this.chain;
  }

  /** Stop the timers and write everything pending. Idempotent; never throws. */
  async close(): Promise<void> {
    this.stopTimers();
    this.closed = true;
    await this.flush();
  }

  private startTimers(): void {
    this.stopTimers();
    this.closed = false;
    this.flushTimer = this.timers.setInterval(() => this.onFlushTimer(), this.flushIntervalMs);
    this.heartbeatTimer = this.timers.setInterval(
      () => this.onHeartbeat(),
      this.heartbeatIntervalMs,
    );
  }

  private stopTimers(): void {
    if (this.flushTimer !== null) this.timers.clearInterval(this.flushTimer);
    if (this.heartbeatTimer !== null) this.timers.clearInterval(this.heartbeatTimer);
    this.flushTimer = null;
    this.heartbeatTimer = null;
  }

  private onFlushTimer(): void {
    // At most one timer flush queued: with a slow Redis the state stays dirty in memory
    // and the next tick takes the newest snapshot, instead of a queue of stale ones.
    if (this.flushQueued || this.closed) return;
    const w = this.collect();
    if (!w) return;
    this.flushQueued = true;
    void this.enqueue(w).finally(() => {
      this.flushQueued = false;
    });
  }

  private onHeartbeat(): void {
    if (this.heartbeatQueued || this.closed) return;
    const now = this.clock();
    this.updateRate(now);
    const iso = nowIso(() => now);
    this.progress.heartbeatAt = iso;
    this.heartbeatQueued = true;
    void this.enqueue({
      fields: encodeProgress({
        heartbeatAt: iso,
        step: this.progress.step,
        stepsPerSec: this.progress.stepsPerSec,
      }),
      events: [],
      logs: [],
    }).finally(() => {
      this.heartbeatQueued = false;
    });
  }

  /** An event recorded at once, after whatever progress and logs are pending. */
  private immediate(fields: Partial<TaskProgress>, type: TaskStreamEventType, data: unknown): void {
    const w = this.collect() ?? { fields: {}, events: [], logs: [], points: [] };
    const at = nowIso(this.clock);
    Object.assign(w.fields, encodeProgress({ ...fields, updatedAt: at }));
    w.events.push({ type, at, data });
    void this.enqueue(w);
  }

  /** Take pending progress (if changed) and log lines as one write; null when nothing. */
  private collect(): ProgressWrite | null {
    const logs = this.logTail.take();
    if (!this.dirty) return logs.length > 0 ? { fields: {}, events: [], logs, points: [] } : null;
    this.dirty = false;
    const now = this.clock();
    this.updateRate(now);
    const p = this.progress;
    if (this.history && p.stepsPerSec !== null && now - this.rateRecordedAt >= 1000) {
      this.rateRecordedAt = now;
      this.history.record(p.step, now, { stepsPerSec: p.stepsPerSec });
    }
    const at = nowIso(() => now);
    p.updatedAt = at;
    p.heartbeatAt = at;
    this.stats.progressWrites += 1;
    return {
      fields: encodeProgress({
        step: p.step,
        totalSteps: p.totalSteps,
        epoch: p.epoch,
        stepsPerSec: p.stepsPerSec,
        metrics: p.metrics,
        updatedAt: at,
        heartbeatAt: at,
      }),
      events: [
        {
          type: 'progress',
          at,
          data: {
            step: p.step,
            totalSteps: p.totalSteps,
            epoch: p.epoch,
            stepsPerSec: p.stepsPerSec,
            metrics: { ...p.metrics },
          },
        },
      ],
      logs,
      points: this.history?.take() ?? [],
    };
  }

  private updateRate(now: number): void {
    const step = this.progress.step;
    if (step === null) return;
    const a = this.rateAnchor;
    if (a === null || step < a.step) {
      this.rateAnchor = { step, at: now };
      return;
    }
    const dt = now - a.at;
    // Too short a window measures the clock's jitter, not the payload.
    if (dt < Math.min(this.flushIntervalMs, 100)) return;
    const inst = ((step - a.step) * 1000) / dt;
    const prev = this.progress.stepsPerSec;
    const next = prev === null ? inst : this.alpha * inst + (1 - this.alpha) * prev;
    this.progress.stepsPerSec = Math.round(next * 1000) / 1000;
    this.rateAnchor = { step, at: now };
  }

  /** Chain a write after all earlier ones. The returned promise never rejects. */
  private enqueue(w: ProgressWrite): Promise<void> {
    const next = this.chain.then(async () => {
      try {
        await this.store.write(w);
        this.stats.writes += 1;
      } catch (err) {
        this.stats.failedWrites += 1;
        this.logger.warn(
          { err, events: w.events.map((e) => e.type) },
          'task progress write failed',
        );
      }
    });
    this.chain = next;
    return next;
  }
}
