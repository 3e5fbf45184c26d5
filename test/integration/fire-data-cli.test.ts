/**
 * `stoker data ...` as a user runs it (bin/stoker.js in a child process): exit codes,
 * human and JSON output, files written. The real FIRE samples (../shared/fire-samples,
 * outside the repository) are validated when present; that test is skipped otherwise.
 */
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stoker } from '../util/cli.js';

const SAMPLES = join(import.meta.dirname, '..', '..', '..', 'shared', 'fire-samples');
const HAVE_SAMPLES = existsSync(join(SAMPLES, 'dialogues.jsonl'));
if (!HAVE_SAMPLES)
  console.warn(`fire-data-cli: ${SAMPLES} is absent: the real-sample test is skipped`);

let home: string;
const env = () => ({ home });

const PNG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]);

function dialogue(id: string, scores: number[], extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    id,
    image: 'img.png',
    question: { role: 'user', value: `Question ${id}?` },
    groundtruth: { role: 'user', value: 'Yes.' },
    conversations: scores.flatMap((s, i) => [
      { role: 'student', type: 'response', value: `Thought: t${i}\nAnswer: a${i}` },
      { role: 'teacher', type: 'feedback', value: `Score: ${s}.\nFeedback: f${i}` },
    ]),
    score: scores,
    round: scores.length,
    source: 'gqa',
    split: 'fire_1m',
    ...extra,
  });
}

beforeAll(() => {
  home = mkdtempSync(join(tmpdir(), 'stoker-data-cli-'));
  mkdirSync(join(home, 'images'));
  writeFileSync(join(home, 'images', 'img.png'), PNG);
});
afterAll(() => rmSync(home, { recursive: true, force: true }));

const file = (name: string, lines: string[]) => {
  const p = join(home, name);
  writeFileSync(p, lines.join('\n') + '\n');
  return p;
};

describe('stoker data validate', () => {
  it.skipIf(!HAVE_SAMPLES)(
    'reports the real FIRE samples: 229 records, 3 missing images, 4 score flag lists (exit 0; 1 with --strict)',
    async () => {
      const r = await stoker(
        [
          'data',
          'validate',
          join(SAMPLES, 'dialogues.jsonl'),
          '--images',
          join(SAMPLES, 'images'),
          '--json',
        ],
        env(),
      );
      expect(r.stderr).toBe('');
      const report = JSON.parse(r.stdout) as Record<string, unknown>;
      expect(report).toMatchObject({
        valid: false,
        records: 229,
        goodRecords: 222,
        badRecords: 7,
        bySplit: { fire_100k: 94, fire_1m: 95, fire_test: 40 },
        byRounds: { '2': 125, '3': 97, '4': 7 },
        problemCounts: {
          'score-mismatch': 4,
          'image-missing': 3,
          'not-improving': 1,
          unsatisfied: 1,
        },
      });
      expect(r.exitCode).toBe(0);
    },
  );

  it('prints a summary and every problem with its line; exit 1 on errors with --strict, 2 for a missing file', async () => {
    const f = file('bad.jsonl', [
      dialogue('a', [3, 9]),
      '{"id": ',
      dialogue('a', [3, 9]),
      dialogue('c', [4, 4, 9]),
      dialogue('d', [3, 9], { image: 'gone.png', img_path: 'gone.png' }),
    ]);
    const [bad, lenient, missing] = await Promise.all([
      stoker(['data', 'validate', f, '--images', join(home, 'images'), '--strict'], env()),
      stoker(['data', 'validate', f, '--json'], env()),
      stoker(['data', 'validate', join(home, 'nope.jsonl')], env()),
    ]);
    expect(bad.exitCode).toBe(1);
    expect(lenient.exitCode).toBe(0);
    expect(JSON.parse(lenient.stdout)).toMatchObject({ valid: false, records: 5, badRecords: 2 });
    expect(bad.stdout).toMatch(/records\s+5 \(2 without errors, 3 with errors\)/);
    expect(bad.stdout).toMatch(/malformed-json\s+error\s+1/);
    expect(bad.stdout).toContain('line 2: error malformed-json');
    expect(bad.stdout).toContain(
      'line 3 (id a): error duplicate-id: id "a" was first seen on line 1',
    );
    expect(bad.stdout).toContain('line 4 (id c): note not-improving');
    expect(bad.stdout).toContain('line 5 (id d): error image-missing');
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr).toContain('nope.jsonl: no such file');
  });

  it('exits 0 for a valid file and 2 for a bad flag value', async () => {
    const f = file('good.jsonl', [dialogue('a', [3, 9]), dialogue('b', [5, 5])]);
    const [good, flag] = await Promise.all([
      stoker(['data', 'validate', f, '--json', '--strict'], env()),
      stoker(['data', 'validate', f, '--max-problems', 'many'], env()),
    ]);
    expect(good.exitCode).toBe(0);
    expect(JSON.parse(good.stdout)).toMatchObject({ valid: true, notes: 2, imagesDir: null });
    expect(flag.exitCode).toBe(2);
    expect(flag.stderr).toContain("option '--max-problems <n>' argument 'many' is invalid");
  });
});

