/**
 * Run one payload command and turn its output into events (README, "Worker and payload protocol" and "Exit codes").
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
 *
 * runPayload(), one page of steps; each phase is a named unit:
 *   1. open the log file (worker/payload-log.ts: batching, back-pressure)
 *   2. spawn in its own process group, its output read line by line
 *      (worker/payload-output.ts); a command that cannot start -> spawnFailed()
 *   3. supervise: terminate on abort or stall (superviseTermination)
 *   4. on exit: stop supervising, kill what is left of the group, drain the pipes
 *      (reapAndDrain)
 *   5. classify the exit, write the closing lines, close the log (finishOutcome)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { classifyExit, type ExitClassification } from '../common/exit-codes.js';
import { silentLogger, type Logger } from '../common/logger.js';
import { groupAlive, killGroup } from '../common/proc.js';
import { timerDelay } from '../common/timers.js';
import { PayloadLogFile } from './payload-log.js';
import { PayloadOutput, redact, type PayloadSink } from './payload-output.js';

export { redact, type PayloadSink } from './payload-output.js';

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

const DEFAULT_GRACE_MS = 30_000;
const STREAM_DRAIN_MS = 5_000;

export async function runPayload(opts: RunPayloadOptions): Promise<PayloadOutcome> {
  const [file, ...args] = opts.argv;
  if (file === undefined) throw new Error('runPayload: empty argv');
  const log = opts.log ?? silentLogger();
  const clock = opts.clock ?? Date.now;
  const secrets = opts.secretValues ?? [];

  // 1. The log file.
  const logFile = new PayloadLogFile(opts.logFile, clock, log);
  const where = opts.cwd ? ` in ${opts.cwd}` : '';
  logFile.note(`start: ${redact(JSON.stringify(opts.argv), secrets)}${where}`);

  // 2. Spawn, its output read line by line.
  const tailMax = opts.stderrTailLines ?? 20;
  const output = new PayloadOutput({ sink: opts.sink, secrets, logFile, clock, tailMax });
  const payload = await spawnPayload(file, args, opts, output);
  const pid = payload.child.pid;
  if (payload.error || pid === undefined) return spawnFailed(file, payload.error, logFile);
  try {
    opts.onSpawn?.(pid);
  } catch (err) {
    log.warn({ err, pid }, 'onSpawn callback failed');
  }
  output.restartStallClock();

  // 3. Supervise: an abort or a stall terminates the process group.
  const termination = superviseTermination({ pid, opts, output, logFile, log, clock });

  // 4. Exit: stop supervising, kill what is left of the group, drain the pipes.
  const [exitCode, signal] = await payload.exit;
  termination.stop();
  await reapAndDrain(payload, pid, logFile, log);

  // 5. Classify, write the closing lines, close the log.
  return finishOutcome({
    exitCode,
    signal,
    pid,
    terminated: termination.reason,
    output,
    logFile,
  });
}

interface SpawnedPayload {
  child: ChildProcess;
  exit: Promise<[number | null, NodeJS.Signals | null]>;
  /** Both pipes read to their end. */
  outputDone: Promise<unknown>;
  /** Why the command could not be started; null when it started. */
  error: Error | null;
}

/** Spawn the payload as the leader of its own process group; resolves once it started (or failed to). */
async function spawnPayload(
  file: string,
  args: string[],
  opts: RunPayloadOptions,
  output: PayloadOutput,
): Promise<SpawnedPayload> {
  // node:child_process rather than execa here: a worker starts for every task attempt,
  // and loading execa cost ~0.15 s of each start (bench: wrapper-overhead); what is used
  // of it is a plain spawn.
  const child = spawn(file, args, {
    cwd: opts.cwd,
    env: { ...opts.env },
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const outputDone = Promise.all([
    output.read(child.stdout, 'stdout'),
    output.read(child.stderr, 'stderr'),
  ]);
  const exit = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
    child.once('exit', (code: number | null, sig: NodeJS.Signals | null) => resolve([code, sig]));
  });
  const error = await new Promise<Error | null>((resolve) => {
    child.once('spawn', () => resolve(null));
    child.once('error', (err: Error) => resolve(err));
  });
  return { child, exit, outputDone, error };
}

