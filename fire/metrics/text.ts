/**
 * Corpus BLEU-1..4 and CIDEr-D as the coco-caption toolkit (pycocoevalcap) defines them,
 * for the FIRE-Bench fixed-dialogue tests (docs/fire.md, section 4). Written from the
 * definitions below; the formulas are stated where they are computed.
 *
 *   computeTextMetrics([{ prediction: 'A red bus.', references: ['a red bus', 'the bus is red'] }])
 *     -> { items: 1, references: 2, bleu1, bleu2, bleu3, bleu4, ciderD, ... }
 *
 * Tokens (an approximation of coco's PTBTokenizer, which runs Stanford's PTB tokenizer
 * lower-cased and then drops the punctuation tokens '' ' `` ` -LRB- -RRB- -LCB- -RCB- . ?
 * ! , : - -- ... ;). Exactly, in order:
 *   1. lower-case (String.prototype.toLowerCase); curly quotes ‘ ’ become ' and “ ” become ";
 *   2. each of  " ( ) [ ] { } ; ! ? ` …  becomes a space, and so do , and : unless they sit
 *      between two digits (1,000 and 3:30 stay one token, as in PTB);
 *   3. split on whitespace;
 *   4. strip the characters . ' - from both ends of each token (PTB splits a sentence's
 *      final period, quotes and dashes off a word; coco then drops them);
 *   5. split the clitics n't 's 're 've 'll 'd 'm off the end of a word, repeatedly
 *      ("don't" -> do n't, "it's" -> it 's, "he'd've" -> he 'd 've, as PTB does);
 *   6. drop empty tokens.
 * Not reproduced: PTB's abbreviation list (it keeps the period of "u.s."; we give "u.s"),
 * and its splitting of symbols such as $ % & (kept attached here).
 */

export interface TextItem {
  prediction: string;
  /** At least one. */
  references: readonly string[];
}

export interface TextMetrics {
  items: number;
  references: number;
  /** Corpus BLEU-n for n = 1..4; null over an empty corpus. */
  bleu1: number | null;
  bleu2: number | null;
  bleu3: number | null;
  bleu4: number | null;
  /** Corpus CIDEr-D (mean over items, each in 0..10); null over an empty corpus. */
  ciderD: number | null;
  /** BLEU's c: tokens of all predictions. */
  predictionTokens: number;
  /** BLEU's r: the sum over items of the closest reference length. */
  referenceTokens: number;
}

// ---------------------------------------------------------------------------------------
// Tokens

