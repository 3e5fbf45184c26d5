/**
 * The payload's environment (README, "Worker and payload protocol").
 *
 * The payload never inherits the worker's environment wholesale: the worker holds
 * REDIS_URL (with its password), the API token and whatever else its pod or shell
 * had. The payload gets exactly these, later entries winning over earlier ones:
 *
 *   1. ALLOWLIST from the worker's environment (common/secret-env.ts, shared with the
 *      local backend, which starts workers with little more than this):
 *        names     PATH HOME USER LOGNAME LANG LANGUAGE TZ TMPDIR LD_LIBRARY_PATH
 *                  HF_HOME HF_HUB_OFFLINE TRANSFORMERS_OFFLINE TRANSFORMERS_CACHE
 *        prefixes  LC_ CUDA_ NVIDIA_ NCCL_ OMP_ MKL_ OPENBLAS_ TORCH_ PYTORCH_ GLOO_
 *      (system and locale basics; GPU, NCCL and thread-pool tuning; the Hugging Face
 *      cache and offline switches). Nothing else: not REDIS_URL, STOKER_REDIS_URL,
 *      STOKER_API_TOKEN, AWS_*, HF_TOKEN, *_PASSWORD.
 *   2. the spec's `env` (plain values, written in the run spec).
 *   3. the spec's `secretEnv`: each {name, fromEnv} copies the worker's variable
 *      `fromEnv` into the payload's `name`. Secrets travel by name only (never in job
 *      data); a missing or empty one is a NonRetryableError naming it. Their values are
 *      returned in `secretValues` so the runner redacts them from every log line.
 *   4. rank variables given by the caller (RANK, WORLD_SIZE, LOCAL_RANK, NODE_RANK,
 *      MASTER_ADDR, MASTER_PORT, ...; see rankEnvFrom()).
 *   5. stoker's own: STOKER_RUN_ID, STOKER_TASK_ID, STOKER_STAGE, STOKER_ATTEMPT,
 *      STOKER_OUTPUT_DIR, RESUME_FROM (only when a checkpoint exists; it overrides
 *      one in the spec's env),
 *      PYTHONUNBUFFERED=1 (marker lines must not sit in a block buffer), and
 *      PYTHONPATH = stoker's worker/python/src (its Python packages, nothing else), then the
 *      spec's PYTHONPATH,
 *      PATH = stoker's worker/bin (a `stoker` command, so a stage can run
 *      `[stoker, data, views, ...]`), then the PATH from above, and STOKER_NODE = the
 *      node running the worker (what that `stoker` runs with).
 *
 * Pure: the caller passes the worker's environment in (no process.env read here).
 */
import { secretForms } from './redact.js';
import { ENV_ALLOWLIST, ENV_ALLOWLIST_PREFIXES, isAllowlisted } from '../common/secret-env.js';
import { NonRetryableError } from '../common/errors.js';
import type { ResolvedPayload } from '../common/model.js';
import { RUN_FILES_ENV } from '../common/spec/files.js';
import { payloadBinDir, pythonPayloadDir } from '../common/paths.js';
import { WORKER_RANK_ENV } from '../common/rank-env.js';

export { ENV_ALLOWLIST, ENV_ALLOWLIST_PREFIXES, isAllowlisted };

export type EnvSource = Readonly<Record<string, string | undefined>>;

/** The allowlisted part of an environment. */
export function allowlistedEnv(parentEnv: EnvSource): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(parentEnv)) {
    if (value !== undefined && isAllowlisted(name)) out[name] = value;
  }
  return out;
}

/** The rank variables present in an environment (for a worker started by a launcher). */
export function rankEnvFrom(parentEnv: EnvSource): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of WORKER_RANK_ENV) {
    const v = parentEnv[name];
    if (v !== undefined && v !== '') out[name] = v;
  }
  return out;
}

export interface PayloadIdentity {
  runId: string;
  taskId: string;
  stage: string;
  attempt: number;
}

