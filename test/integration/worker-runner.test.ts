/**
 * The worker side of dispatched execution against the suite's real redis-server and
 * real child processes (test/fixtures/payloads/*.mjs). Every test has its own key
 * prefix and temp dir, both removed after it. No assertion on wall time: waits poll.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { PayloadEvent } from '../../common/events.js';
import { classifyExit, ExitCode } from '../../common/exit-codes.js';
import { makeKeys, type Keys } from '../../common/keys.js';
import { silentLogger } from '../../common/logger.js';
import type { ResolvedPayload } from '../../common/model.js';
import {
  readRecentTaskEvents,
  readTaskEvents,
  readTaskLogTail,
  readTaskProgress,
} from '../../common/progress.js';
import { TaskReporter } from '../../worker/reporter.js';
import { runPayload, type PayloadSink, type RunPayloadOptions } from '../../worker/runner.js';
import { attemptLogFile } from '../../common/paths.js';
import { runTaskWorker } from '../../worker/task-worker.js';
import { eventually, testRedisUrl, uniquePrefix } from '../util/redis-server.js';

const fixture = (name: string): string =>
  fileURLToPath(new URL(`../fixtures/payloads/${name}.mjs`, import.meta.url));

/** Alive and not a zombie (PID 1 of a container may never reap orphans). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Passes everything to the reporter and keeps the lines, so a test can wait on them. */
class TeeSink implements PayloadSink {
  readonly lines: string[] = [];
  constructor(private readonly inner: PayloadSink) {}
  event(event: PayloadEvent): void {
    this.inner.event(event);
  }
  log(line: string, stream: 'stdout' | 'stderr'): void {
    this.lines.push(line);
    this.inner.log(line, stream);
  }
  warn(message: string): void {
    this.inner.warn(message);
  }
  grandchildPid(): number | undefined {
    const line = this.lines.find((l) => l.startsWith('grandchild='));
    return line ? Number(line.slice('grandchild='.length)) : undefined;
  }
}

let redis: Redis;
let keys: Keys;
let dir: string;
const taskId = 'run1.train';

