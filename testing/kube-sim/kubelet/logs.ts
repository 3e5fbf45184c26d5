/**
 * Container logs: each container run keeps its output (stdout and stderr interleaved) in
 * a LogBuffer of at most logLimitBytes (oldest chunks dropped first), streams new output
 * to followers, and ends them when the container has terminated. A restarted container
 * starts a new buffer; the last one is its `previous` log.
 *
 * readLog/followLog are the pods/log side (PodLogSource): a container that has not started
 * is the real server's 400 (`container "x" in pod "y" is waiting to start: REASON`).
 */
import { apiError } from '../objects/meta.js';
import type { ContainerRun, LogBuffer, PodRun } from './types.js';

export function newLogBuffer(): LogBuffer {
  return { chunks: [], size: 0, ended: false, followers: new Set() };
}

export function appendLog(log: LogBuffer, s: string, limitBytes: number): void {
  log.chunks.push(s);
  log.size += s.length;
  while (log.size > limitBytes && log.chunks.length > 1) log.size -= log.chunks.shift()!.length;
  for (const f of log.followers) f.onData(s);
}

export function endLog(log: LogBuffer): void {
  log.ended = true;
  for (const f of log.followers) f.onEnd();
  log.followers.clear();
}

/** The last `lines` lines of text (all of it without a count). */
export function tail(text: string, lines: number | undefined): string {
  if (lines === undefined) return text;
  const parts = text.split('\n');
  const trailing = parts[parts.length - 1] === '' ? parts.pop() : undefined;
  const kept = parts.slice(Math.max(0, parts.length - lines));
  return kept.join('\n') + (trailing !== undefined && kept.length > 0 ? '\n' : '');
}

function containerOf(
  run: PodRun | undefined,
  container: string | undefined,
): ContainerRun | undefined {
  return run && (container ? run.containers.find((c) => c.name === container) : run.containers[0]);
}

/** pods/log without follow: the (previous) log of a container of the pod run. */
export function readLog(
  run: PodRun | undefined,
  pod: string,
  container: string | undefined,
  opts: { tailLines?: number; limitBytes?: number; previous?: boolean },
): string {
  const cr = containerOf(run, container);
  if (!run || !cr || (!cr.startedAt && !opts.previous)) {
    const reason =
      cr?.waiting?.reason === 'ImagePullBackOff' || cr?.waiting?.reason === 'ErrImagePull'
        ? 'trying and failing to pull image'
        : (cr?.waiting?.reason ?? 'ContainerCreating');
    throw apiError(
      400,
      `container "${container ?? cr?.name ?? ''}" in pod "${pod}" is waiting to start: ${reason}`,
    );
  }
  const log = opts.previous ? cr.previousLog : cr.log;
  if (!log)
    throw apiError(400, `previous terminated container "${cr.name}" in pod "${pod}" not found`);
  let text = tail(log.chunks.join(''), opts.tailLines);
  if (opts.limitBytes !== undefined)
    text = Buffer.from(text).subarray(0, opts.limitBytes).toString('utf8');
  return text;
}

/** pods/log with follow: new output to onData until the container ends (onEnd). */
export function followLog(
  run: PodRun | undefined,
  container: string | undefined,
  onData: (s: string) => void,
  onEnd: () => void,
): () => void {
  const cr = containerOf(run, container);
  if (!cr || cr.log.ended) {
    setImmediate(onEnd);
    return () => undefined;
  }
  const f = { onData, onEnd };
  cr.log.followers.add(f);
  const log = cr.log;
  return () => log.followers.delete(f);
}
