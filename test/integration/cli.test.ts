/** The CLI as a user runs it: real processes, real Redis. */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1Job } from '@kubernetes/client-node';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stoker } from '../util/cli.js';
import { testRedisUrl, uniquePrefix } from '../util/redis-server.js';
import { payloadFixture } from '../util/system.js';

let home: string;
let redisUrl: string;
let redis: Redis;
const prefix = uniquePrefix('cli');

const env = () => ({ home, redisUrl, prefix });

async function keysUnderPrefix(): Promise<string[]> {
  return redis.keys(`${prefix}*`);
}

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), 'stoker-cli-'));
  redisUrl = await testRedisUrl();
  redis = new Redis(redisUrl);
});
afterAll(async () => {
  const keys = await keysUnderPrefix();
  if (keys.length) await redis.del(...keys);
  redis.disconnect();
  rmSync(home, { recursive: true, force: true });
});

const write = (name: string, text: string) => {
  const p = join(home, name);
  writeFileSync(p, text);
  return p;
};

describe('stoker validate', () => {
  it('accepts the smoke spec', async () => {
    const r = await stoker(['validate', 'training-configs/smoke-cpu.yaml'], env());
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain('valid: TrainingRun "smoke-cpu"');
  });

  it('lists every problem with its YAML path and line, exit 2', async () => {
    const file = write(
      'bad.yaml',
      [
        'apiVersion: stoker/v1',
        'kind: Pipeline',
        'metadata:',
        '  name: Bad_Name',
        'spec:',
        '  stages:',
        '    - name: a',
        '      kind: train',
        '      payload:',
        '        command: python train.py',
        '      dependsOn: [missing]',
        '',
      ].join('\n'),
    );
    const r = await stoker(['validate', file], env());
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain('metadata.name');
    expect(r.stderr).toContain('line 4');
    expect(r.stderr).toContain('spec.stages[0].payload.command');
    expect(r.stderr).toContain('argv array');
    expect(r.stderr).toContain('missing');
  });

  it('reports an empty file, a non-YAML file and a YAML bomb clearly', async () => {
    for (const [name, text, expected] of [
      ['empty.yaml', '', /empty/i],
      ['notyaml.yaml', 'apiVersion: [unclosed\n  : :\n', /line/i],
      [
        'bomb.yaml',
        [
          'a: &a ["x","x","x","x","x","x","x","x","x"]',
          ...Array.from(
            { length: 9 },
            (_, i) =>
              `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(9)
                .fill(`*${String.fromCharCode(97 + i)}`)
                .join(',')}]`,
          ),
        ].join('\n'),
        /alias/i,
      ],
    ] as const) {
      const r = await stoker(['validate', write(name, text)], env());
      expect(r.exitCode, name).toBe(2);
      expect(r.stderr, name).toMatch(expected);
    }
  });

  it('--json gives the issues as data', async () => {
    const r = await stoker(
      [
        'validate',
        '--json',
        write(
          'bad2.yaml',
          'apiVersion: stoker/v2\nkind: TrainingRun\nmetadata: {name: x}\nspec: {payload: {command: [a]}}\n',
        ),
      ],
      env(),
    );
    expect(r.exitCode).toBe(2);
    const out = JSON.parse(r.stdout) as { valid: boolean; issues: Array<{ path: string }> };
    expect(out.valid).toBe(false);
    expect(out.issues.map((i) => i.path)).toContain('apiVersion');
  });
});

describe('stoker submit with an invalid spec', () => {
  it('exits 2 and writes nothing to Redis', async () => {
    const r = await stoker(
      [
        'submit',
        write(
          'bad3.yaml',
          'apiVersion: stoker/v1\nkind: TrainingRun\nmetadata: {name: x}\nspec: {payload: {command: "python x.py"}}\n',
        ),
      ],
      env(),
    );
    expect(r.exitCode).toBe(2);
    expect(await keysUnderPrefix()).toEqual([]);
  });
});

describe('Redis unreachable', () => {
  it('status fails with a clear error and a non-zero exit instead of hanging', async () => {
    const r = await stoker(
      ['status'],
      { home, redisUrl: 'redis://127.0.0.1:1', prefix },
      { timeoutMs: 30_000 },
    );
    expect(r.timedOut).toBe(false);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain('cannot reach Redis at redis://127.0.0.1:1');
  });

  it('a worker (dispatched or pool) says so in one line and exits 1, no stack trace', async () => {
    const unreachable = { home, redisUrl: 'redis://127.0.0.1:1', prefix };
    const [task, pool] = await Promise.all([
      stoker(['worker', '--task', 't', '--unit', 't-a1', '--attempt', '1'], unreachable, {
        timeoutMs: 30_000,
      }),
      stoker(['worker', '--pool', 'p'], unreachable, { timeoutMs: 30_000 }),
    ]);
    for (const r of [task, pool]) {
      expect(r.timedOut).toBe(false);
      expect(r.exitCode).toBe(1);
      expect(r.stderr.trim()).toMatch(
        /^stoker worker: cannot reach Redis at redis:\/\/127\.0\.0\.1:1: /,
      );
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    }
  });

  it('with no Redis configured and nothing running, client commands say how to start one', async () => {
    const r = await stoker(['status'], { home: join(home, 'nothing-here') });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain('stoker up');
  });
});

