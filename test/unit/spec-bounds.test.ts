/**
 * Specs bounded and sane: a recursive YAML alias is a clear error (never a stack overflow
 * or a circular JSON crash), and so is a value nested thousands deep; durations beyond
 * what their timers hold, absurd replica, node and GPU counts and zero-size quantities are
 * refused, each at its path (and line, where it came from the file), whether written in
 * the file or given with `--set`.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { SpecError } from '../../common/errors.js';
import type { SpecIssue } from '../../common/errors.js';
import { parseSpec, SPEC_LIMITS } from '../../common/spec/index.js';
import { stoker } from '../util/cli.js';

/** A TrainingRun whose inline stage has `fields` (YAML text, indented under spec). */
function run(fields: string): string {
  return [
    'apiVersion: stoker/v1',
    'kind: TrainingRun',
    'metadata: {name: bounds}',
    'spec:',
    '  payload: {command: [python3, train.py]}',
    ...fields
      .trim()
      .split('\n')
      .map((l) => `  ${l}`),
    '',
  ].join('\n');
}

/** A SelfPlay (a pulled stage) with a pool, for the replica bounds. */
function selfPlay(pool: Record<string, unknown>): string {
  return stringify({
    apiVersion: 'stoker/v1',
    kind: 'SelfPlay',
    metadata: { name: 'bounds' },
    spec: {
      payload: { command: ['python3', 'gen.py'] },
      input: { file: 'in.jsonl', shardSize: 10 },
      pool: { name: 'gen', maxReplicas: 2, ...pool },
    },
  });
}

function issuesOf(text: string, sets: string[] = []): SpecIssue[] {
  try {
    parseSpec(text, { sets });
  } catch (err) {
    if (err instanceof SpecError) return err.issues;
    throw err;
  }
  throw new Error('expected a SpecError, but the spec was accepted');
}

/** The one issue at `path`, which must match `message`. */
function issueAt(issues: SpecIssue[], at: string, message: RegExp): SpecIssue {
  const found = issues.filter((i) => i.path === at);
  expect(found, `no issue at ${at} in ${JSON.stringify(issues, null, 2)}`).toHaveLength(1);
  const issue = found[0] as SpecIssue;
  expect(issue.message).toMatch(message);
  return issue;
}

const RECURSIVE = /recursive alias.*no finite value/;

describe('recursive aliases and deep nesting: a SpecError, never a crash', () => {
  it.each<[string, string, string, number]>([
    ['a list that holds itself', 'shardParams:\n  a: &a [*a]', 'spec.shardParams.a[0]', 7],
    [
      'a mapping that holds itself, two levels down',
      'shardParams:\n  x: &x\n    y:\n      z: [1, *x]',
      'spec.shardParams.x.y.z[1]',
      9,
    ],
    [
      'an alias to an ancestor anchor from a merge-free stage field',
      'payload: &p {command: [a], env: {A: *p}}',
      'spec.payload.env.A',
      5,
    ],
  ])('refuses %s at the alias, with its line', (_name, fields, at, line) => {
    // The third case brings its own payload (line 5), in place of run()'s.
    const text = fields.startsWith('payload')
      ? run(fields).replace('  payload: {command: [python3, train.py]}\n', '')
      : run(fields);
    const issues = issuesOf(text);
    expect(issues).toHaveLength(1);
    expect(issueAt(issues, at, RECURSIVE).line).toBe(line);
  });

  it('refuses an alias of no anchor, and a merge key of a scalar, at their path and line', () => {
    const undefinedAlias = issuesOf(run('shardParams: {x: [1, *nowhere]}'));
    expect(issueAt(undefinedAlias, 'spec.shardParams.x[1]', /\*nowhere has no anchor/).line).toBe(
      6,
    );
    const badMerge = issuesOf(run('shardParams:\n  x: {<<: 3}'));
    const issue = issueAt(badMerge, 'spec.shardParams.x["<<"]', /merge key \(<<\) takes a mapping/);
    expect(issue.line).toBe(7);
  });

  it('refuses a recursive top level', () => {
    const issues = issuesOf('&top {apiVersion: stoker/v1, self: *top}\n');
    expect(issueAt(issues, 'self', RECURSIVE).line).toBe(1);
  });

  it('refuses a recursive --set value at the path it was meant for, without a line', () => {
    const issues = issuesOf(run('shardParams: {}'), ['spec.shardParams.loop=&a [1, [*a]]']);
    const issue = issueAt(issues, 'spec.shardParams.loop[1][0]', RECURSIVE);
    expect(issue.message).toContain('--set spec.shardParams.loop=&a [1, [*a]]');
    expect(issue.line).toBeUndefined();
  });

  it('refuses a value nested deeper than the parser can go, in the file and in a --set', () => {
    const deep = `${'['.repeat(5000)}${']'.repeat(5000)}`;
    expect(issuesOf(run(`shardParams: {x: ${deep}}`))[0]?.message).toMatch(/nested too deeply/);
    const fromSet = issuesOf(run('shardParams: {}'), [`spec.shardParams.x=${deep}`]);
    expect(fromSet[0]?.message).toMatch(/nested too deeply/);
  });

  it('refuses a value nested deeper than 64 levels that the parser takes, at the level too deep', () => {
    const deep = `${'['.repeat(100)}${']'.repeat(100)}`;
    const issues = issuesOf(run(`shardParams: {x: ${deep}}`));
    expect(issues).toHaveLength(1);
    // 64 levels from the document's top: spec, shardParams, x, then 61 lists.
    expect(issues[0]?.path).toBe(`spec.shardParams.x${'[0]'.repeat(61)}`);
    expect(issues[0]?.message).toMatch(/nests at most 64 levels/);
    // 60 levels is deep but allowed: a real spec uses under 10.
    expect(() =>
      parseSpec(run(`shardParams: {x: ${'['.repeat(60)}${']'.repeat(60)}}`)),
    ).not.toThrow();
  });
});

