/**
 * A payload in server mode (pulled execution): started once per pool worker and stage,
 * fed shard after shard over stdin, answering with marker lines (protocol in
 * common/events.ts, "Server mode"). What it loads once, a model, serves every shard.
 *
 * One shard at a time. While a shard runs, progress/metrics/log events and log lines go
 * to that shard's sink and log file; otherwise to the worker's log. A malformed marker
 * line, or an answer about another shard, while a shard runs is a malformed response:
 * the shard fails and the server is restarted, since its state is unknown.
 *
 * A shard's log file gets its lines in batches: one append every LOG_FLUSH_MS while the
 * shard prints, and the rest when it ends (a file opened per line cost more than a
 * whole no-op shard). A shard that printed nothing but its `done` answer leaves no log
 * file at all (`stoker logs` then shows the task's log tail from Redis); once a shard
 * has printed anything, its file holds every line, the answer included.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { PRIVATE_FILE_MODE } from '../common/private-dir.js';
import { createInterface } from 'node:readline';
import { parseLine, type PayloadEvent, type ShardRequest } from '../common/events.js';
import type { Logger } from '../common/logger.js';
import { isRunning, killGroup } from '../common/proc.js';
import { timerDelay } from '../common/timers.js';
import { redactEvent } from './redact.js';
import { redact, type PayloadSink } from './runner.js';

export type ShardResult =
  | { kind: 'done'; items: number }
  | { kind: 'failed'; reason: string; message: string }
  | { kind: 'crashed'; exitCode: number | null; signal: string | null; stderrTail: string[] }
  | { kind: 'malformed'; message: string }
  /** No progress event for the stall timeout: the server is killed, the attempt retried. */
  | { kind: 'stalled'; seconds: number; lastStep: number | null }
  /** notStarted: stopped before it reached the server (a shard in hand: pool/lookahead.ts). */
  | { kind: 'aborted'; notStarted?: boolean };

export interface ServerProcessOptions {
  argv: readonly string[];
  env: Record<string, string>;
  cwd: string;
  /** Where output goes while no shard runs (loading, between shards). */
  idleLogFile: string;
  secretValues: readonly string[];
  log: Logger;
  /** How long loading may take before `ready`. */
  startTimeoutMs?: number;
  graceMs?: number;
}

/** How often a running shard's buffered log lines are appended to its log file. */
export const LOG_FLUSH_MS = 100;

interface CurrentShard {
  id: string;
  sink: PayloadSink;
  logFile: string;
  resolve: (r: ShardResult) => void;
  /** Lines not yet in the log file. */
  pending: string[];
  /** Whether the log file has been written for this shard. */
  wrote: boolean;
  flushTimer: NodeJS.Timeout | null;
  /** When the shard was sent or last reported progress (ms), and its last step. */
  activeAt: number;
  lastStep: number | null;
}

export class ServerProcess {
  private child: ChildProcess | null = null;
  private exited: { code: number | null; signal: string | null } | null = null;
  private readonly stderrTail: string[] = [];
  private current: CurrentShard | null = null;
  /** Log directories known to exist. */
  private readonly logDirs = new Set<string>();
  private readyResolve: (() => void) | null = null;
  private exitWaiters: Array<() => void> = [];

  constructor(private readonly opts: ServerProcessOptions) {}

