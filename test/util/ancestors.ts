/**
 * Reading what test/fixtures/payloads/read-ancestors.mjs found: each ancestor of a payload
 * (its worker first) with its /proc/PID/environ and cmdline. The secrets tests of the
 * local backend (test/integration/secrets.test.ts) and the simulated cluster
 * (test/kubernetes/secrets.test.ts) check it the same way.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import type { NormalizedSpec } from '../../common/spec/schema.js';
import { specFrom } from './system.js';

export interface AncestorsReport {
  pid: number;
  /** The payload's own SECRET_VAR (its secretEnv copy). */
  secret: string | null;
  ancestors: { pid: number; comm: string; environ: string | null; cmdline: string | null }[];
}

export const readAncestors = (file: string): AncestorsReport =>
  JSON.parse(readFileSync(file, 'utf8')) as AncestorsReport;

/**
 * The payload read its worker's environ (the first ancestor: it holds the worker's
 * `prefix` and STOKER_SECRETS_FD=3, so it is the real one, not an empty read), no
 * ancestor's environ or cmdline holds one of `secrets`, and the payload got `expected`.
 */
export function expectNothingLeaked(
  report: AncestorsReport,
  o: { prefix: string; secrets: string[]; expected: string },
): void {
  const worker = report.ancestors[0];
  expect(worker?.environ, 'the payload could not read its worker').toBeTruthy();
  const workerEnv = Buffer.from(worker?.environ ?? '', 'base64')
    .toString()
    .split('\0');
  expect(workerEnv).toContain(`STOKER_PREFIX=${o.prefix}`);
  expect(workerEnv).toContain('STOKER_SECRETS_FD=3');
  expect(workerEnv.filter((v) => /^(STOKER_)?REDIS_URL=/.test(v))).toEqual([]);
  for (const a of report.ancestors) {
    for (const field of [a.environ, a.cmdline]) {
      if (field === null) continue;
      const text = Buffer.from(field, 'base64').toString();
      for (const secret of o.secrets)
        expect(text, `ancestor ${a.pid} (${a.comm})`).not.toContain(secret);
    }
  }
  expect(report.secret).toBe(o.expected);
}

/**
 * A Pipeline whose generate stage runs `payload` (the probe, in server mode) on a pool of
 * one worker over three items written under `dir`; `probeOut` is where the probe reports.
 */
export function poolProbeRun(
  dir: string,
  payload: (env: Record<string, string>) => Record<string, unknown>,
): { spec: NormalizedSpec; probeOut: string } {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'items.jsonl'), '{"id": 1}\n{"id": 2}\n{"id": 3}\n');
  const probeOut = join(dir, 'ancestors.json');
  const spec = specFrom({
    apiVersion: 'stoker/v1',
    kind: 'Pipeline',
    metadata: { name: 'pool-probe' },
    spec: {
      stages: [
        {
          name: 'gen',
          kind: 'generate',
          input: { file: join(dir, 'items.jsonl'), shardSize: 2 },
          pool: { name: 'probe', replicas: 1, maxReplicas: 1 },
          payload: payload({ SERVER: '1', PROBE_OUT: probeOut }),
        },
      ],
    },
  });
  return { spec, probeOut };
}