describe('bounds: each refused at its path and line, with the bound in the message', () => {
  const TIMER = /at most 7d \(604800 s\).*becomes a timer/;
  it.each<[string, string, string, RegExp]>([
    ['a 30-day grace period', 'terminationGracePeriod: 30d', 'spec.terminationGracePeriod', TIMER],
    [
      'a grace period of 1e308 seconds',
      'terminationGracePeriod: 1e308',
      'spec.terminationGracePeriod',
      /at most 7d.*got 1e\+308 s/,
    ],
    ['an 8-day stall timeout', 'stallTimeout: 8d', 'spec.stallTimeout', TIMER],
    [
      'a duration too large for a number',
      `stallTimeout: ${'9'.repeat(400)}s`,
      'spec.stallTimeout',
      /at most 7d.*a number too large to hold/,
    ],
    [
      'a 2-day backoff',
      'retry: {backoff: {delay: 2d}}',
      'spec.retry.backoff.delay',
      /at most 1d \(86400 s\)/,
    ],
    [
      'a 400-day budget',
      'budget: {activeDeadline: 400d}',
      'spec.budget.activeDeadline',
      /at most 366d/,
    ],
    [
      'a Job kept for ever',
      'kubernetes: {ttlSecondsAfterFinished: 1e12}',
      'spec.kubernetes.ttlSecondsAfterFinished',
      /at most 366d/,
    ],
    [
      'a billion nodes',
      'resources: {nodes: 1e9}',
      'spec.resources.nodes',
      /at most 10,000 nodes \(got 1000000000\)/,
    ],
    [
      '100 GPUs on one node',
      'resources: {gpus: 100}',
      'spec.resources.gpus',
      /at most 64 GPUs per node \(got 100\)/,
    ],
    ['memory "0" (a string)', 'resources: {memory: "0"}', 'spec.resources.memory', /more than 0/],
    ['memory 0 (a number)', 'resources: {memory: 0}', 'spec.resources.memory', /more than 0/],
    ['memory 0Gi', 'resources: {memory: 0Gi}', 'spec.resources.memory', /more than 0/],
    ['memory "0.0"', 'resources: {memory: "0.0"}', 'spec.resources.memory', /more than 0/],
    ['cpu 0m', 'resources: {cpu: 0m}', 'spec.resources.cpu', /more than 0/],
    ['cpu 0 (a number)', 'resources: {cpu: 0}', 'spec.resources.cpu', /more than 0/],
    [
      'a zero /dev/shm',
      'kubernetes: {volumes: {shmSize: "0"}}',
      'spec.kubernetes.volumes.shmSize',
      /^must be more than 0/,
    ],
  ])('refuses %s', (_name, fields, at, message) => {
    const issues = issuesOf(run(fields));
    expect(issues, JSON.stringify(issues)).toHaveLength(1);
    expect(issueAt(issues, at, message).line).toBe(6);
  });

  it.each<[string, Record<string, unknown>, string]>([
    ['maxReplicas 1e9', { maxReplicas: 1e9 }, 'spec.pool.maxReplicas'],
    ['minReplicas 20,000', { minReplicas: 20_000, maxReplicas: 2 }, 'spec.pool.minReplicas'],
    ['replicas 10,001', { replicas: 10_001 }, 'spec.pool.replicas'],
  ])('refuses a pool with %s', (_name, pool, at) => {
    issueAt(issuesOf(selfPlay(pool)), at, /at most 10,000 workers in a pool \(got \d+\)/);
  });

  it('accepts every value at its bound', () => {
    const spec = parseSpec(
      run(
        [
          'terminationGracePeriod: 7d',
          'stallTimeout: 604800',
          'retry: {backoff: {delay: 24h}}',
          'budget: {activeDeadline: 366d}',
          'resources: {nodes: 10000, gpus: 64, cpu: 1m, memory: 0.5Gi}',
        ].join('\n'),
      ),
    );
    expect(spec.stages[0]).toMatchObject({
      terminationGracePeriodSeconds: SPEC_LIMITS.timerSeconds,
      stallTimeoutSeconds: SPEC_LIMITS.timerSeconds,
      activeDeadlineSeconds: SPEC_LIMITS.durationSeconds,
      resources: { nodes: 10_000, gpus: 64, cpu: '1m', memory: '0.5Gi' },
    });
    const pool = parseSpec(selfPlay({ maxReplicas: 10_000, minReplicas: 10_000 })).stages[0]?.pool;
    expect(pool).toMatchObject({ maxReplicas: 10_000, minReplicas: 10_000, replicas: 10_000 });
  });

  it('still allows a zero grace period (SIGKILL at once, asked for) and no stall timeout', () => {
    const spec = parseSpec(run('terminationGracePeriod: 0\nstallTimeout: 0s'));
    expect(spec.stages[0]).toMatchObject({
      terminationGracePeriodSeconds: 0,
      stallTimeoutSeconds: 0,
    });
  });

  it('holds a Pipeline and its defaults to the same bounds', () => {
    const text = stringify({
      apiVersion: 'stoker/v1',
      kind: 'Pipeline',
      metadata: { name: 'p' },
      spec: {
        defaults: { terminationGracePeriod: '30d', resources: { memory: '0' } },
        stages: [{ name: 'a', kind: 'train', payload: { command: ['a'] }, stallTimeout: '9d' }],
      },
    });
    const issues = issuesOf(text);
    issueAt(issues, 'spec.defaults.terminationGracePeriod', TIMER);
    issueAt(issues, 'spec.defaults.resources.memory', /more than 0/);
    issueAt(issues, 'spec.stages[0].stallTimeout', TIMER);
  });
});

