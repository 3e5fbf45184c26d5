/**
 * The simulated cluster's garbage collector: what happens to an object's dependents (the
 * objects whose ownerReferences name it) when it is deleted, by propagationPolicy:
 *
 * - Background: the owner goes at once; its dependents are deleted after it, except one
 *   that still has another live owner.
 * - Foreground: the owner stays, with the `foregroundDeletion` finalizer, until its
 *   dependents are gone; then the finalizer is dropped and the owner goes.
 * - Orphan: the dependents lose their reference to the owner and stay.
 *
 * Collection runs on a later turn of the event loop (setImmediate), as the real collector
 * runs after the delete that started it. NotFound is expected there (someone else was
 * first); any other failure is a process warning, where a test sees it.
 */
import { type KubeObject, KubeApiError } from '../objects/meta.js';
import { FOREGROUND_FINALIZER, type ResourceType } from '../objects/resources.js';
import type { FakeKubeStore, PropagationPolicy } from './store.js';

export interface Dependent {
  rt: ResourceType;
  obj: KubeObject;
}

export class GarbageCollector {
  private readonly store: FakeKubeStore;
  private readonly enabled: boolean;

  constructor(store: FakeKubeStore, enabled: boolean) {
    this.store = store;
    this.enabled = enabled;
  }

  /** The stored objects that name owner in their ownerReferences (in its namespace). */
  dependentsOf(owner: KubeObject): Dependent[] {
    const uid = owner.metadata.uid;
    const out: Dependent[] = [];
    if (!uid) return out;
    for (const { rt, obj: o } of this.store.entries()) {
      if (
        owner.metadata.namespace &&
        rt.namespaced &&
        o.metadata.namespace !== owner.metadata.namespace
      )
        continue;
      if ((o.metadata.ownerReferences ?? []).some((r) => r.uid === uid)) out.push({ rt, obj: o });
    }
    return out;
  }

  /** Drop the reference to the owner with this uid from a dependent (Orphan). */
  orphan(d: Dependent, uid: string): void {
    this.store.mutate(
      d.rt.resource,
      d.obj.metadata.namespace,
      d.obj.metadata.name!,
      (o: KubeObject) => {
        const refs = (o.metadata.ownerReferences ?? []).filter((r) => r.uid !== uid);
        if (refs.length) o.metadata.ownerReferences = refs;
        else delete o.metadata.ownerReferences;
      },
    );
  }

  /** Soon: delete owner's dependents with `policy`, then let owner go if it waits for them. */
  collectLater(owner: KubeObject, policy: PropagationPolicy): void {
    this.schedule(() => this.collectDependents(owner, policy));
  }

  /** Soon: an owner waiting in foreground deletion may go, if its last dependent has gone. */
  releaseOwnerLater(ownerUid: string, namespace: string | undefined): void {
    this.schedule(() => this.finishForeground(ownerUid, namespace));
  }

  private schedule(fn: () => void): void {
    if (!this.enabled) return;
    setImmediate(() => {
      if (this.store.closed) return;
      try {
        fn();
      } catch (err) {
        if (!(err instanceof KubeApiError && err.code === 404))
          process.emitWarning(
            `fake kube garbage collector failed: ${(err as Error).stack ?? String(err)}`,
          );
      }
    });
  }

  private collectDependents(owner: KubeObject, policy: PropagationPolicy): void {
    for (const d of this.dependentsOf(owner)) {
      if (d.obj.metadata.deletionTimestamp) continue;
      // Only when no other owner is still alive.
      const liveOwners = (d.obj.metadata.ownerReferences ?? []).filter(
        (r) => r.uid !== owner.metadata.uid && this.store.findByUid(r.uid),
      );
      if (liveOwners.length > 0) continue;
      try {
        this.store.delete(d.rt.resource, d.obj.metadata.namespace, d.obj.metadata.name!, {
          propagationPolicy: policy,
        });
      } catch (err) {
        if (!(err instanceof KubeApiError && err.code === 404)) throw err;
      }
    }
    this.finishForeground(owner.metadata.uid!, owner.metadata.namespace);
  }

  private finishForeground(ownerUid: string, namespace: string | undefined): void {
    const found = this.store.findByUid(ownerUid, namespace);
    if (!found) return;
    const { rt, obj } = found;
    if (
      !obj.metadata.deletionTimestamp ||
      !(obj.metadata.finalizers ?? []).includes(FOREGROUND_FINALIZER)
    )
      return;
    if (this.dependentsOf(obj).length > 0) return;
    this.store.mutate(rt.resource, obj.metadata.namespace, obj.metadata.name!, (o: KubeObject) => {
      o.metadata.finalizers = (o.metadata.finalizers ?? []).filter(
        (f) => f !== FOREGROUND_FINALIZER,
      );
    });
  }
}
