/**
 * The runs list (#/): newest first, 100 a page ("more" loads the next), filtered by
 * phase and name on the server; kept live by the event stream (a run's row is updated
 * in place, a new run that matches is put on top) without reloading.
 */
import type { RunSummary } from '../orchestrator/views.js';
import { api } from './api.js';
import { ago, badge, bar, between, fill, h } from './dom.js';
import { listen } from './live.js';

const PAGE = 100;
const PHASES = ['', 'Pending', 'Running', 'Succeeded', 'Failed', 'Cancelled'];
const COLUMNS = ['run', 'phase', 'progress', 'stages', 'created', 'duration', 'message'];

export function runsPage(root: HTMLElement): () => void {
  const page = new RunsPage(root);
  return () => page.leave();
}

class RunsPage {
  private readonly phase = h(
    'select',
    { 'aria-label': 'phase' },
    ...PHASES.map((p) => h('option', { value: p }, p || 'any phase')),
  );
  private readonly name = h('input', {
    type: 'search',
    placeholder: 'run name',
    'aria-label': 'name',
  });
  private readonly tbody = h('tbody');
  private readonly more = h('button', { type: 'button', class: 'more', hidden: true }, 'more');
  private readonly note = h('p', { class: 'note' });
  private readonly rows = new Map<string, HTMLTableRowElement>();
  private next: number | null = 0;
  private generation = 0;
  private typing: number | undefined;
  private readonly stop: () => void;

  constructor(root: HTMLElement) {
    this.stop = listen<RunSummary>('run', (r) => this.changed(r));
    this.phase.addEventListener('change', () => void this.load(true));
    this.name.addEventListener('input', () => {
      clearTimeout(this.typing);
      this.typing = window.setTimeout(() => void this.load(true), 300);
    });
    this.more.addEventListener('click', () => void this.load(false));
    const head = h('tr', {}, ...COLUMNS.map((c) => h('th', {}, c)));
    fill(
      root,
      h('h1', {}, 'Runs'),
      h('div', { class: 'filters' }, this.phase, this.name),
      h('table', { class: 'runs' }, h('thead', {}, head), this.tbody),
      this.note,
      this.more,
    );
    void this.load(true);
  }

  leave(): void {
    this.stop();
    clearTimeout(this.typing);
  }

  private matches(r: RunSummary): boolean {
    const name = this.name.value.trim();
    return (!this.phase.value || r.phase === this.phase.value) && (!name || r.name === name);
  }

  /** A run event: its row updated, or a new run that matches put on top. */
  private changed(r: RunSummary): void {
    const tr = this.rows.get(r.id);
    if (tr) return this.render(tr, r);
    if (this.matches(r) && Date.now() - Date.parse(r.createdAt) < 60_000) {
      this.tbody.prepend(this.row(r));
      fill(this.note, '');
    }
  }

  private async load(reset: boolean): Promise<void> {
    if (reset) {
      this.generation += 1;
      this.next = 0;
      this.rows.clear();
      this.tbody.replaceChildren();
    }
    if (this.next === null) return;
    const mine = this.generation;
    const q = new URLSearchParams({ limit: String(PAGE), cursor: String(this.next) });
    if (this.phase.value) q.set('phase', this.phase.value);
    if (this.name.value.trim()) q.set('name', this.name.value.trim());
    try {
      const page = await api<{ runs: RunSummary[]; next: number | null }>(`/runs?${q}`);
      if (mine !== this.generation) return;
      for (const r of page.runs) if (!this.rows.has(r.id)) this.tbody.append(this.row(r));
      this.next = page.next;
      this.more.hidden = this.next === null;
      const empty = 'No runs yet: stoker submit SPEC, or POST /api/v1/runs.';
      fill(this.note, this.rows.size === 0 ? empty : '');
    } catch (err) {
      fill(this.note, `Cannot list runs: ${(err as Error).message}`);
    }
  }

  private row(r: RunSummary): HTMLTableRowElement {
    const tr = h('tr', { 'data-run': r.id });
    this.render(tr, r);
    this.rows.set(r.id, tr);
    return tr;
  }

  private render(tr: HTMLTableRowElement, r: RunSummary): void {
    tr.dataset.phase = r.phase;
    const link = h('a', { href: `#/runs/${encodeURIComponent(r.id)}` }, r.name);
    fill(
      tr,
      h('td', {}, link, h('div', { class: 'sub' }, r.id)),
      h('td', {}, badge(r.phase)),
      h('td', { class: 'progress' }, bar(r.progress)),
      h('td', {}, `${r.stages.succeeded}/${r.stages.total}`),
      h('td', {}, ago(r.createdAt)),
      h('td', {}, between(r.startedAt, r.finishedAt)),
      h('td', { class: 'message' }, r.waiting ? `waiting: ${r.waiting}` : (r.message ?? '')),
    );
  }
}
