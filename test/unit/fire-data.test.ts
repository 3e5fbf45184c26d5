/**
 * fire/data: the record checks, the streaming line reader, validate, shard,
 * merge and the synth runner, on small files written per test. Views are in
 * fire-data-views.test.ts (shared vectors with Python).
 */
import { EventEmitter } from 'node:events';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AtomicFile, readLines, type LineItem } from '../../fire/data/jsonl.js';
import { imageFormat, ImageChecker } from '../../fire/data/images.js';
import { checkRecord, derivedId, recordId, type ProblemCode } from '../../fire/data/record.js';
import { validateFile } from '../../fire/data/validate.js';
import { shardFile, shardOf } from '../../fire/data/shard.js';
import { fireDropReason, mergeFiles } from '../../fire/data/merge.js';
import { pickPython, runSynth, synthArgs } from '../../fire/data/synth.js';

// ---------------------------------------------------------------------------------------
// A fluent builder of raw FIRE records: makeDialogue().id('a').scores(3, 9).build()

const PNG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]);

class DialogueBuilder {
  private rec: Record<string, unknown>;
  constructor() {
    this.rec = {
      image: 'img.png',
      question: { role: 'user', value: 'What colour is the bus?' },
      groundtruth: { role: 'user', value: 'Blue.' },
      source: 'gqa',
      split: 'fire_1m',
    };
    this.scores(3, 9);
  }
  id(id: unknown): this {
    this.rec = { id, ...this.rec };
    return this;
  }
  /** Rounds with these teacher scores; `score` and `round` follow. */
  scores(...scores: number[]): this {
    this.rec.conversations = scores.flatMap((s, i) => [
      { role: 'student', type: 'response', value: `Thought: try ${i + 1}.\nAnswer: colour ${i}` },
      { role: 'teacher', type: 'feedback', value: `Score: ${s}.\nFeedback: hint ${i + 1}.` },
    ]);
    this.rec.score = scores;
    this.rec.round = scores.length;
    return this;
  }
  set(field: string, value: unknown): this {
    this.rec[field] = value;
    return this;
  }
  without(field: string): this {
    delete this.rec[field];
    return this;
  }
  turns(fn: (turns: Array<Record<string, unknown>>) => void): this {
    fn(this.rec.conversations as Array<Record<string, unknown>>);
    return this;
  }
  build(): Record<string, unknown> {
    return structuredClone(this.rec);
  }
  line(): string {
    return JSON.stringify(this.rec);
  }
}
const makeDialogue = () => new DialogueBuilder();

const codes = (value: unknown): ProblemCode[] => checkRecord(value).issues.map((i) => i.code);

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'stoker-fire-data-'));
  mkdirSync(join(dir, 'images'));
  writeFileSync(join(dir, 'images', 'img.png'), PNG);
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const write = (name: string, lines: string[]): string => {
  const p = join(dir, name);
  writeFileSync(p, lines.map((l) => `${l}\n`).join(''));
  return p;
};
const readJsonl = (p: string): unknown[] =>
  readFileSync(p, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as unknown);

// ---------------------------------------------------------------------------------------

