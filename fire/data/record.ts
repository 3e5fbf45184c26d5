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
 */
import { createHash } from 'node:crypto';
import { StokerError } from '../../common/errors.js';
import { parseStudent, parseTeacher, scoreOrZero } from '../parsing.js';
import { isInsideRoot } from './images.js';

/**
 * A record a command cannot use (without --skip-bad), or an input it cannot read: the
 * CLI prints the message (it names file:line) and exits 1.
 */
export class BadRecordError extends StokerError {
  override name = 'BadRecordError';
}

export const KNOWN_SPLITS: readonly string[] = ['fire_100k', 'fire_1m', 'fire_test'];
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

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

const describe = (v: unknown): string => {
  if (v === undefined) return 'nothing';
  const s = JSON.stringify(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
};

const clip = (text: string, n = 60): string =>
  JSON.stringify(text.length > n ? `${text.slice(0, n - 3)}...` : text);

/** `sha1:` + 16 hex digits of SHA-1 over JSON [image, question, groundtruth]. */
export function derivedId(image: string, question: string, groundtruth: string): string {
  const h = createHash('sha1').update(JSON.stringify([image, question, groundtruth]), 'utf8');
  return `sha1:${h.digest('hex').slice(0, 16)}`;
}

function idOf(r: Record<string, unknown>): { id: string | null; problem?: string } {
  const v = r.id;
  if (v === undefined || v === null) return { id: null };
  if (typeof v === 'string' && v !== '') return { id: v };
  if (typeof v === 'number' && Number.isSafeInteger(v)) return { id: String(v) };
  return { id: null, problem: `id: must be a non-empty string or an integer, got ${describe(v)}` };
}

function textField(
  r: Record<string, unknown>,
  name: 'question' | 'groundtruth',
  issues: Issue[],
): string | null {
  const v = r[name];
  if (typeof v === 'string') {
    if (v.trim() === '') issues.push({ code: 'schema', message: `${name}: must not be empty` });
    return v.trim() === '' ? null : v;
  }
  if (!isObject(v)) {
    issues.push({
      code: 'schema',
      message: `${name}: must be {role: "user", value: string}, got ${describe(v)}`,
    });
    return null;
  }
  if (v.role !== 'user')
    issues.push({
      code: 'schema',
      message: `${name}.role: must be "user", got ${describe(v.role)}`,
    });
  if (typeof v.value !== 'string' || v.value.trim() === '') {
    issues.push({
      code: 'schema',
      message: `${name}.value: must be a non-empty string, got ${describe(v.value)}`,
    });
    return null;
  }
  return v.value;
}

function imageField(r: Record<string, unknown>, issues: Issue[]): string | null {
  const found: string[] = [];
  for (const name of ['image', 'img_path'] as const) {
    const v = r[name];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'string' || v === '') {
      issues.push({
        code: 'schema',
        message: `${name}: must be a non-empty string, got ${describe(v)}`,
      });
      return null;
    }
    found.push(v);
  }
  const [image, other] = found;
  if (image === undefined) {
    issues.push({ code: 'no-image', message: 'no image: neither image nor img_path is set' });
    return null;
  }
  if (other !== undefined && other !== image) {
    issues.push({
      code: 'schema',
      message: `image and img_path differ: ${describe(image)} vs ${describe(other)}`,
    });
    return null;
  }
  if (!isInsideRoot(image)) {
    issues.push({
      code: 'schema',
      message: `image: must be a path relative to the image root, got ${describe(image)}`,
    });
    return null;
  }
  return image;
}

function nonEmptyString(
  r: Record<string, unknown>,
  name: 'source' | 'split',
  issues: Issue[],
): string | null {
  const v = r[name];
  if (typeof v === 'string' && v !== '') return v;
  issues.push({
    code: 'schema',
    message: `${name}: must be a non-empty string, got ${describe(v)}`,
  });
  return null;
}

const ROLE_TYPE = { student: 'response', teacher: 'feedback' } as const;

