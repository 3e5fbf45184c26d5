/**
 * `stoker data shard`: split a JSONL file of dialogues (or self-play seeds) into shards by
 * a stable hash of each record's id, so the same id lands in the same shard whatever the
 * file order or which machine splits it:
 *
 *   shard = int(sha1(id as UTF-8).hex[0:12], 16) mod N        (48 bits: exact in a double)
 *
 * (Python: `int(hashlib.sha1(id.encode()).hexdigest()[:12], 16) % n`.) The id is the
 * record's `id` (a string, or an integer written as decimal), else the id derived from
 * image, question and groundtruth (record.ts derivedId), as every data command uses.
 * Records are not otherwise validated (seeds are not dialogues): run `stoker data
 * validate` first. Lines are copied byte for byte (a trailing `\r` dropped).
 *
 * Output: OUT/shard-00000.jsonl ... OUT/shard-{N-1}.jsonl (every one, empty or not) and
 * OUT/manifest.json:
 *   {"input", "shards": N, "hash": "sha1-48 mod N", "records", "skippedBad",
 *    "files": [{"file": "shard-00000.jsonl", "records"}]}
 * Shards are written under temporary names and renamed when all are complete, then the
 * manifest; shard files an earlier manifest in OUT listed that are not part of the new
 * split are removed (only those: the manifest says what the command owns).
 * With --shard-size S, N = ceil(records / S) (a first pass counts the records); shards
 * then hold S records on average, not exactly (the hash decides).
 *
 * Memory: one 64 KiB buffer per shard (N is at most MAX_SHARDS, each shard keeps a file
 * open), independent of the file.
 */
import { createHash } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { openRegularFile } from '../../common/regular-file.js';
import { join } from 'node:path';
import { AtomicFile, isTooLong, readLines, type LineItem } from './jsonl.js';
import { UsageError } from '../../common/errors.js';
import { BadRecordError, recordId } from './record.js';

export const MAX_SHARDS = 1000;
export const MANIFEST = 'manifest.json';
const SHARD_BUFFER_BYTES = 64 * 1024;

export const shardFileName = (i: number): string => `shard-${String(i).padStart(5, '0')}.jsonl`;

/** The shard of an id among n: sha1(id)'s first 48 bits mod n. */
export function shardOf(id: string, n: number): number {
  const hex = createHash('sha1').update(id, 'utf8').digest('hex');
  return Number.parseInt(hex.slice(0, 12), 16) % n;
}

export interface ShardOptions {
  outDir: string;
  shards?: number;
  shardSize?: number;
  skipBad?: boolean;
}

export interface ShardManifest {
  input: string;
  shards: number;
  hash: 'sha1-48 mod N';
  records: number;
  skippedBad: number;
  files: Array<{ file: string; records: number }>;
}

export interface ShardReport extends ShardManifest {
  outDir: string;
  manifest: string;
  /** The first skipped lines, with why (at most 20). */
  skipped: Array<{ line: number; reason: string }>;
  seconds: number;
}

async function countRecords(file: string): Promise<number> {
  let n = 0;
  for await (const _ of readLines(file)) n++;
  return n;
}

async function previousFiles(outDir: string): Promise<string[]> {
  try {
    // Non-blocking and a regular file only: a FIFO planted there must not hang the shard.
    const handle = await openRegularFile(join(outDir, MANIFEST));
    const text = await handle.readFile('utf8').finally(() => handle.close());
    const m = JSON.parse(text) as Partial<ShardManifest>;
    return Array.isArray(m.files)
      ? m.files
          .map((f) => f?.file)
          .filter((f): f is string => typeof f === 'string' && /^shard-\d{5}\.jsonl$/.test(f))
      : [];
  } catch {
    return [];
  }
}

/**
 * Shard `file` into opts.outDir:
 *   1. the number of shards (--shards, or counted from --shard-size), 1-MAX_SHARDS;
 *   2. copy every line to its id's shard, all shards under temporary names, renamed
 *      when all are complete (a bad line: BadRecordError, or skipped with skipBad);
 *   3. the manifest, then the shard files an earlier manifest listed that are gone now.
 */
