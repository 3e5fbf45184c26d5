/** A spec file as the commands that take one (validate, run, submit, render, demo) read it. */
import { existsSync } from 'node:fs';
import { UsageError } from '../../common/errors.js';
import type { NormalizedSpec } from '../../common/spec/schema.js';

/** Fail early and clearly on a missing file (exit 2), before any Redis or backend starts. */
export function requireFile(file: string): void {
  if (!existsSync(file)) throw new UsageError(`${file}: no such file`);
}

/**
 * The spec, validated and normalised, or a SpecError listing every problem. Validated
 * for every backend it may run on: a spec is portable, so the kubernetes backend's rules
 * (spec-rules.ts, which loads nothing of the Kubernetes client) apply whatever backend
 * runs it now.
 */
export async function loadSpec(file: string, sets: string[] | undefined): Promise<NormalizedSpec> {
  const [{ loadSpecFile }, { kubernetesSpecRules }] = await Promise.all([
    import('../../common/spec/load.js'),
    import('../backends/kubernetes/spec-rules.js'),
  ]);
  return loadSpecFile(file, { sets: sets ?? [], rules: [kubernetesSpecRules] });
}

export function describeSpec(spec: NormalizedSpec): string {
  const lines = [
    `valid: ${spec.kind} "${spec.name}" with ${spec.stages.length} stage${spec.stages.length === 1 ? '' : 's'}`,
  ];
  for (const s of spec.stages) {
    const res = s.resources.gpus > 0 ? `${s.resources.nodes}x${s.resources.gpus} GPU` : 'CPU';
    lines.push(
      `  ${s.name} [${s.kind}, ${res}]${s.dependsOn.length ? ` after ${s.dependsOn.join(', ')}` : ''}: ${s.payload.command.join(' ')}`,
    );
  }
  return lines.join('\n');
}