/** Responses and teacher turns, or null when the conversation cannot be read as rounds. */
function conversation(
  v: unknown,
  issues: Issue[],
): { responses: string[]; teacherTurns: string[] } | null {
  if (!Array.isArray(v) || v.length === 0) {
    issues.push({
      code: 'schema',
      message: `conversations: must be a non-empty list of turns, got ${describe(v)}`,
    });
    return null;
  }
  const responses: string[] = [];
  const teacherTurns: string[] = [];
  let ok = true;
  let orderReported = false;
  v.forEach((turn: unknown, i) => {
    const at = `conversations[${i}]`;
    const expected = i % 2 === 0 ? 'student' : 'teacher';
    if (!isObject(turn)) {
      issues.push({ code: 'schema', message: `${at}: must be an object, got ${describe(turn)}` });
      ok = false;
      return;
    }
    if (turn.role !== 'student' && turn.role !== 'teacher') {
      issues.push({
        code: 'schema',
        message: `${at}.role: must be "student" or "teacher", got ${describe(turn.role)}`,
      });
      ok = false;
    } else {
      if (turn.role !== expected && !orderReported) {
        issues.push({
          code: 'role-order',
          message: `${at}: expected a ${expected === 'student' ? 'student response' : 'teacher feedback'} (turns alternate, student first), got role ${describe(turn.role)}`,
        });
        orderReported = true;
        ok = false;
      }
      const type = ROLE_TYPE[turn.role];
      if (turn.type !== undefined && turn.type !== type) {
        issues.push({
          code: 'role-order',
          message: `${at}.type: a ${turn.role} turn has type "${type}", got ${describe(turn.type)}`,
        });
        ok = false;
      }
    }
    if (typeof turn.value !== 'string' || turn.value.trim() === '') {
      issues.push({
        code: 'schema',
        message: `${at}.value: must be a non-empty string, got ${describe(turn.value)}`,
      });
      ok = false;
    } else if (turn.role === expected) {
      (expected === 'student' ? responses : teacherTurns).push(turn.value);
    }
    const rating = turn.human_rating;
    if (
      rating !== undefined &&
      !(typeof rating === 'number' && Number.isInteger(rating) && rating >= 1 && rating <= 5)
    ) {
      issues.push({
        code: 'schema',
        message: `${at}.human_rating: must be an integer 1-5, got ${describe(rating)}`,
      });
    }
  });
  if (v.length % 2 === 1 && !orderReported) {
    issues.push({
      code: 'role-order',
      message: `conversations: ends with a student response; every round ends with the teacher's feedback (${v.length} turns)`,
    });
    ok = false;
  }
  return ok ? { responses, teacherTurns } : null;
}

const isScore = (s: unknown): s is number =>
  typeof s === 'number' && Number.isInteger(s) && s >= 0 && s <= 10;

/** Check one parsed JSON value as a raw FIRE record. Never throws. */
export function checkRecord(value: unknown, opts: CheckOptions = {}): Checked {
  const satisfied = opts.satisfied ?? SATISFIED;
  const issues: Issue[] = [];
  if (!isObject(value)) {
    issues.push({
      code: 'schema',
      message: `a record must be a JSON object, got ${Array.isArray(value) ? 'a list' : describe(value)}`,
    });
    return {
      dialogue: null,
      id: null,
      issues,
      facets: { split: null, source: null, rounds: null },
    };
  }
  const r = value;
  const own = idOf(r);
  if (own.problem) issues.push({ code: 'schema', message: own.problem });
  const image = imageField(r, issues);
  const question = textField(r, 'question', issues);
  const groundtruth = textField(r, 'groundtruth', issues);
  const turns = conversation(r.conversations, issues);
  const source = nonEmptyString(r, 'source', issues);
  const split = nonEmptyString(r, 'split', issues);
  if (split !== null && !KNOWN_SPLITS.includes(split))
    issues.push({
      code: 'unknown-split',
      message: `split ${describe(split)} is not one of ${KNOWN_SPLITS.join(', ')}`,
    });

  let scores: number[] | null = null;
  if (turns) {
    const parsed = turns.teacherTurns.map((t) => parseTeacher(t).score);
    parsed.forEach((s, i) => {
      if (s === null)
        issues.push({
          code: 'unparseable-teacher',
          message: `round ${i + 1} (conversations[${2 * i + 1}]): no score (the first line must hold "Score:" and an integer 0-10; counts as 0): ${clip(turns.teacherTurns[i] as string)}`,
        });
    });
    scores = parsed.map(scoreOrZero);
    turns.responses.forEach((t, i) => {
      if (parseStudent(t).answer === null)
        issues.push({
          code: 'student-format',
          message: `round ${i + 1} (conversations[${2 * i}]): student response has no "Answer:": ${clip(t)}`,
        });
    });
  }

  const field = r.score;
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

  const round = r.round;
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

  if (scores && scores.length > 0) {
    if (scores.some((s, i) => i > 0 && s <= (scores[i - 1] as number)))
      issues.push({
        code: 'not-improving',
        message: `scores ${describe(scores)} do not strictly improve`,
      });
    const last = scores[scores.length - 1] as number;
    if (last < satisfied)
      issues.push({
        code: 'unsatisfied',
        message: `last score ${last} is below ${satisfied}`,
      });
  }

  const id =
    own.id ??
    (own.problem === undefined && image !== null && question !== null && groundtruth !== null
      ? derivedId(image, question, groundtruth)
      : null);
  const facets: Facets = {
    split,
    source,
    rounds: turns ? turns.teacherTurns.length : null,
  };
  const dialogue: Dialogue | null =
    id !== null &&
    turns &&
    scores &&
    image !== null &&
    question !== null &&
    groundtruth !== null &&
    source !== null &&
    split !== null
      ? {
          id,
          idDerived: own.id === null,
          image,
          question,
          groundtruth,
          responses: turns.responses,
          teacherTurns: turns.teacherTurns,
          scores,
          source,
          split,
        }
      : null;
  return { dialogue, id, issues, facets };
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
 */
export function recordId(value: unknown): string | null {
  if (!isObject(value)) return null;
  const own = idOf(value);
  if (own.id !== null || own.problem) return own.id;
  const issues: Issue[] = [];
  const image = imageField(value, issues);
  const question = textField(value, 'question', issues);
  const groundtruth = textField(value, 'groundtruth', issues);
  return image !== null && question !== null && groundtruth !== null
    ? derivedId(image, question, groundtruth)
    : null;
}
