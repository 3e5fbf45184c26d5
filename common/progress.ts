/**
 * The task progress record and its Redis encoding (README, "Worker and payload protocol").
 *
 * Written only by the worker running the task (worker/reporter.ts); read by everyone
 * (controller, CLI, API, dashboard) through the functions below.
 *
 *   task:{id}:progress  hash    one field per TaskProgress field:
 *                               step, totalSteps, epoch, stepsPerSec, attempt
 *                                   numbers as decimal strings ('' = unknown)
 *                               metrics, checkpoint, artifacts, result, warnings
 *                                   JSON
 *                               updatedAt, heartbeatAt
 *                                   ISO-8601 strings ('' = never)
 *   task:{id}:events    stream  capped (MAXLEN ~ EVENTS_MAXLEN); entries have fields
 *                               type  progress | checkpoint | artifact | result | warning | attempt
 *                               at    ISO-8601 time the worker saw the event
 *                               data  JSON (progress: a snapshot {step, totalSteps, epoch,
 *                                     stepsPerSec, metrics}; others: the event's fields)
 *   task:{id}:logs      list    the last LOG_TAIL_LINES log lines (oldest first), secrets
 *                               redacted; the full log is the attempt's log file
 *
 * Decoding is tolerant: a missing or unreadable field decodes to its empty value
 * (emptyProgress()), because a reader must never fail on a record written by an older
 * or newer worker, or by one that died half-way through a write.
 */
import type { Redis } from 'ioredis';
import type { Keys } from './keys.js';
import { LOG_TAIL_LINES } from './keys.js';
import { emptyProgress, type TaskProgress } from './model.js';

const NUMBER_FIELDS = ['step', 'totalSteps', 'epoch', 'stepsPerSec', 'attempt'] as const;
const STRING_FIELDS = ['updatedAt', 'heartbeatAt'] as const;
const JSON_FIELDS = ['metrics', 'checkpoint', 'artifacts', 'result', 'warnings'] as const;

/**
 * Encode the given fields of a progress record as hash fields. Only the fields present
 * in `progress` are encoded, so a writer can HSET just what changed; a null number or
 * time encodes as '' (so one HSET also clears a field).
 */
export function encodeProgress(progress: Partial<TaskProgress>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of NUMBER_FIELDS) {
    if (!(f in progress)) continue;
    const v = progress[f];
    out[f] = v === null || v === undefined || !Number.isFinite(v) ? '' : String(v);
  }
  for (const f of STRING_FIELDS) {
    if (!(f in progress)) continue;
    out[f] = progress[f] ?? '';
  }
  for (const f of JSON_FIELDS) {
    if (!(f in progress)) continue;
    const v = progress[f];
    if (v !== undefined) out[f] = JSON.stringify(v);
  }
  return out;
}

function num(raw: string | undefined): number | null {
  if (raw === undefined || raw === '') return null;
  const n = Number(raw);
  return Number.isFinite(n) ? n : null;
}

function json(raw: string | undefined): unknown {
  if (raw === undefined || raw === '') return undefined;
  try {
    return JSON.parse(raw) as unknown;
  } catch {
    return undefined;
  }
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** Decode a progress hash (HGETALL's answer). Never throws; unknown fields are ignored. */
export function decodeProgress(hash: Record<string, string>): TaskProgress {
  const p = emptyProgress();
  p.step = num(hash.step);
  p.totalSteps = num(hash.totalSteps);
  p.epoch = num(hash.epoch);
  p.stepsPerSec = num(hash.stepsPerSec);
  const attempt = num(hash.attempt);
  p.attempt = attempt !== null && Number.isInteger(attempt) ? attempt : null;
  p.updatedAt = hash.updatedAt || null;
  p.heartbeatAt = hash.heartbeatAt || null;

  const metrics = json(hash.metrics);
  if (isRecord(metrics)) {
    for (const [k, v] of Object.entries(metrics)) {
      if (v === null || (typeof v === 'number' && Number.isFinite(v))) p.metrics[k] = v;
    }
  }
  const checkpoint = json(hash.checkpoint);
  if (
    isRecord(checkpoint) &&
    typeof checkpoint.path === 'string' &&
    typeof checkpoint.step === 'number'
  ) {
    p.checkpoint = { path: checkpoint.path, step: checkpoint.step };
  }
  const artifacts = json(hash.artifacts);
  if (isRecord(artifacts)) {
    for (const [k, v] of Object.entries(artifacts)) if (typeof v === 'string') p.artifacts[k] = v;
  }
  const result = json(hash.result);
  if (isRecord(result)) p.result = result;
  const warnings = json(hash.warnings);
  if (Array.isArray(warnings))
    p.warnings = warnings.filter((w): w is string => typeof w === 'string');
  return p;
}

/** The task's progress; emptyProgress() when nothing was written yet. */
export async function readTaskProgress(
  redis: Redis,
  keys: Keys,
  taskId: string,
): Promise<TaskProgress> {
  return decodeProgress(await redis.hgetall(keys.taskProgress(taskId)));
}

/** The last `n` log lines of a task (oldest first). */
export async function readTaskLogTail(
  redis: Redis,
  keys: Keys,
  taskId: string,
  n: number = LOG_TAIL_LINES,
): Promise<string[]> {
  if (n <= 0) return [];
  return redis.lrange(keys.taskLogs(taskId), -n, -1);
}

// ---------------------------------------------------------------------------------------
// The events stream

export type TaskStreamEventType =
  'progress' | 'checkpoint' | 'artifact' | 'result' | 'warning' | 'attempt';

export interface TaskStreamEvent {
  /** The stream entry id (`ms-seq`), usable as `after` to read on. */
  id: string;
  type: TaskStreamEventType | string;
  at: string | null;
  data: unknown;
}

/** The field/value list of one stream entry, for XADD. */
export function encodeStreamEvent(type: TaskStreamEventType, at: string, data: unknown): string[] {
  return ['type', type, 'at', at, 'data', JSON.stringify(data ?? null)];
}

/** Decode one XRANGE entry (`[id, [field, value, ...]]`). Never throws. */
export function decodeStreamEvent(entry: [id: string, fields: string[]]): TaskStreamEvent {
  const [id, fields] = entry;
  const map: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) map[fields[i] as string] = fields[i + 1] as string;
  return { id, type: map.type ?? 'unknown', at: map.at ?? null, data: json(map.data) ?? null };
}

/**
 * Events of a task in order, oldest first: those after the entry id `after` (exclusive;
 * from the beginning when omitted), at most `count`.
 */
export async function readTaskEvents(
  redis: Redis,
  keys: Keys,
  taskId: string,
  opts: { after?: string; count?: number } = {},
): Promise<TaskStreamEvent[]> {
  const start = opts.after ? `(${opts.after}` : '-';
  const entries = (await redis.xrange(
    keys.taskEvents(taskId),
    start,
    '+',
    'COUNT',
    opts.count ?? 1000,
  )) as Array<[string, string[]]>;
  return entries.map(decodeStreamEvent);
}

/** The last `n` events of a task, oldest first. */
export async function readRecentTaskEvents(
  redis: Redis,
  keys: Keys,
  taskId: string,
  n = 50,
): Promise<TaskStreamEvent[]> {
  if (n <= 0) return [];
  const entries = (await redis.xrevrange(keys.taskEvents(taskId), '+', '-', 'COUNT', n)) as Array<
    [string, string[]]
  >;
  return entries.reverse().map(decodeStreamEvent);
}
