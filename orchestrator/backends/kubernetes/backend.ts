/**
 * The `kubernetes` backend: a dispatched task attempt becomes a Job (one pod, or an
 * Indexed Job with one pod per node plus a headless Service for rendezvous), built in
 * code (objects.ts); a pool is one Job per worker. This class puts the parts together
 * behind the Backend interface (../types.ts):
 *
 *   api.ts           every request, through one ApiGate (api-gate.ts: a token bucket,
 *                    the API server's Retry-After on 429, retries of transient failures)
 *   cache.ts         three reflectors (reflector.ts) caching stoker's Jobs, pods and the
 *                    FailedCreate events of Jobs, and the wake-ups of waits
 *   units.ts         launch, observe, wait, terminate (observe.ts: a Job -> UnitState)
 *   pool-workers.ts  ensurePool, stopPools (pools.ts: the sizing rules)
 *   collector.ts     collectGarbage, collectGarbageEvery (gc.ts: the rules)
 *   spec-rules.ts    checkSpec: what this backend cannot run (with access-rules.ts: what
 *                    runs may use; images.ts: images pinned by digest, when required)
 *
 * Reading comes from the caches, so an unchanged unit or pool costs no request: the
 * reconcile benchmark and the tests check 0 API requests per pass. The only direct read
 * is one GET of a Job created a moment ago and not yet cached, by an earlier controller.
 *
 * At start, compose.ts has collectGarbage() delete what earlier controllers left behind
 * and collectGarbageEvery() repeat it while this controller leads. At close, units and
 * (unless they do not outlive the controller: PoolSupport) pool workers keep running for
 * the next leader, which re-attaches to the units and adopts the workers by label.
 */
import { accessRule, BUILT_IN_ACCESS, type AccessPolicy } from './access-rules.js';
import { Watch, type KubeConfig, type V1Pod } from '@kubernetes/client-node';
import type { SpecIssue } from '../../../common/errors.js';
import type { Logger } from '../../../common/logger.js';
import { runRules, storedPaths } from '../../../common/spec/rules.js';
import type { NormalizedSpec } from '../../../common/spec/schema.js';
import { formatPath } from '../../../common/spec/values.js';
import type { Backend, LaunchRequest, PoolSpec, UnitState } from '../types.js';
import { ClusterApi } from './api.js';
import { ApiGate, type ApiGateOptions } from './api-gate.js';
import { ClusterCache, type BackendParts, type CacheStats } from './cache.js';
import { GarbageCollector, type AttemptLookup } from './collector.js';
import type { GarbageItem } from './gc.js';
import { PoolWorkers, type PoolSupport } from './pool-workers.js';
import type { WatchLike } from './reflector.js';
import { imageDigestRule } from './images.js';
import { COMPONENTS, LABELS, labelValueFor } from './names.js';
import { kubernetesSpecRules, namespaceRule } from './spec-rules.js';
import { Units, type UnitBuilders } from './units.js';

export interface KubernetesBackendOptions extends UnitBuilders {
  kc: KubeConfig;
  namespace: string;
  log: Logger;
  /**
   * A watch that heard nothing (no event, no bookmark) for this long is presumed dead and
   * its collection listed again (default 90 s: the API server sends a bookmark about
   * every minute to a watch that asks for them).
   */
  quietMs?: number;
  /** Rate limit and retries of the backend's requests (default 20/s, burst 40). */
  gate?: ApiGateOptions;
  /** A Watch to use instead of client-node's (tests). */
  watch?: WatchLike;
  /** What pools need (compose.ts); without it ensurePool() refuses. */
  pools?: PoolSupport;
  /** What runs may use in the cluster (access-rules.ts); default: the built-in policy. */
  access?: AccessPolicy;
  /** Stages' images must be pinned by digest (images.ts; STOKER_K8S_REQUIRE_IMAGE_DIGESTS). */
  requireImageDigests?: boolean;
}

export interface BackendStats {
  /** Requests this backend sent, by `verb resource` (retries included; watches apart). */
  requests: Record<string, number>;
  retries: number;
  reflectors: CacheStats;
}

export class KubernetesBackend implements Backend {
  readonly name = 'kubernetes';
  readonly unitsOutliveController = true;
  readonly gate: ApiGate;
  private readonly cache: ClusterCache;
  private readonly units: Units;
  private readonly pools: PoolWorkers;
  private readonly collector: GarbageCollector;
  private started = false;
  private closed = false;

