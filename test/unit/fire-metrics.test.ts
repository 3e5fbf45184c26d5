/**
 * FIRE free-dialogue metrics (fire/metrics/dialogue.ts) against hand-computed
 * vectors (test/fixtures/fire-dialogue-metric-vectors.json, the arithmetic in each case),
 * their file reader (files.ts: streaming, bad lines with file:line, --skip-bad, score
 * arrays that disagree with the teacher turns), and the teacher score error (scores.ts).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  computeDialogueMetrics,
  DialogueMetricsAccumulator,
  normalisedAt,
  resolveDialogueOptions,
  validateScores,
  type DialogueMetrics,
  type DialogueMetricsOptions,
} from '../../fire/metrics/dialogue.js';
import {
  dialogueMetricsOfFile,
  scoreErrorOfFile,
  textItemsOfFile,
} from '../../fire/metrics/files.js';
import { jsonLines, MetricsInputError } from '../../fire/metrics/jsonl.js';
import {
  computeScoreError,
  referenceScore,
  ScoreErrorAccumulator,
} from '../../fire/metrics/scores.js';
import { formatTeacher } from '../../fire/parsing.js';

interface Vector {
  name: string;
  arithmetic: string;
  options: DialogueMetricsOptions;
  dialogues: number[][];
  expected: Omit<DialogueMetrics, 'options'>;
}

const VECTORS = JSON.parse(
  readFileSync(new URL('../fixtures/fire-dialogue-metric-vectors.json', import.meta.url), 'utf8'),
) as Vector[];

function expectMetrics(actual: DialogueMetrics, expected: Vector['expected']): void {
  const { accAt, rr, at, adr, atr, ...counts } = expected;
  expect(actual).toMatchObject(counts);
  const close = (a: number | null, e: number | null) => {
    if (e === null) expect(a).toBeNull();
    else expect(a).toBeCloseTo(e, 12);
  };
  expect(actual.accAt).toHaveLength(accAt.length);
  accAt.forEach((e, i) => close(actual.accAt[i] ?? null, e));
  close(actual.rr, rr);
  close(actual.at, at);
  close(actual.adr, adr);
  close(actual.atr, atr);
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'stoker-metrics-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let fileCount = 0;
function writeLines(lines: Array<string | object>): string {
  const file = join(dir, `in-${++fileCount}.jsonl`);
  writeFileSync(
    file,
    lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n') + '\n',
  );
  return file;
}

/** A raw FIRE record whose teacher turns carry `scores` (as the real data does). */
function fireRecord(scores: number[], extra: Record<string, unknown> = {}) {
  const conversations = scores.flatMap((s, i) => [
    { role: 'student', type: 'response', value: `Thought: try ${i}\nAnswer: ${i}` },
    { role: 'teacher', type: 'feedback', value: formatTeacher(s, `round ${i}`) },
  ]);
  return {
    image: 'x.jpg',
    question: { role: 'user', value: 'q?' },
    groundtruth: { role: 'user', value: 'a' },
    conversations,
    score: scores,
    round: scores.length,
    source: 'gqa',
    split: 'fire_test',
    ...extra,
  };
}

describe('dialogue metrics: hand-computed vectors', () => {
  it.each(VECTORS.map((v) => [v.name, v] as const))('%s', (_name, v) => {
    expectMetrics(computeDialogueMetrics(v.dialogues, v.options), v.expected);
  });

  it.each(VECTORS.map((v) => [v.name, v] as const))(
    '%s (as raw records, through an async iterable)',
    async (_name, v) => {
      async function* records() {
        for (const d of v.dialogues) yield { score: d };
      }
      expectMetrics(await computeDialogueMetrics(records(), v.options), v.expected);
    },
  );
});

