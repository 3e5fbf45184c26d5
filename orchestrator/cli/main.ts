/**
 * The entry point of the `stoker` command (bin/stoker.js runs it, except for `stoker
 * worker` and the FIRE file tools, which have slim entry points of their own). The
 * commands are in program.ts; errors end here with the CLI's exit codes
 * (common/cli-exit.ts).
 */
import { exitOnError } from '../../common/cli-exit.js';
import { buildProgram } from './program.js';

try {
  await buildProgram().parseAsync(process.argv);
} catch (err) {
  exitOnError(err);
}
