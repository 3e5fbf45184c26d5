/**
 * A run's page (#/runs/ID): its state and conditions, the stage graph, the stages with
 * progress, ETA and failures, the selected stage's task (attempts, curves, log), the
 * FIRE report when the run has one, and the lineage. Live: a run or task event for this
 * run brings a fresh view (at most one a second). Admins get Cancel and Resume.
 */
import type { FireReportView } from '../orchestrator/http/report.js';
import type { RunView } from '../orchestrator/views.js';
import { api, isAdmin, post } from './api.js';
import { badge, between, fill, h } from './dom.js';
import { listen } from './live.js';
import { reportSection } from './report.js';
import { attemptsOf, lineageOf, stageGraph, stagesTable } from './run-parts.js';
import { taskPanel } from './task-panel.js';

const TERMINAL = new Set(['Succeeded', 'Failed', 'Cancelled']);

export function runPage(root: HTMLElement, runId: string): () => void {
  const page = new RunPage(root, runId);
  return () => page.leave();
}

/** A button that POSTs to `path` once confirmed, then calls `done`. */
function actionButton(label: string, path: string, confirmText: string, done: () => void) {
  const onclick = async (e: Event) => {
    const b = e.currentTarget as HTMLButtonElement;
    if (!window.confirm(confirmText)) return;
    b.disabled = true;
    try {
      await post(path);
      done();
    } catch (err) {
      window.alert(`${label}: ${(err as Error).message}`);
    } finally {
      b.disabled = false;
    }
  };
  return h(
    'button',
    { type: 'button', class: 'action', 'data-action': label.toLowerCase(), onclick },
    label,
  );
}

class RunPage {
  private readonly head = h('div', { class: 'run-head' });
  private readonly graph = h('div');
  private readonly stages = h('div');
  private readonly detail = h('div', { class: 'detail' });
  private readonly reportEl = h('div');
  private readonly lineage = h('div');
  private readonly panel = taskPanel();
  private view: RunView | null = null;
  private selected: string | null = null;
  private report: { destroy(): void } | null = null;
  private reportTried = false;
  private pending: number | undefined;
  private last = 0;
  private gone = false;
  private readonly stops: Array<() => void>;

  constructor(
    root: HTMLElement,
    private readonly runId: string,
  ) {
    const mine = (id: string) => this.view !== null && id === this.view.id;
    this.stops = [
      listen<{ id: string }>('run', (r) => mine(r.id) && this.schedule()),
      listen<{ runId: string }>('task', (t) => mine(t.runId) && this.schedule()),
    ];
    fill(
      root,
      h('p', {}, h('a', { href: '#/' }, '← runs')),
      this.head,
      this.graph,
      this.stages,
      this.detail,
      this.reportEl,
      this.lineage,
    );
    void this.refresh();
  }

  leave(): void {
    this.gone = true;
    for (const stop of this.stops) stop();
    clearTimeout(this.pending);
    this.panel.destroy();
    this.report?.destroy();
  }

  private readonly select = (stage: string) => {
    this.selected = stage;
    if (this.view) this.render(this.view);
  };

  /** A fresh view soon: at most one a second. */
  private schedule(): void {
    if (this.pending !== undefined) return;
    const wait = Math.max(0, 1000 - (Date.now() - this.last));
    this.pending = window.setTimeout(() => void this.refresh(), wait);
  }

  private async refresh(): Promise<void> {
    this.pending = undefined;
    this.last = Date.now();
    try {
      this.view = await api<RunView>(`/runs/${encodeURIComponent(this.runId)}`);
      if (!this.gone) this.render(this.view);
    } catch (err) {
      fill(
        this.head,
        h('h1', {}, this.runId),
        h('p', { class: 'failure' }, (err as Error).message),
      );
    }
  }

  private render(v: RunView): void {
    this.renderHead(v);
    fill(this.graph, stageGraph(v, this.selected, this.select));
    fill(this.stages, stagesTable(v, this.select));
    this.renderDetail(v);
    fill(this.lineage, lineageOf(v));
    void this.maybeReport(v);
  }

  private renderHead(v: RunView): void {
    const path = (what: string) => `/runs/${encodeURIComponent(v.id)}/${what}`;
    const refresh = () => this.schedule();
    const actions = [];
    if (isAdmin() && !TERMINAL.has(v.phase) && !v.cancelRequestedAt)
      actions.push(actionButton('Cancel', path('cancel'), `Cancel run ${v.id}?`, refresh));
    if (isAdmin() && (v.phase === 'Failed' || v.phase === 'Cancelled'))
      actions.push(
        actionButton('Resume', path('resume'), `Resume ${v.id} from its checkpoints?`, refresh),
      );
    const conditions = v.conditions.map((c) =>
      h(
        'li',
        {},
        `${c.type}: ${c.status}${c.reason ? ` (${c.reason})` : ''}${c.message ? `: ${c.message}` : ''}`,
      ),
    );
    fill(
      this.head,
      h('h1', {}, v.name, ' ', badge(v.phase)),
      h('div', { class: 'sub' }, v.id),
      h(
        'div',
        { class: 'facts' },
        `created ${new Date(v.createdAt).toLocaleString()} · running time ${between(v.startedAt, v.finishedAt)}`,
        v.cancelRequestedAt ? ' · cancel requested' : '',
      ),
      v.message ? h('p', { class: v.phase === 'Failed' ? 'failure' : '' }, v.message) : null,
      conditions.length ? h('ul', { class: 'conditions' }, ...conditions) : null,
      h('div', { class: 'actions' }, ...actions),
    );
  }

  /** The selected stage (else the running one, else the first with a task). */
  private renderDetail(v: RunView): void {
    const stage =
      v.stages.find((s) => s.name === this.selected) ??
      v.stages.find((s) => s.phase === 'Running') ??
      v.stages.find((s) => s.tasks.length > 0) ??
      v.stages[0];
    if (!stage) return fill(this.detail);
    const task = stage.tasks.at(-1);
    if (task) {
      fill(this.detail, h('h2', {}, `Stage ${stage.name}`), attemptsOf(task), this.panel.el);
      this.panel.show(v.id, task.id, Math.max(task.attempt, 1), task.phase === 'Running');
      return;
    }
    const what = stage.shards
      ? `${stage.shards.succeeded}/${stage.shards.total} shards done by pool ${stage.shards.pool}`
      : 'no task yet';
    fill(this.detail, h('h2', {}, `Stage ${stage.name}`), h('p', { class: 'note' }, what));
  }

  private async maybeReport(v: RunView): Promise<void> {
    if (this.reportTried) return;
    if (!v.stages.some((s) => s.kind === 'report' && s.phase === 'Succeeded')) return;
    this.reportTried = true;
    try {
      const r = await api<FireReportView>(`/runs/${encodeURIComponent(v.id)}/report`);
      if (this.gone) return;
      const section = reportSection(r);
      this.report = section;
      fill(this.reportEl, section.el);
    } catch (err) {
      const msg = `The FIRE report cannot be shown: ${(err as Error).message}`;
      fill(this.reportEl, h('p', { class: 'failure' }, msg));
    }
  }
}
