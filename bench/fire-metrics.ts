/**
 * fire-metrics: `stoker metrics dialogues` over a large file of raw FIRE records:
 * dialogues per second through the CLI's streaming path, and peak memory, which must
 * not grow with the file.
 *
 * Input      synthetic raw FIRE records (about 0.8 KB each: question, ground truth, the
 *            student and teacher turns, `score` matching the teacher turns; 1 to 7 rounds,
 *            so some exceed Tmax = 5), written by a generator here. Two files:
 *              small  N/10 dialogues
 *              large  N dialogues
 *            N = 1,000,000 (quick: 50,000).
 * Measured   the compiled CLI in a fresh process, as a user runs it:
 *              node dist/orchestrator/cli/main.js metrics dialogues FILE --json
 *            wall time from spawn to exit; `startupMs` is the same command on a one-line
 *            file (node, then all of stoker's modules); dialogues/s = N / wall, and
 *            after startup N / (wall - startup); peak RSS (process.resourceUsage().maxRSS,
 *            reported by an --import hook at exit).
 *            The CLI's JSON must equal the metrics the generator accumulated itself
 *            (`resultMatches`). Memory claim: large vs small peak RSS about equal.
 * Baseline   the floor of any JSONL tool in Node: node:readline over the same large file
 *            plus JSON.parse of every line, nothing else, in the same kind of process.
 * Ratio      stoker dialogues/s / baseline lines/s on the large file, both after their
 *            process start (1.0 = the metrics, the record checks and the teacher-turn
 *            cross-check cost nothing beyond reading and parsing).
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { DialogueMetricsAccumulator, type DialogueMetrics } from '../fire/metrics/dialogue.js';
import { formatStudent, formatTeacher } from '../fire/parsing.js';
import { type Benchmark, type BenchContext, type Cleanup, nowMs, round } from './lib/harness.js';

const SOURCES = ['gqa', 'docvqa', 'chartqa', 'textvqa', 'mathverse', 'coco'];

/** A small deterministic PRNG (mulberry32): the same file for the same N. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Scores of one dialogue: mostly improving, some satisfied at once, some never. */
function dialogueScores(rand: () => number): number[] {
  const rounds = rand() < 0.05 ? 6 + Math.floor(rand() * 2) : 1 + Math.floor(rand() * 4);
  const scores: number[] = [];
  let s = Math.floor(rand() * 9);
  for (let t = 0; t < rounds; t++) {
    scores.push(s);
    s = Math.min(10, s + Math.floor(rand() * 4));
  }
  return scores;
}

function record(i: number, scores: number[]): string {
  const conversations = scores.flatMap((s, t) => [
    {
      role: 'student',
      type: 'response',
      value: formatStudent(
        `The object near the window in round ${t} looks like a chair with a red seat.`,
        `It is a chair (${i}).`,
      ),
    },
    {
      role: 'teacher',
      type: 'feedback',
      value: formatTeacher(
        s,
        'Your observation of the location is right; look again at the material of the seat.',
      ),
    },
  ]);
  return JSON.stringify({
    image: `bench_${i % 1000}.jpg`,
    question: { role: 'user', value: 'What is the object near the window made of?' },
    conversations,
    groundtruth: { role: 'user', value: 'A wooden chair with a red cushion.' },
    source: SOURCES[i % SOURCES.length],
    round: scores.length,
    score: scores,
    split: 'fire_test',
  });
}

/** Write `count` records; return the file size and the metrics accumulated on the way. */
async function generate(
  file: string,
  count: number,
  seed: number,
): Promise<{ bytes: number; expected: DialogueMetrics }> {
  const rand = prng(seed);
  const acc = new DialogueMetricsAccumulator();
  const out = createWriteStream(file);
  let batch: string[] = [];
  for (let i = 0; i < count; i++) {
    const scores = dialogueScores(rand);
    acc.add(scores);
    batch.push(record(i, scores));
    if (batch.length === 5000 || i === count - 1) {
      if (!out.write(`${batch.join('\n')}\n`)) await once(out, 'drain');
      batch = [];
    }
  }
  out.end();
  await once(out, 'finish');
  return { bytes: statSync(file).size, expected: acc.result() };
}

interface ProcessRun {
  wallMs: number;
  peakRssMiB: number;
  stdout: string;
}

const PEAK_MARK = 'STOKER_BENCH_PEAK ';

