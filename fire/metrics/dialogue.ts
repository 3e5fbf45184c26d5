/**
 * FIRE-Bench free-dialogue metrics (docs/fire.md, section 4, "Free-dialogue metrics"),
 * as a pure streaming accumulator: memory is O(Tmax) whatever the number of dialogues.
 *
 *   computeDialogueMetrics([[3, 10], [9], [2, 5, 6]])                     -> DialogueMetrics
 *   await computeDialogueMetrics(asyncIterableOfScoreArrays, { tau: 7 })  -> DialogueMetrics
 *   const acc = new DialogueMetricsAccumulator(); acc.add([3, 10]); acc.result()
 *
 * For dialogue i with teacher scores s_i1..s_iT, cut to T = min(length, Tmax) turns
 * (a longer dialogue counts with its first Tmax turns only), and c_it = [s_it >= tau]:
 *   acc@t  mean over dialogues of c at turn min(t, T_i) (a finished dialogue keeps its
 *          last state), t = 1..Tmax
 *   RR     #{c_i1 = 0 and c_iT = 1} / #{c_i1 = 0}; null when no dialogue starts wrong
 *   AT     mean over dialogues of the first turn with c = 1; a dialogue never satisfied
 *          (within its first Tmax turns) counts `penalty` (default Tmax + 1)
 *   ADR    mean over dialogues of (s_iT - s_i1)
 *   ATR    mean over dialogues with T_i > 1 of (s_iT - s_i1) / (T_i - 1); null when none
 *   AT normalised to a baseline run: AT / AT_baseline (normalisedAt), the paper's
 *          baseline row being 1.00.
 * Every mean is null over zero dialogues. Defaults: tau 8, Tmax 5, penalty Tmax + 1.
 *
 * Scores are integers 0..10 (FIRE's scale; parsing.ts maps an unparseable teacher turn
 * to null and scoreOrZero to 0 before it gets here). add() throws a RangeError naming
 * the problem for anything else; validateScores() gives the same text without throwing,
 * so a reader can report it with the file and line.
 */
import { MAX_SCORE, MIN_SCORE } from '../parsing.js';

export interface DialogueMetricsOptions {
  /** A turn is correct when its score is >= tau (default 8). */
  tau?: number;
  /** Turns counted per dialogue (default 5). */
  tmax?: number;
  /** The turn counted for a dialogue never satisfied (default tmax + 1). */
  penalty?: number;
}

export type ResolvedDialogueOptions = Required<DialogueMetricsOptions>;

export const DEFAULT_TAU = 8;
export const DEFAULT_TMAX = 5;

export interface DialogueMetrics {
  options: ResolvedDialogueOptions;
  /** Dialogues counted. */
  dialogues: number;
  /** Dialogues whose first turn is wrong (c_i1 = 0): RR's denominator. */
  startingWrong: number;
  /** Of those, the ones whose last counted turn is correct: RR's numerator. */
  refined: number;
  /** Dialogues with more than one counted turn: ATR's denominator. */
  multiTurn: number;
  /** Dialogues longer than tmax, counted with their first tmax turns. */
  truncated: number;
  /** acc@1..acc@tmax (index 0 is acc@1). */
  accAt: Array<number | null>;
  rr: number | null;
  at: number | null;
  adr: number | null;
  atr: number | null;
}

/** Defaults filled in; a RangeError for values that make no sense. */
export function resolveDialogueOptions(o: DialogueMetricsOptions = {}): ResolvedDialogueOptions {
  const tau = o.tau ?? DEFAULT_TAU;
  const tmax = o.tmax ?? DEFAULT_TMAX;
  const penalty = o.penalty ?? tmax + 1;
  if (!Number.isFinite(tau)) throw new RangeError(`tau must be a number, got ${String(tau)}`);
  if (!Number.isInteger(tmax) || tmax < 1)
    throw new RangeError(`tmax must be an integer >= 1, got ${String(tmax)}`);
  if (!Number.isFinite(penalty))
    throw new RangeError(`penalty must be a number, got ${String(penalty)}`);
  return { tau, tmax, penalty };
}

/** What is wrong with a score array, or null when it is one (non-empty, integers 0..10). */
export function validateScores(scores: unknown): string | null {
  if (!Array.isArray(scores)) return `must be an array of integer scores, got ${describe(scores)}`;
  if (scores.length === 0) return 'is empty (a dialogue has at least one scored turn)';
  for (let i = 0; i < scores.length; i++) {
    const s: unknown = scores[i];
    if (typeof s !== 'number' || !Number.isInteger(s) || s < MIN_SCORE || s > MAX_SCORE)
      return `[${i}] is ${describe(s)}: scores are integers ${MIN_SCORE}..${MAX_SCORE}`;
  }
  return null;
}

