/**
 * Run specs: the schema (schema.ts; the stored, normalised form in normalized.ts), loading
 * and validation (load.ts and the steps it lists), rules a backend adds (rules.ts), and
 * the `${...}` mini-language resolved at run time (interpolate.ts).
 */
export * from './schema.js';
export {
  DEFAULT_MAX_SPEC_BYTES,
  MAX_ALIAS_COUNT,
  formatBytes,
  formatPath,
  loadSpecFile,
  parseSetExpression,
  parseSpec,
} from './load.js';
export type { LoadSpecOptions, ParseSpecOptions } from './load.js';
export { runRules, stagePath, storedPaths } from './rules.js';
export type { SettingSource, SpecPaths, SpecRule, SpecRuleIssue } from './rules.js';
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
