/**
 * fire-data: `stoker data validate` and `stoker data merge` on large raw FIRE files:
 * records per second and peak memory, and whether memory grows with the file.
 *
 * Input      synthetic raw FIRE records (about 1 KB each, 2-3 rounds; 80% strictly
 *            improving and satisfied, 10% level, 10% ending below 8) written by a fast
 *            generator here, each referencing one of 4 real tiny PNG files (so validate
 *            opens and checks real images; its cache makes repeats cheap). Three files:
 *              small   N/10 records, N/10 distinct ids
 *              large   N records, N distinct ids
 *              repeat  N records, N/10 distinct ids (each id 10 times)
 *            N = 1,000,000 (quick: 100,000).
 * Measured   each run in a fresh `node` process importing the compiled library (dist/):
 *            validateFile(file, {imagesDir}) and mergeFiles([file], {out}) (keep rule
 *            fire): records/s and peak RSS (process.resourceUsage().maxRSS).
 *            Memory claims: (1) repeat vs small: same distinct ids, 10x the records: the
 *            peak RSS should be about equal (streaming: nothing grows with the file).
 *            Measured twice: as is, and with V8's old generation capped at 64 MB, where
 *            garbage cannot pile up (uncapped, V8 lets a longer run accumulate more
 *            garbage before a full collection: slack, not live data; capped, a run whose
 *            live data grew with the file would die out of memory);
 *            (2) large vs small: the growth is the id set (validate: Map id -> first
 *            line; merge: Set of ids), reported per distinct id.
 * Baseline   the floor of any JSONL tool in Node: node:readline over the same large file
 *            plus JSON.parse of every line, nothing else, in the same kind of process.
 * Ratio      validate records per CPU second on the large file / the baseline's (1.0 =
 *            checking costs nothing beyond reading and parsing). CPU time (user + system
 *            of the process) rather than wall time, because on a shared machine the wall
 *            clock mostly measures the other work; wall-clock records/s are reported too.
 */
