/**
 * dispatch-throughput: short tasks per second through the dispatcher at concurrency 4.
 *
 * Measured   N TrainingRuns (one train task each, payload /bin/true) submitted at once;
 *            tasksPerSec = N / (last task finishedAt - start of the submits). Also the
 *            time until every run was seen Succeeded (polled every 100 ms: the controller
 *            must also have noticed), the controller's reconcile passes, this process's
 *            CPU seconds meanwhile (controller + dispatcher + the bench's polling), and
 *            per task (p50) the unit's time (worker process start to its result) and the
 *            dispatcher's hold of the job (task startedAt -> finishedAt).
 * Baseline   N raw BullMQ jobs added at once (addBulk) to a queue on the same Redis, a
 *            Worker at concurrency 4 whose processor spawns /bin/true and waits for it:
 *            N / (last processor end - start of the add).
 * Ratio      stoker tasks/s / raw BullMQ tasks/s (1 = no dispatch overhead).
 */
import {
  type Benchmark,
  type BenchContext,
  type Cleanup,
  median,
  nowMs,
  round,
  sleep,
  stopPhase,
} from './lib/harness.js';
import { spawnAndWait, startRawBull } from './lib/bullmq.js';
import { benchRun, startBenchSystem, trainUnit } from './lib/stoker.js';

const CONCURRENCY = 4;
const PAYLOAD = ['/bin/true'];

async function throughStoker(ctx: BenchContext, cleanup: Cleanup, n: number, timeoutMs: number) {
  const b = await startBenchSystem(ctx, cleanup, 'throughput', {
    train: CONCURRENCY,
    steps: CONCURRENCY,
  });
  const specs = Array.from({ length: n }, (_, i) => benchRun(`bench-tp-${i}`, PAYLOAD));
  const passesBefore = b.sys.controller.stats.passes;
  const cpu0 = process.cpuUsage();
  const t0 = nowMs();
  const runIds = (await Promise.all(specs.map((s) => b.submit(s)))).map((r) => r.runId);
  const submittedMs = nowMs() - t0;
  const activeKey = `${b.sys.keys.runIndex()}:active`;
  const deadline = Date.now() + timeoutMs;
  let lastNote = Date.now();
  for (;;) {
    const active = await b.sys.redis.scard(activeKey);
    if (active === 0) break;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms: ${active} of ${n} runs still active`);
    if (Date.now() - lastNote > 15_000) {
      ctx.note(`dispatch-throughput: ${n - active}/${n} runs finished`);
      lastNote = Date.now();
    }
    await sleep(100);
  }
  const allSucceededSeenMs = nowMs() - t0;
  const cpu = process.cpuUsage(cpu0);
  const statuses = await b.sys.store.getTaskStatuses(runIds.map((id) => trainUnit(id).taskId));
  const phases: Record<string, number> = {};
  let lastFinish = 0;
  let firstStart = Number.POSITIVE_INFINITY;
  for (const s of Object.values(statuses)) {
    phases[s.phase] = (phases[s.phase] ?? 0) + 1;
    if (s.finishedAt) lastFinish = Math.max(lastFinish, Date.parse(s.finishedAt));
    if (s.startedAt) firstStart = Math.min(firstStart, Date.parse(s.startedAt));
  }
  const succeeded = phases.Succeeded ?? 0;
  if (succeeded !== n)
    throw new Error(`only ${succeeded} of ${n} tasks succeeded (${JSON.stringify(phases)})`);
  // Where a task's time goes: the unit (worker process start to its result) inside the
  // dispatcher's hold of the job (task startedAt -> finishedAt, which adds launching and
  // noticing the end).
  const pipe = b.sys.redis.pipeline();
  for (const id of runIds)
    pipe.hmget(b.sys.keys.unit(trainUnit(id).unit), 'launchedAt', 'finishedAt');
  const unitMs: number[] = [];
  for (const [, v] of (await pipe.exec()) ?? []) {
    const [l, f] = v as [string | null, string | null];
    if (l && f) unitMs.push(Date.parse(f) - Date.parse(l));
  }
  const taskMs = Object.values(statuses).flatMap((s) =>
    s.startedAt && s.finishedAt ? [Date.parse(s.finishedAt) - Date.parse(s.startedAt)] : [],
  );
  const wallMs = lastFinish - t0;
  return {
    tasksPerSec: round((n * 1000) / wallMs, 2),
    unitMsP50: unitMs.length > 0 ? round(median(unitMs), 0) : null,
    dispatcherHoldMsP50: taskMs.length > 0 ? round(median(taskMs), 0) : null,
    controllerProcessCpuS: round((cpu.user + cpu.system) / 1e6, 2),
    wallMs: round(wallMs, 0),
    submitMs: round(submittedMs, 0),
    firstTaskStartMs: round(firstStart - t0, 0),
    allRunsSucceededSeenMs: round(allSucceededSeenMs, 0),
    controllerPasses: b.sys.controller.stats.passes - passesBefore,
  };
}

async function rawBull(ctx: BenchContext, cleanup: Cleanup, n: number, timeoutMs: number) {
  let finished = 0;
  let failed = 0;
  let lastFinish = 0;
  let allDone: () => void = () => undefined;
  const done = new Promise<void>((resolve) => {
    allDone = resolve;
  });
  const raw = await startRawBull(ctx, cleanup, 'tp-spawn', CONCURRENCY, async () => {
    try {
      await spawnAndWait(PAYLOAD);
    } catch (err) {
      failed += 1;
      throw err;
    } finally {
      finished += 1;
      lastFinish = nowMs();
      if (finished === n) allDone();
    }
  });
  const t0 = nowMs();
  await raw.queue.addBulk(Array.from({ length: n }, (_, i) => ({ name: 'spawn', data: { i } })));
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    done,
    new Promise((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`raw BullMQ: timed out with ${finished} of ${n} done`)),
        timeoutMs,
      );
    }),
  ]).finally(() => clearTimeout(timer));
  if (failed > 0) throw new Error(`raw BullMQ: ${failed} of ${n} spawns failed`);
  const wallMs = lastFinish - t0;
  return { tasksPerSec: round((n * 1000) / wallMs, 2), wallMs: round(wallMs, 0) };
}

export const dispatchThroughput: Benchmark = {
  name: 'dispatch-throughput',
  async run(ctx, cleanup) {
    const n = ctx.quick ? 40 : 500;
    ctx.note(`dispatch-throughput: ${n} tasks through stoker (concurrency ${CONCURRENCY})`);
    // Stoker is stopped before the baseline runs, so the two never share the machine.
    const phase = cleanup.child('stoker phase');
    const stoker = await throughStoker(ctx, phase, n, ctx.quick ? 180_000 : 1_800_000);
    await stopPhase(phase);
    ctx.note(`dispatch-throughput: ${n} raw BullMQ jobs (concurrency ${CONCURRENCY})`);
    const baseline = await rawBull(ctx, cleanup, n, ctx.quick ? 120_000 : 600_000);
    return {
      unit: 'tasks/s',
      tasks: n,
      concurrency: CONCURRENCY,
      payload: PAYLOAD,
      tasksPerSec: stoker.tasksPerSec,
      stoker,
      baseline,
      ratio: round(stoker.tasksPerSec / baseline.tasksPerSec, 3),
      ratioOf: 'stoker tasks/s / raw BullMQ (processor spawns the payload) tasks/s',
    };
  },
};
