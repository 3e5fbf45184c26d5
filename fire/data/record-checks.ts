/**
 * The checks of a raw FIRE record across its fields (the format, and which problems are
 * errors or notes: record.ts), as a list of named checks run in order: the order of
 * RECORD_CHECKS is the order their issues are reported, after the field readers' own
 * (record-fields.ts). A check looks at the fields as read, never throws, and pushes zero
 * or more issues; a field a reader found unusable (null) is left to that reader's issue.
 */
import { parseStudent } from '../parsing.js';
import { describe, type RecordFields } from './record-fields.js';
import type { Issue } from './record.js';

/** The splits FIRE's data has; another one is a note. */
export const KNOWN_SPLITS: readonly string[] = ['fire_100k', 'fire_1m', 'fire_test'];

/** What a check looks at. */
export interface CheckInput {
  /** The record, for the fields only checks read: `score` and `round`. */
  raw: Record<string, unknown>;
  fields: RecordFields;
  /** The score parsed from each teacher turn (null: unparseable); null without turns. */
  parsed: ReadonlyArray<number | null> | null;
  /** The same, unparseable counted as 0 (the scores every FIRE tool uses). */
  scores: readonly number[] | null;
  /** A last score below this is `unsatisfied`. */
  satisfied: number;
}

export type RecordCheck = (input: CheckInput, issues: Issue[]) => void;

const clip = (text: string, n = 60): string =>
  JSON.stringify(text.length > n ? `${text.slice(0, n - 3)}...` : text);

const isScore = (s: unknown): s is number =>
  typeof s === 'number' && Number.isInteger(s) && s >= 0 && s <= 10;

/** `split` is one of KNOWN_SPLITS (note: unknown-split). */
const knownSplit: RecordCheck = ({ fields: { split } }, issues) => {
  if (split !== null && !KNOWN_SPLITS.includes(split))
    issues.push({
      code: 'unknown-split',
      message: `split ${describe(split)} is not one of ${KNOWN_SPLITS.join(', ')}`,
    });
};

/** Every teacher turn opens with a parseable score (error: unparseable-teacher). */
const teacherTurnsScored: RecordCheck = ({ fields: { turns }, parsed }, issues) => {
  if (!turns || !parsed) return;
  parsed.forEach((s, i) => {
    if (s === null)
      issues.push({
        code: 'unparseable-teacher',
        message: `round ${i + 1} (conversations[${2 * i + 1}]): no score (the first line must hold "Score:" and an integer 0-10; counts as 0): ${clip(turns.teacherTurns[i] as string)}`,
      });
  });
};

/** Every student response holds an `Answer:` (note: student-format). */
const studentTurnsAnswer: RecordCheck = ({ fields: { turns } }, issues) => {
  turns?.responses.forEach((t, i) => {
    if (parseStudent(t).answer === null)
      issues.push({
        code: 'student-format',
        message: `round ${i + 1} (conversations[${2 * i}]): student response has no "Answer:": ${clip(t)}`,
      });
  });
};

/** `score` is a list of integers 0-10 (schema) equal to the teacher turns' (score-mismatch). */
const scoreFieldMatchesTurns: RecordCheck = ({ raw, scores }, issues) => {
  const field = raw.score;
  if (!Array.isArray(field) || !field.every(isScore)) {
    issues.push({
      code: 'schema',
      message: `score: must be a list of integers 0-10, got ${describe(field)}`,
    });
  } else if (scores) {
    if (field.length !== scores.length || field.some((s, i) => s !== scores[i]))
      issues.push({
        code: 'score-mismatch',
        message: `score ${describe(field)} does not match the teacher turns' scores ${describe(scores)}`,
      });
  }
};

/** `round` is an integer >= 1 (schema) equal to the number of rounds (round-mismatch). */
const roundMatchesTurns: RecordCheck = ({ raw, fields: { turns } }, issues) => {
  const round = raw.round;
  if (typeof round !== 'number' || !Number.isInteger(round) || round < 1)
    issues.push({
      code: 'schema',
      message: `round: must be an integer >= 1, got ${describe(round)}`,
    });
  else if (turns && round !== turns.teacherTurns.length)
    issues.push({
      code: 'round-mismatch',
      message: `round is ${round} but the conversation has ${turns.teacherTurns.length} round${turns.teacherTurns.length === 1 ? '' : 's'}`,
    });
};

/** Each score is above the one before (note: not-improving). */
const scoresImprove: RecordCheck = ({ scores }, issues) => {
  if (scores && scores.some((s, i) => i > 0 && s <= (scores[i - 1] as number)))
    issues.push({
      code: 'not-improving',
      message: `scores ${describe(scores)} do not strictly improve`,
    });
};

/** The last score is at least the satisfied threshold (note: unsatisfied). */
const endsSatisfied: RecordCheck = ({ scores, satisfied }, issues) => {
  const last = scores?.at(-1);
  if (last !== undefined && last < satisfied)
    issues.push({
      code: 'unsatisfied',
      message: `last score ${last} is below ${satisfied}`,
    });
};

/** Every check, in the order of reports. */
export const RECORD_CHECKS: readonly RecordCheck[] = [
  knownSplit,
  teacherTurnsScored,
  studentTurnsAnswer,
  scoreFieldMatchesTurns,
  roundMatchesTurns,
  scoresImprove,
  endsSatisfied,
];
