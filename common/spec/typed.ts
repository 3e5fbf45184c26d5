/**
 * The parts of a spec document that the graph checks read (graph.ts), typed by the one
 * schema (schema.ts): each field parsed with that field's own schema, so that a field
 * that passed is a typed value even when its neighbours, its stage or the whole document
 * failed. Nothing here restates a type: a field is its schema's output or absent.
 *
 *   typeDocument(value) -> GraphDocument   value: the document as zod left it (see graph.ts)
 *
 * A field that was written but fails its own schema is "unknown", and the checks that
 * need it skip (graph.ts's header lists what is skipped then). `known(key)` says whether
 * a field can be relied on: typed, or not written at all.
 */
import type { z } from 'zod';
import {
  Defaults,
  Metadata,
  Payload,
  PipelineSpec,
  ResourceRequest,
  SINGLE_STAGE,
  Stage,
} from './schema.js';
import { isPlainObject } from './values.js';
import type { Json, Path } from './values.js';

type Shape = Record<string, z.ZodType>;
type Fields<S extends Shape> = { [K in keyof S]?: Exclude<z.output<S[K]>, undefined> };

/** The fields of one mapping of the document, each typed by its own schema. */
export interface Part<S extends Shape> {
  fields: Fields<S>;
  /** The value is a mapping (whatever its fields). */
  mapping: boolean;
  /** Keys written in the mapping, typed or not. */
  written: ReadonlySet<string>;
  /** Whether the field is typed, or not written at all (false: written, but not valid). */
  known(key: keyof S & string): boolean;
}

/**
 * Each field of `value` parsed with its own schema in `schema.shape`. A field left out gets
 * its schema's default. `value` not a mapping: no fields; unknown unless it is absent.
 */
export function typedFields<S extends Shape>(schema: { shape: S }, value: Json): Part<S> {
  const fields: Record<string, unknown> = {};
  const failed = new Set<string>();
  const object = isPlainObject(value) ? value : undefined;
  for (const [key, field] of Object.entries(schema.shape)) {
    const parsed = field.safeParse(object?.[key]);
    if (parsed.success && parsed.data !== undefined) fields[key] = parsed.data;
    else if (!parsed.success && object && Object.hasOwn(object, key)) failed.add(key);
  }
  const absent = value === undefined;
  return {
    fields: fields as Fields<S>,
    mapping: object !== undefined,
    written: new Set(object ? Object.keys(object) : []),
    known: (key) => (object ? !failed.has(key) : absent),
  };
}

const SpecParams = PipelineSpec.pick({ params: true });
/** The fields of a stage the graph reads whole; payload, resources, input and pool by field. */
const StageHead = Stage.pick({
  name: true,
  kind: true,
  dependsOn: true,
  outputs: true,
  input: true,
  pool: true,
});
const InputSchema = Stage.shape.input.unwrap();
const PoolSchema = Stage.shape.pool.unwrap();

export interface GraphStage {
  /** `spec.stages[i]`, or `spec` for a one-stage kind. */
  path: Path;
  stage: Part<typeof StageHead.shape>;
  payload: Part<typeof Payload.shape>;
  resources: Part<typeof ResourceRequest.shape>;
  input: Part<typeof InputSchema.shape>;
  pool: Part<typeof PoolSchema.shape>;
}

export interface GraphDocument {
  metadata: Part<typeof Metadata.shape>;
  /** `spec.params` (a pipeline's and a one-stage kind's are alike). */
  spec: Part<typeof SpecParams.shape>;
  /** `spec.defaults`, field by field. */
  defaults: Part<typeof Defaults.shape>;
  /** Pipelines: spec.defaults.env merges into every stage's env; one-stage kinds: none. */
  inheritsDefaultEnv: boolean;
  /** Undefined: `spec` is not a mapping, or holds neither an inline stage nor a list of stages. */
  stages: GraphStage[] | undefined;
}

/** The document's parts as the graph checks read them. */
export function typeDocument(doc: Json): GraphDocument {
  const root = isPlainObject(doc) ? doc : {};
  const spec = root['spec'];
  const kind = root['kind'];
  const single =
    typeof kind === 'string' && Object.hasOwn(SINGLE_STAGE, kind)
      ? SINGLE_STAGE[kind as keyof typeof SINGLE_STAGE]
      : undefined;
  const body = isPlainObject(spec) ? spec : {};
  let stages: GraphStage[] | undefined;
  if (isPlainObject(spec) && single) {
    stages = [typeStage({ ...spec, ...single, dependsOn: [] }, ['spec'])];
  } else if (isPlainObject(spec) && Array.isArray(spec['stages'])) {
    stages = spec['stages'].flatMap((s, i) =>
      isPlainObject(s) ? [typeStage(s, ['spec', 'stages', i])] : [],
    );
  }
  return {
    metadata: typedFields(Metadata, root['metadata']),
    spec: typedFields(SpecParams, spec),
    defaults: typedFields(Defaults, body['defaults']),
    inheritsDefaultEnv: !single,
    stages,
  };
}

function typeStage(raw: Record<string, Json>, path: Path): GraphStage {
  return {
    path,
    stage: typedFields(StageHead, raw),
    payload: typedFields(Payload, raw['payload']),
    resources: typedFields(ResourceRequest, raw['resources']),
    input: typedFields(InputSchema, raw['input']),
    pool: typedFields(PoolSchema, raw['pool']),
  };
}
