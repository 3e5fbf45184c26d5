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
 *
 * A variable set twice the same way is kept once; set twice differently, it is refused.
 */
import type { V1EnvVar } from '@kubernetes/client-node';
import { isReservedPodEnv, type NormalizedStage } from '../../../common/spec/schema.js';
import type { KubernetesSettings } from './settings.js';

export interface EnvInput {
  settings: KubernetesSettings;
  env: Record<string, string>;
  secretEnv: NormalizedStage['payload']['secretEnv'];
  extraEnv: V1EnvVar[];
}

/** Names that must never carry a plain value in an object anyone who reads Jobs can see. */
const SECRET_NAME =
  /(^|_)(REDIS_URL|PASSWORD|PASSWD|TOKEN|SECRET|API_KEY|PRIVATE_KEY|CREDENTIALS?)$/;
/** A URL with a password in it (redis://:pw@host). */
const URL_WITH_PASSWORD = /^[a-z][a-z0-9+.-]*:\/\/[^/@\s]*:[^/@\s]+@/i;

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
    if (SECRET_NAME.test(name) || URL_WITH_PASSWORD.test(value))
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
  return env;
}
