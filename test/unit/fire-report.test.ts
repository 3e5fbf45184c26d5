import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
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

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** docs/fire.md's numbered sections: number -> title (`## 4. Metrics` -> 4: 'Metrics'). */
function docSections(): Map<number, string> {
  const doc = readFileSync(join(ROOT, 'docs', 'fire.md'), 'utf8');
  return new Map(
    [...doc.matchAll(/^## (\d+)\. (.+)$/gm)].map((m) => [Number(m[1]), m[2] as string]),
  );
}

/**
 * Text files of the tree: not dependencies, build output, caches, or hidden folders
 * (version control, .stoker's run data, virtual environments).
 */
function sourceFiles(dir: string): string[] {
  const skip = new Set(['node_modules', 'dist', '__pycache__']);
  const text = /\.(ts|mts|mjs|js|py|ya?ml|json|md)$/;
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return skip.has(e.name) || e.name.startsWith('.') ? [] : sourceFiles(path);
    return e.isFile() && text.test(e.name) ? [path] : [];
  });
}

describe('docs/fire.md: the definitions the product cites', () => {
  it('has the five numbered sections, in order', () => {
    expect([...docSections()]).toEqual([
      [1, 'Data format'],
      [2, 'Training views'],
      [3, 'Self-play rules'],
      [4, 'Metrics'],
      [5, 'The recipe'],
    ]);
  });

  it('every citation of a section names one that exists', () => {
    const sections = docSections();
    // "docs/fire.md, section 4", "docs/fire.md, sections 1-3", "sections 3 and 4", also
    // when the citation wraps onto a comment's next line.
    const citation = /docs\/fire\.md,\s*(?:[#*]\s*)?sections?\s+(\d+(?:\s*(?:-|,|and)\s*\d+)*)/g;
    const cited: string[] = [];
    const missing: string[] = [];
    for (const file of sourceFiles(ROOT)) {
      for (const m of readFileSync(file, 'utf8').matchAll(citation)) {
        for (const n of (m[1] as string).match(/\d+/g) ?? []) {
          const where = `${relative(ROOT, file)}: section ${n}`;
          cited.push(where);
          if (!sections.has(Number(n))) missing.push(where);
        }
      }
    }
    expect(cited.length).toBeGreaterThan(0);
    expect(missing).toEqual([]);
  });

  it('the FIRE library, the recipes and the docs point at docs/fire.md, not ../shared', () => {
    const offenders = ['fire', 'training-configs', 'docs']
      .flatMap((d) => sourceFiles(join(ROOT, d)))
      .filter((file) =>
        /shared\/(FIRE\.md|fire-samples)|\bFIRE\.md\b/.test(readFileSync(file, 'utf8')),
      )
      .map((file) => relative(ROOT, file));
    expect(offenders).toEqual([]);
  });
});

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

  it('cites the definitions in docs/fire.md, section 4, in every file it writes, never ../shared', async () => {
    const base = evaluation('base', [[9], [3, 9]], true);
    const report = await buildFireReport({
      models: [{ name: 'base', dir: base }],
      out: join(dir, 'out'),
    });
    const md = readFileSync(report.files.markdown, 'utf8');
    expect(md).toContain('Definitions: docs/fire.md, section 4.');
    for (const file of Object.values(report.files)) {
      const text = readFileSync(file, 'utf8');
      expect(text, file).not.toMatch(/shared\/|FIRE\.md/);
    }
    // The section it names is the metrics section of the document.
    expect(docSections().get(4)).toBe('Metrics');
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

  it("shows the engine each evaluation ran (its evaluation.json), and names a bad one's file", async () => {
    const base = evaluation('base', [[9]]);
    const final = evaluation('final', [[3, 9]]);
    writeFileSync(
      join(base, 'evaluation.json'),
      JSON.stringify({ engine: 'hf', teacherEngine: 'hf', device: 'cuda', records: 1 }),
    );
    writeFileSync(
      join(final, 'evaluation.json'),
      JSON.stringify({ engine: 'hf', teacherEngine: 'tiny', device: null }),
    );
    const report = await buildFireReport({
      models: [
        { name: 'base', dir: base },
        { name: 'final', dir: final },
      ],
      out: join(dir, 'out'),
    });
    expect(readFileSync(report.files.markdown, 'utf8')).toContain(
      'Engines: base hf (device cuda); final hf, teacher tiny (device default).',
    );
    expect(report.models.map((m) => m.run?.engine)).toEqual(['hf', 'hf']);

    writeFileSync(join(final, 'evaluation.json'), JSON.stringify({ device: 'cpu' }));
    await expect(
      buildFireReport({ models: [{ name: 'final', dir: final }], out: join(dir, 'o2') }),
    ).rejects.toThrow(/final: .*evaluation\.json: engine: /);
    writeFileSync(join(final, 'evaluation.json'), '{');
    await expect(
      buildFireReport({ models: [{ name: 'final', dir: final }], out: join(dir, 'o3') }),
    ).rejects.toThrow(ReportInputError);
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
