/**
 * wrapper-overhead: what `stoker worker` adds to a CPU-bound training payload.
 *
 * Payload    `python3 -m stoker_examples.smoke_train` (real PyTorch on CPU, /usr/bin/python3)
 *            with --threads 1, no intermediate checkpoints, OMP_NUM_THREADS=1, PYTHONUNBUFFERED=1
 *            and PYTHONPATH=worker/python/src on both sides (the worker sets the last two
 *            for every payload). Its step count is calibrated once, from direct runs of
 *            two lengths, so that a direct run takes about TARGET seconds (10, quick: 2);
 *            the ratio uses the direct runs measured below, not the target.
 * Measured   alternately (direct, stoker) x R (4, quick: 1):
 *            direct  spawn -> 'close' (exit and pipes drained), stdout/stderr read and dropped
 *            stoker  unit launchedAt -> finishedAt (the backend's record: worker process
 *                    start, Redis connect, task load, payload, final progress writes);
 *                    submit -> run finishedAt (end to end, controller and dispatcher
 *                    included); the payload alone as the worker saw it (the attempt log's
 *                    start and exit stamps); the worker process's CPU seconds.
 * Ratio      median over the rounds of (unit time / direct time of the same round); target
 *            <= 1.03. Pairing each stoker run with the direct run just before it cancels
 *            the drift of this machine's speed between rounds (the payload alone varies
 *            by up to 10% from one run to the next on a 2-vCPU VM); `ratioOfMedians`
 *            (median unit time / median direct time) is reported beside it.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { attemptLogFile } from '../common/paths.js';
import {
  type Benchmark,
  type BenchContext,
  type Cleanup,
  median,
  nowMs,
  round,
  waitFor,
  watchProcCpu,
} from './lib/harness.js';
import {
  benchRun,
  failureOf,
  startBenchSystem,
  trainUnit,
  type BenchSystem,
} from './lib/stoker.js';

const PYTHON = '/usr/bin/python3';
const TARGET_RATIO = 1.03;

function payloadArgv(ctx: BenchContext, steps: number, outDir: string): string[] {
  return [
    PYTHON,
    '-m',
    'stoker_examples.smoke_train',
    '--steps',
    String(steps),
    '--threads',
    '1',
    '--checkpoint-every',
    '0',
    '--output-dir',
    outDir,
  ];
}

const PAYLOAD_ENV = { OMP_NUM_THREADS: '1' };

/** Run the payload directly; resolve with its wall time in ms. */
function runDirect(ctx: BenchContext, steps: number, outDir: string): Promise<number> {
  const [file, ...args] = payloadArgv(ctx, steps, outDir);
  return new Promise((resolve, reject) => {
    const t0 = nowMs();
    const child = spawn(file as string, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: process.env.HOME ?? '/tmp',
        ...PAYLOAD_ENV,
        PYTHONUNBUFFERED: '1',
        PYTHONPATH: join(ctx.root, 'worker', 'python', 'src'),
      },
    });
    let stderrTail = '';
    child.stdout.resume();
    child.stderr.on('data', (d: Buffer) => {
      stderrTail = (stderrTail + d.toString()).slice(-2000);
    });
    child.once('error', reject);
    child.once('close', (code, signal) => {
      const ms = nowMs() - t0;
      if (code === 0) resolve(ms);
      else
        reject(
          new Error(
            `direct payload exited ${code ?? signal}: ${stderrTail.trim().split('\n').slice(-3).join(' | ')}`,
          ),
        );
    });
  });
}

/**
 * Steps for a direct run of about targetMs: a short and a long run give the fixed cost
 * (interpreter and torch import) and the cost per step. Each is timed twice and the
 * faster kept, since other load on the machine only ever adds time.
 */
async function calibrate(ctx: BenchContext, dir: string, targetMs: number) {
  const [a, b] = ctx.quick ? [100, 1000] : [300, 3000];
  const timed = async (steps: number, label: string) =>
    Math.min(
      await runDirect(ctx, steps, join(dir, `${label}-1`)),
      await runDirect(ctx, steps, join(dir, `${label}-2`)),
    );
  const ta = await timed(a, 'calibrate-a');
  const tb = await timed(b, 'calibrate-b');
  const perStep = (tb - ta) / (b - a);
  if (!(perStep > 0))
    throw new Error(
      `calibration failed: ${a} steps took ${round(ta)} ms, ${b} took ${round(tb)} ms`,
    );
  const fixed = Math.max(0, ta - a * perStep);
  const steps = Math.max(10, Math.round((targetMs - fixed) / perStep));
  return {
    steps,
    perStepMs: round(perStep, 3),
    fixedMs: round(fixed, 0),
    runs: { [a]: round(ta, 0), [b]: round(tb, 0) },
  };
}

