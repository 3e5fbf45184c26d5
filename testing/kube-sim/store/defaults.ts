/**
 * Defaulting: the fields the API server fills in when a client leaves them out, applied
 * to every create and update before validation.
 *
 * - Pod: restartPolicy Always, a 30 s termination grace period, ClusterFirst DNS, the
 *   default scheduler, imagePullPolicy from the image tag, the termination message path
 *   and policy, requests equal to limits for extended resources (nvidia.com/gpu); status
 *   Pending with its QoS class.
 * - Job: parallelism 1, completions 1 (non-indexed, parallelism 1), backoffLimit 6,
 *   completionMode NonIndexed, suspend false, podReplacementPolicy (Failed with a
 *   podFailurePolicy, else TerminatingOrFailed), the controller-uid selector and the
 *   template labels that go with it (unless manualSelector), the pod template's defaults.
 * - Service: type ClusterIP with an address from `allocateClusterIp`, sessionAffinity
 *   None, ports' protocol TCP and targetPort = port.
 * - Secret: type Opaque; stringData folded into base64 data.
 * - PersistentVolumeClaim: volumeMode Filesystem, status Pending.
 */
import { type Dict, type KubeObject, asDict, asList, isPlainObject } from '../objects/meta.js';
import type { ResourceType } from '../objects/resources.js';

export function applyDefaults(
  rt: ResourceType,
  obj: KubeObject,
  allocateClusterIp: () => string,
): void {
  switch (rt.kind) {
    case 'Pod':
      return defaultPod(obj);
    case 'Job':
      return defaultJob(obj);
    case 'Service':
      return defaultService(obj, allocateClusterIp);
    case 'Secret':
      return defaultSecret(obj);
    case 'PersistentVolumeClaim':
      return defaultClaim(obj);
    default:
      return;
  }
}

function defaultPod(obj: KubeObject): void {
  const spec = asDict(obj['spec']);
  obj['spec'] = spec;
  defaultPodSpec(spec);
  if (!isPlainObject(obj['status'])) obj['status'] = { phase: 'Pending', qosClass: qosClass(spec) };
}

function defaultJob(obj: KubeObject): void {
  const meta = obj.metadata;
  const spec = asDict(obj['spec']);
  obj['spec'] = spec;
  const uid = meta.uid!;
  if (spec['parallelism'] === undefined) spec['parallelism'] = 1;
  if (
    spec['completions'] === undefined &&
    spec['completionMode'] !== 'Indexed' &&
    spec['parallelism'] === 1
  )
    spec['completions'] = 1;
  if (spec['backoffLimit'] === undefined) spec['backoffLimit'] = 6;
  if (spec['completionMode'] === undefined) spec['completionMode'] = 'NonIndexed';
  if (spec['suspend'] === undefined) spec['suspend'] = false;
  if (spec['podReplacementPolicy'] === undefined)
    spec['podReplacementPolicy'] = spec['podFailurePolicy'] ? 'Failed' : 'TerminatingOrFailed';
  if (spec['manualSelector'] !== true && spec['selector'] === undefined)
    spec['selector'] = { matchLabels: { 'batch.kubernetes.io/controller-uid': uid } };
  const tpl = asDict(spec['template']);
  spec['template'] = tpl;
  const tmeta = asDict(tpl['metadata']);
  tpl['metadata'] = tmeta;
  if (spec['manualSelector'] !== true) {
    tmeta['labels'] = {
      ...asDict(tmeta['labels']),
      'batch.kubernetes.io/controller-uid': uid,
      'batch.kubernetes.io/job-name': meta.name!,
      'controller-uid': uid,
      'job-name': meta.name!,
    };
  }
  const pspec = asDict(tpl['spec']);
  tpl['spec'] = pspec;
  defaultPodSpec(pspec);
  if (!isPlainObject(obj['status'])) obj['status'] = {};
}

function defaultService(obj: KubeObject, allocateClusterIp: () => string): void {
  const spec = asDict(obj['spec']);
  obj['spec'] = spec;
  if (spec['type'] === undefined) spec['type'] = 'ClusterIP';
  if (spec['sessionAffinity'] === undefined) spec['sessionAffinity'] = 'None';
  if (spec['clusterIP'] === undefined || spec['clusterIP'] === '')
    spec['clusterIP'] = allocateClusterIp();
  if (spec['clusterIPs'] === undefined) spec['clusterIPs'] = [spec['clusterIP']];
  for (const p of asList(spec['ports'])) {
    if (p['protocol'] === undefined) p['protocol'] = 'TCP';
    if (p['targetPort'] === undefined) p['targetPort'] = p['port'];
  }
  if (!isPlainObject(obj['status'])) obj['status'] = { loadBalancer: {} };
}

function defaultSecret(obj: KubeObject): void {
  if (obj['type'] === undefined) obj['type'] = 'Opaque';
  const sd = obj['stringData'];
  if (isPlainObject(sd)) {
    const data = asDict(obj['data']);
    for (const [k, v] of Object.entries(sd)) data[k] = Buffer.from(String(v)).toString('base64');
    obj['data'] = data;
    delete obj['stringData'];
  }
}

function defaultClaim(obj: KubeObject): void {
  const spec = asDict(obj['spec']);
  obj['spec'] = spec;
  if (spec['volumeMode'] === undefined) spec['volumeMode'] = 'Filesystem';
  if (!isPlainObject(obj['status'])) obj['status'] = { phase: 'Pending' };
}

function defaultPodSpec(spec: Dict): void {
  if (spec['restartPolicy'] === undefined) spec['restartPolicy'] = 'Always';
  if (spec['terminationGracePeriodSeconds'] === undefined)
    spec['terminationGracePeriodSeconds'] = 30;
  if (spec['dnsPolicy'] === undefined) spec['dnsPolicy'] = 'ClusterFirst';
  if (spec['schedulerName'] === undefined) spec['schedulerName'] = 'default-scheduler';
  if (spec['securityContext'] === undefined) spec['securityContext'] = {};
  for (const c of [...asList(spec['containers']), ...asList(spec['initContainers'])]) {
    if (c['imagePullPolicy'] === undefined) {
      const image = String(c['image'] ?? '');
      c['imagePullPolicy'] =
        image.endsWith(':latest') || !/:[^/]+$/.test(image) ? 'Always' : 'IfNotPresent';
    }
    if (c['terminationMessagePath'] === undefined)
      c['terminationMessagePath'] = '/dev/termination-log';
    if (c['terminationMessagePolicy'] === undefined) c['terminationMessagePolicy'] = 'File';
    // Extended resources: a limit without a request requests the limit.
    const res = asDict(c['resources']);
    const limits = asDict(res['limits']);
    if (Object.keys(limits).length > 0) {
      const requests = asDict(res['requests']);
      for (const [k, v] of Object.entries(limits)) if (requests[k] === undefined) requests[k] = v;
      res['requests'] = requests;
      c['resources'] = res;
    }
  }
}

function qosClass(spec: Dict): string {
  const cs = asList(spec['containers']);
  const any = cs.some((c) => Object.keys(asDict(asDict(c['resources'])['requests'])).length > 0);
  return any ? 'Burstable' : 'BestEffort';
}
