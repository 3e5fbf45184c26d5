/**
 * Containers as local processes: each container of a pod runs `command + args` (or the
 * image's entry from imageEntrypoints) with `$(VAR)` expansion, names and mount paths
 * rewritten, in its workingDir (created under the pod's rootfs when missing), in a
 * process group of its own, its output kept as its log.
 *
 * - A command that cannot start is terminated reason StartError, exit code 128, with
 *   the container runtime's message.
 * - On exit the whole process group is killed; the exit code is the process's, or
 *   128 + the signal's number; reason Completed (0), Error, or OOMKilled (oomKill()).
 * - restartPolicy Always, or OnFailure after a failure, restarts the container in place
 *   (unless the pod is terminating or evicted): CrashLoopBackOff, restartCount + 1, the
 *   old log as `previous`, a new start after restartDelayMs doubling per restart up to
 *   10 s.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IPod } from 'kubernetes-models/v1/Pod';
import { type KubeObject, kubeTime } from '../objects/meta.js';
import { containerEnvironment, expandVars, rewriteNames } from './environment.js';
import { appendLog, endLog, newLogBuffer } from './logs.js';
import type { ContainerRun, KubeletContext, PodRun } from './types.js';
import { remapPaths } from './volumes.js';

/** Signal a process group (the process alone if it has none); nothing if it is gone. */
export function killGroup(pid: number | undefined, sig: NodeJS.Signals): void {
  if (!pid) return;
  try {
    process.kill(-pid, sig);
  } catch {
    try {
      process.kill(pid, sig);
    } catch {
      // already gone
    }
  }
}

