/**
 * The GPU worker image installs what the GPU check ran: every version that
 * bench/gpu-check-versions.json records (written by `bench/gpu-check.sh
 * --record-versions`) is pinned in docker/worker-gpu.Dockerfile at that version: Python
 * and torch as the build arguments the image's build asserts, torch in the base image's
 * tag, the pip packages as `name==X.Y.*` (or an exact `name==X.Y.Z`).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as z from 'zod';

const ROOT = join(import.meta.dirname, '..', '..');
const dockerfile = readFileSync(join(ROOT, 'docker', 'worker-gpu.Dockerfile'), 'utf8');
const Record = z.object({
  device: z.string(),
  versions: z.record(z.string(), z.string()),
});
const record = Record.parse(
  JSON.parse(readFileSync(join(ROOT, 'bench', 'gpu-check-versions.json'), 'utf8')),
);
const checkScript = readFileSync(join(ROOT, 'bench', 'gpu_check.py'), 'utf8');

/** `ARG NAME=value` (the first one with a value). */
function argDefault(name: string): string | undefined {
  return new RegExp(`^ARG ${name}=(\\S+)`, 'm').exec(dockerfile)?.[1];
}

/** The requirements of the `pip install` instructions: `'transformers==5.17.*'` -> (transformers, ==5.17.*). */
function pipRequirements(): Map<string, string> {
  const out = new Map<string, string>();
  // Instructions with their continuation lines joined.
  const instructions = dockerfile.replace(/\\\n/g, ' ').split('\n');
  for (const line of instructions.filter((l) => /^RUN pip install /.test(l))) {
    for (const word of line.replace(/^RUN pip install /, '').split(/\s+/)) {
      const req = word.replace(/^'|'$/g, '');
      const m = /^([A-Za-z0-9_.-]+)(.*)$/.exec(req);
      if (!m || req.startsWith('-')) continue;
      out.set((m[1] as string).toLowerCase(), m[2] as string);
    }
  }
  return out;
}

/** `5.17` agrees with a pin `==5.17.*` or `==5.17.3`; `5.17.3` only with `==5.17.3` or `==5.17.*`. */
function pinAgrees(recorded: string, spec: string): boolean {
  const m = /^==([0-9][0-9A-Za-z.]*?)(\.\*)?$/.exec(spec);
  if (!m) return false;
  const pinned = m[1] as string;
  return m[2] ? recorded === pinned || recorded.startsWith(`${pinned}.`) : recorded === pinned;
}

const numeric = (v: string): boolean => /^\d+(\.\d+)*$/.test(v);

describe('the GPU image pins what the GPU check ran', () => {
  it('the record holds the versions the check reports (python, torch, transformers, peft)', () => {
    for (const name of ['python', 'torch', 'transformers', 'peft']) {
      expect(numeric(record.versions[name] ?? ''), `${name} in the record`).toBe(true);
    }
    // Only names the check's versions() reports.
    const reported = /for name in \(([^)]*)\)/.exec(checkScript)?.[1] ?? '';
    for (const name of Object.keys(record.versions)) {
      if (name === 'python' || name === 'deepspeed') continue;
      expect(reported, `bench/gpu_check.py versions() reports ${name}`).toContain(`"${name}"`);
    }
  });

  it('Python and torch: the build arguments the image asserts, and the base image tag', () => {
    // The build compares major.minor; a record with a patch level agrees with its major.minor.
    expect(pinAgrees(record.versions.python ?? '', `==${argDefault('PYTHON_VERSION')}.*`)).toBe(
      true,
    );
    expect(pinAgrees(record.versions.torch ?? '', `==${argDefault('TORCH_VERSION')}.*`)).toBe(true);
    const tag = argDefault('PYTORCH_IMAGE')?.split(':')[1] ?? '';
    expect(tag.startsWith(`${record.versions.torch}.`), `base image tag ${tag}`).toBe(true);
    // The assertion is in the build, after the base image, with both arguments in scope.
    expect(dockerfile).toMatch(
      /ARG PYTHON_VERSION\nARG TORCH_VERSION\n[^]*assert py == '\$\{PYTHON_VERSION\}'/,
    );
  });

  it('every recorded pip package is pinned at its version', () => {
    const pins = pipRequirements();
    expect(pins.size).toBeGreaterThan(3);
    const checked: string[] = [];
    for (const [name, version] of Object.entries(record.versions)) {
      if (name === 'python' || name === 'torch' || !numeric(version) || !pins.has(name)) continue;
      const spec = pins.get(name) ?? '';
      expect(
        pinAgrees(version, spec),
        `${name}: recorded ${version}, Dockerfile '${name}${spec}'`,
      ).toBe(true);
      checked.push(name);
    }
    expect(checked).toEqual(expect.arrayContaining(['transformers', 'peft']));
  });

  it('the agreement rule itself', () => {
    expect(pinAgrees('5.17', '==5.17.*')).toBe(true);
    expect(pinAgrees('5.17.2', '==5.17.*')).toBe(true);
    expect(pinAgrees('5.17.2', '==5.17.2')).toBe(true);
    expect(pinAgrees('5.17', '<5')).toBe(false);
    expect(pinAgrees('5.17', '>=4.44,<6')).toBe(false);
    expect(pinAgrees('5.17', '==5.1.*')).toBe(false);
    expect(pinAgrees('5.17.2', '==5.17.3')).toBe(false);
  });
});
