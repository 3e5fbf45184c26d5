/**
 * `pods/log`: a container's output, read from the PodLogSource the simulated kubelet
 * registers (tailLines, limitBytes, previous), or followed (`follow=true`: a chunked
 * text stream that ends when the container terminates or the client goes). Errors are
 * the real server's 400s: no container named when the pod has several, a container the
 * pod does not have, a container that has not started.
 */
import type { ServerResponse } from 'node:http';
import { apiError, isPlainObject } from '../objects/meta.js';
import type { FakeKubeStore } from '../store/store.js';
import type { Responder } from './respond.js';
import type { PodLogSource } from './types.js';

export function servePodLog(
  store: FakeKubeStore,
  src: PodLogSource | undefined,
  respond: Responder,
  res: ServerResponse,
  ns: string,
  name: string,
  q: URLSearchParams,
): void {
  const pod = store.getOrThrow('pods', ns, name);
  const spec = isPlainObject(pod['spec']) ? pod['spec'] : {};
  const containers = Array.isArray(spec['containers'])
    ? (spec['containers'] as { name?: string }[])
    : [];
  const container = q.get('container') ?? undefined;
  if (container === undefined && containers.length > 1)
    throw apiError(
      400,
      `a container name must be specified for pod ${name}, choose one of: [${containers.map((c) => c.name).join(' ')}]`,
    );
  if (container !== undefined && !containers.some((c) => c.name === container))
    throw apiError(400, `container ${container} is not valid for pod ${name}`);
  if (!src)
    throw apiError(
      400,
      `container "${containers[0]?.name ?? ''}" in pod "${name}" is waiting to start: ContainerCreating`,
    );
  const opts: { tailLines?: number; limitBytes?: number; previous?: boolean } = {};
  if (q.get('tailLines')) opts.tailLines = Number(q.get('tailLines'));
  if (q.get('limitBytes')) opts.limitBytes = Number(q.get('limitBytes'));
  if (q.get('previous') === 'true') opts.previous = true;
  const text = src.read(ns, name, container, opts);
  const follow = q.get('follow') === 'true';
  if (!follow) {
    respond.send(res, 200, text);
    return;
  }
  res.writeHead(200, { 'Content-Type': 'text/plain', 'Transfer-Encoding': 'chunked' });
  res.write(text);
  let done = false;
  const unsubscribe = src.follow(
    ns,
    name,
    container,
    (chunk) => {
      if (!done) res.write(chunk);
    },
    () => {
      if (done) return;
      done = true;
      res.end();
    },
  );
  res.on('close', () => {
    done = true;
    unsubscribe();
  });
}
