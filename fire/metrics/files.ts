/**
 * The metric commands' input files, read and checked line by line (jsonl.ts), every
 * problem a MetricsInputError naming `file:line` (exit 2 from the CLI).
 *
 *   dialogues  one raw FIRE record per line; the scores are `score` (the teacher's score
 *              per turn), or with scoresFrom 'turns' the teacher turns of `conversations`
 *              parsed by FIRE's rule (parsing.ts; unparseable = 0). Either way a record
 *              whose `score` disagrees with its teacher turns is counted (scoreMismatches):
 *              in the real FIRE data a few do (`Score: 8/10` stored as 0, `10/10` as 1, as
 *              if the fraction had been evaluated). Streamed: memory does not grow with
 *              the file.
 *   text       {"id"?, "prediction": string, "references": [string, ...]} per line, or
 *              "reference": string for a single one. Held in memory (CIDEr-D needs the
 *              document frequencies of the whole corpus before it can score an item).
 *   scores     {"id"?, "prediction": string (a teacher turn), "reference": number 0..10 or
 *              string (a teacher turn)} per line. Streamed.
 */
import {
  DialogueMetricsAccumulator,
  validateScores,
  type DialogueMetrics,
  type DialogueMetricsOptions,
} from './dialogue.js';
import { parseTeacher, scoreOrZero } from '../parsing.js';
import { isRecord, jsonLines, jsonType, MetricsInputError, type JsonLine } from './jsonl.js';
import { referenceScore, ScoreErrorAccumulator, type ScoreErrorMetrics } from './scores.js';
import type { TextItem } from './text.js';

export interface SkippedRecord {
  line: number;
  problem: string;
}

export type ScoresFrom = 'field' | 'turns';

export interface DialogueFileResult {
  metrics: DialogueMetrics;
  /** Records whose `score` array differs from their parsed teacher turns. */
  scoreMismatches: number;
  /** The first few of them. */
  mismatchExamples: Array<{ line: number; score: unknown; turns: number[] }>;
  /** Records skipped with skipBad (bad JSON or a bad `score`). */
  skipped: number;
  /** The first few of them, for a warning. */
  skippedExamples: SkippedRecord[];
}

const EXAMPLES = 5;

/** The teacher turns' scores (FIRE's rule, unparseable = 0), or null without any. */
function turnScores(record: Record<string, unknown>): number[] | null {
  const conversations = record.conversations;
  if (!Array.isArray(conversations)) return null;
  const scores: number[] = [];
  for (const turn of conversations) {
    if (isRecord(turn) && turn.role === 'teacher' && typeof turn.value === 'string')
      scores.push(scoreOrZero(parseTeacher(turn.value).score));
  }
  return scores.length === 0 ? null : scores;
}

function sameScores(a: unknown, b: readonly number[]): boolean {
  return Array.isArray(a) && a.length === b.length && a.every((x, i) => x === b[i]);
}

type DialogueLine = { scores: number[]; mismatch: number[] | null } | { problem: string };

/** A line's scores (from `score` or the turns), or what is wrong with it as a FIRE record. */
function dialogueScores(entry: JsonLine, from: ScoresFrom): DialogueLine {
  if (entry.error !== undefined) return { problem: entry.error };
  const record = entry.value;
  if (!isRecord(record))
    return { problem: `expected a FIRE record (a JSON object), got ${jsonType(record)}` };
  const turns = turnScores(record);
  const mismatch = turns !== null && !sameScores(record.score, turns) ? turns : null;
  if (from === 'turns') {
    if (turns === null)
      return { problem: 'no teacher turns in "conversations" (--scores-from turns reads them)' };
    return { scores: turns, mismatch: record.score === undefined ? null : mismatch };
  }
  const scores = record.score;
  if (scores === undefined)
    return { problem: 'no "score" field (the teacher\'s score per turn, e.g. "score": [3, 10])' };
  const problem = validateScores(scores);
  if (problem) return { problem: `"score"${problem.startsWith('[') ? '' : ' '}${problem}` };
  return { scores: scores as number[], mismatch };
}

/**
 * The dialogue metrics of a file of raw FIRE records. A bad record stops the read with a
 * MetricsInputError, or with `skipBad` is counted in `skipped` and left out.
 */
