/** `stoker worker ...`: the slim entry point bin/stoker.js starts (see worker/main.ts). */
import { StokerError } from '../common/errors.js';
import { workerMain } from './main.js';

try {
  process.exitCode = await workerMain(process.argv.slice(3));
} catch (err) {
  // A known failure (Redis out of reach...) is one line for the worker's log, exit 1: the
  // backend sees a worker that ended without a result and retries the attempt. Anything
  // else is a bug: its stack goes to the log.
  if (!(err instanceof StokerError)) throw err;
  process.stderr.write(`stoker worker: ${err.message}\n`);
  process.exitCode = 1;
}
