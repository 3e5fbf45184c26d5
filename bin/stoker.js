#!/usr/bin/env node
// Entry point of the `stoker` command. Runs the compiled CLI from dist/ when it is up to
// date with the sources, and the TypeScript sources through tsx otherwise (a fresh
// clone, or a developer who edited a file), so `npx stoker` never runs stale code.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const built = join(root, 'dist', 'orchestrator', 'cli', 'main.js');
const stamp = join(root, 'dist', '.tsbuildinfo');

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
  if (process.env.STOKER_FROM_SOURCE === '1') return false;
  if (!existsSync(built) || !existsSync(stamp)) return false;
  const builtAt = statSync(stamp).mtimeMs;
  // An image carries only some of these folders (the worker image has no orchestrator/).
  return ['common', 'fire', 'orchestrator', 'worker', 'testing']
    .map((d) => join(root, d))
    .every((d) => !existsSync(d) || newestSource(d) <= builtAt);
}

// `stoker worker` starts once per task attempt: it gets a slim entry point that loads
// only the worker's modules (worker/entry.ts), not the whole CLI.
// The file tools (`stoker data|metrics|report`) likewise: no BullMQ, no Kubernetes client.
const TOOLS = new Set(['data', 'metrics', 'report']);
const command = process.argv[2];
const entry =
  command === 'worker'
    ? ['worker', 'entry']
    : TOOLS.has(command) && !process.argv.includes('--help') && !process.argv.includes('-h')
      ? ['fire', 'cli', 'main']
      : ['orchestrator', 'cli', 'main'];

// The worker runs from its bundle (scripts/bundle-worker.mjs, half the start-up time)
// when the bundle was made from this build; after a bare `tsc` it is older: not used.
const workerBundle = join(root, 'dist', 'worker', 'bundle', 'entry.js');
const bundleIsFresh = () =>
  existsSync(workerBundle) && statSync(workerBundle).mtimeMs >= statSync(stamp).mtimeMs;

if (distIsFresh()) {
  const file =
    command === 'worker' && bundleIsFresh()
      ? workerBundle
      : join(root, 'dist', ...entry.slice(0, -1), `${entry.at(-1)}.js`);
  await import(pathToFileURL(file).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import(pathToFileURL(join(root, ...entry.slice(0, -1), `${entry.at(-1)}.ts`)).href);
}
