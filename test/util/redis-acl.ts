/**
 * Redis with the ACL users the install manifests ship (k8s/base/redis-users.acl, filled
 * as the kind overlay's k8s/overlays/kind/redis-users.acl is), and a whole stoker run
 * against it as a cluster runs it: the controller (dispatcher, kubernetes backend on the
 * simulated cluster, HTTP API and Bull Board, the CLI) as user `controller`, and every
 * worker pod, a pool's included, as user `worker` (the URL in the `stoker-redis` Secret's
 * `worker-url`, as the base's stoker-config names it).
 *
 *   const redis = await startAclRedis(aclText);
 *   const outcome = await runAsCluster({ controllerUrl, workerUrl, dir });
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../common/logger.js';
import { createKubernetesBackend } from '../../orchestrator/backends/kubernetes/compose.js';
import { COMPONENTS, LABELS } from '../../orchestrator/backends/kubernetes/names.js';
import { httpSettings, startHttp } from '../../orchestrator/http/start.js';
import { scratchArgs, startRedisServer, stopRedisServer } from '../../orchestrator/redis-server.js';
import { startFakeCluster } from '../../testing/kube-sim/cluster.js';
import { simulatedSettings } from '../../testing/kube-sim/simulated-settings.js';
import type { RunView } from '../../orchestrator/views.js';
import { stoker } from './cli.js';
import { K8S } from './kustomize.js';
import { eventually } from './redis-server.js';
import { payloadFixture, specFrom, startTestSystem } from './system.js';

/** The key prefix the shipped ACL's key and channel patterns are written for. */
export const ACL_PREFIX = 'stoker:';

export const BASE_ACL = join(K8S, 'base', 'redis-users.acl');
export const KIND_ACL = join(K8S, 'overlays', 'kind', 'redis-users.acl');

const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

/** The base's ACL file with each user's password filled in (as its SHA-256, as documented). */
export function fillAcl(template: string, passwords: Record<string, string>): string {
  return template.replace(/@([A-Z]+)_PASSWORD_SHA256@/g, (_all, user: string) => {
    const password = passwords[user.toLowerCase()];
    if (password === undefined) throw new Error(`no password for user ${user.toLowerCase()}`);
    return sha256(password);
  });
}

export interface AclRedis {
  port: number;
  url(user: string, password: string): string;
  stop(): Promise<void>;
}

/**
 * A throwaway redis-server on a free port whose users are `aclText` (an ACL file); it is
 * up when `probe` (a user of the file that may PING) gets an answer.
 */