describe("a pool's autoscale block: validated at its paths and lines, defaults applied", () => {
  /** A SelfPlay whose pool has `autoscale` (YAML text, indented under it), and its line offset. */
  const autoscaled = (block: string) =>
    [
      'apiVersion: stoker/v1',
      'kind: SelfPlay',
      'metadata: {name: as}',
      'spec:',
      '  payload: {command: [python3, gen.py]}',
      '  input: {file: in.jsonl, shardSize: 10}',
      '  pool:',
      '    name: gen',
      '    maxReplicas: 4',
      '    autoscale:',
      ...block
        .trim()
        .split('\n')
        .map((l) => `      ${l}`),
      '',
    ].join('\n');
  const AS = 'spec.pool.autoscale';

  it.each<[string, string, string, RegExp]>([
    [
      'neither target',
      'target: {}',
      `${AS}.target`,
      /exactly one of backlogSecondsPerWorker .* or shardsPerWorker \(neither was given\)/,
    ],
    [
      'both targets',
      'target: {backlogSecondsPerWorker: 30, shardsPerWorker: 2}',
      `${AS}.target`,
      /\(not both\)/,
    ],
    [
      'a target of no work',
      'target: {backlogSecondsPerWorker: 0s}',
      `${AS}.target.backlogSecondsPerWorker`,
      /more than 0/,
    ],
    [
      'an idle timeout past a timer',
      'target: {shardsPerWorker: 1}\nidleTimeout: 8d',
      `${AS}.idleTimeout`,
      /at most 7d/,
    ],
    [
      'a window over an hour',
      'target: {shardsPerWorker: 1}\nbehavior: {scaleDown: {stabilizationWindow: 61m}}',
      `${AS}.behavior.scaleDown.stabilizationWindow`,
      /at most 1h \(3600 s\).*got 3660 s/,
    ],
    [
      'a policy period of 0',
      'target: {shardsPerWorker: 1}\nbehavior: {scaleUp: {policies: [{type: Workers, value: 1, period: 0}]}}',
      `${AS}.behavior.scaleUp.policies[0].period`,
      /more than 0/,
    ],
    [
      'a Percent policy over 1000',
      'target: {shardsPerWorker: 1}\nbehavior: {scaleUp: {policies: [{type: Percent, value: 2000, period: 15s}]}}',
      `${AS}.behavior.scaleUp.policies[0].value`,
      /at most 1000 \(got 2000\)/,
    ],
    [
      'no policy in a direction that is not Disabled',
      'target: {shardsPerWorker: 1}\nbehavior: {scaleDown: {policies: []}}',
      `${AS}.behavior.scaleDown.policies`,
      /at least one policy .*selectPolicy: Disabled/,
    ],
    [
      'an unknown policy type',
      'target: {shardsPerWorker: 1}\nbehavior: {scaleUp: {policies: [{type: Pods, value: 1, period: 15s}]}}',
      `${AS}.behavior.scaleUp.policies[0].type`,
      /Workers|Percent/,
    ],
  ])('refuses %s', (_name, block, at, message) => {
    const issues = issuesOf(autoscaled(block));
    expect(issues, JSON.stringify(issues)).toHaveLength(1);
    expect(issueAt(issues, at, message).line).toBeGreaterThanOrEqual(11);
  });

  it('refuses replicas beside autoscale, at replicas', () => {
    const text = autoscaled('target: {shardsPerWorker: 1}').replace(
      '    maxReplicas: 4',
      '    maxReplicas: 4\n    replicas: 2',
    );
    expect(issueAt(issuesOf(text), 'spec.pool.replicas', /has no fixed replicas/).line).toBe(10);
  });

  it("applies the HPA's defaults, and starts the pool at minReplicas", () => {
    const pool = parseSpec(autoscaled('target: {backlogSecondsPerWorker: 30s}')).stages[0]?.pool;
    expect(pool).toMatchObject({
      minReplicas: 0,
      maxReplicas: 4,
      replicas: 0,
      autoscale: {
        target: { backlogSecondsPerWorker: 30 },
        assumeShardSeconds: null,
        idleTimeoutSeconds: 300,
        scaleUp: {
          stabilizationWindowSeconds: 0,
          selectPolicy: 'Max',
          policies: [
            { type: 'Workers', value: 4, periodSeconds: 15 },
            { type: 'Percent', value: 100, periodSeconds: 15 },
          ],
        },
        scaleDown: { stabilizationWindowSeconds: 300, policies: [{ type: 'Percent', value: 100 }] },
      },
    });
  });

  it('gives a pool of GPU workers a 15 s scale-down window and a 60 s idle timeout, unless the spec says otherwise', () => {
    const gpuPool = (block: string, resources: string) =>
      parseSpec(
        autoscaled(block).replace('    maxReplicas: 4', `    maxReplicas: 4\n    ${resources}`),
      ).stages[0]?.pool?.autoscale;
    const cpu = parseSpec(autoscaled('target: {shardsPerWorker: 1}')).stages[0]?.pool?.autoscale;
    const gpu = gpuPool('target: {shardsPerWorker: 1}', 'resources: {gpus: 1}');
    expect(gpu).toMatchObject({
      idleTimeoutSeconds: 60,
      scaleDown: {
        stabilizationWindowSeconds: 15,
        selectPolicy: 'Max',
        policies: [{ type: 'Percent', value: 100, periodSeconds: 15 }],
      },
    });
    // Scale-up is the HPA's either way.
    expect(gpu?.scaleUp).toEqual(cpu?.scaleUp);
    // The spec's own values win, field by field.
    expect(
      gpuPool(
        'target: {shardsPerWorker: 1}\nidleTimeout: 10m\nbehavior: {scaleDown: {stabilizationWindow: 2m}}',
        'resources: {gpus: 2}',
      ),
    ).toMatchObject({ idleTimeoutSeconds: 600, scaleDown: { stabilizationWindowSeconds: 120 } });
    expect(
      gpuPool(
        'target: {shardsPerWorker: 1}\nbehavior: {scaleDown: {policies: [{type: Workers, value: 2, period: 30s}]}}',
        'resources: {gpus: 1}',
      )?.scaleDown,
    ).toEqual({
      stabilizationWindowSeconds: 15,
      selectPolicy: 'Max',
      policies: [{ type: 'Workers', value: 2, periodSeconds: 30 }],
    });
    // GPUs: 0 is a CPU pool.
    expect(gpuPool('target: {shardsPerWorker: 1}', 'resources: {gpus: 0}')).toEqual(cpu);
  });

  it('takes a pool’s GPUs from its stage when the pool does not name them', () => {
    const text = autoscaled('target: {shardsPerWorker: 1}').replace(
      '  payload: {command: [python3, gen.py]}',
      '  payload: {command: [python3, gen.py]}\n  resources: {gpus: 1}',
    );
    const pool = parseSpec(text).stages[0]?.pool;
    expect(pool?.resources.gpus).toBe(1);
    expect(pool?.autoscale).toMatchObject({
      idleTimeoutSeconds: 60,
      scaleDown: { stabilizationWindowSeconds: 15 },
    });
  });

  it('takes a policy list and Disabled as written', () => {
    const pool = parseSpec(
      autoscaled(
        'target: {shardsPerWorker: 5}\nassumeShardDuration: 2m\nidleTimeout: 0\nbehavior:\n  scaleDown: {selectPolicy: Disabled, policies: []}\n  scaleUp: {stabilizationWindow: 1h, policies: [{type: Percent, value: 1000, period: 30m}]}',
      ),
    ).stages[0]?.pool;
    expect(pool?.autoscale).toMatchObject({
      target: { shardsPerWorker: 5 },
      assumeShardSeconds: 120,
      idleTimeoutSeconds: 0,
      scaleDown: { selectPolicy: 'Disabled', policies: [] },
      scaleUp: {
        stabilizationWindowSeconds: 3600,
        policies: [{ type: 'Percent', value: 1000, periodSeconds: 1800 }],
      },
    });
  });
});

