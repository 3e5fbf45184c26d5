/**
 * The FIRE report: the evaluations of several models side by side, as the paper shows
 * them (docs/fire.md, section 4, "Published figures"), plus the acc@t picture and the run's
 * lineage.
 *
 * Input: one evaluation directory per model, as `python3 -m stoker_fire.evaluate` writes it:
 *   free.jsonl                   free dialogues (FIRE raw records)       required
 *   fixed-student.jsonl          student test {id, prediction, references}  optional
 *   fixed-teacher.jsonl          teacher test, text                       optional
 *   fixed-teacher-scores.jsonl   teacher test, {id, prediction, reference} optional
 *   evaluation.json              what ran: {engine, teacherEngine, device, ...}  optional
 *                                (shown as the report's "Engines" line)
 * and optionally the run's lineage.json (written by the controller under the run's
 * directory: what every stage consumed and produced, by content).
 *
 * Output (in --out): report.md (tables, the picture, lineage), acc-curve.svg and
 * report.json (every number of report.md). Metrics are computed by the same code as
 * `stoker metrics` (fire/metrics): nothing here re-derives them.
 */
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { readRegularFileSync } from '../../common/regular-file.js';
import { join } from 'node:path';
import {
  normalisedAt,
  type DialogueMetrics,
  type DialogueMetricsOptions,
} from '../metrics/dialogue.js';
import { dialogueMetricsOfFile, scoreErrorOfFile, textItemsOfFile } from '../metrics/files.js';
import type { ScoreErrorMetrics } from '../metrics/scores.js';
import { computeTextMetrics, type TextMetrics } from '../metrics/text.js';
import { UsageError } from '../../common/errors.js';
import { accCurveSvg } from './chart.js';
import { engineText, readEvaluationRun, type EvaluationRun } from './evaluation-run.js';

export interface ModelEvaluation {
  name: string;
  dir: string;
}

export interface ModelReport {
  name: string;
  dir: string;
  free: DialogueMetrics;
  /** AT / AT of the baseline model (1.00 for the baseline itself). */
  atNormalised: number | null;
  fixedStudent: TextMetrics | null;
  fixedTeacher: TextMetrics | null;
  teacherScores: ScoreErrorMetrics | null;
  /** evaluation.json of the evaluation directory: the engines that ran, or null when absent. */
  run: EvaluationRun | null;
}

export interface LineageFile {
  run?: string;
  name?: string;
  stages: Record<
    string,
    {
      consumed: LineageRow[];
      produced: LineageRow[];
    }
  >;
}

interface LineageRow {
  ref: string;
  path: string;
  kind: string;
  sha256: string | null;
  bytes: number | null;
  records: number | null;
}

export interface FireReport {
  title: string;
  baseline: string;
  options: DialogueMetricsOptions;
  models: ModelReport[];
  /** For each non-baseline model: does it refine better than the baseline? */
  comparisons: Array<{
    model: string;
    rr: { model: number | null; baseline: number | null; better: boolean | null };
    adr: { model: number | null; baseline: number | null; better: boolean | null };
  }>;
  lineage: LineageFile | null;
  files: { markdown: string; svg: string; json: string };
}

/** Bad report input (a missing evaluation file, a bad --model): exit 2, never retried. */
export class ReportInputError extends UsageError {}

/** Parse `NAME=DIR`. */
export function parseModelArg(value: string): ModelEvaluation {
  const eq = value.indexOf('=');
  if (eq <= 0 || eq === value.length - 1)
    throw new ReportInputError(
      `--model ${value}: expected NAME=DIR (e.g. final=runs/r1/stages/eval-final)`,
    );
  return { name: value.slice(0, eq), dir: value.slice(eq + 1) };
}

async function evaluateModel(m: ModelEvaluation, options: DialogueMetricsOptions) {
  const free = join(m.dir, 'free.jsonl');
  if (!existsSync(free))
    throw new ReportInputError(
      `${m.name}: ${free} does not exist (the free dialogues of stoker_fire.evaluate; is ${m.dir} an evaluation's output directory?)`,
    );
  const at = (name: string): string | null => {
    const p = join(m.dir, name);
    return existsSync(p) ? p : null;
  };
  const student = at('fixed-student.jsonl');
  const teacher = at('fixed-teacher.jsonl');
  const scores = at('fixed-teacher-scores.jsonl');
  const runFile = at('evaluation.json');
  return {
    name: m.name,
    dir: m.dir,
    run: runFile ? readRun(m.name, runFile) : null,
    free: (await dialogueMetricsOfFile(free, options)).metrics,
    fixedStudent: student ? computeTextMetrics(await textItemsOfFile(student)) : null,
    fixedTeacher: teacher ? computeTextMetrics(await textItemsOfFile(teacher)) : null,
    teacherScores: scores ? await scoreErrorOfFile(scores) : null,
  };
}

