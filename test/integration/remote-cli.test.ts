/**
 * The CLI through the HTTP API (orchestrator/cli/remote.ts): the real `stoker` command
 * with STOKER_URL and a token, and no Redis it could reach itself (REDIS_URL unset, an
 * empty home), against a running system with its HTTP server.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { RunningHttp } from '../../orchestrator/http/start.js';
import { stoker } from '../util/cli.js';
import { eventually } from '../util/redis-server.js';
import { startTestHttp } from '../util/http.js';
import { nodePayloadYaml, type TestSystem } from '../util/system.js';

let sys: TestSystem | undefined;
let http: RunningHttp | undefined;
let home: string | undefined;
afterEach(async () => {
  await http?.close();
  await sys?.cleanup();
  if (home) rmSync(home, { recursive: true, force: true });
  http = sys = home = undefined;
});

async function start() {
  ({ sys, http } = await startTestHttp());
  home = mkdtempSync(join(tmpdir(), 'stoker-remote-cli-'));
  const { admin, read } = http.tokens.tokens;
  const cli = (args: string[], token: string | null = read) =>
    stoker(args, {
      home: home!,
      extra: { STOKER_URL: http!.url, ...(token ? { STOKER_TOKEN: token } : {}) },
    });
  const spec = (name: string, extra: Record<string, unknown> = {}) => {
    const file = join(home!, `${name}.yaml`);
    writeFileSync(file, nodePayloadYaml(name, 'train-sim.mjs', { STEPS: 3, STEP_MS: 1 }, extra));
    return file;
  };
  return { cli, spec, admin, read };
}

describe('the CLI with STOKER_URL', () => {
  it('submits, waits, lists and shows runs through the API', async () => {
    const { cli, spec, admin } = await start();
    const waited = await cli(['submit', spec('remote-a'), '--wait', '--json'], admin);
    expect(waited.exitCode, waited.all).toBe(0);
    const view = JSON.parse(waited.stdout) as { id: string; phase: string };
    expect(view.phase).toBe('Succeeded');

    const list = await cli(['status', '--json']);
    expect(list.exitCode, list.all).toBe(0);
    expect(JSON.parse(list.stdout)).toMatchObject({
      runs: [{ id: view.id, phase: 'Succeeded', stages: { succeeded: 1, total: 1 } }],
    });
    const table = await cli(['status']);
    expect(table.stdout).toMatch(new RegExp(`${view.id}\\s+Succeeded\\s+1/1`));
    const one = await cli(['status', 'remote-a']);
    expect(one.exitCode, one.all).toBe(0);
    expect(one.stdout).toContain(view.id);
    expect(one.stdout).toContain('Succeeded');
    // The run was made by the server: nothing was written into this CLI's own home.
    const pools = await cli(['pools', '--json']);
    expect(JSON.parse(pools.stdout)).toEqual({ pools: [] });
    const queues = await cli(['queues', '--json']);
    expect(JSON.parse(queues.stdout).queues.map((q: { name: string }) => q.name)).toEqual([
      'train',
      'steps',
    ]);
  });

  it('watches several runs at once, and keeps the list on screen with status -w', async () => {
    const { cli, spec, admin } = await start();
    const a = (await cli(['submit', spec('watch-a')], admin)).stdout.trim();
    const b = (await cli(['submit', spec('watch-b')], admin)).stdout.trim();
    const watched = await cli(['watch', a, 'watch-b']);
    expect(watched.exitCode, watched.all).toBe(0);
    expect(watched.stderr).toMatch(/watch-a\/train: Succeeded/);
    expect(watched.stderr).toMatch(/watch-b\/train: Succeeded/);
    expect(watched.stdout).toContain(`run ${a}`);
    expect(watched.stdout).toContain(`run ${b}`);

    // Logs through the API: the file on the server's side, protocol lines only with --raw.
    const logs = await cli(['logs', a, '--task', 'train']);
    expect(logs.exitCode, logs.all).toBe(0);
    expect(logs.stdout).toContain('attempt 1 starting at step 0');
    expect(logs.stdout).not.toContain('::stoker::');
    const raw = await cli(['logs', a, '--task', 'train', '--raw', '-f']);
    expect(raw.stdout).toContain('::stoker:: {"type":"progress"');
    const both = await cli(['logs', b]);
    expect(both.stdout).toContain('attempt 1 starting at step 0');

    const listing = cli(['status', '-w']);
    let seen = '';
    listing.stdout?.on('data', (c: Buffer) => (seen += c.toString()));
    await eventually('both runs listed by status -w', () =>
      seen.includes(a) && seen.includes(b) ? true : null,
    );
    listing.kill('SIGINT');
    await listing;
  });

  it("shows the server's refusals as the CLI's own errors", async () => {
    const { cli, spec, admin } = await start();
    const bad = spec('remote-bad', { retry: { attempts: 'zero' } });
    const invalid = await cli(['submit', bad], admin);
    expect(invalid.exitCode).toBe(2);
    expect(invalid.stderr).toContain(`${bad}: invalid spec (1 problem)`);
    expect(invalid.stderr).toMatch(/spec\.retry\.attempts \(line \d+/);

    const readOnly = await cli(['submit', spec('remote-ro')]);
    expect(readOnly.exitCode).toBe(1);
    expect(readOnly.stderr).toMatch(/needs the admin token.*HTTP 403/);
    const missing = await cli(['status', 'no-such-run']);
    expect(missing.exitCode).toBe(1);
    expect(missing.stderr).toMatch(/no run matches "no-such-run".*HTTP 404/);

    const logs = await cli(['logs', 'no-such-run']);
    expect(logs.exitCode).toBe(1);
    expect(logs.stderr).toMatch(/HTTP 404/);
    const noToken = await cli(['status'], null);
    expect(noToken.exitCode).toBe(2);
    expect(noToken.stderr).toMatch(/STOKER_URL is set but no token/);
  });
});
