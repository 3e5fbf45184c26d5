import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { UsageError } from '../../common/errors.js';
import { manifestFiles } from '../../fire/cli/data/merge.js';

describe('merge --manifest', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'stoker-manifest-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("lists a generate stage's succeeded shards in index order, relative to the manifest", () => {
    const m = join(dir, 'manifest.json');
    writeFileSync(
      m,
      JSON.stringify({
        stage: 'selfplay',
        shards: [
          { index: 2, path: '/abs/s2.jsonl', items: 1 },
          { index: 0, path: 'shards/s0.jsonl', items: 4 },
        ],
        failed: [{ index: 1, reason: 'BadData', message: 'x' }],
      }),
    );
    expect(manifestFiles(m)).toEqual([join(dir, 'shards/s0.jsonl'), '/abs/s2.jsonl']);
  });

  it("reads `data shard`'s manifest", () => {
    const m = join(dir, 'manifest.json');
    writeFileSync(m, JSON.stringify({ files: [{ file: 'shard-00000.jsonl', records: 3 }] }));
    expect(manifestFiles(m)).toEqual([join(dir, 'shard-00000.jsonl')]);
  });

  it('says what is wrong with a manifest', () => {
    const m = join(dir, 'manifest.json');
    writeFileSync(m, '{"shards": [{"index": 0}]}');
    expect(() => manifestFiles(m)).toThrow(/entry 0 has no "path"/);
    writeFileSync(m, '{"other": 1}');
    expect(() => manifestFiles(m)).toThrow(UsageError);
    writeFileSync(m, 'not json');
    expect(() => manifestFiles(m)).toThrow(/not JSON/);
  });
});
