/**
 * `stoker data validate`: check every record of a raw FIRE JSONL file, streaming.
 *
 *   const report = await validateFile('dialogues.jsonl', { imagesDir: 'images' });
 *   report.valid            // no record has an error (notes do not count)
 *   report.problemCounts    // {'image-missing': 3, 'not-improving': 2, ...}: every problem
 *   report.problems         // the first maxProblems problems, each with its line
 *
 * checkLineBatches() is the per-line pipeline the other data commands share: read a
 * line, parse it (a malformed line is a problem, not a crash), check it as a record
 * (record.ts), check its id against the ids seen before and its image under the image
 * root. Image checks overlap (up to 64 in flight) while results come out in line order.
 *
 * Memory: bounded by the line being read, the listed problems (maxProblems), the image
 * cache (images.ts) and the counters, except the duplicate check, which keeps every
 * distinct id with its first line (a Map; bench/fire-data.ts measures about 150 bytes of
 * peak RSS per distinct id, 250 MB in all for a million dialogues). Nothing else grows
 * with the file.
 */
import {
  checkRecord,
  hasErrors,
  PROBLEM_CODES,
  SATISFIED,
  severityOf,
  type Checked,
  type Issue,
  type ProblemCode,
  type Severity,
} from './record.js';
import { ImageChecker, type ImageProblem } from './images.js';
import { DEFAULT_MAX_LINE_BYTES, isTooLong, readLineBatches, type LineItem } from './jsonl.js';

export interface CheckLinesOptions {
  /** Check each record's image under this directory (skipped when absent). */
  imagesDir?: string;
  /** Report a record whose id was seen on an earlier line (keeps every id). */
  duplicates?: boolean;
  satisfied?: number;
  maxLineBytes?: number;
}

export interface CheckedLine {
  line: number;
  /** The line as read (null for a line too long to keep). */
  text: string | null;
  /** Null when the line is not JSON. */
  checked: Checked | null;
  /** Every problem of the line: parse, record, image and duplicate. */
  issues: Issue[];
  /** No error among the issues (notes allowed). */
  ok: boolean;
}

const IMAGE_CHECKS_IN_FLIGHT = 64;

/**
 * Every non-blank line of `file`, checked, in order, in batches (one array per chunk
 * read). Lines are checked one by one in line order (the duplicate check is
 * synchronous); image checks the cache cannot answer run concurrently, at most 64 at
 * once, and a batch is yielded when all of its lines are complete.
 */
export async function* checkLineBatches(
  file: string,
  opts: CheckLinesOptions = {},
): AsyncGenerator<CheckedLine[]> {
  const images = opts.imagesDir ? new ImageChecker(opts.imagesDir) : null;
  const seen = opts.duplicates ? new Map<string, number>() : null;
  const maxLineBytes = opts.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
  const checkOpts = { satisfied: opts.satisfied ?? SATISFIED };

  const checkItem = (item: LineItem): CheckedLine | Promise<CheckedLine> => {
    if (isTooLong(item)) {
      const issues: Issue[] = [
        {
          code: 'line-too-long',
          message: `line is ${item.tooLong} bytes, over the ${maxLineBytes}-byte limit; not read`,
        },
      ];
      return { line: item.line, text: null, checked: null, issues, ok: false };
    }
    let value: unknown;
    try {
      value = JSON.parse(item.text);
    } catch (err) {
      const issues: Issue[] = [
        { code: 'malformed-json', message: `not valid JSON: ${(err as Error).message}` },
      ];
      return { line: item.line, text: item.text, checked: null, issues, ok: false };
    }
    const checked = checkRecord(value, checkOpts);
    const issues = checked.issues;
    if (seen && checked.id !== null) {
      const first = seen.get(checked.id);
      if (first === undefined) seen.set(checked.id, item.line);
      else
        issues.push({
          code: 'duplicate-id',
          message: `id ${JSON.stringify(checked.id)} was first seen on line ${first}`,
        });
    }
    const done = (problem: ImageProblem | null): CheckedLine => {
      if (problem) issues.push(problem);
      return { line: item.line, text: item.text, checked, issues, ok: !hasErrors(issues) };
    };
    const image = checked.dialogue?.image;
    if (!images || image === undefined) return done(null);
    const known = images.peek(image);
    return known === undefined ? images.check(image).then(done) : done(known);
  };

  for await (const batch of readLineBatches(file, { maxLineBytes })) {
    const results = new Array<CheckedLine>(batch.length);
    let inFlight: Promise<void>[] = [];
    for (let i = 0; i < batch.length; i++) {
      const r = checkItem(batch[i] as LineItem);
      if (r instanceof Promise) {
        inFlight.push(
          r.then((v) => {
            results[i] = v;
          }),
        );
        if (inFlight.length >= IMAGE_CHECKS_IN_FLIGHT) {
          await Promise.all(inFlight);
          inFlight = [];
        }
      } else results[i] = r;
    }
    await Promise.all(inFlight);
    yield results;
  }
}

