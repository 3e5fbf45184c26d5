/**
 * The `stoker` command line: every command's name, arguments, options and help, and the
 * module that runs it (commands/NAME.ts), loaded only when that command runs. So
 * `stoker --help` loads commander and this file, and `stoker status` loads what status
 * uses: never BullMQ or the Kubernetes client unless the command needs them (they cost
 * about 0.3 s and 0.9 s of CPU to import). The FIRE file tools (`data`, `metrics`,
 * `report`) come from fire/cli.
 *
 * Exit codes: 0 success; 1 a run failed or an operational error (Redis unreachable...);
 * 2 invalid input (a spec, a flag); 130 interrupted. Every command has --help; commands
 * that report have --json (schemas in orchestrator/views.ts and the README).
 */
import { Command, Option } from 'commander';
import { UsageError } from '../../common/errors.js';
import { registerDataCommands } from '../../fire/cli/data.js';
import { registerMetricsCommands } from '../../fire/cli/metrics.js';
import { registerReportCommands } from '../../fire/cli/report.js';
import { backendOptions, intOption, setOption } from './options.js';

type Action = (...args: never[]) => Promise<void>;

/** An action that loads its module first: `load` names the module and its export. */
function lazy<M extends Record<K, Action>, K extends string>(
  load: () => Promise<M>,
  name: K,
): (...args: unknown[]) => Promise<void> {
  return async (...args) => {
    const mod = await load();
    await (mod[name] as unknown as (...a: unknown[]) => Promise<void>)(...args);
  };
}

const JSON_RUN = 'print the final run status as JSON (schema: README, "JSON output")';

export function buildProgram(): Command {
  const program = new Command()
    .name('stoker')
    .description(
      'Distributed fine-tuning orchestrator: run FIRE-style training pipelines on BullMQ, Redis and Kubernetes',
    )
    .option('--home <dir>', 'stoker home: runs, logs and the embedded Redis (env STOKER_HOME)')
    .option('--prefix <prefix>', 'Redis key prefix (env STOKER_PREFIX)')
    .option(
      '--log-level <level>',
      'log level of stoker itself: debug, info, warn, error (env STOKER_LOG_LEVEL)',
    )
    .showHelpAfterError()
    .configureHelp({ sortSubcommands: false });

  registerSpecCommands(program);
  registerServiceCommands(program);
  registerClientCommands(program);
  program.commandsGroup('FIRE files:');
  registerDataCommands(program);
  registerMetricsCommands(program);
  registerReportCommands(program);
  return program;
}

const TAKE_OVER_POOLS =
  "a pool the spec declares with other settings (bounds, autoscale, replicas, resources) than the live pool's takes the spec's; without it such a spec is refused";

/** The commands that take a spec file: validate, run, demo, render. */
function registerSpecCommands(program: Command): void {
  program.commandsGroup('Specs:');
  setOption(
    program
      .command('validate')
      .description(
        'check a run spec; every problem is listed with its YAML path and line (exit 2 if invalid)',
      )
      .argument('<file>', 'spec file (YAML)'),
    true,
  )
    .option('--json', 'print the normalised spec, or {valid:false, issues:[...]} ')
    .action(lazy(() => import('./commands/validate.js'), 'action'));

  backendOptions(
    setOption(
      program
        .command('run')
        .description(
          'run a spec to completion in this process (embedded Redis, controller and local workers), with live progress; exit 0 if it succeeded',
        )
        .argument('<file>', 'spec file (YAML)'),
    )
      .option('--json', JSON_RUN)
      .addOption(intOption('--concurrency <n>', 'dispatched tasks at once'))
      .option('--take-over-pools', TAKE_OVER_POOLS),
    { default: 'local' },
  ).action(lazy(() => import('./commands/run.js'), 'action'));

  setOption(
    program
      .command('demo')
      .description(
        'run the miniature FIRE pipeline (training-configs/fire-mini/pipeline.yaml: synthetic data, tiny models on CPU) end to end on this machine and print its report',
      )
      .option(
        '--json',
        'print the final run status as JSON (the report is in the report stage outputs)',
      ),
  ).action(lazy(() => import('./commands/demo.js'), 'action'));

  setOption(
    program
      .command('render')
      .description(
        'print, as YAML, every Kubernetes object a run would create (a dry run: nothing is created)',
      )
      .argument('<file>', 'spec file (YAML)'),
  )
    .addOption(
      new Option('--backend <name>', 'backend to render for')
        .choices(['kubernetes'])
        .default('kubernetes'),
    )
    .option('--run-id <id>', 'the run id to use in names (default: a new one)')
    .action(lazy(() => import('./commands/render.js'), 'action'));
}

/** A stoker in the foreground (up, serve) and the worker the backends start. */
function registerServiceCommands(program: Command): void {
  program.commandsGroup('Running stoker:');
  for (const [name, description, action] of [
    [
      'up',
      'start stoker in the foreground: embedded Redis (unless REDIS_URL), controller, local backend. Ctrl-C drains, twice forces',
      'upAction',
    ],
    [
      'serve',
      'the controller as it runs in a cluster: like `up`, with the kubernetes backend by default (in-cluster config or kubeconfig; STOKER_K8S_* settings). One replica leads (Redis lock); another takes over when it dies',
      'serveAction',
    ],
  ] as const) {
    backendOptions(
      program
        .command(name)
        .description(description)
        .addOption(intOption('--concurrency <n>', 'dispatched tasks at once (the GPU budget)'))
        .addOption(
          intOption(
            '--port <n>',
            'port of the HTTP API and /metrics (default STOKER_HTTP_PORT, else 8080; 0: any free port)',
          ),
        )
        .option(
          '--host <address>',
          'address the HTTP server listens on (default STOKER_HTTP_HOST, else 127.0.0.1)',
        ),
      { env: true },
    ).action(lazy(() => import('./commands/serve.js'), action));
  }

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
}

