/**
 * `npm run bench [-- --json] [--quick] [--only NAME[,NAME]]`: stoker's benchmarks
 * (README, "Benchmarks"). Each prints one JSON object on one line on stdout:
 *
 *   {name, unit, ...measured fields, baseline: {...}, ratio, ratioOf, target?, met?,
 *    quick, workerCommand, sourcesNewerThanBuild, build, benchSeconds, loadavg1m, node, cpus}
 *   or {name, error, node, cpus} when the measurement failed (the others still run;
 *   the exit status is then 1).
 *
 * Every baseline is measured in the same invocation on the same Redis: a redis-server the
 * bench starts on a free port (never the machine's 6379), with a key prefix per benchmark.
 * Before anything, `npm run build` compiles dist/ and bundles the entry points, and the local
 * backend starts workers as `node dist/bundle/worker.js worker ...`
 * (`workerCommand`), the slim entry point bin/stoker.js routes `stoker worker` to (the
 * unbundled dist/worker/entry.js if the bundle could not be made from this build).
 * Why not bin/stoker.js, as `stoker up` does: it runs the sources through tsx as soon as
 * any .ts file is newer than the build, and people edit sources while a long bench runs,
 * so some samples would silently measure a tsx start (about 1 s more). bin/stoker.js
 * adds only its freshness scan (stat of the sources) on top of this. Sources edited since
 * the build are rebuilt before each benchmark; `build.rebuiltBefore` and
 * `sourcesNewerThanBuild` (at the end of the benchmark) say when that happened.
 *
 * --json     only the JSON lines on stdout, nothing on stderr but failures
 * --quick    small counts: a smoke check of the whole bench in about a minute
 * --only     run these benchmarks (names below), in this order
 *
 * BENCH_CPU_PROF=DIR  workers run with `node --cpu-prof --cpu-prof-dir=DIR` (one
 *                     .cpuprofile per worker process, written when it exits)
 *
 * Exit: 0 all measured; 1 a benchmark failed or cleanup failed; 2 bad usage.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cliStartup } from './cli-startup.js';
import { dispatchLatency } from './dispatch-latency.js';
import { dispatchThroughput } from './dispatch-throughput.js';
import { k8sReconcile } from './k8s-reconcile.js';
import { fireData } from './fire-data.js';
import { fireLongLine } from './fire-long-line.js';
import { fireMetrics } from './fire-metrics.js';
import { fireSelfplay } from './fire-selfplay.js';
import { fleet } from './fleet/index.js';
import { httpApi } from './http-api.js';
import { httpEvents } from './http-events.js';
import { type Benchmark, type BenchContext, Cleanup, round, distIsFresh } from './lib/harness.js';
import { startBenchRedis } from './lib/redis-server.js';
import { progressIngestion } from './progress-ingestion.js';
import { pulledThroughput } from './pulled-throughput.js';
import { pulled50ms } from './pulled-50ms.js';
import { residentVsReload } from './resident-vs-reload.js';
import { scaleDownUnderLoad } from './scale-down-under-load.js';
import { wrapperOverhead } from './wrapper-overhead.js';

const BENCHMARKS: readonly Benchmark[] = [
  dispatchLatency,
  dispatchThroughput,
  wrapperOverhead,
  progressIngestion,
  pulledThroughput,
  pulled50ms,
  residentVsReload,
  scaleDownUnderLoad,
  k8sReconcile,
  fireData,
  fireMetrics,
  fireLongLine,
  fireSelfplay,
  httpApi,
  httpEvents,
  cliStartup,
  fleet,
];

interface Options {
  json: boolean;
  quick: boolean;
  only: Benchmark[];
}

class UsageError extends Error {}

function parseArgs(argv: readonly string[]): Options {
  const opts: Options = { json: false, quick: false, only: [...BENCHMARKS] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--json') opts.json = true;
    else if (a === '--quick') opts.quick = true;
    else if (a === '--only' || a.startsWith('--only=')) {
      const value = a === '--only' ? argv[++i] : a.slice('--only='.length);
      if (!value) throw new UsageError('--only needs a list of benchmark names');
      const names = value
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
      const unknown = names.filter((n) => !BENCHMARKS.some((b) => b.name === n));
      if (unknown.length > 0) {
        throw new UsageError(
          `unknown benchmark ${unknown.join(', ')} (known: ${BENCHMARKS.map((b) => b.name).join(', ')})`,
        );
      }
      opts.only = names.map((n) => BENCHMARKS.find((b) => b.name === n) as Benchmark);
    } else if (a === '--help' || a === '-h') {
      throw new UsageError('');
    } else throw new UsageError(`unknown option ${a}`);
  }
  return opts;
}

/**
 * `npm run build`: compile dist/ (incremental; type errors elsewhere still emit, so the
 * code is usable) and bundle the entry points (scripts/bundle.mjs).
 */
