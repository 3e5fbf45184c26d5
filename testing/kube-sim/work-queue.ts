/**
 * The work queue of the simulated Job controller and kubelet: `namespace/name` keys,
 * deduplicated, drained on the next turn of the event loop, as a controller of
 * client-go's workqueue sees them (without its rate limiting). A key's handler runs once
 * per drain however many events named it. A 404 from the handler means the object went
 * away meanwhile (ignored); any other error is a bug of the simulator, reported as a
 * process warning so a test sees it without the loop dying.
 */
import { KubeApiError } from './objects/meta.js';

export class WorkQueue {
  private readonly keys = new Set<string>();
  private scheduled = false;

  constructor(
    /** Names the warnings: `fake kubelet`, `fake job controller`. */
    private readonly who: string,
    private readonly stopped: () => boolean,
    private readonly handle: (namespace: string, name: string) => void,
  ) {}

  add(namespace: string, name: string): void {
    if (this.stopped()) return;
    this.keys.add(`${namespace}/${name}`);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.drain());
  }

  private drain(): void {
    this.scheduled = false;
    const keys = [...this.keys];
    this.keys.clear();
    for (const k of keys) {
      if (this.stopped()) return;
      const [ns, name] = k.split('/') as [string, string];
      try {
        this.handle(ns, name);
      } catch (err) {
        if (!(err instanceof KubeApiError && err.code === 404))
          process.emitWarning(`${this.who}: ${(err as Error).stack ?? String(err)}`);
      }
    }
  }
}
