import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LineageRecorder } from '../../orchestrator/lineage.js';
import { makePipeline } from '../builders/spec.js';

const sha = (text: string): string => createHash('sha256').update(text).digest('hex');

describe('lineage', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'stoker-lineage-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('describes a JSONL file: hash, bytes and non-blank lines as records', async () => {
    const text = '{"id":1}\n\n{"id":2}\n  \n{"id":3}';
    writeFileSync(join(dir, 'a.jsonl'), text);
    const d = await new LineageRecorder().describe(join(dir, 'a.jsonl'));
    expect(d).toEqual({
      path: join(dir, 'a.jsonl'),
      kind: 'file',
      sha256: sha(text),
      bytes: Buffer.byteLength(text),
      files: 1,
      records: 3,
    });
  });

  it('counts the items of a JSON array, and none for other files', async () => {
    writeFileSync(join(dir, 'v.json'), JSON.stringify([{ a: 1 }, { a: 2 }]));
    writeFileSync(join(dir, 'o.json'), JSON.stringify({ a: 1 }));
    writeFileSync(join(dir, 'w.bin'), 'xyz');
    const r = new LineageRecorder();
    expect((await r.describe(join(dir, 'v.json'))).records).toBe(2);
    expect((await r.describe(join(dir, 'o.json'))).records).toBeNull();
    expect((await r.describe(join(dir, 'w.bin'))).records).toBeNull();
  });

  it('hashes a directory tree by relative path, size and content', async () => {
    mkdirSync(join(dir, 'ck', 'sub'), { recursive: true });
    writeFileSync(join(dir, 'ck', 'model.pt'), 'weights');
    writeFileSync(join(dir, 'ck', 'sub', 'x.jsonl'), '1\n2\n');
    const r = new LineageRecorder();
    const first = await r.describe(join(dir, 'ck'));
    expect(first).toMatchObject({ kind: 'directory', files: 2, bytes: 11, records: 2 });
    const expected = createHash('sha256')
      .update(`model.pt\t7\t${sha('weights')}\n`)
      .update(`sub/x.jsonl\t4\t${sha('1\n2\n')}\n`)
      .digest('hex');
    expect(first.sha256).toBe(expected);

    // Same content elsewhere: same hash. Changed content: a different hash, even from the cache.
    mkdirSync(join(dir, 'copy', 'sub'), { recursive: true });
    writeFileSync(join(dir, 'copy', 'model.pt'), 'weights');
    writeFileSync(join(dir, 'copy', 'sub', 'x.jsonl'), '1\n2\n');
    expect((await r.describe(join(dir, 'copy'))).sha256).toBe(expected);
    writeFileSync(join(dir, 'ck', 'model.pt'), 'weighty');
    utimesSync(join(dir, 'ck', 'model.pt'), new Date(), new Date(Date.now() + 5000));
    expect((await r.describe(join(dir, 'ck'))).sha256).not.toBe(expected);
  });

  it('records missing paths and URLs without reading them', async () => {
    const r = new LineageRecorder();
    expect(await r.describe(join(dir, 'nope'))).toMatchObject({ kind: 'missing', sha256: null });
    expect(await r.describe('s3://bucket/data.jsonl')).toMatchObject({ kind: 'url', sha256: null });
  });

  it('consumed: only the upstream outputs the stage references, sorted by reference', async () => {
    writeFileSync(join(dir, 'views.jsonl'), '{}\n{}\n');
    mkdirSync(join(dir, 'ckpt'));
    writeFileSync(join(dir, 'ckpt', 'w'), 'w');
    const spec = makePipeline('lineage')
      .stage('views', (b) => b.kind('prepare').outputs({ student: 's.jsonl', teacher: 't.jsonl' }))
      .stage('student', (b) => b.outputs({ checkpoint: 'final' }))
      .stage('final', (b) =>
        b
          .dependsOn('views', 'student')
          .command(['python3', 'train.py', '--data', '${stages.views.outputs.student}'])
          .env({ INIT: '${stages.student.outputs.checkpoint}' }),
      )
      .normalize();
    const s = spec.stages.find((x) => x.name === 'final');
    if (!s) throw new Error('no stage final');
    const { entries, problems } = await new LineageRecorder().consumed(
      s,
      {
        views: {
          outputs: { student: join(dir, 'views.jsonl'), teacher: join(dir, 'other.jsonl') },
        },
        student: { outputs: { checkpoint: join(dir, 'ckpt') } },
      },
      [dir],
    );
    expect(problems).toEqual([]);
    expect(entries.map((e) => [e.ref, e.kind, e.records])).toEqual([
      ['stages.student.outputs.checkpoint', 'directory', null],
      ['stages.views.outputs.student', 'file', 2],
    ]);
  });
});
