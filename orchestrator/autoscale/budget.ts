/**
 * The GPU budget of autoscaled pools (issue 13, item 3), pure: after decide() has said
 * what each pool asks for, share a settable number of GPUs between the pools by their
 * backlog in GPU-seconds, so that one big pool cannot starve another.
 *
 *   allocateGpus(input) -> Allocation   the replicas each pool may have, with the reason
 *                                       when it was cut
 *   backlogGpuSeconds(...)              a pool's weight: backlog x seconds a shard x GPUs
 *
 * What counts:
 *   - a pool worker costs the GPUs its pod asks for (the pool's resources.gpus; a worker
 *     pod is one node); a 0-GPU pool is not limited and passes through untouched;
 *   - a training stage running, or waiting for its GPUs, holds resources.gpus x nodes of
 *     the same budget (at most the scope's whole budget: a stage larger than the budget
 *     still leaves the pools nothing, never less than nothing);
 *   - scopes: the controller's budget (null: none), and one per Kueue LocalQueue that has
 *     a budget (a pool's queue is the `kubernetes.queueName` of the stage that declares
 *     it, which its worker Jobs carry as `kueue.x-k8s.io/queue-name`; a training stage's
 *     its own). A pool or stage of a queue counts in the controller's scope and in its
 *     queue's; a queue without a budget only in the controller's.
 *
 * The rule, for each scope's GPUs left after training:
 *   1. floors: each pool with a backlog gets one worker, the largest backlog (GPU-seconds)
 *      first, while every scope it counts in has room (a budget smaller than the number
 *      of pools serves the largest backlogs);
 *   2. shares: then one worker at a time to the pool with the fewest GPUs per GPU-second
 *      of backlog (weighted max-min fairness: the shares end in proportion to the
 *      backlogs), never above a pool's own `desired`;
 *   3. pools that ask for workers without a backlog (holding until their idle timeout, or
 *      their minReplicas) get what is left, evenly by GPUs;
 *   4. growth that fits now: a pool growing past the workers it has (pods that exist,
 *      pending ones included) may add only the GPUs free at this moment, counting every
 *      pool's current pods and its draining workers (they hold their GPUs until their
 *      shard ends): a pool that was cut drains first, the other grows after. The shares
 *      of steps 1-3 do not depend on who holds what now, so a scale-down in one pool and
 *      the growth of another settle instead of swapping workers back and forth.
 *
 * One worker at a time keeps nested scopes exact (a pool stops when any of its scopes is
 * full, the others go on); it costs O(workers x pools) per pass, microseconds at 1,000
 * workers (bench/fleet measures it).
 */

/** GPUs the autoscaled pools may share: the controller's (null: none) and per Kueue queue. */
export interface GpuBudget {
  controller: number | null;
  /** LocalQueue name -> GPUs. A queue left out has no budget of its own. */
  queues: Readonly<Record<string, number>>;
}

export const NO_BUDGET: GpuBudget = { controller: null, queues: {} };

export interface PoolDemand {
  name: string;
  /** GPUs one worker's pod asks for (resources.gpus); 0: the budget does not apply. */
  gpusPerWorker: number;
  /** What decide() asks for. */
  desired: number;
  /** The pool's backlog in GPU-seconds (backlogGpuSeconds()); its weight in the shares. */
  backlogGpuSeconds: number;
  /** The Kueue LocalQueue its worker Jobs name, if any. */
  queue?: string | undefined;
  /** Worker pods that exist and are not draining (pending ones included): they hold GPUs. */
  workers: number;
  /** Workers draining: they hold their GPUs until their shard ends. */
  draining: number;
}

export interface TrainingDemand {
  /** `${runId}/${stage}`, for the messages. */
  name: string;
  /** resources.gpus x resources.nodes. */
  gpus: number;
  queue?: string | undefined;
  state: 'running' | 'waiting';
}

export interface PoolGrant {
  name: string;
  /** The replicas the pool may ask of its backend now. */
  replicas: number;
  /** Its share of the budget (steps 1-3): what it may grow to once GPUs are free. */
  share: number;
  desired: number;
  /** Null: not cut (or not limited: a 0-GPU pool, no budget). */
  reason: 'GpuBudget' | 'GpuBudgetInUse' | null;
  /** Says who holds the GPUs: `GPU budget: 8 of 8 GPUs in use (...); gen-a gets 3 of the 6 it asks for`. */
  message: string | null;
}

export interface ScopeUse {
  /** `controller`, or `queue <name>`. */
  scope: string;
  total: number;
  /** GPUs of training stages (running and waiting), as counted. */
  training: number;
  /** Pool -> GPUs of its share. */
  pools: Record<string, number>;
  /** training + the pools' shares. */
  allocated: number;
}

