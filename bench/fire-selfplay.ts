/**
 * fire-selfplay: FIRE self-play (`python3 -m stoker_fire.selfplay`, server mode) on the `tiny`
 * backend, driven directly over stdin/stdout (no worker, no Redis): what batching the
 * dialogues buys, and what a resident server buys over a process per shard.
 *
 * Models     a student and a teacher trained here for a few dozen steps (40, quick: 24;
 *            batch 16, one thread) with `stoker_fire.train --backend tiny` on the student and
 *            teacher views (stoker_fire.synth.student_view / teacher_view) of 256 scripted
 *            stoker_fire.synth dialogues. Not random `tiny-new` weights: a random teacher never
 *            writes a parseable `Score: N.`, so every dialogue is dropped (format_failure)
 *            and there are no records to compare, and a random model never writes <eot>,
 *            so every turn runs to --max-new-tokens (unlike real turns). Trained this
 *            little, the student writes FIRE-formatted answers of about 15 tokens and the
 *            teacher FIRE-formatted feedback; it costs about a minute of one core.
 * Self-play  seeds from `stoker_fire.synth --kind seeds --seed 1` (16 K of them; the first N for
 *            the batching comparison). Every server: --backend tiny, --max-new-tokens 32,
 *            --threads 1 and OMP_NUM_THREADS=1 (fair on a shared machine), and
 *            --min-rounds 1 --keep-unsatisfied, so every dialogue the rules do not drop
 *            for a broken format or a falling score is kept and the records are there to
 *            be compared (the little-trained teacher mostly scores the first answer >= 8,
 *            which the default rules would drop as first_answer_satisfied).
 * Batched    the same N seeds (128, quick: 64) as one shard through two servers loaded
 *            vs one  side by side, --batch-size 128 and --batch-size 1, requests alternating
 *            between them for R rounds (3, quick: 2; which goes first alternates too).
 *            Measured: request -> `done` as read here (load excluded), the server's own
 *            metrics {dialoguesPerSec (the dialogues alone), shardSeconds}, and the CPU
 *            seconds the server used for the shard (/proc; less sensitive to other work
 *            on the machine than the wall clock). Ratio: median batched dialogues/s /
 *            median one-at-a-time dialogues/s (wall, request -> done); target >= 5.
 *            Greedy decoding must give the same records batched and alone: both outputs
 *            (and every round's) are compared byte for byte; a difference is reported in
 *            `records`, not hidden, and does not fail the benchmark.
 * Resident   K shards of 16 seeds (K = 8, quick: 4), --batch-size 128: one resident server
 *            vs fresh takes them one after another (spawn -> last `done`, load included) vs K
 *            fresh processes in sequence, each spawn -> ready -> one shard -> done ->
 *            shutdown -> exit (first spawn -> last exit). Also per-shard seconds (steady
 *            state) and the load seconds (the server's metrics {loadSeconds}: torch import
 *            and both models, plus the process start before it). Ratio: fresh wall /
 *            resident wall; target >= 3. The two must write the same records per shard.
 * Checked    every output file: one JSON record per kept dialogue, as many as `done` says
 *            (and the server's `kept`), ids among the shard's seeds and in seed order,
 *            score/round/conversations consistent.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import {
  type Benchmark,
  type BenchContext,
  type Cleanup,
  median,
  procCpuSeconds,
  round,
  stopPhase,
} from './lib/harness.js';
import { ServerProcess, SYSTEM_PYTHON, payloadEnv, runCommand } from './lib/python-server.js';

const PY = SYSTEM_PYTHON;
const SHARD_SEEDS = 16;
const MAX_NEW_TOKENS = 32;
const BATCH = 128; // what training-configs/fire-mini uses
const TRAIN_DIALOGUES = 256;
const TRAIN_BATCH = 16;
const BATCHED_TARGET = 5;
const RESIDENT_TARGET = 3;
const READY_TIMEOUT_MS = 180_000;
const SHARD_TIMEOUT_MS = 600_000;

const load1 = (): number => round(loadavg()[0] ?? 0, 2);

interface Setup {
  dir: string;
  env: NodeJS.ProcessEnv;
  student: string;
  teacher: string;
  imageRoot: string;
  seedLines: string[];
  seedIds: string[];
}

// ---------------------------------------------------------------------------------------
// Setup: seeds, training dialogues, views, a student and a teacher

const VIEWS_SCRIPT = `
import json, sys
from stoker_fire.synth import student_view, teacher_view
src, student, teacher = sys.argv[1:4]
records = [json.loads(line) for line in open(src, encoding="utf-8") if line.strip()]
with open(student, "w", encoding="utf-8") as fh:
    for r in records:
        fh.write(json.dumps(student_view(r)) + "\\n")
n = 0
with open(teacher, "w", encoding="utf-8") as fh:
    for r in records:
        for v in teacher_view(r):
            fh.write(json.dumps(v) + "\\n")
            n += 1
print(json.dumps({"student": len(records), "teacher": n}))
`;

function lastJson(lines: readonly string[], what: string): Record<string, unknown> {
  const line = lines[lines.length - 1];
  if (!line) throw new Error(`${what}: no summary line on stdout`);
  return JSON.parse(line) as Record<string, unknown>;
}

async function train(
  ctx: BenchContext,
  cleanup: Cleanup,
  s: { dir: string; env: NodeJS.ProcessEnv },
  role: 'student' | 'teacher',
  data: string,
  imageRoot: string | null,
  steps: number,
) {
  const out = join(s.dir, role);
  const argv = [
    PY,
    '-m',
    'stoker_fire.train',
    '--backend',
    'tiny',
    '--model-name-or-path',
    'tiny-new',
    '--data',
    data,
    ...(imageRoot ? ['--image-root', imageRoot] : []),
    '--max-steps',
    String(steps),
    '--per-device-train-batch-size',
    String(TRAIN_BATCH),
    '--learning-rate',
    '3e-3',
    '--warmup-ratio',
    '0.05',
    '--save-steps',
    String(steps),
    '--logging-steps',
    String(Math.max(1, Math.floor(steps / 4))),
    '--threads',
    '1',
    '--seed',
    role === 'student' ? '1' : '2',
    '--output-dir',
    out,
  ];
  const r = await runCommand(`stoker_fire.train ${role}`, argv, {
    cwd: s.dir,
    env: s.env,
    cleanup,
    timeoutMs: 900_000,
  });
  const result = r.events.find((e) => e.type === 'result');
  if (!result) throw new Error(`stoker_fire.train ${role}: no result event`);
  const model = String(result.modelPath ?? join(out, 'final'));
  if (!existsSync(join(model, 'model.pt')))
    throw new Error(`stoker_fire.train ${role}: no model at ${model}`);
  const num = (v: unknown) => (typeof v === 'number' ? round(v, 3) : null);
  return {
    model,
    info: {
      steps: result.steps,
      firstLoss: num(result.firstLoss),
      lastLoss: num(result.lastLoss),
      vocabSize: result.vocabSize,
      parameters: result.parameters,
      trainSeconds: num(result.seconds),
      wallSeconds: round(r.ms / 1000, 1),
    },
  };
}

async function setup(ctx: BenchContext, cleanup: Cleanup, seeds: number, steps: number) {
  const dir = mkdtempSync(join(ctx.tmpRoot, 'fire-selfplay-'));
  cleanup.defer(`remove ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
  const env = payloadEnv(ctx.root);
  const opts = { cwd: dir, env, cleanup, timeoutMs: 300_000 };
  const probe = await runCommand(
    'python torch probe',
    [PY, '-c', 'import torch, PIL; print(torch.__version__)'],
    opts,
  ).catch((err: Error) => {
    throw new Error(`fire-selfplay needs ${PY} with torch and Pillow: ${err.message}`);
  });
  const synth = (kind: string, n: number, out: string, seed: number, startId: number) =>
    runCommand(
      `stoker_fire.synth ${kind}`,
      [
        PY,
        '-m',
        'stoker_fire.synth',
        '--n',
        String(n),
        '--out',
        out,
        '--kind',
        kind,
        '--seed',
        String(seed),
        '--start-id',
        String(startId),
      ],
      opts,
    );
  const seedSet = lastJson(
    (await synth('seeds', seeds, join(dir, 'seeds'), 1, 0)).stdoutLines,
    'stoker_fire.synth seeds',
  );
  const trainSet = lastJson(
    (await synth('dialogues', TRAIN_DIALOGUES, join(dir, 'train'), 7, 500_000)).stdoutLines,
    'stoker_fire.synth dialogues',
  );
  const studentView = join(dir, 'student-view.jsonl');
  const teacherView = join(dir, 'teacher-view.jsonl');
  const views = lastJson(
    (
      await runCommand(
        'views',
        [PY, '-c', VIEWS_SCRIPT, String(trainSet.file), studentView, teacherView],
        opts,
      )
    ).stdoutLines,
    'views',
  );
  ctx.note(`fire-selfplay: training a tiny student and teacher (${steps} steps each)`);
  const s = { dir, env };
  const student = await train(
    ctx,
    cleanup,
    s,
    'student',
    studentView,
    String(trainSet.imageRoot),
    steps,
  );
  const teacher = await train(ctx, cleanup, s, 'teacher', teacherView, null, steps);
  const seedLines = readFileSync(String(seedSet.file), 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '');
  if (seedLines.length !== seeds)
    throw new Error(`stoker_fire.synth wrote ${seedLines.length} seeds, wanted ${seeds}`);
  const setupInfo = {
    torch: probe.stdoutLines[probe.stdoutLines.length - 1] ?? null,
    trainingDialogues: TRAIN_DIALOGUES,
    views,
    student: student.info,
    teacher: teacher.info,
  };
  const out: Setup = {
    dir,
    env,
    student: student.model,
    teacher: teacher.model,
    imageRoot: String(seedSet.imageRoot),
    seedLines,
    seedIds: seedLines.map((l) => String((JSON.parse(l) as { id: unknown }).id)),
  };
  return { setup: out, info: setupInfo };
}

function selfplayArgv(s: Setup, batchSize: number): string[] {
  return [
    PY,
    '-m',
    'stoker_fire.selfplay',
    '--backend',
    'tiny',
    '--student-model',
    s.student,
    '--teacher-model',
    s.teacher,
    '--image-root',
    s.imageRoot,
    '--batch-size',
    String(batchSize),
    '--max-new-tokens',
    String(MAX_NEW_TOKENS),
    '--threads',
    '1',
    '--min-rounds',
    '1',
    '--keep-unsatisfied',
  ];
}

function writeShard(s: Setup, name: string, from: number, n: number) {
  const input = join(s.dir, 'shards', `${name}.jsonl`);
  mkdirSync(join(s.dir, 'shards'), { recursive: true });
  writeFileSync(
    input,
    s.seedLines
      .slice(from, from + n)
      .map((l) => `${l}\n`)
      .join(''),
  );
  return { input, ids: s.seedIds.slice(from, from + n) };
}

// ---------------------------------------------------------------------------------------
// Output checks

/** The records of a shard output, checked; returns the file's text (for comparisons). */
function checkOutput(file: string, ids: readonly string[], items: number, kept: unknown): string {
  if (!existsSync(file)) throw new Error(`no output file ${file}`);
  const text = readFileSync(file, 'utf8');
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  const where = (i: number) => `${file} line ${i + 1}`;
  if (lines.length !== items)
    throw new Error(`${file}: ${lines.length} records, but done said ${items} items`);
  if (typeof kept === 'number' && kept !== items)
    throw new Error(`${file}: done said ${items} items, the server's metrics kept ${kept}`);
  let last = -1;
  lines.forEach((line, i) => {
    const r = JSON.parse(line) as {
      id?: unknown;
      conversations?: Array<{ role?: unknown; value?: unknown }>;
      score?: unknown[];
      round?: unknown;
    };
    const at = ids.indexOf(String(r.id));
    if (at === -1) throw new Error(`${where(i)}: id ${String(r.id)} is not a seed of the shard`);
    if (at <= last) throw new Error(`${where(i)}: id ${String(r.id)} out of seed order`);
    last = at;
    const conv = r.conversations;
    const score = r.score;
    if (!Array.isArray(conv) || !Array.isArray(score) || score.length < 1)
      throw new Error(`${where(i)}: no conversations or score`);
    if (r.round !== score.length || conv.length !== 2 * score.length)
      throw new Error(
        `${where(i)}: round ${String(r.round)}, ${score.length} scores, ${conv.length} turns`,
      );
    conv.forEach((turn, t) => {
      const role = t % 2 === 0 ? 'student' : 'teacher';
      if (turn.role !== role || typeof turn.value !== 'string')
        throw new Error(`${where(i)}: turn ${t + 1} is not a ${role} turn`);
    });
  });
  return text;
}

