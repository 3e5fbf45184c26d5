import { describe, expect, it } from 'vitest';
import { isNonRetryable, NonRetryableError } from '../../common/errors.js';
import type { ResolvedPayload } from '../../common/model.js';
import { buildPayloadEnv, isAllowlisted, rankEnvFrom } from '../../worker/env.js';

const parentEnv = {
  PATH: '/usr/bin:/bin',
  HOME: '/home/trainer',
  LANG: 'C.UTF-8',
  LC_ALL: 'C.UTF-8',
  CUDA_VISIBLE_DEVICES: '0,1',
  NCCL_DEBUG: 'INFO',
  OMP_NUM_THREADS: '4',
  HF_HOME: '/cache/hf',
  TORCH_HOME: '/cache/torch',
  REDIS_URL: 'redis://:hunter2@redis:6379',
  STOKER_REDIS_URL: 'redis://:hunter2@redis:6379',
  REDIS_PASSWORD: 'hunter2',
  STOKER_API_TOKEN: 'api-token-123',
  AWS_SECRET_ACCESS_KEY: 'aws-secret-xyz',
  AWS_ACCESS_KEY_ID: 'AKIA123',
  HF_TOKEN: 'hf_secret_token_value',
  PYTHONPATH: '/somewhere/else',
  NODE_OPTIONS: '--inspect',
  UNSET_ONE: undefined,
};

const payload = (
  over: Partial<ResolvedPayload> = {},
): Pick<ResolvedPayload, 'env' | 'secretEnv' | 'outputDir'> => ({
  env: { LEARNING_RATE: '1e-5' },
  secretEnv: [],
  outputDir: '/runs/r1/outputs/train',
  ...over,
});

const identity = { runId: 'r1', taskId: 'r1.train', stage: 'train', attempt: 2 };