/** Run `node --import peakHook ...args`; its peak RSS comes back on stderr at exit. */
async function runNode(peakHook: string, args: string[]): Promise<ProcessRun> {
  const t0 = nowMs();
  const child = spawn(process.execPath, ['--import', pathToFileURL(peakHook).href, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const [code] = (await once(child, 'close')) as [number | null];
  const wallMs = nowMs() - t0;
  if (code !== 0) throw new Error(`node ${args.join(' ')} exited ${code}: ${stderr.slice(-2000)}`);
  const mark = stderr.lastIndexOf(PEAK_MARK);
  if (mark === -1) throw new Error(`no peak RSS report from node ${args.join(' ')}`);
  const maxRssKiB = Number.parseInt(stderr.slice(mark + PEAK_MARK.length), 10);
  return { wallMs, peakRssMiB: round(maxRssKiB / 1024, 1), stdout };
}

const PEAK_HOOK = `process.on('exit', () => {
  process.stderr.write('\\n${PEAK_MARK}' + process.resourceUsage().maxRSS + '\\n');
});
`;

/** The baseline: readline + JSON.parse of every line, nothing else. */
const BASELINE = `import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
let lines = 0;
const rl = createInterface({ input: createReadStream(process.argv[2]), crlfDelay: Infinity });
for await (const line of rl) {
  if (line.trim() === '') continue;
  JSON.parse(line);
  lines++;
}
process.stdout.write(JSON.stringify({ lines }) + '\\n');
`;

function sameMetrics(a: DialogueMetrics, b: Record<string, unknown>): boolean {
  const close = (x: unknown, y: unknown) =>
    x === y || (typeof x === 'number' && typeof y === 'number' && Math.abs(x - y) < 1e-9);
  return (
    ['dialogues', 'startingWrong', 'refined', 'multiTurn', 'truncated', 'rr', 'at', 'adr', 'atr']
      .map((k) => close(a[k as keyof DialogueMetrics], b[k]))
      .every(Boolean) &&
    Array.isArray(b.accAt) &&
    a.accAt.every((v, i) => close(v, (b.accAt as unknown[])[i]))
  );
}

export const fireMetrics: Benchmark = {
  name: 'fire-metrics',
  async run(ctx: BenchContext, cleanup: Cleanup) {
    const n = ctx.quick ? 50_000 : 1_000_000;
    const cli = join(ctx.root, 'dist', 'orchestrator', 'cli', 'main.js');
    const peakHook = join(ctx.tmpRoot, 'fire-metrics-peak.mjs');
    const baselineScript = join(ctx.tmpRoot, 'fire-metrics-baseline.mjs');
    writeFileSync(peakHook, PEAK_HOOK);
    writeFileSync(baselineScript, BASELINE);
    const oneLine = join(ctx.tmpRoot, 'fire-metrics-1.jsonl');
    const small = join(ctx.tmpRoot, 'fire-metrics-small.jsonl');
    const large = join(ctx.tmpRoot, 'fire-metrics-large.jsonl');
    // The large file is about 0.8 GB: removed as soon as this benchmark ends.
    for (const f of [peakHook, baselineScript, oneLine, small, large])
      cleanup.defer(`remove ${f}`, () => rmSync(f, { force: true }));

    ctx.note(`fire-metrics: writing ${n} and ${n / 10} synthetic FIRE records`);
    const t0 = nowMs();
    await generate(oneLine, 1, 7);
    const smallGen = await generate(small, n / 10, 2);
    const largeGen = await generate(large, n, 1);
    const generateSeconds = round((nowMs() - t0) / 1000, 1);

    const metricsOf = (file: string) =>
      runNode(peakHook, [cli, 'metrics', 'dialogues', file, '--json']);
    ctx.note('fire-metrics: stoker metrics dialogues (one-line, small, large)');
    const startup = await metricsOf(oneLine);
    const smallRun = await metricsOf(small);
    const largeRun = await metricsOf(large);
    ctx.note('fire-metrics: baseline (readline + JSON.parse) on the one-line and large files');
    const baseStartup = await runNode(peakHook, [baselineScript, oneLine]);
    const base = await runNode(peakHook, [baselineScript, large]);
    const baseLines = (JSON.parse(base.stdout) as { lines: number }).lines;
    if (baseLines !== n) throw new Error(`the baseline read ${baseLines} lines, expected ${n}`);

    const largeOut = JSON.parse(largeRun.stdout) as Record<string, unknown>;
    const smallOut = JSON.parse(smallRun.stdout) as Record<string, unknown>;
    const resultMatches =
      sameMetrics(largeGen.expected, largeOut) && sameMetrics(smallGen.expected, smallOut);
    if (!resultMatches) throw new Error("the CLI metrics differ from the generator's own");

    // Rates after the process start: the CLI loads all of stoker (BullMQ, the Kubernetes
    // client) before it reads a byte, which a bigger file amortises.
    const perSec = (ms: number) => round(n / (Math.max(ms, 1) / 1000), 0);
    const dialoguesPerSecAfterStartup = perSec(largeRun.wallMs - startup.wallMs);
    const baselinePerSecAfterStartup = perSec(base.wallMs - baseStartup.wallMs);
    return {
      unit: 'dialogues/s',
      dialogues: n,
      fileMiB: round(largeGen.bytes / 2 ** 20, 1),
      dialoguesPerSec: perSec(largeRun.wallMs),
      dialoguesPerSecAfterStartup,
      mibPerSecAfterStartup: round(
        largeGen.bytes / 2 ** 20 / (Math.max(largeRun.wallMs - startup.wallMs, 1) / 1000),
        1,
      ),
      wallSeconds: round(largeRun.wallMs / 1000, 2),
      startupMs: round(startup.wallMs, 0),
      peakRssMiB: {
        oneLine: startup.peakRssMiB,
        small: smallRun.peakRssMiB,
        large: largeRun.peakRssMiB,
      },
      smallDialogues: n / 10,
      smallWallSeconds: round(smallRun.wallMs / 1000, 2),
      truncatedDialogues: largeOut.truncated,
      resultMatches,
      generateSeconds,
      baseline: {
        what: 'node:readline + JSON.parse per line, same file, fresh node process',
        linesPerSec: perSec(base.wallMs),
        linesPerSecAfterStartup: baselinePerSecAfterStartup,
        wallSeconds: round(base.wallMs / 1000, 2),
        startupMs: round(baseStartup.wallMs, 0),
        peakRssMiB: base.peakRssMiB,
      },
      ratio: round(dialoguesPerSecAfterStartup / baselinePerSecAfterStartup, 2),
      ratioOf: 'stoker dialogues/s / baseline lines/s, both after process start (large file)',
    };
  },
};
