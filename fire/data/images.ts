/**
 * Is a record's image there? `ImageChecker.check(relPath)` opens the file under the image
 * root (non-blocking: a FIFO or a device is reported, never waited on) and reads its first
 * 12 bytes: it must be a regular, non-empty file whose signature is PNG, JPEG, GIF, WebP or
 * BMP. Nothing is decoded (a corrupt body passes; training
 * would find it), which keeps a million-record check at a few syscalls per record.
 *
 * Results are cached per path in a bounded LRU (FIRE-1M reuses FIRE-100K's images, and
 * benchmarks reference a handful of files), so memory stays bounded whatever the file.
 */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { fileKind } from '../../common/regular-file.js';
import { isAbsolute, join, normalize, sep } from 'node:path';

export type ImageProblem =
  { code: 'image-missing'; message: string } | { code: 'image-unreadable'; message: string };

const SIGNATURE_BYTES = 12;
const CACHE_ENTRIES = 8192;

/** The image format of a file's first bytes, or null. */
export function imageFormat(head: Uint8Array): string | null {
  const at = (i: number) => head[i];
  const ascii = (from: number, text: string) =>
    [...text].every((ch, i) => at(from + i) === ch.charCodeAt(0));
  if (
    at(0) === 0x89 &&
    ascii(1, 'PNG') &&
    at(4) === 0x0d &&
    at(5) === 0x0a &&
    at(6) === 0x1a &&
    at(7) === 0x0a
  )
    return 'png';
  if (at(0) === 0xff && at(1) === 0xd8 && at(2) === 0xff) return 'jpeg';
  if (ascii(0, 'GIF87a') || ascii(0, 'GIF89a')) return 'gif';
  if (ascii(0, 'RIFF') && ascii(8, 'WEBP')) return 'webp';
  if (ascii(0, 'BM')) return 'bmp';
  return null;
}

/** Whether a record's image path stays inside the image root (relative, no `..` out). */
export function isInsideRoot(rel: string): boolean {
  if (isAbsolute(rel)) return false;
  const n = normalize(rel);
  return n !== '..' && !n.startsWith(`..${sep}`);
}

export class ImageChecker {
  /** A settled result, or the probe in flight. */
  private readonly cache = new Map<string, ImageProblem | null | Promise<ImageProblem | null>>();

  constructor(readonly root: string) {}

  /** The cached result (null: fine), or undefined when not known yet. */
  peek(rel: string): ImageProblem | null | undefined {
    const hit = this.cache.get(rel);
    if (hit === undefined || hit instanceof Promise) return undefined;
    this.touch(rel, hit);
    return hit;
  }

  /** null when the image is fine; else why not. Never rejects. */
  async check(rel: string): Promise<ImageProblem | null> {
    const hit = this.cache.get(rel);
    if (hit !== undefined) {
      this.touch(rel, hit);
      return hit;
    }
    const p = probe(join(this.root, rel), rel);
    this.touch(rel, p);
    const result = await p;
    // Keep the settled value (so peek sees it), unless evicted meanwhile.
    if (this.cache.get(rel) === p) this.cache.set(rel, result);
    return result;
  }

  /** Move an entry to the young end of the LRU order, evicting the oldest when full. */
  private touch(rel: string, value: ImageProblem | null | Promise<ImageProblem | null>): void {
    this.cache.delete(rel);
    this.cache.set(rel, value);
    if (this.cache.size > CACHE_ENTRIES) {
      const oldest = this.cache.keys().next();
      if (!oldest.done) this.cache.delete(oldest.value);
    }
  }
}

async function probe(path: string, rel: string): Promise<ImageProblem | null> {
  let fh;
  try {
    // Non-blocking: opening a FIFO would wait for a writer for ever (a device: read for ever).
    fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR')
      return { code: 'image-missing', message: `image file not found: ${path}` };
    return {
      code: 'image-unreadable',
      message: `cannot open image ${path}: ${code ?? String(err)}`,
    };
  }
  try {
    const st = await fh.stat();
    if (!st.isFile())
      return {
        code: 'image-unreadable',
        message: `not a regular file (${fileKind(st)}): ${path}`,
      };
    if (st.size === 0) return { code: 'image-unreadable', message: `empty image file: ${path}` };
    const head = Buffer.alloc(SIGNATURE_BYTES);
    const { bytesRead } = await fh.read(head, 0, SIGNATURE_BYTES, 0);
    if (imageFormat(head.subarray(0, bytesRead)) === null)
      return {
        code: 'image-unreadable',
        message: `not a PNG, JPEG, GIF, WebP or BMP file (first bytes ${head.subarray(0, Math.min(bytesRead, 8)).toString('hex')}): ${rel}`,
      };
    return null;
  } catch (err) {
    return {
      code: 'image-unreadable',
      message: `cannot read image ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
    };
  } finally {
    await fh.close().catch(() => undefined);
  }
}
