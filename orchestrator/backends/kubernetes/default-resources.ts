/**
 * What a worker pod requests and is limited to when its stage says nothing: a pod with
 * no cpu or memory is BestEffort, the first the kubelet evicts under memory pressure, and
 * free to take a whole node's memory before the OOM killer finds it; Kueue counts it as
 * nothing against its quota. So every stage kind has a default cpu and memory, applied to
 * each amount the stage (or its pool) leaves out:
 *
 *   kind              cpu   memory   (per GPU for a pod with GPUs, per pod without)
 *   train             4     32Gi
 *   generate          4     32Gi     a pulled stage's pool workers take their stage's kind
 *   evaluate          2     16Gi
 *   prepare, merge,   1     4Gi      CPU steps: one pod, no GPUs
 *   report
 *
 * For a pod with GPUs the amounts are per GPU (a train stage with `gpus: 8` and no memory
 * gets 256Gi): a GPU's worth of host memory and data-loader cores scales with the GPUs.
 * Requests equal limits (pod-spec.ts says why), so the defaults are limits too.
 *
 * The controller setting STOKER_K8S_DEFAULT_RESOURCES (JSON, settings.ts) replaces amounts
 * by kind, e.g. {"train": {"memory": "64Gi"}, "report": {"cpu": "500m"}}: each amount it
 * gives replaces the built-in one, the others stay.
 */
import { STAGE_KINDS, type StageKind } from '../../../common/spec/schema.js';

export interface DefaultAmounts {
  cpu: string;
  memory: string;
}

export type DefaultResources = Record<StageKind, DefaultAmounts>;

export const BUILT_IN_DEFAULT_RESOURCES: Readonly<DefaultResources> = {
  train: { cpu: '4', memory: '32Gi' },
  generate: { cpu: '4', memory: '32Gi' },
  evaluate: { cpu: '2', memory: '16Gi' },
  prepare: { cpu: '1', memory: '4Gi' },
  merge: { cpu: '1', memory: '4Gi' },
  report: { cpu: '1', memory: '4Gi' },
};

/** A Kubernetes quantity as the defaults are written: a decimal number and a suffix. */
export const DEFAULT_QUANTITY = /^(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|Ti|k|M|G|T)?$/;

/** The built-in defaults with `overrides` (by kind, amount by amount) over them. */
export function defaultResources(
  overrides: Partial<Record<StageKind, Partial<DefaultAmounts>>> = {},
): DefaultResources {
  return Object.fromEntries(
    STAGE_KINDS.map((kind) => [kind, { ...BUILT_IN_DEFAULT_RESOURCES[kind], ...overrides[kind] }]),
  ) as DefaultResources;
}

/**
 * `quantity` times `n`, in the same unit: `32Gi` x 8 = `256Gi`, `500m` x 3 = `1500m`,
 * `1.5` x 3 = `4.5`. Whole numbers of the unit stay whole; a fraction is rounded to
 * millis of the unit, which a quantity can carry.
 */
export function scaleQuantity(quantity: string, n: number): string {
  const m = DEFAULT_QUANTITY.exec(quantity);
  if (!m) throw new Error(`not a quantity: ${quantity}`);
  const value = Math.round(Number(m[1]) * n * 1000) / 1000;
  return `${value}${m[2] ?? ''}`;
}

/** The cpu and memory a pod of a `kind` stage with `gpus` GPUs gets when it names none. */
export function defaultAmounts(
  defaults: DefaultResources,
  kind: StageKind,
  gpus: number,
): DefaultAmounts {
  const d = defaults[kind];
  const per = gpus > 0 ? gpus : 1;
  return { cpu: scaleQuantity(d.cpu, per), memory: scaleQuantity(d.memory, per) };
}
