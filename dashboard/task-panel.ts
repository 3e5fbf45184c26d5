/**
 * The selected task of the run page: its curves (the metric history, downsampled by the
 * server: loss, learning rate, throughput, then one chart per other metric) refreshed
 * while it runs, and its log tail with follow.
 */
import type { MetricHistoryView } from '../orchestrator/metric-history.js';
import type { LogChunk } from '../orchestrator/http/logs.js';
import { api } from './api.js';
import { fill, h } from './dom.js';
import { chartGroup, lineChart, type Chart, type Line } from './charts.js';

const POINTS = 1000;
const MAX_CHARTS = 8;
const LOG_LINES = 500;

interface Shown {
  runId: string;
  taskId: string;
  attempt: number;
  running: boolean;
}

export interface Panel {
  el: HTMLElement;
  /** The task and whether it still runs (called on every refresh of the run). */
  show(runId: string, taskId: string, attempt: number, running: boolean): void;
  destroy(): void;
}

export const taskPanel = (): Panel => new TaskPanel();

class TaskPanel implements Panel {
  private readonly charts = new Map<string, Chart>();
  private readonly chartsEl = h('div', { class: 'charts' });
  private readonly chartNote = h('p', { class: 'note' });
  private readonly logEl = h('pre', { class: 'log', tabindex: 0 });
  private readonly follow = h('input', { type: 'checkbox', checked: true });
  private readonly logNote = h('span', { class: 'note' });
  readonly el: HTMLElement;
  private current: Shown | null = null;
  private logOffset = 0;
  private logDone = false;
  private timer: number | undefined;
  private busy = false;

  constructor() {
    const followLabel = h('label', { class: 'follow' }, this.follow, ' follow');
    this.el = h(
      'section',
      { class: 'task-panel' },
      h('h3', {}, 'Curves'),
      this.chartNote,
      this.chartsEl,
      h('h3', {}, 'Log ', followLabel, ' ', this.logNote),
      this.logEl,
    );
  }

  show(runId: string, taskId: string, attempt: number, running: boolean): void {
    const before = this.current;
    this.current = { runId, taskId, attempt, running };
    if (!before || before.taskId !== taskId || before.attempt !== attempt) {
      this.clearCharts();
      this.logEl.textContent = '';
      this.logOffset = 0;
      this.logDone = false;
      void this.loadCharts();
      void this.loadLog();
    } else if (before.running && !running) {
      void this.loadCharts(); // the last points
      void this.loadLog();
    }
    this.timer ??= window.setInterval(() => void this.tick(), 2000);
  }

  destroy(): void {
    clearInterval(this.timer);
    this.clearCharts();
  }

  private clearCharts(): void {
    for (const c of this.charts.values()) c.destroy();
    this.charts.clear();
    this.chartsEl.replaceChildren();
  }

  private async tick(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      if (this.follow.checked) await this.loadLog();
      if (this.current?.running) await this.loadCharts();
    } finally {
      this.busy = false;
    }
  }

  private query(what: string, extra: string): string {
    const c = this.current as Shown;
    return `/runs/${encodeURIComponent(c.runId)}/${what}?task=${encodeURIComponent(c.taskId)}&attempt=${c.attempt}&${extra}`;
  }

  private async loadCharts(): Promise<void> {
    if (!this.current) return;
    let hist: MetricHistoryView;
    try {
      hist = await api<MetricHistoryView>(this.query('metrics', `points=${POINTS}`));
    } catch (err) {
      fill(this.chartNote, `No curves: ${(err as Error).message}`);
      return;
    }
    const groups = new Map<string, Line[]>();
    for (const s of hist.series) {
      const g = chartGroup(s.name);
      if (!groups.has(g) && groups.size >= MAX_CHARTS) continue;
      if (!groups.has(g)) groups.set(g, []);
      groups.get(g)?.push({ name: s.name, x: s.x, y: s.y });
    }
    fill(
      this.chartNote,
      hist.points === 0
        ? 'No metrics reported yet.'
        : `${hist.points} points (${hist.source}); at most ${POINTS} per curve shown`,
    );
    for (const [g, c] of this.charts)
      if (!groups.has(g)) {
        c.destroy();
        c.el.remove();
        this.charts.delete(g);
      }
    const xLabel = hist.x === 'step' ? 'step' : 'seconds';
    for (const [g, lines] of groups) {
      const existing = this.charts.get(g);
      if (existing && existing.names === lines.map((l) => l.name).join(',')) {
        existing.update(lines);
        continue;
      }
      existing?.destroy();
      const c = lineChart(g, lines, { xLabel });
      if (existing) existing.el.replaceWith(c.el);
      else this.chartsEl.append(c.el);
      this.charts.set(g, c);
    }
  }

  private async loadLog(): Promise<void> {
    if (!this.current || this.logDone) return;
    try {
      const chunk = await api<LogChunk>(this.query('logs', `offset=${this.logOffset}`));
      if (chunk.source === 'redis') this.logEl.textContent = '';
      if (chunk.lines.length > 0) this.appendLog(chunk.lines);
      this.logOffset = chunk.next;
      this.logDone = chunk.done;
      const state = chunk.done ? 'attempt over' : chunk.source === 'file' ? 'following' : '';
      fill(this.logNote, state);
    } catch (err) {
      fill(this.logNote, `No log: ${(err as Error).message}`);
      this.logDone = true;
    }
  }

  /** New lines at the end; only the last LOG_LINES kept; scrolled along when at the bottom. */
  private appendLog(lines: string[]): void {
    const el = this.logEl;
    const atBottom = el.scrollTop + el.clientHeight >= el.scrollHeight - 4;
    el.append(`${lines.join('\n')}\n`);
    const all = (el.textContent ?? '').split('\n');
    if (all.length > LOG_LINES + 1) el.textContent = all.slice(-LOG_LINES - 1).join('\n');
    if (this.follow.checked && atBottom) el.scrollTop = el.scrollHeight;
  }
}
