/**
 * The secrets a worker reads from a file descriptor instead of its environment (README,
 * "Untrusted specs and payloads"). What a process was exec'd with stays readable in
 * /proc/PID/environ for its whole life, by any process of the same user (its payload);
 * what it reads from a descriptor and closes is not there.
 *
 *   STOKER_SECRETS_FD=N   in the worker's environment: read descriptor N to its end (a
 *                         pipe, a socket or a file), close it, merge the variables over
 *                         the environment (worker/secrets-fd.ts)
 *
 * Written by the local backend (orchestrator/backends/local.ts, encodeSecrets) and by
 * the container launcher worker/bin/stoker-env-fd (a POSIX sh here-document). The
 * format, version 1, is text, one variable a line, then an end line:
 *
 *   NAME SP BASE64 LF     NAME: [A-Za-z_][A-Za-z0-9_]*; BASE64: the value's bytes
 *                         (UTF-8), standard alphabet with `=` padding, on one line (empty
 *                         for an empty value: `NAME ` then LF)
 *   END LF                the last line (its LF optional). Without it the writer died
 *                         before finishing: an error, never a partial environment
 *
 * parseSecrets refuses (SecretsFormatError, its message saying which line and what is
 * wrong, never a value) bytes after END, a missing END, a line that is not NAME SP
 * BASE64, a name given twice, a CR, and more than MAX_SECRETS_BYTES in all. A value may
 * hold any byte but NUL (an environment cannot hold NUL either), newlines included.
 */

export const SECRETS_FD_VAR = 'STOKER_SECRETS_FD';

/** The most a secrets payload may be: far above any real environment (ARG_MAX is 2 MiB). */
export const MAX_SECRETS_BYTES = 16 * 1024 * 1024;

const END = 'END';
const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

export class SecretsFormatError extends Error {
  override name = 'SecretsFormatError';
}

/** The payload for `vars` (names checked; values as UTF-8). */
export function encodeSecrets(vars: Readonly<Record<string, string>>): string {
  let out = '';
  for (const [name, value] of Object.entries(vars)) {
    if (!NAME.test(name)) throw new SecretsFormatError(`"${name}" is not a variable name`);
    if (value.includes('\0')) throw new SecretsFormatError(`the value of ${name} holds a NUL byte`);
    out += `${name} ${Buffer.from(value, 'utf8').toString('base64')}\n`;
  }
  return `${out}${END}\n`;
}

/** The variables of a payload; a SecretsFormatError says what is wrong. */
export function parseSecrets(data: Buffer | string): Record<string, string> {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  if (bytes.length > MAX_SECRETS_BYTES)
    throw new SecretsFormatError(`more than ${MAX_SECRETS_BYTES} bytes`);
  // Names and base64 are ASCII: a byte above 127 anywhere fails the line's checks.
  const text = bytes.toString('latin1');
  if (text === '') throw new SecretsFormatError('empty (not even the END line)');
  const lines = text.split('\n');
  // A final LF leaves one empty string after the last line.
  if (lines.at(-1) === '') lines.pop();
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const [i, line] of lines.entries()) {
    const at = `line ${i + 1}`;
    if (line === END) {
      if (i !== lines.length - 1) throw new SecretsFormatError(`${at}: END is not the last line`);
      return { ...out };
    }
    if (line.includes('\r')) throw new SecretsFormatError(`${at}: a carriage return`);
    const space = line.indexOf(' ');
    if (space < 0) throw new SecretsFormatError(`${at}: not "NAME BASE64" (no space)`);
    const name = line.slice(0, space);
    const encoded = line.slice(space + 1);
    if (!NAME.test(name)) throw new SecretsFormatError(`${at}: the name is not a variable name`);
    if (!BASE64.test(encoded))
      throw new SecretsFormatError(`${at}: the value of ${name} is not base64`);
    if (Object.hasOwn(out, name)) throw new SecretsFormatError(`${at}: ${name} is given twice`);
    const value = Buffer.from(encoded, 'base64');
    if (value.includes(0))
      throw new SecretsFormatError(`${at}: the value of ${name} holds a NUL byte`);
    out[name] = value.toString('utf8');
  }
  throw new SecretsFormatError(
    `no END line after ${lines.length} line${lines.length === 1 ? '' : 's'} (its writer stopped before the end)`,
  );
}
