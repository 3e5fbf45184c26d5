/**
 * The `stoker` command line. Every command has --help; commands that report have
 * --json (schemas in orchestrator/views.ts and the README).
 *
 * Exit codes: 0 success; 1 a run failed or an operational error (Redis unreachable...);
 * 2 invalid input (a spec, a flag); 130 interrupted.
 */
import { existsSync, createReadStream, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import { Queue } from 'bullmq';
import { SpecError, UsageError } from '../../common/errors.js';
import { poolQueueName, QUEUES } from '../../common/keys.js';
import { isTerminal, type RunRecord } from '../../common/model.js';
import { readTaskLogTail } from '../../common/progress.js';
import { bullConnection, redactUrl } from '../../common/redis.js';
import { loadSpecFile } from '../../common/spec/load.js';
import { kubernetesSpecRules } from '../backends/kubernetes/spec-rules.js';
import type { NormalizedSpec } from '../../common/spec/schema.js';
import { packageRoot } from '../../common/paths.js';
import { controllerAlive } from '../leader.js';
import { startSystem, DEFAULT_CONCURRENCY, type System } from '../system.js';
import { buildRunView, type RunView } from '../views.js';
import {
  connectClient,
  ensureRedis,
  findRedisUrl,
  makeContext,
  type Context,
  type GlobalOptions,
} from './context.js';
import { age, describeRun, formatDuration } from './format.js';
import { table } from '../../common/table.js';
import { chooseBackend } from './backend-choice.js';
import { exitOnError } from '../../common/cli-exit.js';
import { buildPoolView, scalePool } from '../pools.js';
import { watchRun } from './watch.js';
import { registerDataCommands } from '../../fire/cli/data.js';
import { registerMetricsCommands } from '../../fire/cli/metrics.js';
import { registerReportCommands } from '../../fire/cli/report.js';

const collect = (value: string, previous: string[] = []) => [...previous, value];

function globals(cmd: Command): GlobalOptions {
  return cmd.optsWithGlobals() as GlobalOptions;
}

function print(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/**
 * A spec file, validated for every backend it may run on: a spec is portable, so the
 * kubernetes backend's rules (spec-rules.ts) apply whatever backend runs it now.
 */
async function loadSpec(file: string, sets: string[] | undefined): Promise<NormalizedSpec> {
  return loadSpecFile(file, { sets: sets ?? [], rules: [kubernetesSpecRules] });
}

function describeSpec(spec: NormalizedSpec): string {
  const lines = [
    `valid: ${spec.kind} "${spec.name}" with ${spec.stages.length} stage${spec.stages.length === 1 ? '' : 's'}`,
  ];
  for (const s of spec.stages) {
    const res = s.resources.gpus > 0 ? `${s.resources.nodes}x${s.resources.gpus} GPU` : 'CPU';
    lines.push(
      `  ${s.name} [${s.kind}, ${res}]${s.dependsOn.length ? ` after ${s.dependsOn.join(', ')}` : ''}: ${s.payload.command.join(' ')}`,
    );
  }
  return lines.join('\n');
}

/** Start (or adopt) Redis and a whole system in this process; stop both on the way out. */
async function withSystem<T>(
  ctx: Context,
  opts: { concurrency?: number; backend?: string; simulate?: boolean },
  fn: (sys: System) => Promise<T>,
): Promise<T> {
  const redis = await ensureRedis(ctx);
  let sys: System | undefined;
  const choice = await chooseBackend({
    backend: opts.backend ?? 'local',
    simulate: opts.simulate ?? false,
    env: ctx.env,
    prefix: ctx.prefix,
    log: ctx.log,
    home: ctx.home,
  });
  try {
    sys = await startSystem({
      ...(choice ? { backend: choice.factory } : {}),
      redisUrl: redis.url,
      prefix: ctx.prefix,
      log: ctx.log,
      home: ctx.home,
      ...ctx.timings,
      leaderWaitMs: 0,
      concurrency: opts.concurrency
        ? { train: opts.concurrency, steps: Math.max(opts.concurrency, DEFAULT_CONCURRENCY.steps) }
        : DEFAULT_CONCURRENCY,
    });
    return await fn(sys);
  } finally {
    await sys?.stop('preempt');
    await choice?.stop();
    // An embedded server that `stoker up` owns is left alone; one we started is stopped.
    if (redis.embedded && !redis.embedded.reused) await redis.embedded.stop();
  }
}

/** Two-stage Ctrl-C: the first drains (payloads checkpoint), the second forces. */
function onInterrupt(first: () => void, second: () => void): () => void {
  let count = 0;
  const handler = () => {
    count++;
    if (count === 1) first();
    else second();
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
}

/** `stoker run`'s options, as commander parses them. */
interface RunOptions {
  set?: string[];
  json?: boolean;
  concurrency?: number;
  backend?: string;
  simulate?: boolean;
}

async function runCommand(
  ctx: Context,
  file: string,
  o: RunOptions & {
    /** Called with the final view, after it was printed. */
    onFinished?: (view: RunView) => void;
  },
): Promise<number> {
  const spec = await loadSpec(file, o.set);
  // A stoker already running on this home or REDIS_URL: submit to it and watch.
  if (findRedisUrl(ctx) && (o.backend ?? 'local') === 'local') {
    const client = await connectClient(ctx);
    try {
      const alive = await controllerAlive(client.redis, ctx.keys);
      if (alive) {
        const run = await client.store.createRun(spec, { home: ctx.home });
        if (!o.json)
          process.stderr.write(`submitted ${run.id} to the running controller ${alive}\n`);
        const view = await watchUntilDone(ctx, client.store, client.redis, run.id, o.json ?? false);
        const code = finishRun(view, o.json ?? false);
        o.onFinished?.(view);
        return code;
      }
    } finally {
      await client.close();
    }
  }
  return withSystem(ctx, o, async (sys) => {
    const run = await sys.store.createRun(spec, { home: ctx.home });
    if (!o.json)
      process.stderr.write(
        `run ${run.id}: ${spec.stages.length} stage(s), logs under ${run.runDir}\n`,
      );
    const abort = new AbortController();
    const restore = onInterrupt(
      () => {
        process.stderr.write('\ninterrupted: cancelling the run (Ctrl-C again to force)\n');
        void sys.store.requestCancel(run.id);
      },
      () => {
        abort.abort();
        void sys.stop('force').then(() => process.exit(130));
      },
    );
    try {
      const view = await watchUntilDone(
        ctx,
        sys.store,
        sys.redis,
        run.id,
        o.json ?? false,
        abort.signal,
      );
      const code = finishRun(view, o.json ?? false);
      o.onFinished?.(view);
      return code;
    } finally {
      restore();
    }
  });
}

async function watchUntilDone(
  ctx: Context,
  store: System['store'],
  redis: System['redis'],
  runId: string,
  json: boolean,
  signal?: AbortSignal,
): Promise<RunView> {
  if (json) {
    for (;;) {
      const run = await store.mustGetRun(runId);
      if (isTerminal(run.phase) || signal?.aborted)
        return buildRunView(store, redis, ctx.keys, runId);
      await new Promise((r) => setTimeout(r, 300));
    }
  }
  return watchRun({ store, redis, keys: ctx.keys, runId, ...(signal ? { signal } : {}) });
}

function finishRun(view: RunView, json: boolean): number {
  if (json) printJson(view);
  else print(describeRun(view));
  return view.phase === 'Succeeded' ? 0 : 1;
}

/** The demo's ending: the report's headline (the table and the comparison), and where it is. */
function printDemoReport(view: RunView): void {
  const report = view.stages.find((s) => s.name === 'report')?.outputs['report'];
  if (view.phase !== 'Succeeded' || !report || !existsSync(report)) return;
  const lines = readFileSync(report, 'utf8').split('\n');
  const end = lines.findIndex((l) => l.startsWith('!['));
  print(['', ...lines.slice(0, end === -1 ? lines.length : end), `report: ${report}`].join('\n'));
}

function requireFile(file: string): void {
  if (!existsSync(file)) throw new UsageError(`${file}: no such file`);
}

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('stoker')
    .description(
      'Distributed fine-tuning orchestrator: run FIRE-style training pipelines on BullMQ, Redis and Kubernetes',
    )
    .option(
      '--home <dir>',
      'stoker home: runs, logs and the embedded Redis (env STOKER_HOME)',
      undefined,
    )
    .option('--prefix <prefix>', 'Redis key prefix (env STOKER_PREFIX)', undefined)
    .option(
      '--log-level <level>',
      'log level of stoker itself: debug, info, warn, error (env STOKER_LOG_LEVEL)',
    )
    .showHelpAfterError()
    .configureHelp({ sortSubcommands: false });

  program
    .command('validate')
    .description(
      'check a run spec; every problem is listed with its YAML path and line (exit 2 if invalid)',
    )
    .argument('<file>', 'spec file (YAML)')
    .option(
      '--set <path=value>',
      'override a value, e.g. spec.params.steps=100 (repeatable)',
      collect,
    )
    .option('--json', 'print the normalised spec, or {valid:false, issues:[...]} ')
    .action(async (file: string, o: { set?: string[]; json?: boolean }) => {
      try {
        const spec = await loadSpec(file, o.set);
        if (o.json) printJson({ valid: true, spec });
        else print(describeSpec(spec));
      } catch (err) {
        if (o.json && err instanceof SpecError) {
          printJson({ valid: false, issues: err.issues });
          process.exitCode = 2;
          return;
        }
        throw err;
      }
    });

  program
    .command('run')
    .description(
      'run a spec to completion in this process (embedded Redis, controller and local workers), with live progress; exit 0 if it succeeded',
    )
    .argument('<file>', 'spec file (YAML)')
    .option('--set <path=value>', 'override a value (repeatable)', collect)
    .option('--json', 'print the final run status as JSON (schema: README, "JSON output")')
    .addOption(
      new Option('--concurrency <n>', 'dispatched tasks at once').argParser((v) =>
        Number.parseInt(v, 10),
      ),
    )
    .addOption(
      new Option('--backend <name>', 'where tasks run')
        .choices(['local', 'kubernetes'])
        .default('local'),
    )
    .option(
      '--simulate',
      'with --backend kubernetes: a fake API server and simulated kubelet in this process (a testing aid)',
    )
    .action(async (file: string, o: RunOptions, cmd: Command) => {
      requireFile(file);
      process.exitCode = await runCommand(makeContext(globals(cmd)), file, o);
    });

  const serveAction =
    (defaultBackend: string) =>
    async (o: { concurrency?: number; backend?: string; simulate?: boolean }, cmd: Command) => {
      const ctx = makeContext({ logLevel: 'info', ...globals(cmd) });
      const redis = await ensureRedis(ctx);
      const choice = await chooseBackend({
        backend: o.backend ?? ctx.env.STOKER_BACKEND ?? defaultBackend,
        simulate: o.simulate ?? false,
        env: ctx.env,
        prefix: ctx.prefix,
        log: ctx.log,
        home: ctx.home,
      });
      const sys = await startSystem({
        ...(choice ? { backend: choice.factory } : {}),
        redisUrl: redis.url,
        prefix: ctx.prefix,
        log: ctx.log,
        home: ctx.home,
        ...ctx.timings,
        concurrency: o.concurrency
          ? { train: o.concurrency, steps: DEFAULT_CONCURRENCY.steps }
          : DEFAULT_CONCURRENCY,
      });
      ctx.log.info(
        { redis: redactUrl(redis.url), home: ctx.home, instance: sys.leadership.instanceId },
        'stoker is up',
      );
      process.stderr.write(
        `stoker is up (Redis ${redis.embedded ? `embedded on port ${redis.embedded.port}` : redactUrl(redis.url)}, home ${ctx.home}, backend ${choice?.describe ?? 'local'}). Ctrl-C to stop.\n`,
      );
      await new Promise<void>((resolve) => {
        onInterrupt(
          () => {
            process.stderr.write(
              choice
                ? 'stopping: Kubernetes Jobs keep running; the next controller re-attaches (Ctrl-C again to force)\n'
                : 'draining: running payloads checkpoint and are requeued (Ctrl-C again to force)\n',
            );
            void sys.stop('preempt').then(resolve);
          },
          () => {
            process.stderr.write('forcing stop\n');
            void sys.stop('force').then(resolve);
          },
        );
        void sys.leadership.lost.then(resolve);
      });
      await choice?.stop();
      // `stoker up` owns the embedded Redis, also one it adopted after a crash.
      if (redis.embedded) await redis.embedded.stop();
    };
  const serveOptions = (c: Command) =>
    c
      .addOption(
        new Option('--concurrency <n>', 'dispatched tasks at once (the GPU budget)').argParser(
          (v) => Number.parseInt(v, 10),
        ),
      )
      .addOption(
        new Option('--backend <name>', 'where tasks run (env STOKER_BACKEND)').choices([
          'local',
          'kubernetes',
        ]),
      )
      .option(
        '--simulate',
        'with --backend kubernetes: a fake API server and simulated kubelet in this process (a testing aid)',
      );

  serveOptions(
    program
      .command('up')
      .description(
        'start stoker in the foreground: embedded Redis (unless REDIS_URL), controller, local backend. Ctrl-C drains, twice forces',
      ),
  ).action(serveAction('local'));

  serveOptions(
    program
      .command('serve')
      .description(
        'the controller as it runs in a cluster: like `up`, with the kubernetes backend by default (in-cluster config or kubeconfig; STOKER_K8S_* settings). One replica leads (Redis lock); another takes over when it dies',
      ),
  ).action(serveAction('kubernetes'));

  program
    .command('submit')
    .description('submit a spec to a running stoker (stoker up); warns if no controller is alive')
    .argument('<file>', 'spec file (YAML)')
    .option('--set <path=value>', 'override a value (repeatable)', collect)
    .option('--wait', 'watch until the run finishes; exit 0 if it succeeded')
    .option('--json', 'print {id} at submit, or the final status with --wait')
    .action(
      async (file: string, o: { set?: string[]; wait?: boolean; json?: boolean }, cmd: Command) => {
        requireFile(file);
        const ctx = makeContext(globals(cmd));
        const spec = await loadSpec(file, o.set);
        const client = await connectClient(ctx);
        try {
          if (!(await controllerAlive(client.redis, ctx.keys))) {
            process.stderr.write(
              'warning: no stoker controller is alive on this Redis; the run waits until one starts (stoker up)\n',
            );
          }
          const run = await client.store.createRun(spec, { home: ctx.home });
          if (!o.wait) {
            if (o.json) printJson({ id: run.id });
            else print(run.id);
            return;
          }
          const view = await watchUntilDone(
            ctx,
            client.store,
            client.redis,
            run.id,
            o.json ?? false,
          );
          process.exitCode = finishRun(view, o.json ?? false);
        } finally {
          await client.close();
        }
      },
    );

  program
    .command('status')
    .description('list runs, or show one run: stages, tasks, progress, failures')
    .argument('[run]', 'run id, id prefix, or name (the newest run of that name)')
    .option('--json', 'JSON output (schema: README, "JSON output")')
    .option('--limit <n>', 'runs to list', (v) => Number.parseInt(v, 10), 20)
    .action(
      async (query: string | undefined, o: { json?: boolean; limit: number }, cmd: Command) => {
        const ctx = makeContext(globals(cmd));
        const client = await connectClient(ctx);
        try {
          if (query) {
            const view = await buildRunView(
              client.store,
              client.redis,
              ctx.keys,
              await client.store.resolveRunId(query),
            );
            if (o.json) printJson(view);
            else print(describeRun(view));
            return;
          }
          const runs = await client.store.listRuns(o.limit);
          if (o.json) {
            printJson({ runs: runs.map(summary) });
            return;
          }
          if (runs.length === 0) return print('no runs yet: stoker submit FILE');
          const rows = [['RUN', 'PHASE', 'STAGES', 'AGE', 'MESSAGE']];
          for (const r of runs) {
            const stages = await client.store.getStages(r.id);
            const done = Object.values(stages).filter((s) => s.phase === 'Succeeded').length;
            rows.push([
              r.id,
              r.phase,
              `${done}/${Object.keys(stages).length}`,
              age(r.createdAt),
              r.message ?? '',
            ]);
          }
          print(table(rows));
        } finally {
          await client.close();
        }
      },
    );

  program
    .command('watch')
    .description(
      'live progress bars of a run: step/total, loss, throughput, ETA; exits when it finishes (0 if it succeeded)',
    )
    .argument('<run>', 'run id, id prefix, or name')
    .action(async (query: string, _o: unknown, cmd: Command) => {
      const ctx = makeContext(globals(cmd));
      const client = await connectClient(ctx);
      try {
        const runId = await client.store.resolveRunId(query);
        const view = await watchRun({
          store: client.store,
          redis: client.redis,
          keys: ctx.keys,
          runId,
        });
        process.exitCode = finishRun(view, false);
      } finally {
        await client.close();
      }
    });

  program
    .command('logs')
    .description(
      "print a run's task logs (the full log file, or the last lines kept in Redis); -f follows",
    )
    .argument('<run>', 'run id, id prefix, or name')
    .option('--task <task>', 'task id or stage name (default: every task)')
    .option('--attempt <n>', 'attempt number (default: the latest)', (v) => Number.parseInt(v, 10))
    .option('-f, --follow', 'keep printing new lines until the task finishes')
    .action(
      async (
        query: string,
        o: { task?: string; attempt?: number; follow?: boolean },
        cmd: Command,
      ) => {
        const ctx = makeContext(globals(cmd));
        const client = await connectClient(ctx);
        try {
          const view = await buildRunView(
            client.store,
            client.redis,
            ctx.keys,
            await client.store.resolveRunId(query),
          );
          const tasks = view.stages.flatMap((s) => s.tasks.map((t) => ({ stage: s.name, t })));
          const chosen = o.task
            ? tasks.filter(({ stage, t }) => t.id === o.task || stage === o.task)
            : tasks;
          if (o.task && chosen.length === 0)
            throw new UsageError(
              `run ${view.id} has no task or stage "${o.task}" (tasks: ${tasks.map((x) => x.t.id).join(', ') || 'none yet'})`,
            );
          for (const { stage, t } of chosen) {
            const attempt = o.attempt ?? t.attempt;
            const file = join(
              view.runDir,
              'logs',
              `${t.id.replace(/[^A-Za-z0-9._-]/g, '_')}.attempt-${attempt}.log`,
            );
            if (chosen.length > 1) print(`==> ${stage} (${t.id}, attempt ${attempt}) <==`);
            if (existsSync(file)) {
              await printFile(
                file,
                o.follow
                  ? async () => {
                      const s = (await client.store.getTaskStatuses([t.id]))[t.id];
                      return !s || isTerminal(s.phase) || s.attempt !== attempt;
                    }
                  : null,
              );
            } else {
              const tail = await readTaskLogTail(client.redis, ctx.keys, t.id);
              print(tail.length ? tail.join('\n') : '(no log lines yet)');
            }
          }
        } finally {
          await client.close();
        }
      },
    );

  program
    .command('cancel')
    .description(
      'cancel a run: queued tasks are removed, running payloads get SIGTERM; nothing is retried',
    )
    .argument('<run>', 'run id, id prefix, or name')
    .option('--wait', 'wait until the run has stopped')
    .action(async (query: string, o: { wait?: boolean }, cmd: Command) => {
      const ctx = makeContext(globals(cmd));
      const client = await connectClient(ctx);
      try {
        const runId = await client.store.resolveRunId(query);
        const run = await client.store.mustGetRun(runId);
        if (isTerminal(run.phase)) {
          print(`run ${runId} already ${run.phase}`);
          return;
        }
        await client.store.requestCancel(runId);
        print(`cancel requested for ${runId}`);
        if (o.wait) {
          for (;;) {
            const r = await client.store.mustGetRun(runId);
            if (isTerminal(r.phase)) {
              print(`run ${runId}: ${r.phase}`);
              break;
            }
            await new Promise((res) => setTimeout(res, 300));
          }
        }
      } finally {
        await client.close();
      }
    });

  program
    .command('queues')
    .description(
      'job counts per queue (waiting, prioritized, delayed, active, completed, failed, paused) and connected workers',
    )
    .option(
      '--json',
      'JSON output: {queues: [{name, waiting, prioritized, delayed, active, completed, failed, paused, workers}]}',
    )
    .action(async (o: { json?: boolean }, cmd: Command) => {
      const ctx = makeContext(globals(cmd));
      const client = await connectClient(ctx);
      try {
        const out = [];
        const poolQueues = (await client.redis.smembers(ctx.keys.pools()))
          .sort()
          .map(poolQueueName);
        for (const name of [...Object.values(QUEUES), ...poolQueues]) {
          const q = new Queue(name, {
            connection: bullConnection(client.url),
            prefix: ctx.keys.bullPrefix,
          });
          try {
            const counts = await q.getJobCounts(
              'waiting',
              'prioritized',
              'delayed',
              'active',
              'completed',
              'failed',
            );
            // BullMQ 5+ keeps a paused queue's jobs in `waiting` and flags the queue.
            const paused = await q.isPaused();
            const workers = await q.getWorkersCount();
            out.push({
              name,
              waiting: counts.waiting ?? 0,
              prioritized: counts.prioritized ?? 0,
              delayed: counts.delayed ?? 0,
              active: counts.active ?? 0,
              completed: counts.completed ?? 0,
              failed: counts.failed ?? 0,
              paused,
              workers,
            });
          } finally {
            await q.close();
          }
        }
        if (o.json) printJson({ queues: out });
        else {
          const cols = [
            'waiting',
            'prioritized',
            'delayed',
            'active',
            'completed',
            'failed',
            'paused',
            'workers',
          ] as const;
          print(
            table([
              ['QUEUE', ...cols.map((c) => c.toUpperCase())],
              ...out.map((q) => [q.name, ...cols.map((c) => String(q[c]))]),
            ]),
          );
        }
      } finally {
        await client.close();
      }
    });

  program
    .command('demo')
    .description(
      'run the miniature FIRE pipeline (training-configs/fire-mini/pipeline.yaml: synthetic data, tiny models on CPU) end to end on this machine and print its report',
    )
    .option(
      '--json',
      'print the final run status as JSON (the report is in the report stage outputs)',
    )
    .option(
      '--set <path=value>',
      'override a spec value, e.g. spec.params.seeds=800 (repeatable)',
      collect,
    )
    .action(async (o: { json?: boolean; set?: string[] }, cmd: Command) => {
      const file = join(packageRoot(), 'training-configs', 'fire-mini', 'pipeline.yaml');
      process.exitCode = await runCommand(makeContext(globals(cmd)), file, {
        json: o.json ?? false,
        set: o.set,
        onFinished: (view) => {
          if (!o.json) printDemoReport(view);
        },
      });
    });

  program
    .command('worker')
    .description(
      'run one task attempt (--task --unit --attempt), or serve a pool (--pool [--worker-id]); started by a backend, not for direct use',
    )
    .allowUnknownOption()
    .helpOption(false)
    .argument('[args...]')
    .action(() => {
      // bin/stoker.js starts worker/entry.js for `stoker worker` before this CLI loads (a
      // worker pod has no orchestrator/); this entry is here for `stoker --help`.
      throw new UsageError('`stoker worker` runs through the stoker command (bin/stoker.js)');
    });

  program
    .command('render')
    .description(
      'print, as YAML, every Kubernetes object a run would create (a dry run: nothing is created)',
    )
    .argument('<file>', 'spec file (YAML)')
    .option('--set <path=value>', 'override a value (repeatable)', collect)
    .addOption(
      new Option('--backend <name>', 'backend to render for')
        .choices(['kubernetes'])
        .default('kubernetes'),
    )
    .option('--run-id <id>', 'the run id to use in names (default: a new one)')
    .action(async (file: string, o: { set?: string[]; runId?: string }, cmd: Command) => {
      requireFile(file);
      const ctx = makeContext(globals(cmd));
      const spec = await loadSpec(file, o.set);
      const [{ buildAll }, { settingsFromEnv }, { makeRunId }, { stringify }] = await Promise.all([
        import('../backends/kubernetes/objects.js'),
        import('../backends/kubernetes/settings.js'),
        import('../store.js'),
        import('yaml'),
      ]);
      const objects = buildAll(spec, o.runId ?? makeRunId(spec.name), settingsFromEnv(ctx.env));
      process.stdout.write(
        objects.map((obj) => stringify(JSON.parse(JSON.stringify(obj)) as unknown)).join('---\n'),
      );
    });

  program
    .command('scale')
    .description(
      "set a pool's desired workers, within its bounds; scaling down lets busy workers finish their shard",
    )
    .argument('<pool>', 'pool name')
    .requiredOption('--replicas <n>', 'desired workers', (v) => Number(v))
    .action(async (pool: string, o: { replicas: number }, cmd: Command) => {
      const ctx = makeContext(globals(cmd));
      const client = await connectClient(ctx);
      try {
        const rec = await scalePool(client.redis, ctx.keys, pool, o.replicas);
        print(
          `pool ${pool}: desired ${rec.desired} (bounds ${rec.minReplicas}-${rec.maxReplicas})`,
        );
      } finally {
        await client.close();
      }
    });

  program
    .command('pools')
    .description(
      'per pool: desired/running/busy/idle workers, backlog, shards per second over the last minute, ETA',
    )
    .option('--json', 'JSON output: {pools: [PoolView]} (schema: README, "JSON output")')
    .action(async (o: { json?: boolean }, cmd: Command) => {
      const ctx = makeContext(globals(cmd));
      const client = await connectClient(ctx);
      const queues = new Map<string, Queue>();
      try {
        const counts = async (name: string) => {
          let q = queues.get(name);
          if (!q) {
            q = new Queue(name, {
              connection: bullConnection(client.url),
              prefix: ctx.keys.bullPrefix,
            });
            queues.set(name, q);
          }
          const c = await q.getJobCounts('waiting', 'prioritized', 'delayed', 'active');
          return {
            waiting: c.waiting ?? 0,
            prioritized: c.prioritized ?? 0,
            delayed: c.delayed ?? 0,
            active: c.active ?? 0,
          };
        };
        const names = (await client.redis.smembers(ctx.keys.pools())).sort();
        const views = [];
        for (const name of names) {
          const v = await buildPoolView(client.redis, ctx.keys, name, counts);
          if (v) views.push(v);
        }
        if (o.json) {
          printJson({ pools: views });
          return;
        }
        if (views.length === 0)
          return print('no pools yet: a pool exists once a stage that uses it has started');
        print(
          table([
            ['POOL', 'DESIRED', 'RUNNING', 'BUSY', 'IDLE', 'BACKLOG', 'SHARDS/S', 'ETA', 'BOUNDS'],
            ...views.map((v) => [
              v.name,
              String(v.desired),
              String(v.running),
              String(v.busy),
              String(v.idle),
              String(v.backlog),
              v.shardsPerSecond.toFixed(2),
              formatDuration(v.etaSeconds),
              `${v.minReplicas}-${v.maxReplicas}`,
            ]),
          ]),
        );
      } finally {
        await Promise.all([...queues.values()].map((q) => q.close()));
        await client.close();
      }
    });

  registerDataCommands(program);
  registerMetricsCommands(program);
  registerReportCommands(program);
  return program;
}

function summary(r: RunRecord) {
  return {
    id: r.id,
    name: r.name,
    kind: r.kind,
    phase: r.phase,
    message: r.message,
    createdAt: r.createdAt,
    startedAt: r.startedAt,
    finishedAt: r.finishedAt,
  };
}

async function printFile(file: string, done: (() => Promise<boolean>) | null): Promise<void> {
  let offset = 0;
  for (;;) {
    const size = statSync(file).size;
    if (size > offset) {
      await new Promise<void>((resolve, reject) => {
        const s = createReadStream(file, { start: offset, end: size - 1 });
        s.on('data', (chunk) => process.stdout.write(chunk));
        s.on('end', () => resolve());
        s.on('error', reject);
      });
      offset = size;
    }
    if (!done || (await done())) {
      if (done && statSync(file).size > offset) continue;
      return;
    }
    await new Promise((r) => setTimeout(r, 300));
  }
}

export async function main(argv: string[] = process.argv): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    exitOnError(err);
  }
}

await main();
