/**
 * The Job of one attempt of a dispatched task:
 *
 *   nodes = 1  a Job with one pod
 *   nodes = N  an Indexed Job (parallelism = completions = N) plus a headless Service
 *              for rendezvous, whose pods' subdomain is that Service
 *
 * Rank variables of a multi-node Job (what `torchrun` and torch.distributed read; the
 * list of names is common/rank-env.ts):
 *
 *   NNODES, PET_NNODES                  N (nodes)
 *   NPROC_PER_NODE, PET_NPROC_PER_NODE  GPUs per node (1 without GPUs: one process per node)
 *   WORLD_SIZE                          N x NPROC_PER_NODE: processes in all, as torch means
 *                                       it (torchrun sets it again for its children)
 *   NODE_RANK, PET_NODE_RANK            the pod's completion index, from the annotation
 *                                       batch.kubernetes.io/job-completion-index
 *   MASTER_ADDR, PET_MASTER_ADDR        `${job}-0.${service}`: pod 0's stable DNS name
 *                                       (the Job controller sets each pod's hostname to
 *                                       `${job}-${index}`; the pod's subdomain is the
 *                                       headless Service, which publishes not-ready pods
 *                                       so that rank 0 resolves before it is Ready)
 *   MASTER_PORT, PET_MASTER_PORT        settings.masterPort (29500)
 *
 * A one-node Job gets the same variables with NNODES=1, NODE_RANK=0 and MASTER_ADDR
 * 127.0.0.1, so one payload command serves both shapes.
 *
 * Labels carry the run, task, stage and attempt (values cut and hashed when too long);
 * annotations carry the full ids and the unit name, which garbage collection reads.
 */
import type { V1ConfigMap, V1EnvVar, V1Job, V1Service } from '@kubernetes/client-node';
import { jobNameFor, labelValueFor, type NormalizedStage } from '../../../common/spec/schema.js';
import { taskWorkerArgs, type LaunchRequest } from '../types.js';
import { commonLabels, kubernetesOf, userLabels, workerJob } from './job-spec.js';
import {
  ANNOTATIONS,
  COMPLETION_INDEX_ANNOTATION,
  COMPONENTS,
  LABELS,
  serviceNameFor,
} from './names.js';
import { buildPodSpec } from './pod-spec.js';
import { mountRunFiles, runFilesConfigMap, type RunFiles } from './run-files.js';
import type { KubernetesSettings } from './settings.js';

export interface TrainJobRequest extends Omit<LaunchRequest, 'image'> {
  /** The stage's normalised spec (LaunchRequest.stage is its name). */
  stageSpec: NormalizedStage;
  /** The container image (the stage's, else settings.workerImage). */
  image: string;
  /** Where the Job goes (the stage's kubernetes.namespace, else settings.namespace). */
  namespace: string;
  /**
   * How the image runs stoker, e.g. ["stoker"]; `worker --task ...` is appended, and
   * settings.workerLauncher put in front (pod-spec.ts).
   */
  workerCommand: string[];
  /**
   * Plain variables for the worker (STOKER_PREFIX, STOKER_LOG_LEVEL...). Never a secret:
   * the Redis URL and the spec's secretEnv come from Secrets (settings.redisUrlSecret,
   * secretEnv[].secret); a variable that looks secret is refused.
   */
  env: Record<string, string>;
  settings: KubernetesSettings;
  /** The run's metadata.labels, copied onto the Job and its pods. */
  runLabels?: Record<string, string>;
  /** The run's files (spec.files), mounted from a ConfigMap (run-files.ts). */
  runFiles?: RunFiles | undefined;
}

export interface TrainJobObjects {
  job: V1Job;
  /**
   * The headless Service of a multi-node Job. Create the Job first, then this Service
   * owned by it (ownedByJob, with the uid the API server gave the Job), so that deleting
   * the Job or its TTL removes it too; a re-attaching launch creates it again if a crash
   * came between the two (AlreadyExists = fine). The pods resolve MASTER_ADDR only after
   * being scheduled and started, and torch's rendezvous retries until it resolves.
   */
  service?: V1Service;
  /**
   * The ConfigMap of the run's files (when its spec lists any), created and owned as the
   * Service is (run-files.ts).
   */
  configMap?: V1ConfigMap;
}

