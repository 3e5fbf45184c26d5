/**
 * Splitting a pulled stage's input into shards, deterministically and once.
 *
 * A JSONL input file becomes `${outputDir}/input-shards/shard-NNNNN.jsonl` files of
 * `shardSize` non-empty lines each, plus a manifest. They are written to a temporary
 * directory renamed into place, so a controller that dies half-way leaves nothing a
 * restarted one would trust; a finished split is reused (the same shards, the same task
 * ids). A list of shard files is used as given. Shard i writes
 * `${outputDir}/shards/shard-NNNNN.jsonl`.
 */
import {
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  createWriteStream,
  writeFileSync,
  type WriteStream,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { NonRetryableError } from '../common/errors.js';
import { DEFAULT_MAX_LINE_BYTES, isTooLong, readLines } from '../fire/lines.js';
import { openUntrusted, UntrustedPathError } from './untrusted-path.js';

export interface ShardPlan {
  inputs: string[];
  outputs: string[];
  /** Lines in the input file (file inputs only). */
  items: number | null;
}

const pad = (i: number) => String(i).padStart(5, '0');
export const shardOutputPath = (outputDir: string, index: number): string =>
  join(outputDir, 'shards', `shard-${pad(index)}.jsonl`);

/**
 * The input file (and listed shard files) must be regular files inside `roots` (the run's
 * folders: untrusted-path.ts); the input is read through a descriptor opened
 * non-blocking, so neither a FIFO nor /proc can be read by the controller.
 */
export async function planShards(
  input: { file?: string; shardSize?: number; shards?: string[] },
  opts: { workDir: string; outputDir: string; roots: readonly string[] },
): Promise<ShardPlan> {
  mkdirSync(join(opts.outputDir, 'shards'), { recursive: true });
  if (input.shards) return listedShards(input.shards, opts);
  if (!input.file || !input.shardSize)
    throw new NonRetryableError('a sharded input needs file and shardSize', 'InvalidInput');
  const file = resolve(opts.workDir, input.file);
  const dir = join(opts.outputDir, 'input-shards');
  const manifestPath = join(dir, 'manifest.json');
  if (!existsSync(manifestPath)) {
    const { handle } = await openInput(file, opts.roots);
    try {
      await splitInto(dir, file, input.shardSize, handle);
    } finally {
      await handle.close().catch(() => undefined);
    }
  }
  return fromManifest(dir, manifestPath, opts.outputDir);
}

async function openInput(file: string, roots: readonly string[]) {
  try {
    return await openUntrusted(file, roots);
  } catch (err) {
    if (!(err instanceof UntrustedPathError)) throw err;
    const missing = err.message.endsWith('does not exist');
    throw new NonRetryableError(
      `input file ${err.message}`,
      missing ? 'MissingInput' : 'UntrustedInput',
    );
  }
}

/** Shard files given by the spec, used as they are (each must exist, as a regular file in the run's folders). */
async function listedShards(
  shards: string[],
  opts: { workDir: string; outputDir: string; roots: readonly string[] },
): Promise<ShardPlan> {
  const inputs = shards.map((s) => resolve(opts.workDir, s));
  const missing = inputs.filter((p) => !existsSync(p));
  if (missing.length > 0)
    throw new NonRetryableError(
      `input shard files do not exist: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ` and ${missing.length - 5} more` : ''}`,
      'MissingInput',
    );
  for (const p of inputs) await (await openInput(p, opts.roots)).handle.close();
  return {
    inputs,
    outputs: inputs.map((_, i) => shardOutputPath(opts.outputDir, i)),
    items: null,
  };
}

/** The plan of a finished split, from its manifest. */
function fromManifest(dir: string, manifestPath: string, outputDir: string): ShardPlan {
  const m = JSON.parse(readFileSync(manifestPath, 'utf8')) as { shards: string[]; items: number };
  return {
    inputs: m.shards.map((s) => join(dir, s)),
    outputs: m.shards.map((_, i) => shardOutputPath(outputDir, i)),
    items: m.items,
  };
}

/**
 * Split `file` into `dir`: written in a temporary directory renamed into place (a split
 * that another pass finished first wins; ours is dropped). Nothing is left behind on error.
 */
async function splitInto(
  dir: string,
  file: string,
  shardSize: number,
  handle: FileHandle,
): Promise<void> {
  const tmp = `${dir}.tmp-${randomBytes(4).toString('hex')}`;
  mkdirSync(tmp, { recursive: true });
  try {
    const { names, items } = await writeShards(file, handle, shardSize, tmp);
    if (names.length === 0)
      throw new NonRetryableError(`input file ${file} has no records`, 'EmptyInput');
    const manifest = { source: file, shardSize, items, shards: names };
    writeFileSync(join(tmp, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    try {
      renameSync(tmp, dir);
    } catch (err) {
      if (!existsSync(join(dir, 'manifest.json'))) throw err;
      rmSync(tmp, { recursive: true, force: true }); // another pass finished first
    }
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}

/**
 * The non-blank lines of the open input, read with fire/lines.ts: linear in the file, and a
 * line over 64 MiB is an error naming it (readline buffered a line without bound).
 */
async function* inputLines(file: string, handle: FileHandle): AsyncGenerator<string> {
  for await (const item of readLines(file, { handle, stopAtTooLong: true })) {
    if (isTooLong(item))
      throw new NonRetryableError(
        `input file ${file}: line ${item.line} is longer than ${DEFAULT_MAX_LINE_BYTES / (1 << 20)} MiB`,
        'InvalidInput',
      );
    yield item.text;
  }
}

/** The non-empty lines of `file`, `shardSize` per file in `tmp`; the files' names and the line count. */
async function writeShards(
  file: string,
  handle: FileHandle,
  shardSize: number,
  tmp: string,
): Promise<{ names: string[]; items: number }> {
  const names: string[] = [];
  let items = 0;
  let out: WriteStream | null = null;
  let inShard = 0;
  for await (const line of inputLines(file, handle)) {
    if (!out || inShard === shardSize) {
      if (out) {
        out.end();
        await once(out, 'finish');
      }
      const name = `shard-${pad(names.length)}.jsonl`;
      names.push(name);
      out = createWriteStream(join(tmp, name));
      inShard = 0;
    }
    if (!out.write(`${line}\n`)) await once(out, 'drain');
    inShard++;
    items++;
  }
  if (out) {
    out.end();
    await once(out, 'finish');
  }
  return { names, items };
}
