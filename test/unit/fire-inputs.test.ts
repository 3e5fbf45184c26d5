/**
 * The FIRE tools' inputs, bounded: the one line reader (fire/lines.ts) does work linear
 * in a line's length (counted, not timed: the machine running tests may be busy), a line
 * over the maximum is a clear error naming the file and the line, and a FIFO or a device
 * where a file is expected is an error, never a hang.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jsonLines, MetricsInputError } from '../../fire/metrics/jsonl.js';
import { readLineBatches, type LineItem, type LineReadStats } from '../../fire/lines.js';
import { NonRetryableError } from '../../common/errors.js';
import { planShards } from '../../orchestrator/sharding.js';
import { stoker } from '../util/cli.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'stoker-fire-inputs-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const newStats = (): LineReadStats => ({ bytesScanned: 0, bytesJoined: 0, chunks: 0 });

/** A file of a short line, one `{"id", "prediction"}` line of about `bytes`, a short line. */
function fileWithLongLine(name: string, bytes: number): { file: string; size: number } {
  const long = JSON.stringify({ id: 'long', prediction: 'a'.repeat(bytes), reference: 3 });
  const text = `{"id":"a","prediction":"Score: 1","reference":1}\n${long}\n{"id":"b","prediction":"Score: 2","reference":2}\n`;
  const file = join(dir, name);
  writeFileSync(file, text);
  return { file, size: Buffer.byteLength(text) };
}

async function readAll(file: string, stats: LineReadStats): Promise<unknown[]> {
  const values: unknown[] = [];
  for await (const batch of jsonLines(file, { stats })) {
    for (const entry of batch) values.push(entry.error ?? entry.value);
  }
  return values;
}

describe('the line reader: work linear in line length', () => {
  it('scans each byte once and joins each byte of a long line once, at 1 MB and at 16 MB alike', async () => {
    const work: Array<{ size: number; stats: LineReadStats }> = [];
    for (const mb of [1, 16]) {
      const { file, size } = fileWithLongLine(`long-${mb}.jsonl`, mb << 20);
      const stats = newStats();
      const values = await readAll(file, stats);
      expect(values).toHaveLength(3);
      expect((values[1] as { prediction: string }).prediction).toHaveLength(mb << 20);
      expect(values[2]).toMatchObject({ id: 'b' });
      work.push({ size, stats });
    }
    for (const { size, stats } of work) {
      // Exactly once each: a reader that searched the line so far again with each chunk
      // (the quadratic one) scans about size^2 / (2 * chunk) bytes.
      expect(stats.bytesScanned).toBe(size);
      expect(stats.bytesJoined).toBeLessThanOrEqual(size);
      expect(stats.bytesJoined).toBeGreaterThan(size - 200);
    }
    const [small, large] = work as [(typeof work)[0], (typeof work)[0]];
    // 16x the line, 16x the work (within the short lines' few bytes).
    const ratio = large.stats.bytesScanned / small.stats.bytesScanned;
    expect(ratio).toBeGreaterThan(15.9);
    expect(ratio).toBeLessThan(16.1);
  });

  it('reads `stoker data` files with the same reader, the same work', async () => {
    const { file, size } = fileWithLongLine('long-data.jsonl', 4 << 20);
    const stats = newStats();
    const items: LineItem[] = [];
    for await (const batch of readLineBatches(file, { stats })) items.push(...batch);
    expect(items.map((i) => i.line)).toEqual([1, 2, 3]);
    expect(stats.bytesScanned).toBe(size);
    expect(stats.bytesJoined).toBeLessThanOrEqual(size);
  });
});

describe('the line reader: a line over the maximum', () => {
  it('is a MetricsInputError naming the file and the line, raised as soon as the line is over', async () => {
    const { file, size } = fileWithLongLine('over.jsonl', 8 << 20);
    const stats = newStats();
    const read = async () => {
      for await (const _ of jsonLines(file, { maxLineBytes: 1 << 20, stats })) void _;
    };
    const err = await read().then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(MetricsInputError);
    expect((err as Error).message).toBe(
      `${file}:2: line longer than 1 MiB (the most a line may have)`,
    );
    // It stopped within a chunk or two of the maximum, not at the end of the 8 MB line.
    expect(stats.bytesScanned).toBeLessThanOrEqual((1 << 20) + (2 << 20));
    expect(stats.bytesScanned).toBeLessThan(size / 2);
  });

  it('is reported by `data validate` as a problem at its line, the rest still checked', async () => {
    const { file } = fileWithLongLine('over-data.jsonl', 3 << 20);
    const items: LineItem[] = [];
    for await (const batch of readLineBatches(file, { maxLineBytes: 1 << 20 }))
      items.push(...batch);
    expect(items[1]).toEqual({ line: 2, tooLong: expect.any(Number) as unknown as number });
    expect(items.map((i) => i.line)).toEqual([1, 2, 3]);
  });

  it('at the default maximum (64 MiB), `stoker metrics` exits 2 naming FILE:LINE', async () => {
    const { file } = fileWithLongLine('over-64.jsonl', (64 << 20) + 16);
    const r = await stoker(
      ['metrics', 'scores', file, '--json'],
      { home: dir },
      { timeoutMs: 60_000 },
    );
    expect(r.exitCode, r.all).toBe(2);
    expect(r.stderr).toContain(`${file}:2: line longer than 64 MiB`);
    rmSync(file);
  });
});

