/**
 * The `${...}` mini-language of run specs.
 *
 * Where: a stage's `payload.command` items, `payload.env` values, `payload.workingDir`
 * and `outputs` values (and `spec.defaults.env` values, per stage). Nowhere else.
 *
 *   ${run.id}                        the run's id
 *   ${run.dir}                       the run's directory (logs, outputs)
 *   ${stage.name}                    this stage's name
 *   ${stage.outputDir}               this stage's output directory
 *   ${stages.<name>.outputs.<out>}   an output of an upstream stage (it must be in this
 *                                    stage's transitive dependsOn, and declare <out>)
 *   ${params.<name>}                 a value of `spec.params` (after --set overrides)
 *   ${env.<NAME>}                    a value of this stage's own `payload.env` (defaults
 *                                    merged), after interpolation
 *   $${                              a literal `${` (`$${run.id}` stays `${run.id}`)
 *
 * Decisions:
 * - `${env.NAME}` reads only the stage's own env map, never the environment of the
 *   controller or the worker: a spec means the same on every machine, and nothing from
 *   a machine's environment (tokens!) can leak into an argv that lands in logs and in
 *   `ps`. For the same reason a `secretEnv` name cannot be referenced: secrets reach the
 *   payload as environment variables only. A payload that wants a worker variable reads
 *   it itself.
 * - `${env.*}` is allowed in command, workingDir and outputs, not in env values
 *   themselves: no ordering rules, no cycles.
 * - Exact syntax only: no spaces inside `${ }`, no defaults (`${x:-y}`), no nesting.
 *   Anything else after `${` is an error rather than literal text, so that a typo never
 *   reaches a payload as a string that looks like a reference.
 * - Only `$${` is an escape; any other `$` is literal text.
 *
 * Checks that need only the template (syntax, roots, fields) live here
 * (`findReferences`); checks that need the spec (unknown stage, not upstream, undeclared
 * output, unknown param) live in references.ts; `interpolate` fails on a value missing at
 * run time.
 */
import path from 'node:path';
import { NonRetryableError } from '../errors.js';
import type { NormalizedStage } from './schema.js';

export type Reference =
  | { kind: 'run'; field: 'id' | 'dir'; text: string; offset: number }
  | { kind: 'stage'; field: 'name' | 'outputDir'; text: string; offset: number }
  | { kind: 'stageOutput'; stage: string; output: string; text: string; offset: number }
  | { kind: 'param'; name: string; text: string; offset: number }
  | { kind: 'env'; name: string; text: string; offset: number };

export interface ReferenceSyntaxError {
  /** What is wrong and what to write instead. */
  message: string;
  /** Offset of the offending `${` in the template. */
  offset: number;
}

export interface FoundReferences {
  references: Reference[];
  errors: ReferenceSyntaxError[];
}

/** Everything `interpolate` may need; absent parts make references to them an error. */
export interface InterpolationContext {
  run?: { id: string; dir: string };
  stage?: { name: string; outputDir: string };
  stages?: Record<string, { outputs: Record<string, string> }>;
  params?: Record<string, string | number | boolean>;
  env?: Record<string, string>;
}

/** What the controller knows when it starts a stage. */
export interface StageResolutionContext {
  run: { id: string; dir: string };
  params: Record<string, string | number | boolean>;
  /** Absolute output directory of this stage. */
  stageOutputDir: string;
  /** Finished upstream stages and their resolved outputs. */
  stages: Record<string, { outputs: Record<string, string> }>;
}

export interface ResolvedStage {
  command: string[];
  env: Record<string, string>;
  /** Absolute paths (or URLs, left alone). */
  outputs: Record<string, string>;
  workingDir?: string;
  /** Pulled stages: the input with references resolved (paths as written, maybe relative). */
  input?: { file?: string; shardSize?: number; shards?: string[] };
}

/** A template cannot be resolved: a syntax error or a value missing at run time. */
export class InterpolationError extends NonRetryableError {
  // `name` stays NonRetryableError, so that isNonRetryable() still recognises it after
  // crossing a process boundary; `reason` tells the two apart.
  constructor(message: string) {
    super(message, 'InterpolationFailed');
  }
}