describe('dialogue metrics: the rules', () => {
  it('defaults to tau 8, Tmax 5 and a penalty of Tmax + 1, which follows Tmax', () => {
    expect(resolveDialogueOptions()).toEqual({ tau: 8, tmax: 5, penalty: 6 });
    expect(resolveDialogueOptions({ tmax: 3 })).toEqual({ tau: 8, tmax: 3, penalty: 4 });
  });

  it.each([
    ['a fractional Tmax', { tmax: 2.5 }, /tmax must be an integer >= 1/],
    ['a zero Tmax', { tmax: 0 }, /tmax/],
    ['a NaN tau', { tau: Number.NaN }, /tau must be a number/],
    ['an infinite penalty', { penalty: Infinity }, /penalty must be a number/],
  ])('refuses %s', (_name, options, message) => {
    expect(() => resolveDialogueOptions(options)).toThrow(message);
  });

  it.each([
    ['not an array', 'x', /must be an array/],
    ['empty', [], /is empty/],
    ['a fraction', [3, 7.5], /\[1\] is 7.5: scores are integers 0..10/],
    ['above the scale', [11], /\[0\] is 11/],
    ['negative', [-1], /\[0\] is -1/],
    ['a string', ['8'], /\[0\] is "8"/],
    ['null', [null], /\[0\] is null/],
  ])('says what is wrong with a score array that is %s', (_name, scores, message) => {
    expect(validateScores(scores)).toMatch(message);
    expect(() => new DialogueMetricsAccumulator().add(scores as number[])).toThrow(RangeError);
  });

  it('gives the same result however the dialogues are split across accumulators', () => {
    const dialogues = Array.from({ length: 500 }, (_, i) =>
      Array.from({ length: 1 + (i % 7) }, (_, t) => (i * 7 + t * 3) % 11),
    );
    const whole = computeDialogueMetrics(dialogues);
    const acc = new DialogueMetricsAccumulator();
    for (const d of dialogues) acc.add(d);
    expect(acc.result()).toEqual(whole);
    expect(whole.truncated).toBe(dialogues.filter((d) => d.length > 5).length);
  });

  it('normalises AT to a baseline, the baseline being 1', () => {
    const base = computeDialogueMetrics([
      [3, 10],
      [2, 5, 6],
    ]); // AT (2 + 6) / 2 = 4
    const run = computeDialogueMetrics([[3, 10], [9]]); // AT (2 + 1) / 2 = 1.5
    expect(normalisedAt(run, base)).toBeCloseTo(0.375, 12);
    expect(normalisedAt(base, base)).toBe(1);
    expect(normalisedAt(run, computeDialogueMetrics([]))).toBeNull();
  });

  it('keeps memory flat: an accumulator holds Tmax counters, not the dialogues', () => {
    const acc = new DialogueMetricsAccumulator({ tmax: 3 });
    for (let i = 0; i < 200_000; i++) acc.add([i % 11, (i + 5) % 11]);
    const r = acc.result();
    expect(r.dialogues).toBe(200_000);
    expect(r.accAt).toHaveLength(3);
  });
});

