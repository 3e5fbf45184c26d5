/**
 * Reading a spec file, bounded: a file larger than `maxBytes` is refused from its size
 * before it is read, and a pipe or a growing file is cut off at `maxBytes + 1` bytes.
 * Every refusal is a SpecError with one issue at the root (path ''), naming the file.
 */
import { open } from 'node:fs/promises';
import { SpecError } from '../errors.js';

/** A spec larger than this is refused before it is read. */
export const DEFAULT_MAX_SPEC_BYTES = 1024 * 1024;

/** The file's text (UTF-8), or a SpecError: missing, unreadable, a directory, too large. */
export async function readBounded(file: string, maxBytes: number): Promise<string> {
  const refuse = (message: string): never => {
    throw new SpecError([{ path: '', message }], file);
  };
  let handle;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return refuse('no such file');
    if (code === 'EACCES' || code === 'EPERM') return refuse('permission denied');
    return refuse(`cannot open the file: ${(err as Error).message}`);
  }
  try {
    // fstat on the open handle: the size of the file we will read, not of one swapped in.
    const stat = await handle.stat();
    if (stat.isDirectory()) refuse('is a directory, not a spec file');
    if (stat.isFile() && stat.size > maxBytes) {
      refuse(
        `the file is ${formatBytes(stat.size)}, larger than the ${formatBytes(maxBytes)} a spec may be`,
      );
    }
    // Read at most maxBytes + 1 even so: a pipe has no size, and a file can grow.
    const chunks: Buffer[] = [];
    let total = 0;
    const chunk = Buffer.alloc(64 * 1024);
    for (;;) {
      const { bytesRead } = await handle.read(
        chunk,
        0,
        Math.min(chunk.length, maxBytes + 1 - total),
        null,
      );
      if (bytesRead === 0) break;
      chunks.push(Buffer.from(chunk.subarray(0, bytesRead)));
      total += bytesRead;
      if (total > maxBytes)
        refuse(`the file is larger than the ${formatBytes(maxBytes)} a spec may be`);
    }
    return Buffer.concat(chunks, total).toString('utf8');
  } finally {
    await handle.close();
  }
}

/** `1536` -> `1.5 KiB`; under 1 KiB in bytes. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} bytes`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${Number.isInteger(value) ? value : value.toFixed(1)} ${units[unit]}`;
}