type Part = { literal: string } | { ref: Reference };

const SEGMENT = /^[A-Za-z0-9_-]+$/;
const ROOTS = 'run, stage, stages, params or env';

/** Splits a template into literal text and references; reports every syntax error. */
function parseTemplate(template: string): { parts: Part[]; errors: ReferenceSyntaxError[] } {
  const parts: Part[] = [];
  const errors: ReferenceSyntaxError[] = [];
  let literal = '';
  let i = 0;
  while (i < template.length) {
    if (template.startsWith('$${', i)) {
      literal += '${';
      i += 3;
      continue;
    }
    if (!template.startsWith('${', i)) {
      literal += template[i];
      i += 1;
      continue;
    }
    const close = template.indexOf('}', i + 2);
    if (close < 0) {
      errors.push({
        offset: i,
        message: `"${template.slice(i)}" has no closing "}" (write $\${ for a literal "\${")`,
      });
      break;
    }
    const text = template.slice(i, close + 1);
    const parsed = parseReference(template.slice(i + 2, close), text, i);
    if ('message' in parsed) errors.push(parsed);
    else {
      if (literal) parts.push({ literal });
      literal = '';
      parts.push({ ref: parsed });
    }
    i = close + 1;
  }
  if (literal) parts.push({ literal });
  return { parts, errors };
}

function parseReference(
  body: string,
  text: string,
  offset: number,
): Reference | ReferenceSyntaxError {
  const fail = (why: string): ReferenceSyntaxError => ({ offset, message: `${text}: ${why}` });
  if (body === '')
    return fail(`empty reference (expected e.g. \${run.id}; write $\${ for a literal "\${")`);
  if (body.includes('${')) return fail('references cannot be nested');
  if (body.trim() !== body) return fail('no spaces inside ${...}');
  const segments = body.split('.');
  const bad = segments.find((s) => !SEGMENT.test(s));
  if (bad !== undefined) {
    return fail(
      bad === ''
        ? 'a reference is names separated by single dots'
        : `"${bad}" is not a name (letters, digits, "_" and "-" only)`,
    );
  }
  const [root, a, b, c] = segments;
  const n = segments.length;
  switch (root) {
    case 'run':
      if (n === 2 && (a === 'id' || a === 'dir')) return { kind: 'run', field: a, text, offset };
      return fail('expected ${run.id} or ${run.dir}');
    case 'stage':
      if (n === 2 && (a === 'name' || a === 'outputDir'))
        return { kind: 'stage', field: a, text, offset };
      return fail('expected ${stage.name} or ${stage.outputDir}');
    case 'stages':
      if (n === 4 && b === 'outputs' && a !== undefined && c !== undefined) {
        return { kind: 'stageOutput', stage: a, output: c, text, offset };
      }
      return fail('expected ${stages.<stage>.outputs.<output>}');
    case 'params':
      if (n === 2 && a !== undefined) return { kind: 'param', name: a, text, offset };
      return fail('expected ${params.<name>}');
    case 'env':
      if (n === 2 && a !== undefined) return { kind: 'env', name: a, text, offset };
      return fail('expected ${env.<NAME>}');
    default:
      return fail(`unknown reference root "${root}" (expected ${ROOTS})`);
  }
}

/** The references in a template, and every syntax error in it. */
export function findReferences(template: string): FoundReferences {
  const { parts, errors } = parseTemplate(template);
  const references = parts.flatMap((p) => ('ref' in p ? [p.ref] : []));
  return { references, errors };
}

/** True when the template holds `${` (a reference, an escape or a mistake). */
export function hasReferences(template: string): boolean {
  return template.includes('${');
}