  get alive(): boolean {
    return this.child !== null && this.exited === null;
  }

  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  /** Start it and wait for `ready`. Rejects with the exit and stderr if it dies first. */
  async start(): Promise<void> {
    const [cmd, ...args] = this.opts.argv;
    const child = spawn(cmd as string, args, {
      cwd: this.opts.cwd,
      env: this.opts.env,
      detached: true,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child = child;
    child.stdin?.on('error', () => undefined); // EPIPE when it dies: seen through 'exit'
    const ready = new Promise<void>((resolve) => (this.readyResolve = resolve));
    const spawned = new Promise<void>((resolve, reject) => {
      child.once('spawn', () => resolve());
      child.once('error', (err) => reject(err));
    });
    child.on('exit', (code, signal) => {
      this.exited = { code, signal };
      // Leave nothing of its process group behind.
      if (child.pid) killGroup(child.pid, 'SIGKILL');
      const cur = this.current;
      this.current = null;
      cur?.resolve({ kind: 'crashed', exitCode: code, signal, stderrTail: [...this.stderrTail] });
      for (const w of this.exitWaiters.splice(0)) w();
    });
    createInterface({ input: child.stdout! }).on('line', (line) => this.onStdout(line));
    createInterface({ input: child.stderr! }).on('line', (line) => this.onStderr(line));
    await spawned;
    const timeoutMs = this.opts.startTimeoutMs ?? 30 * 60_000;
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      ready.then(() => 'ready' as const),
      new Promise<'exit'>((resolve) => this.exitWaiters.push(() => resolve('exit'))),
      new Promise<'timeout'>(
        (resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)),
      ),
    ]);
    clearTimeout(timer);
    if (outcome === 'ready') return;
    if (outcome === 'timeout') {
      await this.stop();
      throw new ServerStartError(
        `the payload server did not report ready within ${Math.round(timeoutMs / 1000)} s`,
        null,
        null,
        [...this.stderrTail],
      );
    }
    const e = this.exited as { code: number | null; signal: string | null };
    throw new ServerStartError(
      `the payload server exited before it was ready (${e.signal ? e.signal : `exit ${e.code}`})`,
      e.code,
      e.signal,
      [...this.stderrTail],
    );
  }

  /** Send one shard and wait for its answer (or the server's death, or `signal`). */
  /**
   * Run one shard. With `stallTimeoutMs` (> 0), a shard that reports no progress or
   * metrics event for that long (from when it was sent, or from its last one) ends as
   * `stalled`: the caller kills this server (its state is unknown) and the attempt is
   * retried, as a dispatched task's stall is.
   */
  runShard(
    request: ShardRequest,
    sink: PayloadSink,
    logFile: string,
    signal?: AbortSignal,
    stallTimeoutMs = 0,
  ): Promise<ShardResult> {
    if (!this.alive || !this.child?.stdin)
      return Promise.resolve({
        kind: 'crashed',
        exitCode: this.exited?.code ?? null,
        signal: this.exited?.signal ?? null,
        stderrTail: [...this.stderrTail],
      });
    this.stderrTail.length = 0;
    return new Promise<ShardResult>((resolve) => {
      let watchdog: NodeJS.Timeout | undefined;
      const finish = (r: ShardResult) => {
        clearInterval(watchdog);
        signal?.removeEventListener('abort', onAbort);
        if (this.current === cur) this.current = null;
        this.flushShardLog(cur);
        resolve(r);
      };
      const onAbort = () => finish({ kind: 'aborted' });
      signal?.addEventListener('abort', onAbort, { once: true });
      const cur: CurrentShard = {
        id: request.id,
        sink,
        logFile,
        resolve: finish,
        pending: [],
        wrote: false,
        flushTimer: null,
        activeAt: Date.now(),
        lastStep: null,
      };
      this.current = cur;
      if (stallTimeoutMs > 0) {
        watchdog = setInterval(
          () => {
            if (Date.now() - cur.activeAt < stallTimeoutMs) return;
            finish({ kind: 'stalled', seconds: stallTimeoutMs / 1000, lastStep: cur.lastStep });
          },
          Math.min(1000, Math.max(50, stallTimeoutMs / 4)),
        );
        watchdog.unref();
      }
      this.child?.stdin?.write(`${JSON.stringify(request)}\n`);
    });
  }

  /** Ask it to stop (shutdown request), then SIGTERM, then SIGKILL of the group. */
  async stop(graceMs = this.opts.graceMs ?? 10_000): Promise<void> {
    const child = this.child;
    if (!child || this.exited) return;
    const exited = new Promise<void>((resolve) => this.exitWaiters.push(resolve));
    // Timers are cleared as soon as the process exits, so they never hold the worker's
    // event loop open after a drain.
    // Held to what a timer holds: a longer grace would fire at once (SIGKILL, no checkpoint).
    const wait = (ms: number) => {
      let t: NodeJS.Timeout | undefined;
      return Promise.race([
        exited.then(() => true),
        new Promise<boolean>((r) => (t = setTimeout(() => r(false), timerDelay(ms).ms))),
      ]).finally(() => clearTimeout(t));
    };
    child.stdin?.write(`${JSON.stringify({ type: 'shutdown' })}\n`);
    child.stdin?.end();
    if (await wait(Math.min(graceMs, 5000))) return;
    if (child.pid) killGroup(child.pid, 'SIGTERM');
    if (await wait(graceMs)) return;
    if (child.pid) killGroup(child.pid, 'SIGKILL');
    await wait(5000);
  }

  /** Kill it now (a malformed response: its state is unknown). */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child || this.exited) return;
    const exited = new Promise<void>((resolve) => this.exitWaiters.push(resolve));
    if (child.pid) killGroup(child.pid, 'SIGKILL');
    let t: NodeJS.Timeout | undefined;
    await Promise.race([exited, new Promise((r) => (t = setTimeout(r, 5000)))]);
    clearTimeout(t);
    if (child.pid && isRunning(child.pid))
      this.opts.log.warn({ pid: child.pid }, 'payload server survived SIGKILL');
  }

  /** A line of output: to the running shard's log (batched), else to the idle log at once. */
  private write(line: string): void {
    const cur = this.current;
    if (!cur) {
      this.append(this.opts.idleLogFile, `${line}\n`);
      return;
    }
    cur.pending.push(line);
    if (cur.flushTimer === null) {
      cur.flushTimer = setTimeout(() => this.flushShardLog(cur), LOG_FLUSH_MS);
      cur.flushTimer.unref();
    }
  }

  private flushShardLog(cur: CurrentShard): void {
    if (cur.flushTimer !== null) clearTimeout(cur.flushTimer);
    cur.flushTimer = null;
    if (cur.pending.length === 0) return;
    const dir = dirname(cur.logFile);
    if (!this.logDirs.has(dir)) {
      try {
        mkdirSync(dir, { recursive: true });
        this.logDirs.add(dir);
      } catch (err) {
        this.opts.log.warn({ err, dir }, 'cannot create the payload log directory');
      }
    }
    this.append(cur.logFile, `${cur.pending.join('\n')}\n`);
    cur.pending = [];
    cur.wrote = true;
  }

  private append(file: string, text: string): void {
    try {
      appendFileSync(file, text, { mode: PRIVATE_FILE_MODE });
    } catch (err) {
      this.opts.log.warn({ err, file }, 'cannot write the payload log');
    }
  }

  private onStderr(raw: string): void {
    const line = redact(raw, this.opts.secretValues);
    this.stderrTail.push(line);
    if (this.stderrTail.length > 20) this.stderrTail.shift();
    this.write(line);
    this.current?.sink.log(line, 'stderr');
  }

  private onStdout(raw: string): void {
    let line = redact(raw, this.opts.secretValues);
    let parsed = parseLine(line);
    // Decoded values too: an escaped secret is whole only once decoded (redact.ts).
    if (parsed.kind === 'event') {
      const r = redactEvent(line, parsed.event, this.opts.secretValues);
      line = r.line;
      parsed = { kind: 'event', event: r.event };
    }
    // The `done` answer of a shard that printed nothing else is not worth a log file.
    const cur0 = this.current;
    const quietDone =
      cur0 !== null &&
      !cur0.wrote &&
      cur0.pending.length === 0 &&
      parsed.kind === 'event' &&
      parsed.event.type === 'done' &&
      parsed.event.id === cur0.id;
    if (!quietDone) this.write(line);
    if (parsed.kind === 'log') {
      this.current?.sink.log(line, 'stdout');
      return;
    }
    const cur = this.current;
    if (parsed.kind === 'malformed') {
      if (cur)
        cur.resolve({
          kind: 'malformed',
          message: `malformed response from the payload server: ${parsed.error}: ${line.slice(0, 200)}`,
        });
      else
        this.opts.log.warn(
          { error: parsed.error },
          'malformed marker line from the payload server',
        );
      return;
    }
    this.onEvent(parsed.event);
  }

  private onEvent(ev: PayloadEvent): void {
    const cur = this.current;
    switch (ev.type) {
      case 'ready':
        this.readyResolve?.();
        this.readyResolve = null;
        return;
      case 'done':
      case 'failed':
        if (!cur) {
          this.opts.log.warn({ event: ev }, 'the payload server answered with no shard running');
          return;
        }
        if (ev.id !== cur.id) {
          cur.resolve({
            kind: 'malformed',
            message: `the payload server answered for shard ${ev.id} while ${cur.id} runs`,
          });
          return;
        }
        cur.resolve(
          ev.type === 'done'
            ? { kind: 'done', items: ev.items }
            : { kind: 'failed', reason: ev.reason, message: ev.message },
        );
        return;
      default:
        if (cur && (ev.type === 'progress' || ev.type === 'metrics')) {
          cur.activeAt = Date.now();
          if (typeof ev.step === 'number') cur.lastStep = ev.step;
        }
        cur?.sink.event(ev);
    }
  }
}

export class ServerStartError extends Error {
  override name = 'ServerStartError';
  constructor(
    message: string,
    readonly exitCode: number | null,
    readonly signal: string | null,
    readonly stderrTail: string[],
  ) {
    super(message);
  }
}
