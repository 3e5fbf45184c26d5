/**
 * `stoker data synth`: run the Python generator of synthetic FIRE data,
 * `python3 -m stoker_fire.synth` (worker/python/src/stoker_fire/synth.py), with PYTHONPATH set to stoker's
 * worker/python/src. Its stdout (a one-line JSON summary) and stderr pass straight through;
 * its exit status is returned (a signal N as 128 + N, as a shell reports it).
 *
 * Interpreter: $STOKER_PYTHON, else /usr/bin/python3 when it exists (Debian's, which has
 * the system packages stoker's payloads use; a `python3` earlier on PATH may be another
 * one), else `python3` on PATH: the rule of scripts/test-python.mjs.
 */
import { spawn as nodeSpawn, type SpawnOptions, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { delimiter } from 'node:path';
import { constants } from 'node:os';
import { StokerError } from '../../common/errors.js';
import { pythonPayloadDir } from '../../common/paths.js';

export const SYNTH_KINDS = ['dialogues', 'seeds'] as const;
export type SynthKind = (typeof SYNTH_KINDS)[number];

export interface SynthOptions {
  n: number;
  out: string;
  seed?: number;
  kind?: SynthKind;
  split?: string;
  startId?: number;
  imageSize?: number;
  prefix?: string;
}

export function pickPython(
  env: NodeJS.ProcessEnv,
  exists: (p: string) => boolean = existsSync,
): string {
  if (env.STOKER_PYTHON) return env.STOKER_PYTHON;
  if (exists('/usr/bin/python3')) return '/usr/bin/python3';
  return 'python3';
}

/** The generator's command line (after the interpreter). */
export function synthArgs(o: SynthOptions): string[] {
  const args = ['-m', 'stoker_fire.synth', '--n', String(o.n), '--out', o.out];
  if (o.seed !== undefined) args.push('--seed', String(o.seed));
  if (o.kind !== undefined) args.push('--kind', o.kind);
  if (o.split !== undefined) args.push('--split', o.split);
  if (o.startId !== undefined) args.push('--start-id', String(o.startId));
  if (o.imageSize !== undefined) args.push('--image-size', String(o.imageSize));
  if (o.prefix !== undefined) args.push('--prefix', o.prefix);
  return args;
}

export interface SynthDeps {
  env?: NodeJS.ProcessEnv;
  spawn?: (command: string, args: string[], opts: SpawnOptions) => ChildProcess;
  pythonPath?: string;
}

/** Run the generator; resolves with its exit status. Throws if Python cannot start. */
export async function runSynth(o: SynthOptions, deps: SynthDeps = {}): Promise<number> {
  const env = deps.env ?? process.env;
  const python = pickPython(env);
  const payloadDir = deps.pythonPath ?? pythonPayloadDir();
  const spawn = deps.spawn ?? nodeSpawn;
  const child = spawn(python, synthArgs(o), {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: {
      ...env,
      PYTHONPATH: env.PYTHONPATH ? `${payloadDir}${delimiter}${env.PYTHONPATH}` : payloadDir,
      PYTHONUNBUFFERED: '1',
    },
  });
  return new Promise<number>((resolve, reject) => {
    child.once('error', (err: NodeJS.ErrnoException) => {
      reject(
        new StokerError(
          err.code === 'ENOENT'
            ? `cannot run the synthetic data generator: Python interpreter "${python}" not found (install Python 3, or set STOKER_PYTHON to one)`
            : `cannot start ${python}: ${err.message}`,
        ),
      );
    });
    child.once('close', (code, signal) => {
      if (code !== null) resolve(code);
      else {
        const n = signal ? constants.signals[signal] : undefined;
        resolve(n !== undefined ? 128 + n : 1);
      }
    });
  });
}
