/**
 * The slim entry point of stoker's file tools, `stoker data|metrics|report ...`:
 * bin/stoker.js routes those commands here so that they load only what they use (no
 * BullMQ, no Kubernetes client), which halves their start-up. Pipelines run them once
 * per stage (command: [stoker, data, views, ...]). The full CLI (main.ts) registers
 * the same commands, so `stoker --help` lists them.
 */
import { Command } from 'commander';
import { registerDataCommands } from './data.js';
import { exitOnError } from '../../common/cli-exit.js';
import { registerMetricsCommands } from './metrics.js';
import { registerReportCommands } from './report.js';

export const TOOL_COMMANDS: ReadonlySet<string> = new Set(['data', 'metrics', 'report']);

export async function toolsMain(argv: string[] = process.argv): Promise<void> {
  const program = new Command('stoker').description('stoker: FIRE data, metrics and reports');
  registerDataCommands(program);
  registerMetricsCommands(program);
  registerReportCommands(program);
  try {
    await program.parseAsync(argv);
  } catch (err) {
    exitOnError(err);
  }
}

await toolsMain();
