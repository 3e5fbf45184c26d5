/**
 * `stoker data shard FILE --out DIR (--shards N | --shard-size N) [--skip-bad] [--json]`:
 * split a JSONL file by a stable hash of each record id (fire/data/shard.ts) and print
 * a one-line summary (or, with --json, the manifest and where it is).
 *
 * Exit codes: 0 written; 1 a line without an id (or not JSON) without --skip-bad, named as
 * FILE:LINE; 2 neither or both of --shards and --shard-size, too many shards, a missing
 * file, a bad flag.
 */
import type { Command } from 'commander';
import { UsageError } from '../../../common/errors.js';
import { MAX_SHARDS, shardFile, type ShardReport } from '../../data/shard.js';
import { counted, print, printJson } from '../output.js';
import { positive, requireFile } from './flags.js';

interface ShardFlags {
  out: string;
  shards?: number;
  shardSize?: number;
  skipBad?: boolean;
  json?: boolean;
}

export function registerShard(data: Command): void {
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
    .action(shardAction);
}

async function shardAction(file: string, o: ShardFlags): Promise<void> {
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
  if (o.json) printJson(r);
  else print(describeShards(r));
}

/** Records, shards, the range of shard sizes, the manifest; then the skipped lines. */
function describeShards(r: ShardReport): string {
  const sizes = r.files.map((f) => f.records);
  const range = `${Math.min(...sizes)}-${Math.max(...sizes)} per shard`;
  const bad = r.skippedBad ? `; ${counted(r.skippedBad, 'bad line')} skipped` : '';
  return [
    `${counted(r.records, 'record')} into ${counted(r.shards, 'shard')} under ${r.outDir} (${range}); manifest ${r.manifest}${bad}`,
    ...r.skipped.map((s) => `  skipped line ${s.line}: ${s.reason}`),
  ].join('\n');
}
