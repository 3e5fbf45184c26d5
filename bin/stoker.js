#!/usr/bin/env node
// Entry point of the `stoker` command. Runs the compiled code from dist/ when it is up to
// date with the sources, and the TypeScript sources through tsx otherwise (a developer
// who edited a file), so `stoker` never runs stale code.
//
// Three entry points, so that a command loads only what it uses:
//   stoker worker ...                   worker/entry:
//                                       once per task attempt, in every worker pod
//   stoker data|metrics|report ...      fire/cli/main: the FIRE file tools, run by
//                                       pipeline stages; no Redis, BullMQ or Kubernetes
//   anything else                       orchestrator/cli/main (the commands load their
//                                       heavy modules themselves: orchestrator/cli/program.ts)
// The worker image carries worker/, fire/ and common/ only: there, any other command
// gets the FIRE tools' help, which says so.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const stamp = join(root, 'dist', '.tsbuildinfo');
const SOURCE_DIRS = ['common', 'fire', 'orchestrator', 'worker', 'testing'];

function newestSource(dir, newest = 0) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name === 'python' || entry.name === 'node_modules') continue;
    const p = join(dir, entry.name);
    if (entry.isDirectory()) newest = newestSource(p, newest);
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

function distIsFresh() {
  if (process.env.STOKER_FROM_SOURCE === '1' || !existsSync(stamp)) return false;
  const builtAt = statSync(stamp).mtimeMs;
  return SOURCE_DIRS.map((d) => join(root, d)).every(
    (d) => !existsSync(d) || newestSource(d) <= builtAt,
  );
}

const TOOLS = new Set(['data', 'metrics', 'report']);
const command = process.argv[2];
const help = process.argv.includes('--help') || process.argv.includes('-h');
const hasCli =
  existsSync(join(root, 'orchestrator')) || existsSync(join(root, 'dist', 'orchestrator'));
const entry =
  command === 'worker'
    ? 'worker/entry'
    : (TOOLS.has(command) && !help) || !hasCli
      ? 'fire/cli/main'
      : 'orchestrator/cli/main';

// Each entry point runs from its bundle (scripts/bundle.mjs: one file and shared chunks,
// about half the start-up) when the bundle was made from this build; after a bare `tsc`
// it is older and is not used.
const BUNDLES = {
  'worker/entry': 'worker',
  'fire/cli/main': 'tools',
  'orchestrator/cli/main': 'cli',
};
const bundle = join(root, 'dist', 'bundle', `${BUNDLES[entry]}.js`);
const bundleIsFresh = () =>
  existsSync(bundle) && statSync(bundle).mtimeMs >= statSync(stamp).mtimeMs;

if (distIsFresh() && existsSync(join(root, 'dist', `${entry}.js`))) {
  await import(pathToFileURL(bundleIsFresh() ? bundle : join(root, 'dist', `${entry}.js`)).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import(pathToFileURL(join(root, `${entry}.ts`)).href);
}
