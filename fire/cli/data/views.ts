/**
 * `stoker data views FILE --out DIR [--view student|teacher|answers|all] [--images DIR]
 * [--skip-bad] [--max-length N] [--satisfied N] [--json]`: write the LLaVA training views
 * of raw FIRE dialogues (fire/data/views.ts) and print what each file got (or, with
 * --json, the counts).
 *
 * Exit codes: 0 written; 1 a bad record (or a view record over --max-length) without
 * --skip-bad, named as FILE:LINE; 2 a missing file or directory, a bad flag.
 */
import { Option, type Command } from 'commander';
import { SATISFIED } from '../../data/record.js';
import { buildViews, VIEW_NAMES, type ViewName, type ViewsReport } from '../../data/views.js';
import { counted, print, printJson } from '../output.js';
import { positive, requireDir, requireFile, score } from './flags.js';

interface ViewsFlags {
  out: string;
  view: ViewName | 'all';
  images?: string;
  skipBad?: boolean;
  maxLength?: number;
  satisfied: number;
  json?: boolean;
}

export function registerViews(data: Command): void {
  data
    .command('views')
    .description(
      'write LLaVA training views (OUT/student.jsonl, teacher.jsonl, answers.jsonl) of raw FIRE dialogues; a bad record fails the command (FILE:LINE) unless --skip-bad',
    )
    .argument('<file>', 'raw FIRE dialogues (JSONL)')
    .requiredOption('--out <dir>', 'output directory')
    .addOption(
      new Option('--view <name>', 'which view to write')
        .choices([...VIEW_NAMES, 'all'])
        .default('all'),
    )
    .option('--images <dir>', 'image root: a record whose image is missing there is bad')
    .option('--skip-bad', 'skip bad records (and too long view records) and count them')
    .option(
      '--max-length <n>',
      'a view record longer than this many characters (its message texts together) is an error',
      positive,
    )
    .option(
      '--satisfied <n>',
      'answers view: dialogues whose last score is >= this',
      score,
      SATISFIED,
    )
    .option('--json', 'print the counts as JSON')
    .action(viewsAction);
}

async function viewsAction(file: string, o: ViewsFlags): Promise<void> {
  requireFile(file);
  if (o.images !== undefined) requireDir(o.images, '--images');
  const r = await buildViews(file, {
    outDir: o.out,
    views: o.view === 'all' ? VIEW_NAMES : [o.view],
    skipBad: o.skipBad ?? false,
    satisfied: o.satisfied,
    ...(o.images !== undefined ? { imagesDir: o.images } : {}),
    ...(o.maxLength !== undefined ? { maxLength: o.maxLength } : {}),
  });
  if (o.json) printJson(r);
  else print(describeViews(r));
}

/** A line per view file with its count, the input counts, and the skipped lines. */
function describeViews(r: ViewsReport): string {
  const lines = r.views.map((v) => {
    const tooLong = r.skippedTooLong[v];
    const leftOut = tooLong ? ` (${tooLong} over --max-length left out)` : '';
    return `${r.files[v]}: ${counted(r.written[v] ?? 0, 'record')}${leftOut}`;
  });
  const bad = r.skippedBad ? `; ${counted(r.skippedBad, 'bad record')} skipped` : '';
  lines.push(`from ${counted(r.dialogues, 'dialogue')} of ${counted(r.records, 'record')}${bad}`);
  for (const s of r.skipped) lines.push(`  skipped line ${s.line}: ${s.reason}`);
  return lines.join('\n');
}
