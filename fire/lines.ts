/**
 * The one line reader of the FIRE tools (`stoker data`, `stoker metrics`): a JSONL file's
 * lines, streamed in 1 MiB chunks, in time linear in the file whatever its line lengths.
 *
 *   for await (const batch of readLineBatches('dialogues.jsonl', { maxLineBytes }))
 *     for (const item of batch)
 *       if (isTooLong(item)) ...            // a line over maxLineBytes: {line, tooLong: bytes}
 *       else JSON.parse(item.text)          // item.line is 1-based; blank lines skipped
 *
 * Linear: each chunk is searched for newlines once, from where the last line ended; the
 * pieces of a line that spans chunks are kept in an array and joined once, when its
 * newline arrives. (Appending each chunk to the line so far and searching the whole of it
 * again is quadratic: a 32 MB line cost 20 CPU-s that way.) `stats` counts that work, so
 * a test can check it without a clock.
 *
 * Bounded: a line longer than maxLineBytes (64 MiB by default; a FIRE record is a few KB)
 * is not kept: its bytes are counted as they stream past and it comes back as `{line,
 * tooLong}`, and the reader goes on with the next line (`data validate` reports it), or,
 * with `stopAtTooLong`, ends there at once (`metrics`: the line is an error anyway).
 *
 * Safe to point anywhere: the file is opened non-blocking and must be a regular file (a
 * FIFO or a device is a NotRegularFileError naming it, common/regular-file.ts), never a
 * hang. Other errors (missing, unreadable) are thrown as the file system gives them.
 */
import type { FileHandle } from 'node:fs/promises';
import { openRegularFile } from '../common/regular-file.js';

export const DEFAULT_MAX_LINE_BYTES = 64 * 1024 * 1024;
const CHUNK_BYTES = 1024 * 1024;
const NEWLINE = 0x0a;
const CR = 0x0d;

export interface TextLine {
  /** 1-based line number in the file. */
  line: number;
  /** The line without its `\n` (and `\r`), UTF-8 decoded. */
  text: string;
}

export interface TooLongLine {
  line: number;
  /** Bytes in the line (it was not kept); with stopAtTooLong, the bytes read of it so far. */
  tooLong: number;
}

export type LineItem = TextLine | TooLongLine;

export const isTooLong = (item: LineItem): item is TooLongLine => 'tooLong' in item;

/** The work a read did, for tests and benchmarks: both grow linearly with the file. */
export interface LineReadStats {
  /** Bytes searched for a newline (each byte once). */
  bytesScanned: number;
  /** Bytes copied to join the pieces of lines that spanned chunks (each byte once). */
  bytesJoined: number;
  /** Chunks read. */
  chunks: number;
}

export interface ReadLinesOptions {
  /** Default DEFAULT_MAX_LINE_BYTES. */
  maxLineBytes?: number;
  /** End the read at the first line over maxLineBytes, as soon as it is over. */
  stopAtTooLong?: boolean;
  /** Counted into, when given. */
  stats?: LineReadStats;
  /**
   * Read this open file (its owner checked it and closes it) instead of opening `file`,
   * which then only names it.
   */
  handle?: FileHandle;
}

function decode(parts: Buffer[], bytes: number, isFirstLine: boolean): string {
  let buf = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, bytes);
  if (buf.length > 0 && buf[buf.length - 1] === CR) buf = buf.subarray(0, buf.length - 1);
  // A UTF-8 byte-order mark (Windows editors write one) would make JSON.parse fail.
  if (isFirstLine && buf.length >= 3 && buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf)
    buf = buf.subarray(3);
  return buf.toString('utf8');
}

/** Whether a decoded line holds only JSON whitespace (such lines are skipped). */
function isBlank(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c !== 0x20 && c !== 0x09 && c !== 0x0d && c !== 0x0a) return false;
  }
  return true;
}

/**
 * The non-blank lines of a file, in order, with their 1-based line numbers, in batches:
 * one array per chunk read (about 1 MiB of lines). Batches keep the per-line cost of
 * async iteration out of the hot loop.
 */
export async function* readLineBatches(
  file: string,
  opts: ReadLinesOptions = {},
): AsyncGenerator<LineItem[]> {
  const max = opts.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
  const stats = opts.stats;
  const stream = opts.handle
    ? opts.handle.createReadStream({ highWaterMark: CHUNK_BYTES, autoClose: false })
    : (await openRegularFile(file)).createReadStream({ highWaterMark: CHUNK_BYTES });
  let lineNo = 1;
  // The line being assembled: its pieces from earlier chunks, joined once at its end.
  let parts: Buffer[] = [];
  let partBytes = 0;
  let discarding = false;
  const finish = (last: Buffer): LineItem | null => {
    const bytes = partBytes + last.length;
    const line = lineNo++;
    if (discarding || bytes > max) {
      parts = [];
      partBytes = 0;
      discarding = false;
      return { line, tooLong: bytes };
    }
    parts.push(last);
    if (stats && parts.length > 1) stats.bytesJoined += bytes;
    const text = decode(parts, bytes, line === 1);
    parts = [];
    partBytes = 0;
    return isBlank(text) ? null : { line, text };
  };
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      if (stats) stats.chunks++;
      const batch: LineItem[] = [];
      let start = 0;
      for (;;) {
        const nl = chunk.indexOf(NEWLINE, start);
        if (stats) stats.bytesScanned += (nl === -1 ? chunk.length : nl + 1) - start;
        if (nl === -1) {
          const rest = chunk.subarray(start);
          partBytes += rest.length;
          if (partBytes > max) {
            if (opts.stopAtTooLong) {
              batch.push({ line: lineNo, tooLong: partBytes });
              yield batch;
              return;
            }
            // Keep counting the line's bytes, drop its content.
            discarding = true;
            parts = [];
          } else if (rest.length > 0) parts.push(rest);
          break;
        }
        const item = finish(chunk.subarray(start, nl));
        if (item) batch.push(item);
        start = nl + 1;
      }
      if (batch.length > 0) yield batch;
    }
    if (partBytes > 0 || discarding) {
      const item = finish(Buffer.alloc(0));
      if (item) yield [item];
    }
  } finally {
    stream.destroy();
  }
}

/** readLineBatches one line at a time. */
export async function* readLines(
  file: string,
  opts: ReadLinesOptions = {},
): AsyncGenerator<LineItem> {
  for await (const batch of readLineBatches(file, opts)) yield* batch;
}