describe('--set: the same bounds, at the path set, without a line', () => {
  it.each<[string, string, RegExp]>([
    ['spec.terminationGracePeriod=30d', 'spec.terminationGracePeriod', /at most 7d/],
    ['spec.stallTimeout=1e308', 'spec.stallTimeout', /at most 7d/],
    ['spec.retry.backoff.delay=2d', 'spec.retry.backoff.delay', /at most 1d/],
    ['spec.budget.activeDeadline=1e308', 'spec.budget.activeDeadline', /at most 366d/],
    ['spec.resources.nodes=1e9', 'spec.resources.nodes', /at most 10,000 nodes/],
    ['spec.resources.memory="0"', 'spec.resources.memory', /more than 0/],
    ['spec.resources.memory=0', 'spec.resources.memory', /more than 0/],
    ['spec.resources.cpu=0m', 'spec.resources.cpu', /more than 0/],
  ])('refuses %s', (set, at, message) => {
    const issue = issueAt(issuesOf(run('image: x'), [set]), at, message);
    expect(issue.line).toBeUndefined();
  });

  it('refuses a pool of a billion workers given with --set', () => {
    const issue = issueAt(
      issuesOf(selfPlay({}), ['spec.pool.maxReplicas=1e9']),
      'spec.pool.maxReplicas',
      /at most 10,000 workers/,
    );
    expect(issue.line).toBeUndefined();
  });
});

