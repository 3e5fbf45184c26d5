/**
 * Run specs: schema (schema.ts), loading and validation (load.ts), and the `${...}`
 * mini-language resolved at run time (interpolate.ts).
 */
export * from './schema.js';
export {
  DEFAULT_MAX_SPEC_BYTES,
  MAX_ALIAS_COUNT,
  SINGLE_STAGE,
  formatBytes,
  formatPath,
  loadSpecFile,
  parseSetExpression,
  parseSpec,
} from './load.js';
export type { LoadSpecOptions, ParseSpecOptions } from './load.js';
export {
  InterpolationError,
  findReferences,
  hasReferences,
  interpolate,
  resolveStage,
} from './interpolate.js';
export type {
  FoundReferences,
  InterpolationContext,
  Reference,
  ReferenceSyntaxError,
  ResolvedStage,
  StageResolutionContext,
} from './interpolate.js';
