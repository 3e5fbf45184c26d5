/** `stoker validate FILE [--set k=v]... [--json]`: check a spec; exit 2 with every problem. */
import { SpecError } from '../../../common/errors.js';
import { print, printJson } from '../options.js';
import { describeSpec, loadSpec } from '../spec-input.js';

export interface ValidateOptions {
  set?: string[];
  json?: boolean;
}

export async function action(file: string, o: ValidateOptions): Promise<void> {
  try {
    const spec = await loadSpec(file, o.set);
    if (o.json) printJson({ valid: true, spec });
    else print(describeSpec(spec));
  } catch (err) {
    if (o.json && err instanceof SpecError) {
      printJson({ valid: false, issues: err.issues });
      process.exitCode = 2;
      return;
    }
    throw err;
  }
}
