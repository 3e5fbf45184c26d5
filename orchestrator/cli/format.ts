/** Human formatting for the CLI. */
import type { RunView, TaskView } from '../views.js';

export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '-';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export function age(iso: string | null, now = Date.now()): string {
  if (!iso) return '-';
  return formatDuration((now - Date.parse(iso)) / 1000);
}

export function formatNumber(n: number | null | undefined, digits = 4): string {
  if (n === null || n === undefined) return '-';
  if (Math.abs(n) >= 1000 || (Math.abs(n) < 0.001 && n !== 0)) return n.toExponential(2);
  return Number(n.toPrecision(digits)).toString();
}

export function taskLine(t: TaskView): string {
  const p = t.progress;
  const parts = [
    p.step !== null ? `step ${p.step}${p.totalSteps ? `/${p.totalSteps}` : ''}` : null,
    p.metrics.loss !== undefined ? `loss ${formatNumber(p.metrics.loss)}` : null,
    p.stepsPerSec ? `${formatNumber(p.stepsPerSec, 3)} steps/s` : null,
    p.etaSeconds !== null ? `ETA ${formatDuration(p.etaSeconds)}` : null,
    `attempt ${t.attempt}/${t.maxAttempts}`,
  ].filter((x): x is string => x !== null);
  return parts.join(', ');
}

export function describeRun(view: RunView): string {
  const lines = [
    `run ${view.id} (${view.kind} ${view.name}): ${view.phase}${view.message ? ` - ${view.message}` : ''}`,
  ];
  for (const r of view.resumes)
    lines.push(`  resumed at ${r.appliedAt} by ${r.by} (it was ${r.from.phase})`);
  for (const s of view.stages) {
    lines.push(`  stage ${s.name} [${s.kind}] ${s.phase}${s.message ? `: ${s.message}` : ''}`);
    if (s.queue?.paused)
      lines.push(
        `    queue ${s.queue.name} is paused: nothing new starts until it is resumed (Bull Board, /queues)`,
      );
    if (s.queue?.wait) lines.push(`    waiting: ${s.queue.wait.summary}`);
    for (const t of s.tasks) {
      lines.push(`    task ${t.id} ${t.phase} (${taskLine(t)})`);
      if (t.reason && t.phase !== 'Succeeded')
        lines.push(`      reason: ${t.reason}${t.message ? `: ${t.message}` : ''}`);
      if (t.failure) {
        lines.push(`      failure: ${t.failure.class}: ${t.failure.hint}`);
        lines.push(`        evidence: ${t.failure.evidence}`);
      }
      if ((t.phase === 'Failed' || t.phase === 'Pending') && t.stderrTail.length > 0) {
        lines.push(
          '      stderr (last lines):',
          ...t.stderrTail.slice(-5).map((l) => `        ${l}`),
        );
      }
      if (t.result) {
        const r = JSON.stringify(t.result);
        lines.push(`      result: ${r.length > 300 ? `${r.slice(0, 297)}...` : r}`);
      }
      if (t.logFile) lines.push(`      log: ${t.logFile}`);
    }
    if (s.shards) {
      const sh = s.shards;
      lines.push(
        `    shards ${sh.succeeded}/${sh.total} done${sh.failed ? `, ${sh.failed} failed` : ''} on pool ${sh.pool}: ${sh.items} items${sh.itemsPerSec ? `, ${formatNumber(sh.itemsPerSec, 3)} items/s` : ''}`,
      );
      for (const f of sh.failures.slice(0, 5))
        lines.push(`      shard ${f.index} failed: ${f.reason}: ${f.message}`);
    }
    const outputs = Object.entries(s.outputs);
    if (s.phase === 'Succeeded' && outputs.length > 0) {
      for (const [k, v] of outputs) lines.push(`    output ${k}: ${v}`);
    }
  }
  return lines.join('\n');
}
