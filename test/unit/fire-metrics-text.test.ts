/**
 * BLEU-1..4 and CIDEr-D (fire/metrics/text.ts) on cases small enough to
 * compute by hand (the arithmetic is in each case), plus the properties that follow from
 * the definitions, and the tokenizer.
 *
 * coco's constants: tiny = 1e-15 (added to matches and to c), small = 1e-9 (added to
 * guesses and to r). Where a case has guess_n = 0 its p_n is tiny / small = 1e-6.
 */
import { describe, expect, it } from 'vitest';
import { computeTextMetrics, corpusBleu, corpusCiderD, tokenize } from '../../fire/metrics/text.js';

const TINY = 1e-15;
const SMALL = 1e-9;
const p = (correct: number, guess: number) => (correct + TINY) / (guess + SMALL);
const bp = (c: number, r: number) => {
  const ratio = (c + TINY) / (r + SMALL);
  return ratio < 1 ? Math.exp(1 - 1 / ratio) : 1;
};
const item = (prediction: string, ...references: string[]) => ({
  prediction: tokenize(prediction),
  references: references.map(tokenize),
});

/** Relative closeness: these values span 1e-6 .. 1. */
function expectClose(actual: number | null | undefined, expected: number, rel = 1e-9): void {
  expect(actual).not.toBeNull();
  expect(Math.abs((actual as number) - expected)).toBeLessThanOrEqual(Math.abs(expected) * rel);
}

describe('tokenize (the PTBTokenizer approximation)', () => {
  it.each([
    ['lower-cases and drops sentence punctuation', 'The bus is RED.', ['the', 'bus', 'is', 'red']],
    [
      'drops the markers punctuation too',
      'Thought: a red roof.\nAnswer: Red!',
      ['thought', 'a', 'red', 'roof', 'answer', 'red'],
    ],
    [
      'splits clitics as PTB does',
      "Don't, it's he'd've",
      ['do', "n't", 'it', "'s", 'he', "'d", "'ve"],
    ],
    [
      'keeps numbers whole',
      'It costs 1,000.50 at 3:30.',
      ['it', 'costs', '1,000.50', 'at', '3:30'],
    ],
    ['drops quotes, brackets and dashes', '“Hi” (yes) -- [no] ‘ok’ ...', ['hi', 'yes', 'no', 'ok']],
    ['splits a comma or colon between words', 'a,b c:d', ['a', 'b', 'c', 'd']],
    [
      'keeps inner hyphens and periods',
      'a red-brick u.s. house',
      ['a', 'red-brick', 'u.s', 'house'],
    ],
    ['is empty for punctuation only', ' ... !? ', []],
  ])('%s', (_name, text, tokens) => {
    expect(tokenize(text)).toEqual(tokens);
  });
});

describe('tokenize on hostile text', () => {
  it('stays linear on a huge token of dots and quotes', () => {
    const t0 = performance.now();
    expect(tokenize(`x${".'-".repeat(100_000)}y ${'.'.repeat(300_000)}`)).toHaveLength(1);
    expect(tokenize(`a${"'s".repeat(50_000)}`)).toHaveLength(50_001);
    expect(performance.now() - t0).toBeLessThan(2000);
  });
});

