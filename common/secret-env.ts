/**
 * Which environment variables may be seen, and which look secret: shared by the worker
 * (the payload's environment, worker/env.ts; the warning about its own environment,
 * worker/secrets-fd.ts), the local backend (what a worker process is started with,
 * orchestrator/backends/local.ts) and the Kubernetes pod builder (no plain value that
 * looks secret in a Job, orchestrator/backends/kubernetes/pod-env.ts).
 *
 *   ENV_ALLOWLIST, ENV_ALLOWLIST_PREFIXES   what a payload gets from its worker's
 *                                           environment (system and locale basics; GPU,
 *                                           NCCL and thread-pool tuning; the Hugging Face
 *                                           cache and offline switches; torchrun's PET_)
 *   looksSecret(name, value)                a name such as ..._TOKEN, ..._PASSWORD,
 *                                           REDIS_URL, or a URL with a password in it
 */

export const ENV_ALLOWLIST: readonly string[] = [
  'PATH',
  'HOME',
  'USER',
  'LOGNAME',
  'LANG',
  'LANGUAGE',
  'TZ',
  'TMPDIR',
  'LD_LIBRARY_PATH',
  'HF_HOME',
  'HF_HUB_OFFLINE',
  'TRANSFORMERS_OFFLINE',
  'TRANSFORMERS_CACHE',
];

export const ENV_ALLOWLIST_PREFIXES: readonly string[] = [
  'LC_',
  'CUDA_',
  'NVIDIA_',
  'NCCL_',
  'OMP_',
  'MKL_',
  'OPENBLAS_',
  'TORCH_',
  'PYTORCH_',
  'GLOO_',
  // torchrun's own names for the rendezvous (PET_NNODES, PET_NODE_RANK, PET_MASTER_ADDR...)
  'PET_',
];

/** Whether a payload may get this variable of its worker's environment. */
export function isAllowlisted(name: string): boolean {
  return ENV_ALLOWLIST.includes(name) || ENV_ALLOWLIST_PREFIXES.some((p) => name.startsWith(p));
}

/** Names that hold a secret by convention (STOKER_REDIS_URL, HF_TOKEN, DB_PASSWORD...). */
export const SECRET_NAME =
  /(^|_)(REDIS_URL|PASSWORD|PASSWD|TOKEN|SECRET|API_KEY|PRIVATE_KEY|CREDENTIALS?)$/;

/** A URL with a password in it (redis://:pw@host). */
export const URL_WITH_PASSWORD = /^[a-z][a-z0-9+.-]*:\/\/[^/@\s]*:[^/@\s]+@/i;

/** Whether a variable looks secret by its name, or by its value (a URL with a password). */
export function looksSecret(name: string, value: string | undefined): boolean {
  return SECRET_NAME.test(name) || (value !== undefined && URL_WITH_PASSWORD.test(value));
}