/** checkLineBatches one line at a time. */
export async function* checkLines(
  file: string,
  opts: CheckLinesOptions = {},
): AsyncGenerator<CheckedLine> {
  for await (const batch of checkLineBatches(file, opts)) yield* batch;
}

export interface Problem {
  line: number;
  id?: string;
  code: ProblemCode;
  severity: Severity;
  message: string;
}

export interface ValidateOptions {
  imagesDir?: string;
  /** Problems listed (all are counted). Default 50. */
  maxProblems?: number;
  satisfied?: number;
  maxLineBytes?: number;
}

/** Counts per key, with a cap on distinct keys so a hostile file cannot grow it. */
class Tally {
  static readonly MAX_KEYS = 1000;
  static readonly OTHER = '(other)';
  readonly counts = new Map<string, number>();
  add(key: string): void {
    const k = this.counts.has(key) || this.counts.size < Tally.MAX_KEYS ? key : Tally.OTHER;
    this.counts.set(k, (this.counts.get(k) ?? 0) + 1);
  }
  toObject(sort: 'count' | 'key'): Record<string, number> {
    const entries = [...this.counts.entries()];
    entries.sort((a, b) =>
      sort === 'count'
        ? b[1] - a[1] || a[0].localeCompare(b[0])
        : a[0].localeCompare(b[0], 'en', { numeric: true }),
    );
    return Object.fromEntries(entries);
  }
}

export interface ValidateReport {
  file: string;
  /** The image root the images were checked under; null when not checked. */
  imagesDir: string | null;
  /** True when no record has an error (notes do not make a file invalid). */
  valid: boolean;
  /** Non-blank lines. */
  records: number;
  /** Records without errors (they may have notes). */
  goodRecords: number;
  badRecords: number;
  errors: number;
  notes: number;
  bySplit: Record<string, number>;
  bySource: Record<string, number>;
  /** By number of rounds (teacher turns), as strings. */
  byRounds: Record<string, number>;
  /** Every problem counted by category (categories with zero omitted), report order. */
  problemCounts: Partial<Record<ProblemCode, number>>;
  /** The first maxProblems problems, in line order. */
  problems: Problem[];
  /** True when more problems exist than are listed. */
  problemsTruncated: boolean;
  seconds: number;
}

export async function validateFile(
  file: string,
  opts: ValidateOptions = {},
): Promise<ValidateReport> {
  const t0 = performance.now();
  const maxProblems = opts.maxProblems ?? 50;
  const bySplit = new Tally();
  const bySource = new Tally();
  const byRounds = new Tally();
  const counts = new Map<ProblemCode, number>();
  const problems: Problem[] = [];
  let records = 0;
  let bad = 0;
  let errors = 0;
  let notes = 0;
  let total = 0;
  for await (const r of checkLines(file, {
    duplicates: true,
    ...(opts.imagesDir ? { imagesDir: opts.imagesDir } : {}),
    ...(opts.satisfied !== undefined ? { satisfied: opts.satisfied } : {}),
    ...(opts.maxLineBytes !== undefined ? { maxLineBytes: opts.maxLineBytes } : {}),
  })) {
    records++;
    if (!r.ok) bad++;
    const facets = r.checked?.facets;
    bySplit.add(facets?.split ?? '(invalid)');
    bySource.add(facets?.source ?? '(invalid)');
    byRounds.add(facets?.rounds == null ? '(invalid)' : String(facets.rounds));
    for (const issue of r.issues) {
      const severity = severityOf(issue.code);
      if (severity === 'error') errors++;
      else notes++;
      counts.set(issue.code, (counts.get(issue.code) ?? 0) + 1);
      total++;
      if (problems.length < maxProblems) {
        const id = r.checked?.id;
        problems.push({
          line: r.line,
          ...(id != null ? { id } : {}),
          code: issue.code,
          severity,
          message: issue.message,
        });
      }
    }
  }
  const problemCounts: Partial<Record<ProblemCode, number>> = {};
  for (const code of Object.keys(PROBLEM_CODES) as ProblemCode[]) {
    const n = counts.get(code);
    if (n) problemCounts[code] = n;
  }
  return {
    file,
    imagesDir: opts.imagesDir ?? null,
    valid: bad === 0,
    records,
    goodRecords: records - bad,
    badRecords: bad,
    errors,
    notes,
    bySplit: bySplit.toObject('count'),
    bySource: bySource.toObject('count'),
    byRounds: byRounds.toObject('key'),
    problemCounts,
    problems,
    problemsTruncated: total > problems.length,
    seconds: Math.round((performance.now() - t0) / 10) / 100,
  };
}
