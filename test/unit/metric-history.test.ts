import { mkdtempSync, appendFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { downsampleIndices, readMetricsFile, toSeries } from '../../orchestrator/metric-history.js';

const dir = mkdtempSync(join(tmpdir(), 'stoker-history-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const line = (s: number | null, t: number, m: Record<string, number>) =>
  `${JSON.stringify({ a: 1, s, t, m })}\n`;

describe('downsampleIndices', () => {
  it('keeps every point of a short series', () => {
    expect(downsampleIndices([3, 1, 2], 10)).toEqual([0, 1, 2]);
  });

  it('keeps at most `max` points, each bucket its extremes in order, the last always', () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ noNaN: true, min: -1e6, max: 1e6 }), {
          minLength: 1,
          maxLength: 3000,
        }),
        fc.integer({ min: 3, max: 500 }),
        (v, max) => {
          const keep = downsampleIndices(v, max);
          expect(keep.length).toBeLessThanOrEqual(Math.max(max, Math.min(v.length, max)));
          expect(keep.at(-1)).toBe(v.length - 1);
          for (let i = 1; i < keep.length; i++) expect(keep[i]!).toBeGreaterThan(keep[i - 1]!);
          // The series' own minimum and maximum survive.
          const lo = Math.min(...v);
          const hi = Math.max(...v);
          const kept = keep.map((i) => v[i]!);
          expect(kept).toContain(lo);
          expect(kept).toContain(hi);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('keeps a one-point spike in a long flat series', () => {
    const v = new Array(100_000).fill(1);
    v[54_321] = 50;
    const keep = downsampleIndices(v, 200);
    expect(keep).toContain(54_321);
    expect(keep.length).toBeLessThanOrEqual(200);
  });
});

describe('readMetricsFile', () => {
  it('reads only what was appended since the last read, and waits for a torn last line', () => {
    const f = join(dir, 'a.metrics.jsonl');
    writeFileSync(f, line(1, 1000, { loss: 2 }) + line(2, 2000, { loss: 1, lr: 0.1 }));
    let p = readMetricsFile(f)!;
    expect(p.points).toBe(2);
    appendFileSync(f, line(3, 3000, { loss: 0.5 }) + '{"a":1,"s":4');
    p = readMetricsFile(f)!;
    expect(p.points).toBe(3);
    appendFileSync(f, ',"t":4000,"m":{"loss":0.25}}\nnot a point\n');
    p = readMetricsFile(f)!;
    expect(p.points).toBe(4);
    expect(p.skipped).toBe(1);
    const series = toSeries(p, { points: 1000, metrics: [], x: 'step' });
    expect(series.map((s) => s.name)).toEqual(['loss', 'lr']);
    expect(series[0]).toMatchObject({
      x: [1, 2, 3, 4],
      y: [2, 1, 0.5, 0.25],
      total: 4,
      last: 0.25,
    });
    expect(toSeries(p, { points: 1000, metrics: ['lr'], x: 'time' })).toEqual([
      { name: 'lr', x: [1], y: [0.1], total: 1, last: 0.1 },
    ]);
  });

  it('starts again when the file is replaced, and is null without a file', () => {
    const f = join(dir, 'b.metrics.jsonl');
    writeFileSync(f, line(1, 1, { loss: 1 }) + line(2, 2, { loss: 2 }));
    expect(readMetricsFile(f)!.points).toBe(2);
    rmSync(f);
    writeFileSync(f, line(1, 1, { loss: 3 }));
    expect(readMetricsFile(f)!.points).toBe(1);
    expect(readMetricsFile(join(dir, 'none.jsonl'))).toBeNull();
  });

  it('leaves out points without a step on a step axis', () => {
    const f = join(dir, 'c.metrics.jsonl');
    writeFileSync(f, line(null, 1000, { loss: 9 }) + line(1, 2000, { loss: 2 }));
    const s = toSeries(readMetricsFile(f)!, { points: 100, metrics: [], x: 'step' });
    expect(s[0]).toMatchObject({ x: [1], y: [2], total: 1 });
  });
});
