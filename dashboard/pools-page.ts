/**
 * The pools page (#/pools): each pool's status (Idle, ScalingUp, ScalingDown, Ready),
 * desired, running, busy, idle and starting workers, backlog, shards per second and ETA,
 * how it is scaled (auto, fixed, or pinned until when) and the controller's last decision
 * (its reason, message and conditions), live from the event stream (and every 5 s, for
 * the rates); admins get scale buttons (−1, +1, and a number), which pin the pool within
 * its bounds (the server refuses anything else and says why), and `auto`, which ends a pin.
 */
import type { PoolView } from '../orchestrator/pools.js';
import { api, isAdmin, post } from './api.js';
import { duration, fill, h, num } from './dom.js';
import { listen } from './live.js';

const COLUMNS = [
  'pool',
  'status',
  'bounds',
  'scaling',
  'desired',
  'running',
  'busy',
  'idle',
  'changing',
  'backlog',
  'shards/s',
  'ETA',
  'used by',
  'decision',
  'scale',
];

export function poolsPage(root: HTMLElement): () => void {
  const page = new PoolsPage(root);
  return () => page.leave();
}

class PoolsPage {
  private readonly tbody = h('tbody');
  private readonly note = h('p', { class: 'note' });
  private readonly rows = new Map<string, HTMLTableRowElement>();
  private readonly stop: () => void;
  private readonly timer: number;

  constructor(root: HTMLElement) {
    this.stop = listen<PoolView>('pool', (p) => this.render(p));
    this.timer = window.setInterval(() => void this.load(), 5000);
    const head = h('tr', {}, ...COLUMNS.map((c) => h('th', {}, c)));
    fill(
      root,
      h('h1', {}, 'Pools'),
      h('table', { class: 'pools' }, h('thead', {}, head), this.tbody),
      this.note,
    );
    void this.load();
  }

  leave(): void {
    this.stop();
    clearInterval(this.timer);
  }

  private async load(): Promise<void> {
    try {
      const { pools } = await api<{ pools: PoolView[] }>('/pools');
      for (const p of pools) this.render(p);
      fill(this.note, pools.length === 0 ? 'No pools yet: a spec with a pool registers it.' : '');
    } catch (err) {
      fill(this.note, `Cannot list pools: ${(err as Error).message}`);
    }
  }

  private async scale(p: PoolView, body: { replicas: number } | { auto: true }): Promise<void> {
    try {
      this.render(await post<PoolView>(`/pools/${encodeURIComponent(p.name)}/scale`, body));
      fill(this.note, '');
    } catch (err) {
      fill(this.note, `Cannot scale ${p.name}: ${(err as Error).message}`);
    }
  }

  private controls(p: PoolView): HTMLElement {
    if (!isAdmin()) return h('span', { class: 'sub' }, 'read-only');
    const input = h('input', {
      type: 'number',
      min: p.minReplicas,
      max: p.maxReplicas,
      value: p.desired,
      'aria-label': `replicas of ${p.name}`,
    });
    const button = (
      action: string,
      label: string,
      disabled: boolean,
      to: () => { replicas: number } | { auto: true },
    ) =>
      h(
        'button',
        {
          type: 'button',
          'data-action': action,
          disabled,
          onclick: () => void this.scale(p, to()),
        },
        label,
      );
    return h(
      'span',
      { class: 'scale' },
      button('scale-down', '−1', p.desired <= p.minReplicas, () => ({ replicas: p.desired - 1 })),
      button('scale-up', '+1', p.desired >= p.maxReplicas, () => ({ replicas: p.desired + 1 })),
      input,
      button('scale-set', 'set', false, () => ({ replicas: Number(input.value) })),
      p.pin ? button('scale-auto', 'auto', false, () => ({ auto: true })) : null,
    );
  }

  private render(p: PoolView): void {
    let tr = this.rows.get(p.name);
    if (!tr) {
      tr = h('tr', { 'data-pool': p.name });
      this.rows.set(p.name, tr);
      this.tbody.append(tr);
    }
    const changing = p.starting + p.draining;
    fill(
      tr,
      h('td', {}, p.name, p.paused ? h('div', { class: 'warn' }, 'queue paused') : null),
      h('td', { 'data-field': 'status' }, p.status),
      h('td', {}, `${p.minReplicas}–${p.maxReplicas}`),
      h('td', { 'data-field': 'scaling' }, scaling(p)),
      h('td', { 'data-field': 'desired' }, p.desired),
      h('td', {}, p.running),
      h('td', {}, p.busy),
      h('td', {}, p.idle),
      h('td', {}, changing ? `${p.starting} starting, ${p.draining} draining` : '–'),
      h('td', {}, p.backlog),
      h('td', {}, num(p.shardsPerSecond)),
      h('td', {}, duration(p.etaSeconds)),
      h('td', {}, p.users.join(', ') || '–'),
      h('td', { 'data-field': 'decision' }, decision(p)),
      h('td', {}, this.controls(p)),
    );
  }
}

/** auto, fixed, or the pin with its end. */
function scaling(p: PoolView): string {
  if (!p.pin) return p.autoscale ? 'auto' : 'fixed';
  return p.pin.until
    ? `pinned ${p.pin.replicas} until ${new Date(p.pin.until).toLocaleTimeString()}`
    : `pinned ${p.pin.replicas}`;
}

/** The last decision: its reason, its message, and its conditions on hover. */
function decision(p: PoolView): HTMLElement | string {
  const d = p.decision;
  if (!d) return '–';
  const title = d.conditions
    .map((c) => `${c.type} ${c.status} ${c.reason}: ${c.message}`)
    .join('\n');
  return h('span', { title }, h('b', {}, d.reason), h('div', { class: 'sub' }, d.message));
}
