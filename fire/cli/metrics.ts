/**
 * `stoker metrics ...`: FIRE-Bench metrics of evaluation outputs (docs/fire.md, section 4;
 * definitions in fire/metrics/). No Redis, no run: files in, numbers out.
 *
 *   stoker metrics dialogues free.jsonl [--baseline base.jsonl] [--tau 8] [--tmax 5]
 *                                       [--penalty N] [--scores-from field|turns] [--skip-bad] [--json]
 *   stoker metrics text fixed-student.jsonl [--json]
 *   stoker metrics scores fixed-teacher-scores.jsonl [--json]
 *
 * Output: a table, or with --json one JSON object on stdout (fields in the README,
 * "stoker metrics"). Warnings (skipped records) go to stderr.
 * Exit codes: 0 computed; 2 invalid input (a flag, a missing file, a malformed line:
 * the message names file:line); 1 anything else (main.ts).
 */
import { basename } from 'node:path';
import type { Command } from 'commander';
import { UsageError } from '../../common/errors.js';
import {
  normalisedAt,
  resolveDialogueOptions,
  type DialogueMetrics,
  type ResolvedDialogueOptions,
} from '../metrics/dialogue.js';
import {
  dialogueMetricsOfFile,
  scoreErrorOfFile,
  textItemsOfFile,
  type DialogueFileResult,
  type ScoresFrom,
} from '../metrics/files.js';
import { requireInputFile } from '../metrics/jsonl.js';
import { UNPARSEABLE_ERROR } from '../metrics/scores.js';
import { computeTextMetrics } from '../metrics/text.js';
import { table } from '../../common/table.js';
import { counted, print, printJson } from './output.js';

/** A flag's number, strictly (commander hands over the raw text). */
export function numberFlag(
  name: string,
  raw: string | undefined,
  integer = false,
): number | undefined {
  if (raw === undefined) return undefined;
  const value = raw.trim() === '' ? Number.NaN : Number(raw);
  if (!Number.isFinite(value) || (integer && !Number.isInteger(value)))
    throw new UsageError(
      `--${name}: expected ${integer ? 'an integer' : 'a number'}, got "${raw}"`,
    );
  return value;
}

/** --tau/--tmax/--penalty as FIRE's metric options (a bad value is a usage error). */
export function dialogueOptions(o: {
  tau?: string;
  tmax?: string;
  penalty?: string;
}): ResolvedDialogueOptions {
  try {
    return resolveDialogueOptions({
      tau: numberFlag('tau', o.tau),
      tmax: numberFlag('tmax', o.tmax, true),
      penalty: numberFlag('penalty', o.penalty),
    });
  } catch (err) {
    if (err instanceof RangeError) throw new UsageError(`--${err.message}`);
    throw err;
  }
}

const fixed = (v: number | null, digits: number) => (v === null ? '-' : v.toFixed(digits));

function warnSkipped(file: string, r: DialogueFileResult): void {
  if (r.skipped === 0) return;
  const examples = r.skippedExamples.map((s) => `\n  ${file}:${s.line}: ${s.problem}`).join('');
  process.stderr.write(
    `warning: skipped ${r.skipped} bad record${r.skipped === 1 ? '' : 's'} of ${file}${examples}${r.skipped > r.skippedExamples.length ? '\n  ...' : ''}\n`,
  );
}

function warnMismatches(file: string, r: DialogueFileResult, from: ScoresFrom): void {
  if (r.scoreMismatches === 0) return;
  const n = r.scoreMismatches;
  const examples = r.mismatchExamples
    .map(
      (m) =>
        `\n  ${file}:${m.line}: "score" ${JSON.stringify(m.score)}, turns ${JSON.stringify(m.turns)}`,
    )
    .join('');
  process.stderr.write(
    `warning: ${n} record${n === 1 ? '' : 's'} of ${file} ha${n === 1 ? 's a "score" array that differs' : 've "score" arrays that differ'} from the teacher turns (FIRE's parsing rule); ${from === 'turns' ? 'these metrics use the turns' : '--scores-from turns uses the turns'}${examples}${n > r.mismatchExamples.length ? '\n  ...' : ''}\n`,
  );
}