function describe(value: unknown): string {
  if (value === undefined) return 'missing';
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
}

export class DialogueMetricsAccumulator {
  readonly options: ResolvedDialogueOptions;
  private dialogues = 0;
  private startingWrong = 0;
  private refined = 0;
  private multiTurn = 0;
  private truncated = 0;
  private readonly correctAt: number[];
  private turnSum = 0;
  private refinementSum = 0;
  private turnRefinementSum = 0;

  constructor(options: DialogueMetricsOptions = {}) {
    this.options = resolveDialogueOptions(options);
    this.correctAt = new Array<number>(this.options.tmax).fill(0);
  }

  /** Count one dialogue: its teacher score per turn. */
  add(scores: readonly number[]): void {
    const problem = validateScores(scores);
    if (problem) throw new RangeError(`score array ${problem}`);
    const { tau, tmax, penalty } = this.options;
    const turns = Math.min(scores.length, tmax);
    const first = scores[0] as number;
    const last = scores[turns - 1] as number;
    let firstCorrect = 0; // 1-based turn of the first c = 1; 0: never
    for (let t = 0; t < turns; t++) {
      const correct = (scores[t] as number) >= tau;
      if (correct && firstCorrect === 0) firstCorrect = t + 1;
      if (correct) this.correctAt[t] = (this.correctAt[t] as number) + 1;
    }
    // A finished dialogue keeps its last state for acc@t, t > T.
    if (last >= tau) {
      for (let t = turns; t < tmax; t++) this.correctAt[t] = (this.correctAt[t] as number) + 1;
    }
    this.dialogues++;
    if (scores.length > tmax) this.truncated++;
    if (first < tau) {
      this.startingWrong++;
      if (last >= tau) this.refined++;
    }
    this.turnSum += firstCorrect === 0 ? penalty : firstCorrect;
    this.refinementSum += last - first;
    if (turns > 1) {
      this.multiTurn++;
      this.turnRefinementSum += (last - first) / (turns - 1);
    }
  }

  result(): DialogueMetrics {
    const n = this.dialogues;
    const mean = (sum: number, count: number) => (count === 0 ? null : sum / count);
    return {
      options: { ...this.options },
      dialogues: n,
      startingWrong: this.startingWrong,
      refined: this.refined,
      multiTurn: this.multiTurn,
      truncated: this.truncated,
      accAt: this.correctAt.map((c) => mean(c, n)),
      rr: mean(this.refined, this.startingWrong),
      at: mean(this.turnSum, n),
      adr: mean(this.refinementSum, n),
      atr: mean(this.turnRefinementSum, this.multiTurn),
    };
  }
}

/** A dialogue as its score array, or a raw FIRE record carrying one in `score`. */
export type DialogueInput = readonly number[] | { readonly score: readonly number[] };

function scoresOf(d: DialogueInput): readonly number[] {
  return Array.isArray(d) ? d : (d as { score: readonly number[] }).score;
}

/** The metrics of dialogues given as score arrays or raw records; a Promise for async input. */
export function computeDialogueMetrics(
  dialogues: Iterable<DialogueInput>,
  options?: DialogueMetricsOptions,
): DialogueMetrics;
export function computeDialogueMetrics(
  dialogues: AsyncIterable<DialogueInput>,
  options?: DialogueMetricsOptions,
): Promise<DialogueMetrics>;
export function computeDialogueMetrics(
  dialogues: Iterable<DialogueInput> | AsyncIterable<DialogueInput>,
  options: DialogueMetricsOptions = {},
): DialogueMetrics | Promise<DialogueMetrics> {
  const acc = new DialogueMetricsAccumulator(options);
  if (Symbol.asyncIterator in dialogues) {
    return (async () => {
      for await (const d of dialogues) acc.add(scoresOf(d));
      return acc.result();
    })();
  }
  for (const d of dialogues) acc.add(scoresOf(d));
  return acc.result();
}

/** AT / AT_baseline: the paper's "AT (normalised)"; null when either is undefined or 0. */
export function normalisedAt(run: DialogueMetrics, baseline: DialogueMetrics): number | null {
  if (run.at === null || baseline.at === null || baseline.at === 0) return null;
  return run.at / baseline.at;
}