export async function dialogueMetricsOfFile(
  file: string,
  options: DialogueMetricsOptions = {},
  read: { skipBad?: boolean; scoresFrom?: ScoresFrom } = {},
): Promise<DialogueFileResult> {
  const acc = new DialogueMetricsAccumulator(options);
  const from = read.scoresFrom ?? 'field';
  let skipped = 0;
  const skippedExamples: SkippedRecord[] = [];
  let scoreMismatches = 0;
  const mismatchExamples: DialogueFileResult['mismatchExamples'] = [];
  for await (const batch of jsonLines(file)) {
    for (const entry of batch) {
      const got = dialogueScores(entry, from);
      if ('scores' in got) {
        acc.add(got.scores);
        if (got.mismatch) {
          scoreMismatches++;
          if (mismatchExamples.length < EXAMPLES) {
            const score = (entry.value as Record<string, unknown>).score;
            mismatchExamples.push({ line: entry.line, score, turns: got.mismatch });
          }
        }
        continue;
      }
      if (!read.skipBad)
        throw new MetricsInputError(
          `${got.problem} (--skip-bad skips such records)`,
          file,
          entry.line,
        );
      skipped++;
      if (skippedExamples.length < EXAMPLES)
        skippedExamples.push({ line: entry.line, problem: got.problem });
    }
  }
  return { metrics: acc.result(), skipped, skippedExamples, scoreMismatches, mismatchExamples };
}

function checkId(record: Record<string, unknown>, file: string, line: number): string {
  const id = record.id;
  if (id === undefined) return '';
  if (typeof id !== 'string' && typeof id !== 'number')
    throw new MetricsInputError(
      `"id" must be a string or a number, got ${jsonType(id)}`,
      file,
      line,
    );
  return ` (id ${JSON.stringify(id)})`;
}

function objectOf(entry: JsonLine, file: string, shape: string): Record<string, unknown> {
  if (entry.error !== undefined) throw new MetricsInputError(entry.error, file, entry.line);
  if (!isRecord(entry.value))
    throw new MetricsInputError(
      `expected ${shape}, got ${jsonType(entry.value)}`,
      file,
      entry.line,
    );
  return entry.value;
}

const TEXT_SHAPE = '{"id", "prediction": string, "references": [string, ...]}';

/** The items of a `metrics text` file. */
export async function textItemsOfFile(file: string): Promise<TextItem[]> {
  const items: TextItem[] = [];
  for await (const batch of jsonLines(file)) {
    for (const entry of batch) {
      const record = objectOf(entry, file, TEXT_SHAPE);
      const at = checkId(record, file, entry.line);
      const fail = (message: string) => new MetricsInputError(`${message}${at}`, file, entry.line);
      if (typeof record.prediction !== 'string')
        throw fail(`"prediction" must be a string, got ${jsonType(record.prediction)}`);
      let references: string[];
      if (record.references !== undefined && record.reference !== undefined) {
        throw fail('give "references" (a list) or "reference" (one), not both');
      } else if (record.references !== undefined) {
        const refs = record.references;
        if (!Array.isArray(refs) || refs.length === 0)
          throw fail(`"references" must be a non-empty list of strings, got ${jsonType(refs)}`);
        const bad = refs.findIndex((r) => typeof r !== 'string');
        if (bad !== -1)
          throw fail(`"references"[${bad}] must be a string, got ${jsonType(refs[bad])}`);
        references = refs as string[];
      } else if (typeof record.reference === 'string') {
        references = [record.reference];
      } else {
        throw fail(
          record.reference === undefined
            ? 'no "references" (a non-empty list of strings)'
            : `"reference" must be a string, got ${jsonType(record.reference)}`,
        );
      }
      items.push({ prediction: record.prediction, references });
    }
  }
  return items;
}

/** The score error of a `metrics scores` file. */
export async function scoreErrorOfFile(file: string): Promise<ScoreErrorMetrics> {
  const acc = new ScoreErrorAccumulator();
  for await (const batch of jsonLines(file)) {
    for (const entry of batch) {
      const record = objectOf(
        entry,
        file,
        '{"id", "prediction": string, "reference": number | string}',
      );
      const at = checkId(record, file, entry.line);
      const fail = (message: string) => new MetricsInputError(`${message}${at}`, file, entry.line);
      if (typeof record.prediction !== 'string')
        throw fail(
          `"prediction" must be a teacher turn (a string), got ${jsonType(record.prediction)}`,
        );
      if (record.reference === undefined)
        throw fail('no "reference" (a score 0..10 or a teacher turn)');
      const ref = referenceScore(record.reference);
      if ('problem' in ref) throw fail(`"reference": ${ref.problem}`);
      acc.add(record.prediction, ref.score);
    }
  }
  return acc.result();
}
