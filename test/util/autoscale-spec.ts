/**
 * The autoscale tests' run (local and Kubernetes): one generate stage of one-item shards
 * from `items.jsonl`, served by server.mjs on an autoscaled pool of 0-4 with short windows.
 * `autoscale` and `pool` are laid over the defaults; `env` over the payload's.
 */
import { join } from 'node:path';
import { payloadFixture, specFrom } from './system.js';

export function autoscaledGenerateSpec(o: {
  name: string;
  pool: string;
  /** Holds items.jsonl. */
  dir: string;
  /** The payload's STATE_DIR. */
  stateDir: string;
  autoscale?: Record<string, unknown>;
  poolExtra?: Record<string, unknown>;
  env?: Record<string, string | number>;
}) {
  return specFrom({
    apiVersion: 'stoker/v1',
    kind: 'Pipeline',
    metadata: { name: o.name },
    spec: {
      stages: [
        {
          name: 'gen',
          kind: 'generate',
          input: { file: join(o.dir, 'items.jsonl'), shardSize: 1 },
          pool: {
            name: o.pool,
            minReplicas: 0,
            maxReplicas: 4,
            autoscale: {
              target: { backlogSecondsPerWorker: 2 },
              assumeShardDuration: '100ms',
              idleTimeout: '2s',
              behavior: { scaleDown: { stabilizationWindow: '3s' } },
              ...o.autoscale,
            },
            ...o.poolExtra,
          },
          retry: { attempts: 3, backoff: { type: 'fixed', delay: '100ms' } },
          terminationGracePeriod: '10s',
          payload: {
            command: [process.execPath, payloadFixture('server.mjs')],
            env: { STATE_DIR: o.stateDir, ITEM_MS: 20, ...o.env },
          },
        },
      ],
    },
  });
}
