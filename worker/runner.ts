/**
 * Run one payload command and turn its output into events (DESIGN.md sections 3, 4, 6).
 *
 * Inputs   argv (never a shell string), cwd, the environment from worker/env.ts, the
 *          secret values to redact, an AbortSignal, a grace period and a stall timeout.
 * Outputs  every stdout and stderr line, secrets redacted, appended to `logFile`;
 *          marker lines (common/events.ts) parsed and handed to `sink.event`; other
 *          lines to `sink.log`; a PayloadOutcome when the payload has exited.
 * Process  the payload is spawned `detached`, so it leads its own process group (pgid =
 *          pid, reported through onSpawn so a supervisor can kill the group should this
 *          worker die). Termination, on abort or stall, is SIGTERM to the group, the
 *          grace period, then SIGKILL to the group. When the payload exits, whatever is
 *          left of its group (a forgotten grandchild, a DataLoader worker) is SIGKILLed,
 *          so nothing it started outlives the attempt. A descendant that made itself a
 *          new session (setsid) has left the group and is out of reach; that is the
 *          payload's bug to fix.
 * Stall    with stallTimeoutMs > 0, a payload whose step counter (progress.step or
 *          metrics.step) has not advanced for that long is terminated the same way and
 *          reported as terminated: 'stall' (an NCCL hang looks exactly like this).
 * Garbage  a malformed marker line is warned about once per attempt (sink.warn and the
 *          log file), then only counted; the run goes on.
 *
 * Throughput: lines are handled synchronously chunk by chunk; the sink must not do I/O
 * per call (worker/reporter.ts coalesces). The log file gets one write per chunk, and
 * when its buffer is full the payload's pipes are paused, so a payload that prints
 * faster than the disk takes it is slowed down rather than buffered in memory.
 */
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { dirname } from 'node:path';
import type { Readable } from 'node:stream';
import { spawn } from 'node:child_process';
import { parseLine, type PayloadEvent } from '../common/events.js';
import { classifyExit, type ExitClassification } from '../common/exit-codes.js';
import type { Logger } from '../common/logger.js';
import { silentLogger } from '../common/logger.js';
import { groupAlive, killGroup } from '../common/proc.js';

/** Receives what the payload reports. Called synchronously, once per line: must not block. */
export interface PayloadSink {
  event(event: PayloadEvent): void;
  log(line: string, stream: 'stdout' | 'stderr'): void;
  warn(message: string): void;
}

export type TerminationReason = 'abort' | 'stall';

export interface RunPayloadOptions {
  /** The command: argv[0] is looked up in the env's PATH; no shell. */
  argv: readonly string[];
  cwd?: string;
  /** The complete environment (nothing is inherited). */
  env: Readonly<Record<string, string>>;
  /** Appended to; its directory is created. One file per task attempt. */
  logFile: string;
  sink: PayloadSink;
  /** Values replaced by REDACTED in every line, wherever it goes. */
  secretValues?: readonly string[];
  /** Abort = terminate the payload (SIGTERM, grace, SIGKILL of the group). */
  signal?: AbortSignal;
  /** Between SIGTERM and SIGKILL. Default 30 s. */
  terminationGraceMs?: number;
  /** 0 or absent = no stall detection. */
  stallTimeoutMs?: number;
  /** How often the stall clock is checked; default min(1 s, stallTimeoutMs / 4). */
  stallCheckIntervalMs?: number;
  /** Called once with the payload's pid, which is also its process group id. */
  onSpawn?: (pid: number) => void;
  log?: Logger;
  clock?: () => number;
  /** How many stderr lines to keep for the failure message. Default 20. */
  stderrTailLines?: number;
}

export interface PayloadOutcome {
  exitCode: number | null;
  signal: string | null;
  classification: ExitClassification;
  /** Last stderr lines, redacted, oldest first. */
  stderrTail: string[];
  /** Why stoker stopped the payload, if it did. */
  terminated: TerminationReason | null;
  malformedLines: number;
  /** The last step the payload reported (progress or metrics), null if none. */
  lastStep: number | null;
  /** The payload's pid and process group; null when it could not be started. */
  pid: number | null;
  /** Why the command could not be started (not found, not executable, bad cwd). */
  spawnError: string | null;
}

