/**
 * fire-selfplay's batching phase: the same N seeds as one shard through two servers
 * loaded side by side, --batch-size 128 and --batch-size 1, requests alternating between
 * them for R rounds (which goes first alternates too). Per mode: request -> done as read
 * here, the server's own metrics, the CPU seconds of the shard; and whether the records
 * are the same batched and alone, and the same every round.
 */
import { join } from 'node:path';
import { type BenchContext, type Cleanup, median, procCpuSeconds, round } from '../lib/harness.js';
import { ServerProcess } from '../lib/python-server.js';
import { checkOutput, differing } from './checks.js';
import {
  BATCH,
  READY_TIMEOUT_MS,
  SHARD_TIMEOUT_MS,
  type Setup,
  load1,
  selfplayArgv,
  writeShard,
} from './setup.js';

const MODES = [
  { name: 'batched', batchSize: BATCH },
  { name: 'single', batchSize: 1 },
] as const;

type Mode = (typeof MODES)[number];

/** One shard through one server. */
interface Run {
  ms: number;
  cpuS: number | null;
  metrics: Record<string, unknown>;
  text: string;
}

const num = (m: Record<string, unknown>, k: string): number | null =>
  typeof m[k] === 'number' ? (m[k] as number) : null;

export async function batchedVsSingle(
  ctx: BenchContext,
  cleanup: Cleanup,
  s: Setup,
  n: number,
  rounds: number,
) {
  const shard = writeShard(s, 'batching', 0, n);
  const loadBefore = load1();
  const servers = MODES.map(
    (m) =>
      new ServerProcess(
        `stoker_fire.selfplay --batch-size ${m.batchSize}`,
        selfplayArgv(s, m.batchSize),
        {
          cwd: s.dir,
          env: s.env,
          cleanup,
        },
      ),
  );
  const readies = await Promise.all(servers.map((srv) => srv.ready(READY_TIMEOUT_MS)));
  const runs = await runRounds(s, servers, shard, rounds);
  await Promise.all(servers.map((srv) => srv.shutdown(30_000)));
  const summary = (m: number) =>
    summarize(runs[m] as Run[], MODES[m] as Mode, n, readies[m] as { loadSeconds: number | null });
  const batched = summary(0);
  const single = summary(1);
  const serverRatio =
    batched.serverDialoguesPerSec.length && single.serverDialoguesPerSec.length
      ? round(median(batched.serverDialoguesPerSec) / median(single.serverDialoguesPerSec), 3)
      : null;
  return {
    seeds: n,
    rounds,
    batched,
    single,
    records: compareRecords(runs, batched.kept, single.kept),
    ratio: round(batched.dialoguesPerSec / single.dialoguesPerSec, 3),
    serverRatio,
    cpuRatio:
      batched.dialoguesPerCpuSec && single.dialoguesPerCpuSec
        ? round(batched.dialoguesPerCpuSec / single.dialoguesPerCpuSec, 3)
        : null,
    loadavg1m: { before: loadBefore, after: load1() },
  };
}

/** `rounds` rounds of the shard through each server, alternating which goes first. */
async function runRounds(
  s: Setup,
  servers: ServerProcess[],
  shard: { input: string; ids: string[] },
  rounds: number,
): Promise<Run[][]> {
  const runs: Run[][] = [[], []];
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? [0, 1] : [1, 0];
    for (const m of order) {
      const srv = servers[m] as ServerProcess;
      const name = (MODES[m] as Mode).name;
      const output = join(s.dir, 'out', `batching-${name}-r${r + 1}.jsonl`);
      const cpu0 = procCpuSeconds(srv.child.pid ?? -1);
      const res = await srv.shard(
        { id: `batching-${name}-r${r + 1}`, input: shard.input, output },
        SHARD_TIMEOUT_MS,
      );
      const cpu1 = procCpuSeconds(srv.child.pid ?? -1);
      const text = checkOutput(output, shard.ids, res.items, res.metrics.kept);
      (runs[m] as Run[]).push({
        ms: res.ms,
        cpuS: cpu0 !== null && cpu1 !== null ? cpu1 - cpu0 : null,
        metrics: res.metrics,
        text,
      });
    }
  }
  return runs;
}

/** One mode's figures over its rounds (the first round's server metrics for the counts). */
function summarize(rs: Run[], mode: Mode, n: number, ready: { loadSeconds: number | null }) {
  const ms = median(rs.map((r) => r.ms));
  const cpu = rs.map((r) => r.cpuS).filter((v): v is number => v !== null);
  const first = (rs[0] as Run).metrics;
  const serverDps = rs.map((r) => num(r.metrics, 'dialoguesPerSec')).filter((v) => v !== null);
  return {
    batchSize: mode.batchSize,
    dialoguesPerSec: round((n * 1000) / ms, 2),
    shardSeconds: rs.map((r) => round(r.ms / 1000, 3)),
    shardSecondsMedian: round(ms / 1000, 3),
    serverDialoguesPerSec: serverDps.map((v) => round(v as number, 2)),
    serverShardSeconds: rs.map((r) => round(num(r.metrics, 'shardSeconds') ?? NaN, 3)),
    cpuSecondsPerShard: cpu.map((v) => round(v, 2)),
    dialoguesPerCpuSec: cpu.length ? round(n / median(cpu), 2) : null,
    kept: first.kept,
    dropped: {
      formatFailure: first.droppedFormatFailure,
      noImprovement: first.droppedNoImprovement,
      firstAnswerSatisfied: first.droppedFirstAnswerSatisfied,
      unsatisfied: first.droppedUnsatisfied,
    },
    studentCalls: first.studentCalls,
    teacherCalls: first.teacherCalls,
    loadSeconds: ready.loadSeconds,
  };
}

/** Determinism: every round the same as the first, per mode; then batched vs alone. */
function compareRecords(runs: Run[][], batchedKept: unknown, singleKept: unknown) {
  const unstable = runs.map((rs) => rs.filter((r) => r.text !== (rs[0] as Run).text).length);
  const bText = (runs[0]?.[0] as Run).text;
  const sText = (runs[1]?.[0] as Run).text;
  const diff = differing(bText, sText);
  return {
    compared: Math.max(batchedKept as number, singleKept as number),
    identical: bText === sText,
    differing: diff.count,
    firstDifference: diff.first,
    roundsDifferingFromFirst: { batched: unstable[0], single: unstable[1] },
  };
}
