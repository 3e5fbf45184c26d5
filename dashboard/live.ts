/**
 * One server-sent event stream (GET /api/v1/events) for the whole page, shared by the
 * views that listen: run, task and pool changes. The browser's EventSource reconnects by
 * itself; the header shows whether the stream is up.
 */
type Listener = (data: unknown) => void;

const listeners = new Map<string, Set<Listener>>();
let source: EventSource | null = null;
let onState: (state: 'live' | 'reconnecting') => void = () => undefined;

export function whenStreamState(fn: (state: 'live' | 'reconnecting') => void): void {
  onState = fn;
}

function open(): void {
  if (source) return;
  source = new EventSource('/api/v1/events');
  source.onopen = () => onState('live');
  source.onerror = () => onState('reconnecting');
  for (const type of ['run', 'task', 'pool']) {
    source.addEventListener(type, (ev) => {
      let data: unknown;
      try {
        data = JSON.parse((ev as MessageEvent<string>).data);
      } catch {
        return;
      }
      for (const fn of listeners.get(type) ?? []) fn(data);
    });
  }
}

/** Listen to one kind of change; returns the function that stops listening. */
export function listen<T>(type: 'run' | 'task' | 'pool', fn: (data: T) => void): () => void {
  open();
  let set = listeners.get(type);
  if (!set) listeners.set(type, (set = new Set()));
  const l = fn as Listener;
  set.add(l);
  return () => set.delete(l);
}