describe('buildPayloadEnv', () => {
  it('passes only the allowlisted part of the worker environment', () => {
    const { env } = buildPayloadEnv({
      parentEnv,
      payload: payload(),
      identity,
      pythonDir: '/stoker/worker/python',
      binDir: '/stoker/worker/bin',
      nodePath: '/opt/node/bin/node',
    });
    // stoker's own `stoker` first, then the worker's PATH.
    expect(env.PATH).toBe(`/stoker/worker/bin:${parentEnv.PATH}`);
    expect(env.STOKER_NODE).toBe('/opt/node/bin/node');
    for (const name of [
      'HOME',
      'LANG',
      'LC_ALL',
      'CUDA_VISIBLE_DEVICES',
      'NCCL_DEBUG',
      'OMP_NUM_THREADS',
      'HF_HOME',
      'TORCH_HOME',
    ]) {
      expect(env[name], name).toBe(parentEnv[name as keyof typeof parentEnv]);
    }
    for (const name of [
      'REDIS_URL',
      'STOKER_REDIS_URL',
      'REDIS_PASSWORD',
      'STOKER_API_TOKEN',
      'AWS_SECRET_ACCESS_KEY',
      'AWS_ACCESS_KEY_ID',
      'HF_TOKEN',
      'NODE_OPTIONS',
      'UNSET_ONE',
    ]) {
      expect(env, name).not.toHaveProperty(name);
    }
  });

  it('never lets a secret value of the worker reach the payload unless the spec names it', () => {
    const { env } = buildPayloadEnv({ parentEnv, payload: payload(), identity });
    const values = Object.values(env).join('\n');
    expect(values).not.toContain('hunter2');
    expect(values).not.toContain('aws-secret-xyz');
    expect(values).not.toContain('hf_secret_token_value');
  });

  it("adds the spec's env, then stoker's identity, output dir and unbuffered Python", () => {
    const { env } = buildPayloadEnv({
      parentEnv,
      payload: payload(),
      identity,
      pythonDir: '/stoker/worker/python',
    });
    expect(env).toMatchObject({
      LEARNING_RATE: '1e-5',
      STOKER_RUN_ID: 'r1',
      STOKER_TASK_ID: 'r1.train',
      STOKER_STAGE: 'train',
      STOKER_ATTEMPT: '2',
      STOKER_OUTPUT_DIR: '/runs/r1/outputs/train',
      PYTHONUNBUFFERED: '1',
      PYTHONPATH: '/stoker/worker/python',
    });
    expect(env).not.toHaveProperty('RESUME_FROM');
  });

  it("prepends stoker's python directory to the spec's PYTHONPATH, not the worker's", () => {
    const { env } = buildPayloadEnv({
      parentEnv,
      payload: payload({ env: { PYTHONPATH: '/repo/src' } }),
      identity,
      pythonDir: '/stoker/worker/python',
    });
    expect(env.PYTHONPATH).toBe('/stoker/worker/python:/repo/src');
  });

  it('lets stoker variables win over a spec that tries to set them', () => {
    const { env } = buildPayloadEnv({
      parentEnv,
      payload: payload({ env: { STOKER_TASK_ID: 'forged', PYTHONUNBUFFERED: '0' } }),
      identity,
    });
    expect(env.STOKER_TASK_ID).toBe('r1.train');
    expect(env.PYTHONUNBUFFERED).toBe('1');
  });

  it('sets RESUME_FROM only when a checkpoint is given', () => {
    const { env } = buildPayloadEnv({
      parentEnv,
      payload: payload(),
      identity,
      resumeFrom: '/runs/r1/ckpt-100',
    });
    expect(env.RESUME_FROM).toBe('/runs/r1/ckpt-100');
  });

  it('passes the rank variables given by the caller', () => {
    const rankEnv = rankEnvFrom({
      RANK: '1',
      WORLD_SIZE: '2',
      MASTER_ADDR: 'r1-train-0.r1-train',
      MASTER_PORT: '29500',
      LOCAL_RANK: '0',
      OTHER: 'x',
    });
    expect(rankEnv).toEqual({
      RANK: '1',
      WORLD_SIZE: '2',
      MASTER_ADDR: 'r1-train-0.r1-train',
      MASTER_PORT: '29500',
      LOCAL_RANK: '0',
    });
    const { env } = buildPayloadEnv({ parentEnv, payload: payload(), identity, rankEnv });
    expect(env).toMatchObject(rankEnv);
  });

  it('copies a named secret from the worker environment and returns its value for redaction', () => {
    const { env, secretValues } = buildPayloadEnv({
      parentEnv,
      payload: payload({ secretEnv: [{ name: 'HUGGING_FACE_HUB_TOKEN', fromEnv: 'HF_TOKEN' }] }),
      identity,
    });
    expect(env.HUGGING_FACE_HUB_TOKEN).toBe('hf_secret_token_value');
    expect(env).not.toHaveProperty('HF_TOKEN');
    expect(secretValues).toEqual(['hf_secret_token_value']);
  });

  it('fails, not retryably, naming every missing secret', () => {
    let caught: unknown;
    try {
      buildPayloadEnv({
        parentEnv,
        payload: payload({
          secretEnv: [
            { name: 'WANDB_API_KEY', fromEnv: 'WANDB_KEY' },
            { name: 'OPENAI_API_KEY', fromEnv: 'UNSET_ONE' },
          ],
        }),
        identity,
      });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(NonRetryableError);
    expect(isNonRetryable(caught)).toBe(true);
    expect((caught as Error).message).toContain('WANDB_API_KEY (from WANDB_KEY)');
    expect((caught as Error).message).toContain('OPENAI_API_KEY (from UNSET_ONE)');
  });

  it.each([
    ['PATH', true],
    ['LC_CTYPE', true],
    ['NVIDIA_VISIBLE_DEVICES', true],
    ['GLOO_SOCKET_IFNAME', true],
    ['PYTORCH_CUDA_ALLOC_CONF', true],
    ['REDIS_URL', false],
    ['STOKER_REDIS_URL', false],
    ['AWS_SECRET_ACCESS_KEY', false],
    ['HF_TOKEN', false],
    ['PATHX', false],
  ])('allowlist: %s -> %s', (name, allowed) => {
    expect(isAllowlisted(name)).toBe(allowed);
  });
});