export async function startAclRedis(
  aclText: string,
  probe: { user: string; password: string },
): Promise<AclRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'stoker-acl-redis-'));
  const aclFile = join(dir, 'users.acl');
  writeFileSync(aclFile, aclText, { mode: 0o600 });
  const url = (port: number, user: string, password: string) =>
    `redis://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${port}`;
  const started = await startRedisServer({
    args: (port) => [...scratchArgs(dir)(port), '--aclfile', aclFile],
    label: 'redis-server with ACL users',
    url: (port) => url(port, probe.user, probe.password),
  }).catch((err: Error) => {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  });
  return {
    port: started.port,
    url: (user, password) => url(started.port, user, password),
    async stop() {
      await stopRedisServer(started.child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface ClusterRunOutcome {
  view: RunView;
  /** Status codes of the HTTP reads, by path. */
  http: Record<string, number>;
  /** `stoker status --json` as the controller user: exit code and output. */
  cli: { exitCode: number | undefined; output: string };
}

/**
 * A run of a train stage, then a pulled generate stage on a pool of one worker pod, on the
 * simulated cluster: the controller and its HTTP API on `controllerUrl`, the pods on
 * `workerUrl` (from the Secret). Reads the run through the API, Bull Board and the CLI
 * while it runs; scales the pool to 0 at the end. Everything under `dir`.
 */
export async function runAsCluster(opts: {
  controllerUrl: string;
  workerUrl: string;
  dir: string;
}): Promise<ClusterRunOutcome> {
  const { dir } = opts;
  const home = join(dir, 'home');
  mkdirSync(home, { recursive: true });
  const cluster = await startFakeCluster({
    kubelet: { inheritEnv: 'all', extraEnv: { STOKER_HOME: home } },
  });
  // As k8s/base/controller-config.yaml: pods get STOKER_REDIS_URL from the Secret's worker-url.
  const settings = simulatedSettings(cluster, {
    namespace: 'stoker',
    redisUrlSecret: { name: 'stoker-redis', key: 'worker-url' },
  });
  cluster.store.create('secrets', {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'stoker-redis', namespace: 'stoker' },
    stringData: { 'worker-url': opts.workerUrl },
  });
  const sys = await startTestSystem({
    redisUrl: opts.controllerUrl,
    prefix: ACL_PREFIX,
    home,
    backend: ({ store, log, keys }) =>
      createKubernetesBackend({
        kc: cluster.kubeConfig({ namespace: 'stoker' }),
        settings,
        store,
        log,
        workerEnv: { STOKER_PREFIX: keys.prefix },
        poolsOutliveController: false,
      }),
  });
  const tokens = { STOKER_ADMIN_TOKEN: 'a'.repeat(32), STOKER_READ_TOKEN: 'r'.repeat(32) };
  const http = await startHttp({
    sys,
    redisUrl: opts.controllerUrl,
    home,
    env: tokens,
    settings: httpSettings({ port: 0, host: '127.0.0.1' }, {}),
    log: silentLogger(),
  });
  try {
    const input = join(dir, 'items.jsonl');
    writeFileSync(
      input,
      `${Array.from({ length: 6 }, (_, i) => JSON.stringify({ id: `i${i}` })).join('\n')}\n`,
    );
    const runId = await sys.submit(
      specFrom({
        apiVersion: 'stoker/v1',
        kind: 'Pipeline',
        metadata: { name: 'acl' },
        spec: {
          defaults: { retry: { attempts: 2, backoff: { type: 'fixed', delay: '100ms' } } },
          stages: [
            {
              name: 'train',
              kind: 'train',
              payload: {
                command: [process.execPath, payloadFixture('train-sim.mjs')],
                env: { STEPS: 6, STEP_MS: 20, CKPT_EVERY: 2 },
              },
            },
            {
              name: 'gen',
              kind: 'generate',
              dependsOn: ['train'],
              input: { file: input, shardSize: 2 },
              pool: { name: 'acl-gen', minReplicas: 0, maxReplicas: 1, replicas: 1 },
              payload: {
                command: [process.execPath, payloadFixture('server.mjs')],
                env: { STATE_DIR: dir },
              },
            },
          ],
        },
      }),
    );
    const get = async (path: string, token = tokens.STOKER_READ_TOKEN) => {
      const res = await fetch(`${http.url}${path}`, {
        headers: { authorization: `Bearer ${token}` },
      });
      await res.arrayBuffer();
      return res.status;
    };
    const reads = [
      '/api/v1/runs',
      `/api/v1/runs/${runId}`,
      `/api/v1/runs/${runId}/logs`,
      `/api/v1/runs/${runId}/metrics`,
      '/api/v1/pools',
      '/api/v1/queues',
      '/metrics',
      '/queues/api/queues?activeQueue=&page=1&jobsPerPage=10',
    ];
    const status: Record<string, number> = {};
    // While the pool runs: the board and the API read queues with workers on them.
    await eventually(
      'the pool stage running',
      async () => {
        const v = await sys.view(runId);
        return v.stages.some((s) => s.name === 'gen' && s.phase === 'Running');
      },
      60_000,
    );
    for (const path of reads) status[path] = await get(path);
    const view = await sys.waitForPhase(runId, ['Succeeded', 'Failed'], 90_000);
    for (const path of reads) status[path] = Math.max(status[path] ?? 0, await get(path));
    const cli = await stoker(['status', runId, '--json'], {
      home,
      redisUrl: opts.controllerUrl,
      prefix: ACL_PREFIX,
    });
    // Scale the pool down through the API (admin): its worker pod drains and exits.
    const scale = await fetch(`${http.url}/api/v1/pools/acl-gen/scale`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${tokens.STOKER_ADMIN_TOKEN}`,
        'content-type': 'application/json',
      },
      body: JSON.stringify({ replicas: 0 }),
    });
    status['POST /api/v1/pools/acl-gen/scale'] = scale.status;
    await eventually(
      "the pool worker's Job deleted",
      () =>
        cluster.store
          .list('jobs', { namespace: 'stoker' })
          .every((j) => j.metadata?.labels?.[LABELS.component] !== COMPONENTS.pool),
      60_000,
    );
    return { view, http: status, cli: { exitCode: cli.exitCode, output: cli.all ?? '' } };
  } finally {
    await http.app.close();
    await sys.stop('force');
    await cluster.stop();
  }
}

/** The ACL file a path names (the base's template or the kind overlay's). */
export const readAcl = (path: string): string => readFileSync(path, 'utf8');