import { spawn } from 'node:child_process';
import { createWriteStream, mkdirSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import type { Benchmark, BenchContext } from './lib/harness.js';
import { round } from './lib/harness.js';

// ---------------------------------------------------------------------------------------
// Tiny real PNGs

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(buf: Buffer): number {
  let c = 0xffffffff;
  for (const byte of buf) c = (CRC_TABLE[(c ^ byte) & 0xff] as number) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

/** A valid RGB PNG of one colour. */
export function tinyPng(width: number, height: number, rgb: [number, number, number]): Buffer {
  const row = Buffer.alloc(1 + width * 3);
  for (let x = 0; x < width; x++) row.set(rgb, 1 + x * 3);
  const raw = Buffer.concat(Array.from({ length: height }, () => row));
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB, deflate, no filter method, no interlace
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', deflateSync(raw)),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

// ---------------------------------------------------------------------------------------
// Synthetic raw FIRE records

const IMAGES = ['red.png', 'green.png', 'blue.png', 'grey.png'];
const COLOURS: Array<[number, number, number]> = [
  [220, 40, 40],
  [40, 180, 60],
  [40, 60, 220],
  [128, 128, 128],
];
const SOURCES = ['gqa', 'vqav2', 'textvqa', 'docvqa', 'chartqa'];

function scoresFor(i: number): number[] {
  switch (i % 10) {
    case 0:
      return [4, 4, 9]; // level: dropped by the keep rule (no_improvement)
    case 1:
      return [3, 6]; // ends below 8 (unsatisfied)
    default:
      return i % 3 === 0 ? [2, 5, 9] : [3, 10];
  }
}

function syntheticRecord(i: number, id: string): string {
  const scores = scoresFor(i);
  const shape = ['circle', 'square', 'triangle', 'star'][i % 4] as string;
  const conversations = scores.flatMap((s, r) => [
    {
      role: 'student',
      type: 'response',
      value: `Thought: Looking at the ${shape} in picture ${i}, round ${r + 1}, I compare its colour with the background and the other shapes.\nAnswer: The ${shape} is colour number ${(i + r) % 7}.`,
    },
    {
      role: 'teacher',
      type: 'feedback',
      value: `Score: ${s}.\nFeedback: ${s >= 8 ? 'Correct, well observed.' : `Look again at the ${shape}: compare it with the legend in the corner before you answer.`}`,
      human_rating: 5,
    },
  ]);
  return JSON.stringify({
    id,
    image: IMAGES[i % IMAGES.length],
    question: { role: 'user', value: `What colour is the ${shape} in picture ${i}?` },
    conversations,
    groundtruth: { role: 'user', value: `The ${shape} is colour number ${(i + 1) % 7}.` },
    source: SOURCES[i % SOURCES.length],
    round: scores.length,
    score: scores,
    split: 'fire_1m',
    img_path: IMAGES[i % IMAGES.length],
  });
}

/** Write `n` records whose ids cycle through `distinct` values. Returns bytes written. */
export async function writeRecords(path: string, n: number, distinct: number): Promise<number> {
  const out = createWriteStream(path);
  let bytes = 0;
  let batch: string[] = [];
  for (let i = 0; i < n; i++) {
    const line = `${syntheticRecord(i, `syn-${i % distinct}`)}\n`;
    bytes += Buffer.byteLength(line);
    batch.push(line);
    if (batch.length === 2000) {
      if (!out.write(batch.join(''))) await once(out, 'drain');
      batch = [];
    }
  }
  out.end(batch.join(''));
  await once(out, 'finish');
  return bytes;
}

// ---------------------------------------------------------------------------------------
// Measured runs, each in a fresh process

const RUNNER = `
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';
const [op, dist, file, aux] = process.argv.slice(2);
const lib = (name) => import(pathToFileURL(join(dist, 'fire', 'data', name)).href);
const t0 = performance.now();
const cpu0 = process.cpuUsage();
let out;
if (op === 'validate') {
  const { validateFile } = await lib('validate.js');
  const r = await validateFile(file, { imagesDir: aux });
  out = { records: r.records, badRecords: r.badRecords, problemCounts: r.problemCounts };
} else if (op === 'merge') {
  const { mergeFiles } = await lib('merge.js');
  const r = await mergeFiles([file], { out: aux });
  out = { records: r.records, kept: r.kept, duplicates: r.duplicates, dropped: r.dropped };
} else if (op === 'parse') {
  let records = 0;
  for await (const line of createInterface({ input: createReadStream(file), crlfDelay: Infinity })) {
    if (line.trim() === '') continue;
    JSON.parse(line);
    records++;
  }
  out = { records };
} else throw new Error('unknown op ' + op);
const seconds = (performance.now() - t0) / 1000;
const cpu = process.cpuUsage(cpu0);
const cpuSeconds = (cpu.user + cpu.system) / 1e6;
process.stdout.write(JSON.stringify({ ...out, seconds, cpuSeconds, maxRssKb: process.resourceUsage().maxRSS }) + '\\n');
`;

interface RunResult {
  records: number;
  seconds: number;
  cpuSeconds: number;
  maxRssKb: number;
  [k: string]: unknown;
}

function runChild(script: string, args: string[], nodeFlags: string[] = []): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...nodeFlags, script, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    child.once('error', reject);
    child.once('close', (code) => {
      if (code !== 0) return reject(new Error(`${args[0]} exited ${code}: ${stderr.trim()}`));
      try {
        resolve(JSON.parse(stdout) as RunResult);
      } catch {
        reject(new Error(`${args[0]}: unreadable output: ${stdout.slice(0, 200)}`));
      }
    });
  });
}

/** Enough for N/10 ids (about 15 MB at 100,000) plus a batch of records in flight. */
const CAPPED_OLD_SPACE_MB = 64;

