/**
 * The dashboard's few DOM helpers. Every text that comes from a run (names, messages,
 * log lines, a payload's output) goes in as text (textContent), never as HTML.
 */
type Attr = string | number | boolean | null | undefined | ((ev: Event) => void);
export type Child = Node | string | number | null | undefined | false;

/** An element with attributes (`on*` are listeners, `class`, `data-*`, ...) and children. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, Attr> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (typeof v === 'function') el.addEventListener(k.slice(2).toLowerCase(), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

export function append(el: Element, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.append(typeof c === 'number' ? String(c) : c);
  }
}

/** Replace an element's children. */
export function fill(el: Element, ...children: Child[]): void {
  el.replaceChildren();
  append(el, children);
}

/** A phase as a coloured badge. */
export const badge = (phase: string): HTMLElement =>
  h('span', { class: `badge phase-${phase.toLowerCase()}` }, phase);

/** A progress bar of `fraction` (0..1, null: unknown), with a label. */
export function bar(fraction: number | null, label?: string): HTMLElement {
  const pct = fraction === null ? 0 : Math.round(Math.min(1, Math.max(0, fraction)) * 1000) / 10;
  const fillEl = h('div', { class: 'fill' });
  fillEl.style.width = `${pct}%`;
  return h(
    'div',
    { class: 'bar', role: 'progressbar', 'aria-valuenow': pct, 'data-value': pct },
    fillEl,
    h('span', { class: 'label' }, label ?? (fraction === null ? '–' : `${pct.toFixed(1)}%`)),
  );
}

/** 3h04m, 4m10s, 12s. */
export function duration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '–';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  const hours = Math.floor(s / 3600);
  if (hours < 48) return `${hours}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(hours / 24)}d${hours % 24}h`;
}

/** The time between two ISO times (the second: now when null). */
export function between(from: string | null, to: string | null): string {
  if (!from) return '–';
  return duration(((to ? Date.parse(to) : Date.now()) - Date.parse(from)) / 1000);
}

/** How long ago an ISO time was. */
export const ago = (iso: string | null): string => (iso ? `${between(iso, null)} ago` : '–');

/** A number for a table: 3 significant digits, or a dash. */
export function num(v: number | null | undefined, digits = 3): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  if (v !== 0 && (Math.abs(v) >= 1e5 || Math.abs(v) < 1e-3)) return v.toExponential(2);
  return String(Number(v.toPrecision(digits)));
}
