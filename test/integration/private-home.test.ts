/**
 * Stoker's home is private whatever Redis is used (common/private-dir.ts): a system
 * started on an external Redis (the suite's) tightens an open home to 0700, and a run's
 * log and metric history files are 0600.
 */
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ensurePrivateDir } from '../../common/private-dir.js';
import { attemptLogFile, attemptMetricsFile } from '../../common/paths.js';
import { nodePayloadRun, startTestSystem, type TestSystem } from '../util/system.js';

let sys: TestSystem | undefined;
const dirs: string[] = [];
afterEach(async () => {
  await sys?.cleanup();
  sys = undefined;
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const mode = (p: string) => statSync(p).mode & 0o777;

describe("stoker's home", () => {
  it('is made 0700, or tightened to it, never loosened', () => {
    const base = mkdtempSync(join(tmpdir(), 'stoker-private-'));
    dirs.push(base);
    expect(ensurePrivateDir(join(base, 'new', 'home'))).toBe('created');
    expect(mode(join(base, 'new', 'home'))).toBe(0o700);
    mkdirSync(join(base, 'open'), { mode: 0o755 });
    chmodSync(join(base, 'open'), 0o755);
    expect(ensurePrivateDir(join(base, 'open'))).toBe('tightened');
    expect(mode(join(base, 'open'))).toBe(0o700);
    chmodSync(join(base, 'open'), 0o500);
    expect(ensurePrivateDir(join(base, 'open'))).toBe('kept');
    expect(mode(join(base, 'open'))).toBe(0o500);
  });

  it('with an external Redis: an open home is tightened, and a run writes its logs 0600', async () => {
    const base = mkdtempSync(join(tmpdir(), 'stoker-private-'));
    dirs.push(base);
    const home = join(base, 'home');
    mkdirSync(home, { mode: 0o755 });
    chmodSync(home, 0o755);
    sys = await startTestSystem({ home });
    expect(mode(home)).toBe(0o700);
    const id = await sys.submit(
      nodePayloadRun('private', 'train-sim.mjs', { STEPS: '3', STEP_MS: '1' }),
    );
    const view = await sys.waitForPhase(id, ['Succeeded']);
    const task = `${id}.train`;
    expect(mode(attemptLogFile(view.runDir, task, 1))).toBe(0o600);
    expect(mode(attemptMetricsFile(view.runDir, task, 1))).toBe(0o600);
    expect(mode(join(view.runDir, 'logs'))).toBe(0o700);
  });
});