  constructor(private readonly opts: KubernetesBackendOptions) {
    this.gate = new ApiGate({
      ...opts.gate,
      onRetry: (info) => {
        opts.log.warn(
          { what: info.what, attempt: info.attempt, delayMs: info.delayMs, err: errText(info.err) },
          'API request failed; retrying',
        );
        opts.gate?.onRetry?.(info);
      },
    });
    const api = new ClusterApi(opts.kc, opts.namespace, this.gate);
    this.cache = new ClusterCache(api, {
      watch: opts.watch ?? new Watch(opts.kc),
      quietMs: opts.quietMs,
      log: opts.log,
    });
    const parts: BackendParts = {
      api,
      cache: this.cache,
      log: opts.log,
      closed: () => this.closed,
    };
    this.units = new Units(parts, opts);
    this.pools = new PoolWorkers(parts, opts.pools);
    this.collector = new GarbageCollector(parts, () => this.started);
  }

  /** Fill the caches (one list each), then keep them current through watches. */
  async start(): Promise<void> {
    await this.cache.start();
    this.started = true;
  }

  stats(): BackendStats {
    return {
      requests: Object.fromEntries(this.gate.sent),
      retries: this.gate.retries,
      reflectors: this.cache.stats(),
    };
  }

  /**
   * What this backend cannot run (spec-rules.ts), each with the field's path: the rules
   * `stoker validate` applies too, and a stage namespace other than this controller's.
   * Why not create a stage's Jobs in the namespace it names: the controller's Role covers
   * Jobs, pods and Services in its own namespace only (least privilege, k8s/base), and its
   * caches watch that one namespace; reaching others would take a Role in each and a set
   * of watches per namespace (three more lists and watches each, on every controller
   * start). A run that names another namespace is refused before anything of it starts,
   * with the field's path, instead of its Jobs silently landing in the controller's
   * namespace.
   */
  checkSpec(spec: NormalizedSpec): SpecIssue[] {
    const rules = [
      namespaceRule(this.opts.namespace),
      kubernetesSpecRules,
      accessRule(this.opts.access ?? BUILT_IN_ACCESS),
      ...(this.opts.requireImageDigests ? [imageDigestRule] : []),
    ];
    // The built-in access rule is in both kubernetesSpecRules and this policy: once each.
    const seen = new Set<string>();
    return runRules(rules, spec, storedPaths(spec))
      .map((i) => ({ path: formatPath(i.path), message: i.message }))
      .filter((i) => !seen.has(`${i.path}\n${i.message}`) && seen.add(`${i.path}\n${i.message}`));
  }

  // -------------------------------------------------------------------------------------
  // Units (units.ts)

  launch(req: LaunchRequest): Promise<{ attached: boolean }> {
    return this.units.launch(req);
  }

  observe(unitName: string): Promise<UnitState> {
    return this.units.observe(unitName);
  }

  wait(
    unitName: string,
    signal?: AbortSignal,
    onNote?: (note: string) => void,
  ): Promise<UnitState> {
    return this.units.wait(unitName, signal, onNote);
  }

  terminate(unitName: string, opts: { graceSeconds: number; force?: boolean }): Promise<void> {
    return this.units.terminate(unitName, opts);
  }

  // -------------------------------------------------------------------------------------
  // Pools (pool-workers.ts)

  ensurePool(pool: PoolSpec, replicas: number): Promise<void> {
    return this.pools.ensure(pool, replicas);
  }

  stopPools(opts: { force?: boolean; drainMs?: number }): Promise<void> {
    return this.pools.stop(opts);
  }

  /** A pool's worker pods as the cache has them (the autoscaler's provisioning view). */
  poolPods(pool: string): V1Pod[] {
    const value = labelValueFor(pool);
    return this.cache
      .listPods()
      .filter(
        (p) =>
          p.metadata?.labels?.[LABELS.component] === COMPONENTS.pool &&
          p.metadata?.labels?.[LABELS.pool] === value,
      );
  }

  // -------------------------------------------------------------------------------------
  // Garbage collection (collector.ts)

  /** Delete stoker's objects that no live attempt owns (after start()); returns what was deleted. */
  collectGarbage(lookup: AttemptLookup): Promise<GarbageItem[]> {
    return this.collector.collect(lookup);
  }

  /** Collect again every `everyMs` while this backend runs (0: never). */
  collectGarbageEvery(everyMs: number, lookup: AttemptLookup): void {
    this.collector.every(everyMs, lookup);
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.collector.close();
    this.gate.close();
    await this.cache.stop();
  }
}

function errText(err: unknown): string {
  if (err instanceof Error) return err.message.split('\n')[0] ?? err.message;
  return String(err);
}
