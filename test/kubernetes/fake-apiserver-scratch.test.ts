import { it, expect } from 'vitest';
import { BatchV1Api, CoreV1Api } from '@kubernetes/client-node';
import { makeTrainJob } from '../builders/k8s.js';
import { ownedByJob } from '../../orchestrator/backends/kubernetes/objects.js';
import { startFakeCluster } from '../fakes/kubelet.js';

it('scratch: stoker objects in the fake', async () => {
  const c = await startFakeCluster({ kubelet: { gpus: 16 } });
  try {
    const { job, service } = makeTrainJob().nodes(2).resource('gpus', 4).build();
    console.log(JSON.stringify(job.spec?.template.spec?.containers, null, 1).slice(0, 4000)); c.store.create('priorityclasses', {metadata:{name:'stoker-training'}, value: 100}); c.store.create('persistentvolumeclaims', {metadata:{name:'stoker-runs', namespace:'stoker'}, spec:{accessModes:['ReadWriteMany'], resources:{requests:{storage:'1Gi'}}}}); c.store.create('secrets', {metadata:{name:'stoker-redis', namespace:'stoker'}, stringData:{url:'redis://x'}});
    const ns = job.metadata!.namespace ?? 'default';
    const batch = c.kubeConfig().makeApiClient(BatchV1Api);
    const core = c.kubeConfig().makeApiClient(CoreV1Api);
    const created = await batch.createNamespacedJob({ namespace: ns, body: job }).catch((e) => { console.log(e.body); throw e; });
    if (service) await core.createNamespacedService({ namespace: ns, body: ownedByJob(service, { name: created.metadata!.name!, uid: created.metadata!.uid! }) }).catch((e) => { console.log(e.body); throw e; });
    await new Promise((r) => setTimeout(r, 1500));
    for (const p of c.store.list<any>('pods')) console.log('POD', p.metadata.name, p.status.phase, JSON.stringify(p.status.containerStatuses?.[0]?.state), JSON.stringify(p.status.conditions?.find((x: any) => x.type === 'PodScheduled')));
    console.log(JSON.stringify(c.store.get<any>('jobs', ns, created.metadata!.name!)?.status));
    await batch.deleteNamespacedJob({ namespace: ns, name: created.metadata!.name!, propagationPolicy: 'Background' });
    await new Promise((r) => setTimeout(r, 500));
    console.log('services left', c.store.list('services').length, 'pods left', c.store.list('pods').length);
    expect(true).toBe(true);
  } finally { await c.stop(); }
});
