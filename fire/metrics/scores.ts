/**
 * The FIRE-Bench teacher test's score error (docs/fire.md, section 4): the mean absolute
 * error between the score parsed from a predicted teacher turn and the reference score,
 * an unparseable prediction counting as an error of 10 (the whole scale).
 *
 *   const acc = new ScoreErrorAccumulator();
 *   acc.add('Score: 7.\nFeedback: ...', 9);   // error 2
 *   acc.add('I cannot grade this.', 3);       // unparseable: error 10
 *   acc.result() -> { items: 2, unparseable: 1, mae: 6, maeParseable: 2 }
 *
 * Predictions are parsed by parsing.ts's teacher rule (the one self-play and the Python
 * side use). A reference is a score in 0..10 or a teacher turn; referenceScore() refuses
 * a reference turn without a parseable score (that is bad data, not a model error).
 */
import { MAX_SCORE, MIN_SCORE, parseTeacher } from '../parsing.js';

/** The error counted for a prediction whose score cannot be parsed. */
export const UNPARSEABLE_ERROR = 10;

export interface ScoreErrorMetrics {
  items: number;
  /** Predictions without a parseable score (each counted as an error of 10 in mae). */
  unparseable: number;
  /** Mean absolute error over every item; null when there is none. */
  mae: number | null;
  /** Mean absolute error over the parseable predictions only; null when there is none. */
  maeParseable: number | null;
}

/** The reference's score, or a message saying why it has none. */
export function referenceScore(reference: unknown): { score: number } | { problem: string } {
  if (typeof reference === 'number') {
    if (Number.isFinite(reference) && reference >= MIN_SCORE && reference <= MAX_SCORE)
      return { score: reference };
    return { problem: `a reference score must be in ${MIN_SCORE}..${MAX_SCORE}, got ${reference}` };
  }
  if (typeof reference === 'string') {
    const { score } = parseTeacher(reference);
    if (score === null) return { problem: 'the reference teacher turn has no parseable score' };
    return { score };
  }
  return { problem: 'a reference must be a score (number) or a teacher turn (string)' };
}

export class ScoreErrorAccumulator {
  private items = 0;
  private unparseable = 0;
  private errorSum = 0;
  private parseableErrorSum = 0;

  /** Count one prediction (a teacher turn) against a reference score or teacher turn. */
  add(prediction: string, reference: number | string): void {
    const ref = referenceScore(reference);
    if ('problem' in ref) throw new RangeError(ref.problem);
    const { score } = parseTeacher(prediction);
    this.items++;
    if (score === null) {
      this.unparseable++;
      this.errorSum += UNPARSEABLE_ERROR;
    } else {
      const error = Math.abs(score - ref.score);
      this.errorSum += error;
      this.parseableErrorSum += error;
    }
  }

  result(): ScoreErrorMetrics {
    const parseable = this.items - this.unparseable;
    return {
      items: this.items,
      unparseable: this.unparseable,
      mae: this.items === 0 ? null : this.errorSum / this.items,
      maeParseable: parseable === 0 ? null : this.parseableErrorSum / parseable,
    };
  }
}

/** MAE of (prediction, reference) pairs; see ScoreErrorAccumulator. */
export function computeScoreError(
  pairs: Iterable<{ prediction: string; reference: number | string }>,
): ScoreErrorMetrics {
  const acc = new ScoreErrorAccumulator();
  for (const p of pairs) acc.add(p.prediction, p.reference);
  return acc.result();
}
