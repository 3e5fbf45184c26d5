/**
 * `stoker data validate FILE [--images DIR] [--json] [--max-problems N] [--satisfied N]
 * [--strict]`: check every record of a raw FIRE file (fire/data/validate.ts) and print
 * the report: a summary, the problem counts by code, the first problems with their lines,
 * and a verdict (or, with --json, the report object).
 *
 * Exit codes: 0 once the report is printed, whatever the records hold (a dataset with
 * holes is still a successful run of the tool); with --strict, 1 when a record has an
 * error; 2 a missing file or directory, a bad flag.
 */
import type { Command } from 'commander';
import { PROBLEM_CODES, SATISFIED, type ProblemCode } from '../../data/record.js';
import { validateFile, type ValidateReport } from '../../data/validate.js';
import { table } from '../../../common/table.js';
import { counted, print, printJson } from '../output.js';
import { nonNegative, requireDir, requireFile, score } from './flags.js';

interface ValidateFlags {
  images?: string;
  json?: boolean;
  maxProblems: number;
  satisfied: number;
  strict?: boolean;
}

export function registerValidate(data: Command): void {
  data
    .command('validate')
    .description(
      'check every record of a raw FIRE JSONL file (fields, turn order, teacher scores, images, duplicate ids); every problem with its line; exit 0 once the report is printed (its "valid" says whether a record has an error), or 1 with --strict',
    )
    .argument('<file>', 'raw FIRE dialogues (JSONL)')
    .option('--images <dir>', 'image root: check that each record image exists and is an image')
    .option('--json', 'print one JSON object (schema: README, "stoker data")')
    .option('--max-problems <n>', 'problems listed (all are counted)', nonNegative, 50)
    .option('--satisfied <n>', 'a last score below this is noted as unsatisfied', score, SATISFIED)
    .option(
      '--strict',
      'exit 1 when any record has an error (to gate a CI job or a pipeline stage)',
    )
    .action(validateAction);
}

async function validateAction(file: string, o: ValidateFlags): Promise<void> {
  requireFile(file);
  if (o.images !== undefined) requireDir(o.images, '--images');
  const report = await validateFile(file, {
    maxProblems: o.maxProblems,
    satisfied: o.satisfied,
    ...(o.images !== undefined ? { imagesDir: o.images } : {}),
  });
  if (o.json) printJson(report);
  else print(describeValidation(report));
  // A report of a dataset with holes is still a successful run of the tool: real
  // datasets have them (the FIRE samples lack 3 images). --strict makes it a gate.
  process.exitCode = o.strict && !report.valid ? 1 : 0;
}

/** `k n, k n` of a count table, or `-` when it is empty. */
const inline = (counts: Record<string, number>, sep = ' '): string =>
  Object.entries(counts)
    .map(([k, n]) => `${k}${sep}${n}`)
    .join(', ') || '-';

/** The report as text: summary, problem counts, problems listed, verdict. */
export function describeValidation(r: ValidateReport): string {
  const lines = [summaryTable(r)];
  const codes = Object.keys(r.problemCounts) as ProblemCode[];
  if (codes.length > 0) {
    lines.push(
      '',
      table([
        ['PROBLEM', 'SEVERITY', 'COUNT'],
        ...codes.map((c) => [c, PROBLEM_CODES[c], String(r.problemCounts[c])]),
      ]),
    );
  }
  if (r.problems.length > 0) lines.push('', ...problemLines(r));
  lines.push('', verdict(r));
  return lines.join('\n');
}

function summaryTable(r: ValidateReport): string {
  return table([
    ['file', r.file],
    ['images', r.imagesDir ?? 'not checked (no --images)'],
    ['records', `${r.records} (${r.goodRecords} without errors, ${r.badRecords} with errors)`],
    ['split', inline(r.bySplit)],
    ['rounds', inline(r.byRounds, ': ')],
    ['source', inline(r.bySource)],
  ]);
}

/** One line per listed problem, and how to list more when the list was cut. */
function problemLines(r: ValidateReport): string[] {
  const lines = r.problems.map(
    (p) =>
      `line ${p.line}${p.id !== undefined ? ` (id ${p.id})` : ''}: ${p.severity} ${p.code}: ${p.message}`,
  );
  if (r.problemsTruncated)
    lines.push(
      `(${r.problems.length} of ${r.errors + r.notes} problems listed; --max-problems N lists more)`,
    );
  return lines;
}

function verdict(r: ValidateReport): string {
  if (r.valid)
    return `valid: no record has an error${r.notes ? ` (${counted(r.notes, 'note')})` : ''}`;
  const have = r.badRecords === 1 ? 'record has' : 'records have';
  return `invalid: ${r.badRecords} ${have} errors (${counted(r.errors, 'error')}, ${counted(r.notes, 'note')})`;
}
