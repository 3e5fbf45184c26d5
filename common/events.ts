/**
 * The payload protocol (README, "Worker and payload protocol").
 *
 * A payload reports by printing lines of the form
 *
 *     ::stoker:: {"type": "progress", "step": 10, "totalSteps": 200}
 *
 * on stdout, from rank 0 only. Everything else on stdout or stderr is log. The marker
 * may be preceded by a launcher's prefix (torchrun's "[default0]:", deepspeed's
 * "0: "), so it is searched anywhere in the line.
 *
 * Events:
 *   progress   {step, totalSteps?, epoch?}           coalesced by the worker
 *   metrics    {step?, loss?, lr?, tokensPerSec?, samplesPerSec?, ...numbers}
 *                                                     coalesced (latest value per key)
 *   checkpoint {path, step}                           always recorded, at once
 *   artifact   {name, path}                           always recorded; becomes a stage output
 *   result     {...anything JSON}                     always recorded; the payload's answer
 *   log        {level, message}                       a structured log line
 *
 * worker/python/src/stoker_payload/report.py writes exactly these shapes; the shared test
 * vectors in test/fixtures/protocol-vectors.json are checked by both languages.
 */
import * as z from 'zod';

export const MARKER = '::stoker::';

/** A line of the payload's protocol (a marker line), as logs leave them out unless raw. */
export const isProtocolLine = (line: string): boolean => line.trimStart().startsWith(MARKER);

const finiteNumber = z.number().finite();

export const ProgressEvent = z.object({
  type: z.literal('progress'),
  step: z.number().int().nonnegative(),
  totalSteps: z.number().int().positive().optional(),
  epoch: finiteNumber.nonnegative().optional(),
});
export const MetricsEvent = z
  .object({ type: z.literal('metrics'), step: z.number().int().nonnegative().optional() })
  .catchall(z.union([finiteNumber, z.null()]));
export const CheckpointEvent = z.object({
  type: z.literal('checkpoint'),
  path: z.string().min(1),
  step: z.number().int().nonnegative(),
});
export const ArtifactEvent = z.object({
  type: z.literal('artifact'),
  name: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_-]*$/, 'an artifact name is a word: letters, digits, _ and -'),
  path: z.string().min(1),
});
export const ResultEvent = z.object({ type: z.literal('result') }).catchall(z.unknown());
export const LogEvent = z.object({
  type: z.literal('log'),
  level: z.enum(['debug', 'info', 'warn', 'error']).default('info'),
  message: z.string(),
});

/*
 * Server mode (pulled execution, pool workers). The worker starts the payload once and
 * writes requests as JSON lines on its stdin:
 *
 *   {"type":"shard","id":TASK_ID,"input":PATH,"output":PATH,"attempt":N,"params":{...}}
 *   {"type":"shutdown"}                      (or EOF): finish and exit 0
 *
 * `output` is a temporary name chosen by the worker; the worker renames it to the
 * shard's final name after `done`, so a retried shard never leaves a half file. The
 * payload answers with marker lines:
 *
 *   ready  {}                                once loaded; requests are sent after it
 *   done   {id, items}                       the shard is written to `output`
 *   failed {id, reason, message}             the shard failed; `reason` is a name of
 *                                            common/exit-codes.json (BAD_DATA: not retried)
 *
 * and may print progress/metrics/log events while it works on a shard.
 */
export const ReadyEvent = z.object({ type: z.literal('ready') }).catchall(z.unknown());
export const ShardDoneEvent = z.object({
  type: z.literal('done'),
  id: z.string().min(1),
  items: z.number().int().nonnegative(),
});
export const ShardFailedEvent = z.object({
  type: z.literal('failed'),
  id: z.string().min(1),
  reason: z.string().min(1),
  message: z.string(),
});
export type ReadyEvent = z.infer<typeof ReadyEvent>;
export type ShardDoneEvent = z.infer<typeof ShardDoneEvent>;
export type ShardFailedEvent = z.infer<typeof ShardFailedEvent>;

export const ShardRequest = z.object({
  type: z.literal('shard'),
  id: z.string(),
  input: z.string(),
  output: z.string(),
  attempt: z.number().int().positive(),
  params: z.record(z.string(), z.unknown()),
});
export type ShardRequest = z.infer<typeof ShardRequest>;

export const PayloadEvent = z.discriminatedUnion('type', [
  ProgressEvent,
  MetricsEvent,
  CheckpointEvent,
  ArtifactEvent,
  ResultEvent,
  LogEvent,
  ReadyEvent,
  ShardDoneEvent,
  ShardFailedEvent,
]);
export type ProgressEvent = z.infer<typeof ProgressEvent>;
/** Written by hand: zod's inferred catchall type would make `type` a number. */
export interface MetricsEvent {
  type: 'metrics';
  step?: number;
  [metric: string]: number | null | string | undefined;
}
export type ResultEvent = z.infer<typeof ResultEvent>;
export type LogEvent = z.infer<typeof LogEvent>;
export type PayloadEvent =
  | ProgressEvent
  | MetricsEvent
  | CheckpointEvent
  | ArtifactEvent
  | ResultEvent
  | LogEvent
  | ReadyEvent
  | ShardDoneEvent
  | ShardFailedEvent;
export type CheckpointEvent = z.infer<typeof CheckpointEvent>;
export type ArtifactEvent = z.infer<typeof ArtifactEvent>;

export type ParsedLine =
  | { kind: 'log'; line: string }
  | { kind: 'event'; event: PayloadEvent }
  | { kind: 'malformed'; line: string; error: string };

/** Longest marker payload we parse; a longer line is malformed (it would be a bug or an attack). */
export const MAX_MARKER_BYTES = 64 * 1024;

/** Parse one line of payload stdout. Never throws. */
export function parseLine(line: string): ParsedLine {
  const at = line.indexOf(MARKER);
  if (at === -1) return { kind: 'log', line };
  const body = line.slice(at + MARKER.length).trim();
  if (body.length > MAX_MARKER_BYTES) {
    return {
      kind: 'malformed',
      line: line.slice(0, 200),
      error: `marker line longer than ${MAX_MARKER_BYTES} bytes`,
    };
  }
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch (err) {
    return { kind: 'malformed', line, error: `not JSON: ${(err as Error).message}` };
  }
  const parsed = PayloadEvent.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue && issue.path.length > 0 ? `${issue.path.join('.')}: ` : '';
    return { kind: 'malformed', line, error: `${where}${issue?.message ?? 'invalid event'}` };
  }
  return { kind: 'event', event: parsed.data as PayloadEvent };
}