export const REDACTED = '[redacted]';
/** A line longer than this is cut (memory stays bounded whatever the payload prints). */
export const MAX_LINE_CHARS = 256 * 1024;
const DEFAULT_GRACE_MS = 30_000;
const STREAM_DRAIN_MS = 5_000;

/** Replace every secret value in `line`. Secrets are expected longest first. */
export function redact(line: string, secrets: readonly string[]): string {
  let out = line;
  for (const s of secrets) if (s && out.includes(s)) out = out.split(s).join(REDACTED);
  return out;
}

/** Splits a text stream into lines ('\n', a trailing '\r' dropped), cutting overlong ones. */
export class LineSplitter {
  private partial = '';
  private skipping = false;

  constructor(private readonly maxChars: number = MAX_LINE_CHARS) {}

  push(chunk: string, emit: (line: string) => void): void {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf('\n', start);
      if (nl === -1) break;
      const piece = chunk.slice(start, nl);
      start = nl + 1;
      if (this.skipping) {
        this.skipping = false;
        continue;
      }
      const line = this.partial.length > 0 ? this.partial + piece : piece;
      this.partial = '';
      emit(this.cut(line.endsWith('\r') ? line.slice(0, -1) : line));
    }
    if (start < chunk.length && !this.skipping) {
      this.partial += chunk.slice(start);
      if (this.partial.length > this.maxChars) {
        emit(this.cut(this.partial));
        this.partial = '';
        this.skipping = true;
      }
    }
  }

  end(emit: (line: string) => void): void {
    if (this.partial.length > 0 && !this.skipping) emit(this.partial);
    this.partial = '';
    this.skipping = false;
  }

  private cut(line: string): string {
    return line.length > this.maxChars
      ? `${line.slice(0, this.maxChars)} [line cut at ${this.maxChars} characters]`
      : line;
  }
}

