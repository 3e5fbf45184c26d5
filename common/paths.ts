/** Where stoker's own files are, whether running from sources (tsx) or from dist/. */
import { existsSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let cachedRoot: string | undefined;

/** The directory holding stoker's package.json. */
export function packageRoot(): string {
  if (cachedRoot) return cachedRoot;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (
      existsSync(join(dir, 'package.json')) &&
      existsSync(join(dir, 'common', 'exit-codes.json'))
    ) {
      cachedRoot = dir;
      return dir;
    }
    const parent = dirname(dir);
    if (parent === dir)
      throw new Error(`cannot find stoker's package root above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}

/** The `bin/stoker.js` entry point, used to start worker processes. */
export function stokerBin(): string {
  return join(packageRoot(), 'bin', 'stoker.js');
}

/** What a payload's PYTHONPATH starts with: the packages stoker_payload, stoker_fire and
 * stoker_examples (worker/python/pyproject.toml declares them), and nothing else. */
export function pythonPayloadDir(): string {
  return join(packageRoot(), 'worker', 'python', 'src');
}

/** Put first on a payload's PATH: holds `stoker`, so stages can run stoker's own tools. */
export function payloadBinDir(): string {
  return join(packageRoot(), 'worker', 'bin');
}

/** `.stoker` in the working directory: where runs and the embedded Redis live by default. */
export function defaultStokerHome(cwd: string = process.cwd()): string {
  return join(cwd, '.stoker');
}

/**
 * The log file of one task attempt, under the run's directory (worker and CLI agree on
 * it). Characters other than [A-Za-z0-9._-] in the task id become '_'. A gang's node
 * `node` >= 1 writes its own beside it (`.node-N.log`); node 0 (the leader) writes this
 * one.
 */
export function attemptLogFile(runDir: string, taskId: string, attempt: number, node = 0): string {
  const base = attemptBase(taskId, attempt);
  return join(runDir, 'logs', node > 0 ? `${base}.node-${node}.log` : `${base}.log`);
}

/** The metric history of one task attempt (every metric event, JSON lines), beside its log. */
export function attemptMetricsFile(runDir: string, taskId: string, attempt: number): string {
  return join(runDir, 'logs', `${attemptBase(taskId, attempt)}.metrics.jsonl`);
}

const attemptBase = (taskId: string, attempt: number): string =>
  `${taskId.replace(/[^A-Za-z0-9._-]/g, '_')}.attempt-${attempt}`;

/**
 * Where a pool worker writes a shard attempt's output before it is renamed into place:
 * `<stage dir>/.partial/<shard file>.<worker>-a<attempt>`, beside the stage's `shards/`
 * folder, not in it (a consumer of the folder never sees a partial file, even one left
 * by a killed worker; the controller removes `.partial/` when the stage ends).
 */
export function shardPartialFile(output: string, workerId: string, attempt: number): string {
  return join(shardPartialDir(output), `${basename(output)}.${workerId}-a${attempt}`);
}

/** The `.partial/` folder of the stage whose shard output is `output` (shards/NAME). */
export const shardPartialDir = (output: string): string =>
  join(dirname(dirname(output)), '.partial');
