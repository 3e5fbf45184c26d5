/**
 * stoker's Python packages shadow nothing a payload imports. A user's script is started
 * the way the worker starts a payload (buildPayloadEnv's environment, PYTHONPATH included,
 * run by runPayload) through `python3 -m stoker_fire.external`, and asks Python where
 * `fire` (PyPI's python-fire), `tests` and the old loose script names come from: none may
 * resolve inside stoker's checkout. With python-fire absent, `import fire` is a
 * ModuleNotFoundError. Under the old layout (a package `fire` and the tests beside the
 * payloads on the payload's PYTHONPATH) this test fails.
 *
 * The script also imports stoker_payload, and the wrapper itself is stoker_fire.external,
 * so the same PYTHONPATH demonstrably reaches stoker's own packages.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, sep } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { PayloadEvent } from '../../common/events.js';
import { packageRoot, pythonPayloadDir } from '../../common/paths.js';
import { buildPayloadEnv } from '../../worker/env.js';
import { runPayload, type PayloadSink } from '../../worker/runner.js';

const PYTHON = '/usr/bin/python3';

/** Prints one `where NAME PATH` line per module name: its file, or the import error. */
const USER_SCRIPT = `
import importlib

for name in ("fire", "tests", "smoke_train", "toy_generate", "make_items", "stoker_payload"):
    try:
        module = importlib.import_module(name)
    except ImportError as err:
        print("where", name, type(err).__name__, flush=True)
    else:
        print("where", name, getattr(module, "__file__", None) or list(getattr(module, "__path__", [])), flush=True)
`;

class LineSink implements PayloadSink {
  readonly lines: string[] = [];
  event(_event: PayloadEvent): void {}
  log(line: string): void {
    this.lines.push(line);
  }
  warn(): void {}
}

let dir: string | undefined;
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

describe("the payload's PYTHONPATH", () => {
  it('gives a user script run through stoker_fire.external stoker_payload, and no module of the checkout besides', async () => {
    dir = mkdtempSync(join(tmpdir(), 'stoker-pypath-'));
    const script = join(dir, 'user_script.py');
    writeFileSync(script, USER_SCRIPT);
    const { env } = buildPayloadEnv({
      parentEnv: process.env,
      payload: { env: {}, secretEnv: [], outputDir: join(dir, 'out') },
      identity: { runId: 'pypath', taskId: 'pypath.train', stage: 'train', attempt: 1 },
    });
    expect(env.PYTHONPATH).toBe(pythonPayloadDir());
    const sink = new LineSink();
    const outcome = await runPayload({
      argv: [PYTHON, '-m', 'stoker_fire.external', '--', PYTHON, script],
      cwd: dir,
      env,
      logFile: join(dir, 'logs', 'attempt-1.log'),
      sink,
    });
    expect(outcome.exitCode, outcome.stderrTail.join('\n')).toBe(0);

    const where = new Map<string, string>();
    for (const line of sink.lines) {
      const m = /^where (\S+) (.*)$/.exec(line);
      if (m) where.set(m[1] as string, m[2] as string);
    }
    const root = packageRoot() + sep;
    for (const name of ['fire', 'tests', 'smoke_train', 'toy_generate', 'make_items']) {
      const found = where.get(name);
      expect(found, `${name}: no line from the script`).toBeDefined();
      expect(found, `${name} resolves inside stoker`).not.toContain(root);
    }
    expect(where.get('stoker_payload')).toContain(join(pythonPayloadDir(), 'stoker_payload'));
  });

  it('makes `import fire` a ModuleNotFoundError where python-fire is not installed', async () => {
    dir = mkdtempSync(join(tmpdir(), 'stoker-pypath-'));
    const { env } = buildPayloadEnv({
      parentEnv: process.env,
      payload: { env: {}, secretEnv: [], outputDir: join(dir, 'out') },
      identity: { runId: 'pypath', taskId: 'pypath.train', stage: 'train', attempt: 1 },
    });
    // Is python-fire installed for this interpreter at all (stoker's path left out)?
    const without = await runPython(dir, 'without', { ...env, PYTHONPATH: '' });
    const withStoker = await runPython(dir, 'with', env);
    if (without.exitCode === 0) {
      // python-fire is installed: the payload must get that one, not a module of stoker's.
      expect(withStoker.exitCode).toBe(0);
      expect(withStoker.lines.join('\n')).not.toContain(packageRoot() + sep);
    } else {
      expect(without.lines.join('\n')).toContain('ModuleNotFoundError');
      expect(withStoker.exitCode).not.toBe(0);
      expect(withStoker.lines.join('\n')).toContain("ModuleNotFoundError: No module named 'fire'");
    }
  });
});

async function runPython(
  cwd: string,
  name: string,
  env: Record<string, string>,
): Promise<{ exitCode: number | null; lines: string[] }> {
  const sink = new LineSink();
  const outcome = await runPayload({
    argv: [PYTHON, '-c', 'import fire; print(fire.__file__)'],
    cwd,
    env,
    logFile: join(cwd, 'logs', `${name}.log`),
    sink,
  });
  return { exitCode: outcome.exitCode, lines: [...sink.lines, ...outcome.stderrTail] };
}