function dialogueJson(file: string, r: DialogueFileResult) {
  return { file, ...r.metrics, skipped: r.skipped, scoreMismatches: r.scoreMismatches };
}

function scoresFrom(raw: string | undefined): ScoresFrom {
  if (raw === undefined || raw === 'field' || raw === 'turns') return raw ?? 'field';
  throw new UsageError(`--scores-from: expected field or turns, got "${raw}"`);
}

/** The paper's layout: one row per run, AT normalised to the baseline (1.00 on its row). */
function dialogueTable(
  rows: Array<{ label: string; m: DialogueMetrics; atNorm: number | null }>,
  withBaseline: boolean,
): string {
  const tmax = rows[0]?.m.options.tmax ?? 0;
  const accHeads = Array.from({ length: tmax }, (_, i) => `acc@${i + 1}`);
  const head = ['run', 'dialogues', 'start wrong', 'refined', 'AT'];
  if (withBaseline) head.push('AT norm');
  head.push('ADR', 'ATR', 'RR', ...accHeads);
  const body = rows.map(({ label, m, atNorm }) => {
    const row = [
      label,
      String(m.dialogues),
      String(m.startingWrong),
      String(m.refined),
      fixed(m.at, 3),
    ];
    if (withBaseline) row.push(fixed(atNorm, 2));
    row.push(fixed(m.adr, 3), fixed(m.atr, 3), fixed(m.rr, 3), ...m.accAt.map((a) => fixed(a, 3)));
    return row;
  });
  return table([head, ...body]);
}

function labels(file: string, baseline: string): [string, string] {
  const a = basename(file);
  const b = basename(baseline);
  return a === b ? [file, baseline] : [a, b];
}

interface DialoguesFlags {
  baseline?: string;
  tau?: string;
  tmax?: string;
  penalty?: string;
  scoresFrom?: string;
  skipBad?: boolean;
  json?: boolean;
}

/** A file's dialogue metrics, with the file: the run's, or the baseline's. */
interface Measured {
  file: string;
  r: DialogueFileResult;
}

async function dialoguesAction(file: string, o: DialoguesFlags): Promise<void> {
  const options = dialogueOptions(o);
  // Both files before any work: a mistyped baseline should not wait for a large run file.
  requireInputFile(file);
  if (o.baseline !== undefined) requireInputFile(o.baseline);
  const read = { skipBad: o.skipBad ?? false, scoresFrom: scoresFrom(o.scoresFrom) };
  const run: Measured = { file, r: await dialogueMetricsOfFile(file, options, read) };
  const base: Measured | undefined = o.baseline
    ? { file: o.baseline, r: await dialogueMetricsOfFile(o.baseline, options, read) }
    : undefined;
  for (const { file: f, r } of base ? [run, base] : [run]) {
    warnSkipped(f, r);
    warnMismatches(f, r, read.scoresFrom);
  }
  const atNorm = base ? normalisedAt(run.r.metrics, base.r.metrics) : null;
  if (o.json) printJson(dialoguesJson(run, base, read.scoresFrom, atNorm));
  else print(describeDialogues(run, base, options, atNorm));
}

function dialoguesJson(
  run: Measured,
  base: Measured | undefined,
  from: ScoresFrom,
  atNorm: number | null,
) {
  return {
    ...dialogueJson(run.file, run.r),
    scoresFrom: from,
    atNormalised: atNorm,
    ...(base
      ? {
          baseline: {
            ...dialogueJson(base.file, base.r),
            atNormalised: base.r.metrics.at ? 1 : null,
          },
        }
      : {}),
  };
}

/** The options in words, the table (the baseline's row first), then notes. */
function describeDialogues(
  run: Measured,
  base: Measured | undefined,
  options: ResolvedDialogueOptions,
  atNorm: number | null,
): string {
  const { tau, tmax, penalty } = options;
  const lines = [
    `FIRE free-dialogue metrics: correct means score >= ${tau}; first ${tmax} turns; a dialogue never satisfied counts turn ${penalty}`,
    '',
  ];
  if (base) {
    const [runLabel, baseLabel] = labels(run.file, base.file);
    const b = base.r.metrics;
    const baseNorm = b.at === null || b.at === 0 ? null : 1;
    lines.push(
      dialogueTable(
        [
          { label: baseLabel, m: b, atNorm: baseNorm },
          { label: runLabel, m: run.r.metrics, atNorm },
        ],
        true,
      ),
    );
  } else {
    lines.push(
      dialogueTable([{ label: basename(run.file), m: run.r.metrics, atNorm: null }], false),
    );
  }
  const truncated = run.r.metrics.truncated + (base?.r.metrics.truncated ?? 0);
  if (truncated > 0)
    lines.push(
      '',
      `${counted(truncated, 'dialogue')} longer than ${tmax} turns counted with the first ${tmax}`,
    );
  if (run.r.metrics.rr === null) lines.push('', 'RR: no dialogue starts wrong');
  return lines.join('\n');
}

