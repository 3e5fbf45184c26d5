/**
 * The dashboard (dashboard/, served at /) in a real browser: Debian's chromium driven by
 * playwright-core, against a running stoker. Logging in with the printed link; the runs
 * list with a running run whose progress bar moves without a reload; its run page with
 * a loss chart that has drawn points; a FIRE run's report table and acc@t chart; the
 * pools page with working scale buttons; a read-only login without buttons that act.
 * Screenshots go to test-output/browser/ (docs/dashboard.png is a copy of dashboard-run.png).
 *
 * Skipped when /usr/bin/chromium is absent (.ci/run installs it).
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterEach, describe, expect, it } from 'vitest';
import type { RunningHttp } from '../../orchestrator/http/start.js';
import { fireReportSpec } from '../util/fire-report-run.js';
import { CHROMIUM, launchChromium, SHOTS } from '../util/browser.js';
import { eventually } from '../util/redis-server.js';
import { registerIdlePool, startTestHttp } from '../util/http.js';
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

async function submit(body: string, token: string): Promise<string> {
  const res = await fetch(`${http!.url}/api/v1/runs`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/yaml' },
    body,
  });
  expect(res.status).toBe(201);
  return String(((await res.json()) as { id: string }).id);
}

const trainSpec = (name: string) =>
  nodePayloadYaml(name, 'train-sim.mjs', { STEPS: 3000, STEP_MS: 20 });

/**
 * How many pixels of a chart's canvas are drawn (not transparent). Page functions are
 * sent as text: this project's TypeScript has no DOM types outside dashboard/.
 */
const drawnPixels = (page: Page, title: string): Promise<number> =>
  page.evaluate(`(() => {
    const canvas = document.querySelector('.chart[data-title=${JSON.stringify(title)}] canvas');
    const ctx = canvas && canvas.getContext('2d');
    if (!ctx) return 0;
    const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    let n = 0;
    for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n += 1;
    return n;
  })()`);

const progressOf = async (page: Page, runId: string): Promise<number> =>
  Number((await page.locator(`tr[data-run="${runId}"] .bar`).getAttribute('data-value')) ?? NaN);

describe.skipIf(!existsSync(CHROMIUM))('the dashboard in a real browser (chromium)', () => {
  it('shows live runs, a run with curves, a FIRE report and pools; read-only cannot act', async () => {
    mkdirSync(SHOTS, { recursive: true });
    ({ sys, http } = await startTestHttp());
    const { admin, read } = http.tokens.tokens;
    await registerIdlePool(sys, 'gen-cpu');
    const fire = await submit(fireReportSpec('fire-mini'), admin);
    const train = await submit(trainSpec('train-live'), admin);

    browser = await launchChromium();
    const page = await (
      await browser.newContext({ viewport: { width: 1400, height: 900 } })
    ).newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));

    // The printed link logs in and lands on the runs list.
    await page.goto(`${http.url}/login?token=${admin}`);
    expect(new URL(page.url()).pathname).toBe('/');
    await page.locator(`tr[data-run="${train}"]`).waitFor({ timeout: 30_000 });
    await page.locator('#who', { hasText: 'admin' }).waitFor();

    // The running run's progress bar moves without a reload.
    const first = await eventually(
      'the run Running with some progress',
      async () => {
        const v = await progressOf(page, train);
        return v > 0 ? v : null;
      },
      60_000,
      100,
    );
    const navigations: string[] = [];
    page.on('framenavigated', (f) => navigations.push(f.url()));
    await eventually(
      'its progress bar advanced',
      async () => ((await progressOf(page, train)) > first ? true : null),
      60_000,
      100,
    );
    expect(navigations).toEqual([]);
    await page.screenshot({ path: join(SHOTS, 'dashboard-runs.png') });

    // Its page: the loss chart has drawn points (from the metric history).
    await page.click(`tr[data-run="${train}"] a`);
    const loss = page.locator('.chart[data-title="loss"]');
    await loss.waitFor({ timeout: 30_000 });
    await eventually(
      'the loss chart with points drawn',
      async () =>
        Number(await loss.getAttribute('data-points')) > 5 &&
        (await drawnPixels(page, 'loss')) > 200
          ? true
          : null,
      30_000,
      100,
    );
    await page.locator('pre.log', { hasText: 'starting at step' }).waitFor();
    expect(await page.locator('button[data-action="cancel"]').count()).toBe(1);
    await page.screenshot({ path: join(SHOTS, 'dashboard-run.png'), fullPage: true });

    // The FIRE run: its report table and acc@t chart.
    await page.goto(`${http.url}/#/runs/${fire}`);
    await page.locator('table.fire-table').waitFor({ timeout: 90_000 });
    expect(await page.locator('table.fire-table tbody tr').count()).toBe(2);
    await eventually(
      'the acc@t chart drawn',
      async () => ((await drawnPixels(page, 'acc@t, free dialogues')) > 200 ? true : null),
      30_000,
      100,
    );
    await page.locator('.stage-box[data-stage="report"]').waitFor();
    await page.screenshot({ path: join(SHOTS, 'dashboard-fire-report.png'), fullPage: true });

    // Pools: the pool, and an admin's scale button that works.
    await page.goto(`${http.url}/#/pools`);
    const pool = page.locator('tr[data-pool="gen-cpu"]');
    await pool.waitFor();
    await pool.locator('button[data-action="scale-up"]').click();
    await pool.locator('td[data-field="desired"]', { hasText: '1' }).waitFor();
    await page.screenshot({ path: join(SHOTS, 'dashboard-pools.png') });
    expect(errors).toEqual([]);

    // A read-only login: no scale or cancel buttons, and the API refuses its writes.
    const ro = await (await browser.newContext()).newPage();
    await ro.goto(`${http.url}/login?token=${read}`);
    await ro.locator('#who', { hasText: 'read-only' }).waitFor();
    await ro.goto(`${http.url}/#/pools`);
    await ro.locator('tr[data-pool="gen-cpu"]').waitFor();
    expect(await ro.locator('tr[data-pool="gen-cpu"] button').count()).toBe(0);
    await ro.goto(`${http.url}/#/runs/${train}`);
    await ro.locator('.stage-box').first().waitFor();
    expect(await ro.locator('button[data-action="cancel"]').count()).toBe(0);
    const refused = await ro.evaluate(async (id) => {
      const r = await fetch(`/api/v1/runs/${id}/cancel`, { method: 'POST' });
      return r.status;
    }, train);
    expect(refused).toBe(403);

    // Logged out (no cookie): the page asks for a token.
    const anon = await (await browser.newContext()).newPage();
    await anon.goto(`${http.url}/`);
    await anon.locator('form.login').waitFor();
  });
});
