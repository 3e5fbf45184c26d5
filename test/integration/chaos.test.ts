/**
 * The short chaos suite inside `npm test`: three quick scenarios of `npm run chaos`
 * (bench/chaos/, README "Chaos"), each on its own redis-server and `stoker up`: a pool
 * worker killed mid-shard, a training payload killed after a checkpoint, every Redis
 * client killed three times while shards run. Each must report lost 0, duplicated 0,
 * its run Succeeded and its own checks held (the kill hit a shard in flight, the
 * retry resumed from the checkpoint, ...).
 *
 * Run as the command, not imported: test/ and bench/ may not import each other (the
 * layers of eslint.config.js), and this also checks the entry point and its JSON lines.
 */
import { execa } from 'execa';
import { join } from 'node:path';
import { expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..', '..');
const SCENARIOS = ['pool-worker-kill', 'payload-kill', 'client-kill'];

interface Line {
  name: string;
  ok?: boolean;
  error?: string;
  skipped?: string;
  lost?: number;
  duplicated?: number;
  acked?: number;
  completed?: number;
  runPhase?: string;
  resumedFromStep?: number | null;
  failures?: string[];
}

it('loses and duplicates nothing through a pool worker kill, a payload kill and CLIENT KILL', async () => {
  const res = await execa(
    join(ROOT, 'node_modules', '.bin', 'tsx'),
    ['bench/chaos/index.ts', '--quick', '--json', '--only', SCENARIOS.join(',')],
    { cwd: ROOT, reject: false, all: true, timeout: 170_000 },
  );
  const lines = res.stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Line);
  expect(lines.map((l) => l.name)).toEqual(SCENARIOS);
  for (const l of lines) {
    expect(l.error, `${l.name}: ${res.all}`).toBeUndefined();
    expect({ name: l.name, lost: l.lost, duplicated: l.duplicated, phase: l.runPhase }).toEqual({
      name: l.name,
      lost: 0,
      duplicated: 0,
      phase: 'Succeeded',
    });
    expect(l.acked).toBeGreaterThan(0);
    expect(l.completed).toBe(l.acked);
    expect(l.failures, l.name).toEqual([]);
    expect(l.ok).toBe(true);
  }
  // The payload's retry resumed from its checkpoint, not from step 0.
  expect(lines[1]?.resumedFromStep).toBeGreaterThan(0);
  expect(res.exitCode, res.all).toBe(0);
}, 180_000);