export interface Allocation {
  pools: PoolGrant[];
  scopes: ScopeUse[];
}

/** A pool's weight: the seconds of work its backlog holds, times what a worker costs. */
export function backlogGpuSeconds(
  backlogShards: number,
  shardSeconds: number | null,
  gpusPerWorker: number,
): number {
  // Before a shard has been measured (and with no assumption), a shard counts as 1 s:
  // the pools are then weighed by their shard counts.
  return backlogShards * (shardSeconds ?? 1) * gpusPerWorker;
}

interface Scope {
  key: string;
  total: number;
  training: number;
  trainingNames: string[];
  free: number;
}

interface Slot {
  pool: PoolDemand;
  scopes: Scope[];
  alloc: number;
  /** The first scope found full while the pool still wanted more. */
  blockedBy: Scope | null;
}

export function allocateGpus(input: {
  budget: GpuBudget;
  pools: readonly PoolDemand[];
  training: readonly TrainingDemand[];
}): Allocation {
  const scopes = makeScopes(input.budget, input.training);
  const slots: Slot[] = input.pools.map((pool) => ({
    pool,
    scopes: scopesOf(scopes, pool.queue),
    alloc: 0,
    blockedBy: null,
  }));
  const limited = slots.filter((s) => s.pool.gpusPerWorker > 0 && s.scopes.length > 0);
  const withBacklog = limited.filter((s) => s.pool.backlogGpuSeconds > 0);
  // 1. Floors, the largest backlog first.
  for (const s of [...withBacklog].sort(byBacklog)) if (s.pool.desired > 0) give(s);
  // 2. Shares by backlog; 3. the rest, evenly by GPUs.
  fill(withBacklog, (s) => (s.alloc * s.pool.gpusPerWorker) / s.pool.backlogGpuSeconds);
  fill(
    limited.filter((s) => s.pool.backlogGpuSeconds <= 0),
    (s) => s.alloc * s.pool.gpusPerWorker,
  );
  const uses = [...scopes.values()].map((sc) => scopeUse(sc, limited));
  // 4. Growth into the GPUs free now.
  const now = freeNow(scopes, limited, input.pools);
  return {
    pools: slots.map((s) => grant(s, limited.includes(s), now, uses)),
    scopes: uses,
  };
}

function makeScopes(budget: GpuBudget, training: readonly TrainingDemand[]): Map<string, Scope> {
  const scopes = new Map<string, Scope>();
  const add = (key: string, total: number) =>
    scopes.set(key, { key, total, training: 0, trainingNames: [], free: total });
  if (budget.controller !== null) add('controller', budget.controller);
  for (const [q, total] of Object.entries(budget.queues)) add(queueKey(q), total);
  for (const t of training) {
    for (const sc of scopesOf(scopes, t.queue)) {
      const held = Math.min(t.gpus, sc.free);
      sc.training += held;
      sc.free -= held;
      sc.trainingNames.push(`${t.name} ${t.gpus}${t.state === 'waiting' ? ' waiting' : ''}`);
    }
  }
  return scopes;
}

const queueKey = (q: string) => `queue ${q}`;

function scopesOf(scopes: Map<string, Scope>, queue: string | undefined): Scope[] {
  const out: Scope[] = [];
  const c = scopes.get('controller');
  if (c) out.push(c);
  const q = queue === undefined ? undefined : scopes.get(queueKey(queue));
  if (q) out.push(q);
  return out;
}

const byBacklog = (a: Slot, b: Slot) =>
  b.pool.backlogGpuSeconds - a.pool.backlogGpuSeconds || a.pool.name.localeCompare(b.pool.name);

/** One more worker for the slot if each of its scopes has room; false (and why) if not. */
function give(s: Slot): boolean {
  const g = s.pool.gpusPerWorker;
  const full = s.scopes.find((sc) => sc.free < g);
  if (full) {
    s.blockedBy ??= full;
    return false;
  }
  for (const sc of s.scopes) sc.free -= g;
  s.alloc++;
  return true;
}

/** Give workers one at a time to the slot with the lowest `level`, up to each one's desired. */
function fill(slots: Slot[], level: (s: Slot) => number): void {
  let open = slots.filter((s) => s.alloc < s.pool.desired);
  while (open.length > 0) {
    let best = open[0] as Slot;
    for (const s of open) {
      const d = level(s) - level(best);
      if (d < 0 || (d === 0 && byBacklog(s, best) < 0)) best = s;
    }
    if (!give(best) || best.alloc >= best.pool.desired) open = open.filter((s) => s !== best);
  }
}

