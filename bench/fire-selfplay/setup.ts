/**
 * fire-selfplay's setup (bench/fire-selfplay.ts says what it measures): the synthetic
 * seeds and training dialogues (stoker_fire.synth), the student and teacher views of the
 * dialogues, a tiny student and teacher trained on them (stoker_fire.train --backend
 * tiny), and the shard files and self-play command line every phase uses.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { type BenchContext, type Cleanup, round } from '../lib/harness.js';
import { SYSTEM_PYTHON, payloadEnv, runCommand } from '../lib/python-server.js';

export const PY = SYSTEM_PYTHON;
export const SHARD_SEEDS = 16;
export const MAX_NEW_TOKENS = 32;
export const BATCH = 128; // what training-configs/fire-mini uses
export const TRAIN_DIALOGUES = 256;
const TRAIN_BATCH = 16;
export const READY_TIMEOUT_MS = 180_000;
export const SHARD_TIMEOUT_MS = 600_000;

export const load1 = (): number => round(loadavg()[0] ?? 0, 2);

export interface Setup {
  dir: string;
  env: NodeJS.ProcessEnv;
  student: string;
  teacher: string;
  imageRoot: string;
  seedLines: string[];
  seedIds: string[];
}

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

type RunOpts = Parameters<typeof runCommand>[2];

/**
 * The seeds, both models and what they were trained on: 1. check python has torch and
 * Pillow; 2. seeds and training dialogues; 3. their student and teacher views; 4. train
 * the student and the teacher.
 */
export async function setup(ctx: BenchContext, cleanup: Cleanup, seeds: number, steps: number) {
  const dir = mkdtempSync(join(ctx.tmpRoot, 'fire-selfplay-'));
  cleanup.defer(`remove ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
  const env = payloadEnv(ctx.root);
  const opts: RunOpts = { cwd: dir, env, cleanup, timeoutMs: 300_000 };
  const probe = await runCommand(
    'python torch probe',
    [PY, '-c', 'import torch, PIL; print(torch.__version__)'],
    opts,
  ).catch((err: Error) => {
    throw new Error(`fire-selfplay needs ${PY} with torch and Pillow: ${err.message}`);
  });
  const data = await synthesize(dir, opts, seeds);
  ctx.note(`fire-selfplay: training a tiny student and teacher (${steps} steps each)`);
  const s = { dir, env };
  const student = await train(
    ctx,
    cleanup,
    s,
    'student',
    data.studentView,
    String(data.trainSet.imageRoot),
    steps,
  );
  const teacher = await train(ctx, cleanup, s, 'teacher', data.teacherView, null, steps);
  const seedLines = readFileSync(String(data.seedSet.file), 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '');
  if (seedLines.length !== seeds)
    throw new Error(`stoker_fire.synth wrote ${seedLines.length} seeds, wanted ${seeds}`);
  const setupInfo = {
    torch: probe.stdoutLines[probe.stdoutLines.length - 1] ?? null,
    trainingDialogues: TRAIN_DIALOGUES,
    views: data.views,
    student: student.info,
    teacher: teacher.info,
  };
  const out: Setup = {
    dir,
    env,
    student: student.model,
    teacher: teacher.model,
    imageRoot: String(data.seedSet.imageRoot),
    seedLines,
    seedIds: seedLines.map((l) => String((JSON.parse(l) as { id: unknown }).id)),
  };
  return { setup: out, info: setupInfo };
}

/** The seeds, the training dialogues and the two views of them, as files in dir. */
async function synthesize(dir: string, opts: RunOpts, seeds: number) {
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
  return { seedSet, trainSet, studentView, teacherView, views };
}

export function selfplayArgv(s: Setup, batchSize: number): string[] {
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

export function writeShard(s: Setup, name: string, from: number, n: number) {
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

export function shardsOf(s: Setup, k: number) {
  return Array.from({ length: k }, (_, i) =>
    writeShard(s, `shard-${i}`, i * SHARD_SEEDS, SHARD_SEEDS),
  );
}
