/**
 * The rank variables: how a process of a distributed job learns its place in it (the
 * names torch.distributed and torchrun read and set). One list, for the two places that
 * need it:
 *
 *   RANK_ENV         reserved in a worker pod: stoker's kubernetes backend sets these
 *                    (orchestrator/backends/kubernetes/train-job.ts: NNODES, NODE_RANK,
 *                    MASTER_ADDR...) or torchrun does for its children (LOCAL_WORLD_SIZE,
 *                    GROUP_RANK), so a spec's secretEnv may not take one of these names
 *                    (isReservedPodEnv, common/spec/schema.ts)
 *   WORKER_RANK_ENV  what a worker passes on to its payload when its launcher set them
 *                    (rankEnvFrom, worker/env.ts): RANK_ENV and JOB_COMPLETION_INDEX, the
 *                    pod's index, which Kubernetes itself sets in an Indexed Job's pods.
 *                    That one is not reserved: stoker does not set it, and the worker
 *                    reads NODE_RANK first (worker/task-worker.ts).
 */
export const RANK_ENV: readonly string[] = [
  'RANK',
  'WORLD_SIZE',
  'LOCAL_RANK',
  'LOCAL_WORLD_SIZE',
  'NODE_RANK',
  'GROUP_RANK',
  'NNODES',
  'NPROC_PER_NODE',
  'MASTER_ADDR',
  'MASTER_PORT',
];

export const WORKER_RANK_ENV: readonly string[] = [...RANK_ENV, 'JOB_COMPLETION_INDEX'];
