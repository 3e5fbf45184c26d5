/**
 * The slim entry point of stoker's FIRE file tools, `stoker data|metrics|report ...`:
 * bin/stoker.js routes those commands here so that they load only what they use (no
 * Redis, BullMQ or Kubernetes client). Pipelines run them once per stage (command:
 * [stoker, data, views, ...]). The full CLI (orchestrator/cli/program.ts) registers the
 * same commands, so `stoker --help` lists them. In the worker image, which carries no
 * orchestrator/, this is the whole `stoker` apart from `stoker worker`.
 */
import { Command } from 'commander';
import { exitOnError } from '../../common/cli-exit.js';
import { registerDataCommands } from './data.js';
import { registerMetricsCommands } from './metrics.js';
import { registerReportCommands } from './report.js';

const program = new Command('stoker').description(
  "stoker's FIRE file tools: data, metrics and reports (with `stoker worker`, all a worker image has; the other commands are in the controller image and a checkout)",
);
registerDataCommands(program);
registerMetricsCommands(program);
registerReportCommands(program);
try {
  await program.parseAsync(process.argv);
} catch (err) {
  exitOnError(err);
}
