/**
 * The flag values and inputs the `stoker data` subcommands share: strict integer parsers
 * for commander (a bad value is commander's InvalidArgumentError, which exits 2 under
 * `stoker data`), and the checks that an input file or directory exists (UsageError,
 * exit 2), done before any work starts.
 */
import { statSync } from 'node:fs';
import { InvalidArgumentError } from 'commander';
import { UsageError } from '../../../common/errors.js';

const integer =
  (min: number, what: string) =>
  (value: string): number => {
    const n = Number(value);
    if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min)
      throw new InvalidArgumentError(`${what} must be an integer >= ${min}`);
    return n;
  };

/** An integer >= 1. */
export const positive = integer(1, 'the value');
/** An integer >= 0. */
export const nonNegative = integer(0, 'the value');
/** A teacher score: an integer 0-10. */
export const score = (value: string): number => {
  const n = integer(0, 'a score')(value);
  if (n > 10) throw new InvalidArgumentError('a score must be an integer 0-10');
  return n;
};

export function requireFile(file: string): void {
  let st;
  try {
    st = statSync(file);
  } catch {
    throw new UsageError(`${file}: no such file`);
  }
  if (!st.isFile()) throw new UsageError(`${file}: not a file`);
}

/** A directory given by `flag` (named in the message). */
export function requireDir(dir: string, flag: string): void {
  let st;
  try {
    st = statSync(dir);
  } catch {
    throw new UsageError(`${flag} ${dir}: no such directory`);
  }
  if (!st.isDirectory()) throw new UsageError(`${flag} ${dir}: not a directory`);
}