const summary = (r: RunResult) => ({
  records: r.records,
  seconds: round(r.seconds, 2),
  recordsPerSec: Math.round(r.records / r.seconds),
  cpuSeconds: round(r.cpuSeconds, 2),
  recordsPerCpuSec: Math.round(r.records / r.cpuSeconds),
  peakRssMb: round(r.maxRssKb / 1024, 1),
});

type FileName = 'small' | 'large' | 'repeat';

interface Inputs {
  dir: string;
  images: string;
  /** The runner script each measured process runs. */
  script: string;
  dist: string;
  files: Record<FileName, { path: string; records: number; ids: number }>;
  /** Size of each file. */
  bytes: Record<string, number>;
}

interface Runs {
  baseline: RunResult;
  validate: Record<string, RunResult>;
  merge: Record<string, RunResult>;
  capped: Record<string, { validate: RunResult; merge: RunResult }>;
}

/**
 * 1. write the images, the runner and the three files; 2. run everything; 3. check the
 * counts; 4. report.
 */
async function measure(ctx: BenchContext): Promise<Record<string, unknown>> {
  const n = ctx.quick ? 100_000 : 1_000_000;
  const inputs = await writeInputs(ctx, n);
  const runs = await runAll(ctx, inputs);
  checkCounts(inputs, runs);
  return report(n, inputs, runs);
}

async function writeInputs(ctx: BenchContext, n: number): Promise<Inputs> {
  const dir = join(ctx.tmpRoot, 'fire-data');
  const images = join(dir, 'images');
  mkdirSync(images, { recursive: true });
  IMAGES.forEach((name, i) =>
    writeFileSync(join(images, name), tinyPng(8, 8, COLOURS[i] ?? [0, 0, 0])),
  );
  const script = join(dir, 'runner.mjs');
  writeFileSync(script, RUNNER);
  const files = {
    small: { path: join(dir, 'small.jsonl'), records: n / 10, ids: n / 10 },
    large: { path: join(dir, 'large.jsonl'), records: n, ids: n },
    repeat: { path: join(dir, 'repeat.jsonl'), records: n, ids: n / 10 },
  };
  const bytes: Record<string, number> = {};
  for (const [name, f] of Object.entries(files)) {
    ctx.note(`fire-data: writing ${f.records} records (${f.ids} ids) to ${name}.jsonl`);
    bytes[name] = await writeRecords(f.path, f.records, f.ids);
  }
  return { dir, images, script, dist: join(ctx.root, 'dist'), files, bytes };
}

/** The baseline, validate and merge of every file, then small and repeat again capped. */
async function runAll(ctx: BenchContext, inputs: Inputs): Promise<Runs> {
  const { dir, images, script, dist, files } = inputs;
  ctx.note('fire-data: baseline (readline + JSON.parse) on large');
  const baseline = await runChild(script, ['parse', dist, files.large.path]);
  const validate: Record<string, RunResult> = {};
  const merge: Record<string, RunResult> = {};
  for (const name of ['small', 'large', 'repeat'] as const) {
    ctx.note(`fire-data: validate ${name}`);
    validate[name] = await runChild(script, ['validate', dist, files[name].path, images]);
    ctx.note(`fire-data: merge ${name}`);
    merge[name] = await runChild(script, [
      'merge',
      dist,
      files[name].path,
      join(dir, `merged-${name}.jsonl`),
    ]);
  }
  // The same runs with V8's old generation capped: garbage cannot pile up, so the peak
  // RSS is what the program keeps alive. Equal for small and repeat = bounded memory.
  const cap = [`--max-old-space-size=${CAPPED_OLD_SPACE_MB}`];
  const capped: Record<string, { validate: RunResult; merge: RunResult }> = {};
  for (const name of ['small', 'repeat'] as const) {
    ctx.note(
      `fire-data: validate and merge ${name}, old space capped at ${CAPPED_OLD_SPACE_MB} MB`,
    );
    capped[name] = {
      validate: await runChild(script, ['validate', dist, files[name].path, images], cap),
      merge: await runChild(
        script,
        ['merge', dist, files[name].path, join(dir, `merged-capped-${name}.jsonl`)],
        cap,
      ),
    };
  }
  return { baseline, validate, merge, capped };
}

