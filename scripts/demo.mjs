#!/usr/bin/env node
/**
 * `npm run demo`: the first command in the README, run on a fresh clone. Plain Node,
 * no dependencies (node_modules may not exist yet).
 *
 *   1. npm ci, when node_modules is missing or older than package-lock.json
 *   2. system packages: redis-server on PATH, /usr/bin/python3 with torch, PIL, yaml, jinja2, and
 *      OpenBLAS where Debian's reference BLAS is installed.
 *      Missing ones are installed with apt-get when running as root on Debian/Ubuntu;
 *      otherwise the exact command is printed and the script exits 1
 *   3. node bin/stoker.js demo [extra args], exiting with its code
 *
 * Usage: npm run demo [-- <args for stoker demo>]
 */
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const APT_PACKAGES = [
  'redis-server',
  'python3-torch',
  'python3-pil',
  'python3-yaml',
  'python3-pytest',
  // Chat templates (stoker_fire.chat_template): the hf backend's prompts and their tests.
  'python3-jinja2',
  // Debian's torch links the reference BLAS, 3-5x slower for the demo's tiny models;
  // installing OpenBLAS switches libblas.so.3 to it (update-alternatives, automatic).
  'libopenblas0-pthread',
];
const OPENBLAS = '/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3';
const PYTHON = '/usr/bin/python3';

function step(message) {
  console.log(`stoker demo: ${message}`);
}

function fail(message) {
  console.error(`stoker demo: ${message}`);
  process.exit(1);
}

function onPath(name) {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    try {
      accessSync(join(dir, name), constants.X_OK);
      return true;
    } catch {
      // not in this directory
    }
  }
  return false;
}

/** Run a command with inherited stdio; exit with its status when it fails. */
function run(cmd, args, env = process.env) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env });
  if (r.error) fail(`cannot run ${cmd}: ${r.error.message}`);
  if (r.status !== 0)
    fail(`${[cmd, ...args].join(' ')} failed (${r.signal ?? `exit code ${r.status}`})`);
}

// 1. npm dependencies
function needsNpmCi() {
  const marker = join(root, 'node_modules', '.package-lock.json');
  if (!existsSync(marker)) return true;
  return statSync(join(root, 'package-lock.json')).mtimeMs > statSync(marker).mtimeMs;
}

if (needsNpmCi()) {
  step('installing npm dependencies (npm ci)...');
  run(process.platform === 'win32' ? 'npm.cmd' : 'npm', ['ci']);
}

// 2. system packages
function missingSystemPackages() {
  const missing = [];
  if (!onPath('redis-server')) missing.push('redis-server');
  const py = spawnSync(PYTHON, ['-c', 'import torch, PIL, yaml, jinja2'], { stdio: 'ignore' });
  if (py.status !== 0) missing.push(`${PYTHON} with torch, PIL, yaml and jinja2`);
  // Only where the reference BLAS is what Debian's torch would use (x86-64 Debian/Ubuntu).
  if (existsSync('/usr/lib/x86_64-linux-gnu/blas/libblas.so.3') && !existsSync(OPENBLAS))
    missing.push('OpenBLAS (libopenblas0-pthread: the reference BLAS makes the demo 3-5x slower)');
  return missing;
}

step('checking system packages (redis-server, python3 with torch, PIL, yaml, jinja2)...');
let missing = missingSystemPackages();
if (missing.length > 0) {
  const install = `apt-get install -y ${APT_PACKAGES.join(' ')}`;
  const isRoot = process.getuid?.() === 0;
  if (isRoot && onPath('apt-get')) {
    step(`missing: ${missing.join('; ')}. Installing with apt-get...`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    run('apt-get', ['update'], env);
    run('apt-get', ['install', '-y', ...APT_PACKAGES], env);
    missing = missingSystemPackages();
    if (missing.length > 0) fail(`still missing after apt-get: ${missing.join('; ')}`);
  } else if (onPath('apt-get')) {
    fail(
      `missing: ${missing.join('; ')}. Install them with:\n\n` +
        `  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive ${install}\n\n` +
        'then run `npm run demo` again.',
    );
  } else {
    fail(
      `missing: ${missing.join('; ')}. On Debian/Ubuntu run:\n\n` +
        `  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive ${install}\n\n` +
        `On macOS: brew install redis, and make ${PYTHON} able to import torch, PIL, yaml and jinja2\n` +
        `(${PYTHON} -m pip install --user torch pillow pyyaml jinja2). Then run \`npm run demo\` again.`,
    );
  }
}

// 3. the demo itself. Ctrl-C reaches the child directly (same process group); we wait
// for it to drain rather than dying first, and pass a SIGTERM on.
step('starting: node bin/stoker.js demo');
const child = spawn(
  process.execPath,
  [join(root, 'bin', 'stoker.js'), 'demo', ...process.argv.slice(2)],
  {
    cwd: root,
    stdio: 'inherit',
  },
);
process.on('SIGINT', () => {});
process.on('SIGTERM', () => child.kill('SIGTERM'));
child.on('error', (err) => fail(`cannot start bin/stoker.js: ${err.message}`));
child.on('exit', (code, signal) => {
  if (signal) {
    process.removeAllListeners(signal);
    process.kill(process.pid, signal);
  }
  process.exit(code ?? 1);
});
