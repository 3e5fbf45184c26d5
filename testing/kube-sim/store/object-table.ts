/**
 * The read side of the simulated cluster's storage: the objects by resource type, one
 * global monotonic resourceVersion, and a bounded history of changes that watches resume
 * from (a watch from a version older than the history answers 410 Gone). Reads return
 * copies; entries() is the one look at the stored objects themselves.
 *
 * FakeKubeStore (store.ts) adds the writes. Every write ends in commit(), which stamps
 * the next resourceVersion on the object, records one StoreEvent and delivers it, in
 * version order, to every subscriber (HTTP watches and in-process controllers alike).
 */
import { type Clock, realClock } from '../clock.js';
import { type KubeObject, apiError, clone } from '../objects/meta.js';
import { type ResourceType, RESOURCE_TYPES, notFound } from '../objects/resources.js';
import {
  matchesFields,
  matchesLabels,
  parseFieldSelector,
  parseLabelSelector,
} from '../objects/selectors.js';

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface StoreEvent {
  type: WatchEventType;
  resource: string;
  object: KubeObject;
  /** The object before this change (MODIFIED, DELETED). */
  previous?: KubeObject;
  resourceVersion: number;
}

export interface ListOptions {
  namespace?: string | undefined;
  labelSelector?: string | undefined;
  fieldSelector?: string | undefined;
}

export interface ObjectTableOptions {
  clock?: Clock;
  /** Events kept for watch resumption; a watch from an older version gets 410 Gone. */
  historyLimit?: number;
}

export class ObjectTable {
  readonly clock: Clock;
  private readonly types = new Map<string, ResourceType>();
  private readonly objects = new Map<string, Map<string, KubeObject>>();
  private rv = 0;
  private readonly historyLimit: number;
  private readonly log: StoreEvent[] = [];
  /** Versions at or below this are gone from history (410 for a watch starting there). */
  private compacted = 0;
  private readonly listeners = new Set<(ev: StoreEvent) => void>();
  private readonly pending: StoreEvent[] = [];
  private delivering = false;
  private isClosed = false;

  constructor(opts: ObjectTableOptions = {}) {
    this.clock = opts.clock ?? realClock;
    this.historyLimit = opts.historyLimit ?? 5000;
    for (const rt of RESOURCE_TYPES) this.registerType(rt);
  }

  registerType(rt: ResourceType): void {
    this.types.set(rt.resource, rt);
    if (!this.objects.has(rt.resource)) this.objects.set(rt.resource, new Map());
  }

  resourceTypes(): ResourceType[] {
    return [...this.types.values()];
  }

  type(resource: string): ResourceType {
    const rt = this.types.get(resource);
    if (!rt) throw apiError(404, `the server could not find the requested resource (${resource})`);
    return rt;
  }

  typeOfKind(kind: string): ResourceType | undefined {
    return [...this.types.values()].find((t) => t.kind === kind);
  }

  /** The newest resourceVersion (what a list returns). */
  get resourceVersion(): number {
    return this.rv;
  }

  /** The oldest version a watch may start from without 410. */
  get oldestWatchableVersion(): number {
    return this.compacted;
  }

  /** True once close() ran: nothing is delivered or collected any more. */
  get closed(): boolean {
    return this.isClosed;
  }

