/**
 * On the local backend, through the real CLI (`stoker run`, a real redis-server and
 * worker processes):
 *   - a spec that lists files runs its payloads in the run's files directory
 *     (`<runDir>/files`), so a relative path resolves as it did beside the spec file, and
 *     only the listed files are there, as in a pod (test/kubernetes/run-files.test.ts);
 *   - training-configs/fire/stage.yaml stages a model and FIRE's data from a local source
 *     into the models and data folders, and a second run copies nothing.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { stoker } from '../util/cli.js';
import { testRedisUrl, uniquePrefix } from '../util/redis-server.js';

let dir: string;
let redisUrl: string;
const prefix = uniquePrefix('runfiles');
const env = () => ({ home: join(dir, 'home'), redisUrl, prefix });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'stoker-run-files-'));
  redisUrl = await testRedisUrl();
});
afterAll(async () => {
  const redis = new Redis(redisUrl);
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length) await redis.del(...keys);
  redis.disconnect();
  rmSync(dir, { recursive: true, force: true });
});

const READER = [
  "const fs = require('node:fs');",
  "const path = require('node:path');",
  'const out = {',
  '  cwd: process.cwd(),',
  "  options: JSON.parse(fs.readFileSync('conf/options.json', 'utf8')),",
  "  unlisted: fs.existsSync('unlisted.txt'),",
  '};',
  "fs.writeFileSync(path.join(process.env.STOKER_OUTPUT_DIR, 'seen.json'), JSON.stringify(out));",
].join('\n');

describe('spec.files on the local backend', () => {
  it("the payload runs in the run's files directory and reads its config by a relative path", async () => {
    const recipe = join(dir, 'recipe');
    mkdirSync(join(recipe, 'conf'), { recursive: true });
    writeFileSync(join(recipe, 'conf', 'options.json'), JSON.stringify({ lr: 0.0002 }));
    writeFileSync(join(recipe, 'unlisted.txt'), 'not carried\n');
    const spec = join(recipe, 'spec.yaml');
    writeFileSync(
      spec,
      stringify({
        apiVersion: 'stoker/v1',
        kind: 'TrainingRun',
        metadata: { name: 'files' },
        spec: {
          files: ['conf/options.json'],
          payload: { command: [process.execPath, '-e', READER] },
        },
      }),
    );
    const r = await stoker(['run', spec, '--json'], env());
    expect(r.exitCode, r.all).toBe(0);
    const view = JSON.parse(r.stdout) as { phase: string; runDir: string };
    expect(view.phase).toBe('Succeeded');
    const seen = JSON.parse(
      readFileSync(join(view.runDir, 'stages', 'train', 'seen.json'), 'utf8'),
    ) as { cwd: string; options: unknown; unlisted: boolean };
    expect(seen.cwd).toBe(join(view.runDir, 'files'));
    expect(seen.options).toEqual({ lr: 0.0002 });
    expect(seen.unlisted).toBe(false);
  });

  it('training-configs/fire/stage.yaml stages a model and the data, then finds them staged', async () => {
    const src = join(dir, 'staging');
    mkdirSync(join(src, 'model'), { recursive: true });
    mkdirSync(join(src, 'fire', 'images'), { recursive: true });
    writeFileSync(join(src, 'model', 'config.json'), '{"model_type": "llava_next"}');
    writeFileSync(join(src, 'model', 'model.safetensors'), Buffer.alloc(4096, 7));
    writeFileSync(join(src, 'fire', 'fire100k.jsonl'), '{"id": "a"}\n');
    writeFileSync(join(src, 'fire', 'images', 'a.png'), Buffer.from([0x89, 0x50]));
    const sets = [
      ['modelSource', join(src, 'model')],
      ['dataSource', join(src, 'fire')],
      ['models', join(dir, 'models')],
      ['data', join(dir, 'data')],
    ].flatMap(([k, v]) => ['--set', `spec.params.${k}=${v}`]);
    const spec = join(import.meta.dirname, '..', '..', 'training-configs', 'fire', 'stage.yaml');
    const first = await stoker(['run', spec, '--json', ...sets], env());
    expect(first.exitCode, first.all).toBe(0);
    const model = join(dir, 'models', 'llama3-llava-next-8b-hf');
    expect(readFileSync(join(model, 'model.safetensors')).equals(Buffer.alloc(4096, 7))).toBe(true);
    expect(existsSync(join(dir, 'data', 'fire', 'images', 'a.png'))).toBe(true);
    const manifest = JSON.parse(readFileSync(join(model, '.stoker-staged.json'), 'utf8')) as {
      files: Record<string, { size: number }>;
    };
    expect(Object.keys(manifest.files).sort()).toEqual(['config.json', 'model.safetensors']);

    // Again: nothing copied. The stage's output says so (its log has the --json line).
    const again = await stoker(['run', spec, '--json', ...sets], env());
    expect(again.exitCode, again.all).toBe(0);
    const view = JSON.parse(again.stdout) as { runDir: string };
    const { execa } = await import('execa');
    const logs = await execa('grep', ['-rh', '"skipped"', join(view.runDir, 'logs')], {
      reject: false,
    });
    const lines = logs.stdout.split('\n').filter(Boolean);
    expect(lines.length, logs.stdout).toBe(2);
    for (const line of lines) {
      const r = JSON.parse(line.slice(line.indexOf('{'))) as { copied: string[]; skipped: number };
      expect(r.copied).toEqual([]);
      expect(r.skipped).toBeGreaterThan(0);
    }
  });
});