describe('checkRecord', () => {
  it('accepts a well-formed improving dialogue without any issue', () => {
    const c = checkRecord(makeDialogue().id('d1').build());
    expect(c.issues).toEqual([]);
    expect(c.dialogue).toMatchObject({ id: 'd1', scores: [3, 9], image: 'img.png' });
    expect(c.facets).toEqual({ split: 'fire_1m', source: 'gqa', rounds: 2 });
  });

  it.each<[string, Record<string, unknown>, ProblemCode[]]>([
    ['a record that is a list', [] as unknown as Record<string, unknown>, ['schema']],
    ['no question', makeDialogue().without('question').build(), ['schema']],
    [
      'a question whose role is not user',
      makeDialogue().set('question', { role: 'system', value: 'q' }).build(),
      ['schema'],
    ],
    ['no image nor img_path', makeDialogue().without('image').build(), ['no-image']],
    [
      'image and img_path disagree',
      makeDialogue().set('img_path', 'other.png').build(),
      ['schema'],
    ],
    [
      'an image path leaving the image root',
      makeDialogue().set('image', '../x.png').build(),
      ['schema'],
    ],
    [
      'two student turns in a row',
      makeDialogue()
        .turns((t) => {
          (t[1] as Record<string, unknown>).role = 'student';
          (t[1] as Record<string, unknown>).type = 'response';
        })
        .build(),
      ['role-order'],
    ],
    [
      'a conversation starting with the teacher',
      makeDialogue()
        .turns((t) => t.reverse())
        .build(),
      ['role-order'],
    ],
    [
      'a conversation ending with a student response',
      makeDialogue()
        .turns((t) => t.pop())
        .build(),
      ['role-order'],
    ],
    [
      'a teacher turn typed as a response',
      makeDialogue()
        .turns((t) => ((t[1] as Record<string, unknown>).type = 'response'))
        .build(),
      ['role-order'],
    ],
    [
      'an unparseable teacher turn (counts as 0)',
      makeDialogue()
        .turns((t) => ((t[3] as Record<string, unknown>).value = 'Great answer!'))
        .build(),
      ['unparseable-teacher', 'score-mismatch', 'not-improving', 'unsatisfied'],
    ],
    [
      'a score list of another length',
      makeDialogue().set('score', [3]).build(),
      ['score-mismatch'],
    ],
    [
      'score flags instead of scores, as four real records have',
      makeDialogue().set('score', [0, 1]).build(),
      ['score-mismatch'],
    ],
    ['a score out of 0-10', makeDialogue().set('score', [3, 11]).build(), ['schema']],
    ['a wrong round count', makeDialogue().set('round', 3).build(), ['round-mismatch']],
    ['an empty id', makeDialogue().id('').build(), ['schema']],
    [
      'a human rating out of 1-5',
      makeDialogue()
        .turns((t) => ((t[0] as Record<string, unknown>).human_rating = 7))
        .build(),
      ['schema'],
    ],
  ])('errors: %s', (_name, record, expected) => {
    expect(codes(record)).toEqual(expected);
  });

  it.each<[string, Record<string, unknown>, ProblemCode[]]>([
    ['scores that stay level', makeDialogue().scores(4, 4, 9).build(), ['not-improving']],
    ['scores that fall', makeDialogue().scores(9, 5, 8).build(), ['not-improving']],
    ['an ending below 8', makeDialogue().scores(3, 6).build(), ['unsatisfied']],
    ['an unknown split', makeDialogue().set('split', 'my_split').build(), ['unknown-split']],
    [
      'a student turn without Answer:',
      makeDialogue()
        .turns((t) => ((t[0] as Record<string, unknown>).value = 'I think it is red.'))
        .build(),
      ['student-format'],
    ],
  ])('notes, not errors: %s', (_name, record, expected) => {
    const c = checkRecord(record);
    expect(c.issues.map((i) => i.code)).toEqual(expected);
    expect(c.dialogue).not.toBeNull();
  });

  it('accepts plain-string question and groundtruth, and integer ids', () => {
    const c = checkRecord(
      makeDialogue().id(42).set('question', 'Colour?').set('groundtruth', 'Blue').build(),
    );
    expect(c.issues).toEqual([]);
    expect(c.dialogue).toMatchObject({ id: '42', question: 'Colour?', groundtruth: 'Blue' });
  });

  it('derives a stable id from image, question and groundtruth when there is none', () => {
    const a = checkRecord(makeDialogue().build());
    const b = checkRecord(makeDialogue().scores(1, 2, 9).build());
    expect(a.id).toMatch(/^sha1:[0-9a-f]{16}$/);
    expect(a.id).toBe(b.id);
    expect(a.dialogue?.idDerived).toBe(true);
    expect(a.id).toBe(derivedId('img.png', 'What colour is the bus?', 'Blue.'));
    expect(recordId(makeDialogue().build())).toBe(a.id);
    expect(recordId({ id: 7 })).toBe('7');
    expect(recordId({ question: 'q' })).toBeNull();
  });

  it('names the round and the text of an unparseable teacher turn', () => {
    const c = checkRecord(
      makeDialogue()
        .turns((t) => ((t[1] as Record<string, unknown>).value = 'I would say seven'))
        .build(),
    );
    expect(c.issues[0]?.message).toContain('round 1 (conversations[1])');
    expect(c.issues[0]?.message).toContain('"I would say seven"');
  });
});

