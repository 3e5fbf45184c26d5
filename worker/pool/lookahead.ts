/**
 * One shard in hand. A pool worker runs one shard at a time on its resident server, but
 * between two shards it used to wait for three Redis round trips in a row: the outcome
 * script, BullMQ's moveToFinished (which brings the next job) and the next begin script.
 * With short shards those round trips are a good part of the time (README, Performance:
 * pulled-50ms). So while the shards are short, the worker holds the next job already
 * (BullMQ concurrency 2): it begins it (shard.ts, step 2) while the running shard still
 * runs, waits here for the server, and sends it the moment the running shard's result
 * is in; the running shard's outcome and moveToFinished overlap the next shard's run.
 * A shard in hand is Running from its begin, at most one short shard early.
 *
 * When the worker holds a next job:
 *   - only after a shard ran on the server for less than SHORT_SHARD_MS: with long
 *     shards the round trips do not matter, and a held job would wait a long shard out
 *     while another worker could run it; a long shard turns the lookahead off again
 *     (BullMQ's concurrency, read by its main loop as each job ends);
 *   - a held job gives up its place (Pending again, back to the queue, no attempt
 *     spent: BullMQ's moveToWait) when it has waited longer than MAX_HOLD_MS (the
 *     running shard turned out long), or when the worker drains or is stopped.
 *
 * A turn is the server, taken by one shard at a time, in the order the jobs came.
 */

/** A shard that ran on the server for less than this keeps one more job in hand. */
export const SHORT_SHARD_MS = 1000;
/** A held job waits at most this long for the server, then goes back to the queue. */
export const MAX_HOLD_MS = 2 * SHORT_SHARD_MS;

/** What the lookahead sets: BullMQ's Worker (its concurrency). */
export interface Concurrency {
  concurrency: number;
}

/** The server, held by one shard: release() once its result is in (idempotent). */
export interface Turn {
  release(): void;
}

interface Waiter {
  grant(): void;
}

export class Lookahead {
  private held = false;
  private readonly waiters: Waiter[] = [];
  private worker: Concurrency | null = null;

  /** The BullMQ Worker whose concurrency the lookahead sets (created after the processor). */
  attach(worker: Concurrency): void {
    this.worker = worker;
  }

  /**
   * The server's turn for the next job: at once when the server is free, else when the
   * running shard's result is in. Null when the job should go back to the queue: it
   * waited longer than MAX_HOLD_MS, or one of `stops` was aborted.
   */
  take(stops: readonly AbortSignal[]): Promise<Turn | null> {
    const now = this.tryTake();
    if (now) return Promise.resolve(now);
    if (stops.some((s) => s.aborted)) return Promise.resolve(null);
    return new Promise<Turn | null>((resolve) => {
      const done = (turn: Turn | null) => {
        clearTimeout(timer);
        for (const s of stops) s.removeEventListener('abort', giveUp);
        resolve(turn);
      };
      const waiter: Waiter = { grant: () => done(this.turn()) };
      const giveUp = () => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        done(null);
      };
      // The running shard is a long one: no more jobs in hand until a short one again.
      const timer = setTimeout(() => {
        this.stop();
        giveUp();
      }, MAX_HOLD_MS);
      for (const s of stops) s.addEventListener('abort', giveUp, { once: true });
      this.waiters.push(waiter);
    });
  }

  /** The server's turn if it is free now, else null (a shard runs: this job is in hand). */
  tryTake(): Turn | null {
    if (this.held) return null;
    this.held = true;
    return this.turn();
  }

  /** A shard ran on the server for `ms`: hold the next job while shards are short. */
  ran(ms: number, draining: boolean): void {
    if (!this.worker) return;
    this.worker.concurrency = ms < SHORT_SHARD_MS && !draining ? 2 : 1;
  }

  /** No more jobs in hand (the drain). */
  stop(): void {
    if (this.worker) this.worker.concurrency = 1;
  }

  private turn(): Turn {
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        const next = this.waiters.shift();
        if (next) next.grant();
        else this.held = false;
      },
    };
  }
}
