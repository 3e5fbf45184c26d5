/**
 * The web side in a real browser: Debian's chromium, driven by playwright-core, against a
 * running stoker's HTTP server. Logging in with the printed link, Bull Board at /queues
 * with stoker's queues and the running task's job at a non-zero progress, and a read-only
 * login that cannot act. Screenshots go to test-output/browser/.
 *
 * Skipped when /usr/bin/chromium is absent (.ci/run installs it).
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterEach, describe, expect, it } from 'vitest';
import type { RunningHttp } from '../../orchestrator/http/start.js';
import { CHROMIUM, launchChromium, SHOTS } from '../util/browser.js';
import { eventually } from '../util/redis-server.js';
import { startTestHttp } from '../util/http.js';
import { nodePayloadYaml, type TestSystem } from '../util/system.js';

let sys: TestSystem | undefined;
let http: RunningHttp | undefined;
let browser: Browser | undefined;
afterEach(async () => {
  await browser?.close();
  await http?.close();
  await sys?.cleanup();
  browser = http = sys = undefined;
});

describe.skipIf(!existsSync(CHROMIUM))('in a real browser (chromium)', () => {
  it("logs in with the link, shows the queues and a running job's progress, and a read-only login cannot act", async () => {
    mkdirSync(SHOTS, { recursive: true });
    ({ sys, http } = await startTestHttp());
    const { admin, read } = http.tokens.tokens;
    const submitted = await fetch(`${http.url}/api/v1/runs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/yaml' },
      body: nodePayloadYaml('browser', 'train-sim.mjs', { STEPS: 2000, STEP_MS: 20 }),
    });
    expect(submitted.status).toBe(201);

    browser = await launchChromium();
    const page = await browser.newPage();
    await page.goto(`${http.url}/login?token=${read}&next=/queues`);
    expect(new URL(page.url()).pathname).toBe('/queues');
    await page.getByText('train', { exact: true }).first().waitFor({ timeout: 30_000 });
    await page.getByText('steps', { exact: true }).first().waitFor();
    await page.screenshot({ path: join(SHOTS, 'queues.png'), fullPage: true });

    // The running task's job, as the board's page reads it (with the login cookie).
    const progress = await eventually(
      'the running job at a non-zero progress on the board',
      async () => {
        const p = await page.evaluate(async () => {
          const r = await fetch('/queues/api/queues?activeQueue=train&status=active&page=1');
          const body = (await r.json()) as {
            queues: Array<{ name: string; jobs: Array<{ progress: unknown }> }>;
          };
          return body.queues.find((q) => q.name === 'train')?.jobs[0]?.progress ?? null;
        });
        return typeof p === 'number' && p > 0 ? p : null;
      },
      60_000,
      200,
    );
    expect(progress).toBeGreaterThan(0);
    await page.goto(`${http.url}/queues/queue/train?status=active`);
    await page.getByText('Active', { exact: false }).first().waitFor();
    await page.screenshot({ path: join(SHOTS, 'train-active.png'), fullPage: true });

    // Read-only: the board's actions are refused.
    const status = await page.evaluate(async () => {
      const r = await fetch('/queues/api/queues/train/pause', { method: 'PUT' });
      return r.status;
    });
    expect(status).toBe(403);
    expect(
      (
        (await (
          await fetch(`${http.url}/api/v1/queues`, { headers: { authorization: `Bearer ${read}` } })
        ).json()) as { queues: Array<{ name: string; paused: boolean }> }
      ).queues,
    ).toContainEqual(expect.objectContaining({ name: 'train', paused: false }));
  });
});
