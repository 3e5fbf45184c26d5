import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { accCurveSvg } from '../../fire/report/chart.js';
import { buildFireReport, parseModelArg, ReportInputError } from '../../fire/report/report.js';

/** A FIRE raw record with these teacher scores (the metrics read the `score` array). */
function record(id: string, scores: number[]): string {
  const conversations = scores.flatMap((s, i) => [
    { role: 'student', type: 'response', value: `Thought: t${i}\nAnswer: a${i}` },
    { role: 'teacher', type: 'feedback', value: `Score: ${s}.\nFeedback: f${i}` },
  ]);
  return JSON.stringify({
    id,
    image: `${id}.png`,
    question: { role: 'user', value: 'q?' },
    groundtruth: { role: 'user', value: 'gt' },
    conversations,
    score: scores,
    round: scores.length,
    source: 'synthetic',
    split: 'fire_test',
  });
}

describe('FIRE report', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'stoker-report-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  function evaluation(name: string, dialogues: number[][], fixed = false): string {
    const d = join(dir, name);
    mkdirSync(d);
    writeFileSync(
      join(d, 'free.jsonl'),
      dialogues.map((s, i) => record(`${name}${i}`, s)).join('\n') + '\n',
    );
    if (fixed) {
      writeFileSync(
        join(d, 'fixed-student.jsonl'),
        `${JSON.stringify({ id: 'x#1', prediction: 'the cat sat', references: ['the cat sat'] })}\n`,
      );
      writeFileSync(
        join(d, 'fixed-teacher-scores.jsonl'),
        [
          JSON.stringify({ id: 'x#1', prediction: 'Score: 7.\nFeedback: ok', reference: 9 }),
          JSON.stringify({ id: 'x#2', prediction: 'no score here', reference: 5 }),
        ].join('\n') + '\n',
      );
    }
    return d;
  }

  it('puts the models side by side, normalises AT to the baseline and compares RR and ADR', async () => {
    // baseline: never refines. final: both wrong starts refine.
    const base = evaluation('base', [[9], [3, 3], [4, 4]]);
    const final = evaluation('final', [[9], [3, 9], [4, 6, 8]], true);
    const report = await buildFireReport({
      models: [parseModelArg(`baseline=${base}`), parseModelArg(`final=${final}`)],
      baseline: 'baseline',
      out: join(dir, 'out'),
      title: 'mini',
    });
    const [b, f] = report.models;
    // baseline AT: (1 + 6 + 6) / 3; final AT: (1 + 2 + 3) / 3.
    expect(b?.free.at).toBeCloseTo(13 / 3);
    expect(f?.free.at).toBeCloseTo(2);
    expect(b?.atNormalised).toBeCloseTo(1);
    expect(f?.atNormalised).toBeCloseTo(2 / (13 / 3));
    expect(b?.free.rr).toBe(0);
    expect(f?.free.rr).toBe(1);
    // ADR: final (0 + 6 + 4) / 3
    expect(f?.free.adr).toBeCloseTo(10 / 3);
    expect(report.comparisons).toEqual([
      {
        model: 'final',
        rr: { model: 1, baseline: 0, better: true },
        adr: { model: f?.free.adr, baseline: 0, better: true },
      },
    ]);
    // Fixed dialogues: an unparseable teacher prediction counts as error 10.
    expect(f?.fixedStudent?.bleu1).toBeCloseTo(1);
    expect(f?.teacherScores?.mae).toBeCloseTo((2 + 10) / 2);
    expect(b?.fixedStudent).toBeNull();

    const md = readFileSync(report.files.markdown, 'utf8');
    expect(md).toContain('# mini');
    expect(md).toContain('| baseline (baseline) | 1.00 |');
    expect(md).toContain('RR 1.00 vs 0.00: higher');
    expect(md).toContain('![acc@t of every model](acc-curve.svg)');
    const svg = readFileSync(report.files.svg, 'utf8');
    expect(svg.match(/<polyline/g)).toHaveLength(2);
    expect(JSON.parse(readFileSync(report.files.json, 'utf8')).baseline).toBe('baseline');
  });

  it('includes the lineage of the run when given', async () => {
    const base = evaluation('base', [[9]]);
    const lineage = join(dir, 'lineage.json');
    writeFileSync(
      lineage,
      JSON.stringify({
        run: 'r1',
        stages: {
          final: {
            consumed: [
              {
                ref: 'stages.views.outputs.student',
                path: '/x/student.jsonl',
                kind: 'file',
                sha256: 'ab'.repeat(32),
                bytes: 10,
                files: 1,
                records: 42,
              },
            ],
            produced: [],
          },
        },
      }),
    );
    const report = await buildFireReport({
      models: [{ name: 'base', dir: base }],
      lineageFile: lineage,
      out: join(dir, 'out'),
    });
    const md = readFileSync(report.files.markdown, 'utf8');
    expect(md).toContain('| final | `stages.views.outputs.student` | 42 | abababababab |');
  });

  it('names what is wrong with its input', async () => {
    expect(() => parseModelArg('nodir')).toThrow(/NAME=DIR/);
    await expect(
      buildFireReport({ models: [{ name: 'm', dir: join(dir, 'none') }], out: join(dir, 'o') }),
    ).rejects.toThrow(ReportInputError);
    const base = evaluation('base', [[9]]);
    await expect(
      buildFireReport({ models: [{ name: 'm', dir: base }], baseline: 'x', out: join(dir, 'o') }),
    ).rejects.toThrow(/--baseline x: not one of the models/);
  });

  it('draws one line per model, each point inside the plot', () => {
    const svg = accCurveSvg([
      { name: 'a', values: [0.2, 0.4, 0.5] },
      { name: 'b <&>', values: [0.25, 0.6, 0.7] },
    ]);
    expect(svg.match(/<circle/g)).toHaveLength(6);
    expect(svg).toContain('b &lt;&amp;&gt;');
    for (const m of svg.matchAll(/cy="([\d.]+)"/g)) {
      const y = Number(m[1]);
      expect(y).toBeGreaterThanOrEqual(40);
      expect(y).toBeLessThanOrEqual(310);
    }
  });
});