describe('stoker run, status, logs and queues', () => {
  it('runs a spec to completion with --json, then the other commands report on it', async () => {
    const spec = write(
      'ok.yaml',
      [
        'apiVersion: stoker/v1',
        'kind: TrainingRun',
        'metadata: {name: cli-ok}',
        'spec:',
        `  payload: {command: ["${process.execPath}", "${payloadFixture('train-sim.mjs')}"], env: {STEPS: "8", STEP_MS: "5"}}`,
        '',
      ].join('\n'),
    );
    const r = await stoker(['run', spec, '--json', '--set', 'spec.payload.env.STEPS=9'], env());
    expect(r.exitCode, r.all).toBe(0);
    const view = JSON.parse(r.stdout) as {
      id: string;
      phase: string;
      stages: Array<{ tasks: Array<{ progress: { step: number } }> }>;
    };
    expect(view.phase).toBe('Succeeded');
    expect(view.stages[0]?.tasks[0]?.progress.step).toBe(9);

    const st = await stoker(['status', '--json'], env());
    expect(st.exitCode).toBe(0);
    expect(
      (JSON.parse(st.stdout) as { runs: Array<{ id: string }> }).runs.map((x) => x.id),
    ).toContain(view.id);

    const one = await stoker(['status', 'cli-ok'], env());
    expect(one.stdout).toContain(`run ${view.id}`);
    expect(one.stdout).toContain('Succeeded');

    const logs = await stoker(['logs', view.id, '--task', 'train'], env());
    expect(logs.exitCode).toBe(0);
    expect(logs.stdout).toContain('attempt 1 starting at step 0');
    // Protocol lines only with --raw.
    expect(logs.stdout).not.toContain('::stoker::');
    const raw = await stoker(['logs', view.id, '--task', 'train', '--raw'], env());
    expect(raw.stdout).toContain('::stoker:: {"type":"progress"');
    expect(raw.stdout.split('\n').length).toBeGreaterThan(logs.stdout.split('\n').length);

    const q = await stoker(['queues', '--json'], env());
    const queues = (
      JSON.parse(q.stdout) as {
        queues: Array<{ name: string; completed: number; paused: boolean }>;
      }
    ).queues;
    expect(queues.map((x) => x.name)).toEqual(['train', 'steps']);
    expect(queues[0]?.completed).toBeGreaterThanOrEqual(1);

    const cancel = await stoker(['cancel', view.id], env());
    expect(cancel.stdout).toContain('already Succeeded');
  });

  it('exits non-zero when the run fails', async () => {
    const spec = write(
      'fail.yaml',
      [
        'apiVersion: stoker/v1',
        'kind: TrainingRun',
        'metadata: {name: cli-fail}',
        'spec:',
        `  payload: {command: ["${process.execPath}", "${payloadFixture('bad-data.mjs')}"]}`,
        '',
      ].join('\n'),
    );
    const r = await stoker(['run', spec], env());
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toContain('Failed');
    expect(r.stdout).toContain('BAD_DATA');
  });
});

describe('with the embedded Redis (no REDIS_URL)', () => {
  it('runs a spec, then status reads the finished run back from the stopped embedded Redis', async () => {
    const own = join(home, 'embedded-home');
    const spec = write(
      'embedded.yaml',
      [
        'apiVersion: stoker/v1',
        'kind: TrainingRun',
        'metadata: {name: emb}',
        'spec:',
        `  payload: {command: ["${process.execPath}", "${payloadFixture('train-sim.mjs')}"], env: {STEPS: "3", STEP_MS: "1"}}`,
        '',
      ].join('\n'),
    );
    const r = await stoker(['run', spec, '--json'], { home: own });
    expect(r.exitCode, r.all).toBe(0);
    const id = (JSON.parse(r.stdout) as { id: string }).id;
    const st = await stoker(['status', 'emb', '--json'], { home: own });
    expect(st.exitCode, st.all).toBe(0);
    expect(JSON.parse(st.stdout) as { id: string; phase: string }).toMatchObject({
      id,
      phase: 'Succeeded',
    });
  });
});

describe('stoker scale and pools', () => {
  it('refuses to scale an unknown pool, with a clear error', async () => {
    const r = await stoker(['scale', 'no-such-pool', '--replicas', '2'], env());
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain('no pool "no-such-pool"');
  });

  it('pools --json lists no pools before any stage used one', async () => {
    const r = await stoker(['pools', '--json'], env());
    expect(r.exitCode, r.all).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ pools: [] });
  });
});

