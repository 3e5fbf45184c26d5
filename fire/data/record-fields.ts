/**
 * Readers of a raw FIRE record's fields (the format: record.ts). Each reader returns the
 * field's typed value, or null when it is unusable, after pushing an issue that says why
 * (`schema`, or `no-image` / `role-order` where those apply) onto the list it is given.
 * readFields reads them all, in the order their issues are reported: id, image,
 * question, groundtruth, conversations, source, split. The checks across fields
 * (scores, rounds, splits) are record-checks.ts.
 */
import { isInsideRoot } from './images.js';
import type { Issue } from './record.js';

export const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** A value for a message: its JSON, cut to 60 characters; `nothing` when absent. */
export const describe = (v: unknown): string => {
  if (v === undefined) return 'nothing';
  const s = JSON.stringify(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
};

/** Student responses and teacher turns, round by round, verbatim. */
export interface Turns {
  responses: string[];
  teacherTurns: string[];
}

/** The fields a Dialogue is made of, as read; null where unusable (an issue says why). */
export interface RecordFields {
  /** The record's own id (null when it has none, or a bad one). */
  id: string | null;
  /** Why the record's id is unusable, when it has one. */
  idProblem: string | undefined;
  image: string | null;
  question: string | null;
  groundtruth: string | null;
  turns: Turns | null;
  source: string | null;
  split: string | null;
}

export function readFields(r: Record<string, unknown>, issues: Issue[]): RecordFields {
  const own = idOf(r);
  if (own.problem) issues.push({ code: 'schema', message: own.problem });
  return {
    id: own.id,
    idProblem: own.problem,
    image: imageField(r, issues),
    question: textField(r, 'question', issues),
    groundtruth: textField(r, 'groundtruth', issues),
    turns: conversation(r.conversations, issues),
    source: nonEmptyString(r, 'source', issues),
    split: nonEmptyString(r, 'split', issues),
  };
}

/** `id`: absent (null), a non-empty string, or a safe integer (as decimal). */
export function idOf(r: Record<string, unknown>): { id: string | null; problem?: string } {
  const v = r.id;
  if (v === undefined || v === null) return { id: null };
  if (typeof v === 'string' && v !== '') return { id: v };
  if (typeof v === 'number' && Number.isSafeInteger(v)) return { id: String(v) };
  return { id: null, problem: `id: must be a non-empty string or an integer, got ${describe(v)}` };
}

/** `question` or `groundtruth`: {role: "user", value: non-empty string}, or that string. */
export function textField(
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

/** `image` and/or `img_path`: one relative path (equal when both are set). */
export function imageField(r: Record<string, unknown>, issues: Issue[]): string | null {
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

/** What reading the turns so far has found. */
interface TurnsRead extends Turns {
  /** False once a turn makes the conversation unreadable as rounds. */
  ok: boolean;
  /** A role out of order is reported once, at the first such turn. */
  orderReported: boolean;
}

/** `conversations`: the turns as rounds, or null when they cannot be read as rounds. */
function conversation(v: unknown, issues: Issue[]): Turns | null {
  if (!Array.isArray(v) || v.length === 0) {
    issues.push({
      code: 'schema',
      message: `conversations: must be a non-empty list of turns, got ${describe(v)}`,
    });
    return null;
  }
  const read: TurnsRead = { responses: [], teacherTurns: [], ok: true, orderReported: false };
  v.forEach((turn: unknown, i) => readTurn(turn, i, read, issues));
  if (v.length % 2 === 1 && !read.orderReported) {
    issues.push({
      code: 'role-order',
      message: `conversations: ends with a student response; every round ends with the teacher's feedback (${v.length} turns)`,
    });
    read.ok = false;
  }
  return read.ok ? { responses: read.responses, teacherTurns: read.teacherTurns } : null;
}

/** Turn i: an object whose role is the one expected there, with a non-empty value. */
function readTurn(turn: unknown, i: number, read: TurnsRead, issues: Issue[]): void {
  const at = `conversations[${i}]`;
  const expected = i % 2 === 0 ? 'student' : 'teacher';
  if (!isObject(turn)) {
    issues.push({ code: 'schema', message: `${at}: must be an object, got ${describe(turn)}` });
    read.ok = false;
    return;
  }
  checkRole(turn, at, expected, read, issues);
  if (typeof turn.value !== 'string' || turn.value.trim() === '') {
    issues.push({
      code: 'schema',
      message: `${at}.value: must be a non-empty string, got ${describe(turn.value)}`,
    });
    read.ok = false;
  } else if (turn.role === expected) {
    (expected === 'student' ? read.responses : read.teacherTurns).push(turn.value);
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
}

/** A turn's role (student or teacher, alternating, student first) and its type. */
function checkRole(
  turn: Record<string, unknown>,
  at: string,
  expected: 'student' | 'teacher',
  read: TurnsRead,
  issues: Issue[],
): void {
  if (turn.role !== 'student' && turn.role !== 'teacher') {
    issues.push({
      code: 'schema',
      message: `${at}.role: must be "student" or "teacher", got ${describe(turn.role)}`,
    });
    read.ok = false;
    return;
  }
  if (turn.role !== expected && !read.orderReported) {
    issues.push({
      code: 'role-order',
      message: `${at}: expected a ${expected === 'student' ? 'student response' : 'teacher feedback'} (turns alternate, student first), got role ${describe(turn.role)}`,
    });
    read.orderReported = true;
    read.ok = false;
  }
  const type = ROLE_TYPE[turn.role];
  if (turn.type !== undefined && turn.type !== type) {
    issues.push({
      code: 'role-order',
      message: `${at}.type: a ${turn.role} turn has type "${type}", got ${describe(turn.type)}`,
    });
    read.ok = false;
  }
}
