#!/usr/bin/env node
// `npm run test:python`: the Python payload tests (worker/python/tests, stdlib unittest).
//
// Layout (worker/python/pyproject.toml declares it): the packages under worker/python/src
// (put on PYTHONPATH, as the worker does for a payload), the tests in the package `tests`
// under worker/python (the top-level directory of discovery).
//
// Interpreter: $STOKER_PYTHON, else /usr/bin/python3 when it exists (Debian's, which has
// python3-torch; a `python3` earlier on PATH may be another one without torch), else
// python3. Without torch it prints how to install it and exits 1.
// Output streams through as unittest writes it; the last line is the summary CI reads:
//
//     python: N passed, M failed
//
// Exit code: unittest's (0 only when every test passed).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const INSTALL_HINT =
  'apt-get install -y python3-torch python3-pil python3-pytest python3-yaml python3-jinja2';

function pickPython() {
  if (process.env.STOKER_PYTHON) return process.env.STOKER_PYTHON;
  if (existsSync('/usr/bin/python3')) return '/usr/bin/python3';
  return 'python3';
}

function checkTorch(python) {
  const probe = spawnSync(python, ['-c', 'import torch, yaml, jinja2; print(torch.__version__)'], {
    encoding: 'utf8',
  });
  if (probe.error || probe.status !== 0) {
    const why = probe.error ? probe.error.message : (probe.stderr || '').trim().split('\n').pop();
    console.error(`test-python: ${python} cannot import torch, yaml and jinja2 (${why}).`);
    console.error(
      'Install them (Debian/Ubuntu), or point STOKER_PYTHON at a Python that has them:',
    );
    console.error(`    ${INSTALL_HINT}`);
    console.log('python: 0 passed, 1 failed');
    process.exit(1);
  }
  return probe.stdout.trim();
}

/** Counts from unittest's "Ran N tests" and "OK (...)" / "FAILED (...)" lines; null if absent. */
export function summarize(text) {
  const ran = /^Ran (\d+) tests? in /m.exec(text);
  if (!ran) return null;
  const total = Number(ran[1]);
  const verdict = /^(OK|FAILED)(?: \((.*)\))?\s*$/m.exec(text.slice(ran.index));
  const counts = {};
  for (const part of (verdict?.[2] ?? '').split(',')) {
    const m = /^\s*([a-z ]+)=(\d+)\s*$/.exec(part);
    if (m) counts[m[1]] = Number(m[2]);
  }
  const failed =
    (counts.failures ?? 0) + (counts.errors ?? 0) + (counts['unexpected successes'] ?? 0);
  const skipped = (counts.skipped ?? 0) + (counts['expected failures'] ?? 0);
  const passed = Math.max(0, total - failed - skipped);
  return { total, failed, skipped, passed, ok: verdict?.[1] === 'OK' };
}

function main() {
  const python = pickPython();
  const torchVersion = checkTorch(python);
  console.log(`test-python: ${python} (torch ${torchVersion})`);
  const args = [
    '-m',
    'unittest',
    'discover',
    '-s',
    'worker/python/tests',
    '-t',
    'worker/python',
    '-v',
  ];
  const src = join(root, 'worker', 'python', 'src');
  const pythonPath = process.env.PYTHONPATH ? `${src}${delimiter}${process.env.PYTHONPATH}` : src;
  const child = spawn(python, args, {
    cwd: root,
    env: {
      ...process.env,
      PYTHONPATH: pythonPath,
      PYTHONUNBUFFERED: '1',
      PYTHONDONTWRITEBYTECODE: '1',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // unittest writes its report to stderr; keep both streams flowing and remember them.
  let seen = '';
  child.stdout.on('data', (chunk) => {
    process.stdout.write(chunk);
    seen += chunk;
  });
  child.stderr.on('data', (chunk) => {
    process.stderr.write(chunk);
    seen += chunk;
  });
  const forward = (signal) => child.kill(signal);
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  child.on('error', (err) => {
    console.error(`test-python: cannot start ${python}: ${err.message}`);
    console.log('python: 0 passed, 1 failed');
    process.exit(1);
  });
  child.on('close', (code, signal) => {
    const summary = summarize(seen);
    const exitCode = code ?? 1;
    if (summary && summary.skipped > 0) console.log(`python: ${summary.skipped} skipped`);
    if (summary) {
      // A crash after the summary (or a zero exit with failures) still counts as a failure.
      const failed = summary.failed || (exitCode === 0 ? 0 : 1);
      console.log(`python: ${summary.passed} passed, ${failed} failed`);
    } else {
      console.error(`test-python: unittest ended (${signal ?? `exit ${code}`}) without a summary`);
      console.log('python: 0 passed, 1 failed');
    }
    process.exit(exitCode === 0 && summary && summary.failed === 0 ? 0 : exitCode || 1);
  });
}

// Run only as a script, so that summarize() can be imported by a test.
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) main();