function lookup(ref: Reference, ctx: InterpolationContext): string {
  const missing = (why: string): never => {
    throw new InterpolationError(`${ref.text}: ${why}`);
  };
  switch (ref.kind) {
    case 'run':
      return ctx.run ? ctx.run[ref.field] : missing('no run is known here');
    case 'stage':
      return ctx.stage ? ctx.stage[ref.field] : missing('no stage is known here');
    case 'stageOutput': {
      const stage = ctx.stages?.[ref.stage];
      if (!stage)
        return missing(`stage "${ref.stage}" has no outputs yet (is it upstream and finished?)`);
      const value = Object.hasOwn(stage.outputs, ref.output)
        ? stage.outputs[ref.output]
        : undefined;
      if (value === undefined) {
        const known = Object.keys(stage.outputs);
        return missing(
          `stage "${ref.stage}" has no output "${ref.output}" (it has ${known.length ? known.join(', ') : 'none'})`,
        );
      }
      return value;
    }
    case 'param': {
      const value =
        ctx.params && Object.hasOwn(ctx.params, ref.name) ? ctx.params[ref.name] : undefined;
      return value === undefined
        ? missing(`no parameter "${ref.name}" in spec.params`)
        : String(value);
    }
    case 'env': {
      if (!ctx.env)
        return missing(
          '${env.*} can be used in command, workingDir and outputs, not in env values',
        );
      const value = Object.hasOwn(ctx.env, ref.name) ? ctx.env[ref.name] : undefined;
      return value === undefined
        ? missing(`"${ref.name}" is not in the stage's payload.env`)
        : value;
    }
  }
}

/**
 * Replaces every reference in `template`. Throws InterpolationError on a syntax error
 * or a value the context does not have.
 */
export function interpolate(template: string, ctx: InterpolationContext): string {
  if (!hasReferences(template)) return template;
  const { parts, errors } = parseTemplate(template);
  if (errors.length) throw new InterpolationError(errors.map((e) => e.message).join('; '));
  return parts.map((p) => ('ref' in p ? lookup(p.ref, ctx) : p.literal)).join('');
}

/** A value such as `s3://bucket/x` or `hf://org/model` is not a local path. */
/** An output value such as s3://bucket/x: kept as written, not resolved as a path. */
export const URL_LIKE = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//;

/**
 * A stage's payload with every reference resolved, as the controller hands it to a
 * worker. Env values first (they may not use ${env.*}), then command, workingDir and
 * outputs, which may. Declared outputs that are relative paths resolve under the stage's
 * output directory; absolute paths and URLs are kept. `workingDir` is returned as
 * written (after interpolation): the worker resolves a relative one.
 */
export function resolveStage(stage: NormalizedStage, ctx: StageResolutionContext): ResolvedStage {
  const base: InterpolationContext = {
    run: ctx.run,
    stage: { name: stage.name, outputDir: ctx.stageOutputDir },
    stages: ctx.stages,
    params: ctx.params,
  };
  const at = <T>(where: string, fn: () => T): T => {
    try {
      return fn();
    } catch (err) {
      if (err instanceof InterpolationError)
        throw new InterpolationError(`stage "${stage.name}" ${where}: ${err.message}`);
      throw err;
    }
  };
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(stage.payload.env)) {
    env[key] = at(`payload.env.${key}`, () => interpolate(value, base));
  }
  const full: InterpolationContext = { ...base, env };
  const command = stage.payload.command.map((arg, i) =>
    at(`payload.command[${i}]`, () => interpolate(arg, full)),
  );
  const outputs: Record<string, string> = {};
  for (const [name, value] of Object.entries(stage.outputs)) {
    const resolved = at(`outputs.${name}`, () => interpolate(value, full));
    outputs[name] = URL_LIKE.test(resolved) ? resolved : path.resolve(ctx.stageOutputDir, resolved);
  }
  const result: ResolvedStage = { command, env, outputs };
  if (stage.input) {
    const input: NonNullable<ResolvedStage['input']> = {};
    const { file, shards, shardSize } = stage.input;
    if (file !== undefined) input.file = at('input.file', () => interpolate(file, full));
    if (shards !== undefined)
      input.shards = shards.map((t, i) => at(`input.shards[${i}]`, () => interpolate(t, full)));
    if (shardSize !== undefined) input.shardSize = shardSize;
    result.input = input;
  }
  if (stage.payload.workingDir !== undefined) {
    const workingDir = stage.payload.workingDir;
    result.workingDir = at('payload.workingDir', () => interpolate(workingDir, full));
  }
  return result;
}