const ALWAYS_SPACE = /["()[\]{};!?`\u2026]/g;
const SEPARATOR_UNLESS_NUMBER = /(?<!\p{Nd})[,:]|[,:](?!\p{Nd})/gu;
const CLITICS = ["n't", "'s", "'re", "'ve", "'ll", "'d", "'m"];

/** Strip . ' - from both ends (loops: a `[.'-]+$` regex is quadratic on a long token). */
function stripEdges(word: string): string {
  const edge = (c: number) => c === 0x2e || c === 0x27 || c === 0x2d;
  let start = 0;
  let end = word.length;
  while (start < end && edge(word.charCodeAt(start))) start++;
  while (end > start && edge(word.charCodeAt(end - 1))) end--;
  return word.slice(start, end);
}

/** The clitic that ends word[0, end), leaving a non-empty base, or undefined. */
function cliticBefore(word: string, end: number): string | undefined {
  return CLITICS.find((c) => end > c.length && word.startsWith(c, end - c.length));
}

export function tokenize(text: string): string[] {
  const spaced = text
    .toLowerCase()
    .replace(/[\u2018\u2019]/g, "'")
    .replace(/[\u201c\u201d]/g, '"')
    .replace(ALWAYS_SPACE, ' ')
    .replace(SEPARATOR_UNLESS_NUMBER, ' ');
  const tokens: string[] = [];
  for (const raw of spaced.split(/\s+/u)) {
    const word = stripEdges(raw);
    if (word === '') continue;
    // Clitics come off the end one at a time: "he'd've" -> he 'd 've.
    const clitics: string[] = [];
    let end = word.length;
    for (let c = cliticBefore(word, end); c !== undefined; c = cliticBefore(word, end)) {
      clitics.push(c);
      end -= c.length;
    }
    tokens.push(word.slice(0, end));
    for (let i = clitics.length - 1; i >= 0; i--) tokens.push(clitics[i] as string);
  }
  return tokens;
}

// ---------------------------------------------------------------------------------------
// n-grams

/** n-gram counts for n = 1..maxN, keyed by the tokens joined with a space (never in a token). */
function ngramCounts(tokens: readonly string[], maxN: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (let n = 1; n <= maxN; n++) {
    for (let i = 0; i + n <= tokens.length; i++) {
      const key = tokens.slice(i, i + n).join(' ');
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
  }
  return counts;
}

/** The order of an n-gram key: its spaces plus one. */
function order(key: string): number {
  let n = 1;
  for (let i = key.indexOf(' '); i !== -1; i = key.indexOf(' ', i + 1)) n++;
  return n;
}

interface TokenizedItem {
  prediction: readonly string[];
  references: ReadonlyArray<readonly string[]>;
}

// ---------------------------------------------------------------------------------------
// BLEU (coco-caption's BleuScorer with option 'closest')

/**
 * Corpus BLEU-1..maxN.
 * Per item, with c the prediction's length:
 *   correct_n += sum over the prediction's n-grams g of min(count(g), max over references
 *                of the reference's count(g))                     (clipped matches)
 *   guess_n   += max(0, c - n + 1)                                 (the prediction's n-grams)
 *   r         += the reference length closest to c; on a tie, the shorter one
 * Then, over the corpus, with tiny = 1e-15 and small = 1e-9 (coco's constants, so that
 * guess_n = 0 gives a tiny precision rather than 0/0):
 *   p_n    = (correct_n + tiny) / (guess_n + small)
 *   BLEU-N = (p_1 * ... * p_N) ^ (1/N) * BP,
 *   BP     = exp(1 - 1/ratio) when ratio = (c_total + tiny) / (r_total + small) < 1, else 1.
 * Note that ratio is a hair below 1 when c = r, so BP = exp(-~1e-9/r): an exact match
 * scores 1 - O(1e-9), not exactly 1, in coco and here.
 */
export function corpusBleu(
  items: readonly TokenizedItem[],
  maxN = 4,
): { bleu: number[]; predictionTokens: number; referenceTokens: number } {
  const tiny = 1e-15;
  const small = 1e-9;
  const correct = new Array<number>(maxN).fill(0);
  const guess = new Array<number>(maxN).fill(0);
  let testLength = 0;
  let refLength = 0;
  for (const item of items) {
    const c = item.prediction.length;
    testLength += c;
    refLength += closestLength(
      item.references.map((r) => r.length),
      c,
    );
    const refMax = new Map<string, number>();
    for (const ref of item.references) {
      for (const [g, k] of ngramCounts(ref, maxN)) refMax.set(g, Math.max(refMax.get(g) ?? 0, k));
    }
    for (const [g, k] of ngramCounts(item.prediction, maxN)) {
      const n = order(g);
      correct[n - 1] = (correct[n - 1] as number) + Math.min(k, refMax.get(g) ?? 0);
    }
    for (let n = 1; n <= maxN; n++)
      guess[n - 1] = (guess[n - 1] as number) + Math.max(0, c - n + 1);
  }
  const ratio = (testLength + tiny) / (refLength + small);
  const brevity = ratio < 1 ? Math.exp(1 - 1 / ratio) : 1;
  const bleu: number[] = [];
  let product = 1;
  for (let n = 1; n <= maxN; n++) {
    product *= ((correct[n - 1] as number) + tiny) / ((guess[n - 1] as number) + small);
    bleu.push(product ** (1 / n) * brevity);
  }
  return { bleu, predictionTokens: testLength, referenceTokens: refLength };
}

/** coco's 'closest': min over references of (|len - c|, len), compared in that order. */
function closestLength(lengths: readonly number[], c: number): number {
  let best = lengths[0] as number;
  for (const l of lengths) {
    const d = Math.abs(l - c);
    const bestD = Math.abs(best - c);
    if (d < bestD || (d === bestD && l < best)) best = l;
  }
  return best;
}

// ---------------------------------------------------------------------------------------
// CIDEr-D (coco-caption's CiderScorer: n = 4, sigma = 6, document frequency over the corpus)

interface TfIdf {
  /** Per order n (index n - 1): n-gram -> tf * idf. */
  vectors: Array<Map<string, number>>;
  /** Per order: the vector's Euclidean norm. */
  norms: number[];
  /** coco's "length": the count of bigrams, see below. */
  length: number;
}

/**
 * Corpus CIDEr-D and the per-item scores. With N the number of items, df(g) the number
 * of items whose references (together) contain g:
 *   weight of g in a sentence  w(g) = count(g) * (log N - log(max(1, df(g))))
 *   per order n, prediction h against reference r:
 *     sim_n(h, r) = sum over h's n-grams g of min(w_h(g), w_r(g)) * w_r(g)     (clipped)
 *                   / (|w_h| * |w_r|)      (only when both norms are non-zero; else the sum)
 *                 * exp(-(len_h - len_r)^2 / (2 * sigma^2))           (sigma = 6)
 *   CIDEr-D(item) = 10 * mean over n = 1..4 of (sum over references r of sim_n(h, r)) / #refs
 *   corpus        = mean over items.
 * len is coco's: its code adds a sentence's term frequencies where the (0-based) n-gram
 * index is 1, which counts bigrams: len = max(0, words - 1). The difference len_h - len_r
 * is the word-count difference whenever both sentences have a word, and when one is empty
 * its similarity is 0 anyway, so this never changes a score; we keep coco's form.
 * Consequences: one item alone (N = 1) scores 0, since every weight is log 1 - log 1; an
 * n-gram found in every item's references weighs 0 too. A prediction identical to its only
 * reference scores exactly 10 when each order 1..4 has an n-gram of positive weight.
 */
export function corpusCiderD(
  items: readonly TokenizedItem[],
  options: { maxN?: number; sigma?: number } = {},
): { score: number; perItem: number[] } {
  const maxN = options.maxN ?? 4;
  const sigma = options.sigma ?? 6;
  const refCounts = items.map((item) => item.references.map((r) => ngramCounts(r, maxN)));
  const df = new Map<string, number>();
  for (const refs of refCounts) {
    const seen = new Set<string>();
    for (const counts of refs) for (const g of counts.keys()) seen.add(g);
    for (const g of seen) df.set(g, (df.get(g) ?? 0) + 1);
  }
  const logN = Math.log(items.length);
  const tfIdf = (counts: Map<string, number>): TfIdf => {
    const vectors = Array.from({ length: maxN }, () => new Map<string, number>());
    const squares = new Array<number>(maxN).fill(0);
    let length = 0;
    for (const [g, tf] of counts) {
      const n = order(g);
      const w = tf * (logN - Math.log(Math.max(1, df.get(g) ?? 0)));
      vectors[n - 1]?.set(g, w);
      squares[n - 1] = (squares[n - 1] as number) + w * w;
      if (n === 2) length += tf;
    }
    return { vectors, norms: squares.map(Math.sqrt), length };
  };
  const perItem = items.map((item, i) => {
    const h = tfIdf(ngramCounts(item.prediction, maxN));
    const refs = refCounts[i] as Array<Map<string, number>>;
    const sums = new Array<number>(maxN).fill(0);
    for (const counts of refs) {
      const r = tfIdf(counts);
      const penalty = Math.exp(-((h.length - r.length) ** 2) / (2 * sigma * sigma));
      for (let n = 0; n < maxN; n++) {
        const rv = r.vectors[n] as Map<string, number>;
        let dot = 0;
        for (const [g, wh] of h.vectors[n] as Map<string, number>) {
          const wr = rv.get(g) ?? 0;
          dot += Math.min(wh, wr) * wr;
        }
        const hn = h.norms[n] as number;
        const rn = r.norms[n] as number;
        if (hn !== 0 && rn !== 0) dot /= hn * rn;
        sums[n] = (sums[n] as number) + dot * penalty;
      }
    }
    const meanOverN = sums.reduce((a, b) => a + b, 0) / maxN;
    return (meanOverN / refs.length) * 10;
  });
  const score = perItem.length === 0 ? 0 : perItem.reduce((a, b) => a + b, 0) / perItem.length;
  return { score, perItem };
}

// ---------------------------------------------------------------------------------------

/** BLEU-1..4 and CIDEr-D of a corpus; every score is null when it is empty. */
export function computeTextMetrics(items: readonly TextItem[]): TextMetrics {
  const tokenized = items.map((item) => {
    if (item.references.length === 0) throw new RangeError('an item needs at least one reference');
    return { prediction: tokenize(item.prediction), references: item.references.map(tokenize) };
  });
  const references = items.reduce((a, item) => a + item.references.length, 0);
  if (tokenized.length === 0) {
    return {
      items: 0,
      references: 0,
      bleu1: null,
      bleu2: null,
      bleu3: null,
      bleu4: null,
      ciderD: null,
      predictionTokens: 0,
      referenceTokens: 0,
    };
  }
  const { bleu, predictionTokens, referenceTokens } = corpusBleu(tokenized, 4);
  return {
    items: tokenized.length,
    references,
    bleu1: bleu[0] as number,
    bleu2: bleu[1] as number,
    bleu3: bleu[2] as number,
    bleu4: bleu[3] as number,
    ciderD: corpusCiderD(tokenized).score,
    predictionTokens,
    referenceTokens,
  };
}
