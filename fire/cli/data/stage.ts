/**
 * `stoker data stage SOURCE --to DIR [--json]`: the command; what it does and its output
 * are in fire/data/stage.ts, loaded when the command runs (zod stays out of `--help`).
 */
import type { Command } from 'commander';

export function registerStage(data: Command): void {
  data
    .command('stage')
    .description(
      'copy a model or data set (a file or a folder) into DIR (a models or datasets volume); files already staged with the same SHA-256 are skipped',
    )
    .argument('<source>', 'a file or folder (a local path: in a pod, a mounted volume)')
    .requiredOption('--to <dir>', 'where to put it (created if missing)')
    .option('--json', 'print one JSON object')
    .action(async (source: string, o: { to: string; json?: boolean }) => {
      const { stage } = await import('../../data/stage.js');
      const r = await stage(source, o.to);
      if (o.json) {
        process.stdout.write(`${JSON.stringify(r)}\n`);
        return;
      }
      for (const rel of r.copied) process.stdout.write(`copied ${rel}\n`);
      process.stdout.write(
        `staged ${r.files} files from ${r.source} into ${r.to}: ${r.copied.length} copied (${r.bytesCopied} bytes), ${r.skipped} already there\n`,
      );
    });
}
