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
 * Reading (fire/lines.ts): one chunk (1 MiB) at a time, its lines, and the line being
 * assembled across chunks; never the file. A line longer than maxLineBytes (64 MiB by
 * default) is dropped as it streams past and reported as `{line, tooLong: bytes}`; the
 * time is linear in the file, however long its lines; a FIFO or a device is refused, not
 * waited on.
 *
 * AtomicFile writes to a temporary file next to the target (same directory, so the
 * rename cannot cross file systems), fsyncs it and renames it over the target: a reader
 * sees the old file or the complete new one, never half of it.
 */
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';

// The line reader lives in fire/lines.ts (metrics reads with it too); kept importable here.
export {
  DEFAULT_MAX_LINE_BYTES,
  isTooLong,
  readLineBatches,
  readLines,
  type LineItem,
  type LineReadStats,
  type ReadLinesOptions,
  type TextLine,
  type TooLongLine,
} from '../lines.js';

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