/** The Job (and for a gang, its headless Service) of one attempt of a dispatched task. */
export function buildTrainJob(req: TrainJobRequest): TrainJobObjects {
  const { settings, resources } = req;
  const k = kubernetesOf(req.stageSpec, resources.gpus > 0);
  const jobName = jobNameFor(req.taskId, req.attempt);
  const nodes = resources.nodes;
  const gang = nodes > 1;
  const serviceName = gang ? serviceNameFor(jobName) : undefined;
  const { labels, annotations } = trainJobMetadata(req);
  const masterAddr = serviceName ? `${jobName}-0.${serviceName}` : '127.0.0.1';
  const podSpec = buildPodSpec({
    settings,
    k,
    kind: req.stageSpec.kind,
    resources,
    image: req.image,
    command: [...req.workerCommand, 'worker', ...taskWorkerArgs(req)],
    env: req.env,
    secretEnv: req.stageSpec.payload.secretEnv,
    extraEnv: rankEnv({ nodes, gpus: resources.gpus, masterAddr, port: settings.masterPort }),
    graceSeconds: req.terminationGracePeriodSeconds,
    ports: gang ? [{ name: 'rendezvous', containerPort: settings.masterPort }] : [],
  });
  if (serviceName) podSpec.subdomain = serviceName;
  if (req.runFiles) mountRunFiles(podSpec, jobName, req.runFiles);
  const job = workerJob({
    name: jobName,
    namespace: req.namespace,
    labels,
    annotations,
    k,
    pods: nodes,
    indexed: gang,
    activeDeadlineSeconds: req.activeDeadlineSeconds,
    podSpec,
  });
  return {
    job,
    ...(serviceName
      ? { service: gangService(serviceName, jobName, req.namespace, labels, annotations, settings) }
      : {}),
    ...(req.runFiles ? { configMap: runFilesConfigMap(job, req.runFiles) } : {}),
  };
}

/** The Job's labels (selectable, cut to 63) and annotations (the full ids). */
function trainJobMetadata(req: TrainJobRequest): {
  labels: Record<string, string>;
  annotations: Record<string, string>;
} {
  const labels: Record<string, string> = {
    ...userLabels(req.runLabels),
    ...commonLabels(COMPONENTS.train),
    [LABELS.run]: labelValueFor(req.runId),
    [LABELS.task]: labelValueFor(req.taskId),
    [LABELS.stage]: labelValueFor(req.stage),
    [LABELS.attempt]: String(req.attempt),
  };
  const annotations = {
    [ANNOTATIONS.runId]: req.runId,
    [ANNOTATIONS.taskId]: req.taskId,
    [ANNOTATIONS.unit]: req.unitName,
    [ANNOTATIONS.stage]: req.stage,
    [ANNOTATIONS.attempt]: String(req.attempt),
  };
  return { labels, annotations };
}

/** The rank variables (see the header): a gang's node rank from the pod's completion index. */
function rankEnv(p: { nodes: number; gpus: number; masterAddr: string; port: number }): V1EnvVar[] {
  const { nodes, masterAddr } = p;
  const nproc = Math.max(p.gpus, 1);
  const nodeRank: V1EnvVar =
    nodes > 1
      ? {
          name: 'NODE_RANK',
          valueFrom: {
            fieldRef: { fieldPath: `metadata.annotations['${COMPLETION_INDEX_ANNOTATION}']` },
          },
        }
      : { name: 'NODE_RANK', value: '0' };
  return [
    { name: 'NNODES', value: String(nodes) },
    { name: 'NPROC_PER_NODE', value: String(nproc) },
    { name: 'WORLD_SIZE', value: String(nodes * nproc) },
    nodeRank,
    { name: 'MASTER_ADDR', value: masterAddr },
    { name: 'MASTER_PORT', value: String(p.port) },
    // torchrun reads PET_<OPTION> as the default of --<option>.
    { name: 'PET_NNODES', value: String(nodes) },
    { name: 'PET_NPROC_PER_NODE', value: String(nproc) },
    { ...nodeRank, name: 'PET_NODE_RANK' },
    // One process per node (CPU gloo, or a payload that starts no launcher): the process
    // is the node, so its global rank is the node rank. A launcher (torchrun) with several
    // processes per node sets RANK and LOCAL_RANK itself.
    ...(nproc === 1
      ? [
          { ...nodeRank, name: 'RANK' },
          { name: 'LOCAL_RANK', value: '0' },
        ]
      : []),
    { name: 'PET_MASTER_ADDR', value: masterAddr },
    { name: 'PET_MASTER_PORT', value: String(p.port) },
  ];
}

/** A gang's headless Service: it publishes not-ready pods, so rank 0 resolves while they start. */
function gangService(
  serviceName: string,
  jobName: string,
  namespace: string,
  labels: Record<string, string>,
  annotations: Record<string, string>,
  settings: KubernetesSettings,
): V1Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: serviceName, namespace, labels, annotations },
    spec: {
      clusterIP: 'None',
      selector: { [LABELS.job]: jobName },
      // Rank 0 must resolve while the pods start, before any is Ready.
      publishNotReadyAddresses: true,
      ports: [
        {
          name: 'rendezvous',
          port: settings.masterPort,
          targetPort: settings.masterPort,
          protocol: 'TCP',
        },
      ],
    },
  };
}

/**
 * Makes `obj` (a gang's Service, the ConfigMap of the run's files) owned by its Job, so
 * that deleting the Job (or its TTL) deletes it too. The backend calls this with the uid
 * the API server gave the Job.
 */
export function ownedByJob<T extends V1Service | V1ConfigMap>(
  obj: T,
  job: { name: string; uid: string },
): T {
  return {
    ...obj,
    metadata: {
      ...obj.metadata,
      ownerReferences: [
        {
          apiVersion: 'batch/v1',
          kind: 'Job',
          name: job.name,
          uid: job.uid,
          controller: true,
          blockOwnerDeletion: false,
        },
      ],
    },
  };
}
