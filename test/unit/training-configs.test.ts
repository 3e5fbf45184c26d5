/**
 * Every recipe in training-configs/ validates (the acceptance command
 * `npx stoker validate training-configs/fire/pipeline.yaml` included), and the FIRE
 * recipe keeps the paper's shape: its training options are those of docs/fire.md, section 5.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { pythonPayloadDir } from '../../common/paths.js';
import { loadSpecFile } from '../../common/spec/load.js';
import { kubernetesSpecRules } from '../../orchestrator/backends/kubernetes/spec-rules.js';

const ROOT = join(import.meta.dirname, '..', '..', 'training-configs');

function specs(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return specs(p);
    return name.endsWith('.yaml') && readFileSync(p, 'utf8').includes('apiVersion: stoker/v1')
      ? [p]
      : [];
  });
}

/** The module after every `-m` in any argv array of a YAML document. */
function pythonModules(node: unknown): string[] {
  if (Array.isArray(node)) {
    const own = node.flatMap((v, i) =>
      v === '-m' && typeof node[i + 1] === 'string' ? [node[i + 1] as string] : [],
    );
    return [...own, ...node.flatMap(pythonModules)];
  }
  if (node !== null && typeof node === 'object') return Object.values(node).flatMap(pythonModules);
  return [];
}

describe('training-configs', () => {
  for (const file of specs(ROOT)) {
    it(`${relative(ROOT, file)} validates`, async () => {
      // As `stoker validate` checks it: the kubernetes backend's rules too.
      const spec = await loadSpecFile(file, { rules: [kubernetesSpecRules] });
      expect(spec.stages.length).toBeGreaterThan(0);
    });
  }

  it("runs only Python modules that are in stoker's packages on the payload's PYTHONPATH", () => {
    const modules = specs(ROOT).flatMap((file) =>
      pythonModules(parse(readFileSync(file, 'utf8'))).map((m) => ({
        file: relative(ROOT, file),
        m,
      })),
    );
    expect(modules.map((x) => x.m)).toContain('stoker_examples.smoke_train');
    expect(modules.map((x) => x.m)).toContain('stoker_fire.train');
    for (const { file, m } of modules) {
      const path = join(pythonPayloadDir(), ...m.split('.')) + '.py';
      expect(existsSync(path), `${file}: -m ${m} (no ${path})`).toBe(true);
    }
  });

  it('fire/pipeline.yaml: the FIRE graph, 8-GPU LoRA training with ZeRO-3, a GPU self-play pool', async () => {
    const spec = await loadSpecFile(join(ROOT, 'fire', 'pipeline.yaml'));
    const byName = new Map(spec.stages.map((s) => [s.name, s]));
    for (const name of ['student', 'teacher', 'final']) {
      expect(byName.get(name)?.resources).toMatchObject({ gpus: 8, nodes: 1 });
    }
    expect(byName.get('selfplay')?.pool?.resources.gpus).toBe(1);
    expect(byName.get('final')?.dependsOn).toEqual(['final-views']);
    const student = parse(readFileSync(join(ROOT, 'fire', 'student.yaml'), 'utf8')) as Record<
      string,
      unknown
    >;
    expect(student).toMatchObject({
      lora_r: 64,
      lora_alpha: 256,
      lora_dropout: 0.05,
      lora_target_modules: 'q_proj,k_proj,v_proj',
      learning_rate: 2e-4,
      lr_scheduler_type: 'cosine',
      warmup_ratio: 0.03,
      per_device_train_batch_size: 8,
      max_length: 3072,
      save_steps: 5000,
      // Relative to the run's working directory, which holds the pipeline's files.
      deepspeed: 'zero3.json',
    });
    // Every file a stage names by a relative path travels with the run (spec.files).
    expect(spec.files?.map((f) => f.path)).toEqual([
      'student.yaml',
      'teacher.yaml',
      'final.yaml',
      'zero3.json',
    ]);
    expect(spec.params.configs).toBe('.');
    for (const name of ['student', 'teacher', 'final']) {
      const config = byName.get(name)?.payload.env.CONFIG ?? '';
      const file = config.replace('${params.configs}/', '');
      expect(
        spec.files?.some((f) => f.path === file),
        `${name}: ${config}`,
      ).toBe(true);
    }
    // The models and data on PVCs (k8s/base/models-pvc.yaml), read-only; no downloads.
    expect(byName.get('student')?.kubernetes.volumes.pvc).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ claimName: 'models', mountPath: '/models', readOnly: true }),
        expect.objectContaining({ claimName: 'datasets', mountPath: '/data', readOnly: true }),
      ]),
    );
    expect(byName.get('student')?.payload.env.HF_HUB_OFFLINE).toBe('1');
    const teacher = parse(readFileSync(join(ROOT, 'fire', 'teacher.yaml'), 'utf8')) as {
      save_steps: number;
    };
    expect(teacher.save_steps).toBe(1000);
    const zero3 = JSON.parse(readFileSync(join(ROOT, 'fire', 'zero3.json'), 'utf8')) as {
      zero_optimization: { stage: number };
    };
    expect(zero3.zero_optimization.stage).toBe(3);
  });
});
