/**
 * `stoker report`: the FIRE report of a finished pipeline's evaluations (the last stage
 * of training-configs/fire/pipeline.yaml and fire-mini; fire/report/report.ts).
 *
 *   stoker report --model NAME=DIR [--model NAME=DIR ...] [--baseline NAME]
 *                 [--lineage FILE] --out DIR [--title TEXT] [--tau 8] [--tmax 5]
 *                 [--penalty N] [--json]
 *
 * Prints the headline table (or, with --json, the whole report as JSON) and writes
 * report.md, acc-curve.svg and report.json into --out.
 * Exit codes: 0 written; 2 bad input (a missing evaluation file, a bad flag); 1 otherwise.
 */
import type { Command } from 'commander';
import { dialogueOptions } from './metrics.js';

const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

export function registerReportCommands(program: Command): void {
  program
    .command('report')
    .description(
      'write the FIRE report (report.md, acc-curve.svg, report.json) of stoker_fire.evaluate outputs, models side by side',
    )
    .requiredOption('--model <name=dir>', 'a model and its evaluation directory (repeat)', collect)
    .requiredOption('--out <dir>', 'where report.md, acc-curve.svg and report.json go')
    .option('--baseline <name>', 'the model AT is normalised to (default: the first --model)')
    .option(
      '--lineage <file>',
      "the run's lineage.json (the controller writes it in the run directory)",
    )
    .option('--title <text>', 'the report title', 'FIRE evaluation')
    .option('--tau <n>', 'a turn is correct when its score is >= tau', undefined)
    .option('--tmax <n>', 'turns counted per dialogue')
    .option('--penalty <n>', 'the turn AT counts for a dialogue never satisfied (default tmax + 1)')
    .option('--json', 'print the whole report as JSON')
    .action(
      async (o: {
        model: string[];
        out: string;
        baseline?: string;
        lineage?: string;
        title: string;
        tau?: string;
        tmax?: string;
        penalty?: string;
        json?: boolean;
      }) => {
        // Loaded here: the report's readers (zod) stay out of `stoker --help`.
        const { buildFireReport, headlineTable, parseModelArg } =
          await import('../report/report.js');
        const options = dialogueOptions(o);
        const report = await buildFireReport({
          models: o.model.map(parseModelArg),
          baseline: o.baseline,
          lineageFile: o.lineage,
          out: o.out,
          title: o.title,
          options,
        });
        if (o.json) {
          process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
          return;
        }
        process.stdout.write(`${headlineTable(report)}\n\nreport: ${report.files.markdown}\n`);
      },
    );
}
