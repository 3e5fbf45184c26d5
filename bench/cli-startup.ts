/**
 * cli-startup: how long the `stoker` command takes to answer, as a user runs it.
 *
 * Measured   wall time from spawn to exit of `node bin/stoker.js ARGS` (what `npx
 *            stoker` and node_modules/.bin/stoker run; bin/stoker.js adds its freshness
 *            scan of the sources to the compiled CLI), RUNS times each (quick: 3),
 *            interleaved with the baseline so that a busy moment hits all alike:
 *              help       stoker --help
 *              validate   stoker validate training-configs/smoke-cpu.yaml
 *              status     stoker status, against a running stoker (a controller on the
 *                         bench's Redis, REDIS_URL and STOKER_PREFIX pointing at it, two
 *                         finished runs in it)
 *              statusRun  stoker status RUN (one run's view)
 *            Each: median and min wall (ms), and the median CPU seconds (user + system)
 *            of the command, from the `times` of a bash that waited for it (cpuOfRun()).
 * Baseline   `node -e 0` in the same run: the floor of any Node command on this machine.
 * Ratio      median / median of `node -e 0`, per command; `ratio` is the largest of them.
 * Target     absolute wall medians (the targets on the quiet 2-core development
 *            machine): help <= 500 ms, validate <= 500 ms, status <= 700 ms.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import type { Benchmark, BenchContext, Cleanup } from './lib/harness.js';
import { median, nowMs, round } from './lib/harness.js';
import { benchRun, startBenchSystem } from './lib/stoker.js';

const TARGET_MS = { help: 500, validate: 500, status: 700 } as const;

interface Timed {
  wallMs: number;
  cpuS: number | null;
}

/**
 * Run argv to its exit; its wall time and, through bash's `times` after `wait`, the
 * CPU time the child used (the children's line of `times`). Output is discarded; a
 * non-zero exit is an error (a broken command is not a fast one).
 */
function timed(argv: string[], env: NodeJS.ProcessEnv, cwd: string): Promise<Timed> {
  const script = '"$@" >/dev/null; rc=$?; times; exit $rc';
  const t0 = nowMs();
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', script, 'bash', ...argv], {
      cwd,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-2000)));
    child.once('error', reject);
    child.once('close', (code) => {
      const wallMs = nowMs() - t0;
      if (code !== 0)
        return reject(
          new Error(`${argv.join(' ')} exited ${code}: ${err.trim().split('\n').at(-1)}`),
        );
      resolve({ wallMs, cpuS: cpuOfRun(out) });
    });
  });
}

/** bash `times` prints two lines (shell, then children): "0m0.123s 0m0.045s". */
function cpuOfRun(out: string): number | null {
  const lines = out.trim().split('\n');
  const m = /(\d+)m([\d.]+)s\s+(\d+)m([\d.]+)s/.exec(lines.at(-1) ?? '');
  if (!m) return null;
  const s = (min: string | undefined, sec: string | undefined) => Number(min) * 60 + Number(sec);
  return round(s(m[1], m[2]) + s(m[3], m[4]), 3);
}

function stats(samples: Timed[]) {
  const walls = samples.map((s) => s.wallMs);
  const cpus = samples.map((s) => s.cpuS).filter((c): c is number => c !== null);
  return {
    medianMs: round(median(walls), 1),
    minMs: round(Math.min(...walls), 1),
    cpuS: cpus.length ? round(median(cpus), 3) : null,
  };
}

async function measure(ctx: BenchContext, cleanup: Cleanup): Promise<Record<string, unknown>> {
  const runs = ctx.quick ? 3 : 10;
  const b = await startBenchSystem(ctx, cleanup, 'cli', { train: 2, steps: 2 });
  const finished: string[] = [];
  for (const name of ['cli-a', 'cli-b']) {
    const { runId } = await b.submit(benchRun(name, ['/bin/true']));
    await b.waitTerminal(runId, 60_000);
    finished.push(runId);
  }
  const env = {
    ...process.env,
    REDIS_URL: ctx.redisUrl,
    STOKER_PREFIX: b.prefix,
    STOKER_HOME: b.home,
    STOKER_FROM_SOURCE: '',
  };
  const bin = join(ctx.root, 'bin', 'stoker.js');
  const node = process.execPath;
  const cases: Record<string, string[]> = {
    baseline: [node, '-e', '0'],
    help: [node, bin, '--help'],
    validate: [node, bin, 'validate', join(ctx.root, 'training-configs', 'smoke-cpu.yaml')],
    status: [node, bin, 'status'],
    statusRun: [node, bin, 'status', finished[0] as string],
  };
  const samples: Record<string, Timed[]> = {};
  // One warm-up round (disk cache), then RUNS rounds, every case once per round.
  for (let round_ = -1; round_ < runs; round_++) {
    for (const [name, argv] of Object.entries(cases)) {
      const t = await timed(argv, env, ctx.root);
      if (round_ >= 0) (samples[name] ??= []).push(t);
    }
  }
  const base = stats(samples.baseline ?? []);
  const out: Record<string, ReturnType<typeof stats> & { ratio: number }> = {};
  for (const name of ['help', 'validate', 'status', 'statusRun']) {
    const s = stats(samples[name] ?? []);
    out[name] = { ...s, ratio: round(s.medianMs / base.medianMs, 2) };
  }
  const met =
    (out.help?.medianMs ?? Infinity) <= TARGET_MS.help &&
    (out.validate?.medianMs ?? Infinity) <= TARGET_MS.validate &&
    (out.status?.medianMs ?? Infinity) <= TARGET_MS.status;
  return {
    unit: 'ms',
    runs,
    ...out,
    baseline: { nodeE0: base },
    ratio: Math.max(...Object.values(out).map((o) => o.ratio)),
    ratioOf: 'largest of (command median wall / `node -e 0` median wall), same run',
    target: { helpMs: TARGET_MS.help, validateMs: TARGET_MS.validate, statusMs: TARGET_MS.status },
    met,
  };
}

export const cliStartup: Benchmark = { name: 'cli-startup', run: measure };
