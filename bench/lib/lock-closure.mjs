#!/usr/bin/env node
// The node_modules paths that the named packages need at run time (themselves, their
// dependencies, optional dependencies and the peer dependencies installed here, transitively), resolved as Node resolves them,
// from package-lock.json; one path a line, only those installed here. Used by
// bench/gpu-pack.sh to carry just what the bundles keep external (scripts/bundle.mjs).
// Hand-written because npm has no command that lists or copies the dependency closure of a
// few packages (`npm ls` shows who needs a package, not what it needs); this is the
// lockfile's own nesting rule and nothing more.
import { existsSync, readFileSync } from 'node:fs';

const names = process.argv.slice(2);
if (names.length === 0) {
  console.error('usage: node bench/lib/lock-closure.mjs PACKAGE...');
  process.exit(2);
}
const packages = JSON.parse(readFileSync('package-lock.json', 'utf8')).packages ?? {};

/** The lock path `name` resolves to from the package at lock path `from`. */
function resolve(from, name) {
  for (let base = from; ;) {
    const path = `${base ? `${base}/` : ''}node_modules/${name}`;
    if (packages[path]) return path;
    if (!base) return null;
    const at = base.lastIndexOf('/node_modules/');
    base = at < 0 ? '' : base.slice(0, at);
  }
}

const seen = new Set();
function walk(path) {
  if (seen.has(path)) return;
  seen.add(path);
  const entry = packages[path];
  for (const dep of Object.keys({
    ...entry.dependencies,
    ...entry.optionalDependencies,
    ...entry.peerDependencies,
  })) {
    const found = resolve(path, dep);
    if (found) walk(found);
  }
}
for (const name of names) {
  const path = resolve('', name);
  if (!path) {
    console.error(`lock-closure: ${name} is not in package-lock.json`);
    process.exit(1);
  }
  walk(path);
}
for (const path of [...seen].sort()) if (existsSync(path)) console.log(path);