export async function buildFireReport(opts: {
  models: ModelEvaluation[];
  baseline?: string;
  lineageFile?: string;
  out: string;
  title?: string;
  options?: DialogueMetricsOptions;
}): Promise<FireReport> {
  if (opts.models.length === 0) throw new ReportInputError('at least one --model NAME=DIR');
  const names = opts.models.map((m) => m.name);
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup) throw new ReportInputError(`--model ${dup} given twice`);
  const baseline = opts.baseline ?? (names[0] as string);
  if (!names.includes(baseline))
    throw new ReportInputError(
      `--baseline ${baseline}: not one of the models (${names.join(', ')})`,
    );
  const options = opts.options ?? {};

  const evaluated = [];
  for (const m of opts.models) evaluated.push(await evaluateModel(m, options));
  const base = evaluated.find((e) => e.name === baseline);
  if (!base) throw new ReportInputError(`no baseline ${baseline}`);
  const models: ModelReport[] = evaluated.map((e) => ({
    ...e,
    atNormalised: normalisedAt(e.free, base.free),
  }));
  const comparisons = compareWithBaseline(models, base);
  const lineage = opts.lineageFile === undefined ? null : readLineage(opts.lineageFile);

  mkdirSync(opts.out, { recursive: true });
  const files = {
    markdown: join(opts.out, 'report.md'),
    svg: join(opts.out, 'acc-curve.svg'),
    json: join(opts.out, 'report.json'),
  };
  const report: FireReport = {
    title: opts.title ?? 'FIRE evaluation',
    baseline,
    options,
    models,
    comparisons,
    lineage,
    files,
  };
  const svg = accCurveSvg(
    models.map((m) => ({ name: m.name, values: m.free.accAt.map((v) => v ?? Number.NaN) })),
    { title: `${report.title}: acc@t, free dialogues` },
  );
  writeAtomic(files.svg, svg);
  writeAtomic(files.markdown, renderMarkdown(report));
  writeAtomic(files.json, `${JSON.stringify(report, null, 2)}\n`);
  return report;
}

/** For each model but the baseline: are its RR and ADR higher than the baseline's? */
function compareWithBaseline(
  models: ModelReport[],
  base: { name: string; free: DialogueMetrics },
): FireReport['comparisons'] {
  const better = (a: number | null, b: number | null): boolean | null =>
    a === null || b === null ? null : a > b;
  return models
    .filter((m) => m.name !== base.name)
    .map((m) => ({
      model: m.name,
      rr: { model: m.free.rr, baseline: base.free.rr, better: better(m.free.rr, base.free.rr) },
      adr: {
        model: m.free.adr,
        baseline: base.free.adr,
        better: better(m.free.adr, base.free.adr),
      },
    }));
}

/** A lineage file larger than this is refused (a real one is a few KB per stage). */
const MAX_JSON_INPUT_BYTES = 64 * 1024 * 1024;

function readRun(name: string, file: string): EvaluationRun {
  try {
    return readEvaluationRun(file, MAX_JSON_INPUT_BYTES);
  } catch (err) {
    throw new ReportInputError(`${name}: ${(err as Error).message}`);
  }
}

function readLineage(file: string): LineageFile {
  if (!existsSync(file)) throw new ReportInputError(`--lineage ${file}: no such file`);
  let text: string;
  try {
    // Non-blocking and a regular file only: a FIFO named here must not hang the report.
    text = readRegularFileSync(file, MAX_JSON_INPUT_BYTES);
  } catch (err) {
    throw new ReportInputError(`--lineage ${(err as Error).message}`);
  }
  try {
    return JSON.parse(text) as LineageFile;
  } catch (err) {
    throw new ReportInputError(`--lineage ${file}: not JSON (${(err as Error).message})`);
  }
}

function writeAtomic(path: string, text: string): void {
  writeFileSync(`${path}.tmp`, text);
  renameSync(`${path}.tmp`, path);
}

const num = (v: number | null | undefined, digits = 2): string =>
  v === null || v === undefined || !Number.isFinite(v) ? 'n/a' : v.toFixed(digits);

function table(rows: string[][]): string {
  const [head, ...body] = rows;
  if (!head) return '';
  const line = (r: string[]): string => `| ${r.join(' | ')} |`;
  return [line(head), line(head.map(() => '---')), ...body.map(line)].join('\n');
}

/** The headline table, as the paper's: AT (normalised), ADR, ATR, RR, acc@1 -> acc@Tmax. */
export function headlineTable(report: FireReport): string {
  return table([
    ['model', 'AT (norm., down)', 'AT', 'ADR', 'ATR', 'RR', 'acc@1 -> acc@T'],
    ...report.models.map((m) => {
      const acc = m.free.accAt;
      return [
        m.name === report.baseline ? `${m.name} (baseline)` : m.name,
        num(m.atNormalised),
        num(m.free.at),
        num(m.free.adr),
        num(m.free.atr),
        num(m.free.rr),
        `${num(acc[0], 3)} -> ${num(acc.at(-1), 3)}`,
      ];
    }),
  ]);
}

