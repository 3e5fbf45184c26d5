/**
 * The environment of a worker container: plain variables, never a secret's value.
 *
 *   plain       settings.workerEnv, then the caller's (STOKER_PREFIX, STOKER_LOG_LEVEL...),
 *               and STOKER_HOME where the runs volume is mounted. A name that looks
 *               secret (..._TOKEN, ..._PASSWORD, REDIS_URL...) or a URL with a password
 *               in it is refused: a value in a Job is readable by anyone who may read Jobs
 *   Redis URL   STOKER_REDIS_URL from settings.redisUrlSecret (a secretKeyRef)
 *   secretEnv   each entry of the stage's secretEnv as a secretKeyRef, under its
 *               `fromEnv` name (default: its name): the worker copies it into the
 *               payload's `name` (worker/env.ts). A name stoker sets itself is refused
 *   extra       what the backend sets itself (the rank variables of a train Job); a plain
 *               variable of the same name is refused
 *   launcher    with settings.workerLauncher (pod-spec.ts runs the worker through it),
 *               STOKER_SECRET_ENV: the names of every variable above that comes from a
 *               secretKeyRef, space-separated. The launcher moves them onto a descriptor
 *               before it execs the worker, so the worker's /proc/PID/environ, which its
 *               payload can read, holds none of them (worker/bin/stoker-env-fd)
 *
 * A variable set twice the same way is kept once; set twice differently, it is refused.
 */
import type { V1EnvVar } from '@kubernetes/client-node';
import { isReservedPodEnv, type NormalizedStage } from '../../../common/spec/schema.js';
import { looksSecret } from '../../../common/secret-env.js';
import type { KubernetesSettings } from './settings.js';

export interface EnvInput {
  settings: KubernetesSettings;
  env: Record<string, string>;
  secretEnv: NormalizedStage['payload']['secretEnv'];
  extraEnv: V1EnvVar[];
}

/** The variable that tells the launcher which variables to move (worker/bin/stoker-env-fd). */
export const SECRET_ENV_VAR = 'STOKER_SECRET_ENV';

export function buildEnv(input: EnvInput): V1EnvVar[] {
  const { settings } = input;
  const env: V1EnvVar[] = [];
  const seen = new Map<string, string>();
  const push = (v: V1EnvVar): void => {
    const ref = JSON.stringify(v.valueFrom ?? v.value);
    const before = seen.get(v.name);
    if (before === ref) return;
    if (before !== undefined)
      throw new Error(`environment variable ${v.name} is set twice, differently`);
    seen.set(v.name, ref);
    env.push(v);
  };

  const plain: Record<string, string> = { ...settings.workerEnv, ...input.env };
  if (settings.runsVolume) plain['STOKER_HOME'] = settings.runsVolume.mountPath;
  for (const [name, value] of Object.entries(plain)) {
    // A name or value that looks secret: a value in a Job is readable by anyone who may read Jobs.
    if (looksSecret(name, value))
      throw new Error(
        `environment variable ${name} looks secret: pass it as a Secret reference, never as a value in the Job`,
      );
    if (input.extraEnv.some((v) => v.name === name))
      throw new Error(`environment variable ${name} is set by the backend itself`);
    push({ name, value });
  }
  push({
    name: 'STOKER_REDIS_URL',
    valueFrom: {
      secretKeyRef: { name: settings.redisUrlSecret.name, key: settings.redisUrlSecret.key },
    },
  });
  // The worker copies each secretEnv entry's `fromEnv` variable into the payload's `name`
  // (worker/env.ts), so the pod holds it under fromEnv (default: name).
  for (const s of input.secretEnv) {
    const variable = s.fromEnv ?? s.name;
    if (isReservedPodEnv(variable))
      throw new Error(`secretEnv ${s.name}: ${variable} is a variable stoker sets itself`);
    push({
      name: variable,
      valueFrom: {
        secretKeyRef: { name: s.secret ?? settings.payloadSecretName, key: s.key ?? variable },
      },
    });
  }
  for (const v of input.extraEnv) push(v);
  if (settings.workerLauncher !== undefined) {
    const fromSecrets = env.filter((v) => v.valueFrom?.secretKeyRef).map((v) => v.name);
    push({ name: SECRET_ENV_VAR, value: fromSecrets.join(' ') });
  }
  return env;
}
