/**
 * `stoker data ...`: FIRE data tooling (docs/fire.md, sections 1-3), streaming: memory does
 * not grow with a file's size; validate, views and merge keep the set of distinct ids
 * (duplicates), which grows with the number of dialogues (about 100-150 bytes each).
 * Library code lives in fire/data/.
 *
 *   stoker data validate FILE [--images DIR] [--json] [--max-problems N] [--satisfied N] [--strict]
 *   stoker data views FILE --out DIR [--view student|teacher|answers|all] [--images DIR]
 *                    [--skip-bad] [--max-length N] [--satisfied N] [--json]
 *   stoker data shard FILE --out DIR (--shards N | --shard-size N) [--skip-bad] [--json]
 *   stoker data merge [FILE...] [--manifest M]... --out FILE [--keep-rule fire|none] [--satisfied N]
 *                    [--min-rounds N] [--skip-bad] [--json]
 *   stoker data synth --n N --out DIR [--seed S] [--kind dialogues|seeds] [--split NAME]
 *                    [--start-id K] [--image-size PX] [--prefix P]
 *
 * Exit codes: 0 success (validate: once the report is printed, whatever the records hold);
 * 1 problems in the data (validate --strict: some record has an error; views/shard/merge:
 * a bad record without --skip-bad, named as FILE:LINE); 2 usage errors (a missing file, a
 * bad flag: commander's errors too, which the rest of the CLI leaves at 1); synth passes
 * the generator's status through.
 */
import { readFileSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { InvalidArgumentError, Option, type Command, type CommanderError } from 'commander';
import { UsageError } from '../../common/errors.js';
import { mergeFiles, KEEP_RULES, MIN_ROUNDS, type KeepRule } from '../data/merge.js';
import { PROBLEM_CODES, SATISFIED, type ProblemCode } from '../data/record.js';
import { MAX_SHARDS, shardFile } from '../data/shard.js';
import { runSynth, SYNTH_KINDS, type SynthOptions } from '../data/synth.js';
import { validateFile, type ValidateReport } from '../data/validate.js';
import { buildViews, VIEW_NAMES, type ViewName } from '../data/views.js';
import { table } from '../../common/table.js';

function print(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

const integer =
  (min: number, what: string) =>
  (value: string): number => {
    const n = Number(value);
    if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min)
      throw new InvalidArgumentError(`${what} must be an integer >= ${min}`);
    return n;
  };
const positive = integer(1, 'the value');
const nonNegative = integer(0, 'the value');
const score = (value: string): number => {
  const n = integer(0, 'a score')(value);
  if (n > 10) throw new InvalidArgumentError('a score must be an integer 0-10');
  return n;
};

function requireFile(file: string): void {
  let st;
  try {
    st = statSync(file);
  } catch {
    throw new UsageError(`${file}: no such file`);
  }
  if (!st.isFile()) throw new UsageError(`${file}: not a file`);
}

function requireDir(dir: string, flag: string): void {
  let st;
  try {
    st = statSync(dir);
  } catch {
    throw new UsageError(`${flag} ${dir}: no such directory`);
  }
  if (!st.isDirectory()) throw new UsageError(`${flag} ${dir}: not a directory`);
}

const inline = (counts: Record<string, number>, sep = ' '): string =>
  Object.entries(counts)
    .map(([k, n]) => `${k}${sep}${n}`)
    .join(', ') || '-';

export function describeValidation(r: ValidateReport): string {
  const lines = [
    table([
      ['file', r.file],
      ['images', r.imagesDir ?? 'not checked (no --images)'],
      ['records', `${r.records} (${r.goodRecords} without errors, ${r.badRecords} with errors)`],
      ['split', inline(r.bySplit)],
      ['rounds', inline(r.byRounds, ': ')],
      ['source', inline(r.bySource)],
    ]),
  ];
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
  if (r.problems.length > 0) {
    lines.push('');
    for (const p of r.problems)
      lines.push(
        `line ${p.line}${p.id !== undefined ? ` (id ${p.id})` : ''}: ${p.severity} ${p.code}: ${p.message}`,
      );
    if (r.problemsTruncated)
      lines.push(
        `(${r.problems.length} of ${r.errors + r.notes} problems listed; --max-problems N lists more)`,
      );
  }
  lines.push(
    '',
    r.valid
      ? `valid: no record has an error${r.notes ? ` (${r.notes} note${r.notes === 1 ? '' : 's'})` : ''}`
      : `invalid: ${r.badRecords} record${r.badRecords === 1 ? ' has' : 's have'} errors (${r.errors} error${r.errors === 1 ? '' : 's'}, ${r.notes} note${r.notes === 1 ? '' : 's'})`,
  );
  return lines.join('\n');
}

/**
 * The files a shard manifest lists, in shard order: a generate stage's manifest
 * (`{stage, shards: [{index, path, items}], failed}`, written by the controller; failed
 * shards are not listed) or `data shard`'s (`{files: [{file, records}]}`). Relative
 * paths are relative to the manifest's directory.
 */
export function manifestFiles(manifest: string): string[] {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(manifest, 'utf8'));
  } catch (err) {
    throw new UsageError(`--manifest ${manifest}: not JSON (${(err as Error).message})`);
  }
  const obj = (value ?? {}) as { shards?: unknown; files?: unknown };
  const pick = (list: unknown, key: 'path' | 'file'): string[] | null => {
    if (!Array.isArray(list)) return null;
    const sorted = [...list].sort(
      (a: { index?: number }, b: { index?: number }) => (a.index ?? 0) - (b.index ?? 0),
    );
    return sorted.map((e: Record<string, unknown>, i) => {
      const p = e[key];
      if (typeof p !== 'string' || p === '')
        throw new UsageError(`--manifest ${manifest}: entry ${i} has no "${key}"`);
      return resolve(dirname(manifest), p);
    });
  };
  const files = pick(obj.shards, 'path') ?? pick(obj.files, 'file');
  if (files === null)
    throw new UsageError(
      `--manifest ${manifest}: expected {shards: [{path}]} (a generate stage's manifest) or {files: [{file}]} (data shard's)`,
    );
  return files;
}

