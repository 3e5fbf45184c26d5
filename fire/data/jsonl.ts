/**
 * Streaming JSONL input and crash-safe output for `stoker data`.
 *
 *   for await (const item of readLines('dialogues.jsonl')) {   // or readLineBatches: arrays
 *     if ('tooLong' in item) ...            // a line over maxLineBytes, skipped unread
 *     else JSON.parse(item.text)            // item.line is 1-based, blank lines skipped
 *   }
 *   const out = await AtomicFile.create('merged.jsonl');
 *   await out.write('{"id":"a"}\n');
 *   await out.commit();                     // or out.abort(): the old file stays untouched
 *
 * Memory: one chunk (1 MiB) read at a time, its lines, and the line being assembled
 * across chunks; never the file. We split bytes ourselves instead of using node:readline because readline keeps
 * appending to a line until it finds a newline: one 10 GB line without one (a truncated
 * or binary file) would take 10 GB of memory. Here a line longer than maxLineBytes
 * (64 MiB by default; real FIRE records are a few KB) is dropped as it streams past and
 * reported as `{line, tooLong: bytes}`. Splitting Buffers is also faster than readline,
 * which decodes every chunk and scans it with a regular expression.
 *
 * AtomicFile writes to a temporary file next to the target (same directory, so the
 * rename cannot cross file systems), fsyncs it and renames it over the target: a reader
 * sees the old file or the complete new one, never half of it.
 */
import { createReadStream } from 'node:fs';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';

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
  /** Bytes in the line (it was not kept). */
  tooLong: number;
}

export type LineItem = TextLine | TooLongLine;

export const isTooLong = (item: LineItem): item is TooLongLine => 'tooLong' in item;

function decode(parts: Buffer[], isFirstLine: boolean): string {
  let buf = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
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
    if (c !== 0x20 && c !== 0x09 && c !== 0x0d) return false;
  }
  return true;
}

/**
 * The non-blank lines of a file, in order, with their 1-based line numbers, in batches:
 * one array per chunk read (about 1 MiB of lines). Batches keep the per-line cost of
 * async iteration out of the hot loop. Throws (from the stream) if the file cannot be
 * opened or read.
 */
export async function* readLineBatches(
  file: string,
  opts: { maxLineBytes?: number } = {},
): AsyncGenerator<LineItem[]> {
  const max = opts.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
  const stream = createReadStream(file, { highWaterMark: CHUNK_BYTES });
  let lineNo = 1;
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
    const text = decode(parts, line === 1);
    parts = [];
    partBytes = 0;
    return isBlank(text) ? null : { line, text };
  };
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    const batch: LineItem[] = [];
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(NEWLINE, start);
      if (nl === -1) {
        const rest = chunk.subarray(start);
        partBytes += rest.length;
        if (partBytes > max) {
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
}

/** readLineBatches one line at a time. */
export async function* readLines(
  file: string,
  opts: { maxLineBytes?: number } = {},
): AsyncGenerator<LineItem> {
  for await (const batch of readLineBatches(file, opts)) yield* batch;
}

const FLUSH_BYTES = 1024 * 1024;

/**
 * A file written under a temporary name and renamed into place by commit().
 *
 * Text is UTF-8 encoded straight into one reusable buffer and written when it is full.
 * (Joining lines into a big string first is ~20x slower: every megabyte string lands in
 * V8's large-object space and drags full garbage collections along.)
 */
export class AtomicFile {
  private readonly buf: Buffer;
  private used = 0;
  private done = false;

  private constructor(
    readonly path: string,
    readonly tmpPath: string,
    private readonly fh: FileHandle,
    bufferBytes: number,
  ) {
    this.buf = Buffer.allocUnsafe(bufferBytes);
  }

  /** `bufferBytes`: bytes kept before a write to disk (1 MiB by default). */
  static async create(path: string, opts: { bufferBytes?: number } = {}): Promise<AtomicFile> {
    const tmpPath = join(
      dirname(path),
      `.${basename(path)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`,
    );
    const fh = await open(tmpPath, 'wx');
    return new AtomicFile(path, tmpPath, fh, opts.bufferBytes ?? FLUSH_BYTES);
  }

  /** Append text; it reaches the disk when the buffer is full (or at commit). */
  async write(text: string): Promise<void> {
    const n = Buffer.byteLength(text, 'utf8');
    if (this.used + n > this.buf.length) await this.flush();
    if (n > this.buf.length) {
      await this.writeAll(Buffer.from(text, 'utf8'));
      return;
    }
    this.used += this.buf.write(text, this.used, 'utf8');
  }

  private async writeAll(data: Buffer): Promise<void> {
    let off = 0;
    while (off < data.length) {
      const { bytesWritten } = await this.fh.write(data, off, data.length - off);
      off += bytesWritten;
    }
  }

  private async flush(): Promise<void> {
    if (this.used === 0) return;
    const n = this.used;
    this.used = 0;
    await this.writeAll(this.buf.subarray(0, n));
  }

  /** Flush, fsync and rename over the target. */
  async commit(): Promise<void> {
    if (this.done) throw new Error(`${this.path}: already committed or aborted`);
    this.done = true;
    try {
      await this.flush();
      await this.fh.sync();
    } finally {
      await this.fh.close();
    }
    await rename(this.tmpPath, this.path);
  }

  /** Remove the temporary file; the target is left as it was. Safe to call twice. */
  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.fh.close().catch(() => undefined);
    await rm(this.tmpPath, { force: true });
  }
}
