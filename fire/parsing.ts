/**
 * FIRE's text formats, the TypeScript twin of worker/python/src/stoker_fire/parsing.py
 * (docs: docs/fire.md, section 1): the teacher's `Score: N.\nFeedback: ...` and the student's
 * `Thought: ...\nAnswer: ...`. Both sides are pinned by test/fixtures/fire-parsing-vectors.json.
 *
 *   parseTeacher('Score: 7.\nFeedback: Look at the sign.') -> {score: 7, feedback: 'Look at the sign.'}
 *   parseTeacher('I think it is fine')                     -> {score: null, feedback: ''}
 *   scoreOrZero(null)                                      -> 0
 *   parseStudent('Thought: a red bus\nAnswer: red')        -> {thought: 'a red bus', answer: 'red'}
 *   formatTeacher(7, 'Look at the sign.')                  -> 'Score: 7.\nFeedback: Look at the sign.'
 *   formatStudent('a red bus', 'red')                      -> 'Thought: a red bus\nAnswer: red'
 *
 * Teacher rule (the Python module's, word for word):
 *   1. leading and trailing whitespace of the whole text is ignored;
 *   2. the first line must contain `Score:` (case-sensitive), else the score is null;
 *   3. the score is the first integer on that line (an optional minus sign belongs to it:
 *      `Score: 7.` -> 7, `Score: 10/10` -> 10, `Score: 7.5` -> 7, `Round 2 Score: 9` -> 2);
 *   4. a score outside 0..10 (`Score: -3`, `Score: 11`) or no integer at all is null;
 *   5. the feedback is the text after the first `Feedback:` anywhere in the text, stripped;
 *      '' when there is none (the score still counts).
 * null means "unparseable": where a number is needed it counts as 0 (scoreOrZero); the
 * FIRE-Bench teacher MAE counts it as an error of 10 (fire/metrics/scores.ts).
 *
 * Student rule: the thought is the text between `Thought:` and `Answer:`, the answer the
 * text after the first `Answer:`, each stripped; a part without its marker is null.
 *
 * Where JavaScript and Python differ, this file follows Python, so that a dialogue gets
 * the same score on both sides:
 *   - "whitespace" is Python's str.strip() set (str.isspace()): it includes U+001C..U+001F
 *     and U+0085, which String.prototype.trim keeps, and excludes U+FEFF, which trim drops;
 *   - a digit is any Unicode decimal digit (category Nd), as Python's `\d` and int() take
 *     it: `Score: ８` (full-width) is 8;
 *   - `-0` is 0, not -0.
 * One deliberate difference: Python 3.11's int() refuses a digit string longer than 4300
 * characters (ValueError); here such a number is simply out of range (null).
 */

export const SCORE_MARKER = 'Score:';
export const FEEDBACK_MARKER = 'Feedback:';
export const THOUGHT_MARKER = 'Thought:';
export const ANSWER_MARKER = 'Answer:';
export const MIN_SCORE = 0;
export const MAX_SCORE = 10;

export interface TeacherTurn {
  /** 0..10, or null when the turn is unparseable. */
  score: number | null;
  feedback: string;
}

export interface StudentTurn {
  thought: string | null;
  answer: string | null;
}

/** Python's whitespace: the code points whose str.isspace() is true (all single UTF-16 units). */
function isPySpace(code: number): boolean {
  return (
    (code >= 0x09 && code <= 0x0d) ||
    (code >= 0x1c && code <= 0x20) ||
    code === 0x85 ||
    code === 0xa0 ||
    code === 0x1680 ||
    (code >= 0x2000 && code <= 0x200a) ||
    code === 0x2028 ||
    code === 0x2029 ||
    code === 0x202f ||
    code === 0x205f ||
    code === 0x3000
  );
}

/**
 * Python's `str.strip()` with no argument. A loop, not a `[...]+$` regex: that one is
 * quadratic on a long run of inner whitespace (50,000 spaces took 3 s).
 */
export function pyStrip(text: string): string {
  let start = 0;
  let end = text.length;
  while (start < end && isPySpace(text.charCodeAt(start))) start++;
  while (end > start && isPySpace(text.charCodeAt(end - 1))) end--;
  return start === 0 && end === text.length ? text : text.slice(start, end);
}

/** Python's `-?\d+` on a str pattern: `\d` is any Unicode decimal digit. */
const INTEGER = /-?\p{Nd}+/u;
const DECIMAL_DIGIT = /^\p{Nd}$/u;

