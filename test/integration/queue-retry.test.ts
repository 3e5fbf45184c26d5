/**
 * Retrying a queue's failed jobs (orchestrator/queue-retry.ts): through the API (POST
 * /api/v1/queues/NAME/retry), the local CLI and the remote CLI (`stoker queues retry`).
 * A failed job of a run that ended resumes the run; a failed shard of a stage still
 * running is retried in place, its stage waiting for it; a failed task of a run still
 * going is skipped with the reason. Nothing runs twice.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { afterEach, describe, expect, it } from 'vitest';
import { shardTaskId } from '../../common/keys.js';
import type { RunningHttp } from '../../orchestrator/http/start.js';
import type { QueueRetryResult } from '../../orchestrator/queue-retry.js';
import { stoker } from '../util/cli.js';
import { eventually } from '../util/redis-server.js';
import { startTestHttp } from '../util/http.js';
import { payloadFixture, specFrom, startTestSystem, type TestSystem } from '../util/system.js';

let sys: TestSystem | undefined;
let http: RunningHttp | undefined;
let home: string | undefined;
afterEach(async () => {
  await http?.close();
  await sys?.cleanup();
  if (home) rmSync(home, { recursive: true, force: true });
  http = sys = home = undefined;
});

const stage = (name: string, fixture: string, env: Record<string, string | number> = {}) => ({
  name,
  kind: 'train',
  payload: { command: [process.execPath, payloadFixture(fixture)], env },
  retry: { attempts: 1 },
  terminationGracePeriod: '5s',
});
const pipeline = (name: string, stages: unknown[]) =>
  specFrom({ apiVersion: 'stoker/v1', kind: 'Pipeline', metadata: { name }, spec: { stages } });

describe('retrying failed jobs of a queue', () => {
  it('resumes the runs that ended and skips a task of a run still going (API, remote CLI)', async () => {
    ({ sys, http } = await startTestHttp());
    const { admin, read } = http.tokens.tokens;
    const s = sys;
    const call = async (path: string, token: string, body?: object) => {
      const res = await fetch(`${http!.url}${path}`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${token}`,
          ...(body ? { 'content-type': 'application/json' } : {}),
        },
        body: body ? JSON.stringify(body) : undefined,
      });
      return { status: res.status, json: (await res.json()) as Record<string, unknown> };
    };
    // A run that failed (the crash comes back on every attempt), and a run still going
    // whose other stage failed.
    const ended = await s.submit(pipeline('retry-ended', [stage('a', 'crash.mjs')]));
    const going = await s.submit(
      pipeline('retry-going', [stage('a', 'crash.mjs'), stage('b', 'train-sim.mjs', { HANG: 1 })]),
    );
    expect((await s.waitForPhase(ended, ['Failed', 'Succeeded'])).phase).toBe('Failed');
    await eventually('the going run’s stage a failed', async () => {
      const v = await s.view(going);
      return v.stages[0]?.phase === 'Failed' && v.phase === 'Running';
    });
    await eventually('two failed jobs in train', async () => {
      const c = await s.redis.zcard(`${s.keys.bullPrefix}:train:failed`);
      return c === 2;
    });

    expect(await call('/api/v1/queues/train/retry', read, {})).toMatchObject({ status: 403 });
    expect(await call('/api/v1/queues/nope/retry', admin, {})).toMatchObject({ status: 404 });
    const bad = await call('/api/v1/queues/train/retry', admin, { limit: 0 });
    expect(bad.status).toBe(400);
    expect(String((bad.json.error as { message: string }).message)).toContain('body.limit');
    expect((await s.view(ended)).resumes).toEqual([]);

    const r = await call('/api/v1/queues/train/retry', admin);
    expect(r.status).toBe(200);
    expect(r.json).toEqual({
      queue: 'train',
      failed: 2,
      retried: 1,
      resumedRuns: [ended],
      retriedShards: [],
      skipped: [
        {
          job: `${going}.a`,
          runId: going,
          reason: `run ${going} is still Running and this task's failure has ended its stage: resume the run once it has ended (stoker resume ${going})`,
        },
      ],
    });
    const doc = await fetch(`${http.url}/api/v1/openapi.json`, {
      headers: { authorization: `Bearer ${read}` },
    }).then((res) => res.json() as Promise<{ components: { schemas: Record<string, object> } }>);
    const ajv = new Ajv2020({ strict: false });
    for (const [name, schema] of Object.entries(doc.components.schemas))
      ajv.addSchema(schema, `#/components/schemas/${name}`);
    const validate = ajv.getSchema('#/components/schemas/QueueRetryResult');
    expect(validate?.(r.json), JSON.stringify(validate?.errors)).toBe(true);

    // The run was resumed (its failed job replaced, not run twice) and failed again.
    const again = await eventually('the resumed run to fail again', async () => {
      const v = await s.view(ended);
      return v.resumes.length === 1 && v.phase === 'Failed' ? v : null;
    });
    expect(again.resumes[0]?.by).toBe('api:admin (queue retry)');
    expect(again.stages[0]?.tasks[0]?.history.map((h) => h.attempt)).toEqual([1, 2]);
    expect(await s.redis.zcard(`${s.keys.bullPrefix}:train:failed`)).toBe(2);

    // The remote CLI: the same, through the API.
    home = mkdtempSync(join(tmpdir(), 'stoker-queue-retry-'));
    const env = { home, extra: { STOKER_URL: http.url, STOKER_TOKEN: admin } };
    const cli = await stoker(['queues', 'retry', 'train', '--json'], env);
    expect(cli.exitCode, cli.all).toBe(0);
    expect(JSON.parse(cli.stdout)).toMatchObject({ failed: 2, retried: 1, resumedRuns: [ended] });
    await eventually('the run resumed twice to fail again', async () => {
      const v = await s.view(ended);
      return v.resumes.length === 2 && v.phase === 'Failed';
    });
    const text = await stoker(['queues', 'retry', 'train'], env);
    expect(text.stdout).toMatch(/^train: 2 failed jobs, 1 retried\n {2}runs resumed: /);
    expect(text.stdout).toContain(`skipped ${going}.a: run ${going} is still Running`);
    const unknown = await stoker(['queues', 'retry', 'nope'], env);
    expect(unknown.exitCode).toBe(1);
    expect(unknown.stderr).toMatch(/no queue "nope".*HTTP 404/);
  });

  it('retries a failed shard of a stage still running in place (local CLI): the stage waits for it', async () => {
    sys = await startTestSystem();
    const s = sys;
    const gate = join(s.home, 'gate');
    const lines = Array.from({ length: 10 }, (_, i) => JSON.stringify({ id: `item-${i}` }));
    lines.splice(2, 0, '{not json');
    const input = join(s.home, 'items.jsonl');
    writeFileSync(input, `${lines.join('\n')}\n`);
    const runId = await s.submit(
      specFrom({
        apiVersion: 'stoker/v1',
        kind: 'Pipeline',
        metadata: { name: 'retry-shard' },
        spec: {
          stages: [
            {
              name: 'gen',
              kind: 'generate',
              input: { file: input, shardSize: 6 },
              pool: { name: 'gen-retry', maxReplicas: 2, replicas: 2 },
              failurePolicy: { maxFailedShards: 1 },
              retry: { attempts: 1 },
              payload: {
                command: [process.execPath, payloadFixture('server.mjs')],
                // Shard 1 waits for the gate: the stage stays running meanwhile.
                env: { STATE_DIR: s.home, GATE_ON: `shard-00001:${gate}` },
              },
            },
          ],
        },
      }),
    );
    const bad = shardTaskId(runId, 'gen', 0);
    await eventually(
      'shard 0 failed, shard 1 running',
      async () => {
        const outcomes = await s.store.shardOutcomes(runId, 'gen');
        const st = await s.store.getTaskStatuses([shardTaskId(runId, 'gen', 1)]);
        return outcomes[0]?.phase === 'Failed' && Object.values(st)[0]?.phase === 'Running';
      },
      60_000,
    );
    const shard = (await s.store.getTask(bad))?.shard;
    const fixed = readFileSync(shard!.input, 'utf8').split('\n');
    writeFileSync(shard!.input, fixed.filter((l) => !l.startsWith('{not')).join('\n'));

    const env = { home: s.home, redisUrl: s.redisUrl, prefix: s.prefix };
    const r = await stoker(['queues', 'retry', 'pool.gen-retry', '--json'], env);
    expect(r.exitCode, r.all).toBe(0);
    expect(JSON.parse(r.stdout) as QueueRetryResult).toEqual({
      queue: 'pool.gen-retry',
      failed: 1,
      retried: 1,
      resumedRuns: [],
      retriedShards: [bad],
      skipped: [],
    });
    // Retried: it succeeds while shard 1 still waits; nothing more to retry.
    await eventually('shard 0 succeeded', async () => {
      const o = await s.store.shardOutcomes(runId, 'gen');
      return o[0]?.phase === 'Succeeded';
    });
    expect((await s.view(runId)).phase).toBe('Running');
    const none = await stoker(['queues', 'retry', 'pool.gen-retry', '--json'], env);
    expect(JSON.parse(none.stdout)).toMatchObject({ failed: 0, retried: 0 });

    writeFileSync(gate, '');
    const view = await s.waitForPhase(runId, ['Succeeded', 'Failed']);
    expect(view.phase).toBe('Succeeded');
    expect(view.stages[0]?.shards).toMatchObject({ total: 2, succeeded: 2, failed: 0, items: 10 });
    const manifest = JSON.parse(readFileSync(view.stages[0]!.outputs.shards!, 'utf8'));
    expect(manifest.failed).toEqual([]);
    expect(existsSync(gate)).toBe(true);
    const unknown = await stoker(['queues', 'retry', 'nope'], env);
    expect(unknown.exitCode).toBe(1);
    expect(unknown.stderr).toContain('no queue "nope"');
  });
});