beforeAll(async () => {
  redis = new Redis(await testRedisUrl(), { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
});
afterAll(async () => {
  await redis.quit();
});
beforeEach(() => {
  keys = makeKeys(uniquePrefix('worker'));
  dir = mkdtempSync(join(tmpdir(), 'stoker-worker-test-'));
});
afterEach(async () => {
  const found = await redis.keys(`${keys.prefix}*`);
  if (found.length > 0) await redis.del(...found);
  rmSync(dir, { recursive: true, force: true });
});

async function runFixture(
  name: string,
  opts: Partial<RunPayloadOptions> & { args?: string[]; onSink?: (sink: TeeSink) => void } = {},
) {
  const reporter = TaskReporter.forRedis(redis, keys, taskId);
  await reporter.beginAttempt(1);
  const sink = new TeeSink(reporter);
  opts.onSink?.(sink);
  const logFile = join(dir, 'logs', `${taskId}.attempt-1.log`);
  const outcome = await runPayload({
    argv: [process.execPath, fixture(name), ...(opts.args ?? [])],
    cwd: dir,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      STOKER_OUTPUT_DIR: join(dir, 'out'),
      ...opts.env,
    },
    logFile,
    sink,
    terminationGraceMs: 2000,
    ...opts,
  });
  await reporter.close();
  return { outcome, sink, reporter, logFile, log: readFileSync(logFile, 'utf8') };
}

describe('runPayload + TaskReporter', () => {
  it('records progress, metrics, checkpoint, artifact and result of a well-behaved payload', async () => {
    const { outcome, log } = await runFixture('ok-progress');
    expect(outcome).toMatchObject({
      exitCode: 0,
      signal: null,
      terminated: null,
      malformedLines: 0,
      lastStep: 5,
    });
    expect(outcome.classification).toMatchObject({ reason: 'SUCCESS' });

    const progress = await readTaskProgress(redis, keys, taskId);
    expect(progress).toMatchObject({
      step: 5,
      totalSteps: 5,
      epoch: 1,
      metrics: { loss: 0.2, lr: 0.001 },
      checkpoint: { path: join(dir, 'out', 'checkpoint-5.json'), step: 5 },
      artifacts: { model: join(dir, 'out') },
      result: { accuracy: 0.9, steps: 5 },
      attempt: 1,
    });
    expect(progress.heartbeatAt).not.toBeNull();

    const types = (await readTaskEvents(redis, keys, taskId)).map((e) => e.type);
    expect(types[0]).toBe('attempt');
    expect(types.filter((t) => t !== 'progress').slice(1)).toEqual([
      'checkpoint',
      'artifact',
      'result',
    ]);
    expect(types.indexOf('progress')).toBeLessThan(types.indexOf('checkpoint'));

    expect(log).toContain('loading model');
    expect(log).toContain('::stoker:: {"type":"progress","step":5');
    expect(log).toContain('done training');
    const tail = await readTaskLogTail(redis, keys, taskId);
    expect(tail).toContain('loading model');
    expect(tail).toContain('done training');
    expect(tail.some((l) => l.includes('::stoker::'))).toBe(false);
  });

  it('reports a crash as retryable FAILURE with the last 20 stderr lines', async () => {
    const { outcome, log } = await runFixture('crash');
    expect(outcome).toMatchObject({ exitCode: 1, signal: null, terminated: null, lastStep: 1 });
    expect(outcome.classification).toMatchObject({ reason: 'FAILURE', retryable: true });
    expect(outcome.stderrTail).toHaveLength(20);
    expect(outcome.stderrTail.at(-1)).toBe('RuntimeError: something broke in the training loop');
    expect(log).toContain('noise line 0');
  });

  it('reports bad data as non-retryable BAD_DATA', async () => {
    const { outcome } = await runFixture('bad-data');
    expect(outcome.exitCode).toBe(65);
    expect(outcome.classification).toMatchObject({ reason: 'BAD_DATA', retryable: false });
    expect(outcome.stderrTail).toEqual(['bad data: train.jsonl line 3 is not JSON']);
  });

  it('warns once about malformed marker lines, counts them, and keeps the good events', async () => {
    const { outcome, log } = await runFixture('garbage');
    expect(outcome).toMatchObject({ exitCode: 0, malformedLines: 4, lastStep: 3 });
    const progress = await readTaskProgress(redis, keys, taskId);
    expect(progress.step).toBe(3);
    expect(progress.warnings).toHaveLength(1);
    expect(progress.warnings[0]).toMatch(/malformed marker line ignored \(not JSON/);
    const warnings = (await readTaskEvents(redis, keys, taskId)).filter(
      (e) => e.type === 'warning',
    );
    expect(warnings).toHaveLength(1);
    expect(log.match(/malformed marker line ignored/g)).toHaveLength(1);
    expect(log).toContain('4 malformed marker lines ignored in all');
    expect(log).toContain('plain log line');
  });

  it('on abort sends SIGTERM, waits the grace period, then SIGKILLs the whole group, grandchild included', async () => {
    const ac = new AbortController();
    let sink: TeeSink | undefined;
    const running = runFixture('ignore-sigterm', {
      signal: ac.signal,
      terminationGraceMs: 1000,
      onSink: (s) => (sink = s),
    });
    await eventually('the payload is ready', () => sink?.lines.includes('ready'));
    const grandchild = sink?.grandchildPid();
    expect(grandchild).toBeGreaterThan(0);
    expect(alive(grandchild as number)).toBe(true);
    ac.abort();
    const { outcome, log } = await running;
    expect(outcome).toMatchObject({ terminated: 'abort', signal: 'SIGKILL', exitCode: null });
    expect(outcome.classification).toMatchObject({ reason: 'SIGNAL_KILL', retryable: true });
    expect(log).toContain('got SIGTERM, ignoring it');
    expect(log).toMatch(/grace period over: SIGKILL to process group/);
    await eventually('the grandchild is gone', () => !alive(grandchild as number));
  });

  it('kills what the payload left in its group when it exits', async () => {
    const { outcome, sink } = await runFixture('leave-grandchild');
    expect(outcome.exitCode).toBe(0);
    const grandchild = sink.grandchildPid();
    expect(grandchild).toBeGreaterThan(0);
    await eventually('the orphaned grandchild is gone', () => !alive(grandchild as number));
  });

  it('terminates a payload whose step has not moved for the stall timeout', async () => {
    const { outcome, log } = await runFixture('hang', {
      stallTimeoutMs: 1000,
      terminationGraceMs: 2000,
    });
    expect(outcome).toMatchObject({ terminated: 'stall', signal: 'SIGTERM', lastStep: 1 });
    expect(outcome.classification.retryable).toBe(true);
    expect(log).toContain('stalled: no step progress for 1000 ms');
  });

  it('takes a flood of 20,000 progress events, records the last, and writes far fewer', async () => {
    const n = 20_000;
    const { outcome, log, reporter } = await runFixture('flood', { args: [String(n)] });
    expect(outcome).toMatchObject({ exitCode: 0, lastStep: n, malformedLines: 0 });
    const progress = await readTaskProgress(redis, keys, taskId);
    expect(progress.step).toBe(n);
    expect(progress.totalSteps).toBe(n);
    expect(progress.metrics.loss).toBe(1 / n);
    const xlen = await redis.xlen(keys.taskEvents(taskId));
    expect(xlen).toBeLessThan(n / 10);
    expect(reporter.stats.progressWrites).toBe(xlen - 1); // all but the attempt event
    const last = await readRecentTaskEvents(redis, keys, taskId, 1);
    expect(last[0]?.data).toMatchObject({ step: n });
    expect(log.match(/"type":"progress"/g)).toHaveLength(n);
  });

  it('reports a command that cannot be started, without throwing', async () => {
    const reporter = TaskReporter.forRedis(redis, keys, taskId);
    const outcome = await runPayload({
      argv: [join(dir, 'no-such-binary')],
      env: {},
      logFile: join(dir, 'logs', 'x.log'),
      sink: reporter,
    });
    await reporter.close();
    expect(outcome.spawnError).toMatch(/cannot start/);
    expect(outcome.classification).toMatchObject({ reason: 'SPAWN_FAILED', retryable: false });
  });
});

describe('runTaskWorker', () => {
  const secret = 'sekrit-value-8c1f2e';
  const parentEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    STOKER_TEST_TOKEN: secret,
    REDIS_URL: 'redis://:redis-password-77@redis:6379',
    AWS_SECRET_ACCESS_KEY: 'aws-secret-99',
  };

  function payload(name: string, over: Partial<ResolvedPayload> = {}): ResolvedPayload {
    return {
      command: [process.execPath, fixture(name)],
      env: {},
      secretEnv: [],
      workingDir: dir,
      outputDir: join(dir, 'out'),
      terminationGracePeriodSeconds: 2,
      stallTimeoutSeconds: 0,
      ...over,
    };
  }

  async function createTask(p: unknown): Promise<void> {
    await redis.hset(keys.task(taskId), {
      payload: typeof p === 'string' ? p : JSON.stringify(p),
      runDir: dir,
      status: JSON.stringify({ runId: 'run1', stage: 'train' }),
    });
  }

  const work = (attempt: number, extra: { signal?: AbortSignal } = {}) =>
    runTaskWorker({
      redis,
      keys,
      taskId,
      unitName: 'u1',
      attempt,
      parentEnv,
      log: silentLogger(),
      ...extra,
    });

  const envOf = (): Record<string, string> =>
    JSON.parse(readFileSync(join(dir, 'out', 'env.json'), 'utf8')) as Record<string, string>;

  it('runs the payload, records the unit, and redacts the secret everywhere', async () => {
    await createTask(
      payload('ok-progress', {
        env: { PRINT_ENV_VAR: 'MY_TOKEN' },
        secretEnv: [{ name: 'MY_TOKEN', fromEnv: 'STOKER_TEST_TOKEN' }],
      }),
    );
    expect(await work(1)).toBe(0);

    const unit = await redis.hgetall(keys.unit('u1'));
    const logFile = attemptLogFile(dir, taskId, 1);
    expect(logFile).toBe(join(dir, 'logs', 'run1.train.attempt-1.log'));
    expect(unit).toMatchObject({
      logFile,
      exitCode: '0',
      signal: '',
      reason: 'SUCCESS',
      terminated: '',
      retryable: 'false',
    });
    expect(Number(unit.payloadPgid)).toBeGreaterThan(0);
    expect(JSON.parse(unit.stderrTail ?? '[]')).toEqual([
      'stderr also has [redacted]',
      'done training',
    ]);
    expect(unit.finishedAt).toMatch(/^\d{4}-/);

    // The payload got its secret, its identity, and nothing of the worker's own secrets.
    const env = envOf();
    expect(env).toMatchObject({
      MY_TOKEN: secret,
      STOKER_TASK_ID: taskId,
      STOKER_RUN_ID: 'run1',
      STOKER_STAGE: 'train',
      STOKER_ATTEMPT: '1',
    });
    expect(env).not.toHaveProperty('REDIS_URL');
    expect(env).not.toHaveProperty('STOKER_TEST_TOKEN');
    expect(JSON.stringify(env)).not.toContain('redis-password-77');
    expect(JSON.stringify(env)).not.toContain('aws-secret-99');

    const log = readFileSync(logFile, 'utf8');
    expect(log).toContain('the token is [redacted] (oops)');
    expect(log).not.toContain(secret);
    const tail = await readTaskLogTail(redis, keys, taskId);
    expect(tail).toContain('the token is [redacted] (oops)');
    expect(tail).toContain('[info] marker with [redacted]');
    expect(JSON.stringify(tail)).not.toContain(secret);
    expect(JSON.stringify(await readTaskEvents(redis, keys, taskId))).not.toContain(secret);
  });

  it('redacts a secret with quotes, backslashes and non-ASCII however a marker escapes it', async () => {
    const tricky = 'tok"en\\é-5f3a9c';
    await createTask(
      payload('ok-progress', {
        env: { PRINT_ENV_VAR: 'MY_TOKEN', ESCAPED: '1' },
        secretEnv: [{ name: 'MY_TOKEN', fromEnv: 'STOKER_TRICKY' }],
      }),
    );
    const code = await runTaskWorker({
      redis,
      keys,
      taskId,
      unitName: 'u1',
      attempt: 1,
      parentEnv: { ...parentEnv, STOKER_TRICKY: tricky },
      log: silentLogger(),
    });
    expect(code).toBe(0);
    const forms = [
      tricky,
      JSON.stringify(tricky).slice(1, -1),
      'tok\\"en\\\\\\u00e9', // Python's json.dumps(ensure_ascii=True)
      'tok', // any \\u-escaped remnant would decode to it: checked on decoded text below
    ];
    const log = readFileSync(attemptLogFile(dir, taskId, 1), 'utf8');
    const recorded = [
      log,
      JSON.stringify(await readTaskLogTail(redis, keys, taskId)),
      JSON.stringify(await readTaskEvents(redis, keys, taskId)),
      JSON.stringify(await readTaskProgress(redis, keys, taskId)),
      JSON.stringify(await redis.hgetall(keys.unit('u1'))),
    ];
    for (const text of recorded) {
      for (const f of forms.slice(0, 3)) expect(text).not.toContain(f);
      // Decode JSON escapes (\\uXXXX, \\", \\\\) and look again.
      const decoded = text.replace(/\\u([0-9a-fA-F]{4})/g, (_m, h: string) =>
        String.fromCharCode(parseInt(h, 16)),
      );
      expect(decoded).not.toContain('5f3a9c');
    }
    expect(log).toContain('result with [redacted]');
    expect(log).toContain('escaped [redacted]');
    const results = (await readTaskEvents(redis, keys, taskId)).filter((e) => e.type === 'result');
    expect(results[0]?.data).toEqual({
      note: 'result with [redacted]',
      nested: [{ deep: '[redacted]' }],
    });
    expect((await readTaskProgress(redis, keys, taskId)).metrics).toHaveProperty('m-[redacted]', 1);
  });

  it('does not retry a payload whose own error says the disk is full (exit ENVIRONMENT, DISK_FULL)', async () => {
    await createTask({
      ...payload('ok-progress'),
      command: [
        process.execPath,
        '-e',
        "console.error('OSError: [Errno 28] No space left on device: /out/ckpt'); process.exit(1)",
      ],
    });
    const code = await work(1);
    expect(code).toBe(ExitCode.ENVIRONMENT);
    const unit = await redis.hgetall(keys.unit('u1'));
    expect(unit).toMatchObject({ reason: 'DISK_FULL', retryable: 'false', exitCode: '78' });
    expect(unit.message).toContain('not retried');
    expect(classifyExit(code).retryable).toBe(false);
  });

  it.each([
    [
      'a CUDA out of memory: CUDA_OOM, the same shape would fail again',
      'torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB',
      ExitCode.CUDA_OOM,
      'CUDA_OOM',
      'the same shape would fail again',
    ],
    [
      'a module not installed: MISSING_DEPENDENCY, naming it',
      "ModuleNotFoundError: No module named 'flash_attn'",
      ExitCode.MISSING_DEPENDENCY,
      'MISSING_MODULE',
      "No module named 'flash_attn'",
    ],
  ])(
    'does not retry a plain exit 1 whose stderr says %s',
    async (_what, line, exitCode, reason, inMessage) => {
      await createTask({
        ...payload('ok-progress'),
        command: [
          process.execPath,
          '-e',
          `console.error('Traceback (most recent call last):'); console.error(${JSON.stringify(line)}); process.exit(1)`,
        ],
      });
      const code = await work(1);
      expect(code).toBe(exitCode);
      const unit = await redis.hgetall(keys.unit('u1'));
      expect(unit).toMatchObject({ reason, retryable: 'false', exitCode: String(exitCode) });
      expect(unit.message).toContain(inMessage);
      expect(classifyExit(code).retryable).toBe(false);
    },
  );

  it('keeps a plain exit 1 retryable when its stderr names no such cause', async () => {
    await createTask({
      ...payload('ok-progress'),
      command: [
        process.execPath,
        '-e',
        "console.error(\"WARNING: No module named 'triton'; kernels disabled\"); console.error('ValueError: bad'); process.exit(1)",
      ],
    });
    expect(await work(1)).toBe(1);
    expect(await redis.hgetall(keys.unit('u1'))).toMatchObject({ retryable: 'true' });
  });

  it('sets RESUME_FROM from the checkpoint the previous attempt recorded', async () => {
    await createTask(payload('ok-progress', { env: { STEPS: '3' } }));
    expect(await work(1)).toBe(0);
    const ckpt = join(dir, 'out', 'checkpoint-3.json');
    expect(envOf()).not.toHaveProperty('RESUME_FROM');
    expect((await readTaskProgress(redis, keys, taskId)).checkpoint).toEqual({
      path: ckpt,
      step: 3,
    });

    await createTask(payload('ok-progress', { env: { STEPS: '6' } }));
    expect(await work(2)).toBe(0);
    expect(envOf().RESUME_FROM).toBe(ckpt);
    expect(envOf().STOKER_ATTEMPT).toBe('2');
    expect(readFileSync(attemptLogFile(dir, taskId, 2), 'utf8')).toContain(
      `resuming from ${ckpt} at step 3`,
    );
    const progress = await readTaskProgress(redis, keys, taskId);
    expect(progress).toMatchObject({
      attempt: 2,
      step: 6,
      checkpoint: { path: join(dir, 'out', 'checkpoint-6.json'), step: 6 },
    });
  });

  it('warns and starts fresh when the recorded checkpoint is gone', async () => {
    await redis.hset(keys.taskProgress(taskId), {
      checkpoint: JSON.stringify({ path: join(dir, 'gone'), step: 9 }),
    });
    await createTask(payload('ok-progress'));
    expect(await work(2)).toBe(0);
    expect(envOf()).not.toHaveProperty('RESUME_FROM');
    const progress = await readTaskProgress(redis, keys, taskId);
    expect(progress.warnings.some((w) => w.includes('no longer exists'))).toBe(true);
  });

  it('exits BAD_CONFIG, not retryable, for a payload that fails validation', async () => {
    await createTask({ command: [], env: {} });
    expect(await work(1)).toBe(64);
    const unit = await redis.hgetall(keys.unit('u1'));
    expect(unit).toMatchObject({ exitCode: '64', reason: 'BAD_CONFIG', retryable: 'false' });
    expect(unit.message).toMatch(/invalid payload: command/);
    expect(unit.payloadPgid).toBeUndefined();
  });

  it('exits BAD_CONFIG naming a missing secret, before starting anything', async () => {
    await createTask(
      payload('ok-progress', {
        secretEnv: [{ name: 'WANDB_API_KEY', fromEnv: 'NOT_SET_ANYWHERE' }],
      }),
    );
    expect(await work(1)).toBe(64);
    const unit = await redis.hgetall(keys.unit('u1'));
    expect(unit).toMatchObject({ reason: 'MissingSecret', retryable: 'false' });
    expect(unit.message).toContain('WANDB_API_KEY (from NOT_SET_ANYWHERE)');
    expect(existsSync(join(dir, 'out', 'env.json'))).toBe(false);
  });

  it('turns an abort into SIGTERM of the payload and exits 143', async () => {
    await createTask(payload('hang'));
    const ac = new AbortController();
    const running = work(1, { signal: ac.signal });
    await eventually(
      'the payload is running',
      async () => (await redis.hget(keys.unit('u1'), 'payloadPgid')) !== null,
    );
    await eventually(
      'step 1 recorded',
      async () => (await readTaskProgress(redis, keys, taskId)).step === 1,
    );
    ac.abort();
    expect(await running).toBe(143);
    const unit = await redis.hgetall(keys.unit('u1'));
    expect(unit).toMatchObject({
      exitCode: '143',
      signal: 'SIGTERM',
      terminated: 'abort',
      reason: 'SIGNAL_TERM',
      retryable: 'true',
    });
  });

  it.each([
    ['node 0, which reports progress, is terminated as stalled', '0', 143],
    ['node 1 of a gang, whose payload reports nothing (rank 0 does), runs to its end', '1', 0],
  ])('a payload silent for 6x the stall timeout: %s', async (_what, nodeRank, exitCode) => {
    // The payload's own silence, then exit 0: a rank >= 1 prints no progress by design.
    await createTask({
      ...payload('ok-progress', { stallTimeoutSeconds: 0.3 }),
      command: [process.execPath, '-e', "console.log('quiet rank'); setTimeout(() => {}, 1800)"],
    });
    const code = await runTaskWorker({
      redis,
      keys,
      taskId,
      unitName: 'u1',
      attempt: 1,
      parentEnv: { ...parentEnv, NODE_RANK: nodeRank },
      log: silentLogger(),
    });
    expect(code).toBe(exitCode);
    const log = readFileSync(attemptLogFile(dir, taskId, 1, Number(nodeRank)), 'utf8');
    expect(log).toContain('quiet rank');
    if (nodeRank === '0') expect(log).toContain('stalled: no step progress');
    else expect(log).not.toContain('stalled');
  });

  it('records a stalled payload as terminated: stall', async () => {
    await createTask(payload('hang', { stallTimeoutSeconds: 0.3 }));
    expect(await work(1)).toBe(143);
    const unit = await redis.hgetall(keys.unit('u1'));
    expect(unit).toMatchObject({ terminated: 'stall', signal: 'SIGTERM' });
    const progress = await readTaskProgress(redis, keys, taskId);
    expect(progress.warnings.some((w) => w.includes('terminated as hung'))).toBe(true);
  });
});
