/**
 * `stoker metrics ...` as a user runs it (bin/stoker.js in a child process): outputs,
 * --json, exit codes for bad input, and the real FIRE samples when ../shared is there.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stoker } from '../util/cli.js';

const SAMPLES = join(
  import.meta.dirname,
  '..',
  '..',
  '..',
  'shared',
  'fire-samples',
  'dialogues.jsonl',
);

let home: string;
beforeAll(() => {
  home = mkdtempSync(join(tmpdir(), 'stoker-metrics-cli-'));
});
afterAll(() => rmSync(home, { recursive: true, force: true }));

const env = () => ({ home });

function jsonl(name: string, rows: unknown[]): string {
  const file = join(home, name);
  writeFileSync(file, rows.map((r) => (typeof r === 'string' ? r : JSON.stringify(r))).join('\n'));
  return file;
}

describe('stoker metrics dialogues', () => {
  it('prints the metrics as JSON, with AT normalised to a baseline', async () => {
    const run = jsonl('run.jsonl', [{ score: [3, 10] }, { score: [9] }]); // AT (2 + 1) / 2 = 1.5
    const base = jsonl('base.jsonl', [{ score: [3, 10] }, { score: [2, 5, 6] }]); // AT (2 + 6) / 2 = 4
    const r = await stoker(['metrics', 'dialogues', run, '--baseline', base, '--json'], env());
    expect(r.exitCode, r.all).toBe(0);
    const out = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(out).toMatchObject({
      file: run,
      options: { tau: 8, tmax: 5, penalty: 6 },
      dialogues: 2,
      startingWrong: 1,
      refined: 1,
      accAt: [0.5, 1, 1, 1, 1],
      rr: 1,
      at: 1.5,
      atNormalised: 0.375,
      scoresFrom: 'field',
      skipped: 0,
      baseline: { file: base, dialogues: 2, at: 4, atNormalised: 1 },
    });
  });

  it('prints the paper-style table, baseline first, and takes tau, tmax and the penalty', async () => {
    const run = jsonl('t-run.jsonl', [{ score: [3, 7, 9] }]);
    const base = jsonl('t-base.jsonl', [{ score: [3, 4, 5] }]);
    const r = await stoker(
      [
        'metrics',
        'dialogues',
        run,
        '--baseline',
        base,
        '--tau',
        '7',
        '--tmax',
        '2',
        '--penalty',
        '4',
      ],
      env(),
    );
    expect(r.exitCode, r.all).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toContain(
      'score >= 7; first 2 turns; a dialogue never satisfied counts turn 4',
    );
    const header = lines.find((l) => l.startsWith('run'));
    expect(header).toMatch(/AT\s+AT norm\s+ADR\s+ATR\s+RR\s+acc@1\s+acc@2$/);
    const baseRow = lines.findIndex((l) => l.startsWith('t-base.jsonl'));
    const runRow = lines.findIndex((l) => l.startsWith('t-run.jsonl'));
    expect(baseRow).toBeGreaterThan(0);
    expect(runRow).toBe(baseRow + 1);
    // Base: never correct in 2 turns -> AT 4; run: correct at turn 2 -> AT 2, normalised 0.50.
    expect(lines[baseRow]).toMatch(/4\.000\s+1\.00/);
    expect(lines[runRow]).toMatch(/2\.000\s+0\.50/);
    expect(r.stdout).toContain('2 dialogues longer than 2 turns counted with the first 2');
  });

  it('stops at a bad record with file:line and exit 2; --skip-bad counts it instead', async () => {
    const file = jsonl('bad.jsonl', [{ score: [3, 10] }, '{"score": [3, 10', { score: [] }]);
    const r = await stoker(['metrics', 'dialogues', file], env());
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain(`${file}:2: not valid JSON`);
    const skip = await stoker(['metrics', 'dialogues', file, '--skip-bad', '--json'], env());
    expect(skip.exitCode, skip.all).toBe(0);
    expect(JSON.parse(skip.stdout)).toMatchObject({ dialogues: 1, skipped: 2 });
    expect(skip.stderr).toContain('warning: skipped 2 bad records');
    expect(skip.stderr).toContain(`${file}:3: "score" is empty`);
  });

  it('exits 2 on a missing file or a bad flag, saying which', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['/nonexistent/free.jsonl'], /\/nonexistent\/free\.jsonl: no such file/],
      [['package.json', '--tmax', '0'], /--tmax must be an integer >= 1/],
      [['package.json', '--tau', 'high'], /--tau: expected a number, got "high"/],
      [['package.json', '--scores-from', 'x'], /--scores-from: expected field or turns/],
    ];
    // Concurrently: each is a process start, and nothing is shared.
    const results = await Promise.all(
      cases.map(([args]) => stoker(['metrics', 'dialogues', ...args], env())),
    );
    results.forEach((r, i) => {
      expect(r.exitCode, r.all).toBe(2);
      expect(r.stderr).toMatch(cases[i]?.[1] as RegExp);
    });
  });
});

describe('stoker metrics text and scores', () => {
  it('prints BLEU-1..4 and CIDEr-D', async () => {
    const file = jsonl('text.jsonl', [
      {
        id: 'a',
        prediction: 'A man rides a brown horse.',
        references: ['A man rides a brown horse.'],
      },
      {
        id: 'b',
        prediction: 'Two dogs play in the snow.',
        reference: 'Two dogs play in the snow.',
      },
    ]);
    const json = await stoker(['metrics', 'text', file, '--json'], env());
    expect(json.exitCode, json.all).toBe(0);
    const m = JSON.parse(json.stdout) as Record<string, number>;
    expect(m).toMatchObject({ file, items: 2, references: 2, predictionTokens: 12 });
    expect(m.bleu4).toBeCloseTo(1, 8);
    expect(m.ciderD).toBeCloseTo(10, 10);
    const human = await stoker(['metrics', 'text', file], env());
    expect(human.stdout).toMatch(/BLEU-4\s+1\.0000/);
    expect(human.stdout).toMatch(/CIDEr-D\s+10\.0000/);
  });

  it('prints the score MAE, and exits 2 on a record without a reference', async () => {
    const file = jsonl('scores.jsonl', [
      { id: 'a#1', prediction: 'Score: 7.\nFeedback: ok', reference: 9 },
      { id: 'a#2', prediction: 'no score', reference: 'Score: 4.\nFeedback: hm' },
    ]);
    const r = await stoker(['metrics', 'scores', file, '--json'], env());
    expect(r.exitCode, r.all).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      file,
      items: 2,
      unparseable: 1,
      mae: 6,
      maeParseable: 2,
    });
    const bad = jsonl('scores-bad.jsonl', [{ id: 'z', prediction: 'Score: 1.' }]);
    const e = await stoker(['metrics', 'scores', bad], env());
    expect(e.exitCode).toBe(2);
    expect(e.stderr).toContain(`${bad}:1: no "reference"`);
  });
});

describe.skipIf(!existsSync(SAMPLES))('the real FIRE samples (../shared/fire-samples)', () => {
  it('computes the metrics of the 229 dialogues and notices the 4 odd score arrays', async () => {
    const r = await stoker(['metrics', 'dialogues', SAMPLES, '--json'], env());
    expect(r.exitCode, r.all).toBe(0);
    const m = JSON.parse(r.stdout) as Record<string, unknown>;
    // Checked against an independent Python computation over the same file.
    expect(m).toMatchObject({
      dialogues: 229,
      startingWrong: 221,
      refined: 216,
      scoreMismatches: 4,
    });
    expect(m.at).toBeCloseTo(2.3231441, 6);
    expect(m.adr).toBeCloseTo(5.5633188, 6);
    expect(m.atr).toBeCloseTo(4.2547307, 6);
    expect((m.accAt as number[])[0]).toBeCloseTo(0.0349345, 6);
    expect(r.stderr).toContain('4 records of');
    expect(r.stderr).toContain('"score" [0,1], turns [8,10]');
  });
});