export async function runPayload(opts: RunPayloadOptions): Promise<PayloadOutcome> {
  const log = opts.log ?? silentLogger();
  const clock = opts.clock ?? Date.now;
  const secrets = opts.secretValues ?? [];
  const graceMs = opts.terminationGraceMs ?? DEFAULT_GRACE_MS;
  const stallMs = opts.stallTimeoutMs ?? 0;
  const tailMax = opts.stderrTailLines ?? 20;
  const [file, ...args] = opts.argv;
  if (file === undefined) throw new Error('runPayload: empty argv');

  // --- the log file ------------------------------------------------------------------
  mkdirSync(dirname(opts.logFile), { recursive: true });
  const logStream: WriteStream = createWriteStream(opts.logFile, { flags: 'a' });
  let logBroken = false;
  logStream.on('error', (err) => {
    if (!logBroken)
      log.warn(
        { err, logFile: opts.logFile },
        'cannot write the payload log file; going on without it',
      );
    logBroken = true;
  });
  const paused = new Set<Readable>();
  const streams: Readable[] = [];
  // Lines are gathered and written every 100 ms (or at 64 KiB): a payload that flushes
  // stdout on every line would otherwise cost one write system call per line (the
  // largest part of the worker's CPU in a profile of smoke_train at full speed).
  let pending: string[] = [];
  let pendingBytes = 0;
  let flushTimer: NodeJS.Timeout | undefined;
  const flushLog = (): void => {
    clearTimeout(flushTimer);
    flushTimer = undefined;
    if (pending.length === 0) return;
    const text = pending.join('');
    pending = [];
    pendingBytes = 0;
    writeNow(text);
  };
  const writeLog = (text: string): void => {
    if (logBroken || text.length === 0) return;
    pending.push(text);
    pendingBytes += text.length;
    if (pendingBytes >= 64 * 1024) flushLog();
    else flushTimer ??= setTimeout(flushLog, 100);
  };
  const writeNow = (text: string): void => {
    if (logBroken || text.length === 0) return;
    if (!logStream.write(text) && paused.size === 0) {
      for (const s of streams) {
        s.pause();
        paused.add(s);
      }
      logStream.once('drain', () => {
        for (const s of paused) s.resume();
        paused.clear();
      });
    }
  };
  const stamp = (msg: string): string => `[stoker ${new Date(clock()).toISOString()}] ${msg}\n`;
  writeLog(
    stamp(
      `start: ${redact(JSON.stringify(opts.argv), secrets)}${opts.cwd ? ` in ${opts.cwd}` : ''}`,
    ),
  );

  // --- state -------------------------------------------------------------------------
  const stderrTail: string[] = [];
  let malformedLines = 0;
  let lastStep: number | null = null;
  let maxStep = -1;
  let lastAdvanceAt = clock();
  let terminated: TerminationReason | null = null;
  let exited = false;

  const noteStep = (step: number | undefined): void => {
    if (step === undefined) return;
    lastStep = step;
    if (step > maxStep) {
      maxStep = step;
      lastAdvanceAt = clock();
    }
  };

  const onStdoutLine = (raw: string, out: string[]): void => {
    const line = redact(raw, secrets);
    out.push(line);
    const parsed = parseLine(line);
    if (parsed.kind === 'log') {
      opts.sink.log(line, 'stdout');
    } else if (parsed.kind === 'event') {
      const ev = parsed.event;
      if (ev.type === 'progress') noteStep(ev.step);
      else if (ev.type === 'metrics') noteStep(ev.step ?? undefined);
      opts.sink.event(ev);
    } else {
      malformedLines += 1;
      if (malformedLines === 1) {
        const msg = `malformed marker line ignored (${parsed.error}): ${parsed.line.slice(0, 200)}; further malformed lines are counted, not reported`;
        out.push(stamp(`warning: ${msg}`).trimEnd());
        opts.sink.warn(msg);
      }
    }
  };

  const onStderrLine = (raw: string, out: string[]): void => {
    const line = redact(raw, secrets);
    out.push(line);
    stderrTail.push(line.length > 1000 ? `${line.slice(0, 1000)} [cut]` : line);
    if (stderrTail.length > tailMax) stderrTail.shift();
    opts.sink.log(line, 'stderr');
  };

  const attach = (
    stream: Readable | null,
    onLine: (raw: string, out: string[]) => void,
  ): Promise<void> => {
    if (!stream) return Promise.resolve();
    streams.push(stream);
    stream.setEncoding('utf8');
    const splitter = new LineSplitter();
    const handle = (fn: (emit: (l: string) => void) => void): void => {
      const out: string[] = [];
      fn((l) => onLine(l, out));
      if (out.length > 0) writeLog(`${out.join('\n')}\n`);
    };
    stream.on('data', (chunk: string) => handle((emit) => splitter.push(chunk, emit)));
    return new Promise<void>((resolve) => {
      const done = (): void => {
        handle((emit) => splitter.end(emit));
        resolve();
      };
      stream.once('end', done);
      stream.once('close', done);
      stream.once('error', done);
    }).then(() => undefined);
  };

  // --- spawn -------------------------------------------------------------------------
  // node:child_process rather than execa here: a worker starts for every task attempt,
  // and loading execa cost ~0.15 s of each start (bench: wrapper-overhead); what is used
  // of it is a plain spawn.
  const subprocess = spawn(file, args, {
    cwd: opts.cwd,
    env: { ...opts.env },
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stdoutDone = attach(subprocess.stdout, onStdoutLine);
  const stderrDone = attach(subprocess.stderr, onStderrLine);
  const exit = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
    subprocess.once('exit', (code: number | null, sig: NodeJS.Signals | null) =>
      resolve([code, sig]),
    );
  });

  const started = await new Promise<Error | null>((resolve) => {
    subprocess.once('spawn', () => resolve(null));
    subprocess.once('error', (err: Error) => resolve(err));
  });
  if (started || subprocess.pid === undefined) {
    const why = started?.message ?? 'unknown error';
    const spawnError = `cannot start ${file}: ${why}`;
    writeLog(stamp(`error: ${spawnError}`));
    flushLog();
    await closeLog(logStream, logBroken);
    const code = (started as NodeJS.ErrnoException | null)?.code;
    return {
      exitCode: null,
      signal: null,
      classification: {
        reason: 'SPAWN_FAILED',
        // A missing or non-executable command, or a missing cwd, fails the same way again.
        retryable: !(code === 'ENOENT' || code === 'EACCES' || code === 'ENOTDIR'),
        description: spawnError,
        exitCode: null,
        signal: null,
      },
      stderrTail: [spawnError],
      terminated: null,
      malformedLines: 0,
      lastStep: null,
      pid: null,
      spawnError,
    };
  }
  const pid = subprocess.pid;
  try {
    opts.onSpawn?.(pid);
  } catch (err) {
    log.warn({ err, pid }, 'onSpawn callback failed');
  }
  lastAdvanceAt = clock();

  // --- termination -------------------------------------------------------------------
  let killTimer: NodeJS.Timeout | undefined;
  const terminate = (reason: TerminationReason): void => {
    if (terminated !== null || exited) return;
    terminated = reason;
    log.info({ pid, reason, graceMs }, 'terminating payload: SIGTERM to its process group');
    writeLog(
      stamp(
        `${reason === 'stall' ? `stalled: no step progress for ${stallMs} ms; ` : ''}sending SIGTERM to process group ${pid}, SIGKILL in ${graceMs} ms`,
      ),
    );
    killGroup(pid, 'SIGTERM');
    killTimer = setTimeout(() => {
      if (exited) return;
      log.warn(
        { pid, graceMs },
        'payload still running after the grace period: SIGKILL to its process group',
      );
      writeLog(stamp(`grace period over: SIGKILL to process group ${pid}`));
      killGroup(pid, 'SIGKILL');
    }, graceMs);
  };
  const onAbort = (): void => terminate('abort');
  if (opts.signal?.aborted) onAbort();
  else opts.signal?.addEventListener('abort', onAbort, { once: true });

  let stallTimer: NodeJS.Timeout | undefined;
  if (stallMs > 0) {
    const every =
      opts.stallCheckIntervalMs ?? Math.max(10, Math.min(1000, Math.floor(stallMs / 4)));
    stallTimer = setInterval(() => {
      if (clock() - lastAdvanceAt >= stallMs) terminate('stall');
    }, every);
    stallTimer.unref();
  }

  // --- exit --------------------------------------------------------------------------
  const [exitCode, signal] = await exit;
  exited = true;
  clearTimeout(killTimer);
  clearInterval(stallTimer);
  opts.signal?.removeEventListener('abort', onAbort);
  // Nothing the payload started outlives it: SIGKILL whatever is left of its group.
  if (groupAlive(pid)) {
    log.warn({ pid }, 'payload exited but left processes in its group: SIGKILL');
    writeLog(stamp(`payload exited, processes left in group ${pid}: SIGKILL`));
    killGroup(pid, 'SIGKILL');
  }
  // Read what is still in the pipes. A process outside the group (setsid) may hold them
  // open: give up after a bound rather than wait forever.
  let drainTimer: NodeJS.Timeout | undefined;
  const drained = await Promise.race([
    Promise.all([stdoutDone, stderrDone]).then(() => true),
    new Promise<boolean>((resolve) => {
      drainTimer = setTimeout(() => resolve(false), STREAM_DRAIN_MS);
    }),
  ]);
  clearTimeout(drainTimer);
  if (!drained) {
    log.warn(
      { pid },
      'payload output still open after exit (a process outside its group holds it); closing',
    );
    subprocess.stdout?.destroy();
    subprocess.stderr?.destroy();
  }
  for (const s of paused) s.resume();

  const classification = classifyExit(exitCode, signal);
  if (malformedLines > 1)
    writeLog(stamp(`${malformedLines} malformed marker lines ignored in all`));
  writeLog(
    stamp(
      `exit: ${classification.reason} (${classification.description})${terminated ? `, terminated: ${terminated}` : ''}`,
    ),
  );
  flushLog();
  await closeLog(logStream, logBroken);

  return {
    exitCode,
    signal,
    classification,
    stderrTail: [...stderrTail],
    terminated,
    malformedLines,
    lastStep,
    pid,
    spawnError: null,
  };
}

async function closeLog(stream: WriteStream, broken: boolean): Promise<void> {
  if (broken || stream.destroyed) return;
  await new Promise<void>((resolve) => {
    stream.once('error', () => resolve());
    stream.end(() => resolve());
  });
}