export interface BuildPayloadEnvOptions {
  /**
   * The worker's environment: the one it was exec'd with plus what STOKER_SECRETS_FD
   * held (worker/secrets-fd.ts, at the entry point).
   */
  parentEnv: EnvSource;
  payload: Pick<ResolvedPayload, 'env' | 'secretEnv' | 'outputDir'>;
  identity: PayloadIdentity;
  /** An existing checkpoint to resume from; RESUME_FROM is set only when given. */
  resumeFrom?: string | null;
  rankEnv?: Readonly<Record<string, string>>;
  /** Prepended to PYTHONPATH; defaults to stoker's worker/python/src. */
  pythonDir?: string;
  /** Prepended to PATH; defaults to stoker's worker/bin. */
  binDir?: string;
  /** STOKER_NODE; defaults to the node running this process. */
  nodePath?: string;
}

export interface PayloadEnv {
  env: Record<string, string>;
  /**
   * What to redact: the secret variables' values in every form a JSON encoder writes
   * them (worker/redact.ts, secretForms), longest first.
   */
  secretValues: string[];
}

export function buildPayloadEnv(opts: BuildPayloadEnvOptions): PayloadEnv {
  const env: Record<string, string> = { ...allowlistedEnv(opts.parentEnv), ...opts.payload.env };

  const secretValues: string[] = [];
  const missing: string[] = [];
  for (const s of opts.payload.secretEnv) {
    const value = opts.parentEnv[s.fromEnv];
    if (value === undefined || value === '') {
      missing.push(`${s.name} (from ${s.fromEnv})`);
      continue;
    }
    env[s.name] = value;
    secretValues.push(value);
  }
  if (missing.length > 0) {
    throw new NonRetryableError(
      `secret environment variable${missing.length === 1 ? '' : 's'} ${missing.join(', ')} not set in the worker's environment`,
      'MissingSecret',
    );
  }

  Object.assign(env, opts.rankEnv ?? {});

  const pythonPath = [opts.pythonDir ?? pythonPayloadDir(), opts.payload.env.PYTHONPATH]
    .filter((p): p is string => typeof p === 'string' && p !== '')
    .join(':');
  Object.assign(env, {
    STOKER_RUN_ID: opts.identity.runId,
    STOKER_TASK_ID: opts.identity.taskId,
    STOKER_STAGE: opts.identity.stage,
    STOKER_ATTEMPT: String(opts.identity.attempt),
    STOKER_OUTPUT_DIR: opts.payload.outputDir,
    PYTHONUNBUFFERED: '1',
    PYTHONPATH: pythonPath,
    PATH: [opts.binDir ?? payloadBinDir(), env.PATH]
      .filter((p): p is string => typeof p === 'string' && p !== '')
      .join(':'),
    STOKER_NODE: opts.nodePath ?? process.execPath,
  });
  // A recorded checkpoint wins; without one, a RESUME_FROM written in the spec's env
  // (a user's chosen starting point) is kept.
  if (opts.resumeFrom) env.RESUME_FROM = opts.resumeFrom;

  // Longest first, so a secret that contains another is redacted whole.
  return { env, secretValues: secretForms(secretValues) };
}

/**
 * The directory a payload runs in. A run whose spec lists files (`payload.runFiles`
 * names the run) works in its files directory: in a kubernetes pod that mounts that
 * run's files (STOKER_RUN_FILES_RUN), the mount (STOKER_RUN_FILES_DIR); anywhere else
 * (the local backend; a pool worker's pod built for another run of a shared pool)
 * `payload.workingDir`, the run's copy under its folder (orchestrator/run-files.ts).
 */
export function payloadWorkingDir(
  payload: Pick<ResolvedPayload, 'workingDir' | 'runFiles'>,
  parentEnv: EnvSource,
): string {
  const mounted = parentEnv[RUN_FILES_ENV.dir];
  if (
    payload.runFiles !== undefined &&
    mounted &&
    parentEnv[RUN_FILES_ENV.run] === payload.runFiles
  )
    return mounted;
  return payload.workingDir;
}