describe('stoker validate: recursive aliases through the real CLI', () => {
  let dir: string;
  let file: string;
  let loop: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'stoker-bounds-'));
    file = path.join(dir, 'ok.yaml');
    loop = path.join(dir, 'loop.yaml');
    await writeFile(file, run('shardParams: {}'));
    await writeFile(loop, run('shardParams:\n  a: &a [*a]'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const validate = (args: string[]) =>
    stoker(['validate', ...args], { home: dir }, { timeoutMs: 60_000 });

  it('exits 2 for a recursive alias in the file, naming its path and line', async () => {
    const r = await validate([loop]);
    expect(r.exitCode, r.all).toBe(2);
    expect(r.all).toMatch(/spec\.shardParams\.a\[0\] \(line 7, column \d+\): a recursive alias/);
    expect(r.all).not.toMatch(/Maximum call stack|RangeError/);
  });

  it('exits 2 for a recursive --set, with --json a parseable report', async () => {
    const r = await validate([file, '--set', 'spec.shardParams.x=&a [*a]', '--json']);
    expect(r.exitCode, r.all).toBe(2);
    const report = JSON.parse(r.stdout) as { valid: boolean; issues: SpecIssue[] };
    expect(report.valid).toBe(false);
    expect(report.issues).toEqual([
      {
        path: 'spec.shardParams.x[0]',
        message: expect.stringMatching(RECURSIVE) as unknown as string,
      },
    ]);
  });

  it('exits 2 for a recursive --set without --json (never "valid")', async () => {
    const r = await validate([file, '--set', 'spec.shardParams.x=&a {b: *a}']);
    expect(r.exitCode, r.all).toBe(2);
    expect(r.all).toMatch(/spec\.shardParams\.x\.b: --set .*recursive alias/);
    expect(r.all).not.toMatch(/^valid/m);
  });
});