describe('stoker run with a pool', () => {
  it('leaves no pool worker running after the run', async () => {
    const own = join(home, 'pool-home');
    const items = write(
      'pool-items.jsonl',
      Array.from({ length: 6 }, (_, i) => JSON.stringify({ id: `i${i}` })).join('\n'),
    );
    const spec = write(
      'pool.yaml',
      [
        'apiVersion: stoker/v1',
        'kind: Pipeline',
        'metadata: {name: cli-pool}',
        'spec:',
        '  stages:',
        '    - name: gen',
        '      kind: generate',
        `      input: {file: "${items}", shardSize: 2}`,
        '      pool: {name: cli-pool, maxReplicas: 2}',
        `      payload: {command: ["${process.execPath}", "${payloadFixture('server.mjs')}"], env: {STATE_DIR: "${home}"}}`,
        '',
      ].join('\n'),
    );
    const r = await stoker(['run', spec, '--json'], { home: own });
    expect(r.exitCode, r.all).toBe(0);
    expect((JSON.parse(r.stdout) as { phase: string }).phase).toBe('Succeeded');
    const ps = await import('node:child_process').then((cp) =>
      cp.execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }),
    );
    expect(ps.split('\n').filter((l) => l.includes('--pool cli-pool'))).toEqual([]);
  });
});

describe('stoker render', () => {
  it('prints every object of the smoke run as valid Kubernetes YAML', async () => {
    const r = await stoker(
      [
        'render',
        'training-configs/smoke-cpu.yaml',
        '--backend',
        'kubernetes',
        '--run-id',
        'smoke-cpu-20261126-000000-abcdef',
      ],
      env(),
    );
    expect(r.exitCode, r.all).toBe(0);
    const { parseAllDocuments } = await import('yaml');
    const docs = parseAllDocuments(r.stdout).map(
      (d) => d.toJS() as { kind: string; metadata: { name: string } },
    );
    expect(docs.map((d) => d.kind)).toEqual(['Job']);
    const { Job } = await import('kubernetes-models/batch/v1/Job');
    for (const d of docs) expect(() => new Job(d as never).validate()).not.toThrow();
    expect(docs[0]?.metadata.name).toBe('smoke-cpu-20261126-000000-abcdef-train-a1');
  });

  it("carries the FIRE recipe's config files to every pod: a ConfigMap per Job, mounted where the payload runs", async () => {
    const r = await stoker(
      ['render', 'training-configs/fire/pipeline.yaml', '--backend', 'kubernetes'],
      env(),
    );
    expect(r.exitCode, r.all).toBe(0);
    const { parseAllDocuments } = await import('yaml');
    const { Job } = await import('kubernetes-models/batch/v1/Job');
    const { ConfigMap } = await import('kubernetes-models/v1/ConfigMap');
    type Doc = { kind: string; metadata: { name: string } } & Record<string, unknown>;
    const docs = parseAllDocuments(r.stdout).map((d) => d.toJS() as Doc);
    const jobs = docs.filter((d) => d.kind === 'Job') as unknown as V1Job[];
    const maps = new Map(
      docs.filter((d) => d.kind === 'ConfigMap').map((d) => [d.metadata.name, d]),
    );
    // 9 dispatched stages and 16 self-play pool workers, each with its own ConfigMap.
    expect(jobs.length).toBe(25);
    expect(maps.size).toBe(25);
    const files = ['student.yaml', 'teacher.yaml', 'final.yaml', 'zero3.json'];
    for (const job of jobs) {
      expect(() => new Job(job as never).validate()).not.toThrow();
      const name = job.metadata?.name ?? '';
      const pod = job.spec?.template.spec;
      const volume = pod?.volumes?.find((v) => v.name === 'run-files');
      expect(volume?.configMap?.name, name).toBe(`${name}-files`);
      expect(volume?.configMap?.items?.map((i) => i.path)).toEqual(files);
      const c = pod?.containers[0];
      expect(c?.volumeMounts).toContainEqual({
        name: 'run-files',
        mountPath: '/stoker/files',
        readOnly: true,
      });
      expect(c?.env).toContainEqual({ name: 'STOKER_RUN_FILES_DIR', value: '/stoker/files' });
      const cm = maps.get(`${name}-files`) as { data: Record<string, string> } | undefined;
      expect(cm, `the ConfigMap of ${name}`).toBeDefined();
      expect(() => new ConfigMap(cm as never).validate()).not.toThrow();
      // Every item names a key of the ConfigMap, holding the file as it is in the repository.
      for (const item of volume?.configMap?.items ?? []) {
        expect(cm?.data[item.key]).toBe(
          readFileSync(
            join(import.meta.dirname, '..', '..', 'training-configs', 'fire', item.path),
            'utf8',
          ),
        );
      }
    }
    // The models and the data: PVCs, read-only (HF_HUB_OFFLINE is the payload's env:
    // test/unit/training-configs.test.ts).
    const student = jobs.find((j) => j.metadata?.name?.endsWith('-student-a1'));
    expect(student?.spec?.template.spec?.volumes).toEqual(
      expect.arrayContaining([
        { name: 'pvc-0', persistentVolumeClaim: { claimName: 'datasets', readOnly: true } },
        { name: 'pvc-1', persistentVolumeClaim: { claimName: 'models', readOnly: true } },
      ]),
    );
  });
});
