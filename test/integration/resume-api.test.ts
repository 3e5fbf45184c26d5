/**
 * Resume through the HTTP API (POST /api/v1/runs/RUN/resume) and the remote CLI
 * (`stoker resume` with STOKER_URL): who may call it, the refusals (404, 409) that change
 * nothing, the answer against the OpenAPI document, and a resumed run that succeeds.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { afterEach, describe, expect, it } from 'vitest';
import type { RunningHttp } from '../../orchestrator/http/start.js';
import type { RunView } from '../../orchestrator/views.js';
import { stoker } from '../util/cli.js';
import { eventually } from '../util/redis-server.js';
import { startTestHttp } from '../util/http.js';
import { payloadFixture, specFrom, type TestSystem } from '../util/system.js';

let sys: TestSystem | undefined;
let http: RunningHttp | undefined;
let home: string | undefined;
afterEach(async () => {
  await http?.close();
  await sys?.cleanup();
  if (home) rmSync(home, { recursive: true, force: true });
  http = sys = home = undefined;
});

/** A one-stage run of train-sim with `env` and no retries. */
const trainRun = (name: string, env: Record<string, string | number>) =>
  specFrom({
    apiVersion: 'stoker/v1',
    kind: 'TrainingRun',
    metadata: { name },
    spec: {
      payload: { command: [process.execPath, payloadFixture('train-sim.mjs')], env },
      retry: { attempts: 1 },
      terminationGracePeriod: '5s',
    },
  });

async function start() {
  ({ sys, http } = await startTestHttp());
  home = mkdtempSync(join(tmpdir(), 'stoker-resume-api-'));
  const { admin, read } = http.tokens.tokens;
  const call = async (method: string, path: string, token: string | null = read) => {
    const res = await fetch(`${http!.url}${path}`, {
      method,
      headers: token ? { authorization: `Bearer ${token}` } : {},
    });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  };
  const cli = (args: string[], token: string) =>
    stoker(args, { home: home!, extra: { STOKER_URL: http!.url, STOKER_TOKEN: token } });
  return { call, cli, admin, read, sys: sys! };
}

describe('resume through the API', () => {
  it('is admin only; refuses unknown, running and succeeded runs; answers as its OpenAPI document says', async () => {
    const { call, admin, sys: s } = await start();
    const failedId = await s.submit(trainRun('api-fail', { STEPS: 6, FAIL_ATTEMPTS: 1 }));
    const hangingId = await s.submit(trainRun('api-hang', { HANG: 1, STEP_MS: 5 }));
    expect((await s.waitForPhase(failedId, ['Failed', 'Succeeded'])).phase).toBe('Failed');
    await s.waitForPhase(hangingId, ['Running']);

    const denied = await call('POST', `/api/v1/runs/${failedId}/resume`);
    expect(denied).toMatchObject({ status: 403, json: { error: { code: 'Forbidden' } } });
    expect(await call('POST', `/api/v1/runs/${failedId}/resume`, null)).toMatchObject({
      status: 401,
    });
    expect(await call('POST', '/api/v1/runs/no-such-run/resume', admin)).toMatchObject({
      status: 404,
      json: { error: { code: 'NotFound' } },
    });
    const running = await call('POST', `/api/v1/runs/${hangingId}/resume`, admin);
    expect(running).toMatchObject({ status: 409, json: { error: { code: 'Conflict' } } });
    expect(String((running.json.error as { message: string }).message)).toContain(
      `run ${hangingId} is Running: only a run that ended Failed or Cancelled can be resumed`,
    );
    // None of the refusals changed anything.
    expect(await s.redis.exists(s.keys.runResume(failedId), s.keys.runResume(hangingId))).toBe(0);
    expect((await s.view(failedId)).phase).toBe('Failed');

    const ok = await call('POST', `/api/v1/runs/api-fail/resume`, admin);
    expect(ok).toMatchObject({
      status: 202,
      json: { id: failedId, resumeRequested: true, from: 'Failed' },
    });
    const doc = (await call('GET', '/api/v1/openapi.json')).json as {
      components: { schemas: Record<string, object> };
    };
    const ajv = new Ajv2020({ strict: false });
    for (const [name, schema] of Object.entries(doc.components.schemas))
      ajv.addSchema(schema, `#/components/schemas/${name}`);
    const check = (name: string, value: unknown) => {
      const v = ajv.getSchema(`#/components/schemas/${name}`);
      expect(v?.(value), JSON.stringify(v?.errors)).toBe(true);
    };
    check('ResumeAccepted', ok.json);
    // At once again: pending, or already running: a conflict either way.
    expect((await call('POST', `/api/v1/runs/${failedId}/resume`, admin)).status).toBe(409);

    const done = await eventually('the resumed run to end', async () => {
      const v = await s.view(failedId);
      return v.resumes.length > 0 && ['Succeeded', 'Failed'].includes(v.phase) ? v : null;
    });
    expect(done.phase).toBe('Succeeded');
    expect(done.resumes).toMatchObject([{ by: 'api:admin', from: { phase: 'Failed' } }]);
    check('RunView', (await call('GET', `/api/v1/runs/${failedId}`)).json);
    const after = await call('POST', `/api/v1/runs/${failedId}/resume`, admin);
    expect(after).toMatchObject({ status: 409, json: { error: { code: 'Conflict' } } });
    expect((await s.view(failedId)).resumes).toHaveLength(1);
  });

  it('resumes through the remote CLI with the admin token, refused with the read token', async () => {
    const { cli, admin, read, sys: s } = await start();
    const id = await s.submit(
      trainRun('remote-resume', { STEPS: 12, FAIL_ATTEMPTS: 1, FAIL_AT: 8 }),
    );
    expect((await s.waitForPhase(id, ['Failed', 'Succeeded'])).phase).toBe('Failed');

    const ro = await cli(['resume', id], read);
    expect(ro.exitCode).toBe(1);
    expect(ro.stderr).toMatch(/needs the admin token.*HTTP 403/);
    expect(await s.redis.exists(s.keys.runResume(id))).toBe(0);

    const r = await cli(['resume', 'remote-resume', '--wait', '--json'], admin);
    expect(r.exitCode, r.all).toBe(0);
    const view = JSON.parse(r.stdout) as RunView;
    expect(view).toMatchObject({ id, phase: 'Succeeded', resumes: [{ by: 'api:admin' }] });
    // The first attempt's checkpoint at step 5 is where the second began.
    expect(view.resumes[0]?.stages[0]?.checkpoint?.step).toBe(5);
    expect(view.stages[0]?.tasks[0]).toMatchObject({ attempt: 2, maxAttempts: 2 });

    const again = await cli(['resume', id], admin);
    expect(again.exitCode).toBe(1);
    expect(again.stderr).toMatch(
      /is Succeeded: only a run that ended Failed or Cancelled.*HTTP 409/,
    );
  });
});