describe('readLines', () => {
  const collect = async (file: string, maxLineBytes?: number) => {
    const out: LineItem[] = [];
    for await (const l of readLines(file, maxLineBytes ? { maxLineBytes } : {})) out.push(l);
    return out;
  };

  it('numbers lines from 1, skips blank ones, drops CR and a BOM, reads a last line without newline', async () => {
    const p = join(dir, 'x.jsonl');
    writeFileSync(p, '\ufeff{"a":1}\r\n\n   \n{"b":2}\n{"c":3}');
    expect(await collect(p)).toEqual([
      { line: 1, text: '{"a":1}' },
      { line: 4, text: '{"b":2}' },
      { line: 5, text: '{"c":3}' },
    ]);
  });

  it('reports a line over the limit without keeping it, and goes on', async () => {
    const p = join(dir, 'x.jsonl');
    writeFileSync(p, `{"a":1}\n${'x'.repeat(5000)}\n{"b":2}\n${'y'.repeat(3000)}`);
    expect(await collect(p, 1000)).toEqual([
      { line: 1, text: '{"a":1}' },
      { line: 2, tooLong: 5000 },
      { line: 3, text: '{"b":2}' },
      { line: 4, tooLong: 3000 },
    ]);
  });

  it('keeps multi-byte characters split across chunk boundaries intact', async () => {
    const p = join(dir, 'x.jsonl');
    const text = JSON.stringify({ q: 'é☕🍵'.repeat(300_000) });
    writeFileSync(p, `${text}\n`);
    const [item] = await collect(p);
    expect(item).toEqual({ line: 1, text });
  });
});