/** Start container c of the pod run with env; its exit is handled by onContainerExit. */
export function startContainer(
  ctx: KubeletContext,
  pod: IPod,
  run: PodRun,
  c: IContainer,
  env: Record<string, string>,
): void {
  const cr = run.containers.find((x) => x.name === c.name)!;
  const argv = containerArgv(ctx, c, env, run);
  const now = kubeTime(ctx.clock.now());
  delete cr.waiting;
  delete cr.terminated;
  delete cr.exitCode;
  cr.oom = false;
  cr.startedAt = now;
  if (argv.length === 0) {
    startFailed(
      ctx,
      pod,
      cr,
      now,
      `fake kubelet: container "${c.name}" has no command and image "${c.image ?? ''}" has no entrypoint (set imageEntrypoints)`,
    );
    return;
  }
  const cwd = workingDir(ctx, c, run);
  let proc: ChildProcess;
  try {
    proc = spawn(argv[0]!, argv.slice(1), {
      cwd,
      env,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (err) {
    startFailed(ctx, pod, cr, now, `failed to create containerd task: ${(err as Error).message}`);
    return;
  }
  cr.proc = proc;
  if (proc.pid !== undefined) cr.pid = proc.pid;
  captureOutput(ctx, run, cr, proc);
  for (const [reason, message] of [
    ['Pulled', `Container image "${c.image ?? ''}" already present on machine`],
    ['Created', `Created container: ${c.name}`],
    ['Started', `Started container ${c.name}`],
  ] as const)
    ctx.store.recordEvent(pod as unknown as KubeObject, 'Normal', reason, message, 'kubelet');
  watchExit(ctx, run, cr, proc);
}

/** command + args (or the image's entry), expanded, with names and mount paths rewritten. */
function containerArgv(
  ctx: KubeletContext,
  c: IContainer,
  env: Record<string, string>,
  run: PodRun,
): string[] {
  const entry =
    c.command ??
    ctx.opts.imageEntrypoints?.[c.image ?? ''] ??
    ctx.opts.imageEntrypoints?.[(c.image ?? '').replace(/:[^/]*$/, '')];
  return [...(entry ?? []), ...(c.args ?? [])].map((a) =>
    remapPaths(rewriteNames(ctx, expandVars(a, env), run.namespace), run),
  );
}

function workingDir(ctx: KubeletContext, c: IContainer, run: PodRun): string {
  let cwd = c.workingDir
    ? remapPaths(c.workingDir, run)
    : (ctx.opts.defaultWorkingDir ?? process.cwd());
  if (!existsSync(cwd)) {
    // The runtime creates a missing working directory inside the container's filesystem.
    cwd = join(ctx.mountRoot, 'pods', run.uid, 'rootfs', cwd);
    mkdirSync(cwd, { recursive: true });
  }
  return cwd;
}

function startFailed(
  ctx: KubeletContext,
  pod: IPod,
  cr: ContainerRun,
  startedAt: string,
  message: string,
): void {
  cr.terminated = {
    exitCode: 128,
    reason: 'StartError',
    message,
    startedAt,
    finishedAt: kubeTime(ctx.clock.now()),
    containerID: cr.containerID,
  };
  ctx.store.recordEvent(
    pod as unknown as KubeObject,
    'Warning',
    'Failed',
    `Error: ${message}`,
    'kubelet',
  );
}

function captureOutput(
  ctx: KubeletContext,
  run: PodRun,
  cr: ContainerRun,
  proc: ChildProcess,
): void {
  const echo = ctx.opts.echo ?? !!process.env['FAKE_KUBELET_ECHO'];
  const limit = ctx.opts.logLimitBytes ?? 4 * 1024 * 1024;
  const onData = (chunk: Buffer): void => {
    const s = chunk.toString('utf8');
    appendLog(cr.log, s, limit);
    if (echo) process.stderr.write(`[${run.namespace}/${run.name}/${cr.name}] ${s}`);
  };
  proc.stdout?.on('data', onData);
  proc.stderr?.on('data', onData);
}

/**
 * Call onContainerExit once the process has exited and its output is read (at most 2 s
 * after exit: a grandchild holding the pipes open must not keep the container alive),
 * or once it failed to spawn.
 */
function watchExit(ctx: KubeletContext, run: PodRun, cr: ContainerRun, proc: ChildProcess): void {
  let exited = false;
  let spawnError: Error | undefined;
  cr.closed = new Promise<void>((resolve) => {
    let finalized = false;
    const finalize = (code: number | null, signal: NodeJS.Signals | null): void => {
      if (finalized) return;
      finalized = true;
      resolve();
      onContainerExit(ctx, run, cr, code, signal, spawnError);
    };
    proc.on('error', (err) => {
      spawnError = err;
      if (proc.pid === undefined) finalize(null, null);
    });
    proc.on('exit', (code, signal) => {
      exited = true;
      cr.exitCode = code ?? 128 + (signal ? (osConstants.signals[signal] ?? 0) : 0);
      cr.exitSignal = signal;
      // The container is gone: so is everything else in its process group.
      killGroup(proc.pid, 'SIGKILL');
      const t = setTimeout(() => {
        proc.stdout?.destroy();
        proc.stderr?.destroy();
        finalize(code, signal);
      }, 2000);
      t.unref();
    });
    proc.on('close', (code, signal) => {
      if (exited || spawnError) finalize(code, signal);
    });
  });
}

function onContainerExit(
  ctx: KubeletContext,
  run: PodRun,
  cr: ContainerRun,
  code: number | null,
  signal: NodeJS.Signals | null,
  spawnError: Error | undefined,
): void {
  delete cr.proc;
  cr.terminated = terminatedState(cr, code, signal, spawnError, kubeTime(ctx.clock.now()));
  if (ctx.stopped || run.removed) {
    endLog(cr.log);
    return;
  }
  const pod = ctx.store.get<IPod>('pods', run.namespace, run.name);
  const policy = pod?.spec?.restartPolicy ?? 'Always';
  const failed = cr.terminated.exitCode !== 0;
  if (
    !run.terminating &&
    !run.nodePressure &&
    pod &&
    (policy === 'Always' || (policy === 'OnFailure' && failed))
  ) {
    restartInPlace(ctx, run, cr);
    return;
  }
  endLog(cr.log);
  ctx.afterContainerChange(run);
}

function terminatedState(
  cr: ContainerRun,
  code: number | null,
  signal: NodeJS.Signals | null,
  spawnError: Error | undefined,
  finishedAt: string,
): NonNullable<ContainerRun['terminated']> {
  const startedAt = cr.startedAt ?? finishedAt;
  if (spawnError && code === null && signal === null) {
    const e = spawnError as NodeJS.ErrnoException;
    const message =
      e.code === 'ENOENT'
        ? `failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: "${e.path ?? ''}": executable file not found in $PATH: unknown`
        : `failed to create containerd task: ${spawnError.message}`;
    return {
      exitCode: 128,
      reason: 'StartError',
      message,
      startedAt,
      finishedAt,
      containerID: cr.containerID,
    };
  }
  const exitCode = code ?? 128 + (signal ? (osConstants.signals[signal] ?? 0) : 0);
  const reason = cr.oom ? 'OOMKilled' : exitCode === 0 ? 'Completed' : 'Error';
  return { exitCode, reason, startedAt, finishedAt, containerID: cr.containerID };
}

/** CrashLoopBackOff until the container runs again, after the restart delay. */
function restartInPlace(ctx: KubeletContext, run: PodRun, cr: ContainerRun): void {
  cr.lastTerminated = cr.terminated;
  delete cr.terminated;
  cr.restartCount += 1;
  cr.waiting = {
    reason: 'CrashLoopBackOff',
    message: `back-off restarting failed container ${cr.name} in pod ${run.name}_${run.namespace}(${run.uid})`,
  };
  cr.previousLog = cr.log;
  endLog(cr.log);
  cr.log = newLogBuffer();
  ctx.afterContainerChange(run);
  cr.restartTimer = setTimeout(
    () => {
      delete cr.restartTimer;
      if (run.removed || run.terminating || ctx.stopped) return;
      const p = ctx.store.get<IPod>('pods', run.namespace, run.name);
      const c = p?.spec?.containers.find((x) => x.name === cr.name);
      if (!p || !c) return;
      let env: Record<string, string>;
      try {
        env = containerEnvironment(ctx, p, c, run);
      } catch {
        return;
      }
      startContainer(ctx, p, run, c, env);
      ctx.afterContainerChange(run);
    },
    Math.min((ctx.opts.restartDelayMs ?? 100) * 2 ** (cr.restartCount - 1), 10_000),
  );
  cr.restartTimer.unref();
}
