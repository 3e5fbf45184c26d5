/**
 * What the API's routes read from (a running system's store, Redis, queues), and the two
 * errors they throw that server.ts turns into 404 and 400.
 */
import type { Redis } from 'ioredis';
import { StokerError } from '../../common/errors.js';
import type { Keys } from '../../common/keys.js';
import type { QueueReader } from '../queue-counts.js';
import type { RunStore } from '../store.js';

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