  /** In-process subscription to every committed change, in order. */
  subscribe(fn: (ev: StoreEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Retained events after `fromVersion` (exclusive); 410 when that is older than history. */
  eventsSince(fromVersion: number): StoreEvent[] {
    if (fromVersion < this.compacted) {
      throw apiError(
        410,
        `too old resource version: ${fromVersion} (${this.compacted + 1})`,
        'Expired',
      );
    }
    return this.log.filter((e) => e.resourceVersion > fromVersion);
  }

  /**
   * Drop the watch history, as etcd compaction does: the resourceVersion moves on (other
   * writes in the cluster) and every version seen so far is too old to watch from.
   */
  expireHistory(): void {
    this.rv += 1;
    this.compacted = this.rv;
    this.log.length = 0;
  }

  /** Stop emitting and collecting (the server is shutting down). */
  close(): void {
    this.isClosed = true;
    this.listeners.clear();
  }

  protected key(ns: string | undefined, name: string): string {
    return `${ns ?? ''}/${name}`;
  }

  protected bucket(resource: string): Map<string, KubeObject> {
    this.type(resource);
    return this.objects.get(resource)!;
  }

  /** The stored object itself (not a copy; callers must not change it), or undefined. */
  protected stored(
    rt: ResourceType,
    namespace: string | undefined,
    name: string,
  ): KubeObject | undefined {
    return this.bucket(rt.resource).get(this.key(rt.namespaced ? namespace : undefined, name));
  }

  // -------------------------------------------------------------------------------------
  // Reads

  get<T = KubeObject>(
    resource: string,
    namespace: string | undefined,
    name: string,
  ): T | undefined {
    const o = this.stored(this.type(resource), namespace, name);
    return o ? (clone(o) as T) : undefined;
  }

  getOrThrow<T = KubeObject>(resource: string, namespace: string | undefined, name: string): T {
    const o = this.get<T>(resource, namespace, name);
    if (!o) throw notFound(this.type(resource), name);
    return o;
  }

  list<T = KubeObject>(resource: string, opts: ListOptions = {}): T[] {
    const labels = parseLabelSelector(opts.labelSelector);
    const fields = parseFieldSelector(opts.fieldSelector);
    const out: KubeObject[] = [];
    for (const o of this.bucket(resource).values()) {
      if (opts.namespace && o.metadata.namespace !== opts.namespace) continue;
      if (!matchesLabels(labels, o.metadata.labels)) continue;
      if (!matchesFields(fields, o)) continue;
      out.push(clone(o));
    }
    out.sort((a, b) =>
      `${a.metadata.namespace ?? ''}/${a.metadata.name ?? ''}`.localeCompare(
        `${b.metadata.namespace ?? ''}/${b.metadata.name ?? ''}`,
      ),
    );
    return out as T[];
  }

  /** Every namespace that holds an object, plus `default`. */
  namespaces(): string[] {
    const s = new Set<string>(['default']);
    for (const b of this.objects.values())
      for (const o of b.values()) if (o.metadata.namespace) s.add(o.metadata.namespace);
    return [...s].sort();
  }

  /** Every stored object with its type, by type in registration order (not copies: read only). */
  *entries(): Generator<{ rt: ResourceType; obj: KubeObject }> {
    for (const rt of this.types.values())
      for (const obj of this.bucket(rt.resource).values()) yield { rt, obj };
  }

  findByUid(uid: string, namespace?: string): { rt: ResourceType; obj: KubeObject } | undefined {
    for (const e of this.entries()) {
      const o = e.obj;
      if (namespace && o.metadata.namespace && o.metadata.namespace !== namespace) continue;
      if (o.metadata.uid === uid) return e;
    }
    return undefined;
  }

  /**
   * Resolve when `predicate` holds for the object (undefined once it is gone), checked
   * now and on each change to it; rejects after timeoutMs naming what it waited for.
   */
  waitFor<T = KubeObject>(
    resource: string,
    namespace: string | undefined,
    name: string,
    predicate: (obj: T | undefined) => boolean,
    opts: { timeoutMs?: number; what?: string } = {},
  ): Promise<T | undefined> {
    const timeoutMs = opts.timeoutMs ?? 20_000;
    const what = opts.what ?? `${resource} ${namespace ? `${namespace}/` : ''}${name}`;
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const o = this.get<T>(resource, namespace, name);
        if (predicate(o)) {
          cleanup();
          resolve(o);
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        cleanup();
        const o = this.get(resource, namespace, name);
        reject(
          new Error(
            `timed out after ${timeoutMs} ms waiting for: ${what}; last state: ${
              o ? JSON.stringify({ metadata: o.metadata, status: o['status'] }) : 'absent'
            }`,
          ),
        );
      }, timeoutMs);
      const unsubscribe = this.subscribe((ev) => {
        if (
          ev.resource === resource &&
          ev.object.metadata.name === name &&
          (!namespace || ev.object.metadata.namespace === namespace)
        )
          check();
      });
      function cleanup(): void {
        clearTimeout(timer);
        unsubscribe();
      }
      check();
    });
  }

  // -------------------------------------------------------------------------------------
  // Committing a change

  /** Store (or drop, for DELETED) obj at the next resourceVersion and deliver the event. */
  protected commit(
    type: WatchEventType,
    rt: ResourceType,
    obj: KubeObject,
    previous: KubeObject | undefined,
  ): KubeObject {
    this.rv += 1;
    obj.metadata.resourceVersion = String(this.rv);
    const bucket = this.bucket(rt.resource);
    const k = this.key(obj.metadata.namespace, obj.metadata.name!);
    if (type === 'DELETED') bucket.delete(k);
    else bucket.set(k, obj);
    const ev: StoreEvent = {
      type,
      resource: rt.resource,
      object: clone(obj),
      resourceVersion: this.rv,
    };
    if (previous) ev.previous = clone(previous);
    this.log.push(ev);
    if (this.log.length > this.historyLimit) {
      const dropped = this.log.splice(0, this.log.length - this.historyLimit);
      this.compacted = Math.max(this.compacted, dropped[dropped.length - 1]!.resourceVersion);
    }
    this.deliver(ev);
    return obj;
  }

  /**
   * Every listener sees every event in resourceVersion order, as a real watch does. A
   * listener that writes while it handles an event (the kubelet binding a claim as it is
   * added) queues its event behind the one being delivered, instead of delivering it
   * first to the listeners after itself (an HTTP watch would then see version n+1 before
   * n, and an informer cache would go back to the older object).
   */
  private deliver(ev: StoreEvent): void {
    this.pending.push(ev);
    if (this.delivering) return;
    this.delivering = true;
    try {
      for (let next = this.pending.shift(); next; next = this.pending.shift()) {
        for (const l of [...this.listeners]) {
          try {
            l(next);
          } catch (err) {
            // A broken listener must not break the write; surface it where a test sees it.
            process.emitWarning(
              `fake kube store listener failed: ${(err as Error).stack ?? String(err)}`,
            );
          }
        }
      }
    } finally {
      this.delivering = false;
    }
  }
}