describe('AtomicFile', () => {
  it('replaces the target only on commit, and leaves it untouched on abort', async () => {
    const target = join(dir, 'out.jsonl');
    writeFileSync(target, 'old\n');
    const a = await AtomicFile.create(target);
    await a.write('new\n');
    expect(readFileSync(target, 'utf8')).toBe('old\n');
    await a.abort();
    expect(readFileSync(target, 'utf8')).toBe('old\n');
    const b = await AtomicFile.create(target);
    await b.write('new\n');
    await b.commit();
    expect(readFileSync(target, 'utf8')).toBe('new\n');
    expect(readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });
  it('writes text larger than its buffer and multi-byte characters at the buffer edge', async () => {
    const target = join(dir, 'big.jsonl');
    const f = await AtomicFile.create(target, { bufferBytes: 16 });
    const parts = ['0123456789abcde', 'é☕🍵', 'x'.repeat(100), '🍵'.repeat(5), '\n'];
    for (const p of parts) await f.write(p);
    await f.commit();
    expect(readFileSync(target, 'utf8')).toBe(parts.join(''));
  });
});

describe('images', () => {
  it.each([
    ['png', PNG],
    ['jpeg', Buffer.from([0xff, 0xd8, 0xff, 0xe0])],
    ['gif', Buffer.from('GIF89a')],
    ['webp', Buffer.from('RIFF\0\0\0\0WEBPVP8 ')],
    ['bmp', Buffer.from('BM\0\0')],
  ])('recognises %s by its signature', (format, head) => {
    expect(imageFormat(head)).toBe(format);
  });

  it('tells a missing file from an unreadable one', async () => {
    writeFileSync(join(dir, 'images', 'text.png'), 'not an image');
    writeFileSync(join(dir, 'images', 'empty.png'), '');
    const c = new ImageChecker(join(dir, 'images'));
    expect(await c.check('img.png')).toBeNull();
    expect((await c.check('nope.png'))?.code).toBe('image-missing');
    expect((await c.check('text.png'))?.code).toBe('image-unreadable');
    expect((await c.check('empty.png'))?.code).toBe('image-unreadable');
    mkdirSync(join(dir, 'images', 'sub.png'));
    expect((await c.check('sub.png'))?.code).toBe('image-unreadable');
  });
});

describe('validateFile', () => {
  it('reports a good file as valid, with counts by split, source and rounds', async () => {
    const f = write('good.jsonl', [
      makeDialogue().id('a').line(),
      '',
      makeDialogue().id('b').set('source', 'docvqa').scores(2, 5, 9).line(),
    ]);
    const r = await validateFile(f, { imagesDir: join(dir, 'images') });
    expect(r).toMatchObject({
      valid: true,
      records: 2,
      goodRecords: 2,
      badRecords: 0,
      errors: 0,
      bySplit: { fire_1m: 2 },
      bySource: { gqa: 1, docvqa: 1 },
      byRounds: { '2': 1, '3': 1 },
      problems: [],
    });
  });

  it('lists every problem with its line: malformed JSON, role order, missing image, unparseable teacher, duplicates, notes', async () => {
    const f = write('bad.jsonl', [
      makeDialogue().id('a').line(), // 1 good
      '{"id": "broken", ', // 2
      makeDialogue()
        .id('c')
        .turns((t) => t.reverse())
        .line(), // 3
      makeDialogue().id('d').set('image', 'missing.png').line(), // 4
      makeDialogue()
        .id('e')
        .turns((t) => ((t[3] as Record<string, unknown>).value = 'Nice!'))
        .set('score', [3, 0])
        .line(), // 5
      makeDialogue().id('a').line(), // 6 duplicate of line 1
      makeDialogue().id('g').scores(5, 5, 9).line(), // 7 note only
    ]);
    const r = await validateFile(f, { imagesDir: join(dir, 'images') });
    expect(r.valid).toBe(false);
    expect(r.records).toBe(7);
    expect(r.badRecords).toBe(5);
    expect(r.goodRecords).toBe(2);
    expect(r.problems.map((p) => [p.line, p.code, p.severity])).toEqual([
      [2, 'malformed-json', 'error'],
      [3, 'role-order', 'error'],
      [4, 'image-missing', 'error'],
      [5, 'unparseable-teacher', 'error'],
      [5, 'not-improving', 'note'],
      [5, 'unsatisfied', 'note'],
      [6, 'duplicate-id', 'error'],
      [7, 'not-improving', 'note'],
    ]);
    expect(r.problems.find((p) => p.code === 'duplicate-id')?.message).toContain('line 1');
    expect(r.problemCounts).toEqual({
      'malformed-json': 1,
      'role-order': 1,
      'unparseable-teacher': 1,
      'image-missing': 1,
      'duplicate-id': 1,
      'not-improving': 2,
      unsatisfied: 1,
    });
    expect(r.bySplit).toEqual({ fire_1m: 6, '(invalid)': 1 });
  });

  it('is valid when only notes are found', async () => {
    const f = write('notes.jsonl', [makeDialogue().scores(4, 4, 6).line()]);
    const r = await validateFile(f);
    expect(r).toMatchObject({ valid: true, errors: 0, notes: 2, imagesDir: null });
  });

  it('lists at most maxProblems problems but counts them all', async () => {
    const f = write(
      'many.jsonl',
      Array.from({ length: 30 }, () => 'not json'),
    );
    const r = await validateFile(f, { maxProblems: 5 });
    expect(r.problems).toHaveLength(5);
    expect(r.problemsTruncated).toBe(true);
    expect(r.problemCounts).toEqual({ 'malformed-json': 30 });
    expect(r.errors).toBe(30);
  });

  it('reports a line over the limit as a problem, not a crash', async () => {
    const f = write('long.jsonl', [makeDialogue().line(), 'x'.repeat(2000)]);
    const r = await validateFile(f, { maxLineBytes: 1000 });
    expect(r.problems.map((p) => [p.line, p.code])).toEqual([[2, 'line-too-long']]);
  });
});

describe('shard', () => {
  it('places an id in the same shard whatever the file order, and writes a manifest', async () => {
    const ids = Array.from({ length: 40 }, (_, i) => `id-${i}`);
    const lines = ids.map((id) => makeDialogue().id(id).line());
    const a = write('a.jsonl', lines);
    const b = write('b.jsonl', [...lines].reverse());
    const ra = await shardFile(a, { outDir: join(dir, 'sa'), shards: 4 });
    const rb = await shardFile(b, { outDir: join(dir, 'sb'), shards: 4 });
    expect(ra.records).toBe(40);
    expect(ra.files.map((f) => f.records)).toEqual(rb.files.map((f) => f.records));
    for (let s = 0; s < 4; s++) {
      const idsIn = (sub: string) =>
        (readJsonl(join(dir, sub, `shard-0000${s}.jsonl`)) as Array<{ id: string }>)
          .map((r) => r.id)
          .sort();
      expect(idsIn('sa')).toEqual(idsIn('sb'));
      for (const id of idsIn('sa')) expect(shardOf(id, 4)).toBe(s);
    }
    const manifest = JSON.parse(readFileSync(join(dir, 'sa', 'manifest.json'), 'utf8')) as {
      shards: number;
      files: Array<{ file: string; records: number }>;
    };
    expect(manifest.shards).toBe(4);
    expect(manifest.files.reduce((n, f) => n + f.records, 0)).toBe(40);
  });

  it('pins the hash: sha1(id)[:12] as an integer, mod n', () => {
    // sha1("a") = 86f7e437faa5a7fce15d1ddcb9eaeaea377667b8
    expect(shardOf('a', 1000)).toBe(0x86f7e437faa5 % 1000);
  });

  it('derives shard count from --shard-size and removes shards a previous split left', async () => {
    const f = write(
      'x.jsonl',
      Array.from({ length: 10 }, (_, i) => makeDialogue().id(i).line()),
    );
    await shardFile(f, { outDir: join(dir, 's'), shards: 5 });
    const r = await shardFile(f, { outDir: join(dir, 's'), shardSize: 4 });
    expect(r.shards).toBe(3);
    expect(readdirSync(join(dir, 's')).sort()).toEqual([
      'manifest.json',
      'shard-00000.jsonl',
      'shard-00001.jsonl',
      'shard-00002.jsonl',
    ]);
  });

  it('fails on a malformed line with its number, or skips it with skipBad', async () => {
    const f = write('x.jsonl', [makeDialogue().id('a').line(), '{oops']);
    await expect(shardFile(f, { outDir: join(dir, 's'), shards: 2 })).rejects.toThrow(
      /x\.jsonl:2: malformed-json/,
    );
    expect(readdirSync(join(dir, 's'))).toEqual([]);
    const r = await shardFile(f, { outDir: join(dir, 's'), shards: 2, skipBad: true });
    expect(r).toMatchObject({ records: 1, skippedBad: 1 });
  });
});

describe('merge', () => {
  it.each<[string, number[], string | null]>([
    ['strictly improving and satisfied', [3, 6, 9], null],
    ['a level step', [4, 4, 9], 'no_improvement'],
    ['an unsatisfied ending', [3, 6], 'unsatisfied'],
    ['a single satisfied round', [9], 'first_answer_satisfied'],
    ['a teacher format failure', [0, 9], 'format_failure'],
  ])('FIRE keep rule: %s', (_name, scores, reason) => {
    const d = checkRecord(
      makeDialogue()
        .scores(...scores)
        .build(),
    ).dialogue;
    expect(d).not.toBeNull();
    if (d) expect(fireDropReason(d)).toBe(reason);
  });

  it('deduplicates by id (first wins), applies the keep rule, counts every reason', async () => {
    const s0 = write('s0.jsonl', [
      makeDialogue().id('a').line(),
      makeDialogue().id('b').scores(5, 5).line(),
    ]);
    const s1 = write('s1.jsonl', [
      makeDialogue().id('a').scores(1, 2, 8).line(),
      makeDialogue().id('c').scores(2, 6).line(),
      makeDialogue().id('d').scores(2, 8).line(),
    ]);
    const out = join(dir, 'out', 'merged.jsonl');
    const r = await mergeFiles([s0, s1], { out });
    expect(r).toMatchObject({
      records: 5,
      kept: 2,
      duplicates: 1,
      skippedBad: 0,
      dropped: { no_improvement: 1, unsatisfied: 1, format_failure: 0, first_answer_satisfied: 0 },
    });
    const kept = readJsonl(out) as Array<{ id: string; score: number[] }>;
    expect(kept.map((k) => [k.id, k.score])).toEqual([
      ['a', [3, 9]],
      ['d', [2, 8]],
    ]);
  });

  it('with keep rule none only deduplicates; the threshold is an option', async () => {
    const s = write('s.jsonl', [makeDialogue().id('a').scores(3, 6).line()]);
    const out = join(dir, 'm.jsonl');
    expect((await mergeFiles([s], { out, keepRule: 'none' })).kept).toBe(1);
    expect((await mergeFiles([s], { out, satisfied: 6 })).kept).toBe(1);
    expect((await mergeFiles([s], { out })).kept).toBe(0);
  });

  it('never loses an existing output to a bad input: error with file:line, or skip', async () => {
    const out = join(dir, 'm.jsonl');
    writeFileSync(out, 'precious\n');
    const s = write('s.jsonl', [
      makeDialogue().id('a').line(),
      'nope',
      makeDialogue().id('b').line(),
    ]);
    await expect(mergeFiles([s], { out })).rejects.toThrow(/s\.jsonl:2: malformed-json/);
    expect(readFileSync(out, 'utf8')).toBe('precious\n');
    expect(readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
    const r = await mergeFiles([s], { out, skipBad: true });
    expect(r).toMatchObject({ kept: 2, skippedBad: 1 });
    expect(r.skipped[0]).toMatchObject({ file: s, line: 2 });
  });

  it('copies kept lines byte for byte', async () => {
    const line = `{"id": "x",   ${makeDialogue().line().slice(1)}`;
    const s = write('s.jsonl', [line]);
    const out = join(dir, 'm.jsonl');
    await mergeFiles([s], { out });
    expect(readFileSync(out, 'utf8')).toBe(`${line}\n`);
  });
});

describe('synth', () => {
  it('passes every flag to python -m stoker_fire.synth', () => {
    expect(
      synthArgs({
        n: 10,
        out: '/d',
        seed: 3,
        kind: 'seeds',
        split: 'fire_1m',
        startId: 100,
        imageSize: 64,
        prefix: 'sd',
      }),
    ).toEqual([
      '-m',
      'stoker_fire.synth',
      '--n',
      '10',
      '--out',
      '/d',
      '--seed',
      '3',
      '--kind',
      'seeds',
      '--split',
      'fire_1m',
      '--start-id',
      '100',
      '--image-size',
      '64',
      '--prefix',
      'sd',
    ]);
  });

  it('picks $STOKER_PYTHON, then /usr/bin/python3, then python3', () => {
    expect(pickPython({ STOKER_PYTHON: '/opt/py' }, () => true)).toBe('/opt/py');
    expect(pickPython({}, () => true)).toBe('/usr/bin/python3');
    expect(pickPython({}, () => false)).toBe('python3');
  });

  const fakeChild = (fn: (c: EventEmitter) => void) =>
    ((_cmd: string, _args: string[], opts: { env?: NodeJS.ProcessEnv }) => {
      const c = new EventEmitter();
      lastEnv = opts.env;
      setImmediate(() => fn(c));
      return c as unknown as ChildProcess;
    }) as never;
  let lastEnv: NodeJS.ProcessEnv | undefined;

  it('sets PYTHONPATH to worker/python/src and passes the exit status through', async () => {
    const code = await runSynth(
      { n: 1, out: '/d' },
      {
        env: { STOKER_PYTHON: 'py', PYTHONPATH: '/x' },
        pythonPath: '/repo/worker/python/src',
        spawn: fakeChild((c) => c.emit('close', 65, null)),
      },
    );
    expect(code).toBe(65);
    expect(lastEnv?.PYTHONPATH).toBe('/repo/worker/python/src:/x');
  });

  it('reports a signal as 128 + N and a missing interpreter clearly', async () => {
    expect(
      await runSynth(
        { n: 1, out: '/d' },
        { env: {}, spawn: fakeChild((c) => c.emit('close', null, 'SIGTERM')) },
      ),
    ).toBe(143);
    const enoent = Object.assign(new Error('spawn nope ENOENT'), { code: 'ENOENT' });
    await expect(
      runSynth(
        { n: 1, out: '/d' },
        { env: { STOKER_PYTHON: 'nope' }, spawn: fakeChild((c) => c.emit('error', enoent)) },
      ),
    ).rejects.toThrow(/Python interpreter "nope" not found.*STOKER_PYTHON/);
  });
});
