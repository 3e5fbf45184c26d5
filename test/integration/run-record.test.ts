/**
 * The stored run record's spec is typed (common/spec/normalized.ts) and checked when read
 * back from Redis (orchestrator/store.ts): a record this version of stoker did not write
 * is refused at the read, naming the run and the field, and a run stored before the
 * `kubernetes` block existed gets the built-in block.
 */
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { makeKeys, type Keys } from '../../common/keys.js';
import { CorruptRecordError, RunStore } from '../../orchestrator/store.js';
import { makePipeline, makeRun } from '../builders/spec.js';
import { testRedisUrl, uniquePrefix } from '../util/redis-server.js';

let redis: Redis;
let keys: Keys;
let store: RunStore;

beforeAll(async () => {
  redis = new Redis(await testRedisUrl());
});
afterAll(() => {
  redis.disconnect();
});
beforeEach(() => {
  keys = makeKeys(uniquePrefix('run-record'));
  store = new RunStore(redis, keys);
});
afterEach(async () => {
  const found = await redis.keys(`${keys.prefix}*`);
  if (found.length > 0) await redis.del(...found);
});

/** The part of a stored record's JSON these tests change. */
interface StoredJson {
  spec: { stages: (Record<string, unknown> & { payload: Record<string, unknown> })[] };
}

/** The stored record as JSON, changed by `edit`, written back. */
async function editRecord(id: string, edit: (record: StoredJson) => void): Promise<void> {
  const raw = await redis.hget(keys.run(id), 'record');
  if (!raw) throw new Error(`no record for ${id}`);
  const record = JSON.parse(raw) as StoredJson;
  edit(record);
  await redis.hset(keys.run(id), 'record', JSON.stringify(record));
}

describe('the stored spec', () => {
  it('reads back exactly what was stored, typed', async () => {
    const spec = makePipeline('typed')
      .stage('a', (s) => s.gpus(2).outputs({ ckpt: 'a.pt' }))
      .stage('b', (s) => s.kind('report').dependsOn('a'))
      .normalize();
    const created = await store.createRun(spec, { home: '/tmp/stoker-home' });
    const read = await store.mustGetRun(created.id);
    expect(read).toEqual(created);
    expect(read.spec.stages[0]?.kubernetes.volumes.shmSize).toBe('16Gi');
    expect(await store.listRuns()).toEqual([created]);
  });

  it.each<[string, (record: StoredJson) => void, RegExp]>([
    [
      'a command that became a shell string',
      (r) => {
        (r.spec.stages[0] as StoredJson['spec']['stages'][number]).payload['command'] =
          'python3 train.py';
      },
      /spec\.stages\[0\]\.payload\.command: .*expected array/,
    ],
    [
      'a stage kind this version does not know',
      (r) => {
        (r.spec.stages[0] as Record<string, unknown>)['kind'] = 'distill';
      },
      /spec\.stages\[0\]\.kind: /,
    ],
    [
      'a missing resources block',
      (r) => {
        delete (r.spec.stages[0] as Record<string, unknown>)['resources'];
      },
      /spec\.stages\[0\]\.resources: /,
    ],
    [
      'no stages at all',
      (r) => {
        r.spec.stages = [];
      },
      /spec\.stages: /,
    ],
  ])('refuses a record with %s, naming the run and the field', async (_name, edit, field) => {
    const { id } = await store.createRun(makeRun('TrainingRun').normalize(), { home: '/tmp/h' });
    await editRecord(id, edit);
    const err = await store.getRun(id).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(CorruptRecordError);
    expect((err as Error).message).toContain(`run ${id}: the stored record is not one`);
    expect((err as Error).message).toMatch(field);
    await expect(store.listRuns()).rejects.toThrow(field);
  });

  it('gives a run stored before the kubernetes block the built-in block', async () => {
    const spec = makeRun('TrainingRun').gpus(1).normalize();
    const { id } = await store.createRun(spec, { home: '/tmp/h' });
    await editRecord(id, (r) => {
      delete (r.spec.stages[0] as Record<string, unknown>)['kubernetes'];
    });
    const run = await store.mustGetRun(id);
    expect(run.spec.stages[0]?.kubernetes).toEqual(spec.stages[0]?.kubernetes);
    expect(run.spec.stages[0]?.kubernetes.volumes.shmSize).toBe('16Gi');
  });
});
