/**
 * `stoker data synth --n N --out DIR [--seed S] [--kind dialogues|seeds] [--split NAME]
 * [--start-id K] [--image-size PX] [--prefix P]`: run the Python generator of synthetic
 * FIRE data (fire/data/synth.ts); its JSON summary and its exit status pass through.
 * A bad flag exits 2.
 */
import { Option, type Command } from 'commander';
import { runSynth, SYNTH_KINDS, type SynthOptions } from '../../data/synth.js';
import { nonNegative, positive } from './flags.js';

export function registerSynth(data: Command): void {
  data
    .command('synth')
    .description(
      'generate synthetic FIRE data with `python3 -m stoker_fire.synth` (PYTHONPATH worker/python/src; interpreter $STOKER_PYTHON, /usr/bin/python3 or python3); its JSON summary and exit status pass through',
    )
    .requiredOption('--n <n>', 'records to generate', positive)
    .requiredOption('--out <dir>', 'output directory')
    .option('--seed <s>', 'random seed', nonNegative)
    .addOption(new Option('--kind <kind>', 'what to generate').choices([...SYNTH_KINDS]))
    .option('--split <name>', 'the split field of generated dialogues')
    .option('--start-id <k>', 'first numeric id', nonNegative)
    .option('--image-size <px>', 'side of the generated images in pixels', positive)
    .option('--prefix <p>', 'id prefix (ids are PREFIX-NNNNNN)')
    .action(async (o: SynthOptions) => {
      process.exitCode = await runSynth(o);
    });
}
