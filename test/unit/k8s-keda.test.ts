/**
 * k8s/keda/: the KEDA example agrees with the rest of the install and with the API it
 * reads: the ScaledObject scales the Deployment it names, its URL is the controller
 * Service's (name, namespace, port) and the backlog route of the pool the Deployment's
 * workers serve, its valueLocation is a number field of that route's answer, its token
 * is the API's read token, and the workers start through stoker-env-fd like the pods
 * the backend renders.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { packageRoot } from '../../common/paths.js';
import { PoolBacklog } from '../../orchestrator/http/backlog.js';
import { kedaProblems } from '../util/keda.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- parsed YAML, checked field by field
type Any = Record<string, any>;

const K8S = join(packageRoot(), 'k8s');
const docs = (file: string): Any[] =>
  parseAllDocuments(readFileSync(join(K8S, file), 'utf8')).map((d) => d.toJS() as Any);
const kindOf = (list: Any[], kind: string): Any => {
  const found = list.find((d) => d.kind === kind);
  expect(found, kind).toBeDefined();
  return found as Any;
};

describe('k8s/keda/pool-gen.yaml', () => {
  const keda = docs('keda/pool-gen.yaml');
  const deployment = kindOf(keda, 'Deployment');
  const scaled = kindOf(keda, 'ScaledObject');
  const auth = kindOf(keda, 'TriggerAuthentication');
  const trigger = scaled.spec.triggers[0];

  it('is structurally what KEDA accepts', () => {
    expect(kedaProblems(scaled)).toEqual([]);
    expect(kedaProblems(auth)).toEqual([]);
    // And the checker is not blind: a broken trigger is caught.
    const broken = structuredClone(scaled);
    broken.spec.triggers[0].metadata.targetValue = 4;
    delete broken.spec.triggers[0].authenticationRef;
    expect(kedaProblems(broken)).toEqual([
      'spec.triggers[0].metadata.targetValue must be a string',
      'spec.triggers[0].authenticationRef is required with authMode',
    ]);
  });

  it("scales the Deployment of the pool whose backlog it reads, at the controller Service's address", () => {
    expect(scaled.spec.scaleTargetRef.name).toBe(deployment.metadata.name);
    const container = deployment.spec.template.spec.containers[0];
    const pool = container.command[container.command.indexOf('--pool') + 1];
    expect(deployment.metadata.labels['stoker.dev/pool']).toBe(pool);

    const base = docs('base/kustomization.yaml')[0] as Any;
    const service = kindOf(docs('base/controller.yaml'), 'Service');
    const url = new URL(trigger.metadata.url);
    expect(url.hostname).toBe(`${service.metadata.name}.${base.namespace}.svc`);
    expect(Number(url.port)).toBe(service.spec.ports[0].port);
    expect(url.pathname).toBe(`/api/v1/pools/${pool}/backlog`);
    // valueLocation is a top-level number of the route's answer.
    const field =
      PoolBacklog.shape[trigger.metadata.valueLocation as keyof typeof PoolBacklog.shape];
    expect(field?.safeParse(3).success).toBe(true);
  });

  it("authenticates with the API's read token, from the Secret the controller reads it from", () => {
    expect(trigger.metadata.authMode).toBe('bearer');
    expect(trigger.authenticationRef.name).toBe(auth.metadata.name);
    const ref = auth.spec.secretTargetRef[0];
    expect(ref.parameter).toBe('token');
    const controller = kindOf(docs('base/controller.yaml'), 'Deployment');
    const env = controller.spec.template.spec.containers[0].env as Any[];
    const readToken = env.find((e) => e.name === 'STOKER_READ_TOKEN');
    expect(readToken?.valueFrom.secretKeyRef).toEqual({ name: ref.name, key: ref.key });
  });

  it('starts its workers like the pods the backend renders: through stoker-env-fd, with the Secret-fed variables listed', () => {
    const container = deployment.spec.template.spec.containers[0];
    expect(container.command.slice(0, 3)).toEqual(['stoker-env-fd', 'stoker', 'worker']);
    const env = container.env as Any[];
    const fromSecrets = env.filter((e) => e.valueFrom?.secretKeyRef).map((e) => e.name);
    expect(env.find((e) => e.name === 'STOKER_SECRET_ENV')?.value.split(' ')).toEqual(fromSecrets);
    const config = kindOf(docs('base/controller-config.yaml'), 'ConfigMap');
    expect(container.image).toBe(config.data.STOKER_K8S_WORKER_IMAGE);
    expect(env.find((e) => e.name === 'STOKER_PREFIX')?.value).toBe(config.data.STOKER_PREFIX);
    expect(env.find((e) => e.name === 'STOKER_HOME')?.value).toBe(config.data.STOKER_HOME);
    const mount = container.volumeMounts.find((m: Any) => m.name === 'runs');
    expect(mount.mountPath).toBe(config.data.STOKER_K8S_RUNS_MOUNT);
    const volume = deployment.spec.template.spec.volumes.find((v: Any) => v.name === 'runs');
    expect(volume.persistentVolumeClaim.claimName).toBe(config.data.STOKER_K8S_RUNS_CLAIM);
    expect(deployment.spec.template.spec.automountServiceAccountToken).toBe(false);
  });
});
