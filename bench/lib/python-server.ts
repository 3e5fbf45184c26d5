/**
 * Python payloads for the benchmarks, driven directly (no worker, no Redis): a server-mode
 * process (worker/python/src/stoker_payload/server.py) spoken to over stdin/stdout, and
 * one-shot commands whose marker events are collected.
 *
 * Marker lines are `::stoker:: {json}` on stdout; each event is stamped with nowMs() when
 * its line arrived here, so "request -> done" is measured on this side of the pipe.
 * Every process goes on the caller's Cleanup as soon as it exists (SIGKILL if still alive).
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { type Cleanup, nowMs } from './harness.js';

export const MARKER = '::stoker::';

/** Debian's python3 with torch (the python3 first on PATH may have none). */
export const SYSTEM_PYTHON = '/usr/bin/python3';

export interface MarkerEvent {
  type: string;
  [field: string]: unknown;
}

export interface Stamped {
  /** nowMs() when the line was read. */
  at: number;
  ev: MarkerEvent;
}

/** The environment of a payload: nothing inherited but PATH and HOME, one CPU thread. */
export function payloadEnv(root: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? '/tmp',
    PYTHONPATH: join(root, 'worker', 'python', 'src'),
    PYTHONUNBUFFERED: '1',
    OMP_NUM_THREADS: '1',
    MKL_NUM_THREADS: '1',
    OPENBLAS_NUM_THREADS: '1',
    ...extra,
  };
}

function parseMarker(line: string): MarkerEvent | null {
  const at = line.indexOf(MARKER);
  if (at === -1) return null;
  try {
    const ev = JSON.parse(line.slice(at + MARKER.length)) as unknown;
    if (ev && typeof ev === 'object' && typeof (ev as MarkerEvent).type === 'string')
      return ev as MarkerEvent;
  } catch {
    // a log line that happens to contain the marker: not an event
  }
  return null;
}

interface Waiter {
  match: (ev: MarkerEvent) => boolean;
  resolve: (s: Stamped) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/** A server-mode payload process. Events are consumed in order through `next()`. */
export class ServerProcess {
  readonly child: ChildProcessWithoutNullStreams;
  readonly spawnedAt: number;
  readonly closed: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  private readonly events: Stamped[] = [];
  private cursor = 0;
  private waiter: Waiter | null = null;
  private stderrTail = '';
  private exited: { code: number | null; signal: NodeJS.Signals | null; at: number } | null = null;

  constructor(
    readonly label: string,
    argv: readonly string[],
    opts: { cwd: string; env: NodeJS.ProcessEnv; cleanup: Cleanup },
  ) {
    const [file, ...args] = argv;
    if (!file) throw new Error(`${label}: empty command`);
    this.spawnedAt = nowMs();
    this.child = spawn(file, args, {
      cwd: opts.cwd,
      env: opts.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const child = this.child;
    opts.cleanup.defer(`stop ${label}`, () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    child.stdin.on('error', () => undefined); // EPIPE after an early exit: reported by `closed`
    child.stderr.on('data', (d: Buffer) => {
      this.stderrTail = (this.stderrTail + d.toString()).slice(-3000);
    });
    createInterface({ input: child.stdout }).on('line', (line) => {
      const ev = parseMarker(line);
      if (!ev) return;
      this.events.push({ at: nowMs(), ev });
      this.pump();
    });
    this.closed = new Promise((resolve) => {
      const done = (code: number | null, signal: NodeJS.Signals | null) => {
        if (this.exited) return;
        this.exited = { code, signal, at: nowMs() };
        resolve(this.exited);
        this.pump();
      };
      child.once('error', (err) => {
        this.stderrTail += `\nspawn error: ${err.message}`;
        done(null, null);
      });
      child.once('close', done);
    });
  }

  /** The last lines of stderr, for error messages. */
  stderr(lines = 4): string {
    return this.stderrTail.trim().split('\n').slice(-lines).join(' | ');
  }

  private pump(): void {
    const w = this.waiter;
    if (!w) return;
    while (this.cursor < this.events.length) {
      const s = this.events[this.cursor++] as Stamped;
      if (w.match(s.ev)) {
        this.waiter = null;
        clearTimeout(w.timer);
        w.resolve(s);
        return;
      }
    }
    if (this.exited) {
      this.waiter = null;
      clearTimeout(w.timer);
      const how = this.exited.code ?? this.exited.signal;
      w.reject(new Error(`${this.label} exited ${String(how)}: ${this.stderr()}`));
    }
  }

  /** The next event (after the last one returned) that matches; earlier ones are skipped. */
  next(match: (ev: MarkerEvent) => boolean, what: string, timeoutMs: number): Promise<Stamped> {
    if (this.waiter) throw new Error(`${this.label}: already waiting for an event`);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        reject(
          new Error(
            `${this.label}: timed out after ${timeoutMs} ms waiting for ${what}: ${this.stderr()}`,
          ),
        );
      }, timeoutMs);
      this.waiter = { match, resolve, reject, timer };
      this.pump();
    });
  }