function build(
  root: string,
): Promise<{ ran: boolean; exitCode: number | null; ms: number; output: string }> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const child = spawn('npm', ['run', '--silent', 'build'], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    const keep = (d: Buffer) => {
      output = (output + d.toString()).slice(-4000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.once('error', (err) =>
      resolve({ ran: false, exitCode: null, ms: Date.now() - t0, output: err.message }),
    );
    child.once('close', (code) =>
      resolve({ ran: true, exitCode: code, ms: Date.now() - t0, output }),
    );
  });
}

function human(line: Record<string, unknown>): string {
  const name = String(line.name);
  if (line.error) return `${name}: FAILED: ${String(line.error)}`;
  const f = (v: unknown) => (typeof v === 'number' ? String(v) : JSON.stringify(v));
  const b = (line.baseline ?? {}) as Record<string, unknown>;
  switch (name) {
    case 'dispatch-latency': {
      const sp = b.bullmqAddToSpawnedPayload as { p50: number; p99: number } | undefined;
      const ip = b.bullmqAddToProcessor as { p50: number; p99: number } | undefined;
      return `${name}: stoker p50 ${f(line.p50)} ms, p99 ${f(line.p99)} ms | raw BullMQ+spawn p50 ${f(sp?.p50)} p99 ${f(sp?.p99)} | raw BullMQ in-process p50 ${f(ip?.p50)} p99 ${f(ip?.p99)} | ratio ${f(line.ratio)}`;
    }
    case 'dispatch-throughput':
      return `${name}: stoker ${f(line.tasksPerSec)} tasks/s vs raw BullMQ ${f(b.tasksPerSec)} tasks/s (${f(line.tasks)} tasks, concurrency ${f(line.concurrency)}) | ratio ${f(line.ratio)}`;
    case 'wrapper-overhead':
      return `${name}: unit ${f(line.unitMs)} ms vs direct ${f(b.directMs)} ms (${f(line.steps)} steps) | ratio ${f(line.ratio)} (target <= ${f(line.target)}: ${line.met ? 'met' : 'NOT met'}) | end to end ${f(line.endToEndMs)} ms`;
    case 'progress-ingestion':
      return `${name}: ${f(line.eventsEmitted)} events, last step recorded: ${f(line.lastStepRecorded)}, XLEN ${f(line.eventsStreamXlen)}, worker CPU ${f(line.workerCpuS)} s over ${f(line.workerWallS)} s wall, payload wall ${f(line.payloadWallS)} s vs direct ${f(b.payloadWallS)} s | ratio ${f(line.ratio)}`;
    case 'pulled-throughput': {
      const st = (line.stoker ?? {}) as Record<string, unknown>;
      const rp = (st.redisPerShard ?? {}) as Record<string, unknown>;
      const bp = (b.redisPerJob ?? {}) as Record<string, unknown>;
      return `${name}: stoker ${f(line.shardsPerSec)} shards/s (${f(st.shardsPerSecFromSubmit)} from submit) vs raw BullMQ ${f(b.jobsPerSec)} jobs/s (${f(line.shards)} shards, ${f(line.workers)} workers) | ratio ${f(line.ratio)} (target >= ${f(line.target)}: ${line.met ? 'met' : 'NOT met'}) | Redis per shard ${f(rp.commandsPerUnit)} commands, ${f(rp.readsPerUnit)} reads vs per raw job ${f(bp.commandsPerUnit)}, ${f(bp.readsPerUnit)}`;
    }
    case 'resident-vs-reload': {
      const st = (line.stoker ?? {}) as Record<string, unknown>;
      return `${name}: pool ${f(st.wallMs)} ms (${f(line.shardsPerSec)} shards/s, ${f(st.serverLoads)} loads) vs a process per shard ${f(b.wallMs)} ms (${f(b.shardsPerSec)} shards/s, ${f(b.serverLoads)} loads) | ratio ${f(line.ratio)}`;
    }
    case 'scale-down-under-load':
      return `${name}: lost ${f(line.shardsLost)}, run twice ${f(line.shardsRunTwice)} of ${f(line.shards)} shards (${line.met ? 'met' : 'NOT met'}) | 4 -> 1 worker in ${f(line.scaleToOneWorkerMs)} ms (victims' last shard ended at ${f(b.victimsLastShardEndMs)} ms) | run ${f(line.runPhase)}`;
    case 'cli-startup': {
      const c = (k: string) => {
        const v = (line[k] ?? {}) as Record<string, unknown>;
        return `${k} ${f(v.medianMs)} ms (${f(v.ratio)}x)`;
      };
      const n = ((b.nodeE0 ?? {}) as Record<string, unknown>).medianMs;
      return `${name}: ${c('help')}, ${c('validate')}, ${c('status')}, ${c('statusRun')} | node -e 0 ${f(n)} ms | targets ${JSON.stringify(line.target)}: ${line.met ? 'met' : 'NOT met'}`;
    }
    case 'fire-metrics': {
      const peak = (line.peakRssMiB ?? {}) as Record<string, unknown>;
      return `${name}: ${f(line.dialoguesPerSecAfterStartup)} dialogues/s after a ${f(line.startupMs)} ms start (${f(line.dialogues)} in ${f(line.wallSeconds)} s, ${f(line.fileMiB)} MiB) vs readline+JSON.parse ${f(b.linesPerSecAfterStartup)} lines/s | ratio ${f(line.ratio)} | peak RSS ${f(peak.large)} MiB (small file ${f(peak.small)}, one line ${f(peak.oneLine)}) | result matches: ${f(line.resultMatches)}`;
    }
    case 'fleet': {
      const s2r = (line.spikeToRequestS ?? {}) as Record<
        string,
        { p50: number; p99: number } | null
      >;
      const sc = (line.scenarios ?? {}) as Record<string, Record<string, Record<string, unknown>>>;
      const row = (p: string) =>
        `${p}: spike-to-request p50 ${f(s2r[p]?.p50)} p99 ${f(s2r[p]?.p99)} s; ${Object.entries(sc)
          .map(
            ([n, per]) =>
              `${n} drain ${f(per[p]?.drainVsIdeal)}x ideal, idle ${f(per[p]?.gpuIdleFraction)} (with thrown-away work ${f(per[p]?.gpuUnproductiveFraction)}), ${f(per[p]?.directionChangesPerHour)} changes/h, ${f(per[p]?.busyKills)} busy kills, ${f(per[p]?.overCreatedPods)} over-created`,
          )
          .join('; ')}`;
      const goals = ((line.goals ?? {}) as Record<string, Array<{ goal: string; met: boolean }>>)
        .stoker;
      const missed = (goals ?? []).filter((g) => !g.met).map((g) => g.goal);
      const redis = (line.redisPerQueuedShard ?? {}) as Record<string, unknown>;
      return `${name}: ${['stoker', 'stoker-300s', 'keda', 'keda-hpa'].map(row).join(' | ')} | goals ${line.met ? 'met' : `NOT met: ${missed.join(', ')}`} | Redis ${f(redis.bytesPerShard)} B per queued shard (${f(redis.atMillionMiB)} MiB at 1,000,000${redis.extrapolated ? ', extrapolated' : ''})`;
    }
    default:
      return `${name}: ratio ${f(line.ratio)}`;
  }
}

