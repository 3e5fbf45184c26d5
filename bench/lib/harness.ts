/**
 * Shared pieces of the benchmarks: the context each one runs in, a cleanup stack, clocks,
 * statistics, polling, and reading a process's CPU time from /proc.
 *
 * Benchmark contract (bench/index.ts runs them):
 *   run(ctx, cleanup) resolves with the benchmark's fields (numbers it measured, a
 *   `baseline` object measured in the same call on the same Redis, `ratio` and what
 *   the ratio compares); it throws if a measurement failed. Everything it starts goes
 *   on `cleanup` as soon as it exists, so it is stopped on success, error and Ctrl-C.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

export interface BenchContext {
  quick: boolean;
  /** The bench's own redis-server (never the machine's 6379). */
  redisUrl: string;
  /** A temp directory for this bench invocation, removed at the end. */
  tmpRoot: string;
  /** The repository root. */
  root: string;
  /** How the local backend starts `stoker worker` (compiled dist/). */
  stokerCommand: string[];
  /** A progress line for humans (stderr, not with --json). */
  note(message: string): void;
}

export interface Benchmark {
  name: string;
  run(ctx: BenchContext, cleanup: Cleanup): Promise<Record<string, unknown>>;
}

/** LIFO cleanup: every step runs even if an earlier one throws; errors are collected. */
export class Cleanup {
  private readonly steps: Array<{ label: string; fn: () => Promise<void> | void }> = [];

  defer(label: string, fn: () => Promise<void> | void): void {
    this.steps.push({ label, fn });
  }

  /** A nested stack, run by this one's run() unless it was run (emptied) before. */
  child(label: string): Cleanup {
    const c = new Cleanup();
    this.defer(label, async () => {
      const errors = await c.run();
      if (errors.length > 0) throw new Error(errors.join('; '));
    });
    return c;
  }

  /** Run (and forget) every step, newest first. Returns the failures, as messages. */
  async run(): Promise<string[]> {
    const errors: string[] = [];
    while (this.steps.length > 0) {
      const step = this.steps.pop();
      if (!step) break;
      try {
        await step.fn();
      } catch (err) {
        errors.push(`${step.label}: ${(err as Error).message}`);
      }
    }
    return errors;
  }
}

/** Wall-clock milliseconds with sub-millisecond resolution, comparable across processes. */
export const nowMs = (): number => performance.timeOrigin + performance.now();

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export const round = (v: number, digits = 1): number => {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
};

/** Nearest-rank percentile (p in 0..100) of a non-empty list. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) throw new Error('percentile of an empty list');
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1] as number;
}

export const median = (values: readonly number[]): number => {
  if (values.length === 0) throw new Error('median of an empty list');
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
};

export interface Summary {
  n: number;
  p50: number;
  p99: number;
  min: number;
  max: number;
  mean: number;
}

/** p50 is the median; with n < 100 samples p99 is the largest one (nearest rank). */
export function summarize(values: readonly number[], digits = 1): Summary {
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  return {
    n: values.length,
    p50: round(median(values), digits),
    p99: round(percentile(values, 99), digits),
    min: round(Math.min(...values), digits),
    max: round(Math.max(...values), digits),
    mean: round(mean, digits),
  };
}

/** Poll `fn` until it returns a non-null value; throw naming `what` after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | null | undefined> | T | null | undefined,
  timeoutMs: number,
  everyMs = 20,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== null && v !== undefined) return v;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

// ---------------------------------------------------------------------------------------
// /proc

let clockTicks: number | undefined;

/** Clock ticks per second (USER_HZ) for /proc/<pid>/stat; 100 when getconf is missing. */
export function clockTicksPerSecond(): number {
  if (clockTicks !== undefined) return clockTicks;
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number.parseInt(r.stdout ?? '', 10);
  clockTicks = Number.isFinite(n) && n > 0 ? n : 100;
  return clockTicks;
}

/**
 * CPU seconds (utime + stime, the process itself, not its children) of a live process,
 * or null once it is gone. Linux only.
 */
export function procCpuSeconds(pid: number): number | null {
  let raw: string;
  try {
    raw = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // Field 2 (comm) may hold spaces and parentheses: split after the last ')'.
  const rest = raw.slice(raw.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3; utime is field 14, stime field 15.
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) return null;
  return (utime + stime) / clockTicksPerSecond();
}

/** Sample a process's CPU seconds every `everyMs` until it exits; `last()` is the final sample. */
export function watchProcCpu(
  pid: number,
  everyMs = 100,
): { last(): number | null; samples(): number; done: Promise<void>; stop(): void } {
  let last: number | null = procCpuSeconds(pid);
  let samples = last === null ? 0 : 1;
  let timer: NodeJS.Timeout | undefined;
  let finish: () => void = () => undefined;
  const done = new Promise<void>((resolve) => {
    finish = resolve;
  });
  const stop = (): void => {
    clearInterval(timer);
    finish();
  };
  if (last === null) stop();
  else {
    timer = setInterval(() => {
      const v = procCpuSeconds(pid);
      if (v === null) return stop();
      last = v;
      samples += 1;
    }, everyMs);
  }
  return { last: () => last, samples: () => samples, done, stop };
}

// ---------------------------------------------------------------------------------------
// dist/ freshness, as bin/stoker.js decides it

function newestSource(dir: string, newest = 0): number {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name === 'python' || entry.name === 'node_modules') continue;
    const p = join(dir, entry.name);
    if (entry.isDirectory()) newest = newestSource(p, newest);
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

/** Whether dist/ is at least as new as every source: the same test as bin/stoker.js. */
export function distIsFresh(root: string): boolean {
  const built = join(root, 'dist', 'orchestrator', 'cli', 'main.js');
  const stamp = join(root, 'dist', '.tsbuildinfo');
  if (!existsSync(built) || !existsSync(stamp)) return false;
  const builtAt = statSync(stamp).mtimeMs;
  return ['common', 'fire', 'orchestrator', 'worker', 'testing'].every(
    (d) => newestSource(join(root, d)) <= builtAt,
  );
}

/** Run a phase's cleanup now (the baseline that follows must not share the machine); throw on failure. */
export async function stopPhase(phase: Cleanup): Promise<void> {
  const errors = await phase.run();
  if (errors.length > 0) throw new Error(`cleanup failed: ${errors.join('; ')}`);
}
