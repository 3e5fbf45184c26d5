/**
 * Delays for Node timers. setTimeout and setInterval hold at most 2^31-1 ms (24.8 days): a
 * longer delay (or NaN, or a negative one) fires after 1 ms, with only a
 * TimeoutOverflowWarning. A 30-day grace period would then be an immediate SIGKILL.
 *
 *   const { ms, clamped } = timerDelay(graceSeconds * 1000)
 *   if (clamped) log.warn({ asked, ms }, '...')      // the caller says why it asked
 *   setTimeout(kill, ms)
 *
 * The spec refuses such durations (SPEC_LIMITS in spec/normalized.ts); this is the second
 * line, for a value that reaches a timer some other way (a record written by another
 * version, a caller's option).
 */

/** The longest delay a Node timer holds, in ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * `ms` as a timer can hold it: within [0, MAX_TIMER_MS], NaN as 0. `clamped` says it was
 * changed (a caller that asked for too long a delay should log it).
 */
export function timerDelay(ms: number): { ms: number; clamped: boolean } {
  if (Number.isNaN(ms) || ms < 0) return { ms: 0, clamped: true };
  if (ms > MAX_TIMER_MS) return { ms: MAX_TIMER_MS, clamped: true };
  return { ms, clamped: false };
}

/** `p`, or nothing once `ms` passed (then `late` is called); never rejects. */
export function bounded(p: Promise<unknown>, ms: number, late?: () => void): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((r) => {
    timer = setTimeout(() => {
      late?.();
      r();
    }, ms);
    timer.unref();
  });
  return Promise.race([
    p.then(
      () => undefined,
      () => undefined,
    ),
    timeout,
  ]).finally(() => clearTimeout(timer));
}

/** What `p` gives, or undefined once `ms` passed or when it rejects. */
export function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((r) => {
    timer = setTimeout(() => r(undefined), ms);
    timer.unref();
  });
  return Promise.race([p.catch(() => undefined), timeout]).finally(() => clearTimeout(timer));
}
