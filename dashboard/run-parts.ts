/**
 * Pieces of the run page (run-page.ts): the stage graph, the stages table, a task's
 * attempts and failure, the lineage.
 */
import type { RunView, StageView, TaskView } from '../orchestrator/views.js';
import { badge, bar, between, duration, h, num, type Child } from './dom.js';

/** Each stage's column: 0 for those that depend on nothing, else one more than its deepest dependency. */
function depths(stages: StageView[]): Map<string, number> {
  const by = new Map(stages.map((s) => [s.name, s]));
  const out = new Map<string, number>();
  const depth = (name: string, seen: Set<string>): number => {
    const known = out.get(name);
    if (known !== undefined) return known;
    if (seen.has(name)) return 0; // a cycle cannot be stored (validated); never loop on one
    seen.add(name);
    const deps = by.get(name)?.dependsOn ?? [];
    const d = deps.length === 0 ? 0 : 1 + Math.max(...deps.map((x) => depth(x, seen)));
    out.set(name, d);
    return d;
  };
  for (const s of stages) depth(s.name, new Set());
  return out;
}

/** A stage's progress, 0..1 (null: unknown), and a label with its ETA. */
export function stageProgress(s: StageView): { fraction: number | null; label: string } {
  if (s.phase === 'Succeeded') return { fraction: 1, label: 'done' };
  if (s.shards && s.shards.total > 0) {
    const f = s.shards.succeeded / s.shards.total;
    const rate = s.shards.itemsPerSec;
    return {
      fraction: f,
      label: `${s.shards.succeeded}/${s.shards.total} shards${rate ? ` · ${num(rate)} items/s` : ''}`,
    };
  }
  const t = s.tasks.at(-1);
  if (!t || t.progress.totalSteps === null || t.progress.step === null)
    return { fraction: null, label: s.phase === 'Running' ? 'running' : '–' };
  const f = t.progress.step / t.progress.totalSteps;
  const eta =
    t.progress.etaSeconds !== null && s.phase === 'Running'
      ? ` · ETA ${duration(t.progress.etaSeconds)}`
      : '';
  return { fraction: f, label: `${t.progress.step}/${t.progress.totalSteps}${eta}` };
}

/** The stage graph: one column per depth, a box per stage (click: select), arrows drawn after layout. */
export function stageGraph(
  view: RunView,
  selected: string | null,
  select: (stage: string) => void,
): HTMLElement {
  const d = depths(view.stages);
  const columns: StageView[][] = [];
  for (const s of view.stages) (columns[d.get(s.name) ?? 0] ??= []).push(s);
  const boxes = new Map<string, HTMLElement>();
  const grid = h(
    'div',
    { class: 'graph-columns' },
    ...columns.map((col) =>
      h(
        'div',
        { class: 'graph-column' },
        ...col.map((s) => {
          const p = stageProgress(s);
          const box = h(
            'button',
            {
              type: 'button',
              class: `stage-box phase-${s.phase.toLowerCase()}${s.name === selected ? ' selected' : ''}`,
              'data-stage': s.name,
              onclick: () => select(s.name),
            },
            h('div', { class: 'stage-name' }, s.name),
            h('div', { class: 'sub' }, s.kind),
            badge(s.phase),
            bar(p.fraction, p.label),
          );
          boxes.set(s.name, box);
          return box;
        }),
      ),
    ),
  );
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.classList.add('graph-edges');
  const wrap = h('div', { class: 'graph' }, svg, grid);
  const ro = new ResizeObserver(() => draw());
  const draw = () => {
    if (!wrap.isConnected) return ro.disconnect();
    const origin = wrap.getBoundingClientRect();
    svg.setAttribute('width', String(wrap.scrollWidth));
    svg.setAttribute('height', String(wrap.scrollHeight));
    svg.replaceChildren();
    for (const s of view.stages) {
      const to = boxes.get(s.name)?.getBoundingClientRect();
      for (const dep of s.dependsOn) {
        const from = boxes.get(dep)?.getBoundingClientRect();
        if (!from || !to) continue;
        const x1 = from.right - origin.left;
        const y1 = from.top + from.height / 2 - origin.top;
        const x2 = to.left - origin.left;
        const y2 = to.top + to.height / 2 - origin.top;
        const path = document.createElementNS('http://www.w3.org/2000/svg', 'path');
        const mid = (x1 + x2) / 2;
        path.setAttribute('d', `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`);
        svg.append(path);
      }
    }
  };
  requestAnimationFrame(draw);
  ro.observe(wrap);
  return wrap;
}

