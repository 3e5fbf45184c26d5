/**
 * The one payload server a pool worker keeps resident (worker/server-process.ts). It is
 * started for the first shard, kept while the stage's payload stays the same, replaced
 * when a shard of another payload comes, and forgotten (killed) when a shard leaves it
 * in an unknown state, so that the next shard starts a fresh one.
 *
 * A server that cannot start is turned into the shard attempt's result by
 * startFailure(): a non-retryable exit code (BAD_DATA, a bad config...) fails the shard
 * at once, anything else is a crash, retried.
 */
import { join } from 'node:path';
import { classifyExit } from '../../common/exit-codes.js';
import type { Logger } from '../../common/logger.js';
import type { ResolvedPayload } from '../../common/model.js';
import { buildPayloadEnv, payloadWorkingDir, type EnvSource } from '../env.js';
import { ServerProcess, ServerStartError, type ShardResult } from '../server-process.js';

export interface ServerSlotOptions {
  pool: string;
  workerId: string;
  parentEnv: EnvSource;
  /** Where the server's output outside a shard goes. */
  logDir: string;
  log: Logger;
  /** A server reported ready (its model loaded). */
  onReady?: () => void;
}

interface Resident {
  /** The payload's identity: command, env, working directory, secrets. */
  key: string;
  /** The payload it was started for (or last matched). */
  payload: ResolvedPayload;
  server: ServerProcess;
}

export class ServerSlot {
  private resident: Resident | null = null;

  constructor(private readonly opts: ServerSlotOptions) {}

  /** A live server for this payload: the resident one, or a new one started now. */
  async ensure(p: ResolvedPayload, runId: string, stage: string): Promise<ServerProcess> {
    const r = this.resident;
    // The store hands out the same parsed payload while it does not change.
    if (r && r.payload === p && r.server.alive) return r.server;
    const key = JSON.stringify([p.command, p.env, p.workingDir, p.secretEnv]);
    if (r && r.key === key && r.server.alive) {
      r.payload = p;
      return r.server;
    }
    if (r) {
      this.opts.log.info('replacing the payload server');
      this.resident = null;
      await r.server.stop(p.terminationGracePeriodSeconds * 1000);
    }
    const server = this.create(p, runId, stage);
    this.opts.log.info({ command: p.command[0] }, 'starting the payload server');
    await server.start();
    this.opts.log.info({ pid: server.pid }, 'payload server ready');
    this.opts.onReady?.();
    this.resident = { key, payload: p, server };
    return server;
  }

  /** Kill the resident server (its state is unknown): the next shard starts a new one. */
  async discard(): Promise<void> {
    const r = this.resident;
    this.resident = null;
    await r?.server.kill();
  }

  /** Forget a server that failed to start (it is already gone). */
  forget(): void {
    this.resident = null;
  }

  /** Ask the resident server to shut down (the worker's drain). */
  async stop(): Promise<void> {
    const r = this.resident;
    this.resident = null;
    await r?.server.stop();
  }

  private create(p: ResolvedPayload, runId: string, stage: string): ServerProcess {
    const { pool, workerId } = this.opts;
    const { env, secretValues } = buildPayloadEnv({
      parentEnv: this.opts.parentEnv,
      payload: { ...p, env: { ...p.env, STOKER_POOL: pool, STOKER_WORKER_ID: workerId } },
      identity: { runId, taskId: workerId, stage, attempt: 0 },
    });
    return new ServerProcess({
      argv: p.command,
      env,
      // A run that lists files works in them: in a pod, where its ConfigMap is mounted.
      cwd: payloadWorkingDir(p, this.opts.parentEnv),
      idleLogFile: join(this.opts.logDir, `${workerId}.payload.log`),
      secretValues,
      log: this.opts.log,
      graceMs: p.terminationGracePeriodSeconds * 1000,
    });
  }
}

/** A server's failure to start, as the shard attempt's result. */
export function startFailure(err: unknown): ShardResult {
  const e = err as Partial<ServerStartError>;
  const exitCode = e.exitCode ?? null;
  const signal = e.signal ?? null;
  const c = classifyExit(exitCode, signal);
  if (err instanceof ServerStartError && !c.retryable && err.exitCode !== null) {
    return {
      kind: 'failed',
      reason: c.reason,
      message: `${err.message}: ${err.stderrTail.slice(-3).join(' | ')}`,
    };
  }
  return { kind: 'crashed', exitCode, signal, stderrTail: e.stderrTail ?? [] };
}
