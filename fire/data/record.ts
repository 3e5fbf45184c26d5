/**
 * One raw FIRE dialogue record (docs/fire.md, section 1), checked field by field.
 *
 *   const { dialogue, issues } = checkRecord(JSON.parse(line));
 *   issues: [{code: 'score-mismatch', message: 'score [0, 1] does not match ...'}]
 *   dialogue: typed fields (null when the record is too broken to read a dialogue from)
 *
 * The format, as checked here:
 *   id            optional: a non-empty string or an integer. Real FIRE records have none;
 *                 then the id is derived from the seed the dialogue grew from:
 *                 `sha1:` + 16 hex digits of SHA-1 over JSON [image, question, groundtruth]
 *                 (recordId), so a seed run twice gets the same id in every tool.
 *   image/img_path  a path relative to the image root; at least one, equal when both.
 *   question, groundtruth  {role: "user", value: non-empty string}; a plain string is
 *                 accepted too, as self-play seeds allow (stoker_fire/selfplay_rules.py
 *                 seed_from_record), and read the same way.
 *   conversations student response, teacher feedback, student, teacher, ...: starts with
 *                 the student, alternates, ends with the teacher (a round is a pair);
 *                 `type` may be absent, else "response"/"feedback"; values non-empty
 *                 strings; optional human_rating an integer 1-5.
 *   score         integers 0-10, one per teacher turn, equal to the parsed teacher scores
 *                 (fire/parsing rule: first integer on a `Score:` first line).
 *   round         the number of rounds (teacher turns).
 *   source, split non-empty strings; split fire_100k, fire_1m or fire_test (else a note).
 *
 * Errors versus notes, decided on the 229 real records of FIRE's public sample data:
 *   - A dialogue whose scores do not strictly improve, or that ends below 8, is a NOTE.
 *     FIRE-100K and FIRE-Bench are written by GPT-4V and need not improve (FIRE-Bench has
 *     dialogues ending unsatisfied), and even the published FIRE-1M sample has one
 *     [4, 4, 6] dialogue. Strict improvement is a keep rule (`stoker data merge
 *     --keep-rule fire`), not a property of the format.
 *   - A `score` array that disagrees with the teacher text is an ERROR. Four real records
 *     carry 0/1 flags there ([0, 1] for "Score: 8/10." then "Score: 10/10."): every FIRE
 *     tool (self-play stopping, metrics, the keep rule) reads the text, so such a record
 *     would be judged differently depending on which field a tool trusts.
 *   - An unparseable teacher turn is an ERROR (it counts as score 0 where a number is
 *     needed, as the reference code does): a teacher view would teach the broken format.
 *   - A student turn without `Answer:` is a NOTE (all real ones have it; the text is still
 *     a usable response).
 * Scores used by notes, views and the keep rule are the parsed ones (unparseable = 0).
 *
 * Where: this module holds the vocabulary (problem codes, Issue, Dialogue) and the entry
 * points; the field readers are record-fields.ts, the checks across fields (a list of
 * named checks, in the order of reports) record-checks.ts.
 */
import { createHash } from 'node:crypto';
import { StokerError } from '../../common/errors.js';
import { parseTeacher, scoreOrZero } from '../parsing.js';
import { RECORD_CHECKS, type CheckInput } from './record-checks.js';
import {
  describe,
  idOf,
  imageField,
  isObject,
  readFields,
  textField,
  type RecordFields,
} from './record-fields.js';

/**
 * A record a command cannot use (without --skip-bad), or an input it cannot read: the
 * CLI prints the message (it names file:line) and exits 1.
 */
export class BadRecordError extends StokerError {
  override name = 'BadRecordError';
}

/** A score at or above this ends a dialogue satisfied (tau; docs/fire.md, sections 3 and 4). */
export const SATISFIED = 8;

export type Severity = 'error' | 'note';

/** Every problem category, with its severity. The order is the order of reports. */
export const PROBLEM_CODES = {
  'malformed-json': 'error',
  'line-too-long': 'error',
  schema: 'error',
  'role-order': 'error',
  'unparseable-teacher': 'error',
  'score-mismatch': 'error',
  'round-mismatch': 'error',
  'no-image': 'error',
  'image-missing': 'error',
  'image-unreadable': 'error',
  'duplicate-id': 'error',
  'unknown-split': 'note',
  'not-improving': 'note',
  unsatisfied: 'note',
  'student-format': 'note',
} as const satisfies Record<string, Severity>;

export type ProblemCode = keyof typeof PROBLEM_CODES;

export const severityOf = (code: ProblemCode): Severity => PROBLEM_CODES[code];

export interface Issue {
  code: ProblemCode;
  message: string;
}