/** The stages table: phase, progress and ETA, attempts, queue, failure. */
export function stagesTable(view: RunView, select: (stage: string) => void): HTMLElement {
  return h(
    'table',
    { class: 'stages' },
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        ...['stage', 'phase', 'progress', 'attempt', 'duration', 'notes'].map((c) =>
          h('th', {}, c),
        ),
      ),
    ),
    h(
      'tbody',
      {},
      ...view.stages.map((s) => {
        const p = stageProgress(s);
        const t = s.tasks.at(-1);
        const notes: Child[] = [];
        if (s.queue?.paused)
          notes.push(h('div', { class: 'warn' }, `queue ${s.queue.name} is paused`));
        if (s.queue?.wait)
          notes.push(h('div', { class: 'wait' }, `waiting: ${s.queue.wait.summary}`));
        if (t?.failure)
          notes.push(h('div', { class: 'failure' }, `${t.failure.class}: ${t.failure.evidence}`));
        else if (s.message) notes.push(h('div', {}, s.message));
        if (s.shards && s.shards.failed > 0)
          notes.push(h('div', { class: 'failure' }, `${s.shards.failed} shards failed`));
        return h(
          'tr',
          { 'data-stage': s.name },
          h(
            'td',
            {},
            h(
              'a',
              { href: '#', onclick: (e: Event) => (e.preventDefault(), select(s.name)) },
              s.name,
            ),
          ),
          h('td', {}, badge(s.phase)),
          h('td', { class: 'progress' }, bar(p.fraction, p.label)),
          h('td', {}, t ? `${t.attempt}/${t.maxAttempts}` : '–'),
          h('td', {}, between(s.startedAt, s.finishedAt)),
          h('td', {}, ...notes),
        );
      }),
    ),
  );
}

/** A task's attempts, newest last, and what its failure says. */
export function attemptsOf(t: TaskView): HTMLElement {
  const rows = t.history.map((a) =>
    h(
      'tr',
      {},
      h('td', {}, a.attempt),
      h('td', {}, a.reason),
      h('td', {}, a.exitCode ?? a.signal ?? '–'),
      h('td', { class: 'message' }, a.message),
    ),
  );
  return h(
    'div',
    { class: 'attempts' },
    h('h3', {}, `Attempts of ${t.id}`),
    t.failure
      ? h(
          'div',
          { class: 'failure-box' },
          h('strong', {}, t.failure.class),
          h('pre', {}, t.failure.evidence),
          h('div', {}, t.failure.hint),
        )
      : null,
    rows.length
      ? h(
          'table',
          {},
          h(
            'thead',
            {},
            h('tr', {}, ...['attempt', 'reason', 'exit', 'message'].map((c) => h('th', {}, c))),
          ),
          h('tbody', {}, ...rows),
        )
      : h('p', { class: 'note' }, `attempt ${t.attempt} of ${t.maxAttempts}; no earlier attempt`),
  );
}

/** What each stage read and wrote, by content. */
export function lineageOf(view: RunView): HTMLElement | null {
  const rows = view.stages.flatMap((s) =>
    s.lineage
      ? [
          ...s.lineage.consumed.map((e) => ({ stage: s.name, dir: 'read', e })),
          ...s.lineage.produced.map((e) => ({ stage: s.name, dir: 'wrote', e })),
        ]
      : [],
  );
  if (rows.length === 0) return null;
  return h(
    'details',
    { class: 'lineage' },
    h('summary', {}, `Lineage (${rows.length} entries)`),
    h(
      'table',
      {},
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          ...['stage', '', 'ref', 'kind', 'sha256', 'records'].map((c) => h('th', {}, c)),
        ),
      ),
      h(
        'tbody',
        {},
        ...rows.map(({ stage, dir, e }) =>
          h(
            'tr',
            {},
            h('td', {}, stage),
            h('td', {}, dir),
            h('td', { title: e.path }, e.ref),
            h('td', {}, e.kind),
            h('td', { class: 'mono' }, e.sha256 ? e.sha256.slice(0, 12) : '–'),
            h('td', {}, e.records ?? '–'),
          ),
        ),
      ),
    ),
  );
}