describe('BLEU, by hand', () => {
  it('a short prediction: clipped precisions 3/3, 2/2, 1/1, no 4-gram, and the brevity penalty', () => {
    // c = 3 ("the cat sat"), r = 6. 1-grams: the, cat, sat all in the reference -> 3/3;
    // 2-grams "the cat", "cat sat" -> 2/2; 3-gram "the cat sat" -> 1/1; 4-grams: 0/0 -> 1e-6.
    // BP = exp(1 - 6/3) = e^-1 = 0.36788. BLEU-4 = (1 * 1 * 1 * 1e-6)^(1/4) * e^-1 = 0.011633.
    const { bleu, predictionTokens, referenceTokens } = corpusBleu([
      item('the cat sat', 'the cat sat on the mat'),
    ]);
    expect([predictionTokens, referenceTokens]).toEqual([3, 6]);
    const b = bp(3, 6);
    expectClose(b, Math.exp(-1), 1e-9);
    expectClose(bleu[0], p(3, 3) * b);
    expectClose(bleu[1], Math.sqrt(p(3, 3) * p(2, 2)) * b);
    expectClose(bleu[2], Math.cbrt(p(3, 3) * p(2, 2) * p(1, 1)) * b);
    expectClose(bleu[3], (p(3, 3) * p(2, 2) * p(1, 1) * p(0, 0)) ** 0.25 * b);
    expect(bleu[3]).toBeCloseTo(0.011633, 6);
  });

  it('clips repeated words at the largest count in any one reference', () => {
    // "the the the the" against "the cat" and "the the dog": max count of "the" is 2 -> 2/4;
    // "the the" occurs 3 times, at most once in a reference -> 1/3; "the the the" 0/2;
    // the 4-gram 0/1. c = 4; reference lengths 2 and 3, the closest is 3: ratio 4/3, BP = 1.
    // BLEU-1 = 0.5, BLEU-2 = sqrt(0.5 * 1/3) = 0.408248.
    const { bleu, referenceTokens } = corpusBleu([
      item('the the the the', 'the cat', 'the the dog'),
    ]);
    expect(referenceTokens).toBe(3);
    expectClose(bleu[0], p(2, 4));
    expectClose(bleu[1], Math.sqrt(p(2, 4) * p(1, 3)));
    expect(bleu[1]).toBeCloseTo(0.408248, 6);
    expectClose(bleu[2], Math.cbrt(p(2, 4) * p(1, 3) * p(0, 2)));
    expectClose(bleu[3], (p(2, 4) * p(1, 3) * p(0, 2) * p(0, 1)) ** 0.25);
  });

  it('on a tie for the closest reference length, takes the shorter', () => {
    // c = 3, references of length 2 and 4 are both 1 away: r = 2, so ratio 3/2 and BP = 1
    // (r = 4 would give BP = exp(1 - 4/3) = 0.7165). Every 1-gram matches: BLEU-1 = 1.
    const { bleu, referenceTokens } = corpusBleu([item('a b c', 'a b', 'a b c d')]);
    expect(referenceTokens).toBe(2);
    expectClose(bleu[0], p(3, 3));
  });

  it('sums the counts over the corpus before dividing (not a mean of sentence scores)', () => {
    // item 1: "a b" / "a b": matches [2, 1, 0, 0] of guesses [2, 1, 0, 0], c = r = 2.
    // item 2: "c d e f" / "c x e f": 1-grams c, e, f match (3/4); 2-grams: only "e f" (1/3);
    //         3-grams 0/2; 4-gram 0/1. c = r = 4.
    // corpus: correct [5, 2, 0, 0], guess [6, 4, 2, 1], c = r = 6, BP = 1 - O(1e-10).
    // BLEU-1 = 5/6 = 0.833333, BLEU-2 = sqrt(5/6 * 2/4) = sqrt(5/12) = 0.645497.
    const { bleu } = corpusBleu([item('a b', 'a b'), item('c d e f', 'c x e f')]);
    const b = bp(6, 6);
    expectClose(bleu[0], p(5, 6) * b);
    expectClose(bleu[1], Math.sqrt(p(5, 6) * p(2, 4)) * b);
    expect(bleu[1]).toBeCloseTo(0.645497, 6);
    expectClose(bleu[2], Math.cbrt(p(5, 6) * p(2, 4) * p(0, 2)) * b);
    expectClose(bleu[3], (p(5, 6) * p(2, 4) * p(0, 2) * p(0, 1)) ** 0.25 * b);
  });

  it('an empty prediction scores 0', () => {
    // c = 0: ratio = 1e-15 / (2 + 1e-9), BP = exp(1 - 2e15) = 0.
    expect(corpusBleu([item('', 'a b')]).bleu).toEqual([0, 0, 0, 0]);
  });
});

describe('BLEU, properties', () => {
  it('a prediction identical to its reference scores 1 up to coco smoothing (1 - O(1e-9))', () => {
    // p_n = (k + 1e-15) / (k + 1e-9) and BP = exp(1 - (c + 1e-9)/(c + 1e-15)): each a hair under 1.
    const { bleu } = corpusBleu([item('a man rides a brown horse', 'a man rides a brown horse')]);
    for (const b of bleu) {
      expect(b).toBeLessThan(1);
      expect(b).toBeCloseTo(1, 8);
    }
  });

  it('BLEU-n never increases with n when the precisions fall', () => {
    const { bleu } = corpusBleu([
      item('a man rides a horse on a beach', 'a man rides a horse near the sea'),
    ]);
    for (let n = 1; n < 4; n++) expect(bleu[n]).toBeLessThanOrEqual(bleu[n - 1] as number);
  });
});