describe('dialogue metrics of a file', () => {
  it('reads raw FIRE records line by line, skipping blank lines, CRLF included', async () => {
    const file = join(dir, 'crlf.jsonl');
    writeFileSync(
      file,
      [fireRecord([3, 10]), fireRecord([9]), '', fireRecord([2, 5, 6]), fireRecord([8, 4])]
        .map((r) => (typeof r === 'string' ? r : JSON.stringify(r)))
        .join('\r\n'),
    );
    const r = await dialogueMetricsOfFile(file);
    expectMetrics(r.metrics, (VECTORS[0] as Vector).expected);
    expect(r).toMatchObject({ skipped: 0, scoreMismatches: 0 });
  });

  it.each([
    ['a line that is not JSON', '{"score": [1, 2]', /:2: not valid JSON/],
    [
      'a record that is not an object',
      '[1, 2]',
      /:2: expected a FIRE record \(a JSON object\), got an array/,
    ],
    ['a record without "score"', '{"round": 2}', /:2: no "score" field/],
    ['an empty "score"', '{"score": []}', /:2: "score" is empty/],
    ['a "score" that is not a list', '{"score": "3,10"}', /:2: "score" must be an array/],
    ['a score that is not an integer', '{"score": [3, 8.5]}', /:2: "score"\[1\] is 8.5/],
  ])('stops at %s, naming file:line', async (_name, bad, message) => {
    const file = writeLines([fireRecord([3, 10]), bad, fireRecord([9])]);
    const err = await dialogueMetricsOfFile(file).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MetricsInputError);
    expect((err as MetricsInputError).exitCode).toBe(2);
    expect((err as Error).message).toContain(file);
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message).toContain('--skip-bad');
  });

  it('with skipBad, counts bad lines and records and leaves them out', async () => {
    const file = writeLines([
      fireRecord([3, 10]),
      'not json',
      { score: [] },
      fireRecord([9]),
      { score: [12] },
    ]);
    const r = await dialogueMetricsOfFile(file, {}, { skipBad: true });
    expect(r.metrics.dialogues).toBe(2);
    expect(r.skipped).toBe(3);
    expect(r.skippedExamples.map((s) => s.line)).toEqual([2, 3, 5]);
  });

  it('counts records whose "score" disagrees with their teacher turns, and can use the turns', async () => {
    // As in the real FIRE data: "Score: 8/10" stored as 0 and "10/10" as 1.
    const odd = fireRecord([0, 1]);
    odd.conversations[1] = {
      role: 'teacher',
      type: 'feedback',
      value: 'Score: 8/10.\nFeedback: ok',
    };
    odd.conversations[3] = {
      role: 'teacher',
      type: 'feedback',
      value: 'Score: 10/10.\nFeedback: ok',
    };
    const file = writeLines([fireRecord([3, 10]), odd]);
    const byField = await dialogueMetricsOfFile(file);
    expect(byField.scoreMismatches).toBe(1);
    expect(byField.mismatchExamples).toEqual([{ line: 2, score: [0, 1], turns: [8, 10] }]);
    expect(byField.metrics.accAt[0]).toBe(0);
    const byTurns = await dialogueMetricsOfFile(file, {}, { scoresFrom: 'turns' });
    expect(byTurns.scoreMismatches).toBe(1);
    expect(byTurns.metrics.accAt[0]).toBe(0.5);
    expect(byTurns.metrics.at).toBe(1.5);
  });

  it('with scoresFrom turns, needs teacher turns and counts an unparseable one as 0', async () => {
    const unparseable = fireRecord([5]);
    unparseable.conversations[1] = { role: 'teacher', type: 'feedback', value: 'no idea' };
    delete (unparseable as Partial<typeof unparseable>).score;
    const file = writeLines([unparseable]);
    const r = await dialogueMetricsOfFile(file, {}, { scoresFrom: 'turns' });
    expect(r.metrics.adr).toBe(0);
    expect(r.metrics.startingWrong).toBe(1);
    const none = writeLines([{ score: [3] }]);
    await expect(dialogueMetricsOfFile(none, {}, { scoresFrom: 'turns' })).rejects.toThrow(
      /:1: no teacher turns/,
    );
  });

  it('says a file is missing, or not a file', async () => {
    await expect(dialogueMetricsOfFile(join(dir, 'nope.jsonl'))).rejects.toThrow(
      /nope\.jsonl: no such file/,
    );
    await expect(dialogueMetricsOfFile(dir)).rejects.toThrow(/not a regular file/);
  });

  it('counts an empty file as no dialogues', async () => {
    const file = join(dir, 'empty.jsonl');
    writeFileSync(file, '');
    expect((await dialogueMetricsOfFile(file)).metrics.dialogues).toBe(0);
  });

  it('reads a file larger than one chunk, with a line split across chunks', async () => {
    const file = join(dir, 'big.jsonl');
    const line = JSON.stringify({ ...fireRecord([4, 9]), pad: 'x'.repeat(3000) });
    writeFileSync(file, `${Array.from({ length: 1000 }, () => line).join('\n')}\n`);
    let lines = 0;
    for await (const batch of jsonLines(file)) lines += batch.length;
    expect(lines).toBe(1000);
    const r = await dialogueMetricsOfFile(file);
    expect(r.metrics).toMatchObject({ dialogues: 1000, refined: 1000, at: 2 });
  });

  it('decodes UTF-8 split across chunks', async () => {
    const file = join(dir, 'utf8.jsonl');
    // 2-byte characters, so that some fall across a 64 KiB chunk boundary.
    const line = JSON.stringify({ score: [9], note: 'é'.repeat(999) });
    writeFileSync(file, `${Array.from({ length: 2000 }, () => line).join('\n')}`);
    const r = await dialogueMetricsOfFile(file);
    expect(r.metrics.dialogues).toBe(2000);
  });
});