/** Ids of the records that differ between two outputs of the same seeds. */
function differing(a: string, b: string): { count: number; first: unknown } {
  const parse = (t: string) =>
    new Map(
      t
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => [String((JSON.parse(l) as { id: unknown }).id), l] as const),
    );
  const ma = parse(a);
  const mb = parse(b);
  const ids = [...new Set([...ma.keys(), ...mb.keys()])];
  const diff = ids.filter((id) => ma.get(id) !== mb.get(id));
  const id = diff[0];
  const first =
    id === undefined
      ? null
      : {
          id,
          batched: ma.has(id) ? JSON.parse(ma.get(id) as string) : null,
          alone: mb.has(id) ? JSON.parse(mb.get(id) as string) : null,
        };
  return { count: diff.length, first };
}

const num = (m: Record<string, unknown>, k: string): number | null =>
  typeof m[k] === 'number' ? (m[k] as number) : null;

// ---------------------------------------------------------------------------------------
// Batched vs one at a time

async function batchedVsSingle(
  ctx: BenchContext,
  cleanup: Cleanup,
  s: Setup,
  n: number,
  rounds: number,
) {
  const shard = writeShard(s, 'batching', 0, n);
  const loadBefore = load1();
  const modes = [
    { name: 'batched', batchSize: BATCH },
    { name: 'single', batchSize: 1 },
  ] as const;
  const servers = modes.map(
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
  type Run = { ms: number; cpuS: number | null; metrics: Record<string, unknown>; text: string };
  const runs: Run[][] = [[], []];
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? [0, 1] : [1, 0];
    for (const m of order) {
      const srv = servers[m] as ServerProcess;
      const name = (modes[m] as (typeof modes)[number]).name;
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
  await Promise.all(servers.map((srv) => srv.shutdown(30_000)));
  const summary = (m: number) => {
    const rs = runs[m] as Run[];
    const ms = median(rs.map((r) => r.ms));
    const cpu = rs.map((r) => r.cpuS).filter((v): v is number => v !== null);
    const first = (rs[0] as Run).metrics;
    const serverDps = rs.map((r) => num(r.metrics, 'dialoguesPerSec')).filter((v) => v !== null);
    return {
      batchSize: (modes[m] as (typeof modes)[number]).batchSize,
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
      loadSeconds: (readies[m] as { loadSeconds: number | null }).loadSeconds,
    };
  };
  const batched = summary(0);
  const single = summary(1);
  // Determinism: every round the same as the first, per mode; then batched vs alone.
  const unstable = runs.map((rs) => rs.filter((r) => r.text !== (rs[0] as Run).text).length);
  const bText = (runs[0]?.[0] as Run).text;
  const sText = (runs[1]?.[0] as Run).text;
  const diff = differing(bText, sText);
  const records = {
    compared: Math.max(batched.kept as number, single.kept as number),
    identical: bText === sText,
    differing: diff.count,
    firstDifference: diff.first,
    roundsDifferingFromFirst: { batched: unstable[0], single: unstable[1] },
  };
  const serverRatio =
    batched.serverDialoguesPerSec.length && single.serverDialoguesPerSec.length
      ? round(median(batched.serverDialoguesPerSec) / median(single.serverDialoguesPerSec), 3)
      : null;
  return {
    seeds: n,
    rounds,
    batched,
    single,
    records,
    ratio: round(batched.dialoguesPerSec / single.dialoguesPerSec, 3),
    serverRatio,
    cpuRatio:
      batched.dialoguesPerCpuSec && single.dialoguesPerCpuSec
        ? round(batched.dialoguesPerCpuSec / single.dialoguesPerCpuSec, 3)
        : null,
    loadavg1m: { before: loadBefore, after: load1() },
  };
}

// ---------------------------------------------------------------------------------------
// Resident server vs a fresh process per shard

function shardsOf(s: Setup, k: number) {
  return Array.from({ length: k }, (_, i) =>
    writeShard(s, `shard-${i}`, i * SHARD_SEEDS, SHARD_SEEDS),
  );
}

async function resident(ctx: BenchContext, cleanup: Cleanup, s: Setup, k: number) {
  const shards = shardsOf(s, k);
  const loadBefore = load1();
  const srv = new ServerProcess('resident stoker_fire.selfplay', selfplayArgv(s, BATCH), {
    cwd: s.dir,
    env: s.env,
    cleanup,
  });
  const ready = await srv.ready(READY_TIMEOUT_MS);
  const per: number[] = [];
  const texts: string[] = [];
  let kept = 0;
  let lastDone = ready.at;
  for (let i = 0; i < k; i++) {
    const sh = shards[i] as (typeof shards)[number];
    const output = join(s.dir, 'out', `resident-${i}.jsonl`);
    const res = await srv.shard({ id: `resident-${i}`, input: sh.input, output }, SHARD_TIMEOUT_MS);
    texts.push(checkOutput(output, sh.ids, res.items, res.metrics.kept));
    per.push(res.ms);
    kept += res.items;
    lastDone = res.doneAt;
  }
  const cpu = procCpuSeconds(srv.child.pid ?? -1);
  const bye = await srv.shutdown(30_000);
  const spawnToReady = ready.at - srv.spawnedAt;
  const wallMs = lastDone - srv.spawnedAt;
  return {
    texts,
    result: {
      wallSeconds: round(wallMs / 1000, 2),
      dialoguesPerSec: round((k * SHARD_SEEDS * 1000) / wallMs, 2),
      spawnToReadySeconds: round(spawnToReady / 1000, 2),
      loadSeconds: ready.loadSeconds === null ? null : round(ready.loadSeconds, 2),
      processStartSeconds:
        ready.loadSeconds === null ? null : round(spawnToReady / 1000 - ready.loadSeconds, 2),
      shardSeconds: per.map((v) => round(v / 1000, 3)),
      shardSecondsMedian: round(median(per) / 1000, 3),
      steadyShardSecondsMedian: per.length > 1 ? round(median(per.slice(1)) / 1000, 3) : null,
      cpuSeconds: cpu === null ? null : round(cpu, 2),
      shutdownToExitSeconds: round((bye.exitedAt - bye.sentAt) / 1000, 2),
      kept,
      processes: 1,
      loadavg1m: { before: loadBefore, after: load1() },
    },
  };
}

async function freshPerShard(ctx: BenchContext, cleanup: Cleanup, s: Setup, k: number) {
  const shards = shardsOf(s, k);
  const loadBefore = load1();
  const per: Array<{
    spawnToReady: number;
    load: number | null;
    shard: number;
    doneToExit: number;
    total: number;
    cpu: number | null;
  }> = [];
  const texts: string[] = [];
  let kept = 0;
  let first = 0;
  let lastExit = 0;
  for (let i = 0; i < k; i++) {
    const sh = shards[i] as (typeof shards)[number];
    const srv = new ServerProcess(`fresh stoker_fire.selfplay ${i}`, selfplayArgv(s, BATCH), {
      cwd: s.dir,
      env: s.env,
      cleanup,
    });
    if (i === 0) first = srv.spawnedAt;
    const ready = await srv.ready(READY_TIMEOUT_MS);
    const output = join(s.dir, 'out', `fresh-${i}.jsonl`);
    const res = await srv.shard({ id: `fresh-${i}`, input: sh.input, output }, SHARD_TIMEOUT_MS);
    const cpu = procCpuSeconds(srv.child.pid ?? -1);
    const bye = await srv.shutdown(30_000);
    texts.push(checkOutput(output, sh.ids, res.items, res.metrics.kept));
    kept += res.items;
    lastExit = bye.exitedAt;
    per.push({
      spawnToReady: ready.at - srv.spawnedAt,
      load: ready.loadSeconds,
      shard: res.ms,
      doneToExit: bye.exitedAt - res.doneAt,
      total: bye.exitedAt - srv.spawnedAt,
      cpu,
    });
  }
  const wallMs = lastExit - first;
  const loads = per.map((p) => p.load).filter((v): v is number => v !== null);
  const cpus = per.map((p) => p.cpu).filter((v): v is number => v !== null);
  const spawnToReady = median(per.map((p) => p.spawnToReady)) / 1000;
  return {
    texts,
    result: {
      wallSeconds: round(wallMs / 1000, 2),
      dialoguesPerSec: round((k * SHARD_SEEDS * 1000) / wallMs, 2),
      processSecondsMedian: round(median(per.map((p) => p.total)) / 1000, 2),
      spawnToReadySecondsMedian: round(spawnToReady, 2),
      loadSecondsMedian: loads.length ? round(median(loads), 2) : null,
      processStartSecondsMedian: loads.length ? round(spawnToReady - median(loads), 2) : null,
      shardSeconds: per.map((p) => round(p.shard / 1000, 3)),
      shardSecondsMedian: round(median(per.map((p) => p.shard)) / 1000, 3),
      doneToExitSecondsMedian: round(median(per.map((p) => p.doneToExit)) / 1000, 2),
      cpuSeconds:
        cpus.length === k
          ? round(
              cpus.reduce((a, b) => a + b, 0),
              2,
            )
          : null,
      kept,
      processes: k,
      loadavg1m: { before: loadBefore, after: load1() },
    },
  };
}

// ---------------------------------------------------------------------------------------

export const fireSelfplay: Benchmark = {
  name: 'fire-selfplay',
  async run(ctx, cleanup) {
    const n = ctx.quick ? 64 : 128;
    const k = ctx.quick ? 4 : 8;
    const rounds = ctx.quick ? 2 : 3;
    const steps = ctx.quick ? 24 : 40;
    const seeds = Math.max(n, k * SHARD_SEEDS);
    ctx.note(`fire-selfplay: ${seeds} synthetic seeds, ${TRAIN_DIALOGUES} training dialogues`);
    const prep = await setup(ctx, cleanup, seeds, steps);
    const s = prep.setup;
    mkdirSync(join(s.dir, 'out'), { recursive: true });

    ctx.note(
      `fire-selfplay: ${n} seeds as one shard, --batch-size ${BATCH} vs 1, ${rounds} rounds`,
    );
    const phaseA = cleanup.child('batching phase');
    const bvs = await batchedVsSingle(ctx, phaseA, s, n, rounds);
    await stopPhase(phaseA);

    ctx.note(`fire-selfplay: ${k} shards of ${SHARD_SEEDS} seeds through one resident server`);
    const phaseB = cleanup.child('resident phase');
    const res = await resident(ctx, phaseB, s, k);
    await stopPhase(phaseB);
    ctx.note(`fire-selfplay: ${k} shards of ${SHARD_SEEDS} seeds, a fresh process each`);
    const phaseC = cleanup.child('fresh phase');
    const fresh = await freshPerShard(ctx, phaseC, s, k);
    await stopPhase(phaseC);
    const shardsDiffering = res.texts.filter((t, i) => t !== fresh.texts[i]).length;

    const residentRatio = round(fresh.result.wallSeconds / res.result.wallSeconds, 3);
    const met = bvs.ratio >= BATCHED_TARGET;
    const residentMet = residentRatio >= RESIDENT_TARGET;
    return {
      unit: 'dialogues/s',
      backend: 'tiny',
      models: {
        choice: `trained here (${steps} steps each), not random: see bench/fire-selfplay.ts`,
        ...prep.info,
      },
      maxNewTokens: MAX_NEW_TOKENS,
      threads: 1,
      rules: '--min-rounds 1 --keep-unsatisfied',
      seeds: n,
      dialoguesPerSec: bvs.batched.dialoguesPerSec,
      batched: bvs.batched,
      baseline: { single: bvs.single, freshProcessPerShard: fresh.result },
      records: bvs.records,
      ratio: bvs.ratio,
      ratioOf: `batched (--batch-size ${BATCH}) dialogues/s / one at a time (--batch-size 1) dialogues/s, same ${n} seeds as one shard, request -> done, median of ${rounds}`,
      target: BATCHED_TARGET,
      met,
      serverRatio: bvs.serverRatio,
      cpuRatio: bvs.cpuRatio,
      batchingLoadavg1m: bvs.loadavg1m,
      residentVsFresh: {
        shards: k,
        seedsPerShard: SHARD_SEEDS,
        batchSize: BATCH,
        resident: res.result,
        baseline: fresh.result,
        recordsIdentical: shardsDiffering === 0,
        shardsDiffering,
        ratio: residentRatio,
        ratioOf: `${k} fresh processes in sequence (first spawn -> last exit) / one resident server (spawn -> last done), wall`,
        target: RESIDENT_TARGET,
        met: residentMet,
      },
      allTargetsMet: met && residentMet,
    };
  },
};
