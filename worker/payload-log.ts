/**
 * The log file of one payload attempt (worker/runner.ts): every line the payload prints,
 * plus stoker's own notes (`[stoker <ISO time>] ...`), appended to one file.
 *
 * Batching: text is gathered and written every 100 ms, or at once when 64 KiB are
 * waiting. A payload that flushes stdout on every line would otherwise cost one write
 * system call per line (the largest part of the worker's CPU in a profile of smoke_train
 * at full speed).
 *
 * Back-pressure: when the file stream's buffer is full, every stream registered with
 * throttle() (the payload's stdout and stderr pipes) is paused until the file drains,
 * so a payload that prints faster than the disk takes it is slowed down rather than
 * buffered in memory.
 *
 * Errors: a file that cannot be written is warned about once (on `log`); from then on
 * text is dropped and the payload runs on.
 */
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { dirname } from 'node:path';
import type { Readable } from 'node:stream';
import type { Logger } from '../common/logger.js';
import { PRIVATE_FILE_MODE } from '../common/private-dir.js';

const FLUSH_AFTER_MS = 100;
const FLUSH_AT_CHARS = 64 * 1024;

export class PayloadLogFile {
  private readonly stream: WriteStream;
  private broken = false;
  private readonly throttled: Readable[] = [];
  private readonly paused = new Set<Readable>();
  private pending: string[] = [];
  private pendingChars = 0;
  private flushTimer: NodeJS.Timeout | undefined;

  /** Opens `path` for appending; its directory is created. */
  constructor(
    path: string,
    private readonly clock: () => number,
    log: Logger,
  ) {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    this.stream = createWriteStream(path, { flags: 'a', mode: PRIVATE_FILE_MODE });
    this.stream.on('error', (err) => {
      if (!this.broken)
        log.warn({ err, logFile: path }, 'cannot write the payload log file; going on without it');
      this.broken = true;
    });
  }

  /** Pause `source` whenever the file falls behind (and resume it when it drains). */
  throttle(source: Readable): void {
    this.throttled.push(source);
  }

  /** Queue `text` (whole lines, newline included) for the next batched write. */
  write(text: string): void {
    if (this.broken || text.length === 0) return;
    this.pending.push(text);
    this.pendingChars += text.length;
    if (this.pendingChars >= FLUSH_AT_CHARS) this.flush();
    else this.flushTimer ??= setTimeout(() => this.flush(), FLUSH_AFTER_MS);
  }

  /** One note of stoker's own, as a log line. */
  note(message: string): void {
    this.write(this.stamp(message));
  }

  /** `[stoker <time>] message` with its newline. */
  stamp(message: string): string {
    return `[stoker ${new Date(this.clock()).toISOString()}] ${message}\n`;
  }

  /** Write what is queued now. */
  flush(): void {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (this.pending.length === 0) return;
    const text = this.pending.join('');
    this.pending = [];
    this.pendingChars = 0;
    if (this.broken) return;
    if (!this.stream.write(text) && this.paused.size === 0) {
      for (const s of this.throttled) {
        s.pause();
        this.paused.add(s);
      }
      this.stream.once('drain', () => this.resumeAll());
    }
  }

  /** Resume every source paused for back-pressure (the payload has exited: read on). */
  resumeAll(): void {
    for (const s of this.paused) s.resume();
    this.paused.clear();
  }

  /** Flush and close the file; resolves when the bytes are handed to the OS. */
  async close(): Promise<void> {
    this.flush();
    if (this.broken || this.stream.destroyed) return;
    await new Promise<void>((resolve) => {
      this.stream.once('error', () => resolve());
      this.stream.end(() => resolve());
    });
  }
}
