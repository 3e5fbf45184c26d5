/**
 * Error classes. Predicates check `name` as well as `instanceof`, because errors cross
 * process boundaries (BullMQ serialises a processor's error into the job).
 */

export class StokerError extends Error {
  override name = 'StokerError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** Another attempt cannot help: bad config, bad data, a user's cancel. */
export class NonRetryableError extends StokerError {
  override name = 'NonRetryableError';
  constructor(
    message: string,
    readonly reason: string = 'NonRetryable',
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function isNonRetryable(err: unknown): boolean {
  return (
    err instanceof NonRetryableError || (err instanceof Error && err.name === 'NonRetryableError')
  );
}

export interface SpecIssue {
  /** YAML path, e.g. `spec.stages[1].dependsOn[0]`. */
  path: string;
  message: string;
  line?: number;
  column?: number;
}

/** A run spec is invalid. Carries every problem found, each with its YAML path. */
export class SpecError extends StokerError {
  override name = 'SpecError';
  constructor(
    readonly issues: SpecIssue[],
    readonly file?: string,
  ) {
    super(formatSpecIssues(issues, file));
  }
}

export function formatSpecIssues(issues: SpecIssue[], file?: string): string {
  const head = `${file ? `${file}: ` : ''}invalid spec (${issues.length} problem${issues.length === 1 ? '' : 's'})`;
  const lines = issues.map((i) => {
    const at =
      i.line === undefined
        ? ''
        : ` (line ${i.line}${i.column === undefined ? '' : `, column ${i.column}`})`;
    return `  - ${i.path || '<root>'}${at}: ${i.message}`;
  });
  return [head, ...lines].join('\n');
}

/** Redis could not be reached in time. */
export class RedisUnavailableError extends StokerError {
  override name = 'RedisUnavailableError';
}

/** A user-facing error: printed without a stack trace, exit code `exitCode`. */
export class UsageError extends StokerError {
  override name = 'UsageError';
  constructor(
    message: string,
    readonly exitCode = 2,
  ) {
    super(message);
  }
}
