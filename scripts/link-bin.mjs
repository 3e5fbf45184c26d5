#!/usr/bin/env node
// `npm run prepare` (so `npm ci` and `npm install`): link node_modules/.bin/stoker to this
// checkout's bin/stoker.js, so that `npx stoker ...` runs the checkout directly.
//
// Why not package.json's "bin": npm 11's `npx` sees a local package whose "bin" has the
// command and installs the project into its own npx cache, running `prepare` (a full
// build) there; the first call took 9-60 s. With no "bin", `npx stoker` looks in
// node_modules/.bin first and finds this link: every call, the first included, costs
// npm's start-up plus stoker's. (A global `stoker` command: see the README.)
import { lstatSync, mkdirSync, rmSync, symlinkSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const binDir = join(root, 'node_modules', '.bin');
const link = join(binDir, 'stoker');
const target = relative(binDir, join(root, 'bin', 'stoker.js'));

mkdirSync(binDir, { recursive: true });
try {
  lstatSync(link);
  rmSync(link);
} catch {
  // no link yet
}
symlinkSync(target, link);
