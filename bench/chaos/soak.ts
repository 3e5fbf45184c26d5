/**
 * soak (`npm run chaos -- --only soak --soak 10m`): for a set time, stages of 2,000
 * one-item shards, one after another, on a pool of 3 workers under `stoker up`, with
 * faults on a timetable:
 *
 *   every  5 s   SIGKILL to a busy pool worker (its shard runs again elsewhere)
 *   every 30 s   `CLIENT KILL SKIPME yes`: every connection of the controller and workers
 *   every 60 s   SIGKILL to `stoker up`, and a new one started (pool workers outlive it)
 *
 * Each stage is counted as the sharded scenarios count (lost, duplicated, acked =
 * completed); the line sums them. The faults stop when the time is up; the stage in
 * flight then finishes undisturbed.
 */
import { killPid } from '../../common/proc.js';
import { readWorkers } from '../../orchestrator/pools.js';
import { type Cleanup, sleep } from '../lib/harness.js';
import { check, type Scenario } from './lib/scenario.js';
import { type ChaosContext, ChaosStack, type UpProcess } from './lib/stack.js';
import { countSharded, type ShardedCounts, submitSharded } from './lib/workloads.js';

const EVERY_MS = { poolWorker: 5000, clients: 30_000, controller: 60_000 } as const;
type Fault = keyof typeof EVERY_MS;

/** `600`, `90s`, `10m`, `1.5h` -> seconds; null when it is none of those. */
export function parseDuration(text: string): number | null {
  const m = /^(\d+(?:\.\d+)?)(s|m|h)?$/.exec(text.trim());
  if (!m) return null;
  const n = Number(m[1]) * { s: 1, m: 60, h: 3600 }[(m[2] ?? 's') as 's' | 'm' | 'h'];
  return n > 0 ? n : null;
}

/** The faults of one timetable: each fires when its period has passed since it last did. */
class Timetable {
  readonly fired: Record<Fault, number> = { poolWorker: 0, clients: 0, controller: 0 };
  private readonly last: Record<Fault, number>;

  constructor(
    private readonly s: ChaosStack,
    public up: UpProcess,
  ) {
    const now = Date.now();
    this.last = { poolWorker: now, clients: now, controller: now };
  }

  async tick(pool: string): Promise<void> {
    const now = Date.now();
    const due = (f: Fault) => now - this.last[f] >= EVERY_MS[f];
    if (due('poolWorker')) {
      this.last.poolWorker = now;
      const busy = (await readWorkers(this.s.probe, this.s.keys, pool)).filter(
        (x) => x.state === 'busy',
      );
      const v = busy[Math.floor(Math.random() * busy.length)];
      if (v && killPid(v.pid, 'SIGKILL')) this.fired.poolWorker++;
    }
    if (due('clients')) {
      this.last.clients = now;
      await this.s.probe.call('CLIENT', 'KILL', 'SKIPME', 'yes');
      this.fired.clients++;
    }
    if (due('controller')) {
      this.last.controller = now;
      this.up.child.kill('SIGKILL');
      await this.up.exited;
      this.up = await this.s.up();
      this.fired.controller++;
    }
  }
}

/** --soak SECONDS: stages of 2,000 one-item shards under the timetable until the time is up. */
export function soak(seconds: number): Scenario {
  return {
    name: 'soak',
    fault: `${seconds} s of 2,000-shard stages on 3 pool workers: a busy pool worker SIGKILLed every ${EVERY_MS.poolWorker / 1000} s, every connection killed every ${EVERY_MS.clients / 1000} s, stoker up SIGKILLed and restarted every ${EVERY_MS.controller / 1000} s`,
    async run(ctx: ChaosContext, cleanup: Cleanup) {
      const s = await ChaosStack.start(ctx, cleanup, 'soak');
      const t = new Timetable(s, await s.up());
      const end = Date.now() + seconds * 1000;
      const total: ShardedCounts[] = [];
      for (let round = 1; Date.now() < end; round++) {
        const r = await submitSharded(s, 'soak', {
          items: 2000,
          shardSize: 1,
          itemMs: 5,
          workers: 3,
        });
        for (;;) {
          const run = await s.store.getRun(r.runId);
          if (!run || ['Succeeded', 'Failed', 'Cancelled'].includes(run.phase)) break;
          if (Date.now() < end) await t.tick(r.pool);
          await sleep(200);
        }
        total.push(await countSharded(s, r, 600_000));
        ctx.note(`soak: round ${round} done, faults so far ${JSON.stringify(t.fired)}`);
      }
      const sum = (k: 'acked' | 'completed' | 'lost' | 'duplicated') =>
        total.reduce((a, c) => a + c[k], 0);
      const failed = total.find((c) => c.runPhase !== 'Succeeded');
      return {
        counts: {
          unit: 'items',
          acked: sum('acked'),
          completed: sum('completed'),
          lost: sum('lost'),
          duplicated: sum('duplicated'),
          resumedFromStep: null,
          runPhase: failed ? failed.runPhase : 'Succeeded',
        },
        checks: [
          check('pool workers were killed', t.fired.poolWorker > 0, t.fired.poolWorker),
          check(
            'every fault of the timetable fired as often as the time allowed',
            (Object.keys(EVERY_MS) as Fault[]).every(
              (f) => t.fired[f] >= Math.floor((seconds * 1000) / EVERY_MS[f] / 2),
            ),
            t.fired,
          ),
          check('the last stoker up is still running', !t.up.hasExited()),
        ],
        details: {
          rounds: total.length,
          faults: t.fired,
          shardsRetried: total.reduce((a, c) => a + c.shardsRetried, 0),
        },
      };
    },
  };
}