/** The payload's own run time inside the worker, from the attempt log's stamps. */
function payloadTimeFromLog(file: string): number | null {
  if (!existsSync(file)) return null;
  const text = readFileSync(file, 'utf8');
  const start = /^\[stoker (\S+)\] start:/m.exec(text)?.[1];
  const exit = /^\[stoker (\S+)\] exit:/m.exec(text)?.[1];
  if (!start || !exit) return null;
  const ms = Date.parse(exit) - Date.parse(start);
  return Number.isFinite(ms) ? ms : null;
}

async function runStoker(
  b: BenchSystem,
  ctx: BenchContext,
  steps: number,
  outDir: string,
  i: number,
  timeoutMs: number,
) {
  const { runId, submittedAt } = await b.submit(
    benchRun(`bench-wrap-${i}`, payloadArgv(ctx, steps, outDir), PAYLOAD_ENV),
  );
  const { taskId, unit } = trainUnit(runId);
  const unitKey = b.sys.keys.unit(unit);
  const pid = await waitFor(
    `the worker of run ${runId} to start`,
    async () => {
      const p = await b.sys.redis.hget(unitKey, 'pid');
      return p ? Number(p) : null;
    },
    30_000,
    10,
  );
  const cpu = watchProcCpu(pid, 100);
  const run = await b.waitTerminal(runId, timeoutMs, 50).finally(() => cpu.stop());
  if (run.phase !== 'Succeeded') throw new Error(await failureOf(b, run));
  const u = await b.sys.redis.hgetall(unitKey);
  const unitMs = Date.parse(u.finishedAt ?? '') - Date.parse(u.launchedAt ?? '');
  if (!Number.isFinite(unitMs))
    throw new Error(`unit ${unit} has no launchedAt/finishedAt: ${JSON.stringify(u)}`);
  const task = await b.sys.store.getTask(taskId);
  return {
    unitMs,
    endToEndMs: run.finishedAt ? Date.parse(run.finishedAt) - submittedAt : null,
    payloadInWorkerMs: task ? payloadTimeFromLog(attemptLogFile(task.runDir, taskId, 1)) : null,
    workerCpuS: cpu.last(),
  };
}

export const wrapperOverhead: Benchmark = {
  name: 'wrapper-overhead',
  async run(ctx, cleanup: Cleanup) {
    const targetMs = ctx.quick ? 2000 : 10_000;
    const rounds = ctx.quick ? 1 : 4;
    const dir = mkdtempSync(join(ctx.tmpRoot, 'wrapper-'));
    ctx.note(`wrapper-overhead: calibrating stoker_examples.smoke_train to ~${targetMs / 1000} s`);
    const cal = await calibrate(ctx, dir, targetMs);
    const b = await startBenchSystem(ctx, cleanup, 'wrapper', { train: 1, steps: 1 });
    const direct: number[] = [];
    const viaStoker: Array<Awaited<ReturnType<typeof runStoker>>> = [];
    for (let r = 0; r < rounds; r++) {
      ctx.note(
        `wrapper-overhead: round ${r + 1}/${rounds}: direct, then through stoker (${cal.steps} steps)`,
      );
      direct.push(await runDirect(ctx, cal.steps, join(dir, `direct-${r}`)));
      viaStoker.push(
        await runStoker(b, ctx, cal.steps, join(dir, `stoker-${r}`), r, targetMs * 10 + 60_000),
      );
    }
    const med = (v: Array<number | null>, digits = 0) => {
      const xs = v.filter((x): x is number => x !== null);
      return xs.length > 0 ? round(median(xs), digits) : null;
    };
    const directMs = median(direct);
    const unitMs = median(viaStoker.map((s) => s.unitMs));
    const e2eMs = med(viaStoker.map((s) => s.endToEndMs));
    const ratio = round(median(viaStoker.map((v, i) => v.unitMs / (direct[i] as number))), 3);
    const payloadInWorkerMs = med(viaStoker.map((s) => s.payloadInWorkerMs));
    return {
      unit: 'ms',
      steps: cal.steps,
      calibration: cal,
      rounds,
      unitMs: round(unitMs, 0),
      endToEndMs: e2eMs,
      payloadInWorkerMs,
      workerOverheadMs: payloadInWorkerMs === null ? null : round(unitMs - payloadInWorkerMs, 0),
      workerCpuS: med(
        viaStoker.map((s) => s.workerCpuS),
        2,
      ),
      samples: {
        directMs: direct.map((x) => round(x, 0)),
        unitMs: viaStoker.map((s) => round(s.unitMs, 0)),
        endToEndMs: viaStoker.map((s) => (s.endToEndMs === null ? null : round(s.endToEndMs, 0))),
      },
      baseline: { directMs: round(directMs, 0) },
      ratio,
      ratioOf:
        'median over rounds of stoker unit launchedAt->finishedAt / the direct run of the same round',
      ratioOfMedians: round(unitMs / directMs, 3),
      endToEndRatio: e2eMs === null ? null : round(e2eMs / directMs, 3),
      target: TARGET_RATIO,
      met: ratio <= TARGET_RATIO,
    };
  },
};