function isDecimalDigit(codePoint: number): boolean {
  return DECIMAL_DIGIT.test(String.fromCodePoint(codePoint));
}

/**
 * The value 0..9 of a decimal digit. Unicode encodes every decimal digit set as ten
 * consecutive code points, 0 first (a stability guarantee), so a run of adjacent digits
 * (the mathematical digits are five sets in a row) starts at a 0: the value is the
 * distance from the start of the run, modulo 10. ASCII takes the fast path.
 */
function digitValue(codePoint: number): number {
  if (codePoint >= 0x30 && codePoint <= 0x39) return codePoint - 0x30;
  let start = codePoint;
  while (isDecimalDigit(start - 1)) start--;
  return (codePoint - start) % 10;
}

/** Python's int() of the `-?\d+` match; values above MAX_SCORE come back as Infinity. */
function integerValue(match: string): number {
  const negative = match.startsWith('-');
  let value = 0;
  for (const ch of negative ? match.slice(1) : match) {
    value = value * 10 + digitValue(ch.codePointAt(0) as number);
    // Only 0..10 is ever kept: stop before a huge digit string loses precision.
    if (value > MAX_SCORE) return negative ? -Infinity : Infinity;
  }
  return negative && value !== 0 ? -value : value;
}

function requireString(value: unknown, what: string): asserts value is string {
  if (typeof value !== 'string') {
    throw new TypeError(`${what} must be a string, got ${value === null ? 'null' : typeof value}`);
  }
}

/** Score (or null) and feedback of a teacher turn, by the rule in the header. */
export function parseTeacher(text: string): TeacherTurn {
  requireString(text, 'a teacher turn');
  const body = pyStrip(text);
  const newline = body.indexOf('\n');
  const firstLine = newline === -1 ? body : body.slice(0, newline);
  let score: number | null = null;
  if (firstLine.includes(SCORE_MARKER)) {
    const match = INTEGER.exec(firstLine);
    if (match) {
      const value = integerValue(match[0]);
      score = value >= MIN_SCORE && value <= MAX_SCORE ? value : null;
    }
  }
  const at = body.indexOf(FEEDBACK_MARKER);
  const feedback = at === -1 ? '' : pyStrip(body.slice(at + FEEDBACK_MARKER.length));
  return { score, feedback };
}

/** An unparseable score (null) counts as 0 wherever a number is needed. */
export function scoreOrZero(score: number | null): number {
  return score ?? 0;
}

/** What the student sees of a teacher turn: the feedback only, the score stripped. */
export function feedbackText(teacherTurn: string): string {
  return parseTeacher(teacherTurn).feedback;
}

/** Thought and answer of a student turn; a part without its marker is null. */
export function parseStudent(text: string): StudentTurn {
  requireString(text, 'a student turn');
  const answerAt = text.indexOf(ANSWER_MARKER);
  const answer = answerAt === -1 ? null : pyStrip(text.slice(answerAt + ANSWER_MARKER.length));
  const head = answerAt === -1 ? text : text.slice(0, answerAt);
  const thoughtAt = head.indexOf(THOUGHT_MARKER);
  const thought = thoughtAt === -1 ? null : pyStrip(head.slice(thoughtAt + THOUGHT_MARKER.length));
  return { thought, answer };
}

/** The canonical teacher turn (as in the FIRE data: `Score: 3.\nFeedback: ...`). */
export function formatTeacher(score: number, feedback: string): string {
  if (!Number.isInteger(score) || score < MIN_SCORE || score > MAX_SCORE) {
    throw new RangeError(
      `score must be an integer in ${MIN_SCORE}..${MAX_SCORE}, got ${String(score)}`,
    );
  }
  requireString(feedback, 'feedback');
  // `${-0}` is "0", as Python's f"{0}".
  return `${SCORE_MARKER} ${score === 0 ? 0 : score}.\n${FEEDBACK_MARKER} ${pyStrip(feedback)}`;
}

/** The canonical student turn: `Thought: ...\nAnswer: ...`. */
export function formatStudent(thought: string, answer: string): string {
  requireString(thought, 'thought');
  requireString(answer, 'answer');
  return `${THOUGHT_MARKER} ${pyStrip(thought)}\n${ANSWER_MARKER} ${pyStrip(answer)}`;
}