  /** Events seen so far, in order. */
  seen(): readonly Stamped[] {
    return this.events;
  }

  send(request: Record<string, unknown>): number {
    const at = nowMs();
    this.child.stdin.write(`${JSON.stringify(request)}\n`);
    return at;
  }

  /** Wait for `ready`; returns its stamp and the `metrics {loadSeconds}` seen before it. */
  async ready(timeoutMs: number): Promise<{ at: number; loadSeconds: number | null }> {
    const from = this.cursor;
    const r = await this.next((ev) => ev.type === 'ready', 'ready', timeoutMs);
    const load = this.events
      .slice(from, this.cursor)
      .map((s) => s.ev.loadSeconds)
      .find((v) => typeof v === 'number');
    return { at: r.at, loadSeconds: typeof load === 'number' ? load : null };
  }

  /**
   * One shard: the request, then `done` (or `failed`, thrown), then the `metrics
   * {shardSeconds}` that follows it. `metrics` merges every metrics event in between.
   */
  async shard(
    req: { id: string; input: string; output: string; params?: Record<string, unknown> },
    timeoutMs: number,
  ): Promise<{
    sentAt: number;
    doneAt: number;
    ms: number;
    items: number;
    metrics: Record<string, unknown>;
  }> {
    const from = this.cursor;
    const sentAt = this.send({ type: 'shard', attempt: 1, params: {}, ...req });
    const end = await this.next(
      (ev) => (ev.type === 'done' || ev.type === 'failed') && ev.id === req.id,
      `done ${req.id}`,
      timeoutMs,
    );
    if (end.ev.type === 'failed')
      throw new Error(
        `${this.label}: shard ${req.id} failed ${String(end.ev.reason)}: ${String(end.ev.message)}`,
      );
    await this.next(
      (ev) => ev.type === 'metrics' && 'shardSeconds' in ev,
      `metrics after ${req.id}`,
      10_000,
    );
    const metrics: Record<string, unknown> = {};
    for (const s of this.events.slice(from, this.cursor)) {
      if (s.ev.type !== 'metrics') continue;
      const { type: _type, ...fields } = s.ev;
      Object.assign(metrics, fields);
    }
    const items = Number(end.ev.items);
    return { sentAt, doneAt: end.at, ms: end.at - sentAt, items, metrics };
  }

  /** `shutdown`, end of stdin, then the exit; throws unless it exits 0. */
  async shutdown(timeoutMs: number): Promise<{ sentAt: number; exitedAt: number }> {
    const sentAt = nowMs();
    if (!this.exited) this.child.stdin.end(`${JSON.stringify({ type: 'shutdown' })}\n`);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`${this.label}: did not exit within ${timeoutMs} ms of shutdown`)),
        timeoutMs,
      );
    });
    try {
      const r = await Promise.race([this.closed, timeout]);
      if (r.code !== 0)
        throw new Error(`${this.label} exited ${String(r.code ?? r.signal)}: ${this.stderr()}`);
      return { sentAt, exitedAt: r.at };
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * A one-shot command (stdin closed); resolves with its marker events and the last stdout
 * lines that were not events, or throws with its stderr tail unless it exits 0.
 */
export function runCommand(
  label: string,
  argv: readonly string[],
  opts: { cwd: string; env: NodeJS.ProcessEnv; cleanup: Cleanup; timeoutMs: number },
): Promise<{ events: MarkerEvent[]; stdoutLines: string[]; ms: number }> {
  const [file, ...args] = argv;
  if (!file) return Promise.reject(new Error(`${label}: empty command`));
  const t0 = nowMs();
  const child = spawn(file, args, {
    cwd: opts.cwd,
    env: opts.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  opts.cleanup.defer(`stop ${label}`, () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const events: MarkerEvent[] = [];
  const stdoutLines: string[] = [];
  let stderrTail = '';
  child.stderr.on('data', (d: Buffer) => {
    stderrTail = (stderrTail + d.toString()).slice(-3000);
  });
  createInterface({ input: child.stdout }).on('line', (line) => {
    const ev = parseMarker(line);
    if (ev) events.push(ev);
    else if (line.trim()) {
      stdoutLines.push(line);
      if (stdoutLines.length > 20) stdoutLines.shift();
    }
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`${label}: ${err.message}`));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const ms = nowMs() - t0;
      if (code === 0) resolve({ events, stdoutLines, ms });
      else {
        const why =
          signal === 'SIGKILL' && ms >= opts.timeoutMs ? 'timed out, killed' : (code ?? signal);
        const tail = stderrTail.trim().split('\n').slice(-4).join(' | ');
        reject(new Error(`${label} exited ${String(why)}: ${tail}`));
      }
    });
  });
}
