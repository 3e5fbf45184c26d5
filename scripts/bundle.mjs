#!/usr/bin/env node
// Bundles the compiled entry points (dist/, from `tsc -p tsconfig.build.json`) into
// dist/bundle/, one file each plus shared chunks, which bin/stoker.js runs when dist/ is
// fresh:
//
//   dist/bundle/worker.js   stoker worker             (worker/entry)
//   dist/bundle/tools.js    stoker data|metrics|report (fire/cli/main)
//   dist/bundle/cli.js      every other command        (orchestrator/cli/main)
//
// Why: Node spends most of a short command's start resolving, reading and compiling a
// few hundred small modules (zod about 40 ms of them, ioredis about 45 ms). A worker
// process starts for every task attempt, so its start-up is added to every one (bench:
// wrapper-overhead); a user waits for every `stoker status` (bench: cli-startup). One
// file per entry point halves the import time. Dynamic imports stay separate chunks
// (--splitting): a dispatched-task worker never loads what only pool workers use, and
// `stoker --help` loads none of the commands' modules (orchestrator/cli/program.ts).
// Each entry point is its own build: chunks shared between entry points would make the
// worker load the parts of zod and of the spec schema that only the CLI uses (about
// 30 ms more per worker start, bench dispatch-latency).
// If the bundles are missing or older than the build, bin/stoker.js runs dist/ as tsc
// wrote it.
//
// Kept external, as node_modules imports: bullmq (it reads its Lua scripts from files
// next to its own modules at run time), pino (its transports load files by path) and
// @kubernetes/client-node (large, loaded only by the commands that talk to a cluster).
// The simulated cluster (testing/kube-sim) is not bundled: `--simulate` loads it from
// dist/testing at run time (orchestrator/backends/kubernetes/simulator.ts).
// The worker image has no orchestrator/: its build bundles the entry points it has.
//
// The dashboard (dashboard/, a browser page) is built here too, from its TypeScript
// sources: dist/dashboard/index.html, app.js (with uPlot) and app.css, which the HTTP
// server serves at / and /assets/ (orchestrator/http/dashboard.ts).
// Run after `tsc -p tsconfig.build.json`; `npm run build` does both.
import { build } from 'esbuild';
import { copyFileSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
const outdir = join(dist, 'bundle');
const ENTRIES = {
  worker: 'worker/entry.js',
  tools: 'fire/cli/main.js',
  cli: 'orchestrator/cli/main.js',
};
rmSync(outdir, { recursive: true, force: true });
rmSync(join(dist, 'worker', 'bundle'), { recursive: true, force: true }); // the old layout
const entryPoints = Object.fromEntries(
  Object.entries(ENTRIES)
    .map(([name, file]) => [name, join(dist, file)])
    .filter(([, file]) => existsSync(file)),
);
for (const [name, file] of Object.entries(entryPoints)) {
  await build({
    entryPoints: { [name]: file },
    outdir,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    external: ['bullmq', 'pino', '@kubernetes/client-node'],
    // CommonJS dependencies (ioredis) call require() for Node's own modules.
    banner: {
      js: "import { createRequire as __stokerRequire } from 'node:module'; const require = __stokerRequire(import.meta.url);",
    },
    logLevel: 'warning',
  });
}

const dashboardSrc = join(root, 'dashboard');
const dashboardOut = join(dist, 'dashboard');
if (existsSync(join(dashboardSrc, 'main.ts'))) {
  rmSync(dashboardOut, { recursive: true, force: true });
  mkdirSync(dashboardOut, { recursive: true });
  await build({
    entryPoints: { app: join(dashboardSrc, 'main.ts') },
    outdir: dashboardOut,
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: ['chrome110', 'firefox115', 'safari16'],
    minify: true,
    sourcemap: true,
    legalComments: 'linked',
    logLevel: 'warning',
  });
  copyFileSync(join(dashboardSrc, 'index.html'), join(dashboardOut, 'index.html'));
}
