/**
 * `stoker demo [--json] [--set k=v]...`: the miniature FIRE pipeline
 * (training-configs/fire-mini/pipeline.yaml) run end to end here, then its report's
 * headline: the table of refinement metrics and where the report is.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { packageRoot } from '../../../common/paths.js';
import type { RunView } from '../../views.js';
import { makeContext } from '../context.js';
import { globals, print } from '../options.js';
import { runSpecFile } from './run.js';

export interface DemoOptions {
  json?: boolean;
  set?: string[];
}

export async function action(o: DemoOptions, cmd: Command): Promise<void> {
  const file = join(packageRoot(), 'training-configs', 'fire-mini', 'pipeline.yaml');
  process.exitCode = await runSpecFile(makeContext(globals(cmd)), file, {
    json: o.json ?? false,
    set: o.set,
    onFinished: (view) => {
      if (!o.json) printReportHeadline(view);
    },
  });
}

/** The report's headline (the table and the comparison, up to its first chart), and where it is. */
function printReportHeadline(view: RunView): void {
  const report = view.stages.find((s) => s.name === 'report')?.outputs['report'];
  if (view.phase !== 'Succeeded' || !report || !existsSync(report)) return;
  const lines = readFileSync(report, 'utf8').split('\n');
  const end = lines.findIndex((l) => l.startsWith('!['));
  print(['', ...lines.slice(0, end === -1 ? lines.length : end), `report: ${report}`].join('\n'));
}