function scopeUse(sc: Scope, limited: Slot[]): ScopeUse {
  const pools: Record<string, number> = {};
  for (const s of limited)
    if (s.scopes.includes(sc) && s.alloc > 0) pools[s.pool.name] = s.alloc * s.pool.gpusPerWorker;
  const allocated = sc.training + Object.values(pools).reduce((a, b) => a + b, 0);
  return { scope: sc.key, total: sc.total, training: sc.training, pools, allocated };
}

interface FreeNow {
  /** Pool -> the replicas it may have now (its share, or less while GPUs are held). */
  replicas: Map<string, number>;
  /** Pool -> the scope whose held GPUs stopped its growth, with what holds them. */
  heldBy: Map<string, { scope: Scope; held: number; draining: number }>;
}

/** Step 4: growth limited to the GPUs no pod holds now; the largest backlog grows first. */
function freeNow(scopes: Map<string, Scope>, limited: Slot[], all: readonly PoolDemand[]): FreeNow {
  const held = new Map<Scope, { held: number; draining: number }>();
  for (const sc of scopes.values()) held.set(sc, { held: sc.training, draining: 0 });
  const slotOf = new Map(limited.map((s) => [s.pool.name, s]));
  for (const p of all) {
    const s = slotOf.get(p.name);
    if (!s) continue;
    for (const sc of s.scopes) {
      const h = held.get(sc) as { held: number; draining: number };
      h.held += (p.workers + p.draining) * p.gpusPerWorker;
      h.draining += p.draining * p.gpusPerWorker;
    }
  }
  const replicas = new Map<string, number>();
  const heldBy = new Map<string, { scope: Scope; held: number; draining: number }>();
  for (const s of [...limited].sort(byBacklog)) {
    const { pool } = s;
    if (s.alloc <= pool.workers) {
      replicas.set(pool.name, s.alloc);
      continue;
    }
    const room = Math.min(
      ...s.scopes.map((sc) => {
        const h = held.get(sc) as { held: number };
        return Math.floor(Math.max(0, sc.total - h.held) / pool.gpusPerWorker);
      }),
    );
    const more = Math.min(s.alloc - pool.workers, room);
    for (const sc of s.scopes) (held.get(sc) as { held: number }).held += more * pool.gpusPerWorker;
    replicas.set(pool.name, pool.workers + more);
    if (more < s.alloc - pool.workers) {
      const sc = s.scopes.find((x) => {
        const h = held.get(x) as { held: number };
        return x.total - h.held < pool.gpusPerWorker;
      }) as Scope;
      heldBy.set(pool.name, { scope: sc, ...(held.get(sc) as { held: number; draining: number }) });
    }
  }
  return { replicas, heldBy };
}

function grant(s: Slot, limited: boolean, now: FreeNow, uses: ScopeUse[]): PoolGrant {
  const { pool } = s;
  const base = { name: pool.name, desired: pool.desired };
  if (!limited)
    return { ...base, replicas: pool.desired, share: pool.desired, reason: null, message: null };
  const replicas = now.replicas.get(pool.name) ?? s.alloc;
  if (s.alloc < pool.desired) {
    const sc = s.blockedBy as Scope;
    const use = uses.find((u) => u.scope === sc.key) as ScopeUse;
    const message = `${scopeLabel(sc)}: ${use.allocated} of ${sc.total} GPUs in use (${breakdown(sc, use)}); ${pool.name} gets ${s.alloc} of the ${pool.desired} it asks for`;
    return {
      ...base,
      replicas,
      share: s.alloc,
      reason: 'GpuBudget',
      message: replicas < s.alloc ? `${message}, ${replicas} until GPUs are free` : message,
    };
  }
  const h = now.heldBy.get(pool.name);
  if (h && replicas < s.alloc) {
    const draining = h.draining > 0 ? `, ${h.draining} by draining workers` : '';
    return {
      ...base,
      replicas,
      share: s.alloc,
      reason: 'GpuBudgetInUse',
      message: `${scopeLabel(h.scope)}: ${h.held} of ${h.scope.total} GPUs held${draining}; ${pool.name} grows to ${replicas} of its ${s.alloc} as they are freed`,
    };
  }
  return { ...base, replicas, share: s.alloc, reason: null, message: null };
}

const scopeLabel = (sc: Scope) =>
  sc.key === 'controller' ? 'GPU budget' : `GPU budget of Kueue queue ${sc.key.slice(6)}`;

function breakdown(sc: Scope, use: ScopeUse): string {
  const parts = [
    ...(sc.training > 0 ? [`training ${sc.trainingNames.join(', ')}`] : []),
    ...Object.entries(use.pools).map(([name, gpus]) => `${name} ${gpus}`),
  ];
  return parts.length > 0 ? parts.join(', ') : 'nothing';
}
