/**
 * The record of every request the fake API server received, in order (method, path,
 * verb, resource, the status it answered, whether an interceptor answered it, when it
 * arrived), and the questions tests ask of it: how many matched, how many per verb, the
 * most in any window of time (a request-rate check).
 */
import type { RecordedRequest } from './types.js';

export type RequestFilter = Partial<Omit<RecordedRequest, 'seq' | 'path' | 'query'>>;

export class RequestLog {
  readonly entries: RecordedRequest[] = [];
  private seq = 0;

  /** The next request's sequence number (numbers keep counting across clear()). */
  nextSeq(): number {
    return ++this.seq;
  }

  add(rec: RecordedRequest): void {
    this.entries.push(rec);
  }

  clear(): void {
    this.entries.length = 0;
  }

  count(filter: RequestFilter = {}): number {
    return this.matching(filter).length;
  }

  /** Requests that arrived in the busiest `windowMs` (matching filter). */
  peak(windowMs: number, filter: Omit<RequestFilter, 'at'> = {}): number {
    const times = this.matching(filter).map((r) => r.at);
    let peak = 0;
    for (let i = 0, j = 0; j < times.length; j++) {
      while ((times[j] as number) - (times[i] as number) >= windowMs) i++;
      peak = Math.max(peak, j - i + 1);
    }
    return peak;
  }

  verbCounts(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const r of this.entries) out[r.verb] = (out[r.verb] ?? 0) + 1;
    return out;
  }

  private matching(filter: RequestFilter): RecordedRequest[] {
    return this.entries.filter((r) =>
      (Object.keys(filter) as (keyof typeof filter)[]).every(
        (k) => filter[k] === undefined || filter[k] === r[k],
      ),
    );
  }
}