export async function shardFile(file: string, opts: ShardOptions): Promise<ShardReport> {
  const t0 = performance.now();
  const n = await shardCount(file, opts);
  await mkdir(opts.outDir, { recursive: true });
  const split = await splitIntoShards(file, n, opts);
  const manifest: ShardManifest = {
    input: file,
    shards: n,
    hash: 'sha1-48 mod N',
    records: split.records,
    skippedBad: split.skippedBad,
    files: split.counts.map((c, i) => ({ file: shardFileName(i), records: c })),
  };
  await replaceManifest(opts.outDir, manifest);
  return {
    ...manifest,
    outDir: opts.outDir,
    manifest: join(opts.outDir, MANIFEST),
    skipped: split.skipped,
    seconds: Math.round((performance.now() - t0) / 10) / 100,
  };
}

async function shardCount(file: string, opts: ShardOptions): Promise<number> {
  let n: number;
  if (opts.shards !== undefined) n = opts.shards;
  else if (opts.shardSize !== undefined)
    n = Math.max(1, Math.ceil((await countRecords(file)) / opts.shardSize));
  else throw new RangeError('shardFile: give shards or shardSize');
  if (!Number.isInteger(n) || n < 1 || n > MAX_SHARDS)
    throw new UsageError(
      `${n} shards: the number of shards must be 1-${MAX_SHARDS} (each shard keeps a file open); use a larger --shard-size`,
    );
  return n;
}

/** What splitting wrote: records per shard, and the lines it skipped. */
interface Split {
  counts: number[];
  records: number;
  skippedBad: number;
  skipped: ShardReport['skipped'];
}

async function splitIntoShards(file: string, n: number, opts: ShardOptions): Promise<Split> {
  const writers: AtomicFile[] = [];
  const split: Split = {
    counts: new Array<number>(n).fill(0),
    records: 0,
    skippedBad: 0,
    skipped: [],
  };
  try {
    for (let i = 0; i < n; i++)
      writers.push(
        await AtomicFile.create(join(opts.outDir, shardFileName(i)), {
          bufferBytes: SHARD_BUFFER_BYTES,
        }),
      );
    for await (const item of readLines(file)) {
      const found = idOfLine(item);
      if (found.id === null) {
        if (!opts.skipBad)
          throw new BadRecordError(
            `${file}:${item.line}: ${found.reason} (--skip-bad skips bad records)`,
          );
        split.skippedBad++;
        if (split.skipped.length < 20)
          split.skipped.push({ line: item.line, reason: found.reason });
        continue;
      }
      const s = shardOf(found.id, n);
      split.counts[s] = (split.counts[s] ?? 0) + 1;
      split.records++;
      await (writers[s] as AtomicFile).write(`${found.text}\n`);
    }
    for (const w of writers) await w.commit();
  } catch (err) {
    for (const w of writers) await w.abort();
    throw err;
  }
  return split;
}

/** A line's id (recordId) and text, or why it has none: too long, not JSON, or no id. */
function idOfLine(item: LineItem): { id: string; text: string } | { id: null; reason: string } {
  if (isTooLong(item)) return { id: null, reason: `line-too-long: ${item.tooLong} bytes` };
  let value: unknown;
  try {
    value = JSON.parse(item.text);
  } catch (err) {
    return { id: null, reason: `malformed-json: not valid JSON: ${(err as Error).message}` };
  }
  const id = recordId(value);
  return id !== null
    ? { id, text: item.text }
    : {
        id: null,
        reason:
          'no id: a record needs an `id` (non-empty string or integer), or image, question and groundtruth to derive one from',
      };
}

/** Write the manifest (atomically), then remove the shards only the old one listed. */
async function replaceManifest(outDir: string, manifest: ShardManifest): Promise<void> {
  const stale = await previousFiles(outDir);
  const m = await AtomicFile.create(join(outDir, MANIFEST));
  try {
    await m.write(`${JSON.stringify(manifest, null, 2)}\n`);
    await m.commit();
  } catch (err) {
    await m.abort();
    throw err;
  }
  const current = new Set(manifest.files.map((f) => f.file));
  for (const f of stale) if (!current.has(f)) await rm(join(outDir, f), { force: true });
}
