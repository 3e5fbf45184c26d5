/**
 * A pod's way from bound to running on the simulated node (preparePod), as numbered
 * steps; a step that cannot go on leaves the pod Pending with the real kubelet's reason,
 * and the kubelet runs preparePod again when what it waits for appears:
 *
 * 1. Images: an image matching imagePullFailure never pulls: waiting ErrImagePull, then
 *    ImagePullBackOff after imagePullBackoffMs, with the kubelet's events.
 * 2. DNS: a pod with a subdomain waits in ContainerCreating until that (headless) Service
 *    exists. Its peers' names are rewritten to 127.0.0.1 as the container starts, so
 *    they must resolve then; a real pod would start and retry the name until it resolves,
 *    as torch's rendezvous does. (The backend creates a gang's Service just after its
 *    Job, owned by it.)
 * 3. Volumes and environment: a missing Secret or ConfigMap holds the pod in
 *    ContainerCreating (a volume: event FailedMount) or CreateContainerConfigError (env:
 *    event Failed), retried when it appears.
 * 4. Start every container after startDelayMs (containers.ts).
 */
import type { IPod } from 'kubernetes-models/v1/Pod';
import type { KubeObject } from '../objects/meta.js';
import { startContainer } from './containers.js';
import { containerEnvironment } from './environment.js';
import { containerStatuses } from './pod-status.js';
import { ConfigError, type KubeletContext, type PodRun } from './types.js';
import { setUpVolumes } from './volumes.js';

type Envs = Map<string, Record<string, string>>;

export function preparePod(ctx: KubeletContext, pod: IPod, run: PodRun): void {
  if (failImagePulls(ctx, pod, run)) return;
  const subdomain = pod.spec?.subdomain;
  if (
    subdomain &&
    ctx.opts.resolveServiceNames !== false &&
    !ctx.store.get('services', run.namespace, subdomain)
  ) {
    run.stage = 'awaiting-service';
    return;
  }
  const envs = resolveConfig(ctx, pod, run);
  if (!envs) return;
  run.stage = 'starting';
  for (const cr of run.containers) cr.waiting = { reason: 'ContainerCreating' };
  const start = (): void => {
    if (run.removed || ctx.stopped || run.terminating || run.stage !== 'starting') return;
    const current = ctx.store.get<IPod>('pods', run.namespace, run.name);
    if (!current || current.metadata?.uid !== run.uid) return;
    run.stage = 'running';
    for (const c of current.spec?.containers ?? [])
      startContainer(ctx, current, run, c, envs.get(c.name) ?? {});
    ctx.afterContainerChange(run);
  };
  const t = setTimeout(start, ctx.opts.startDelayMs ?? 0);
  t.unref();
  run.timers.push(t);
}

/** Step 1: true when an image of the pod fails to pull (the pod stays waiting). */
function failImagePulls(ctx: KubeletContext, pod: IPod, run: PodRun): boolean {
  const fail = ctx.opts.imagePullFailure;
  const pullFails = (image: string): boolean =>
    !!fail && (typeof fail === 'function' ? fail(image) : fail.test(image));
  const bad = (pod.spec?.containers ?? []).filter((c) => pullFails(c.image ?? ''));
  if (bad.length === 0) return false;
  const event = (type: 'Normal' | 'Warning', reason: string, message: string): void =>
    ctx.store.recordEvent(pod as unknown as KubeObject, type, reason, message, 'kubelet');
  const showStatus = (): void =>
    ctx.writeStatus(run, (status, p) => {
      status.containerStatuses = containerStatuses(run, p);
    });
  run.stage = 'pull-failed';
  for (const c of bad) {
    const image = c.image ?? '';
    const cr = run.containers.find((x) => x.name === c.name)!;
    const msg = `rpc error: code = NotFound desc = failed to pull and unpack image "${image}": failed to resolve reference "${image}": ${image}: not found`;
    cr.waiting = { reason: 'ErrImagePull', message: msg };
    event('Normal', 'Pulling', `Pulling image "${image}"`);
    event('Warning', 'Failed', `Failed to pull image "${image}": ${msg}`);
    event('Warning', 'Failed', 'Error: ErrImagePull');
  }
  showStatus();
  const t = setTimeout(() => {
    if (run.removed || run.stage !== 'pull-failed') return;
    for (const c of bad) {
      const image = c.image ?? '';
      const cr = run.containers.find((x) => x.name === c.name)!;
      cr.waiting = { reason: 'ImagePullBackOff', message: `Back-off pulling image "${image}"` };
      event('Normal', 'BackOff', `Back-off pulling image "${image}"`);
      event('Warning', 'Failed', 'Error: ImagePullBackOff');
    }
    showStatus();
  }, ctx.opts.imagePullBackoffMs ?? 100);
  t.unref();
  run.timers.push(t);
  return true;
}

/**
 * Step 3: set up the pod's volumes and each container's environment; undefined (the pod
 * waiting, with its reason and a Warning event the first time) when something is missing.
 */
function resolveConfig(ctx: KubeletContext, pod: IPod, run: PodRun): Envs | undefined {
  let problem: { reason: string; message: string; event: string } | undefined;
  try {
    run.mounts = setUpVolumes(ctx.store, ctx.mountRoot, pod, run);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    problem = { reason: 'ContainerCreating', message: err.message, event: 'FailedMount' };
  }
  const envs: Envs = new Map();
  if (!problem) {
    for (const c of pod.spec?.containers ?? []) {
      try {
        envs.set(c.name, containerEnvironment(ctx, pod, c, run));
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        problem = { reason: 'CreateContainerConfigError', message: err.message, event: 'Failed' };
        break;
      }
    }
  }
  if (!problem) return envs;
  const first = run.stage !== 'config-error';
  run.stage = 'config-error';
  for (const cr of run.containers)
    cr.waiting =
      problem.reason === 'ContainerCreating'
        ? { reason: 'ContainerCreating' }
        : { reason: problem.reason, message: problem.message };
  ctx.writeStatus(run, (status, p) => {
    status.containerStatuses = containerStatuses(run, p);
  });
  if (first)
    ctx.store.recordEvent(
      pod as unknown as KubeObject,
      'Warning',
      problem.event,
      problem.event === 'Failed' ? `Error: ${problem.message}` : problem.message,
      'kubelet',
    );
  return undefined;
}
