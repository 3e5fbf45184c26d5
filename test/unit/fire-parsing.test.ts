/**
 * fire/parsing.ts against the vectors Python's tests use too
 * (worker/python/tests/test_fire_parsing.py), plus the student rule and the formats.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  feedbackText,
  formatStudent,
  formatTeacher,
  parseStudent,
  parseTeacher,
  pyStrip,
  scoreOrZero,
} from '../../fire/parsing.js';

interface Vector {
  name: string;
  text: string;
  score: number | null;
  feedback: string;
}

const VECTORS = JSON.parse(
  readFileSync(new URL('../fixtures/fire-parsing-vectors.json', import.meta.url), 'utf8'),
) as Vector[];

describe('parseTeacher: the shared vectors', () => {
  it('has the vectors Python checks too', () => {
    expect(VECTORS.length).toBeGreaterThanOrEqual(20);
    for (const v of VECTORS)
      expect(Object.keys(v).sort()).toEqual(['feedback', 'name', 'score', 'text']);
  });

  it.each(VECTORS.map((v) => [v.name, v] as const))('%s', (_name, v) => {
    const parsed = parseTeacher(v.text);
    expect(parsed).toEqual({ score: v.score, feedback: v.feedback });
    // toEqual tells 0 from -0: a score is never -0.
    if (parsed.score === 0) expect(Object.is(parsed.score, 0)).toBe(true);
  });
});

describe('parseTeacher: the rest of the rule', () => {
  it('counts an unparseable score as zero where a number is needed', () => {
    expect(scoreOrZero(parseTeacher('no score here').score)).toBe(0);
    expect(scoreOrZero(parseTeacher('Score: 6.').score)).toBe(6);
  });

  it('gives the student the feedback without the score', () => {
    expect(feedbackText('Score: 3.\nFeedback: Look at the roof.')).toBe('Look at the roof.');
  });

  it('refuses a turn that is not text', () => {
    expect(() => parseTeacher(null as unknown as string)).toThrow(TypeError);
    expect(() => parseTeacher(7 as unknown as string)).toThrow(/must be a string, got number/);
  });

  it('stays linear on long runs of whitespace (a regex strip would be quadratic)', () => {
    const text = `Score: 4.\nFeedback: a${' '.repeat(200_000)}b${'\n'.repeat(200_000)}`;
    const t0 = performance.now();
    expect(parseTeacher(text).feedback).toBe(`a${' '.repeat(200_000)}b`);
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  it('treats a digit string beyond any float as out of range, not as a crash', () => {
    expect(parseTeacher(`Score: ${'9'.repeat(5000)}.`).score).toBeNull();
    expect(parseTeacher(`Score: ${'0'.repeat(5000)}7.`).score).toBe(7);
  });
});

describe('pyStrip: Python str.strip()', () => {
  it.each([
    ['ASCII whitespace', ' \t\n\r\v\fx \t\n\r\v\f', 'x'],
    ['the information separators U+001C..U+001F', '\x1c\x1d\x1e\x1fx\x1f', 'x'],
    ['next line U+0085 and the no-break space', '\x85\xa0x\xa0\x85', 'x'],
    ['the line and paragraph separators, the ideographic space', '\u2028\u2029\u3000x\u3000', 'x'],
    ['a byte-order mark is kept', '\ufeffx\ufeff', '\ufeffx\ufeff'],
    ['a zero-width space is kept', '\u200bx', '\u200bx'],
    ['inner whitespace is kept', ' a  b ', 'a  b'],
  ])('%s', (_name, text, expected) => {
    expect(pyStrip(text)).toBe(expected);
  });
});

describe('parseStudent', () => {
  it.each([
    [
      'canonical',
      'Thought: The bus has a red roof.\nAnswer: Red.\n\n',
      'The bus has a red roof.',
      'Red.',
    ],
    ['multi-line thought', 'Thought: one\ntwo\nAnswer: three', 'one\ntwo', 'three'],
    ['answer only', 'Answer: 42', null, '42'],
    ['thought only', 'Thought: thinking', 'thinking', null],
    ['neither marker', 'It is red.', null, null],
    ['empty answer', 'Thought: hm\nAnswer:', 'hm', ''],
    ['text before the thought', 'Sure. Thought: a\nAnswer: b', 'a', 'b'],
    ['an Answer: inside the answer', 'Thought: a\nAnswer: b Answer: c', 'a', 'b Answer: c'],
    [
      'a Thought: after the answer belongs to the answer',
      'Answer: b\nThought: c',
      null,
      'b\nThought: c',
    ],
  ])('%s', (_name, text, thought, answer) => {
    expect(parseStudent(text)).toEqual({ thought, answer });
  });

  it('refuses a turn that is not text', () => {
    expect(() => parseStudent(undefined as unknown as string)).toThrow(TypeError);
  });
});

describe('formatTeacher and formatStudent', () => {
  it('writes the teacher turn as the FIRE data does, and reads it back', () => {
    expect(formatTeacher(3, '  Look closely at the texture.  ')).toBe(
      'Score: 3.\nFeedback: Look closely at the texture.',
    );
    for (let score = 0; score <= 10; score++) {
      expect(parseTeacher(formatTeacher(score, 'fine'))).toEqual({ score, feedback: 'fine' });
    }
    expect(formatTeacher(-0, 'x')).toBe('Score: 0.\nFeedback: x');
  });

  it.each([
    ['below the scale', -1],
    ['above the scale', 11],
    ['not an integer', 7.5],
    ['not a number', Number.NaN],
    ['a string', '7' as unknown as number],
  ])('refuses a score %s', (_name, score) => {
    expect(() => formatTeacher(score, 'x')).toThrow(RangeError);
  });

  it('writes the student turn and reads it back', () => {
    const text = formatStudent(' a red roof ', 'red ');
    expect(text).toBe('Thought: a red roof\nAnswer: red');
    expect(parseStudent(text)).toEqual({ thought: 'a red roof', answer: 'red' });
  });
});