describe('CIDEr-D, by hand', () => {
  it('a two-item corpus: identical short captions, and a miss', () => {
    // N = 2, log N = ln 2. Document frequencies (over each item's references): a, b, "a b"
    // -> 1 (item 1); d -> 1 (item 2). Weights: tf * (ln 2 - ln max(1, df)).
    // Item 1, "a b" vs "a b": every weight is ln 2. Order 1: dot = 2 (ln 2)^2, norms
    // sqrt(2) ln 2 each -> 1. Order 2: (ln 2)^2 / (ln 2)^2 = 1. Orders 3, 4: no n-grams,
    // 0. Lengths (bigram counts) 1 and 1: penalty 1. Item 1 = 10 * (1 + 1 + 0 + 0) / 4 = 5.
    // Item 2, "c" vs "d": no shared n-gram, 0. Corpus = (5 + 0) / 2 = 2.5.
    const { score, perItem } = corpusCiderD([item('a b', 'a b'), item('c', 'd')]);
    expectClose(perItem[0], 5, 1e-12);
    expect(perItem[1]).toBe(0);
    expectClose(score, 2.5, 1e-12);
  });

  it('clips a repeated word and applies the Gaussian length penalty', () => {
    // Item 1, "a a" vs "a"; item 2, "b" vs "c". N = 2; df(a) = 1, df(c) = 1.
    // Prediction weights: a = 2 ln 2 (tf 2), "a a" = ln 2 (df 0 -> max(1, 0) = 1).
    // Reference weights: a = ln 2.
    // Order 1: min(2 ln 2, ln 2) * ln 2 / (2 ln 2 * ln 2) = 1/2. Order 2: the reference has
    // no bigram (norm 0): 0. Lengths: 1 bigram against 0, delta 1, penalty exp(-1/72).
    // Item 1 = 10 * (0.5 * exp(-1/72)) / 4 = 1.232759. Corpus = 1.232759 / 2 = 0.616379.
    const { score, perItem } = corpusCiderD([item('a a', 'a'), item('b', 'c')]);
    const item1 = (10 * (0.5 * Math.exp(-1 / 72))) / 4;
    expectClose(perItem[0], item1, 1e-12);
    expect(item1).toBeCloseTo(1.232759, 6);
    expectClose(score, item1 / 2, 1e-12);
  });

  it('averages the similarity over the references', () => {
    // Item 1 "a b" against "a b" (similarity 1 per order 1, 2 as above) and "x y" (nothing
    // shared: 0): 10 * ((1 + 0) + (1 + 0) + 0 + 0) / 4 / 2 refs = 2.5. Weights stay ln 2:
    // df(a) = df(b) = df("a b") = 1 of N = 2 items (x, y, "x y" also 1).
    const { perItem } = corpusCiderD([item('a b', 'a b', 'x y'), item('c', 'd')]);
    expectClose(perItem[0], 2.5, 1e-12);
  });
});

describe('CIDEr-D, properties', () => {
  const caption = 'a man rides a brown horse';

  it('is 0 for a corpus of one item, even an exact match (every idf is log 1 - log 1)', () => {
    expect(corpusCiderD([item(caption, caption)]).score).toBe(0);
  });

  it('is exactly 10 for exact matches of single references once the n-grams are informative', () => {
    // Each order 1..4 has an n-gram found in one item only (df 1 < N = 2): similarity 1 each.
    const { score, perItem } = corpusCiderD([
      item(caption, caption),
      item('two dogs play in the snow', 'two dogs play in the snow'),
    ]);
    expectClose(perItem[0], 10, 1e-12);
    expectClose(score, 10, 1e-12);
  });

  it('is below 10 for an exact match of one of two different references', () => {
    const { perItem } = corpusCiderD([
      item(caption, caption, 'a person on a horse'),
      item('two dogs play in the snow', 'two dogs play in the snow'),
    ]);
    expect(perItem[0]).toBeGreaterThan(5);
    expect(perItem[0]).toBeLessThan(10);
  });

  it("gives a word found in every item's references no weight", () => {
    // "a" is in both items' references: idf = log 2 - log 2 = 0. A prediction of just "a"
    // has a zero vector: 0, though its only word matches.
    const { perItem } = corpusCiderD([item('a', 'a cat'), item('b', 'a dog')]);
    expect(perItem[0]).toBe(0);
  });

  it('penalises a length difference even when every n-gram of the prediction matches', () => {
    const exact = corpusCiderD([item(caption, caption), item('x y z w', 'x y z w')]).perItem[0];
    const longer = corpusCiderD([
      item(`${caption} near the big old barn today`, caption),
      item('x y z w', 'x y z w'),
    ]).perItem[0];
    expect(longer).toBeLessThan(exact as number);
  });
});

describe('computeTextMetrics', () => {
  it('tokenizes, and reports BLEU-1..4, CIDEr-D and the lengths', () => {
    const m = computeTextMetrics([
      { prediction: 'The cat sat.', references: ['The cat sat on the mat.'] },
      { prediction: 'Two dogs!', references: ['Two dogs play.', 'Dogs playing'] },
    ]);
    expect(m).toMatchObject({ items: 2, references: 3, predictionTokens: 5 });
    // r: 6 for item 1; item 2 (c = 2) has references of length 3 and 2: closest 2.
    expect(m.referenceTokens).toBe(8);
    expect(m.bleu1).toBeGreaterThan(0);
    expect(m.ciderD).toBeGreaterThan(0);
  });

  it('is null over an empty corpus', () => {
    expect(computeTextMetrics([])).toMatchObject({
      items: 0,
      bleu1: null,
      bleu4: null,
      ciderD: null,
    });
  });

  it('refuses an item without references', () => {
    expect(() => computeTextMetrics([{ prediction: 'a', references: [] }])).toThrow(RangeError);
  });
});
