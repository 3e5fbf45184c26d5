/**
 * Extra rules on a spec: what a backend cannot run (the kubernetes backend's are in
 * orchestrator/backends/kubernetes/spec-rules.ts). common/ imports no backend, so the
 * rules are passed in by whoever knows the backends: the CLI to parseSpec and
 * loadSpecFile (`rules`: reported with the YAML path and line of what they are about,
 * beside every other problem), and a backend to itself, in Backend.checkSpec (a stored
 * run the backend cannot run fails InvalidSpec, naming the field).
 *
 * A rule sees the normalised spec, every stage with its defaults merged in (what will
 * run), and SpecPaths, which says where each setting was written, for the issue's path:
 *
 *   documentPaths(doc)   normalize.ts: the parsed document. A setting a stage inherits
 *                        from spec.defaults is at spec.defaults' path (its line follows).
 *   storedPaths(spec)    a stored spec: every setting at its stage's path; the stored
 *                        form no longer knows which settings were inherited (`own` is
 *                        undefined), and holds each stage's PVC mounts merged.
 *
 * A rule's verdict must not depend on what storedPaths cannot tell, or the backend could
 * refuse a run that `stoker validate` accepted: one that needs to know whether a stage
 * wrote a setting itself acts only where `own` is true.
 */
import type { NormalizedSpec } from './normalized.js';
import type { Path } from './values.js';

export interface SpecRuleIssue {
  path: Path;
  message: string;
}

export type SpecRule = (spec: NormalizedSpec, paths: SpecPaths) => SpecRuleIssue[];

/** Where one setting of a stage was written. */
export interface SettingSource {
  /**
   * The stage's own field, or spec.defaults' when the stage inherits it from there; a
   * setting nobody wrote (a built-in default) is at the stage's field.
   */
  path: Path;
  /** The stage wrote it itself; undefined: not known (a stored spec). */
  own: boolean | undefined;
}

export interface SpecPaths {
  /** Stage i: `spec.stages[i]`, or `spec` for a one-stage kind. */
  stage(i: number): Path;
  /** Where stage i's setting at `field`, a path as written under a stage (e.g. `['resources', 'gpus']`), came from. */
  setting(i: number, field: Path): SettingSource;
  /** The PVC mount lists stage i's mounts come from, each at its path (`...volumes.pvc`). */
  pvcLists(
    i: number,
  ): { path: Path; mounts: readonly { mountPath: string; claimName: string }[] }[];
}

/** Where stage i of a spec of this kind is written. */
export const stagePath = (kind: NormalizedSpec['kind'], i: number): Path =>
  kind === 'Pipeline' ? ['spec', 'stages', i] : ['spec'];

/** Paths for a stored spec: each setting at its stage's path. */
export function storedPaths(spec: NormalizedSpec): SpecPaths {
  const stage = (i: number): Path => stagePath(spec.kind, i);
  return {
    stage,
    setting: (i, field) => ({ path: [...stage(i), ...field], own: undefined }),
    pvcLists: (i) => [
      {
        path: [...stage(i), 'kubernetes', 'volumes', 'pvc'],
        mounts: spec.stages[i]?.kubernetes.volumes.pvc ?? [],
      },
    ],
  };
}

/** Every issue of every rule. */
export function runRules(
  rules: readonly SpecRule[],
  spec: NormalizedSpec,
  paths: SpecPaths,
): SpecRuleIssue[] {
  return rules.flatMap((rule) => rule(spec, paths));
}