/** Every run read every record; merge kept the 80% that improve and end satisfied. */
function checkCounts({ files }: Inputs, { validate, merge }: Runs): void {
  for (const name of ['small', 'large', 'repeat'] as const) {
    if (
      validate[name]?.records !== files[name].records ||
      merge[name]?.records !== files[name].records
    )
      throw new Error(`${name}: a run read the wrong number of records`);
    if (merge[name]?.kept !== (files[name].ids * 8) / 10)
      throw new Error(
        `${name}: merge kept ${String(merge[name]?.kept)}, expected ${(files[name].ids * 8) / 10}`,
      );
  }
}

const rss = (r: RunResult | undefined) => (r?.maxRssKb ?? 0) * 1024;

function report(n: number, { files, bytes }: Inputs, runs: Runs): Record<string, unknown> {
  const { validate, merge } = runs;
  const perId = (rs: Record<string, RunResult>) =>
    Math.round((rss(rs.large) - rss(rs.small)) / (files.large.ids - files.small.ids));
  const v = (name: FileName) => summary(validate[name] as RunResult);
  const m = (name: FileName) => summary(merge[name] as RunResult);
  const base = summary(runs.baseline);
  return {
    unit: 'records/s',
    records: n,
    fileMb: Object.fromEntries(Object.entries(bytes).map(([k, b]) => [k, round(b / 2 ** 20, 1)])),
    recordsPerSec: v('large').recordsPerSec,
    validate: { small: v('small'), large: v('large'), repeat: v('repeat') },
    merge: { small: m('small'), large: m('large'), repeat: m('repeat') },
    memory: {
      // Same distinct ids, 10x the file: ~1.0 means memory does not grow with the file.
      // Uncapped, V8 lets garbage accumulate longer on a longer run (heap slack, not
      // live data); capped, only live data counts.
      validateRepeatOverSmallRss: round(rss(validate.repeat) / rss(validate.small), 2),
      mergeRepeatOverSmallRss: round(rss(merge.repeat) / rss(merge.small), 2),
      capped: cappedMemory(runs.capped),
      // What the id set costs (large vs small: 10x the distinct ids).
      validateBytesPerDistinctId: perId(validate),
      mergeBytesPerDistinctId: perId(merge),
    },
    baseline: { what: 'node:readline + JSON.parse per line, large file', ...base },
    // CPU time, not wall time: on a shared machine the wall clock mostly measures the
    // other work (loadavg1m says how much); the wall-clock rates are reported too.
    ratio: round(v('large').recordsPerCpuSec / base.recordsPerCpuSec, 2),
    ratioOf:
      'validate records per CPU second on the large file / readline+JSON.parse records per CPU second',
  };
}

function cappedMemory(capped: Runs['capped']): Record<string, unknown> {
  return {
    oldSpaceMb: CAPPED_OLD_SPACE_MB,
    validatePeakRssMb: {
      small: round(rss(capped.small?.validate) / 2 ** 20, 1),
      repeat: round(rss(capped.repeat?.validate) / 2 ** 20, 1),
    },
    mergePeakRssMb: {
      small: round(rss(capped.small?.merge) / 2 ** 20, 1),
      repeat: round(rss(capped.repeat?.merge) / 2 ** 20, 1),
    },
    validateRepeatOverSmallRss: round(
      rss(capped.repeat?.validate) / rss(capped.small?.validate),
      2,
    ),
    mergeRepeatOverSmallRss: round(rss(capped.repeat?.merge) / rss(capped.small?.merge), 2),
  };
}

export const fireData: Benchmark = {
  name: 'fire-data',
  run: (ctx) => measure(ctx),
};