/** The outcome of a command that could not be started (not found, not executable, bad cwd). */
async function spawnFailed(
  file: string,
  err: Error | null,
  logFile: PayloadLogFile,
): Promise<PayloadOutcome> {
  const spawnError = `cannot start ${file}: ${err?.message ?? 'unknown error'}`;
  logFile.note(`error: ${spawnError}`);
  await logFile.close();
  const code = (err as NodeJS.ErrnoException | null)?.code;
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

interface Termination {
  /** Why stoker stopped the payload; null while it has not. */
  readonly reason: TerminationReason | null;
  /** The payload has exited: no more signals, timers cleared, abort listener removed. */
  stop(): void;
}

/**
 * Terminate the payload's process group on abort (opts.signal) or stall (no new step for
 * opts.stallTimeoutMs): SIGTERM, the grace period, then SIGKILL. Once only.
 */
function superviseTermination(ctx: {
  pid: number;
  opts: RunPayloadOptions;
  output: PayloadOutput;
  logFile: PayloadLogFile;
  log: Logger;
  clock: () => number;
}): Termination {
  const { pid, opts, output, logFile, log, clock } = ctx;
  // A grace period beyond what a timer holds would fire at once (SIGKILL, no checkpoint):
  // held to the longest timer instead. The spec refuses such values; this is for any other way in.
  const asked = opts.terminationGraceMs ?? DEFAULT_GRACE_MS;
  const { ms: graceMs, clamped } = timerDelay(asked);
  if (clamped) log.warn({ asked, graceMs }, 'grace period out of the range a timer holds: clamped');
  const stallMs = opts.stallTimeoutMs ?? 0;
  let reason: TerminationReason | null = null;
  let exited = false;
  let killTimer: NodeJS.Timeout | undefined;
  const terminate = (why: TerminationReason): void => {
    if (reason !== null || exited) return;
    reason = why;
    log.info({ pid, reason: why, graceMs }, 'terminating payload: SIGTERM to its process group');
    const stalled = why === 'stall' ? `stalled: no step progress for ${stallMs} ms; ` : '';
    logFile.note(`${stalled}sending SIGTERM to process group ${pid}, SIGKILL in ${graceMs} ms`);
    killGroup(pid, 'SIGTERM');
    killTimer = setTimeout(() => {
      if (exited) return;
      log.warn(
        { pid, graceMs },
        'payload still running after the grace period: SIGKILL to its process group',
      );
      logFile.note(`grace period over: SIGKILL to process group ${pid}`);
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
      if (clock() - output.lastAdvanceAt >= stallMs) terminate('stall');
    }, every);
    stallTimer.unref();
  }

  return {
    get reason() {
      return reason;
    },
    stop() {
      exited = true;
      clearTimeout(killTimer);
      clearInterval(stallTimer);
      opts.signal?.removeEventListener('abort', onAbort);
    },
  };
}

/**
 * After the payload exited: SIGKILL whatever is left of its group (nothing it started
 * outlives it), then read what is still in the pipes. A process outside the group
 * (setsid) may hold them open: give up after STREAM_DRAIN_MS rather than wait forever.
 */
async function reapAndDrain(
  payload: SpawnedPayload,
  pid: number,
  logFile: PayloadLogFile,
  log: Logger,
): Promise<void> {
  if (groupAlive(pid)) {
    log.warn({ pid }, 'payload exited but left processes in its group: SIGKILL');
    logFile.note(`payload exited, processes left in group ${pid}: SIGKILL`);
    killGroup(pid, 'SIGKILL');
  }
  let drainTimer: NodeJS.Timeout | undefined;
  const drained = await Promise.race([
    payload.outputDone.then(() => true),
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
    payload.child.stdout?.destroy();
    payload.child.stderr?.destroy();
  }
  logFile.resumeAll();
}

/** Classify the exit, write the closing lines and close the log file. */
async function finishOutcome(end: {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  pid: number;
  terminated: TerminationReason | null;
  output: PayloadOutput;
  logFile: PayloadLogFile;
}): Promise<PayloadOutcome> {
  const { exitCode, signal, pid, terminated, output, logFile } = end;
  const classification = classifyExit(exitCode, signal);
  if (output.malformedLines > 1)
    logFile.note(`${output.malformedLines} malformed marker lines ignored in all`);
  const why = terminated ? `, terminated: ${terminated}` : '';
  logFile.note(`exit: ${classification.reason} (${classification.description})${why}`);
  await logFile.close();
  return {
    exitCode,
    signal,
    classification,
    stderrTail: [...output.stderrTail],
    terminated,
    malformedLines: output.malformedLines,
    lastStep: output.lastStep,
    pid,
    spawnError: null,
  };
}