/** A readable dialogue: what views, shards and merges need, typed. */
export interface Dialogue {
  id: string;
  /** True when the record had no `id` (see recordId). */
  idDerived: boolean;
  image: string;
  question: string;
  groundtruth: string;
  /** Student responses, round by round, verbatim. */
  responses: string[];
  /** Teacher turns, round by round, verbatim. */
  teacherTurns: string[];
  /** Parsed teacher scores (unparseable counts as 0). */
  scores: number[];
  source: string;
  split: string;
}

/** What a summary counts a record under; null where the field is unusable. */
export interface Facets {
  split: string | null;
  source: string | null;
  rounds: number | null;
}

export interface Checked {
  /** Null when the record is too broken to read as a dialogue (see issues). */
  dialogue: Dialogue | null;
  /** The record's id, or its derived id; null when neither can be had. */
  id: string | null;
  issues: Issue[];
  facets: Facets;
}

export interface CheckOptions {
  /** The satisfied threshold for the `unsatisfied` note (default 8). */
  satisfied?: number;
}

/** `sha1:` + 16 hex digits of SHA-1 over JSON [image, question, groundtruth]. */
export function derivedId(image: string, question: string, groundtruth: string): string {
  const h = createHash('sha1').update(JSON.stringify([image, question, groundtruth]), 'utf8');
  return `sha1:${h.digest('hex').slice(0, 16)}`;
}

/**
 * Check one parsed JSON value as a raw FIRE record. Never throws.
 *   1. not an object: one schema issue, nothing else to read;
 *   2. read the fields (record-fields.ts), each unusable one with its issue;
 *   3. parse the teacher turns' scores;
 *   4. run every check across fields (record-checks.ts), in order;
 *   5. the id (own or derived), the dialogue when every field it needs is usable, facets.
 */
export function checkRecord(value: unknown, opts: CheckOptions = {}): Checked {
  if (!isObject(value)) return notAnObject(value);
  const issues: Issue[] = [];
  const fields = readFields(value, issues);
  const parsed = fields.turns?.teacherTurns.map((t) => parseTeacher(t).score) ?? null;
  const scores = parsed?.map(scoreOrZero) ?? null;
  const input: CheckInput = {
    raw: value,
    fields,
    parsed,
    scores,
    satisfied: opts.satisfied ?? SATISFIED,
  };
  for (const check of RECORD_CHECKS) check(input, issues);
  const id = fields.id ?? (fields.idProblem === undefined ? derivedIdOf(fields) : null);
  return {
    dialogue: id === null ? null : dialogueOf(id, fields, scores),
    id,
    issues,
    facets: {
      split: fields.split,
      source: fields.source,
      rounds: fields.turns ? fields.turns.teacherTurns.length : null,
    },
  };
}

function notAnObject(value: unknown): Checked {
  const got = Array.isArray(value) ? 'a list' : describe(value);
  return {
    dialogue: null,
    id: null,
    issues: [{ code: 'schema', message: `a record must be a JSON object, got ${got}` }],
    facets: { split: null, source: null, rounds: null },
  };
}

/** The derived id, when image, question and groundtruth are usable. */
function derivedIdOf(f: Pick<RecordFields, 'image' | 'question' | 'groundtruth'>): string | null {
  return f.image !== null && f.question !== null && f.groundtruth !== null
    ? derivedId(f.image, f.question, f.groundtruth)
    : null;
}

/** The typed dialogue, or null when a field it needs is unusable. */
function dialogueOf(id: string, f: RecordFields, scores: number[] | null): Dialogue | null {
  const { image, question, groundtruth, turns, source, split } = f;
  if (!turns || !scores || image === null || question === null || groundtruth === null) return null;
  if (source === null || split === null) return null;
  return {
    id,
    idDerived: f.id === null,
    image,
    question,
    groundtruth,
    responses: turns.responses,
    teacherTurns: turns.teacherTurns,
    scores,
    source,
    split,
  };
}

export const hasErrors = (issues: readonly Issue[]): boolean =>
  issues.some((i) => severityOf(i.code) === 'error');

/** Why a record cannot be used: its first error (else its first issue), as `code: message`. */
export function badRecordReason(issues: readonly Issue[]): string {
  const first = issues.find((i) => severityOf(i.code) === 'error') ?? issues[0];
  return first ? `${first.code}: ${first.message}` : 'not a usable record';
}

/**
 * The id of a parsed line for sharding and deduplication: its `id`, else the derived id.
 * Null when it has neither (not an object, a bad id, or no image/question/groundtruth).
 * Reads only the fields an id comes from.
 */
export function recordId(value: unknown): string | null {
  if (!isObject(value)) return null;
  const own = idOf(value);
  if (own.id !== null || own.problem) return own.id;
  const issues: Issue[] = [];
  return derivedIdOf({
    image: imageField(value, issues),
    question: textField(value, 'question', issues),
    groundtruth: textField(value, 'groundtruth', issues),
  });
}
