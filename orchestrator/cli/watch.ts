/**
 * Live progress of one run or several: one bar per task or sharded stage (step/total,
 * loss, throughput, ETA) on a TTY; a line per change elsewhere (CI logs, pipes). Polls
 * the runs' views a few times a second, from Redis or through the HTTP API (`view`):
 * this is a client, and reading a handful of keys is cheap. Ends when every run has.
 */
import cliProgress from 'cli-progress';
import { isTerminal } from '../../common/model.js';
import type { RunView, StageView, TaskView } from '../views.js';
import { formatDuration, formatNumber, taskLine } from './format.js';

export interface WatchOptions {
  runIds: string[];
  /** A run's view now. */
  view: (runId: string) => Promise<RunView>;
  out?: NodeJS.WriteStream;
  tty?: boolean;
  intervalMs?: number;
  signal?: AbortSignal;
}

interface Line {
  id: string;
  label: string;
  value: number;
  total: number;
  unit: string;
  info: string;
  /** Non-TTY: a line is written when this changes. */
  bucket: string;
  text: string;
}

export async function watchRuns(opts: WatchOptions): Promise<RunView[]> {
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
  const byId = new Map<string, cliProgress.SingleBar>();
  const lastBucket = new Map<string, string>();
  const several = opts.runIds.length > 1;
  let views: RunView[];
  for (;;) {
    views = await Promise.all(opts.runIds.map((id) => opts.view(id)));
    for (const view of views) {
      for (const l of lines(view, several)) {
        if (bars) {
          const payload = { stage: l.label.padEnd(several ? 24 : 10), info: l.info, unit: l.unit };
          let bar = byId.get(l.id);
          if (!bar) {
            bar = bars.create(Math.max(l.total, 1), l.value, payload);
            byId.set(l.id, bar);
          }
          if (l.total > 0) bar.setTotal(l.total);
          bar.update(l.value, payload);
        } else if (lastBucket.get(l.id) !== l.bucket) {
          lastBucket.set(l.id, l.bucket);
          out.write(`${l.text}\n`);
        }
      }
    }
    if (views.every((v) => isTerminal(v.phase)) || opts.signal?.aborted) break;
    await new Promise((r) => setTimeout(r, interval));
  }
  bars?.stop();
  return views;
}

function lines(view: RunView, several: boolean): Line[] {
  const out: Line[] = [];
  for (const stage of view.stages) {
    const label = several ? `${view.name}/${stage.name}` : stage.name;
    if (stage.shards) out.push(shardLine(view, stage, label));
    else for (const t of stage.tasks) out.push(taskBar(view, stage, t, label));
  }
  return out;
}

function shardLine(view: RunView, stage: StageView, label: string): Line {
  const sh = stage.shards!;
  const value = sh.succeeded + sh.failed;
  const info = `${stage.phase} ${sh.items} items${sh.itemsPerSec ? ` ${formatNumber(sh.itemsPerSec, 3)} items/s` : ''}${sh.failed ? ` ${sh.failed} failed` : ''} pool ${sh.pool}`;
  return {
    id: `${view.id}/${stage.name}/shards`,
    label,
    value,
    total: sh.total,
    unit: 'shards',
    info,
    bucket: `${stage.phase}:${Math.floor((value / Math.max(1, sh.total)) * 10)}`,
    text: `${label}: ${stage.phase} shards ${value}/${sh.total}, ${info}`,
  };
}

function taskBar(view: RunView, stage: StageView, t: TaskView, label: string): Line {
  const p = t.progress;
  const total = p.totalSteps ?? 0;
  const info = `${t.phase}${p.metrics.loss !== undefined ? ` loss ${formatNumber(p.metrics.loss)}` : ''}${
    p.stepsPerSec ? ` ${formatNumber(p.stepsPerSec, 3)} it/s` : ''
  }${t.phase === 'Running' && p.etaSeconds !== null ? ` ETA ${formatDuration(p.etaSeconds)}` : ''}${
    t.attempt > 1 ? ` (attempt ${t.attempt})` : ''
  }`;
  return {
    id: `${view.id}/${t.id}`,
    label,
    value: p.step ?? 0,
    total,
    unit: 'steps',
    info,
    bucket: `${t.phase}:${t.attempt}:${Math.floor(((p.step ?? 0) / Math.max(1, total)) * 10)}`,
    text: `${label}: ${t.phase} ${taskLine(t)}`,
  };
}
