/** `stoker worker ...`: the slim entry point bin/stoker.js starts (see worker/main.ts). */
import { workerMain } from './main.js';

process.exitCode = await workerMain(process.argv.slice(3));