/** Commander's own errors (unknown option, bad value, missing argument) exit 2 here. */
function usageExit(err: CommanderError): never {
  process.exit(err.exitCode === 0 ? 0 : 2);
}

export function registerDataCommands(program: Command): void {
  const data = program
    .command('data')
    .description(
      'FIRE data tools: validate raw dialogues, build training views, shard, merge, synthesize (streaming)',
    )
    .exitOverride(usageExit);

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
    .action(
      async (
        file: string,
        o: {
          images?: string;
          json?: boolean;
          maxProblems: number;
          satisfied: number;
          strict?: boolean;
        },
      ) => {
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
      },
    );

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
    .action(
      async (
        file: string,
        o: {
          out: string;
          view: ViewName | 'all';
          images?: string;
          skipBad?: boolean;
          maxLength?: number;
          satisfied: number;
          json?: boolean;
        },
      ) => {
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
        if (o.json) return printJson(r);
        const lines = r.views.map(
          (v) =>
            `${r.files[v]}: ${r.written[v]} record${r.written[v] === 1 ? '' : 's'}${r.skippedTooLong[v] ? ` (${r.skippedTooLong[v]} over --max-length left out)` : ''}`,
        );
        lines.push(
          `from ${r.dialogues} dialogue${r.dialogues === 1 ? '' : 's'} of ${r.records} record${r.records === 1 ? '' : 's'}${r.skippedBad ? `; ${r.skippedBad} bad record${r.skippedBad === 1 ? '' : 's'} skipped` : ''}`,
        );
        for (const s of r.skipped) lines.push(`  skipped line ${s.line}: ${s.reason}`);
        print(lines.join('\n'));
      },
    );

  data
    .command('shard')
    .description(
      'split a JSONL file into OUT/shard-NNNNN.jsonl by a stable hash of each record id (sha1 mod N), plus OUT/manifest.json',
    )
    .argument('<file>', 'JSONL records (dialogues or self-play seeds) with an id')
    .requiredOption('--out <dir>', 'output directory')
    .option('--shards <n>', `number of shards (1-${MAX_SHARDS})`, positive)
    .option(
      '--shard-size <n>',
      'records per shard on average: shards = ceil(records / n)',
      positive,
    )
    .option('--skip-bad', 'skip lines that are not JSON or have no id, and count them')
    .option('--json', 'print the manifest (and where it is) as JSON')
    .action(
      async (
        file: string,
        o: { out: string; shards?: number; shardSize?: number; skipBad?: boolean; json?: boolean },
      ) => {
        if ((o.shards === undefined) === (o.shardSize === undefined))
          throw new UsageError('data shard: give exactly one of --shards N and --shard-size N');
        if (o.shards !== undefined && o.shards > MAX_SHARDS)
          throw new UsageError(`--shards must be at most ${MAX_SHARDS}`);
        requireFile(file);
        const r = await shardFile(file, {
          outDir: o.out,
          skipBad: o.skipBad ?? false,
          ...(o.shards !== undefined ? { shards: o.shards } : {}),
          ...(o.shardSize !== undefined ? { shardSize: o.shardSize } : {}),
        });
        if (o.json) return printJson(r);
        const sizes = r.files.map((f) => f.records);
        print(
          [
            `${r.records} record${r.records === 1 ? '' : 's'} into ${r.shards} shard${r.shards === 1 ? '' : 's'} under ${r.outDir} (${Math.min(...sizes)}-${Math.max(...sizes)} per shard); manifest ${r.manifest}${r.skippedBad ? `; ${r.skippedBad} bad line${r.skippedBad === 1 ? '' : 's'} skipped` : ''}`,
            ...r.skipped.map((s) => `  skipped line ${s.line}: ${s.reason}`),
          ].join('\n'),
        );
      },
    );

  data
    .command('merge')
    .description(
      'merge shard outputs into one raw FIRE file: validate each record, deduplicate by id (first wins), keep by the FIRE rule (strictly improving, ending satisfied)',
    )
    .argument('[files...]', 'raw FIRE dialogue files (JSONL), in order')
    .option(
      '--manifest <file>',
      "a shard manifest: a generate stage's (shards[].path: its succeeded shards) or `data shard`'s (files[].file); its files come after FILE... (repeatable)",
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .requiredOption('--out <file>', 'merged output (written whole, then renamed into place)')
    .addOption(
      new Option('--keep-rule <rule>', 'fire: keep what self-play keeps; none: keep all')
        .choices([...KEEP_RULES])
        .default('fire'),
    )
    .option('--satisfied <n>', 'keep rule: the last score must be >= this', score, SATISFIED)
    .option('--min-rounds <n>', 'keep rule: at least this many rounds', positive, MIN_ROUNDS)
    .option('--skip-bad', 'skip invalid records and count them')
    .option('--json', 'print the counts as JSON')
    .action(
      async (
        files: string[],
        o: {
          out: string;
          manifest?: string[];
          keepRule: KeepRule;
          satisfied: number;
          minRounds: number;
          skipBad?: boolean;
          json?: boolean;
        },
      ) => {
        for (const m of o.manifest ?? []) {
          requireFile(m);
          files = [...files, ...manifestFiles(m)];
        }
        if (files.length === 0)
          throw new UsageError('merge: no input: give FILE... or --manifest FILE');
        for (const f of files) requireFile(f);
        const r = await mergeFiles(files, {
          out: o.out,
          keepRule: o.keepRule,
          satisfied: o.satisfied,
          minRounds: o.minRounds,
          skipBad: o.skipBad ?? false,
        });
        if (o.json) return printJson(r);
        const dropped = Object.entries(r.dropped).filter(([, n]) => n > 0);
        print(
          [
            `${r.out}: ${r.kept} kept of ${r.records} record${r.records === 1 ? '' : 's'} from ${r.inputs.length} file${r.inputs.length === 1 ? '' : 's'}`,
            `  duplicates ${r.duplicates}, bad skipped ${r.skippedBad}, dropped by keep rule ${r.keepRule}: ${dropped.length ? dropped.map(([k, n]) => `${k} ${n}`).join(', ') : 'none'}`,
            ...r.skipped.map((s) => `  skipped ${s.file}:${s.line}: ${s.reason}`),
          ].join('\n'),
        );
      },
    );

  data
    .command('synth')
    .description(
      'generate synthetic FIRE data with `python3 -m stoker_fire.synth` (PYTHONPATH worker/python/src; interpreter $STOKER_PYTHON, /usr/bin/python3 or python3); its JSON summary and exit status pass through',
    )
    .requiredOption('--n <n>', 'records to generate', positive)
    .requiredOption('--out <dir>', 'output directory')
    .option('--seed <s>', 'random seed', nonNegative)
    .addOption(new Option('--kind <kind>', 'what to generate').choices([...SYNTH_KINDS]))
    .option('--split <name>', 'the split field of generated dialogues')
    .option('--start-id <k>', 'first numeric id', nonNegative)
    .option('--image-size <px>', 'side of the generated images in pixels', positive)
    .option('--prefix <p>', 'id prefix (ids are PREFIX-NNNNNN)')
    .action(async (o: SynthOptions) => {
      process.exitCode = await runSynth(o);
    });
}