describe('stoker data views, shard, merge', () => {
  it('builds views, shards by id and merges the shards back with the keep rule', async () => {
    const f = file('d.jsonl', [
      dialogue('a', [3, 9]),
      dialogue('b', [5, 5]),
      dialogue('c', [2, 6]),
      dialogue('d', [1, 4, 8]),
    ]);
    const out = join(home, 'views');
    const [views, shard] = await Promise.all([
      stoker(['data', 'views', f, '--out', out, '--json'], env()),
      stoker(['data', 'shard', f, '--out', join(home, 'shards'), '--shards', '3'], env()),
    ]);
    expect(views.exitCode).toBe(0);
    expect(JSON.parse(views.stdout)).toMatchObject({
      dialogues: 4,
      written: { student: 4, teacher: 9, answers: 2 },
    });
    expect(readFileSync(join(out, 'teacher.jsonl'), 'utf8')).toContain('"id":"d#t3"');
    expect(shard.exitCode).toBe(0);
    expect(shard.stdout).toContain('4 records into 3 shards');
    const shards = [0, 1, 2].map((i) => join(home, 'shards', `shard-0000${i}.jsonl`));
    const merged = join(home, 'merged.jsonl');
    const merge = await stoker(['data', 'merge', ...shards, f, '--out', merged, '--json'], env());
    expect(merge.exitCode).toBe(0);
    expect(JSON.parse(merge.stdout)).toMatchObject({
      records: 8,
      kept: 2,
      duplicates: 4,
      dropped: { no_improvement: 1, unsatisfied: 1 },
    });
    const ids = readFileSync(merged, 'utf8')
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { id: string }).id)
      .sort();
    expect(ids).toEqual(['a', 'd']);
  });

  it('fails on a bad record with FILE:LINE (exit 1) and on a usage error (exit 2)', async () => {
    const f = file('broken.jsonl', [dialogue('a', [3, 9]), 'garbage']);
    const [views, shard] = await Promise.all([
      stoker(['data', 'views', f, '--out', join(home, 'v2')], env()),
      stoker(['data', 'shard', f, '--out', join(home, 's2')], env()),
    ]);
    expect(views.exitCode).toBe(1);
    expect(views.stderr).toContain('broken.jsonl:2: malformed-json');
    expect(shard.exitCode).toBe(2);
    expect(shard.stderr).toContain('exactly one of --shards N and --shard-size N');
  });
});

describe('stoker data synth', () => {
  it('runs python -m stoker_fire.synth with PYTHONPATH, passing its output and exit status through', async () => {
    const fake = join(home, 'fake-python.sh');
    writeFileSync(
      fake,
      '#!/bin/sh\necho "{\\"args\\": \\"$*\\", \\"pythonpath\\": \\"$PYTHONPATH\\"}"\necho oops >&2\nexit 3\n',
    );
    chmodSync(fake, 0o755);
    const [r, none] = await Promise.all([
      stoker(
        ['data', 'synth', '--n', '5', '--out', join(home, 'syn'), '--kind', 'seeds', '--seed', '7'],
        {
          home,
          extra: { STOKER_PYTHON: fake },
        },
      ),
      stoker(['data', 'synth', '--n', '5', '--out', join(home, 'syn')], {
        home,
        extra: { STOKER_PYTHON: join(home, 'no-python-here') },
      }),
    ]);
    expect(r.exitCode).toBe(3);
    expect(r.stderr).toContain('oops');
    const printed = JSON.parse(r.stdout) as { args: string; pythonpath: string };
    expect(printed.args).toBe(
      `-m stoker_fire.synth --n 5 --out ${join(home, 'syn')} --seed 7 --kind seeds`,
    );
    expect(printed.pythonpath.split(':')[0]).toMatch(/worker\/python\/src$/);
    expect(none.exitCode).toBe(1);
    expect(none.stderr).toContain('not found');
    expect(none.stderr).toContain('STOKER_PYTHON');
  });
});
