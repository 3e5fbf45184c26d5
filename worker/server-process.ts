/**
 * A payload in server mode (pulled execution): started once per pool worker and stage,
 * fed shard after shard over stdin, answering with marker lines (protocol in
 * common/events.ts, "Server mode"). What it loads once, a model, serves every shard.
 *
 * One shard at a time. While a shard runs, progress/metrics/log events and log lines go
 * to that shard's sink and log file; otherwise to the worker's log. A malformed marker
 * line, or an answer about another shard, while a shard runs is a malformed response:
 * the shard fails and the server is restarted, since its state is unknown.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { createInterface } from 'node:readline';
import { parseLine, type PayloadEvent, type ShardRequest } from '../common/events.js';
import type { Logger } from '../common/logger.js';
import { isRunning, killGroup } from '../orchestrator/backends/proc.js';
import { redact, type PayloadSink } from './runner.js';

export type ShardResult =
  | { kind: 'done'; items: number }
  | { kind: 'failed'; reason: string; message: string }
  | { kind: 'crashed'; exitCode: number | null; signal: string | null; stderrTail: string[] }
  | { kind: 'malformed'; message: string }
  | { kind: 'aborted' };

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

export class ServerProcess {
  private child: ChildProcess | null = null;
  private exited: { code: number | null; signal: string | null } | null = null;
  private readonly stderrTail: string[] = [];
  private current: {
    id: string;
    sink: PayloadSink;
    logFile: string;
    resolve: (r: ShardResult) => void;
  } | null = null;
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
  runShard(
    request: ShardRequest,
    sink: PayloadSink,
    logFile: string,
    signal?: AbortSignal,
  ): Promise<ShardResult> {
    if (!this.alive || !this.child?.stdin)
      return Promise.resolve({
        kind: 'crashed',
        exitCode: this.exited?.code ?? null,
        signal: this.exited?.signal ?? null,
        stderrTail: [...this.stderrTail],
      });
    this.stderrTail.length = 0;
    mkdirSync(dirname(logFile), { recursive: true });
    return new Promise<ShardResult>((resolve) => {
      const finish = (r: ShardResult) => {
        signal?.removeEventListener('abort', onAbort);
        if (this.current?.id === request.id) this.current = null;
        resolve(r);
      };
      const onAbort = () => finish({ kind: 'aborted' });
      signal?.addEventListener('abort', onAbort, { once: true });
      this.current = { id: request.id, sink, logFile, resolve: finish };
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
    const wait = (ms: number) => {
      let t: NodeJS.Timeout | undefined;
      return Promise.race([
        exited.then(() => true),
        new Promise<boolean>((r) => (t = setTimeout(() => r(false), ms))),
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

  private write(line: string): void {
    const file = this.current?.logFile ?? this.opts.idleLogFile;
    try {
      appendFileSync(file, `${line}\n`);
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
    const line = redact(raw, this.opts.secretValues);
    this.write(line);
    const parsed = parseLine(line);
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
