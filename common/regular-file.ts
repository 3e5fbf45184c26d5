/**
 * Opening a file that must be a regular file, without ever hanging. `open(2)` of a FIFO
 * blocks until a writer appears (for ever, if none does), and a character device such as
 * /dev/zero or /dev/tty reads without end: a path given by a user or named in a record
 * is opened with O_NONBLOCK (which a FIFO honours and a regular file ignores) and checked
 * with fstat on the open descriptor, so the file checked is the file read.
 *
 *   const handle = await openRegularFile(path)        // NotRegularFileError otherwise
 *   const text = readRegularFileSync(path, maxBytes)  // the same, read whole (bounded)
 *
 * Errors of open itself (ENOENT, EACCES) are thrown as they are: the caller words them.
 */
import { closeSync, constants, fstatSync, openSync, readFileSync, type Stats } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { UsageError } from './errors.js';

const READ_NONBLOCK = constants.O_RDONLY | constants.O_NONBLOCK;

/** A path that is something other than a regular file (a FIFO, a device, a directory). */
export class NotRegularFileError extends UsageError {
  override name = 'NotRegularFileError';
  constructor(
    readonly path: string,
    readonly kind: string,
  ) {
    super(`${path}: ${kind}, not a regular file`);
  }
}

/** What a non-regular file is, in words: `a FIFO (named pipe)`, `a directory`... */
export function fileKind(st: Stats): string {
  if (st.isFile()) return 'a regular file';
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'not a file';
}

/** The open file, when `path` is a regular file; NotRegularFileError otherwise. */
export async function openRegularFile(path: string): Promise<FileHandle> {
  const handle = await open(path, READ_NONBLOCK);
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new NotRegularFileError(path, fileKind(st));
    return handle;
  } catch (err) {
    await handle.close().catch(() => undefined);
    throw err;
  }
}

/**
 * The whole text of a regular file of at most `maxBytes`; NotRegularFileError for
 * anything else, a UsageError for a larger file.
 */
export function readRegularFileSync(path: string, maxBytes: number): string {
  const fd = openSync(path, READ_NONBLOCK);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new NotRegularFileError(path, fileKind(st));
    if (st.size > maxBytes)
      throw new UsageError(`${path}: ${st.size} bytes, more than the ${maxBytes} it may have`);
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}
