/** A FIRE run's report on its run page: the paper's headline table and the acc@t chart. */
import type { FireReportView } from '../orchestrator/http/report.js';
import { h, num } from './dom.js';
import { lineChart, type Chart } from './charts.js';

export function reportSection(r: FireReportView): { el: HTMLElement; destroy(): void } {
  const turns = Math.max(0, ...r.models.map((m) => m.accAt.length));
  const x = Array.from({ length: turns }, (_, i) => i + 1);
  const chart: Chart | null =
    turns > 0
      ? lineChart(
          'acc@t, free dialogues',
          r.models.map((m) => ({ name: m.name, x, y: x.map((t) => m.accAt[t - 1] ?? null) })),
          { xLabel: 'turn t', height: 260, yRange: [0, 1], integerX: true },
        )
      : null;
  const el = h(
    'section',
    { class: 'report' },
    h('h2', {}, `FIRE report: ${r.title}`),
    h(
      'table',
      { class: 'fire-table' },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          ...[
            'model',
            'dialogues',
            'AT (norm., lower better)',
            'AT',
            'ADR',
            'ATR',
            'RR',
            ...x.map((t) => `acc@${t}`),
          ].map((c) => h('th', {}, c)),
        ),
      ),
      h(
        'tbody',
        {},
        ...r.models.map((m) =>
          h(
            'tr',
            {},
            h('td', {}, m.name === r.baseline ? `${m.name} (baseline)` : m.name),
            h('td', {}, m.dialogues),
            h('td', {}, num(m.atNormalised)),
            h('td', {}, num(m.at)),
            h('td', {}, num(m.adr)),
            h('td', {}, num(m.atr)),
            h('td', {}, num(m.rr)),
            ...x.map((t) => h('td', {}, num(m.accAt[t - 1] ?? null))),
          ),
        ),
      ),
    ),
    chart?.el ?? null,
    h('p', { class: 'sub' }, `from ${r.file}`),
  );
  return { el, destroy: () => chart?.destroy() };
}