async function main(): Promise<number> {
  let opts: Options;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    if (err.message) process.stderr.write(`bench: ${err.message}\n`);
    process.stderr.write(
      `usage: npm run bench -- [--json] [--quick] [--only ${BENCHMARKS.map((b) => b.name).join(',')}]\n`,
    );
    return 2;
  }
  const note = (m: string) => {
    if (!opts.json) process.stderr.write(`[bench] ${m}\n`);
  };
  const root = join(dirname(fileURLToPath(import.meta.url)), '..');
  const env = { node: process.version, cpus: cpus().length };
  const cleanup = new Cleanup();
  let failed = false;

  const onSignal = (sig: NodeJS.Signals) => {
    process.stderr.write(`bench: ${sig}: cleaning up\n`);
    void cleanup.run().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    const workers = await buildWorkers(root, opts, note);
    const tmpRoot = mkdtempSync(join(tmpdir(), 'stoker-bench-'));
    // The benchmarks' inputs live here: a data root the controller may read
    // (orchestrator/untrusted-path.ts), as a user's shared datasets would be.
    process.env.STOKER_DATA_ROOTS = tmpRoot;
    cleanup.defer(`remove ${tmpRoot}`, () => rmSync(tmpRoot, { recursive: true, force: true }));
    const redis = await startBenchRedis(tmpRoot);
    cleanup.defer('stop redis-server', () => redis.stop());
    note(`redis-server ${redis.version} on ${redis.url}`);
    const stokerCommand = process.env.BENCH_CPU_PROF
      ? [
          process.execPath,
          '--cpu-prof',
          `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`,
          workers.workerMain,
        ]
      : [process.execPath, workers.workerMain];
    const ctx: BenchContext = {
      quick: opts.quick,
      redisUrl: redis.url,
      tmpRoot,
      root,
      stokerCommand,
      note,
    };
    for (const bench of opts.only) {
      const { line, ok } = await runOne(bench, ctx, cleanup, workers);
      if (!ok) failed = true;
      Object.assign(line, env);
      process.stdout.write(`${JSON.stringify(line)}\n`);
      if (!opts.json) process.stderr.write(`${human(line)}\n`);
    }
  } catch (err) {
    failed = true;
    process.stdout.write(
      `${JSON.stringify({ name: 'bench', error: (err as Error).message, ...env })}\n`,
    );
  } finally {
    const errors = await cleanup.run();
    if (errors.length > 0) {
      failed = true;
      process.stderr.write(`bench: cleanup failed: ${errors.join('; ')}\n`);
    }
  }
  return failed ? 1 : 0;
}

