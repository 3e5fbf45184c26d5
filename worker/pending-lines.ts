/**
 * Log lines waiting for the reporter's next write (worker/reporter.ts): only the last
 * `tail` survive in Redis (LTRIM), so no more are kept in memory between writes; a line
 * longer than MAX_LINE_CHARS is cut (the full line is in the attempt's log file).
 */
const MAX_LINE_CHARS = 4000;

export class PendingLines {
  private lines: string[] = [];

  constructor(private readonly tail: number) {}

  push(line: string): void {
    this.lines.push(line.length > MAX_LINE_CHARS ? `${line.slice(0, MAX_LINE_CHARS)} [cut]` : line);
    if (this.lines.length > 2 * this.tail) this.lines.splice(0, this.lines.length - this.tail);
  }

  /** The waiting lines (the last `tail` of them), oldest first; and forget them. */
  take(): string[] {
    if (this.lines.length === 0) return [];
    const out = this.lines.length > this.tail ? this.lines.slice(-this.tail) : this.lines;
    this.lines = [];
    return out;
  }
}