describe('a FIFO or a device where a file is expected: an error, never a hang', () => {
  // Every case runs the real CLI in a child process with a timeout: if the fix is missing,
  // the child blocks in open(2) and is killed, and the test fails (exitCode undefined).
  const TIMEOUT_MS = 20_000;
  let fifo: string;
  let images: string;
  let records: string;
  beforeAll(() => {
    fifo = join(dir, 'pipe');
    execFileSync('mkfifo', [fifo]);
    images = join(dir, 'images');
    execFileSync('mkdir', [images]);
    execFileSync('mkfifo', [join(images, 'fifo.png')]);
    symlinkSync('/dev/zero', join(images, 'zero.png'));
    records = join(dir, 'records.jsonl');
    const record = (id: string, image: string) =>
      JSON.stringify({
        id,
        image,
        question: { role: 'user', value: 'What colour is the bus?' },
        groundtruth: { role: 'user', value: 'Blue.' },
        source: 'gqa',
        split: 'fire_1m',
        conversations: [
          { role: 'student', type: 'response', value: 'Thought: t.\nAnswer: blue' },
          { role: 'teacher', type: 'feedback', value: 'Score: 9.\nFeedback: good.' },
        ],
        score: [9],
        round: 1,
      });
    writeFileSync(records, `${record('a', 'fifo.png')}\n${record('b', 'zero.png')}\n`);
  });
  const run = (args: string[]) => stoker(args, { home: dir }, { timeoutMs: TIMEOUT_MS });

  it('data validate: an image that is a FIFO or a device is a problem at its line', async () => {
    const r = await run(['data', 'validate', records, '--images', images, '--json']);
    expect(r.timedOut, 'data validate hung on a FIFO image').toBe(false);
    expect(r.exitCode, r.all).toBe(0);
    const report = JSON.parse(r.stdout) as {
      valid: boolean;
      problems: Array<{ line: number; code: string; message: string }>;
    };
    expect(report.valid).toBe(false);
    expect(report.problems).toEqual([
      expect.objectContaining({
        line: 1,
        code: 'image-unreadable',
        message: `not a regular file (a FIFO (named pipe)): ${join(images, 'fifo.png')}`,
      }),
      expect.objectContaining({
        line: 2,
        code: 'image-unreadable',
        message: `not a regular file (a character device): ${join(images, 'zero.png')}`,
      }),
    ]);
  });

  it('data validate: a FIFO given as --images or as the file is a usage error naming it', async () => {
    const asImages = await run(['data', 'validate', records, '--images', fifo]);
    expect(asImages.timedOut).toBe(false);
    expect(asImages.exitCode, asImages.all).toBe(2);
    expect(asImages.stderr).toContain(`--images ${fifo}: not a directory`);
    const asFile = await run(['data', 'validate', fifo]);
    expect(asFile.timedOut).toBe(false);
    expect(asFile.exitCode, asFile.all).toBe(2);
    expect(asFile.stderr).toContain(`${fifo}: not a file`);
  });

  it('metrics: a FIFO or a device as the input is a usage error naming it', async () => {
    for (const [input, kind] of [
      [fifo, 'a FIFO (named pipe)'],
      ['/dev/zero', 'a character device'],
    ] as const) {
      const r = await run(['metrics', 'dialogues', input]);
      expect(r.timedOut, `metrics hung on ${input}`).toBe(false);
      expect(r.exitCode, r.all).toBe(2);
      expect(r.stderr).toContain(`${input}: ${kind}, not a regular file`);
    }
  });

  it('data merge: a FIFO given as --manifest is a usage error naming it', async () => {
    const r = await run(['data', 'merge', '--manifest', fifo, '--out', join(dir, 'merged.jsonl')]);
    expect(r.timedOut, 'data merge hung on a FIFO manifest').toBe(false);
    expect(r.exitCode, r.all).toBe(2);
    expect(r.stderr).toContain(fifo);
  });
});

describe('the controller splitting a pulled stage input (orchestrator/sharding.ts)', () => {
  it('splits with the same reader: blank lines skipped, CRLF and a BOM dropped', async () => {
    const work = mkdtempSync(join(dir, 'shards-'));
    writeFileSync(join(work, 'in.jsonl'), '\ufeff{"i":1}\r\n\n{"i":2}\n  \n{"i":3}');
    const plan = await planShards(
      { file: 'in.jsonl', shardSize: 2 },
      { workDir: work, outputDir: join(work, 'out'), roots: [dir] },
    );
    expect(plan.items).toBe(3);
    expect(plan.inputs.map((f) => readFileSync(f, 'utf8'))).toEqual([
      '{"i":1}\n{"i":2}\n',
      '{"i":3}\n',
    ]);
  });

  it('refuses a line over 64 MiB as a non-retryable error naming the file and the line', async () => {
    const work = mkdtempSync(join(dir, 'shards-'));
    const { file } = fileWithLongLine('shard-input-long.jsonl', (64 << 20) + 16);
    const err = await planShards(
      { file, shardSize: 2 },
      { workDir: work, outputDir: join(work, 'out'), roots: [dir] },
    ).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(NonRetryableError);
    expect((err as Error).message).toBe(`input file ${file}: line 2 is longer than 64 MiB`);
    rmSync(file);
  });
});
