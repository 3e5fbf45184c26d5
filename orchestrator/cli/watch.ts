/**
 * Live progress: one bar per task (step/total, loss, throughput, ETA) on a TTY; a line
 * per change elsewhere (CI logs, pipes). Polls the run view a few times a second: this
 * is a client, and reading a handful of keys is cheap.
 */
import cliProgress from 'cli-progress';
import { isTerminal } from '../../common/model.js';
import type { Keys } from '../../common/keys.js';
import type { Redis } from 'ioredis';
import type { RunStore } from '../store.js';
import { buildRunView, type RunView } from '../views.js';
import { formatDuration, formatNumber, taskLine } from './format.js';

export interface WatchOptions {
  store: RunStore;
  redis: Redis;
  keys: Keys;
  runId: string;
  out?: NodeJS.WriteStream;
  tty?: boolean;
  intervalMs?: number;
  signal?: AbortSignal;
}

export async function watchRun(opts: WatchOptions): Promise<RunView> {
  const out = opts.out ?? process.stderr;
  const tty = opts.tty ?? Boolean(out.isTTY);
  const interval = opts.intervalMs ?? 300;
  const bars = tty
    ? new cliProgress.MultiBar(
        {
          format: ' {stage} |{bar}| {value}/{total} {unit} | {info}',
          barsize: 30,
          hideCursor: true,
          clearOnComplete: false,
          stopOnComplete: false,
          forceRedraw: true,
          stream: out,
        },
        cliProgress.Presets.shades_classic,
      )
    : null;
  const byTask = new Map<string, cliProgress.SingleBar>();
  const lastLine = new Map<string, string>();
  let view: RunView;
  for (;;) {
    view = await buildRunView(opts.store, opts.redis, opts.keys, opts.runId);
    for (const stage of view.stages) {
      if (stage.shards) {
        const sh = stage.shards;
        const value = sh.succeeded + sh.failed;
        const info = `${stage.phase} ${sh.items} items${sh.itemsPerSec ? ` ${formatNumber(sh.itemsPerSec, 3)} items/s` : ''}${sh.failed ? ` ${sh.failed} failed` : ''} pool ${sh.pool}`;
        const id = `${stage.name}/shards`;
        if (bars) {
          const payload = { stage: stage.name.padEnd(10), info, unit: 'shards' };
          let bar = byTask.get(id);
          if (!bar) {
            bar = bars.create(sh.total, value, payload);
            byTask.set(id, bar);
          }
          bar.update(value, payload);
        } else {
          const bucket = `${stage.phase}:${Math.floor((value / Math.max(1, sh.total)) * 10)}`;
          if (lastLine.get(id) !== bucket) {
            lastLine.set(id, bucket);
            out.write(`${stage.name}: ${stage.phase} shards ${value}/${sh.total}, ${info}\n`);
          }
        }
        continue;
      }
      for (const t of stage.tasks) {
        const total = t.progress.totalSteps ?? 0;
        const value = t.progress.step ?? 0;
        const info = `${t.phase}${t.progress.metrics.loss !== undefined ? ` loss ${formatNumber(t.progress.metrics.loss)}` : ''}${
          t.progress.stepsPerSec ? ` ${formatNumber(t.progress.stepsPerSec, 3)} it/s` : ''
        }${t.phase === 'Running' && t.progress.etaSeconds !== null ? ` ETA ${formatDuration(t.progress.etaSeconds)}` : ''}${
          t.attempt > 1 ? ` (attempt ${t.attempt})` : ''
        }`;
        if (bars) {
          let bar = byTask.get(t.id);
          const payload = { stage: stage.name.padEnd(10), info, unit: 'steps' };
          if (!bar) {
            bar = bars.create(Math.max(total, 1), value, payload);
            byTask.set(t.id, bar);
          }
          if (total > 0) bar.setTotal(total);
          bar.update(value, payload);
        } else {
          const line = `${stage.name}: ${t.phase} ${taskLine(t)}`;
          const bucket = `${t.phase}:${t.attempt}:${Math.floor(((t.progress.step ?? 0) / Math.max(1, total)) * 10)}`;
          if (lastLine.get(t.id) !== bucket) {
            lastLine.set(t.id, bucket);
            out.write(`${line}\n`);
          }
        }
      }
    }
    if (isTerminal(view.phase) || opts.signal?.aborted) break;
    await new Promise((r) => setTimeout(r, interval));
  }
  bars?.stop();
  return view;
}
