/**
 * `stoker data merge [FILE...] [--manifest M]... --out FILE [--keep-rule fire|none]
 * [--satisfied N] [--min-rounds N] [--skip-bad] [--json]`: merge shard outputs into one
 * raw FIRE file (fire/data/merge.ts) and print the counts. The inputs are the FILEs, then
 * the files each --manifest lists (manifestFiles).
 *
 * Exit codes: 0 written; 1 a bad record without --skip-bad, named as FILE:LINE; 2 no
 * input, a missing file, a manifest that is not one, a bad flag.
 */
import { readRegularFileSync } from '../../../common/regular-file.js';
import { dirname, resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { UsageError } from '../../../common/errors.js';
import {
  mergeFiles,
  KEEP_RULES,
  MIN_ROUNDS,
  type KeepRule,
  type MergeReport,
} from '../../data/merge.js';
import { SATISFIED } from '../../data/record.js';
import { counted, print, printJson } from '../output.js';
import { positive, requireFile, score } from './flags.js';

interface MergeFlags {
  out: string;
  manifest?: string[];
  keepRule: KeepRule;
  satisfied: number;
  minRounds: number;
  skipBad?: boolean;
  json?: boolean;
}

export function registerMerge(data: Command): void {
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
    .action(mergeAction);
}

async function mergeAction(files: string[], o: MergeFlags): Promise<void> {
  const inputs = [...files];
  for (const m of o.manifest ?? []) {
    requireFile(m);
    inputs.push(...manifestFiles(m));
  }
  if (inputs.length === 0) throw new UsageError('merge: no input: give FILE... or --manifest FILE');
  for (const f of inputs) requireFile(f);
  const r = await mergeFiles(inputs, {
    out: o.out,
    keepRule: o.keepRule,
    satisfied: o.satisfied,
    minRounds: o.minRounds,
    skipBad: o.skipBad ?? false,
  });
  if (o.json) printJson(r);
  else print(describeMerge(r));
}

/** Kept of read, then duplicates, bad records and what the keep rule dropped, by reason. */
function describeMerge(r: MergeReport): string {
  const dropped = Object.entries(r.dropped).filter(([, n]) => n > 0);
  const byReason = dropped.length ? dropped.map(([k, n]) => `${k} ${n}`).join(', ') : 'none';
  return [
    `${r.out}: ${r.kept} kept of ${counted(r.records, 'record')} from ${counted(r.inputs.length, 'file')}`,
    `  duplicates ${r.duplicates}, bad skipped ${r.skippedBad}, dropped by keep rule ${r.keepRule}: ${byReason}`,
    ...r.skipped.map((s) => `  skipped ${s.file}:${s.line}: ${s.reason}`),
  ].join('\n');
}

/** A manifest larger than this is refused (one of 100,000 shards is about 10 MB). */
const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;

/**
 * The files a shard manifest lists, in shard order: a generate stage's manifest
 * (`{stage, shards: [{index, path, items}], failed}`, written by the controller; failed
 * shards are not listed) or `data shard`'s (`{files: [{file, records}]}`). Relative
 * paths are relative to the manifest's directory.
 */
export function manifestFiles(manifest: string): string[] {
  let value: unknown;
  let text: string;
  try {
    // Non-blocking and a regular file only: a FIFO named here must not hang the merge.
    text = readRegularFileSync(manifest, MAX_MANIFEST_BYTES);
  } catch (err) {
    throw new UsageError(`--manifest ${(err as Error).message}`);
  }
  try {
    value = JSON.parse(text);
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
