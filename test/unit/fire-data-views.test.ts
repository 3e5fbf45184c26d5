/**
 * Training views (fire/data/views.ts) against test/fixtures/fire-views-vectors.json,
 * the vectors Python's stoker_fire.prompts checks too (worker/python/tests/fire/test_views_vectors.py),
 * and buildViews() on files.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkRecord } from '../../fire/data/record.js';
import { TEACHER_INSTRUCTION } from '../../fire/data/prompts.js';
import {
  answersView,
  buildViews,
  charCount,
  studentView,
  teacherViews,
  viewLength,
  type ViewRecord,
} from '../../fire/data/views.js';

interface Vector {
  name: string;
  record: Record<string, unknown>;
  student: ViewRecord;
  teacher: ViewRecord[];
  answers: ViewRecord | null;
}

const VECTORS = JSON.parse(
  readFileSync(new URL('../fixtures/fire-views-vectors.json', import.meta.url), 'utf8'),
) as Vector[];

describe('views: the shared vectors', () => {
  it('has the vectors Python checks too, tricky cases included', () => {
    expect(VECTORS.length).toBeGreaterThanOrEqual(6);
    const teacherTexts = VECTORS.flatMap((v) =>
      (v.record.conversations as Array<{ value: string }>).filter((_, i) => i % 2 === 1),
    ).map((t) => t.value);
    expect(teacherTexts.some((t) => t.startsWith('Score: 7/10.'))).toBe(true);
    expect(teacherTexts.some((t) => !t.includes('Feedback:'))).toBe(true);
    expect(VECTORS.some((v) => (v.record.conversations as unknown[]).length === 6)).toBe(true);
    expect(VECTORS.some((v) => v.answers === null)).toBe(true);
  });

  it.each(VECTORS.map((v) => [v.name, v] as const))('%s', (_name, v) => {
    const checked = checkRecord(v.record);
    expect(checked.issues.filter((i) => i.code !== 'unsatisfied')).toEqual([]);
    const d = checked.dialogue;
    if (!d) throw new Error('no dialogue');
    // Byte for byte, key order included, as the JSONL files are written.
    expect(JSON.stringify(studentView(d))).toBe(JSON.stringify(v.student));
    expect(JSON.stringify(teacherViews(d))).toBe(JSON.stringify(v.teacher));
    expect(JSON.stringify(answersView(d))).toBe(JSON.stringify(v.answers));
  });

  it('gives the teacher its instruction and no image', () => {
    for (const v of VECTORS)
      for (const t of v.teacher) {
        expect(t.conversations[1]).toEqual({ from: 'human', value: TEACHER_INSTRUCTION });
        expect(t).not.toHaveProperty('image');
      }
  });
});

describe('view length', () => {
  it('counts characters (code points), not UTF-16 units', () => {
    expect(charCount('a🍵b')).toBe(3);
    expect(charCount('\ud83c')).toBe(1);
    expect(
      viewLength({
        id: 'x',
        conversations: [
          { from: 'human', value: 'ab' },
          { from: 'gpt', value: '🍵' },
        ],
      }),
    ).toBe(3);
  });
});

describe('buildViews', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'stoker-fire-views-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const input = (extra: string[] = []) => {
    const p = join(dir, 'in.jsonl');
    writeFileSync(p, [...VECTORS.map((v) => JSON.stringify(v.record)), ...extra].join('\n'));
    return p;
  };
  const lines = (p: string) =>
    readFileSync(p, 'utf8')
      .split('\n')
      .filter((l) => l !== '');

  it('writes the three views, one JSON record a line, as the vectors say', async () => {
    const r = await buildViews(input(), {
      outDir: join(dir, 'out'),
      views: ['student', 'teacher', 'answers'],
    });
    expect(r.dialogues).toBe(VECTORS.length);
    expect(lines(join(dir, 'out', 'student.jsonl'))).toEqual(
      VECTORS.map((v) => JSON.stringify(v.student)),
    );
    expect(lines(join(dir, 'out', 'teacher.jsonl'))).toEqual(
      VECTORS.flatMap((v) => v.teacher.map((t) => JSON.stringify(t))),
    );
    expect(lines(join(dir, 'out', 'answers.jsonl'))).toEqual(
      VECTORS.filter((v) => v.answers).map((v) => JSON.stringify(v.answers)),
    );
    expect(r.written).toEqual({
      student: VECTORS.length,
      teacher: VECTORS.reduce((n, v) => n + v.teacher.length, 0),
      answers: VECTORS.filter((v) => v.answers).length,
    });
  });

  it('writes only the view asked for', async () => {
    await buildViews(input(), { outDir: join(dir, 'out'), views: ['teacher'] });
    expect(readdirSync(join(dir, 'out'))).toEqual(['teacher.jsonl']);
  });

  it('fails on a bad record with its line and keeps earlier outputs, or skips it with skipBad', async () => {
    const out = join(dir, 'out');
    await buildViews(input(), { outDir: out, views: ['student'] });
    const before = readFileSync(join(out, 'student.jsonl'), 'utf8');
    const reversed = structuredClone(VECTORS[0]?.record) as Record<string, unknown[]>;
    reversed.conversations?.reverse();
    const bad = input([JSON.stringify({ ...reversed, id: 'reversed' })]);
    await expect(buildViews(bad, { outDir: out, views: ['student'] })).rejects.toThrow(
      new RegExp(`in\\.jsonl:${VECTORS.length + 1}: role-order`),
    );
    expect(readFileSync(join(out, 'student.jsonl'), 'utf8')).toBe(before);
    expect(readdirSync(out)).toEqual(['student.jsonl']);
    const r = await buildViews(bad, { outDir: out, views: ['student'], skipBad: true });
    expect(r).toMatchObject({ skippedBad: 1, dialogues: VECTORS.length });
    expect(r.skipped[0]?.line).toBe(VECTORS.length + 1);
  });

  it('treats a duplicate id or a missing image (with imagesDir) as bad', async () => {
    const p = input([JSON.stringify(VECTORS[1]?.record)]);
    await expect(buildViews(p, { outDir: join(dir, 'o'), views: ['student'] })).rejects.toThrow(
      /duplicate-id/,
    );
    await expect(
      buildViews(input(), { outDir: join(dir, 'o'), views: ['student'], imagesDir: dir }),
    ).rejects.toThrow(/in\.jsonl:1: image-missing/);
  });

  it('enforces maxLength: an error naming the id, or the record left out with skipBad', async () => {
    const max = 400;
    await expect(
      buildViews(input(), { outDir: join(dir, 'o'), views: ['teacher'], maxLength: max }),
    ).rejects.toThrow(
      /in\.jsonl:1: teacher view "sha1:[0-9a-f]{16}#t1" is \d+ characters, over --max-length 400/,
    );
    const r = await buildViews(input(), {
      outDir: join(dir, 'o'),
      views: ['student', 'teacher'],
      maxLength: max,
      skipBad: true,
    });
    const teacherTotal = VECTORS.reduce((n, v) => n + v.teacher.length, 0);
    expect(r.skippedTooLong.teacher).toBe(teacherTotal);
    expect(r.written.teacher).toBe(0);
    expect(r.written.student).toBe(VECTORS.filter((v) => viewLength(v.student) <= max).length);
  });
});
