/**
 * `npm run chaos [-- --json] [--quick] [--only NAME[,NAME]] [--soak DURATION]`: faults
 * injected into a real stoker (README, "Chaos"). Each scenario starts its own
 * redis-server on a free port (never the machine's 6379) and its own `stoker up`
 * (`node bin/stoker.js up`: the controller, its pool workers and task workers are real
 * processes), breaks something mid-run, lets the run finish, and counts from what the
 * system acknowledged and what is really in the outputs. It prints one line per
 * scenario:
 *
 *   NAME: acked N, completed N, lost 0, duplicated 0, resumed from step S (UNIT) | ok
 *   with --json, one JSON object per scenario on stdout:
 *   {name, fault, unit, acked, completed, lost, duplicated, resumedFromStep, runPhase,
 *    checks: [{what, ok, seen?}], ok, failures, details, quick, seconds}
 *   or {name, skipped: "why"} or {name, error, ok: false}.
 *
 * --json     only the JSON lines on stdout; notes on stderr only without it
 * --quick    small counts (the version `npm test` runs a part of)
 * --only     these scenarios, in this order
 * --soak D   add the soak scenario (D: 600, 90s, 10m, 1h) of shards under periodic
 *            kills (bench/chaos/soak.ts); `--only soak --soak 10m` runs it alone
 *
 * Exit: 0 every scenario that ran passed; 1 one failed (or its cleanup did); 2 bad usage.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Cleanup, distIsFresh, round } from '../lib/harness.js';
import { SCENARIOS, runScenario, type ScenarioLine } from './run.js';
import { parseDuration, soak } from './soak.js';
import type { Scenario } from './lib/scenario.js';

interface Options {
  json: boolean;
  quick: boolean;
  only: string[] | null;
  soak: number | null;
}

class UsageError extends Error {}

function parseArgs(argv: readonly string[]): Options {
  const opts: Options = { json: false, quick: false, only: null, soak: null };
  const known = [...SCENARIOS.map((s) => s.name), 'soak'];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    const value = (flag: string) => {
      const v = a === flag ? argv[++i] : a.slice(flag.length + 1);
      if (!v) throw new UsageError(`${flag} needs a value`);
      return v;
    };
    if (a === '--json') opts.json = true;
    else if (a === '--quick') opts.quick = true;
    else if (a === '--only' || a.startsWith('--only=')) {
      opts.only = value('--only')
        .split(',')
        .map((x) => x.trim())
        .filter(Boolean);
      const unknown = opts.only.filter((n) => !known.includes(n));
      if (unknown.length > 0)
        throw new UsageError(`unknown scenario ${unknown.join(', ')} (known: ${known.join(', ')})`);
    } else if (a === '--soak' || a.startsWith('--soak=')) {
      const n = parseDuration(value('--soak'));
      if (n === null) throw new UsageError('--soak needs a duration: 600, 90s, 10m, 1h');
      opts.soak = n;
    } else if (a === '--help' || a === '-h') throw new UsageError('');
    else throw new UsageError(`unknown option ${a}`);
  }
  return opts;
}

export function human(line: ScenarioLine): string {
  if ('skipped' in line) return `${line.name}: skipped: ${line.skipped}`;
  if ('error' in line) return `${line.name}: ERROR: ${line.error}`;
  const resumed = line.resumedFromStep === null ? '-' : String(line.resumedFromStep);
  const verdictText = line.ok ? 'ok' : `FAILED: ${line.failures.join('; ')}`;
  return `${line.name}: acked ${line.acked}, completed ${line.completed}, lost ${line.lost}, duplicated ${line.duplicated}, resumed from step ${resumed} (${line.unit}) | ${verdictText}`;
}

async function main(): Promise<number> {
  let opts: Options;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    if (err.message) process.stderr.write(`chaos: ${err.message}\n`);
    process.stderr.write(
      `usage: npm run chaos -- [--json] [--quick] [--soak 10m] [--only ${SCENARIOS.map((s) => s.name).join(',')}]\n`,
    );
    return 2;
  }
  const note = (m: string) => {
    if (!opts.json) process.stderr.write(`[chaos] ${m}\n`);
  };
  const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
  // bin/stoker.js runs the sources through tsx when they are newer than dist/: slower, but
  // never stale. Say so, since every `stoker up` and worker start pays for it.
  if (!distIsFresh(root))
    note('dist/ is older than the sources: stoker runs through tsx (npm run build to avoid it)');
  const all: Scenario[] = [...SCENARIOS, ...(opts.soak ? [soak(opts.soak)] : [])];
  const chosen = opts.only
    ? opts.only.map((n) =>
        n === 'soak' ? soak(opts.soak ?? 60) : (all.find((s) => s.name === n) as Scenario),
      )
    : all;
  const tmpRoot = mkdtempSync(join(tmpdir(), 'stoker-chaos-'));
  const cleanup = new Cleanup();
  cleanup.defer(`remove ${tmpRoot}`, () => rmSync(tmpRoot, { recursive: true, force: true }));
  const onSignal = (sig: NodeJS.Signals) => {
    process.stderr.write(`chaos: ${sig}: cleaning up\n`);
    void cleanup.run().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let failed = false;
  try {
    for (const sc of chosen) {
      note(`${sc.name}: ${sc.fault}`);
      const t0 = Date.now();
      const line = await runScenario(sc, { quick: opts.quick, root, tmpRoot, note }, cleanup);
      if ('ok' in line && !line.ok) failed = true;
      const out = { ...line, quick: opts.quick, seconds: round((Date.now() - t0) / 1000, 1) };
      process.stdout.write(`${JSON.stringify(out)}\n`);
      if (!opts.json) process.stderr.write(`${human(line)}\n`);
    }
  } finally {
    const errors = await cleanup.run();
    if (errors.length > 0) {
      failed = true;
      process.stderr.write(`chaos: cleanup failed: ${errors.join('; ')}\n`);
    }
  }
  return failed ? 1 : 0;
}

process.exit(await main());
