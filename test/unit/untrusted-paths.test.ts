/**
 * What the controller reads for a run (orchestrator/untrusted-path.ts): a pulled stage's
 * input file (sharding.ts) and the outputs lineage describes (lineage.ts). A FIFO, a
 * device, /proc, a path or a symlink out of the run's folders are never read, and say so;
 * none of them can hold the controller up (each case would hang or leak without the
 * checks: the test fails by its timeout rather than hang).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LineageRecorder } from '../../orchestrator/lineage.js';
import { planShards } from '../../orchestrator/sharding.js';
import { runRoots } from '../../orchestrator/untrusted-path.js';

let base: string;
let runDir: string;
let workDir: string;
beforeEach(() => {
  base = mkdtempSync(join(tmpdir(), 'stoker-untrusted-'));
  runDir = join(base, 'runs', 'r1');
  workDir = join(base, 'work');
  mkdirSync(join(runDir, 'stages', 'gen'), { recursive: true });
  mkdirSync(workDir);
});
afterEach(() => rmSync(base, { recursive: true, force: true }));

const roots = () => runRoots({ runDir, workDir }, {});
const fifo = (p: string) => execFileSync('mkfifo', [p]);

describe('lineage of untrusted outputs', () => {
  it('records a FIFO, a device, /proc, a path out and a symlink out as unread, saying why', async () => {
    const out = join(runDir, 'stages', 'gen');
    fifo(join(out, 'pipe'));
    writeFileSync(join(base, 'outside.txt'), 'not the run');
    mkdirSync(join(out, 'tree'));
    writeFileSync(join(out, 'tree', 'ok.txt'), 'ok');
    symlinkSync(join(base, 'outside.txt'), join(out, 'tree', 'link-out'));
    writeFileSync(join(out, 'good.jsonl'), '{}\n');
    const { entries, problems } = await new LineageRecorder().produced(
      {
        pipe: join(out, 'pipe'),
        zero: '/dev/zero',
        env: '/proc/self/environ',
        escape: join(out, '..', '..', '..', '..', 'outside.txt'),
        tree: join(out, 'tree'),
        good: join(out, 'good.jsonl'),
      },
      roots(),
    );
    const kind = Object.fromEntries(entries.map((e) => [e.ref, e.kind]));
    expect(kind).toEqual({
      'outputs.pipe': 'unread',
      'outputs.zero': 'unread',
      'outputs.env': 'unread',
      'outputs.escape': 'unread',
      'outputs.tree': 'unread',
      'outputs.good': 'file',
    });
    const said = problems.join('\n');
    expect(said).toMatch(/outputs\.pipe .*is a FIFO: not read/);
    expect(said).toMatch(/outputs\.zero .*is a system path/);
    expect(said).toMatch(/outputs\.env .*is a system path/);
    expect(said).toMatch(/outputs\.escape .*is outside the run's folders/);
    expect(said).toMatch(/outputs\.tree .*link-out .*is outside the run's folders/);
  });

  it('stops describing at its time budget', async () => {
    writeFileSync(join(runDir, 'big.bin'), Buffer.alloc(4 * 1024 * 1024));
    const r = new LineageRecorder({ budgetMs: -1 });
    const { entries, problems } = await r.produced({ big: join(runDir, 'big.bin') }, roots());
    expect(entries[0]).toMatchObject({ kind: 'unread', sha256: null });
    expect(problems[0]).toMatch(/took longer than the controller gives one stage/);
  });

  it('reads symlinks and folders given in STOKER_DATA_ROOTS', async () => {
    const data = join(base, 'data');
    mkdirSync(data);
    writeFileSync(join(data, 'seed.jsonl'), '{}\n{}\n');
    symlinkSync(join(data, 'seed.jsonl'), join(runDir, 'seed.jsonl'));
    const r = new LineageRecorder();
    const refused = await r.produced({ s: join(runDir, 'seed.jsonl') }, roots());
    expect(refused.entries[0]?.kind).toBe('unread');
    const allowed = await r.produced(
      { s: join(runDir, 'seed.jsonl') },
      runRoots({ runDir, workDir }, { STOKER_DATA_ROOTS: data }),
    );
    expect(allowed.entries[0]).toMatchObject({ kind: 'file', records: 2 });
  });
});

describe('sharding an untrusted input file', () => {
  const plan = (file: string) =>
    planShards(
      { file, shardSize: 1 },
      { workDir, outputDir: join(runDir, 'stages', 'gen'), roots: roots() },
    );

  it('refuses /proc/self/environ, a device, a FIFO and a path out, and writes no shard', async () => {
    fifo(join(workDir, 'seeds.jsonl'));
    writeFileSync(join(base, 'outside.jsonl'), '{"secret":1}\n');
    for (const [file, why] of [
      ['/proc/self/environ', /is a system path/],
      ['/dev/zero', /is a system path/],
      ['seeds.jsonl', /is a FIFO: not read/],
      ['../outside.jsonl', /is outside the run's folders/],
    ] as const) {
      await expect(plan(file), file).rejects.toMatchObject({
        reason: 'UntrustedInput',
        message: expect.stringMatching(why),
      });
    }
    await expect(plan('missing.jsonl')).rejects.toMatchObject({ reason: 'MissingInput' });
    expect(() =>
      readFileSync(join(runDir, 'stages', 'gen', 'input-shards', 'manifest.json')),
    ).toThrow();
  });

  it('splits a regular file of the workDir', async () => {
    writeFileSync(join(workDir, 'seeds.jsonl'), '{"a":1}\n{"a":2}\n\n{"a":3}\n');
    const p = await plan('seeds.jsonl');
    expect(p.items).toBe(3);
    expect(p.inputs).toHaveLength(3);
  });
});
