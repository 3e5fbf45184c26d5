/**
 * fire-long-line: `stoker metrics dialogues` on a file with one very long line, against
 * `stoker data validate` on the same file: CPU seconds of each process. Both read with
 * the one line reader (fire/lines.ts), so both are linear in the line's length and cost
 * about the same; before it, metrics searched the line so far again with each 64 KiB
 * chunk (a 32 MB line cost it 20 CPU-s against 0.8 s for validate).
 *
 * Input      three raw FIRE records, the middle one with a `question.value` of 32 MB
 *            (quick: 4 MB); plus the same three records with a short question (the
 *            process start, subtracted).
 * Measured   the compiled CLI in a fresh process each:
 *              node dist/orchestrator/cli/main.js metrics dialogues FILE --json
 *              node dist/orchestrator/cli/main.js data validate FILE --json
 *            CPU seconds (process.resourceUsage() user + system, reported by an --import
 *            hook at exit), the median of 3 runs; `*ExtraCpuSeconds` less the short file's.
 * Baseline   data validate on the same file.
 * Ratio      metrics CPU / validate CPU on the long file (about 1 when both are linear;
 *            25 before the fix).
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type Benchmark, type BenchContext, type Cleanup, median, round } from './lib/harness.js';

const CPU_MARK = 'STOKER_BENCH_CPU ';

const CPU_HOOK = `process.on('exit', () => {
  const u = process.resourceUsage();
  process.stderr.write('\\n${CPU_MARK}' + (u.userCPUTime + u.systemCPUTime) + '\\n');
});
`;

function record(id: string, question: string): string {
  return JSON.stringify({
    id,
    image: `${id}.png`,
    question: { role: 'user', value: question },
    groundtruth: { role: 'user', value: 'Blue.' },
    source: 'gqa',
    split: 'fire_1m',
    conversations: [
      { role: 'student', type: 'response', value: 'Thought: a guess.\nAnswer: red' },
      { role: 'teacher', type: 'feedback', value: 'Score: 3.\nFeedback: look again.' },
      { role: 'student', type: 'response', value: 'Thought: the bus.\nAnswer: blue' },
      { role: 'teacher', type: 'feedback', value: 'Score: 9.\nFeedback: right.' },
    ],
    score: [3, 9],
    round: 2,
  });
}

function writeRecords(file: string, questionBytes: number): void {
  const long = 'What colour is the bus? '
    .repeat(Math.ceil(questionBytes / 24))
    .slice(0, questionBytes);
  writeFileSync(file, `${record('a', 'Q?')}\n${record('b', long)}\n${record('c', 'Q?')}\n`);
}

/** CPU seconds of `node --import hook ...args`, which must exit 0. */
async function cpuSeconds(hook: string, args: string[]): Promise<number> {
  const child = spawn(process.execPath, ['--import', pathToFileURL(hook).href, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const [code] = (await once(child, 'close')) as [number | null];
  if (code !== 0) throw new Error(`node ${args.join(' ')} exited ${code}: ${stderr.slice(-2000)}`);
  const mark = stderr.lastIndexOf(CPU_MARK);
  if (mark === -1) throw new Error(`no CPU report from node ${args.join(' ')}`);
  return Number.parseInt(stderr.slice(mark + CPU_MARK.length), 10) / 1e6;
}

export const fireLongLine: Benchmark = {
  name: 'fire-long-line',
  async run(ctx: BenchContext, cleanup: Cleanup) {
    const lineMiB = ctx.quick ? 4 : 32;
    const cli = join(ctx.root, 'dist', 'orchestrator', 'cli', 'main.js');
    const hook = join(ctx.tmpRoot, 'fire-long-line-cpu.mjs');
    const long = join(ctx.tmpRoot, 'fire-long-line.jsonl');
    const short = join(ctx.tmpRoot, 'fire-long-line-short.jsonl');
    for (const f of [hook, long, short])
      cleanup.defer(`remove ${f}`, () => rmSync(f, { force: true }));
    writeFileSync(hook, CPU_HOOK);
    writeRecords(long, lineMiB << 20);
    writeRecords(short, 2);

    const metrics = (file: string) =>
      cpuSeconds(hook, [cli, 'metrics', 'dialogues', file, '--json']);
    const validate = (file: string) => cpuSeconds(hook, [cli, 'data', 'validate', file, '--json']);
    const runs = { metrics: [] as number[], validate: [] as number[] };
    const starts = { metrics: [] as number[], validate: [] as number[] };
    for (let round_ = 0; round_ < 3; round_++) {
      ctx.note(`fire-long-line: round ${round_ + 1} of 3 (${lineMiB} MiB line)`);
      runs.metrics.push(await metrics(long));
      runs.validate.push(await validate(long));
      starts.metrics.push(await metrics(short));
      starts.validate.push(await validate(short));
    }
    const m = median(runs.metrics);
    const v = median(runs.validate);
    return {
      unit: 'CPU seconds',
      lineMiB,
      metricsCpuSeconds: round(m, 3),
      metricsExtraCpuSeconds: round(m - median(starts.metrics), 3),
      metricsRuns: runs.metrics.map((x) => round(x, 3)),
      baseline: {
        validateCpuSeconds: round(v, 3),
        validateExtraCpuSeconds: round(v - median(starts.validate), 3),
        validateRuns: runs.validate.map((x) => round(x, 3)),
      },
      ratio: round(m / v, 2),
      ratioOf: 'metrics CPU / data validate CPU, same file',
    };
  },
};
