/**
 * Reading the metric commands' JSONL inputs: one JSON value per line, streamed in chunks
 * (bounded memory whatever the file size), every problem reported as `file:line`.
 *
 *   for await (const batch of jsonLines('dialogues.jsonl'))
 *     for (const entry of batch) entry.error ? ... : use(entry.value)
 *
 * Lines come from fire/lines.ts (the reader `stoker data` uses: linear in the file however
 * long a line, at most 64 MiB a line). Blank lines (only whitespace) are skipped but
 * counted, so line numbers are the ones an editor shows. A `\r` before the `\n` is
 * ignored (a file written on Windows), and so is a UTF-8 byte-order mark. A file that is
 * missing, a directory, a FIFO, a device or unreadable is a MetricsInputError before any
 * line.
 */
import { statSync } from 'node:fs';
import { UsageError } from '../../common/errors.js';
import { fileKind, NotRegularFileError } from '../../common/regular-file.js';
import {
  DEFAULT_MAX_LINE_BYTES,
  isTooLong,
  readLineBatches,
  type LineItem,
  type LineReadStats,
  type TextLine,
} from '../lines.js';

/** Bad input to a metrics command: exit 2, like every other invalid input of the CLI. */
export class MetricsInputError extends UsageError {
  override name = 'MetricsInputError';
  constructor(
    message: string,
    readonly file?: string,
    readonly line?: number,
  ) {
    super(
      file === undefined ? message : `${file}${line === undefined ? '' : `:${line}`}: ${message}`,
    );
  }
}

export type JsonLine =
  | { line: number; value: unknown; error?: undefined }
  | { line: number; value?: undefined; error: string };

/** Throw a MetricsInputError unless `file` is a regular file (checked without opening it). */
export function requireInputFile(file: string): void {
  let st;
  try {
    st = statSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new MetricsInputError(code === 'ENOENT' ? 'no such file' : (err as Error).message, file);
  }
  if (!st.isFile()) throw new MetricsInputError(`${fileKind(st)}, not a regular file`, file);
}

/** A longer line is an error, not an unbounded buffer (a FIRE record is a few KiB). */
export const MAX_LINE_BYTES = DEFAULT_MAX_LINE_BYTES;

export interface JsonLinesOptions {
  /** Default MAX_LINE_BYTES. */
  maxLineBytes?: number;
  /** Counted into (fire/lines.ts): the work of the read, for tests. */
  stats?: LineReadStats;
}

/**
 * The file's lines, parsed, in batches (one batch per chunk read: an async step per
 * chunk rather than per line keeps the per-record cost at JSON.parse's). A line that is
 * not valid JSON comes back with `error` set and no value; the caller decides whether
 * that stops the read. A line over maxLineBytes stops it: a MetricsInputError naming the
 * file and the line, as soon as the line is over (fire/lines.ts reads in linear time).
 */
export async function* jsonLines(
  file: string,
  opts: JsonLinesOptions = {},
): AsyncGenerator<JsonLine[]> {
  requireInputFile(file);
  const max = opts.maxLineBytes ?? MAX_LINE_BYTES;
  const lines = readLineBatches(file, {
    maxLineBytes: max,
    stopAtTooLong: true,
    ...(opts.stats ? { stats: opts.stats } : {}),
  });
  try {
    for (;;) {
      let next: IteratorResult<LineItem[]>;
      try {
        next = await lines.next();
      } catch (err) {
        if (err instanceof NotRegularFileError)
          throw new MetricsInputError(`${err.kind}, not a regular file`, file);
        throw new MetricsInputError(`cannot read: ${(err as Error).message}`, file);
      }
      if (next.done) return;
      const batch: JsonLine[] = [];
      for (const item of next.value) {
        if (isTooLong(item)) {
          throw new MetricsInputError(
            `line longer than ${formatBytes(max)} (the most a line may have)`,
            file,
            item.line,
          );
        }
        batch.push(parse(item));
      }
      yield batch;
    }
  } finally {
    // The caller may stop early (a bad record): close the file now, not at GC.
    await lines.return(undefined);
  }
}

function parse(item: TextLine): JsonLine {
  try {
    return { line: item.line, value: JSON.parse(item.text) as unknown };
  } catch (err) {
    return { line: item.line, error: `not valid JSON (${(err as Error).message})` };
  }
}

/** `67108864` -> `64 MiB`. */
function formatBytes(n: number): string {
  if (n % (1 << 20) === 0) return `${n / (1 << 20)} MiB`;
  if (n % 1024 === 0) return `${n / 1024} KiB`;
  return `${n} bytes`;
}

/** `typeof` in words, with null, arrays and absent fields named as a JSON user would. */
export function jsonType(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'missing';
  if (Array.isArray(value)) return 'an array';
  switch (typeof value) {
    case 'object':
      return 'an object';
    case 'string':
      return 'a string';
    case 'number':
      return 'a number';
    case 'boolean':
      return 'a boolean';
    default:
      return typeof value;
  }
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
