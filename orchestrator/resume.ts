/**
 * Resuming a run that ended Failed or Cancelled: the request (this module) and its
 * application by the controller (controller/resume.ts).
 *
 * `stoker resume RUN`, POST /api/v1/runs/RUN/resume and a queue's retry (queue-retry.ts)
 * all call requestResume(). One script, REQUEST_RESUME below, checks that the run ended
 * Failed or Cancelled and that no resume of it is pending. Then it writes the request
 * `run:{id}:resume` = {at, by, state: 'requested'}, puts the run back in `runs:active`
 * and wakes the controller, all atomically. Of two concurrent requests the second finds
 * the first's and is refused, so nothing starts twice.
 *
 * The controller is the one writer of run and stage status, and it applies the request.
 * The succeeded stages are kept. Every other stage runs again: a dispatched stage's
 * task from its last checkpoint, a pulled stage's shards that did not succeed, and a
 * stage that never started once its dependencies succeed. The retry budget starts
 * afresh, and the run records the resume (RunRecord.resumes, a `Resumed` condition,
 * lineage.json).
 *
 * Why the same task ids, and so the same BullMQ job ids, rather than new ones per resume:
 * a task's records already hold what a resume needs. Its progress hash keeps the last
 * checkpoint, which becomes the next attempt's RESUME_FROM exactly as for a retry. Its
 * status keeps the attempt count and history: unit names and log files (`-aN`,
 * `attempt-N.log`) go on from there, so nothing of the earlier attempts is overwritten.
 * A pulled stage's outcomes say which shards are done. New ids would have to carry all
 * of that across. The cost is that the finished BullMQ jobs still hold the ids, and
 * adding a job under a taken id is a no-op. So the controller removes them before it adds
 * the new ones; while one is still active (its processor recording the end), the resume
 * waits for the next pass.
 *
 * REQUEST_RESUME
 *   KEYS  1 run hash  2 resume request  3 runs:active
 *   ARGV  1 request JSON  2 wake channel  3 runId
 *   Returns {'missing'} no such run; {'phase', P} the run is P (not Failed or Cancelled);
 *           {'pending', request} a resume of it is pending; {'requested', P} done (P: the
 *           phase it had). Nothing is written unless it returns 'requested'.
 */
import { userInfo } from 'node:os';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { StokerError } from '../common/errors.js';
import type { Keys } from '../common/keys.js';
import { nowIso, Phase } from '../common/model.js';
import { LuaScript } from '../common/task-store.js';
import { RunNotFoundError } from './store.js';

const REQUEST_RESUME = `
local raw = redis.call('HGET', KEYS[1], 'record')
if not raw then return {'missing'} end
local ok, run = pcall(cjson.decode, raw)
local phase = ok and type(run) == 'table' and run['phase'] or 'unknown'
if phase ~= 'Failed' and phase ~= 'Cancelled' then return {'phase', tostring(phase)} end
local pending = redis.call('GET', KEYS[2])
if pending then return {'pending', pending} end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[3])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return {'requested', phase}
`;
const requestResumeScript = new LuaScript(REQUEST_RESUME, 3);

/** The request as stored: `requested`, then `queued` once applied, until its jobs are added. */
export const ResumeRequest = z.object({
  at: z.string(),
  by: z.string(),
  state: z.enum(['requested', 'queued']),
});
export type ResumeRequest = z.infer<typeof ResumeRequest>;

/** What POST /api/v1/runs/RUN/resume answers (202). */
export const ResumeAccepted = z.object({
  id: z.string(),
  resumeRequested: z.literal(true),
  /** The phase the run had: Failed or Cancelled. */
  from: Phase,
  requestedAt: z.string(),
});
export type ResumeAccepted = z.infer<typeof ResumeAccepted>;

/** The run has not ended Failed or Cancelled, or a resume of it is pending: a 409. */
export class RunNotResumableError extends StokerError {
  override name = 'RunNotResumableError';
}

/** The key of `runs:active` (RunStore keeps it private). */
export const activeRunsKey = (keys: Keys): string => `${keys.runIndex()}:active`;

/** Who asks, as a local CLI records it. */
export function localRequester(): string {
  try {
    return `cli:${userInfo().username}`;
  } catch {
    return 'cli';
  }
}

/**
 * Ask for a resume of `runId` (an exact id), by `by`. Throws RunNotFoundError, or
 * RunNotResumableError naming the phase or the pending request.
 */
export async function requestResume(
  redis: Redis,
  keys: Keys,
  runId: string,
  by: string,
  clock: () => number = Date.now,
): Promise<ResumeAccepted> {
  const request: ResumeRequest = { at: nowIso(clock), by, state: 'requested' };
  const res = (await requestResumeScript.run(
    redis,
    [keys.run(runId), keys.runResume(runId), activeRunsKey(keys)],
    [JSON.stringify(request), keys.wakeChannel(), runId],
  )) as string[];
  const [code, detail] = res;
  if (code === 'requested')
    return { id: runId, resumeRequested: true, from: Phase.parse(detail), requestedAt: request.at };
  if (code === 'missing') throw new RunNotFoundError(`no run "${runId}"`);
  if (code === 'pending') {
    const prior = ResumeRequest.safeParse(JSON.parse(String(detail)));
    const since = prior.success ? ` (asked by ${prior.data.by} at ${prior.data.at})` : '';
    throw new RunNotResumableError(`run ${runId} is already being resumed${since}`);
  }
  throw new RunNotResumableError(
    `run ${runId} is ${detail}: only a run that ended Failed or Cancelled can be resumed`,
  );
}

/** The pending resume request of a run, if any. */
export async function readResumeRequest(
  redis: Redis,
  keys: Keys,
  runId: string,
): Promise<ResumeRequest | null> {
  const raw = await redis.get(keys.runResume(runId));
  if (!raw) return null;
  let parsed: ReturnType<typeof ResumeRequest.safeParse> | null = null;
  try {
    parsed = ResumeRequest.safeParse(JSON.parse(raw));
  } catch {
    // not JSON: below
  }
  // Only stoker writes it; should another hand have, it is still a request (of unknown origin).
  return parsed?.success ? parsed.data : { at: nowIso(), by: 'unknown', state: 'requested' };
}
