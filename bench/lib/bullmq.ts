/**
 * Raw BullMQ on the bench's Redis: the baselines the dispatcher is measured against.
 * The same connection settings stoker uses (common/redis.ts), a prefix of its own.
 */
import { spawn } from 'node:child_process';
import { Queue, Worker, type Job, type Processor } from 'bullmq';
import { bullConnection } from '../../common/redis.js';
import type { BenchContext, Cleanup } from './harness.js';

export interface RawBull {
  queue: Queue;
  worker: Worker;
}

export async function startRawBull(
  ctx: BenchContext,
  cleanup: Cleanup,
  label: string,
  concurrency: number,
  processor: Processor,
): Promise<RawBull> {
  const prefix = `bench-raw-${label}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const connection = bullConnection(ctx.redisUrl);
  const queue = new Queue(label, { connection, prefix });
  cleanup.defer(`close raw queue ${label}`, async () => {
    await queue.obliterate({ force: true }).catch(() => undefined);
    await queue.close();
  });
  const worker = new Worker(label, processor, { connection, prefix, concurrency });
  cleanup.defer(`close raw worker ${label}`, () => worker.close(true));
  worker.on('error', () => undefined);
  await worker.waitUntilReady();
  await queue.waitUntilReady();
  return { queue, worker };
}

/** Spawn argv (no shell), output discarded; resolve with the exit code, reject on spawn error or non-zero exit. */
export function spawnAndWait(argv: readonly string[]): Promise<number> {
  const [file, ...args] = argv;
  if (file === undefined) return Promise.reject(new Error('empty argv'));
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: 'ignore' });
    child.once('error', reject);
    child.once('exit', (code, signal) =>
      code === 0 ? resolve(code) : reject(new Error(`${file} exited ${code ?? signal}`)),
    );
  });
}

export type { Job };
