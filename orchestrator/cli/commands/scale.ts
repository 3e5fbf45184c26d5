/**
 * `stoker scale POOL --replicas N [--for 30m]`: pin a pool at N workers, within its bounds
 * (an unknown pool or a value outside them is an error and changes nothing), over its
 * autoscaler (or a fixed pool's replicas), until `stoker scale POOL --auto` or for the
 * duration. The controller applies it at its next pass; scaling down stops idle workers
 * first, and a busy one finishes its shard. Through the HTTP API when STOKER_URL is set
 * (the admin token).
 */
import { userInfo } from 'node:os';
import type { Command } from 'commander';
import { UsageError } from '../../../common/errors.js';
import { TimerDuration } from '../../../common/spec/schema.js';
import { scalePool, unpinPool, type PoolRecord, type PoolView } from '../../pools.js';
import { connectClient } from '../client.js';
import { makeContext } from '../context.js';
import { globals, print, printJson } from '../options.js';
import { ApiClient, remoteFrom } from '../remote.js';

export interface ScaleOptions {
  replicas?: number;
  for?: string;
  auto?: boolean;
  json?: boolean;
}

type Shown = Pick<PoolRecord, 'minReplicas' | 'maxReplicas' | 'pin'>;

export async function action(pool: string, o: ScaleOptions, cmd: Command): Promise<void> {
  const request = parseRequest(o);
  const ctx = makeContext(globals(cmd));
  const remote = remoteFrom(ctx.env);
  let rec: Shown;
  if (remote) {
    rec = await new ApiClient(remote).post<PoolView>(
      `/api/v1/pools/${encodeURIComponent(pool)}/scale`,
      request.auto
        ? { auto: true }
        : {
            replicas: request.replicas,
            ...(request.forSeconds === undefined ? {} : { for: request.forSeconds }),
          },
    );
  } else {
    const client = await connectClient(ctx);
    try {
      rec = request.auto
        ? await unpinPool(client.redis, ctx.keys, pool)
        : await scalePool(client.redis, ctx.keys, pool, request.replicas, {
            ...(request.forSeconds === undefined ? {} : { forSeconds: request.forSeconds }),
            by: `cli:${userInfo().username}`,
          });
    } finally {
      await client.close();
    }
  }
  if (o.json) return printJson(rec);
  const bounds = `bounds ${rec.minReplicas}-${rec.maxReplicas}`;
  print(
    rec.pin
      ? `pool ${pool}: pinned at ${rec.pin.replicas} ${rec.pin.until ? `until ${rec.pin.until}` : 'until stoker scale --auto'} (${bounds})`
      : `pool ${pool}: automatic again (${bounds})`,
  );
}

type Request = { auto: true } | { auto: false; replicas: number; forSeconds?: number };

/** Exactly one of --replicas and --auto; --for only with --replicas, as a duration. */
function parseRequest(o: ScaleOptions): Request {
  if (o.auto && o.replicas !== undefined)
    throw new UsageError('give --replicas N (a pin) or --auto (no pin), not both');
  if (o.auto) {
    if (o.for !== undefined) throw new UsageError('--for goes with --replicas, not --auto');
    return { auto: true };
  }
  if (o.replicas === undefined)
    throw new UsageError('give --replicas N to pin the pool, or --auto to end its pin');
  if (o.for === undefined) return { auto: false, replicas: o.replicas };
  const parsed = TimerDuration.safeParse(o.for);
  if (!parsed.success || parsed.data <= 0) {
    // The string branch's message (a union's first issue says only "Invalid input").
    const issues = parsed.success
      ? []
      : parsed.error.issues.flatMap((i) => ('errors' in i ? i.errors.flat() : [i]));
    const why = parsed.success
      ? 'must be more than 0'
      : (issues.find((i) => i.code === 'custom')?.message ?? 'not a duration');
    throw new UsageError(`--for ${o.for}: ${why} (e.g. 30s, 30m, 2h)`);
  }
  return { auto: false, replicas: o.replicas, forSeconds: parsed.data };
}
