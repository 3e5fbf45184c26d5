/**
 * `stoker data ...`: FIRE data tooling (docs/fire.md, sections 1-3), streaming: memory does
 * not grow with a file's size; validate, views and merge keep the set of distinct ids
 * (duplicates), which grows with the number of dialogues (about 100-150 bytes each).
 * Library code lives in fire/data/; each subcommand is a module of fire/cli/data/.
 *
 *   stoker data validate FILE [--images DIR] [--json] [--max-problems N] [--satisfied N] [--strict]
 *   stoker data views FILE --out DIR [--view student|teacher|answers|all] [--images DIR]
 *                    [--skip-bad] [--max-length N] [--satisfied N] [--json]
 *   stoker data render FILE [--template NAME|DIR|FILE] [--line N] [--limit N] [--prompt] [--json]
 *   stoker data shard FILE --out DIR (--shards N | --shard-size N) [--skip-bad] [--json]
 *   stoker data merge [FILE...] [--manifest M]... --out FILE [--keep-rule fire|none] [--satisfied N]
 *                    [--min-rounds N] [--skip-bad] [--json]
 *   stoker data synth --n N --out DIR [--seed S] [--kind dialogues|seeds] [--split NAME]
 *                    [--start-id K] [--image-size PX] [--prefix P]
 *   stoker data stage SOURCE --to DIR [--json]     a model or data set into a volume,
 *                    skipping what is staged already (data/stage.ts)
 *
 * Exit codes: 0 success (validate: once the report is printed, whatever the records hold);
 * 1 problems in the data (validate --strict: some record has an error; views/shard/merge:
 * a bad record without --skip-bad, named as FILE:LINE); 2 usage errors (a missing file, a
 * bad flag: commander's errors too, which the rest of the CLI leaves at 1); synth passes
 * the generator's status through.
 */
import type { Command, CommanderError } from 'commander';
import { registerMerge } from './data/merge.js';
import { registerRender } from './data/render.js';
import { registerShard } from './data/shard.js';
import { registerStage } from './data/stage.js';
import { registerSynth } from './data/synth.js';
import { registerValidate } from './data/validate.js';
import { registerViews } from './data/views.js';

/** Commander's own errors (unknown option, bad value, missing argument) exit 2 here. */
function usageExit(err: CommanderError): never {
  process.exit(err.exitCode === 0 ? 0 : 2);
}

export function registerDataCommands(program: Command): void {
  const data = program
    .command('data')
    .description(
      'FIRE data tools: validate raw dialogues, build training views, render them, shard, merge, synthesize (streaming), stage models and data into volumes',
    )
    .exitOverride(usageExit);
  // In this order in `stoker data --help`.
  registerValidate(data);
  registerViews(data);
  registerRender(data);
  registerShard(data);
  registerMerge(data);
  registerSynth(data);
  registerStage(data);
}
