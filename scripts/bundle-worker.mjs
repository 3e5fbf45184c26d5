#!/usr/bin/env node
// Bundles the compiled worker (dist/worker/entry.js and what it imports) into
// dist/worker/bundle/, which bin/stoker.js runs for `stoker worker` when dist/ is fresh.
//
// Why: a worker process starts for every task attempt, and its start-up is time added to
// every one (bench: wrapper-overhead, target <= 1.03 of the payload run directly). Node
// spends most of a worker's start resolving and compiling a few hundred small modules
// (zod alone is about 40 ms of them, ioredis about 45 ms); one file per entry point
// halves the import time. Dynamic imports stay separate chunks (--splitting), so a
// dispatched-task worker never loads what only pool workers use.
//
// Kept external, as node_modules imports: bullmq (it reads its Lua scripts from files
// next to its own modules at run time) and pino (its transports load files by path).
// Run after `tsc -p tsconfig.build.json`; `npm run build` does both.
import { build } from 'esbuild';
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outdir = join(root, 'dist', 'worker', 'bundle');
rmSync(outdir, { recursive: true, force: true });
await build({
  entryPoints: [join(root, 'dist', 'worker', 'entry.js')],
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: ['bullmq', 'pino'],
  // CommonJS dependencies (ioredis) call require() for Node's own modules.
  banner: {
    js: "import { createRequire as __stokerRequire } from 'node:module'; const require = __stokerRequire(import.meta.url);",
  },
  logLevel: 'warning',
});