/** report.md: the title, then one section after another (each ends with a blank line). */
export function renderMarkdown(report: FireReport): string {
  const out = [
    ...introSection(report),
    ...accuracySection(report),
    ...fixedDialoguesSection(report),
    ...lineageSection(report),
  ];
  return `${out.join('\n')}\n`;
}

/** Title, what the numbers mean, the headline table, the comparisons, the picture. */
function introSection(report: FireReport): string[] {
  const o = report.models[0]?.free.options;
  const out = [
    `# ${report.title}`,
    '',
    `Free dialogues: each model answers as the student against the teacher (at most ${o?.tmax ?? 5} turns; ` +
      `a turn is correct when the teacher's score is >= ${o?.tau ?? 8}; a dialogue never satisfied counts turn ${o?.penalty ?? 6} in AT). ` +
      `Baseline: **${report.baseline}**. Definitions: docs/fire.md, section 4.`,
    '',
    headlineTable(report),
    '',
  ];
  const runs = report.models.filter((m) => m.run !== null);
  if (runs.length > 0)
    out.push(
      `Engines: ${runs.map((m) => `${m.name} ${engineText(m.run as EvaluationRun)}`).join('; ')}.`,
      '',
    );
  for (const c of report.comparisons)
    out.push(
      `- **${c.model}** against the baseline: ${compared('RR', c.rr)}; ${compared('ADR', c.adr)}.`,
    );
  out.push('', '![acc@t of every model](acc-curve.svg)', '');
  return out;
}

function compared(
  what: string,
  x: { model: number | null; baseline: number | null; better: boolean | null },
): string {
  return x.better === null
    ? `${what} cannot be compared (${num(x.model)} vs ${num(x.baseline)})`
    : `${what} ${num(x.model)} vs ${num(x.baseline)}: ${x.better ? 'higher' : 'not higher'}`;
}

/** acc@1..acc@T of every model (T: the longest of them), with the dialogue counts. */
function accuracySection(report: FireReport): string[] {
  const tmax = Math.max(...report.models.map((m) => m.free.accAt.length));
  const turns = Array.from({ length: tmax }, (_, i) => i);
  return [
    '## Accuracy by turn and counts',
    '',
    table([
      ['model', ...turns.map((i) => `acc@${i + 1}`), 'dialogues', 'start wrong', 'refined'],
      ...report.models.map((m) => [
        m.name,
        ...turns.map((i) => num(m.free.accAt[i], 3)),
        String(m.free.dialogues),
        String(m.free.startingWrong),
        String(m.free.refined),
      ]),
    ]),
    '',
  ];
}

/** The fixed-dialogue tests (text metrics and the teacher's score error); none: no section. */
function fixedDialoguesSection(report: FireReport): string[] {
  if (!report.models.some((m) => m.fixedStudent || m.fixedTeacher || m.teacherScores)) return [];
  return [
    '## Fixed dialogues',
    '',
    table([
      [
        'model',
        'student BLEU-1',
        'BLEU-4',
        'CIDEr-D',
        'teacher BLEU-1',
        'CIDEr-D',
        'score MAE',
        'items',
      ],
      ...report.models.map((m) => [
        m.name,
        num(m.fixedStudent?.bleu1, 3),
        num(m.fixedStudent?.bleu4, 3),
        num(m.fixedStudent?.ciderD, 3),
        num(m.fixedTeacher?.bleu1, 3),
        num(m.fixedTeacher?.ciderD, 3),
        num(m.teacherScores?.mae, 2),
        `${m.fixedStudent?.items ?? 0} / ${m.fixedTeacher?.items ?? 0}`,
      ]),
    ]),
    '',
    'The teacher test is taken by the teacher model in every evaluation unless stoker_fire.evaluate was told otherwise, so its columns should agree across rows.',
    '',
  ];
}

/** What each stage consumed from upstream stages, by content; no lineage: no section. */
function lineageSection(report: FireReport): string[] {
  if (!report.lineage) return [];
  const rows: string[][] = [['stage', 'consumed', 'records', 'sha256']];
  for (const [stage, l] of Object.entries(report.lineage.stages)) {
    for (const c of l.consumed)
      rows.push([
        stage,
        `\`${c.ref}\``,
        c.records === null ? '' : String(c.records),
        c.sha256 ? c.sha256.slice(0, 12) : c.kind,
      ]);
  }
  return [
    '## Lineage',
    '',
    'What every stage read from upstream stages, by content.',
    '',
    rows.length > 1 ? table(rows) : '(no stage consumed upstream outputs)',
    '',
  ];
}