/** The clients of a running stoker: submit, status, watch, logs, cancel, resume, queues, scale, pools. */
function registerClientCommands(program: Command): void {
  program.commandsGroup('A running stoker (its Redis: REDIS_URL, or the embedded one of --home):');
  setOption(
    program
      .command('submit')
      .description('submit a spec to a running stoker (stoker up); warns if no controller is alive')
      .argument('<file>', 'spec file (YAML)'),
  )
    .option('--wait', 'watch until the run finishes; exit 0 if it succeeded')
    .option('--json', 'print {id} at submit, or the final status with --wait')
    .option('--take-over-pools', TAKE_OVER_POOLS)
    .action(lazy(() => import('./commands/submit.js'), 'action'));

  program
    .command('status')
    .description('list runs, or show one run: stages, tasks, progress, failures')
    .argument('[run]', 'run id, id prefix, or name (the newest run of that name)')
    .option('--json', 'JSON output (schema: README, "JSON output")')
    .option('--limit <n>', 'runs to list', (v) => Number.parseInt(v, 10), 20)
    .option('-w, --watch', 'keep the list on screen, read again every 2 s (Ctrl-C stops)')
    .action(lazy(() => import('./commands/status.js'), 'action'));

  program
    .command('watch')
    .description(
      'live progress bars of one run or several: step/total, loss, throughput, ETA; exits when every run has finished (0 if all succeeded)',
    )
    .argument('<runs...>', 'run ids, id prefixes, or names')
    .action(lazy(() => import('./commands/watch.js'), 'action'));

  program
    .command('logs')
    .description(
      "print a run's task logs (the full log file, or the last lines kept in Redis); -f follows",
    )
    .argument('<run>', 'run id, id prefix, or name')
    .option('--task <task>', 'task id or stage name (default: every task)')
    .addOption(intOption('--attempt <n>', 'attempt number (default: the latest)'))
    .option('-f, --follow', 'keep printing new lines until the task finishes')
    .option('--raw', "also the payload's protocol lines (::stoker:: {...})")
    .addOption(intOption('--node <n>', "a multi-node task's node (default 0: the leader's log)"))
    .action(lazy(() => import('./commands/logs.js'), 'action'));

  registerRunControl(program);

  registerQueueCommands(program);

  program
    .command('scale')
    .description(
      "pin a pool's workers within its bounds (over the autoscaler), for a while or until --auto; scaling down lets busy workers finish their shard",
    )
    .argument('<pool>', 'pool name')
    .option('--replicas <n>', 'workers to pin the pool at', (v) => Number(v))
    .option('--for <duration>', 'end the pin after this long (30s, 30m, 2h; default: until --auto)')
    .option('--auto', 'end the pin: the autoscaler (or a fixed pool its replicas) decides again')
    .option('--json', 'print the PoolView after the change')
    .action(lazy(() => import('./commands/scale.js'), 'action'));

  program
    .command('pools')
    .description(
      'per pool: desired/running/busy/idle workers, backlog, shards per second over the last minute, ETA',
    )
    .option('--json', 'JSON output: {pools: [PoolView]} (schema: README, "JSON output")')
    .action(lazy(() => import('./commands/pools.js'), 'action'));
}

/** Stopping and restarting a run: cancel, resume. */
function registerRunControl(program: Command): void {
  program
    .command('cancel')
    .description(
      'cancel a run: queued tasks are removed, running payloads get SIGTERM; nothing is retried',
    )
    .argument('<run>', 'run id, id prefix, or name')
    .option('--wait', 'wait until the run has stopped')
    .action(lazy(() => import('./commands/cancel.js'), 'action'));

  program
    .command('resume')
    .description(
      'run a run that ended Failed or Cancelled again from where it stopped: succeeded stages are kept, a task resumes from its last checkpoint (RESUME_FROM), a sharded stage runs only the shards that did not succeed; the retry budget starts afresh (exit 1 if the run cannot be resumed)',
    )
    .argument('<run>', 'run id, id prefix, or name')
    .option('--wait', 'follow the resumed run to its end; exit 0 if it succeeded')
    .option(
      '--json',
      'print {id, resumeRequested, from, requestedAt}, or the final status with --wait',
    )
    .action(lazy(() => import('./commands/resume.js'), 'action'));
}

/** `queues` and `queues retry`. */
function registerQueueCommands(program: Command): void {
  const queues = program
    .command('queues')
    .description(
      'job counts per queue (waiting, prioritized, delayed, active, completed, failed, paused) and connected workers',
    )
    .option(
      '--json',
      'JSON output: {queues: [{name, waiting, prioritized, delayed, active, completed, failed, paused, workers}]}',
    )
    .action(lazy(() => import('./commands/queues.js'), 'action'));
  queues
    .command('retry')
    .description(
      "retry a queue's failed jobs as stoker's records allow: a run that ended Failed or Cancelled is resumed (as stoker resume), a failed shard of a stage still running is retried in place, anything else is skipped with the reason",
    )
    .argument('<queue>', 'queue name: train, steps or pool.NAME (stoker queues lists them)')
    .addOption(intOption('--limit <n>', 'failed jobs to look at, newest first (default 1000)'))
    .option('--json', 'JSON output: {queue, failed, retried, resumedRuns, retriedShards, skipped}')
    .action(lazy(() => import('./commands/queues.js'), 'retryAction'));
}