interface Workers {
  /** The entry point workers run: the bundle when it is fresh, else dist/worker/entry.js. */
  workerMain: string;
  /** How the lines name it: `node dist/bundle/worker.js worker ...`. */
  workerCommand: string;
  buildInfo: { ran: boolean; tscExitCode: number | null; ms: number };
}

/** Build dist/ and the bundles, and pick the worker entry point the benchmarks start. */
async function buildWorkers(
  root: string,
  opts: Options,
  note: (m: string) => void,
): Promise<Workers> {
  note('building dist/ (npm run build: tsc, then the bundles)');
  const built = await build(root);
  const unbundled = join(root, 'dist', 'worker', 'entry.js');
  if (!existsSync(unbundled))
    throw new Error(`the build did not produce ${unbundled}: ${built.output.trim()}`);
  const bundled = join(root, 'dist', 'bundle', 'worker.js');
  const stamp = join(root, 'dist', '.tsbuildinfo');
  const workerMain =
    existsSync(bundled) && statSync(bundled).mtimeMs >= statSync(stamp).mtimeMs
      ? bundled
      : unbundled;
  note(
    `build: ${built.ran ? `tsc exit ${built.exitCode}` : `did not run (${built.output})`} in ${built.ms} ms`,
  );
  if (built.exitCode !== 0 && !opts.json) process.stderr.write(`${built.output.trim()}\n`);
  return {
    workerMain,
    workerCommand: `node ${relative(root, workerMain)} worker ...`,
    buildInfo: { ran: built.ran, tscExitCode: built.exitCode, ms: built.ms },
  };
}

/**
 * Run one benchmark and its cleanup: its JSON line (its fields, or `error`; with
 * `cleanupErrors` when its cleanup failed), stamped with how it ran; ok when neither failed.
 */
async function runOne(
  bench: Benchmark,
  ctx: BenchContext,
  cleanup: Cleanup,
  workers: Workers,
): Promise<{ line: Record<string, unknown>; ok: boolean }> {
  // Others may edit sources while the bench runs: rebuild so workers keep starting
  // from dist/ (what a deployment runs), and say so in the line.
  let rebuilt = false;
  if (!distIsFresh(ctx.root)) {
    ctx.note(`${bench.name}: sources changed since the build; rebuilding dist/`);
    await build(ctx.root);
    rebuilt = true;
  }
  const t0 = Date.now();
  const loadBefore = loadavg()[0] ?? 0;
  const scope = cleanup.child(bench.name);
  let line: Record<string, unknown>;
  let ok = true;
  try {
    const fields = await bench.run(ctx, scope);
    line = { name: bench.name, ...fields };
  } catch (err) {
    ok = false;
    line = { name: bench.name, error: (err as Error).message };
  }
  const errors = await scope.run();
  if (errors.length > 0) {
    ok = false;
    line.cleanupErrors = errors;
  }
  line.quick = ctx.quick;
  line.workerCommand = workers.workerCommand;
  line.sourcesNewerThanBuild = !distIsFresh(ctx.root);
  line.build = rebuilt ? { ...workers.buildInfo, rebuiltBefore: true } : workers.buildInfo;
  line.benchSeconds = round((Date.now() - t0) / 1000, 1);
  // Other work on the machine skews every number here: say how busy it was.
  line.loadavg1m = { before: round(loadBefore, 2), after: round(loadavg()[0] ?? 0, 2) };
  return { line, ok };
}

process.exit(await main());