async function textAction(file: string, o: { json?: boolean }): Promise<void> {
  const m = computeTextMetrics(await textItemsOfFile(file));
  if (o.json) return printJson({ file, ...m });
  print(
    [
      `text metrics: ${counted(m.items, 'item')}, ${counted(m.references, 'reference')} (${m.predictionTokens} prediction tokens, ${m.referenceTokens} reference tokens)`,
      '',
      table([
        ['BLEU-1', fixed(m.bleu1, 4)],
        ['BLEU-2', fixed(m.bleu2, 4)],
        ['BLEU-3', fixed(m.bleu3, 4)],
        ['BLEU-4', fixed(m.bleu4, 4)],
        ['CIDEr-D', fixed(m.ciderD, 4)],
      ]),
    ].join('\n'),
  );
}

async function scoresAction(file: string, o: { json?: boolean }): Promise<void> {
  const m = await scoreErrorOfFile(file);
  if (o.json) return printJson({ file, ...m });
  print(
    [
      `teacher score error: ${counted(m.items, 'item')}, ${m.unparseable} unparseable (each an error of ${UNPARSEABLE_ERROR})`,
      '',
      table([
        ['MAE', fixed(m.mae, 4)],
        ['MAE (parseable only)', fixed(m.maeParseable, 4)],
      ]),
    ].join('\n'),
  );
}

export function registerMetricsCommands(program: Command): void {
  const metrics = program
    .command('metrics')
    .description(
      'FIRE-Bench metrics of evaluation outputs: free dialogues (acc@t, RR, AT, ADR, ATR), text (BLEU, CIDEr-D), teacher score error (MAE)',
    );

  metrics
    .command('dialogues')
    .description(
      'free-dialogue metrics of raw FIRE records (the teacher score per turn in "score"): acc@1..Tmax, RR, AT (normalised to --baseline), ADR, ATR',
    )
    .argument('<file>', 'JSONL, one raw FIRE record per line')
    .option(
      '--baseline <file>',
      'a baseline run (same format): shown side by side, AT normalised to it',
    )
    .option('--tau <n>', 'a turn is correct when its score is >= tau (default 8)')
    .option(
      '--tmax <n>',
      'turns counted per dialogue; longer ones count their first tmax (default 5)',
    )
    .option('--penalty <n>', 'the turn AT counts for a dialogue never satisfied (default tmax + 1)')
    .option(
      '--scores-from <source>',
      'field: the records\' "score" arrays (default); turns: the teacher turns of "conversations", parsed by FIRE\'s rule (unparseable = 0)',
    )
    .option(
      '--skip-bad',
      'skip (and count) malformed lines and records without a valid score array, instead of stopping',
    )
    .option('--json', 'one JSON object (README, "stoker metrics")')
    .action(dialoguesAction);

  metrics
    .command('text')
    .description(
      'corpus BLEU-1..4 and CIDEr-D (coco-caption definitions) of predictions against references',
    )
    .argument('<file>', 'JSONL: {"id", "prediction": string, "references": [string, ...]} per line')
    .option('--json', 'one JSON object (README, "stoker metrics")')
    .action(textAction);

  metrics
    .command('scores')
    .description(
      `teacher score error: MAE between the score parsed from each predicted teacher turn and the reference score (unparseable = error ${UNPARSEABLE_ERROR})`,
    )
    .argument(
      '<file>',
      'JSONL: {"id", "prediction": teacher turn, "reference": score or teacher turn} per line',
    )
    .option('--json', 'one JSON object (README, "stoker metrics")')
    .action(scoresAction);
}