describe('teacher score error', () => {
  it('is the mean absolute error, an unparseable prediction counting 10', () => {
    // |7 - 9| = 2, |3 - 3| = 0, unparseable = 10, |10 - 4| = 6 (a reference turn parsed: 4)
    // MAE = (2 + 0 + 10 + 6) / 4 = 4.5; over the parseable ones (2 + 0 + 6) / 3 = 8/3.
    const m = computeScoreError([
      { prediction: 'Score: 7.\nFeedback: a', reference: 9 },
      { prediction: 'Score: 3/10\nFeedback: b', reference: 3 },
      { prediction: 'I cannot tell.', reference: 5 },
      { prediction: 'Score: 10.', reference: 'Score: 4.\nFeedback: c' },
    ]);
    expect(m.items).toBe(4);
    expect(m.unparseable).toBe(1);
    expect(m.mae).toBe(4.5);
    expect(m.maeParseable).toBeCloseTo(8 / 3, 12);
  });

  it('is null over nothing', () => {
    expect(new ScoreErrorAccumulator().result()).toEqual({
      items: 0,
      unparseable: 0,
      mae: null,
      maeParseable: null,
    });
    expect(computeScoreError([{ prediction: 'x', reference: 2 }]).maeParseable).toBeNull();
  });

  it.each([
    ['a score above the scale', 11, /in 0..10/],
    ['NaN', Number.NaN, /in 0..10/],
    ['a teacher turn without a score', 'Feedback: hm', /no parseable score/],
    ['a boolean', true, /a score \(number\) or a teacher turn/],
  ])('refuses a reference that is %s', (_name, reference, message) => {
    const r = referenceScore(reference);
    expect('problem' in r && r.problem).toMatch(message);
    expect(() => new ScoreErrorAccumulator().add('Score: 1.', reference as number)).toThrow(
      RangeError,
    );
  });

  it('reads a file and names the line of a bad record', async () => {
    const good = writeLines([
      { id: 'a#1', prediction: 'Score: 7.\nFeedback: a', reference: 9 },
      { id: 2, prediction: 'garbage', reference: 'Score: 5.\nFeedback: b' },
    ]);
    expect(await scoreErrorOfFile(good)).toEqual({
      items: 2,
      unparseable: 1,
      mae: 6,
      maeParseable: 2,
    });
    for (const [bad, message] of [
      [
        { id: 'x', prediction: 7, reference: 7 },
        /:2: "prediction" must be a teacher turn \(a string\), got a number \(id "x"\)/,
      ],
      [
        { id: 'y', prediction: 'Score: 1.' },
        /:2: no "reference" \(a score 0..10 or a teacher turn\) \(id "y"\)/,
      ],
      [
        { prediction: 'Score: 1.', reference: 'nothing' },
        /:2: "reference": the reference teacher turn has no parseable score/,
      ],
      [
        { id: { a: 1 }, prediction: 'Score: 1.', reference: 1 },
        /:2: "id" must be a string or a number, got an object/,
      ],
      ['"just a string"', /:2: expected \{"id", "prediction"/],
    ] as const) {
      const file = writeLines([{ prediction: 'Score: 1.', reference: 1 }, bad]);
      await expect(scoreErrorOfFile(file)).rejects.toThrow(message);
    }
  });
});

describe('text metric input', () => {
  it('accepts "references" (a list) or "reference" (one)', async () => {
    const file = writeLines([
      { id: 1, prediction: 'a b', references: ['a b', 'a c'] },
      { id: 2, prediction: 'c', reference: 'c d' },
    ]);
    expect(await textItemsOfFile(file)).toEqual([
      { prediction: 'a b', references: ['a b', 'a c'] },
      { prediction: 'c', references: ['c d'] },
    ]);
  });

  it.each([
    ['no references', { prediction: 'a' }, /:1: no "references"/],
    ['an empty list', { prediction: 'a', references: [] }, /non-empty list of strings/],
    [
      'a reference that is not text',
      { prediction: 'a', references: ['x', 3] },
      /"references"\[1\] must be a string, got a number/,
    ],
    ['both forms', { prediction: 'a', references: ['x'], reference: 'y' }, /not both/],
    [
      'a missing prediction',
      { id: 'q', references: ['x'] },
      /"prediction" must be a string, got missing \(id "q"\)/,
    ],
    ['null', null, /expected \{"id", "prediction": string, "references"/],
  ])('refuses %s', async (_name, record, message) => {
    await expect(textItemsOfFile(writeLines([record as object]))).rejects.toThrow(message);
  });
});
