/**
 * What the API's routes read from (a running system's store, Redis, queues), and the two
 * errors they throw that server.ts turns into 404 and 400.
 */
import type { Redis } from 'ioredis';
import { StokerError } from '../../common/errors.js';
import type { Keys } from '../../common/keys.js';
import type { QueueReader } from '../queue-counts.js';
import type { RunStore } from '../store.js';
import { buildRunView, selectTasks, type RunView, type TaskView } from '../views.js';

export interface ApiSource {
  redis: Redis;
  keys: Keys;
  store: RunStore;
  queues: QueueReader;
  /** Stoker's home: where submitted runs get their folders. */
  home: string;
  isLeader(): boolean;
}

/** No such pool (a run's is RunNotFoundError): a 404. */
export class NotFoundError extends StokerError {
  override name = 'NotFoundError';
}

/** A malformed request (query, parameters, body): a 400 naming the field. */
export class BadRequestError extends StokerError {
  override name = 'BadRequestError';
  readonly statusCode = 400;
}

/**
 * The run and the one task a query's `task` names (a task id or a stage name; may be
 * left out when the run has one task): 404 when it names none, 400 when several.
 */
export async function oneTaskOf(
  src: ApiSource,
  runId: string,
  task: string | undefined,
): Promise<{ view: RunView; t: TaskView }> {
  const view = await buildRunView(src.store, src.redis, src.keys, runId);
  const { chosen, none } = selectTasks(view, task);
  if (chosen.length === 0) throw new NotFoundError(none);
  if (chosen.length > 1)
    throw new BadRequestError(
      `query.task: run ${view.id} has several tasks; name one (${chosen.map((x) => x.t.id).join(', ')})`,
    );
  return { view, t: chosen[0]!.t };
}
