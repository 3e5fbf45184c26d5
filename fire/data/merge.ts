/**
 * `stoker data merge`: shard outputs (self-play's kept dialogues) into one raw FIRE file
 * (docs/fire.md, section 3, "The keep rule at merge time").
 *
 *   const report = await mergeFiles(['s0.jsonl', 's1.jsonl'], { out: 'fire_1m.jsonl' });
 *   report.kept, report.duplicates, report.dropped   // {no_improvement: 12, ...}
 *
 * Per record, in input order (files as given, lines in order):
 *   1. validate it (record.ts; images are not checked): a bad record stops the merge with
 *      file:line and the reason, or with skipBad is skipped and counted;
 *   2. deduplicate by id (record.ts: `id`, else derived from image, question and
 *      groundtruth): the first occurrence wins, later ones are counted as duplicates, even
 *      when the first is then dropped by the keep rule (a retried shard must not get a
 *      second chance with a different dialogue);
 *   3. with keepRule 'fire' (the default), keep what FIRE's self-play keeps
 *      (stoker_fire/selfplay_rules.py, same reason names), on the parsed teacher scores:
 *        format_failure          a score of 0 (the teacher broke format)
 *        no_improvement          the scores do not strictly increase
 *        unsatisfied             the last score is below `satisfied` (8)
 *        first_answer_satisfied  fewer than `minRounds` (2) rounds: no feedback to learn
 *      in that order (the first that applies is counted); 'none' keeps every record.
 * Kept lines are copied byte for byte to a temporary file renamed over `out` at the end:
 * an existing output is replaced only by a complete merge, never lost or half-written.
 *
 * Memory: the set of distinct ids (ids only, never records: bench/fire-data.ts measures
 * about 60-130 bytes of peak RSS per distinct id, 210-235 MB in all for a million
 * dialogues) plus the lines of one read chunk at a time.
 */
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { AtomicFile } from './jsonl.js';
import { BadRecordError, badRecordReason, SATISFIED, type Dialogue } from './record.js';
import { checkLines } from './validate.js';

export const KEEP_RULES = ['fire', 'none'] as const;
export type KeepRule = (typeof KEEP_RULES)[number];
export const DROP_REASONS = [
  'format_failure',
  'no_improvement',
  'unsatisfied',
  'first_answer_satisfied',
] as const;
export type DropReason = (typeof DROP_REASONS)[number];
/** Self-play's default (stoker_fire/selfplay_rules.py Rules.min_rounds). */
export const MIN_ROUNDS = 2;

export interface KeepRuleOptions {
  satisfied?: number;
  minRounds?: number;
}

/** Why FIRE's keep rule drops a dialogue, or null when it keeps it. */
export function fireDropReason(d: Dialogue, opts: KeepRuleOptions = {}): DropReason | null {
  const s = d.scores;
  if (s.some((x) => x === 0)) return 'format_failure';
  if (s.some((x, i) => i > 0 && x <= (s[i - 1] as number))) return 'no_improvement';
  const last = s[s.length - 1];
  if (last === undefined || last < (opts.satisfied ?? SATISFIED)) return 'unsatisfied';
  if (s.length < (opts.minRounds ?? MIN_ROUNDS)) return 'first_answer_satisfied';
  return null;
}

export interface MergeOptions extends KeepRuleOptions {
  out: string;
  keepRule?: KeepRule;
  skipBad?: boolean;
}

export interface MergeReport {
  inputs: string[];
  out: string;
  keepRule: KeepRule;
  satisfied: number;
  minRounds: number;
  /** Non-blank input lines. */
  records: number;
  kept: number;
  duplicates: number;
  skippedBad: number;
  dropped: Record<DropReason, number>;
  perInput: Array<{ file: string; records: number }>;
  /** The first skipped lines, with why (at most 20). */
  skipped: Array<{ file: string; line: number; reason: string }>;
  seconds: number;
}

export async function mergeFiles(
  inputs: readonly string[],
  opts: MergeOptions,
): Promise<MergeReport> {
  const t0 = performance.now();
  const keepRule = opts.keepRule ?? 'fire';
  const satisfied = opts.satisfied ?? SATISFIED;
  const minRounds = opts.minRounds ?? MIN_ROUNDS;
  const report: MergeReport = {
    inputs: [...inputs],
    out: opts.out,
    keepRule,
    satisfied,
    minRounds,
    records: 0,
    kept: 0,
    duplicates: 0,
    skippedBad: 0,
    dropped: Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<DropReason, number>,
    perInput: [],
    skipped: [],
    seconds: 0,
  };
  const ids = new Set<string>();
  await mkdir(dirname(opts.out), { recursive: true });
  const out = await AtomicFile.create(opts.out);
  try {
    for (const file of inputs) {
      let n = 0;
      for await (const r of checkLines(file, { satisfied })) {
        n++;
        report.records++;
        const d = r.checked?.dialogue;
        if (!r.ok || !d || r.text === null) {
          const reason = badRecordReason(r.issues);
          if (!opts.skipBad)
            throw new BadRecordError(
              `${file}:${r.line}: ${reason} (--skip-bad skips bad records; stoker data validate lists them all)`,
            );
          report.skippedBad++;
          if (report.skipped.length < 20) report.skipped.push({ file, line: r.line, reason });
          continue;
        }
        if (ids.has(d.id)) {
          report.duplicates++;
          continue;
        }
        ids.add(d.id);
        if (keepRule === 'fire') {
          const why = fireDropReason(d, { satisfied, minRounds });
          if (why) {
            report.dropped[why]++;
            continue;
          }
        }
        report.kept++;
        await out.write(`${r.text}\n`);
      }
      report.perInput.push({ file, records: n });
    }
    await out.commit();
  } catch (err) {
    await out.abort();
    throw err;
  }
  report.seconds = Math.round((performance.now() - t0) / 10) / 100;
  return report;
}
