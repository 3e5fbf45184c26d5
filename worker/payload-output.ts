/**
 * The payload's stdout and stderr, line by line (worker/runner.ts; README "Worker and payload protocol",
 * payload protocol).
 *
 * Every line is cut at MAX_LINE_CHARS, redacted (each secret value becomes REDACTED),
 * and appended to the attempt's log file, one write per chunk read.
 *   stdout  a marker line (common/events.ts) is parsed and handed to `sink.event`; its
 *           step (progress.step, metrics.step) moves the stall clock when it is a new
 *           maximum; any other line goes to `sink.log`. A malformed marker line is
 *           warned about once (sink.warn and the log file), then only counted.
 *   stderr  to `sink.log`, and the last `tailMax` lines (each cut at 1,000 characters)
 *           are kept for the failure message.
 *
 * Lines are handled synchronously, chunk by chunk: the sink must not do I/O per call.
 */
import type { Readable } from 'node:stream';
import { parseLine, type PayloadEvent } from '../common/events.js';
import type { PayloadLogFile } from './payload-log.js';
import { redact, redactEvent } from './redact.js';

/** Receives what the payload reports. Called synchronously, once per line: must not block. */
export interface PayloadSink {
  event(event: PayloadEvent): void;
  log(line: string, stream: 'stdout' | 'stderr'): void;
  warn(message: string): void;
}

export { REDACTED, redact } from './redact.js';
/** A line longer than this is cut (memory stays bounded whatever the payload prints). */
export const MAX_LINE_CHARS = 256 * 1024;
const TAIL_LINE_CHARS = 1000;

/** Splits a text stream into lines ('\n', a trailing '\r' dropped), cutting overlong ones. */
export class LineSplitter {
  private partial = '';
  private skipping = false;

  constructor(private readonly maxChars: number = MAX_LINE_CHARS) {}

  push(chunk: string, emit: (line: string) => void): void {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf('\n', start);
      if (nl === -1) break;
      const piece = chunk.slice(start, nl);
      start = nl + 1;
      if (this.skipping) {
        this.skipping = false;
        continue;
      }
      const line = this.partial.length > 0 ? this.partial + piece : piece;
      this.partial = '';
      emit(this.cut(line.endsWith('\r') ? line.slice(0, -1) : line));
    }
    if (start < chunk.length && !this.skipping) {
      this.partial += chunk.slice(start);
      if (this.partial.length > this.maxChars) {
        emit(this.cut(this.partial));
        this.partial = '';
        this.skipping = true;
      }
    }
  }

  end(emit: (line: string) => void): void {
    if (this.partial.length > 0 && !this.skipping) emit(this.partial);
    this.partial = '';
    this.skipping = false;
  }

  private cut(line: string): string {
    return line.length > this.maxChars
      ? `${line.slice(0, this.maxChars)} [line cut at ${this.maxChars} characters]`
      : line;
  }
}

export interface PayloadOutputOptions {
  sink: PayloadSink;
  secrets: readonly string[];
  logFile: PayloadLogFile;
  clock: () => number;
  /** How many stderr lines to keep. */
  tailMax: number;
}

/** What the payload printed, as far as the outcome needs it, and the stall clock. */
export class PayloadOutput {
  readonly stderrTail: string[] = [];
  malformedLines = 0;
  /** The last step reported (progress or metrics), null if none. */
  lastStep: number | null = null;
  /** When the step counter last reached a new maximum (or the clock was restarted). */
  lastAdvanceAt: number;
  private maxStep = -1;

  constructor(private readonly opts: PayloadOutputOptions) {
    this.lastAdvanceAt = opts.clock();
  }

  /** Restart the stall clock (the payload has just started). */
  restartStallClock(): void {
    this.lastAdvanceAt = this.opts.clock();
  }

  /**
   * Read `stream` to its end, line by line; resolves when it ends, closes or fails.
   * The stream is also throttled by the log file.
   */
  read(stream: Readable | null, which: 'stdout' | 'stderr'): Promise<void> {
    if (!stream) return Promise.resolve();
    this.opts.logFile.throttle(stream);
    stream.setEncoding('utf8');
    const splitter = new LineSplitter();
    const onLine = which === 'stdout' ? this.onStdoutLine : this.onStderrLine;
    const handle = (split: (emit: (line: string) => void) => void): void => {
      const out: string[] = [];
      split((raw) => onLine(raw, out));
      if (out.length > 0) this.opts.logFile.write(`${out.join('\n')}\n`);
    };
    stream.on('data', (chunk: string) => handle((emit) => splitter.push(chunk, emit)));
    return new Promise<void>((resolve) => {
      const done = (): void => {
        handle((emit) => splitter.end(emit));
        resolve();
      };
      stream.once('end', done);
      stream.once('close', done);
      stream.once('error', done);
    });
  }

  /** A stdout line: an event, a log line, or a malformed marker. `out` gets the log lines. */
  private readonly onStdoutLine = (raw: string, out: string[]): void => {
    const line = redact(raw, this.opts.secrets);
    const parsed = parseLine(line);
    if (parsed.kind === 'log') {
      out.push(line);
      this.opts.sink.log(line, 'stdout');
    } else if (parsed.kind === 'event') {
      // Decoded values too: an escaped secret is whole only once decoded (redact.ts).
      const r = redactEvent(line, parsed.event, this.opts.secrets);
      out.push(r.line);
      const ev = r.event;
      if (ev.type === 'progress') this.noteStep(ev.step);
      else if (ev.type === 'metrics') this.noteStep(ev.step ?? undefined);
      this.opts.sink.event(ev);
    } else {
      out.push(line);
      this.malformedLines += 1;
      if (this.malformedLines === 1) {
        const msg = `malformed marker line ignored (${parsed.error}): ${parsed.line.slice(0, 200)}; further malformed lines are counted, not reported`;
        out.push(this.opts.logFile.stamp(`warning: ${msg}`).trimEnd());
        this.opts.sink.warn(msg);
      }
    }
  };

  private readonly onStderrLine = (raw: string, out: string[]): void => {
    const line = redact(raw, this.opts.secrets);
    out.push(line);
    this.stderrTail.push(
      line.length > TAIL_LINE_CHARS ? `${line.slice(0, TAIL_LINE_CHARS)} [cut]` : line,
    );
    if (this.stderrTail.length > this.opts.tailMax) this.stderrTail.shift();
    this.opts.sink.log(line, 'stderr');
  };

  private noteStep(step: number | undefined): void {
    if (step === undefined) return;
    this.lastStep = step;
    if (step > this.maxStep) {
      this.maxStep = step;
      this.lastAdvanceAt = this.opts.clock();
    }
  }
}
